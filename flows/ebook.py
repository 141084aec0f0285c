"""Prefect tasks for e-book sources: fetch -> parse (read, matter, pair, clean) -> assemble.

The book branch of the ``ingest`` flow (:mod:`flows.ingest`), with the video branch's
conventions: every task takes and returns the source's state, a failed stage records its error
and the later stages pass the state on untouched, and the assemble task writes the source's
``DONE.json`` (or, for a permanent failure, ``FAILED.json``) last. Parsing runs in the flow's
decode process pool: it is CPU-bound, and pdfium must not be used from two threads at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows import ingest
from pipeline.config import IngestConfig
from pipeline.records import SourceResult


@dataclass
class BookState(ingest.SourceState):
    """A source's state, plus what the book stages hand on."""

    book: Any = None  # pipeline.book.fetch.FetchedBook
    pairs: dict | None = None  # the parse stage's index (pairs.json)


def _book_failure(state: BookState, stage: str, exc: Exception) -> None:
    skipped = bool(getattr(exc, "skipped", False))
    permanent = bool(getattr(exc, "permanent", True))
    ingest._fail(state, stage, str(exc), "skipped" if skipped else "failed", permanent=permanent)


@task(name="book-fetch", cache_policy=NO_CACHE)
def book_fetch_task(state: BookState, cfg: IngestConfig) -> BookState:
    from pipeline.book.model import EbookError
    from pipeline.book.fetch import fetch_book
    from pipeline.video.ytdlp import FetchError

    start = time.perf_counter()
    try:
        state.book = fetch_book(state.item, state.work_dir, cfg.fetch, cfg.ebook)
    except (FetchError, EbookError) as exc:
        _book_failure(state, "fetch", exc)
    ingest._timed(state, "fetch", time.perf_counter() - start)
    return state


@task(name="book-parse", cache_policy=NO_CACHE)
def book_parse_task(state: BookState, defaults: Any, cfg: IngestConfig) -> BookState:
    from pipeline.book.model import EbookError
    from pipeline.book.stages import run_book_parse_stage

    if state.failed:
        return state
    start = time.perf_counter()
    try:
        state.pairs = ingest._decode_in_process(run_book_parse_stage, state.book, state.item, state.work_dir, cfg, defaults)
    except EbookError as exc:
        _book_failure(state, "parse", exc)
    else:
        source = state.pairs["source"]
        state.result.title = source.get("title") or state.result.title
        state.result.license = source.get("license")
        state.result.language = source.get("language")
    ingest._timed(state, "parse", time.perf_counter() - start)
    return state


@task(name="book-assemble", cache_policy=NO_CACHE)
def book_assemble_task(state: BookState, cfg: IngestConfig) -> SourceResult:
    """Encode the frames, write story.json, then the source's marker (last)."""
    from pipeline.book.stages import assemble_book_story

    if not state.failed:
        start = time.perf_counter()
        with ingest._model_slot(cfg.models.clip.enabled or cfg.models.captions.enabled):
            story = assemble_book_story(state.item.source_id, state.work_dir, cfg, state.pairs)
        state.result.story_id = story.story_id
        state.result.frames = len(story.frames)
        state.result.dropped = dict(state.pairs["dropped"])
        if state.pairs.get("notes"):
            state.result.error = "; ".join(state.pairs["notes"])  # a note, not a failure
        ingest._timed(state, "assemble", time.perf_counter() - start)
    return ingest.finish_source(state, cfg)


def submit_book(item: Any, work_dir: Path, defaults: Any, cfg: IngestConfig) -> Any:
    """Chain the book tasks of one source; returns the future of its SourceResult."""
    state = BookState(item=item, work_dir=work_dir, result=ingest._source_row(item))
    fetched = book_fetch_task.with_options(retries=cfg.run.task_retries).submit(state, cfg)
    parsed = book_parse_task.submit(fetched, defaults, cfg)
    return book_assemble_task.submit(parsed, cfg)
