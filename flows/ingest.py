"""Prefect flow ``ingest``: sources file -> story shards, one task per source and stage.

The flow only wires stages from ``pipeline/``: it adds retries, concurrency, resume and logging.

- Downloads run on the flow's thread pool (``run.download_workers`` at a time).
- Decoding (the keyframe stage, the book parse stage) runs in a process pool of ``run.decode_workers`` processes,
  so the CPU-bound work is not serialised by the GIL.
- Models (``models`` in the config) are loaded once in the flow's process before the first
  source (a model that cannot be loaded fails the run there); the stages that use one (ASR in
  text, CLIP and captions in assemble) hold one of ``models.max_concurrent`` slots while they run.
- Resume: a source is finished when its ``DONE.json`` marker is written (last). A rerun reuses
  finished sources whose config hash matches, and sources that failed permanently (a removed
  video, a policy skip); everything else runs again, each stage reusing what the killed run had
  already stored in the source's work directory.
- Per-source failures are values: every stage task returns the source's state, and a failed
  source carries its error to ``sources.parquet`` while the others go on. Bugs still raise.

Caching is done with these files rather than Prefect's result cache: the files are the data, so
a rerun on another machine, or with the Prefect database wiped, resumes just the same.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner

from pipeline import __version__
from pipeline.config import IngestConfig
from pipeline.records import FetchedMedia, SourceResult
from pipeline.storage import OutputLayout, atomic_write_json, dumps_json, read_json, write_if_changed

DONE_MARKER = "DONE.json"
FAILED_MARKER = "FAILED.json"


@dataclass
class SourceState:
    """What travels from one stage task of a source to the next."""

    item: Any  # pipeline.sources.SourceItem
    work_dir: Path
    result: SourceResult
    media: FetchedMedia | None = None
    keyframes: list | None = None
    transcript: Any = None
    permanent: bool = False  # a failure that a rerun would only repeat
    started: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.result.status != "ok"


def _fail(state: SourceState, stage: str, message: str, status: str = "failed", permanent: bool = False) -> SourceState:
    state.result.status = status
    state.result.stage = stage
    state.result.error = message
    state.permanent = permanent
    return state


def _timed(state: SourceState, stage: str, seconds: float) -> None:
    state.result.timings[stage] = round(seconds, 3)


# Decoding runs in processes; the pool lives for one flow run.
_decode_pool: concurrent.futures.ProcessPoolExecutor | None = None


def _decode_in_process(fn, *args):
    if _decode_pool is None:  # a stage task called outside the flow: run inline
        return fn(*args)
    return _decode_pool.submit(fn, *args).result()


# Model stages (ASR in text, CLIP and captions in assemble) hold one of `models.max_concurrent`
# slots while they run, so memory stays bounded however many sources are in flight. Models
# themselves are loaded once per process (pipeline.models.loading), before the first source.
_model_slots: threading.BoundedSemaphore | None = None


@contextlib.contextmanager
def _model_slot(needed: bool):
    if not needed or _model_slots is None:
        yield
        return
    with _model_slots:
        yield


@task(name="expand", cache_policy=NO_CACHE)
def expand_task(entry, defaults, cfg: IngestConfig) -> tuple[list, SourceResult | None]:
    """A sources-file entry -> downloadable items (playlists, channels and searches expand)."""
    from pipeline.video.fetch import FetchError
    from pipeline.sources import entry_id, expand_entry

    try:
        return expand_entry(entry, defaults, cfg.fetch), None
    except FetchError as exc:
        failed = SourceResult(
            source_id=entry_id(entry), input=entry.url or str(entry.path), kind=entry.kind or "video",
            status="skipped" if getattr(exc, "skipped", False) else "failed", error=str(exc), stage="expand",
        )
        return [], failed


@task(name="fetch", cache_policy=NO_CACHE)
def fetch_task(state: SourceState, layout: OutputLayout, defaults, cfg: IngestConfig) -> SourceState:
    from pipeline.video.fetch import FetchError, fetch_local, fetch_video

    start = time.perf_counter()
    item = state.item
    try:
        if item.path is not None:
            state.media = fetch_local(item, state.work_dir, defaults)
        else:
            state.media = fetch_video(item, state.work_dir, cfg.fetch, layout.download_archive, defaults)
    except FetchError as exc:
        skipped = getattr(exc, "skipped", False)
        _fail(state, "fetch", str(exc), "skipped" if skipped else "failed", permanent=exc.permanent)
    info = state.media.info if state.media else {}
    state.result.title = info.get("title") or item.title
    state.result.license = info.get("license") or item.license
    state.result.language = info.get("language") or item.language
    _timed(state, "fetch", time.perf_counter() - start)
    return state


def _run_stage(state: SourceState, stage: str, call, errors: tuple[type[Exception], ...], prefix: str = ""):
    """Run one stage of a source unless an earlier stage failed; its expected errors fail the source.

    The errors listed are per-item data problems (a corrupt file, unusable subtitles) that a rerun
    would only repeat, so they are permanent; anything else is a bug and raises.
    """
    if state.failed:
        return None
    start = time.perf_counter()
    try:
        return call()
    except errors as exc:
        _fail(state, stage, f"{prefix}{exc}", permanent=True)
        return None
    finally:
        _timed(state, stage, time.perf_counter() - start)


@task(name="keyframes", cache_policy=NO_CACHE)
def keyframes_task(state: SourceState, cfg: IngestConfig) -> SourceState:
    from pipeline.video.keyframes import KeyframeError
    from pipeline.video.stages import run_keyframe_stage

    state.keyframes = _run_stage(
        state, "keyframes", lambda: _decode_in_process(run_keyframe_stage, state.media, state.work_dir, cfg), (KeyframeError,)
    )
    return state


@task(name="text", cache_policy=NO_CACHE)
def text_task(state: SourceState, cfg: IngestConfig) -> SourceState:
    from pipeline.text.subtitles import SubtitleError
    from pipeline.text.transcript import TextSourceError
    from pipeline.video.stages import run_text_stage

    def transcribe():
        try:
            return run_text_stage(state.media, state.work_dir, cfg)
        except SubtitleError as exc:
            raise TextSourceError(f"subtitles unusable: {exc}") from exc

    with _model_slot(cfg.models.asr.active):
        state.transcript = _run_stage(state, "text", transcribe, (TextSourceError,))
    return state


@task(name="assemble", cache_policy=NO_CACHE)
def assemble_task(state: SourceState, cfg: IngestConfig) -> SourceResult:
    """Align, clean and encode one story, then write the source's DONE marker (last)."""
    from pipeline.video.stages import NoNarrationError, NoTextError, assemble_video_story

    if not state.failed:
        start = time.perf_counter()
        try:
            with _model_slot(cfg.models.clip.enabled or cfg.models.captions.enabled):
                story, dropped = assemble_video_story(state.media, state.work_dir, cfg, state.keyframes, state.transcript)
        except NoTextError as exc:
            _fail(state, "text", str(exc), "skipped", permanent=True)
        except NoNarrationError as exc:
            _fail(state, "text", str(exc), permanent=True)
        else:
            state.result.story_id = story.story_id
            state.result.frames = len(story.frames)
            state.result.dropped = dropped
            if state.transcript.origin == "none":
                # kept, but say why every text is empty: a note, not a failure
                state.result.error = "no subtitles found: frames kept with empty texts (flag no_text_source)"
            elif not story.source.extra.get("has_audio", True):
                state.result.error = "the video has no audio track; texts come from its subtitles"
        _timed(state, "assemble", time.perf_counter() - start)
    return finish_source(state, cfg)


def finish_source(state: SourceState, cfg: IngestConfig) -> SourceResult:
    """Write the source's marker, last: DONE when it succeeded, FAILED when a rerun would only repeat the failure."""
    marker = {"result": state.result.to_dict(), "config_hash": cfg.hash(), "version": __version__}
    if not state.failed:
        atomic_write_json(state.work_dir / DONE_MARKER, marker)
    elif state.permanent:
        atomic_write_json(state.work_dir / FAILED_MARKER, marker)
    return state.result


def _finished(work_dir: Path, cfg: IngestConfig) -> SourceResult | None:
    """The stored result of a source that a rerun must not redo, if there is one."""
    for name in (DONE_MARKER, FAILED_MARKER):
        marker = work_dir / name
        if marker.exists():
            data = read_json(marker)
            if data.get("config_hash") == cfg.hash():
                return SourceResult.from_dict(data["result"])
    return None


@task(name="write-dataset", cache_policy=NO_CACHE)
def write_dataset_task(layout: OutputLayout, results: list[SourceResult], cfg: IngestConfig) -> dict:
    from pipeline.output.card import write_card
    from pipeline.output.catalog import write_catalog, write_sources_table
    from pipeline.output.shards import write_shards

    ok_dirs = sorted(layout.source_dir(r.source_id) for r in results if r.status == "ok")
    summary = write_shards(ok_dirs, layout, cfg.shards, cfg.hash(), __version__)
    write_catalog(summary, layout.catalog)
    write_sources_table(results, layout.sources_table)
    write_card(summary, results, cfg.output_settings(), layout)  # models only when one is used
    return {"stories": summary.stories, "frames": summary.frames, "shards": len(summary.shards)}


def _source_row(item) -> SourceResult:
    return SourceResult(
        source_id=item.source_id, input=item.input, kind=item.kind,
        title=item.title, license=item.license, language=item.language, status="ok",
    )


@flow(name="ingest", log_prints=False)
def ingest(sources_file: str, out_dir: str, config_file: str | None = None) -> dict:
    """Build a story dataset in ``out_dir`` from the sources listed in ``sources_file``."""
    from pipeline.sources import load_sources

    logger = get_run_logger()
    cfg = IngestConfig.load(config_file)
    sources = load_sources(sources_file)
    layout = OutputLayout(Path(out_dir))
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"config": cfg.to_dict(), "config_hash": cfg.hash(), "version": __version__}
    write_if_changed(layout.config, dumps_json(resolved).encode("utf-8"))

    from pipeline.models.loading import load_enabled_models

    load_enabled_models(cfg.models)  # a model that cannot be loaded fails the run here, before any source
    global _decode_pool, _model_slots
    _model_slots = threading.BoundedSemaphore(cfg.models.max_concurrent)
    _decode_pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=cfg.run.decode_workers, mp_context=multiprocessing.get_context("spawn")
    )
    try:
        results = _run_sources(sources, layout, cfg, logger)
    finally:
        _decode_pool.shutdown(cancel_futures=True)
        _decode_pool = None
    summary = write_dataset_task(layout, results, cfg)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    logger.info(
        "ingest done: %d stories, %d frames, %d shards; sources ok %d, skipped %d, failed %d",
        summary["stories"], summary["frames"], summary["shards"], counts["ok"], counts["skipped"], counts["failed"],
    )
    return {**summary, "sources": counts, "out": str(layout.root)}


def _run_sources(sources, layout: OutputLayout, cfg: IngestConfig, logger: logging.Logger) -> list[SourceResult]:
    results: list[SourceResult] = []
    expansions = [expand_task.submit(entry, sources.defaults, cfg) for entry in sources.entries]
    items = []
    for future in expansions:
        expanded, failure = future.result()
        items.extend(expanded)
        if failure is not None:
            results.append(failure)
            logger.warning("source %s %s: %s", failure.input, failure.status, failure.error)

    fetch = fetch_task.with_options(retries=cfg.run.task_retries)
    pending = []
    seen: set[str] = set()
    for item in items:
        if item.source_id in seen:  # the same video listed twice (or in two playlists)
            continue
        seen.add(item.source_id)
        work_dir = layout.source_dir(item.source_id)
        previous = _finished(work_dir, cfg)
        if previous is not None:
            results.append(previous)
            continue
        if item.kind == "ebook":  # fetch -> parse (read, matter, pair, clean) -> assemble: flows/ebook.py
            from flows.ebook import submit_book

            work_dir.mkdir(parents=True, exist_ok=True)
            pending.append(submit_book(item, work_dir, sources.defaults, cfg))
            continue
        if item.kind != "video":
            results.append(replace(_source_row(item), status="skipped", stage="expand",
                                   error=f"{item.kind} sources are not supported by this version"))
            continue
        work_dir.mkdir(parents=True, exist_ok=True)
        state = SourceState(item=item, work_dir=work_dir, result=_source_row(item))
        fetched = fetch.submit(state, layout, sources.defaults, cfg)
        keyed = keyframes_task.submit(fetched, cfg)
        texted = text_task.submit(keyed, cfg)
        pending.append(assemble_task.submit(texted, cfg))

    total = len(pending)
    logger.info("%d source(s) to process, %d already finished", total, len(results))
    for done, future in enumerate(as_completed(pending), start=1):
        result = future.result()
        results.append(result)
        detail = f"{result.frames} frames" if result.status == "ok" else f"{result.stage}: {result.error}"
        logger.info("[%d/%d] %s %s (%s)", done, total, result.source_id, result.status, detail)
    return sorted(results, key=lambda r: r.source_id)
