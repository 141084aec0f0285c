"""Rebuild a dataset from a shareable manifest: fetch each source again, remake exactly its frames.

``storyloom ingest --from-manifest FILE --out DIR`` (flow :mod:`flows.rebuild`) runs, per story of
the manifest (:mod:`pipeline.dataset.manifest`), these plain stages:

- **fetch**: the source again, with the ingest's own fetch stage and the manifest's config (yt-dlp
  for a URL, a ``file://`` URL is a local path used in place); a source that cannot be fetched
  any more is *gone*: a failed row of ``sources.parquet`` with the reason, and no story. The
  file's sha256 is compared with the recorded one: a different file is *changed* (reported; the
  frames are still made and compared, a remuxed file can hold the very same frames);
- books: **parse**, the book stages' deterministic parse (read, matter, pairing, clean) with the
  manifest's config; the recorded frames are then taken from its frames by index (checked by
  page, else the frame of that page). Books are remade by rerunning that rule-based selection
  rather than by picking pictures out of the file by number, because the parse is what decides
  crops, masks and the reading order, and it has no models in it;
- **rebuild**: videos: no detection; each recorded frame is decoded again at its ``pts``
  (:mod:`pipeline.video.seek`), rectified when it was (flag ``rectified``), and encoded with the
  shards' size and JPEG quality of the manifest's config (:func:`pipeline.frames.encode.encode_frame`),
  exactly as the assemble stage did; books: the parse's frame is encoded the same way, with its mask.

Each rebuilt image (and mask) is hashed and compared with the manifest. The story written is the
manifest's (texts, captions, scores, flags, times: byte-identical when every frame matches), with
these exceptions, counted in the row's ``stats`` and listed in ``rebuild-report.json``:

- a frame whose bytes differ is **kept**, with today's pixels and size, and flagged
  ``rebuild_mismatch`` (filter it out by that flag if only exact frames will do);
- a frame the source no longer has (a video that ends earlier, a book without that page) is
  **left out**, and the frames after it renumbered.

A story of which no frame can be made fails (stage ``rebuild``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse
from urllib.request import url2pathname

from pipeline import __version__
from pipeline.config import IngestConfig, ShardConfig
from pipeline.dataset.manifest import Manifest, ManifestStory
from pipeline.errors import StageError
from pipeline.output.contract import Frame, Story, image_member, mask_member, write_finished_story
from pipeline.records import SourceResult
from pipeline.sources import SourceDefaults, SourceItem
from pipeline.storage import OutputLayout, atomic_write_json, dumps_json, write_if_changed
from pipeline.video.ytdlp import FetchError
from pipeline.workdir import SourceRun, SourceWork, run_inline

log = logging.getLogger(__name__)

FLAG_MISMATCH = "rebuild_mismatch"  # a rebuilt frame whose bytes are not the manifest's
REPORT_FILE = "rebuild-report.json"

# per recorded frame index: (image bytes, width, height, mask bytes or None), or None: not in the source
Rebuilt = dict[int, "tuple[bytes, int, int, bytes | None] | None"]


class RebuildError(StageError):
    """No frame of a story could be made again from its source."""


@dataclass
class StoryOutcome:
    """What the rebuild of one story found (a story of ``rebuild-report.json``)."""

    story_id: str
    url: str | None
    status: str = "ok"  # ok | failed (the source is gone, or nothing could be made)
    stage: str | None = None  # where it failed: fetch (the source is gone), parse, rebuild
    error: str | None = None
    source_sha256: str | None = None  # recorded in the manifest
    fetched_sha256: str | None = None  # of the file fetched today
    frames: int = 0  # recorded
    identical: list[int] = field(default_factory=list)  # recorded frame indices
    differing: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)

    @property
    def source_gone(self) -> bool:
        return self.status != "ok" and self.stage == "fetch"

    @property
    def source_changed(self) -> bool:
        return bool(self.source_sha256 and self.fetched_sha256 and self.source_sha256 != self.fetched_sha256)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "source_changed": self.source_changed, "source_gone": self.source_gone}


# --------------------------------------------------------------------------- items and work dirs


def manifest_config(manifest: Manifest) -> IngestConfig:
    """The ingest config the manifest's frames were made with (warns when its hash is not the recorded one)."""
    cfg = IngestConfig.from_dict(manifest.config)
    if manifest.config_hash and cfg.hash() != manifest.config_hash:
        log.warning("the manifest's config hashes to %s here, not %s as recorded (another storyloom version?): "
                    "frames may differ", cfg.hash(), manifest.config_hash)
    return cfg


def manifest_item(entry: ManifestStory) -> SourceItem:
    """The source of a manifest story as a sources-file item: its address, and its title, licence
    and language as recorded (they win over what the source says today, as in an ingest)."""
    source = entry.story.source
    kind = "video" if source.kind == "video" else "ebook"
    url = source.url or ""
    path = None
    if url.startswith("file:"):
        path, url = url2pathname(urlparse(url).path), None
    return SourceItem(source_id=entry.story_id, input=source.url or entry.story_id, kind=kind, url=url, path=path,
                      license=source.license, language=source.language, title=source.title)


def rebuild_work(directory: Path, item: SourceItem, cfg: IngestConfig) -> SourceWork:
    """The work directory owner of a story's source: the ingest's, so a rerun reuses the fetch."""
    if item.kind == "video":
        from pipeline.video.stages import video_work

        return video_work(directory, item, cfg)
    from pipeline.book.stages import book_work

    return book_work(directory, item, cfg)


def start_run(layout: OutputLayout, entry: ManifestStory, cfg: IngestConfig) -> SourceRun:
    item = manifest_item(entry)
    return SourceRun.start(item, rebuild_work(layout.source_dir(item.source_id), item, cfg))


# --------------------------------------------------------------------------- source functions


def fetch(run: SourceRun, cfg: IngestConfig) -> Any:
    """The fetch stage: the video (:func:`pipeline.video.stages.fetch_media`) or the book, no policy."""
    if not run.item.url and not run.item.path:
        raise FetchError("the manifest records no address for this source", permanent=True)
    if run.item.kind == "video":
        from pipeline.video.stages import fetch_media

        return fetch_media(run.work, run.item, cfg, None, SourceDefaults())
    from pipeline.book.stages import fetch_book_file

    return fetch_book_file(run.work, run.item, cfg)


def parse(run: SourceRun, cfg: IngestConfig, run_in: Callable[..., Any] = run_inline) -> dict[str, Any] | None:
    """Books: the book stages' parse (no policy); videos have nothing to parse."""
    if run.item.kind == "video":
        return None
    from pipeline.book.stages import parse_book

    return parse_book(run.work, run.item, run.outputs["fetch"], cfg, None, run_in)


def rebuild(run: SourceRun, cfg: IngestConfig, entry: ManifestStory,
            run_in: Callable[..., Any] = run_inline) -> StoryOutcome:
    """Make the recorded frames again, compare them, and write the finished story."""
    story = entry.story
    fetched = run.outputs["fetch"]
    outcome = StoryOutcome(story.story_id, story.source.url, source_sha256=story.source.extra.get("source_sha256"),
                           frames=len(story.frames))
    if run.item.kind == "video":
        outcome.fetched_sha256 = fetched.info.get("sha256")
        rebuilt = run_in(rebuild_video_frames, fetched.video_path, story, cfg.shards)
    else:
        outcome.fetched_sha256 = fetched.sha256
        rebuilt = run_in(rebuild_book_frames, str(run.work.dir), run.outputs["parse"], story, cfg.shards)
    final, media = compare_frames(entry, rebuilt, outcome)
    if not final.frames:
        raise RebuildError(f"none of the {len(story.frames)} recorded frames is in the source any more")
    write_finished_story(run.work.dir, final, media)
    result = run.result
    result.story_id, result.frames = final.story_id, len(final.frames)
    result.stats = {"frames_identical": len(outcome.identical), "frames_differing": len(outcome.differing),
                    "frames_missing": len(outcome.missing), "source_changed": int(outcome.source_changed)}
    for line in outcome_notes(outcome):
        run.note(line)
    return outcome


def outcome_notes(outcome: StoryOutcome) -> list[str]:
    """What went wrong with a story that was rebuilt, one remark per problem."""
    notes = []
    if outcome.source_changed:
        notes.append(f"source changed: sha256 {outcome.fetched_sha256} instead of {outcome.source_sha256}")
    if outcome.differing:
        notes.append(f"frames differ: {', '.join(map(str, outcome.differing))} (kept, flagged {FLAG_MISMATCH})")
    if outcome.missing:
        notes.append(f"frames not in the source: {', '.join(map(str, outcome.missing))} (left out)")
    return notes


# --------------------------------------------------------------------------- compute


def rebuild_video_frames(video_path: str, story: Story, shards: ShardConfig) -> Rebuilt:
    """Each recorded frame decoded again at its pts, rectified if it was, encoded as the assemble stage does."""
    from pipeline.frames.encode import encode_frame
    from pipeline.video.rectify import FLAG_RECTIFIED, rectify_page
    from pipeline.video.seek import FrameRef, decode_frames

    refs = [FrameRef(frame.pts, frame.t_frame) for frame in story.frames]
    images = decode_frames(video_path, refs, story.source.extra.get("time_base"))
    rebuilt: Rebuilt = {}
    for frame, image in zip(story.frames, images):
        if image is None:
            rebuilt[frame.index] = None
            continue
        if FLAG_RECTIFIED in frame.flags:
            image = rectify_page(image)
            if image is None:  # no page quadrilateral in today's frame: it cannot be the same picture
                rebuilt[frame.index] = None
                continue
        data, width, height = encode_frame(image, shards)
        rebuilt[frame.index] = (data, width, height, None)
    return rebuilt


def rebuild_book_frames(work_dir: str, pairs: dict[str, Any], story: Story, shards: ShardConfig) -> Rebuilt:
    """Each recorded frame taken from the parse's frames (by index, checked by page), encoded with its
    mask as the book assemble stage does."""
    import numpy as np
    from PIL import Image

    from pipeline.book.stages import PAIRS_DIR, mask_png
    from pipeline.frames.encode import encode_frame

    stored_frames = pairs["frames"]
    rebuilt: Rebuilt = {}
    for frame in story.frames:
        stored = stored_frames[frame.index] if frame.index < len(stored_frames) else None
        if stored is None or stored["page"] != frame.page:  # the book changed: the frame of that page, if any
            stored = next((s for s in stored_frames if s["page"] == frame.page), None)
        if stored is None:
            rebuilt[frame.index] = None
            continue
        with Image.open(Path(work_dir) / PAIRS_DIR / stored["file"]) as picture:
            image = np.asarray(picture.convert("RGB"))
        data, width, height = encode_frame(image, shards)
        mask = mask_png(stored["mask"], width, height) if stored["mask"] else None
        rebuilt[frame.index] = (data, width, height, mask)
    return rebuilt


def compare_frames(entry: ManifestStory, rebuilt: Rebuilt, outcome: StoryOutcome) -> tuple[Story, dict[str, bytes]]:
    """The story to write and its media: the manifest's story with today's pixels; a differing frame
    kept and flagged, a missing one left out (the rest renumbered). Fills ``outcome``."""
    story = entry.story
    frames: list[Frame] = []
    media: dict[str, bytes] = {}
    for frame in story.frames:
        made = rebuilt.get(frame.index)
        if made is None:
            outcome.missing.append(frame.index)
            continue
        data, width, height, mask = made
        same = (_sha(data) == entry.media_sha256.get(frame.image)
                and (_sha(mask) if mask is not None else None) == entry.media_sha256.get(mask_member(frame.index)))
        i = len(frames)
        new = replace(frame, index=i, image=image_member(i), width=width, height=height, has_mask=mask is not None,
                      flags=list(frame.flags) if same else sorted(set(frame.flags) | {FLAG_MISMATCH}))
        (outcome.identical if same else outcome.differing).append(frame.index)
        media[new.image] = data
        if mask is not None:
            media[mask_member(i)] = mask
        frames.append(new)
    return replace(story, frames=frames), media


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the dataset


def failed_outcome(run: SourceRun, entry: ManifestStory) -> StoryOutcome:
    """The outcome of a story whose source is gone (or of which nothing could be made)."""
    source = entry.story.source
    return StoryOutcome(entry.story_id, source.url, status="failed", stage=run.result.stage, error=run.result.error,
                        source_sha256=source.extra.get("source_sha256"), frames=len(entry.story.frames))


def write_rebuilt_dataset(layout: OutputLayout, manifest: Manifest, cfg: IngestConfig, results: list[SourceResult],
                          outcomes: list[StoryOutcome]) -> dict[str, int]:
    """Shards, catalog, sources table and card of the rebuilt stories, with the manifest's config and
    version (so a story whose frames all match is byte-identical), and ``rebuild-report.json``."""
    from pipeline.output.card import write_card
    from pipeline.output.catalog import write_catalog, write_sources_table
    from pipeline.output.shards import write_shards

    config_hash = manifest.config_hash or cfg.hash()
    version = manifest.pipeline_version or __version__
    resolved = {"config": manifest.config, "config_hash": config_hash, "version": version}
    write_if_changed(layout.config, dumps_json(resolved).encode("utf-8"))
    ok_dirs = sorted(layout.source_dir(r.source_id) for r in results if r.status == "ok")
    summary = write_shards(ok_dirs, layout, cfg.shards, config_hash, version)
    write_catalog(summary, layout.catalog)
    write_sources_table(results, layout.sources_table)
    write_card(summary, results, cfg.output_settings(), layout)
    totals = rebuild_totals(outcomes)
    report = {"totals": totals, "stories": [o.to_dict() for o in sorted(outcomes, key=lambda o: o.story_id)]}
    atomic_write_json(layout.root / REPORT_FILE, report)
    return {"stories": summary.stories, "frames": summary.frames, "shards": len(summary.shards), **totals}


def rebuild_totals(outcomes: list[StoryOutcome]) -> dict[str, int]:
    ok = [o for o in outcomes if o.status == "ok"]
    return {"stories_recorded": len(outcomes), "stories_rebuilt": len(ok),
            "sources_gone": sum(o.source_gone for o in outcomes), "sources_changed": sum(o.source_changed for o in ok),
            "stories_failed": sum(o.status != "ok" and not o.source_gone for o in outcomes),
            "frames_recorded": sum(o.frames for o in outcomes), "frames_identical": sum(len(o.identical) for o in ok),
            "frames_differing": sum(len(o.differing) for o in ok), "frames_missing": sum(len(o.missing) for o in ok)}


def summary_lines(outcomes: list[StoryOutcome]) -> list[str]:
    """One line per problem, stories in id order (for the command line's summary)."""
    lines = []
    for outcome in sorted(outcomes, key=lambda o: o.story_id):
        if outcome.status != "ok":
            what = "gone" if outcome.source_gone else f"failed at {outcome.stage}"
            lines.append(f"{what}: {outcome.story_id} ({outcome.url}): {outcome.error}")
            continue
        lines.extend(f"{outcome.story_id}: {note}" for note in outcome_notes(outcome))
    return lines
