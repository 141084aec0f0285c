"""The book stages: fetch -> parse (read, leave out matter and decorations, pair, clean) -> assemble.

:data:`BOOK_STAGES` declares what each stage reads and writes; the work directory owner
(:class:`pipeline.workdir.SourceWork`) decides, by the one reuse rule, whether a stored output is
still good. What each stage keeps in the source's work directory:

    book-fetch.json (+ book/ for URLs)   fetch     (:func:`pipeline.book.fetch.fetch_book`)
    pairs/pairs.json + NNN.png           parse     (lossless frames at the shards' size, their texts)
    frames/NNN.jpg, story.json           assemble  (the finished story, story.json last)

As for videos there are three layers: *source* functions (:func:`fetch`, :func:`parse`,
:func:`assemble`) that take a :class:`~pipeline.workdir.SourceRun` and fill in its row; *work*
functions (:func:`fetch_book_file`, :func:`parse_book`, :func:`assemble_book`) that run a stage
through the owner; and *compute* functions (:func:`compute_pairs`, :func:`compute_book_story`).
:func:`compute_pairs` is picklable: a flow runs it in a worker process (pdfium is not
thread-safe, and parsing is CPU-bound).

Frames are the video path's: ``page`` set (1-based PDF page, spine item, or the picture's
position among an HTML page's images), ``t_start``/``t_end`` null, ``caption`` from alt text.
Burnt-in text inside a cropped illustration is written as ``NNN.mask.png`` (255 = ignore).

The cover is not a frame by default: it repeats the title and usually an illustration from
inside, and a story model should learn pages, not covers. ``ebook.cover_frame: true`` makes it
frame 0, with the title as its text and the flag ``cover``.

The book's own metadata is stored by parse; the sources file's title, licence and language are
laid over it by :func:`with_overrides` (and the licence policy checked) every run, so editing them
never needs a re-parse.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import __version__
from pipeline.book.fetch import BOOK_DIR, FETCH_RECORD, FetchedBook, fetch_book, read_fetched_book
from pipeline.book.matter import classify_pages, is_cover_picture, read_credits, trim_flow_edges
from pipeline.book.model import Book, EbookError, Picture, mark_decorations
from pipeline.book.pair import PairedFrame, pair_book
from pipeline.book.reader import open_book
from pipeline.config import IngestConfig
from pipeline.frames.clean import FrameCandidate, FrameKeeper, clean_frames
from pipeline.frames.encode import encode_frame, encode_png, fit_long_side
from pipeline.output.contract import (FRAMES_DIR, STORY_FILE, Frame, SourceInfo, Story, image_member, mask_member,
                                      read_story, write_finished_story)
from pipeline.sources import SourceDefaults, SourceItem, check_policy, normalize_license
from pipeline.storage import atomic_write_bytes, atomic_write_json, read_json, reset_dir
from pipeline.workdir import SourceRun, SourceWork, Stage, run_inline

log = logging.getLogger(__name__)

PAIRS_DIR = "pairs"
PAIRS_INDEX = "pairs.json"


# --------------------------------------------------------------------------- declarations


def _fetch_settings(cfg: IngestConfig, item: SourceItem) -> dict[str, Any]:
    return {"input": item.identity(), "max_download_mb": cfg.ebook.max_download_mb}


def _parse_settings(cfg: IngestConfig, item: SourceItem) -> dict[str, Any]:
    ebook = asdict(cfg.ebook)
    ebook.pop("max_download_mb")  # the fetch stage's
    clean = cfg.clean
    return {"ebook": ebook, "image_max_side": cfg.shards.image_max_side,
            "clean": {"drop_blank": clean.drop_blank, "blank_std": clean.blank_std,
                      "drop_duplicates": clean.drop_duplicates, "phash_max_distance": clean.phash_max_distance}}


def _assemble_settings(cfg: IngestConfig, item: SourceItem) -> dict[str, Any]:
    models = cfg.models.output_settings()
    return {"image_max_side": cfg.shards.image_max_side, "jpeg_quality": cfg.shards.jpeg_quality,
            "clip": models.get("clip"), "captions": models.get("captions"), "source": item.overrides()}


FETCH = Stage("fetch", 1, _fetch_settings, outputs=(FETCH_RECORD, BOOK_DIR))
# 2: real-book reading rules; 3: the book file's sha256 in the story's source
PARSE = Stage("parse", 3, _parse_settings, outputs=(PAIRS_DIR,), after=("fetch",))
ASSEMBLE = Stage("assemble", 1, _assemble_settings, outputs=(FRAMES_DIR, STORY_FILE), after=("parse",))
BOOK_STAGES = (FETCH, PARSE, ASSEMBLE)


def book_work(directory: Path, item: SourceItem, cfg: IngestConfig, defaults: SourceDefaults | None = None) -> SourceWork:
    """The work directory owner of a book source."""
    return SourceWork(directory, BOOK_STAGES, cfg, item, (defaults or SourceDefaults()).policy())


# --------------------------------------------------------------------------- source functions


def fetch(run: SourceRun, cfg: IngestConfig) -> FetchedBook:
    """The fetch stage of a book source."""
    return fetch_book_file(run.work, run.item, cfg)


def parse(run: SourceRun, cfg: IngestConfig, defaults: SourceDefaults | None = None,
          run_in: Callable[..., Any] = run_inline) -> dict[str, Any]:
    """The parse stage of a book source: its frames, and the row's title, licence and language."""
    pairs = parse_book(run.work, run.item, run.outputs["fetch"], cfg, defaults, run_in)
    source = pairs["source"]
    run.result.title = source.get("title") or run.result.title
    run.result.license = source.get("license")
    run.result.language = source.get("language")
    return pairs


def assemble(run: SourceRun, cfg: IngestConfig) -> Story:
    """The assemble stage of a book source: its story, and the row's counts and notes."""
    pairs = run.outputs["parse"]
    story = assemble_book(run.work, run.item, cfg, pairs)
    run.result.story_id = story.story_id
    run.result.frames = len(story.frames)
    run.result.dropped = dict(pairs["dropped"])
    run.result.stats = dict(pairs.get("stats") or {})
    for note in pairs.get("notes") or []:  # things left out that a user may want to know
        run.note(note)
    return story


# --------------------------------------------------------------------------- work functions


def fetch_book_file(work: SourceWork, item: SourceItem, cfg: IngestConfig) -> FetchedBook:
    return work.run("fetch", lambda: fetch_book(item, work.dir, cfg.fetch, cfg.ebook),
                    lambda: read_fetched_book(work.dir))


def parse_book(work: SourceWork, item: SourceItem, fetched: FetchedBook, cfg: IngestConfig,
               defaults: SourceDefaults | None = None, run_in: Callable[..., Any] = run_inline) -> dict[str, Any]:
    """The book's frames (stored or parsed now) with the sources file's overrides laid over them
    (:func:`with_overrides`), after today's licence policy (``defaults``)."""
    pairs = work.run("parse", lambda: run_in(compute_pairs, fetched, work.dir, cfg), lambda: load_pairs(work.dir))
    if defaults is not None:
        reason = check_policy(item, {"license": pairs["source"].get("license_reported")}, defaults)
        if reason:
            raise EbookError(reason, skipped=True)
    return with_overrides(pairs, item)


def assemble_book(work: SourceWork, item: SourceItem, cfg: IngestConfig, pairs: dict[str, Any]) -> Story:
    return work.run("assemble", lambda: compute_book_story(item, work.dir, cfg, pairs), lambda: read_story(work.dir))


def with_overrides(pairs: dict[str, Any], item: SourceItem) -> dict[str, Any]:
    """The parse stage's output as the story will have it: the sources file's title, licence and
    language over the book's own (the cover frame's text is the title)."""
    source = SourceInfo.from_dict(pairs["source"])
    source.title = item.title or source.title
    source.license = item.license or source.license
    source.language = item.language or source.language
    frames = [{**stored, "text": item.title, "flags": sorted(set(stored["flags"]) - {"no_text"})}
              if "cover" in stored["flags"] and item.title else stored for stored in pairs["frames"]]
    return {**pairs, "source": source.to_dict(), "frames": frames}


# --------------------------------------------------------------------------- parse


def compute_pairs(fetched: FetchedBook, work_dir: Path, cfg: IngestConfig) -> dict[str, Any]:
    """Read the book, leave out matter and decorations, pair and clean its frames; store them as
    lossless PNGs with ``pairs.json`` (last)."""
    out_dir = reset_dir(Path(work_dir) / PAIRS_DIR)
    with open_book(Path(fetched.path), cfg.ebook, fetched.base_url, fetched.url_map) as book:
        dropped = mark_decorations(book, cfg.ebook)
        pictures = sum(len(page.pictures) for page in book.pages)
        illustrations = sum(len(page.illustrations) for page in book.pages)
        matter = classify_pages(book)
        read_credits(book, matter)
        _count(dropped, trim_flow_edges(book, matter))
        for reason in matter.values():
            _count(dropped, {f"matter_{reason}": 1})
        source = _book_info(book, fetched)
        frames, pair_drops = pair_book(book, matter)
        _count(dropped, pair_drops)
        if not frames:
            raise EbookError(f"no illustrations found in {Path(fetched.path).name} ({len(book.pages)} pages, "
                             f"{pictures} pictures; left out: {_describe(dropped) or 'nothing'})")
        kept = _clean(frames, cfg, dropped)
        if cfg.ebook.cover_frame and (cover := _cover(book, matter)) is not None:
            image, mask = _frame_pixels(cover, cfg)
            # its text is the title (the sources file's, when it names one: with_overrides)
            candidate = FrameCandidate(image, None, None, source.title or "", flags=["cover"], page=cover.page or 1)
            kept.insert(0, (candidate, cover.alt, mask))
        stored = [_store(out_dir, i, *entry) for i, entry in enumerate(kept)]
        notes = list(book.notes)
    stats = {"pages": len(book.pages), "pictures": pictures, "illustrations": illustrations, "frames": len(stored),
             "paired": sum(1 for s in stored if s["text"])}
    result = {"frames": stored, "source": source.to_dict(), "dropped": dict(sorted(dropped.items())), "notes": notes,
              "stats": stats}
    atomic_write_json(out_dir / PAIRS_INDEX, result)
    log.info("%s: %d frames from %d pages", fetched.source_id, len(stored), source.extra["pages"])
    return result


def load_pairs(work_dir: Path) -> dict[str, Any]:
    pairs = read_json(Path(work_dir) / PAIRS_DIR / PAIRS_INDEX)
    for stored in pairs["frames"]:
        if not (Path(work_dir) / PAIRS_DIR / stored["file"]).is_file():
            raise FileNotFoundError(f"stored frame {stored['file']} is gone")
    return pairs


def _clean(frames: list[PairedFrame], cfg: IngestConfig, dropped: dict[str, int]) -> list[tuple[Any, Any, Any]]:
    """Blank pictures out (judged on colour), then the video clean's repeated-picture rule.

    Blank is judged on colour, not grey as for video frames: flat picture-book art can have every
    shape at the same grey level in different hues. A dropped picture's text moves on as in every
    clean (:class:`pipeline.frames.clean.FrameKeeper`).
    """
    import cv2

    keeper = FrameKeeper()
    extras = {}
    for frame in frames:
        picture = frame.pictures[0]
        image, mask = _frame_pixels(picture, cfg)
        candidate = FrameCandidate(image, None, None, frame.text, flags=list(frame.flags), page=frame.page)
        extras[id(candidate)] = (frame.caption, mask)
        _, std = cv2.meanStdDev(image)
        if cfg.clean.drop_blank and float(std.max()) < cfg.clean.blank_std:
            keeper.drop(candidate, "blank")
        else:
            keeper.keep(candidate)
    blank = keeper.result("book clean")
    _count(dropped, blank.dropped)
    # books have no motion blur and no intro cards: of the video rules only repeated pictures apply
    cleaned = clean_frames(blank.kept, replace(cfg.clean, drop_blank=False, drop_blurred=False, drop_intro_outro=False))
    _count(dropped, cleaned.dropped)
    return [(c, *extras[id(c)]) for c in cleaned.kept]


def _store(out_dir: Path, i: int, candidate: FrameCandidate, caption: str | None, mask: list[list[float]]) -> dict[str, Any]:
    atomic_write_bytes(out_dir / f"{i:03d}.png", encode_png(candidate.image))
    flags = {f for f in candidate.flags if f != "no_text"} | (set() if candidate.text else {"no_text"})
    return {"file": f"{i:03d}.png", "page": candidate.page, "text": candidate.text, "caption": caption,
            "flags": sorted(flags), "mask": mask}


def _book_info(book: Book, fetched: FetchedBook) -> SourceInfo:
    """What the book says about itself (the sources file's overrides come later: :func:`with_overrides`)."""
    meta = book.meta
    return SourceInfo(
        kind="ebook", url=fetched.url, title=meta.title, creator=", ".join(meta.authors) or None,
        license=normalize_license(meta.license), language=meta.language, duration_s=None,
        extra={"source_id": fetched.source_id, "format": book.format, "layout": book.layout,
               "authors": meta.authors, "illustrators": meta.illustrators, "publisher": meta.publisher,
               "license_reported": meta.license, "pages": len(book.pages), "source_sha256": fetched.sha256},
    )


def _frame_pixels(picture: Picture, cfg: IngestConfig) -> tuple[np.ndarray, list[list[float]]]:
    """The picture at most ``image_max_side`` on its long side (what the shards keep), and its mask boxes."""
    image = fit_long_side(picture.load(), cfg.shards.image_max_side)
    return np.ascontiguousarray(image), [list(box) for box in picture.mask]


def _cover(book: Book, matter: dict[int, str]) -> Picture | None:
    for page in book.pages:
        if matter.get(page.number) == "cover" and page.pictures:
            return max(page.pictures, key=lambda p: p.size[0] * p.size[1])
    return next((p for page in book.pages for p in page.pictures if is_cover_picture(p, book)), None)


def _count(total: dict[str, int], counts: dict[str, int]) -> None:
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value


def _describe(dropped: dict[str, int]) -> str:
    return ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in sorted(dropped.items()))


# --------------------------------------------------------------------------- assemble


def compute_book_story(item: SourceItem, work_dir: Path, cfg: IngestConfig, pairs: dict[str, Any]) -> Story:
    """Caption and score the stored frames (when models are on), encode them (and masks), and write
    the finished story."""
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
    frames, media = [], {}
    for i, (stored, image) in enumerate(zip(pairs["frames"], images)):
        data, width, height = encode_frame(image, cfg.shards)
        media[image_member(i)] = data
        if stored["mask"]:
            media[mask_member(i)] = mask_png(stored["mask"], width, height)
        score = None if clip[i] is None else round(clip[i], 4)
        frames.append(Frame(index=i, image=image_member(i), width=width, height=height, page=stored["page"],
                            text=stored["text"], caption=captions[i], scores={"align": None, "clip": score},
                            flags=stored["flags"], has_mask=bool(stored["mask"])))
    story = Story(story_id=item.source_id, source=SourceInfo.from_dict(pairs["source"]), frames=frames,
                  pipeline={"version": __version__, "config_hash": cfg.hash()})
    write_finished_story(work_dir, story, media)
    return story


def mask_png(boxes: list[list[float]], width: int, height: int) -> bytes:
    """A frame's mask as PNG: 255 inside the boxes (fractions of the frame), 0 elsewhere."""
    from PIL import Image

    mask = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in boxes:
        mask[max(0, int(y0 * height)):min(height, int(np.ceil(y1 * height))),
             max(0, int(x0 * width)):min(width, int(np.ceil(x1 * width)))] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()
