"""The book path after fetching: read, leave out matter and decorations, pair, clean, then one story.

Like the video path, each stage persists its result in the source's work directory, the JSON
index last, so a killed run resumes at the first stage whose index is missing:

    work/{source_id}/book-fetch.json (+ book/ for URLs)   (pipeline.book.fetch.fetch_book)
    work/{source_id}/pairs/pairs.json + NNN.png          (run_book_parse_stage)
    work/{source_id}/story.json + frames/NNN.jpg         (assemble_book_story)

Frames are the video path's: ``page`` set (1-based PDF page, spine item, or the picture's
position among an HTML page's images), ``t_start``/``t_end`` null, ``caption`` from alt text.
Burnt-in text inside a cropped illustration is written as ``NNN.mask.png`` (255 = ignore).

The cover is not a frame by default: it repeats the title and usually an illustration from
inside, and a story model should learn pages, not covers. ``ebook.cover_frame: true`` makes it
frame 0, with the title as its text and the flag ``cover``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline.config import IngestConfig
from pipeline.book.model import Book, EbookError, Picture, mark_decorations, open_book
from pipeline.book.fetch import FetchedBook
from pipeline.book.matter import classify_pages, is_cover_picture, read_credits, trim_flow_edges
from pipeline.book.pair import PairedFrame, pair_book
from pipeline.records import Frame, SourceInfo, Story
from pipeline.storage import atomic_write_bytes, atomic_write_json, read_json, reset_dir
from pipeline.video.stages import FRAMES_DIR, STORY_FILE, encode_frame

log = logging.getLogger(__name__)

PAIRS_DIR = "pairs"
PAIRS_INDEX = "pairs.json"


def run_book_parse_stage(fetched: FetchedBook, item: Any, work_dir: Path, cfg: IngestConfig,
                         defaults: Any = None) -> dict[str, Any]:
    """Read the book, pair and clean its frames, store them as lossless PNGs (reused with the same config).

    ``defaults`` (the sources file's) brings the licence policy: a book it excludes is skipped.
    """
    from pipeline.sources import check_policy

    out_dir = Path(work_dir) / PAIRS_DIR
    index = out_dir / PAIRS_INDEX
    if index.exists():
        stored = read_json(index)
        if stored.get("config_hash") == cfg.hash():  # made with other settings: made again
            return stored
    reset_dir(out_dir)
    with open_book(Path(fetched.path), cfg.ebook, fetched.base_url, fetched.url_map) as book:
        dropped = mark_decorations(book, cfg.ebook)
        matter = classify_pages(book)
        read_credits(book, matter)
        _count(dropped, trim_flow_edges(book, matter))
        for reason in matter.values():
            _count(dropped, {f"matter_{reason}": 1})
        source = _source_info(book, fetched, item, len(book.pages))
        if defaults is not None:
            reason = check_policy(item, {"license": source.extra["license_reported"]}, defaults)
            if reason:
                raise EbookError(reason, skipped=True)
        frames, pair_drops = pair_book(book, matter)
        _count(dropped, pair_drops)
        if not frames:
            raise EbookError(f"no illustrations found in {Path(fetched.path).name} ({len(book.pages)} pages; "
                             f"left out: {_describe(dropped) or 'nothing'})")
        kept = _clean(frames, cfg, dropped)
        if cfg.ebook.cover_frame and (cover := _cover(book, matter)) is not None:
            image, mask = _frame_pixels(PairedFrame([cover]), cfg)
            kept.insert(0, (_candidate(image, source.title or "", ["cover"], cover.page or 1), cover.alt, mask))
        stored = [_store(out_dir, i, *entry) for i, entry in enumerate(kept)]
        notes = list(book.notes)
    result = {"frames": stored, "source": source.to_dict(), "dropped": dict(sorted(dropped.items())), "notes": notes,
              "config_hash": cfg.hash()}
    atomic_write_json(index, result)
    log.info("%s: %d frames from %d pages", fetched.source_id, len(stored), source.extra["pages"])
    return result


def _clean(frames: list[PairedFrame], cfg: IngestConfig, dropped: dict[str, int]) -> list[tuple[Any, Any, Any]]:
    """Blank pictures out (judged on colour), then the video clean's repeated-picture rule."""
    from pipeline.frames.clean import clean_frames

    candidates, extras = [], {}
    for frame in frames:
        image, mask = _frame_pixels(frame, cfg)
        candidate = _candidate(image, frame.text, list(frame.flags), frame.page)
        extras[id(candidate)] = (frame.caption, mask)
        candidates.append(candidate)
    candidates = _drop_blank(candidates, cfg.clean.blank_std if cfg.clean.drop_blank else -1.0, dropped)
    # books have no motion blur and no intro cards: of the video rules only repeated pictures apply
    cleaned = clean_frames(candidates, replace(cfg.clean, drop_blank=False, drop_blurred=False, drop_intro_outro=False))
    _count(dropped, cleaned.dropped)
    return [(c, *extras[id(c)]) for c in cleaned.kept]


def _candidate(image: np.ndarray, text: str, flags: list[str], page: int) -> Any:
    from pipeline.frames.clean import FrameCandidate

    return FrameCandidate(image=image, t_start=None, t_end=None, text=text, flags=flags, page=page)


def _store(out_dir: Path, i: int, candidate: Any, caption: str | None, mask: list[list[float]]) -> dict[str, Any]:
    buffer = io.BytesIO()
    _pil(candidate.image).save(buffer, format="PNG", compress_level=1)
    atomic_write_bytes(out_dir / f"{i:03d}.png", buffer.getvalue())
    flags = {f for f in candidate.flags if f != "no_text"} | (set() if candidate.text else {"no_text"})
    return {"file": f"{i:03d}.png", "page": candidate.page, "text": candidate.text, "caption": caption,
            "flags": sorted(flags), "mask": mask}


def _count(total: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


def assemble_book_story(source_id: str, work_dir: Path, cfg: IngestConfig, pairs: dict[str, Any]) -> Story:
    """Encode the stored frames (and masks) and write story.json + frames/."""
    from PIL import Image

    from pipeline.models.captions import caption_images

    work_dir = Path(work_dir)
    images = []
    for stored in pairs["frames"]:
        with Image.open(work_dir / PAIRS_DIR / stored["file"]) as picture:
            images.append(np.asarray(picture.convert("RGB")))
    # with a captioner, its description; else the book's own alt text stays the caption
    captions = [model or stored["caption"] for model, stored in zip(caption_images(images, cfg.models), pairs["frames"])]
    clip = [None] * len(images)
    if cfg.models.clip.enabled and images:
        from pipeline.models.clip import clip_scores

        clip = clip_scores(images, [stored["text"] for stored in pairs["frames"]], cfg.models)
    frames_dir = reset_dir(work_dir / FRAMES_DIR)
    frames = []
    for i, (stored, image) in enumerate(zip(pairs["frames"], images)):
        data, width, height = encode_frame(image, cfg.shards)
        atomic_write_bytes(frames_dir / f"{i:03d}.jpg", data)
        if stored["mask"]:
            atomic_write_bytes(frames_dir / f"{i:03d}.mask.png", _mask_png(stored["mask"], width, height))
        score = None if clip[i] is None else round(clip[i], 4)
        frames.append(Frame(index=i, image=f"{i:03d}.jpg", width=width, height=height, page=stored["page"],
                            text=stored["text"], caption=captions[i], scores={"align": None, "clip": score},
                            flags=stored["flags"], has_mask=bool(stored["mask"])))
    story = Story(story_id=source_id, source=SourceInfo.from_dict(pairs["source"]), frames=frames,
                  pipeline={"version": __version__, "config_hash": cfg.hash()})
    atomic_write_bytes(work_dir / STORY_FILE, story.to_json().encode("utf-8"))
    return story


# --------------------------------------------------------------------------- helpers


def _source_info(book: Book, fetched: FetchedBook, item: Any, pages: int) -> SourceInfo:
    from pipeline.sources import normalize_license

    meta = book.meta
    reported = meta.license
    return SourceInfo(
        kind="ebook", url=fetched.url, title=item.title or meta.title,
        creator=", ".join(meta.authors) or None,
        license=item.license or normalize_license(reported),
        language=item.language or meta.language, duration_s=None,
        extra={"source_id": fetched.source_id, "format": book.format, "layout": book.layout,
               "authors": meta.authors, "illustrators": meta.illustrators, "publisher": meta.publisher,
               "license_reported": reported, "pages": pages},
    )


def _frame_pixels(frame: PairedFrame, cfg: IngestConfig) -> tuple[np.ndarray, list[list[float]]]:
    """The frame's picture, at most ``image_max_side`` on its long side (what the shards keep)."""
    import cv2

    picture = frame.pictures[0]
    image = picture.load()
    h, w = image.shape[:2]
    scale = cfg.shards.image_max_side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image), [list(box) for box in picture.mask]


def _drop_blank(candidates: list[Any], blank_std: float, dropped: dict[str, int]) -> list[Any]:
    """Drop blank pictures (one colour), moving their text to the previous frame (the next at the start).

    Judged on colour, not grey as for video frames: flat picture-book art can have every shape at
    the same grey level in different hues.
    """
    import cv2

    kept: list[Any] = []
    orphans: list[str] = []
    for candidate in candidates:
        _, std = cv2.meanStdDev(candidate.image)
        if float(std.max()) < blank_std:
            dropped["blank"] = dropped.get("blank", 0) + 1
            if kept:
                kept[-1].text = " ".join(t for t in (kept[-1].text, candidate.text) if t)
            elif candidate.text:
                orphans.append(candidate.text)
            continue
        if orphans:
            candidate.text = " ".join(orphans + [candidate.text]).strip()
            orphans = []
        kept.append(candidate)
    return kept


def _cover(book: Book, matter: dict[int, str]) -> Picture | None:
    for page in book.pages:
        if matter.get(page.number) == "cover" and page.pictures:
            return max(page.pictures, key=lambda p: p.size[0] * p.size[1])
    return next((p for page in book.pages for p in page.pictures if is_cover_picture(p, book)), None)


def _mask_png(boxes: list[list[float]], width: int, height: int) -> bytes:
    mask = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0 * height)):min(height, int(np.ceil(y1 * height))),
             max(0, int(x0 * width)):min(width, int(np.ceil(x1 * width)))] = 255
    buffer = io.BytesIO()
    _pil(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def _pil(array: np.ndarray) -> Any:
    from PIL import Image

    return Image.fromarray(array)


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(dropped.items()))


def clear_book_outputs(work_dir: Path) -> None:
    """Forget the parse and story outputs of a source (kept: the download)."""
    import shutil

    for name in (PAIRS_DIR, FRAMES_DIR):
        shutil.rmtree(Path(work_dir) / name, ignore_errors=True)
    (Path(work_dir) / STORY_FILE).unlink(missing_ok=True)
