"""Prefect tasks for e-book sources: fetch -> parse (read, matter, pair, clean) -> assemble.

The book branch of the ``ingest`` flow, with the video branch's conventions
(:mod:`flows.video`): one line of wiring per stage of :mod:`pipeline.book.stages`, run through
:meth:`pipeline.workdir.SourceRun.step`. Parsing runs in the run's process pool: it is CPU-bound,
and pdfium must not be used from two threads at once. The last task writes the source's marker.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.resources import RunResources
from pipeline.book import stages as book
from pipeline.config import IngestConfig
from pipeline.records import SourceResult
from pipeline.sources import SourceDefaults
from pipeline.workdir import SourceRun


@task(name="book-fetch", cache_policy=NO_CACHE)
def book_fetch_task(run: SourceRun, cfg: IngestConfig) -> SourceRun:
    run.step("fetch", book.fetch, cfg)
    return run


@task(name="book-parse", cache_policy=NO_CACHE)
def book_parse_task(run: SourceRun, cfg: IngestConfig, defaults: SourceDefaults, resources: RunResources) -> SourceRun:
    run.step("parse", book.parse, cfg, defaults, resources.in_process)
    return run


@task(name="book-assemble", cache_policy=NO_CACHE)
def book_assemble_task(run: SourceRun, cfg: IngestConfig, resources: RunResources) -> SourceResult:
    """Caption, score and encode the frames, write story.json, then the source's marker (last)."""
    with resources.model_slot(cfg.models.clip.enabled or cfg.models.captions.enabled):
        run.step("assemble", book.assemble, cfg)
    return run.finish()


def submit_book(run: SourceRun, cfg: IngestConfig, defaults: SourceDefaults, resources: RunResources) -> Any:
    """Chain the tasks of one book source; returns the future of its SourceResult."""
    fetched = book_fetch_task.with_options(retries=cfg.run.task_retries).submit(run, cfg)
    parsed = book_parse_task.submit(fetched, cfg, defaults, resources)
    return book_assemble_task.submit(parsed, cfg, resources)
