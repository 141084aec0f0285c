"""Prefect tasks for e-book sources: fetch -> parse (read, matter, pair, clean) -> assemble.

The book branch of the ``ingest`` flow, with the video branch's conventions
(:mod:`flows.video`): one line of wiring per stage of :mod:`pipeline.book.stages`, run through
:meth:`pipeline.workdir.SourceRun.step`. Parsing runs in the run's process pool: it is CPU-bound,
and pdfium must not be used from two threads at once. The last task (:mod:`flows.common`) writes
the marker. :func:`book_steps` lists them for the flow.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import assemble_task
from flows.inflight import Step
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


def book_steps(cfg: IngestConfig, defaults: SourceDefaults, resources: RunResources) -> list[Step]:
    """The steps of one book source, each in its lane (:mod:`flows.inflight`)."""
    return [Step(book_fetch_task.with_options(retries=cfg.run.task_retries), (cfg,), "download"),
            Step(book_parse_task, (cfg, defaults, resources), "decode"),
            Step(assemble_task.with_options(name="book-assemble"), (cfg, resources, book.assemble), "host")]
