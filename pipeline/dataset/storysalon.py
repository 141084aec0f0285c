"""``storyloom export --format storysalon``: the folders StoryGen's own training code reads.

The layout follows ``StorySalonDataset`` in StoryGen's ``dataset.py`` (github.com/haoningwu3639/StoryGen,
the version ``train_StorySalon_stage2.py`` imports; facts taken, no code), so the original
training scripts run on our stories when the export directory is their ``./StorySalon/``:

- book stories (the loader's "PDF" data) under one of its fixed subsets, ``Book``:
  ``Image_inpainted/Book/{story_id}/{frame}.jpg``, ``Mask/Book/{story_id}/{frame}.png``,
  ``Text/Caption/Book/{story_id}/{frame}.txt``; the loader lists every one of its six subset
  folders (``African Bloom Book Digital Literacy StoryWeaver``), so all six are created;
- video stories where the loader reads videos: ``image_inpainted_finally_checked/{story_id}/``,
  ``mask/{story_id}/`` and ``Text/Caption/Video/{story_id}/``;
- the test split as folder names, one per line, each line ending in a newline (the loader cuts
  the last character of every line): ``PDF_test_set.txt`` (books), ``video_test_set.txt`` (videos).

The loader pairs images, masks and texts by their sorted position in parallel folders, across
all stories at once, so every frame gets all three files, named by its zero-padded frame index
(plain and natural sorting agree). Images are the shard's JPEG bytes unchanged. A mask keeps
our meaning, which is StoryGen's: white (255) where the loss ignores pixels (its loss is
``mse * (1 - mask)``); our PNG masks are copied unchanged, and a frame without one gets an
all-black PNG of its size (nothing ignored). ``Text/Caption`` holds the prompt StoryGen trains
on: the frame's caption when it has one, else its narrative text; ``Text/Narrative/...`` (same
paths) holds the narrative text itself, and ``stories.json`` each story's subset, split, frame
files and source (title, creator, licence: what attribution needs). The loader skips stories of
fewer than four frames (three references and a target); they are exported all the same.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from pipeline.dataset.export_common import (
    ExportResult,
    iter_stories_with_progress,
    relative_files,
)
from pipeline.dataset.reader import Dataset
from pipeline.output.contract import Story, mask_member

log = logging.getLogger(__name__)

BOOK_SUBSETS = ("African", "Bloom", "Book", "Digital", "Literacy", "StoryWeaver")  # listed by the loader
BOOK_SUBSET = "Book"  # where our e-book stories go
VIDEO_SUBSET = "Video"  # the name of video stories' text folder
PDF_TEST_SET = "PDF_test_set.txt"
VIDEO_TEST_SET = "video_test_set.txt"
STORIES_FILE = "stories.json"
MIN_FRAMES_FOR_LOADER = 4  # the loader's windows: three reference frames and a target


def story_dirs(story: Story) -> dict[str, str]:
    """The folders (relative to the export root) of a story's images, masks, captions and narrative."""
    sid = story.story_id
    if story.source.kind == "video":
        return {"images": f"image_inpainted_finally_checked/{sid}", "masks": f"mask/{sid}",
                "captions": f"Text/Caption/{VIDEO_SUBSET}/{sid}", "narrative": f"Text/Narrative/{VIDEO_SUBSET}/{sid}"}
    return {"images": f"Image_inpainted/{BOOK_SUBSET}/{sid}", "masks": f"Mask/{BOOK_SUBSET}/{sid}",
            "captions": f"Text/Caption/{BOOK_SUBSET}/{sid}", "narrative": f"Text/Narrative/{BOOK_SUBSET}/{sid}"}


def frame_stems(story: Story) -> list[str]:
    """Each frame's file name without extension: its index, zero-padded to the same width."""
    width = max(3, len(str(max(frame.index for frame in story.frames))))
    return [f"{frame.index:0{width}d}" for frame in story.frames]


def keep_all_mask(width: int, height: int) -> bytes:
    """A PNG mask that ignores nothing: all black, one channel (same bytes for the same size)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (width, height), 0).save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def export_storysalon(dataset: Dataset, out_dir: Path) -> ExportResult:
    """Write the StorySalon layout of ``dataset`` under ``out_dir`` (see the module docstring)."""
    out_dir = Path(out_dir)
    for subset in BOOK_SUBSETS:
        (out_dir / "Image_inpainted" / subset).mkdir(parents=True, exist_ok=True)
    (out_dir / "image_inpainted_finally_checked").mkdir(parents=True, exist_ok=True)
    test_sets: dict[str, list[str]] = {PDF_TEST_SET: [], VIDEO_TEST_SET: []}
    stories_meta = []
    blank_masks: dict[tuple[int, int], bytes] = {}
    frames = short = 0
    for record in iter_stories_with_progress(dataset, "export storysalon"):
        story = record.story
        dirs = story_dirs(story)
        for folder in dirs.values():
            (out_dir / folder).mkdir(parents=True, exist_ok=True)
        stems = frame_stems(story)
        for stem, frame in zip(stems, story.frames):
            (out_dir / dirs["images"] / f"{stem}.jpg").write_bytes(record.media[frame.image])
            if frame.has_mask:
                mask = record.media[mask_member(frame.index)]
            else:
                size = (frame.width, frame.height)
                mask = blank_masks.get(size) or blank_masks.setdefault(size, keep_all_mask(*size))
            (out_dir / dirs["masks"] / f"{stem}.png").write_bytes(mask)
            (out_dir / dirs["captions"] / f"{stem}.txt").write_bytes((frame.caption or frame.text).encode("utf-8"))
            (out_dir / dirs["narrative"] / f"{stem}.txt").write_bytes(frame.text.encode("utf-8"))
        if story.split == "test":
            test_sets[VIDEO_TEST_SET if story.source.kind == "video" else PDF_TEST_SET].append(story.story_id)
        short += len(story.frames) < MIN_FRAMES_FOR_LOADER
        frames += len(story.frames)
        stories_meta.append({"story_id": story.story_id, "split": story.split,
                             "subset": VIDEO_SUBSET if story.source.kind == "video" else BOOK_SUBSET,
                             **dirs, "frames": stems, "source": story.source.to_dict()})
    for name, ids in test_sets.items():
        (out_dir / name).write_text("".join(f"{sid}\n" for sid in sorted(ids)), encoding="utf-8")
    stories_meta.sort(key=lambda meta: meta["story_id"])
    (out_dir / STORIES_FILE).write_text(json.dumps(stories_meta, ensure_ascii=False, sort_keys=True, indent=1) + "\n",
                                        encoding="utf-8")
    if short:
        log.warning("storysalon: %d of %d stories have fewer than %d frames; StoryGen's loader skips them",
                    short, len(stories_meta), MIN_FRAMES_FOR_LOADER)
    return ExportResult(len(stories_meta), frames, relative_files(out_dir))
