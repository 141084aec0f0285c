"""Prefect tasks for e-book sources: fetch -> parse (read, matter, pair, clean) -> assemble.

The book branch of the ``ingest`` flow, with the video branch's conventions
(:mod:`flows.video`): one line of wiring per stage of :mod:`pipeline.book.stages`, run through
:meth:`pipeline.workdir.SourceRun.step`. Parsing runs in the run's process pool: it is CPU-bound,
and pdfium must not be used from two threads at once. The last task (:mod:`flows.common`) writes
the marker.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import assemble_task
from flows.resources import RunResources
from pipeline.book import stages as book
from pipeline.config import IngestConfig
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


def submit_book(run: SourceRun, cfg: IngestConfig, defaults: SourceDefaults, resources: RunResources) -> Any:
    """Chain the tasks of one book source; returns the future of its SourceResult."""
    fetched = book_fetch_task.with_options(retries=cfg.run.task_retries).submit(run, cfg)
    parsed = book_parse_task.submit(fetched, cfg, defaults, resources)
    return assemble_task.with_options(name="book-assemble").submit(parsed, cfg, resources, book.assemble)
