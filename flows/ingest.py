"""Prefect flow ``ingest``: sources file -> story shards, one task per source and stage.

The flow only wires stages from ``pipeline/``: it adds concurrency, retries and logging.

- Sources-file entries expand (playlists, channels, searches: ``expand`` tasks) a few ahead of
  the sources being started, so the first downloads do not wait for the last listing.
- Each source's stages run as tasks on the flow's task runner, video sources through
  :mod:`flows.video`, books through :mod:`flows.book`; at most ``run.max_sources_in_flight``
  sources are in flight, each stage submitted when it can start, so downloads of some sources
  overlap the decoding of others and memory does not grow with the number of sources
  (:mod:`flows.inflight`). Results stream back as sources finish.
  With ``run.executor: dask`` the same tasks run on a Dask cluster instead (:mod:`flows.executor`).
- The CPU-bound stages run in the run's process pool and model stages hold a model slot
  (:class:`flows.resources.RunResources`, handed to every task). Models are loaded once in the
  flow's process before the first source, so a model that cannot be loaded fails the run there.
- Resume and reuse are the work directory owner's (:class:`pipeline.workdir.SourceWork`): a
  source whose marker names today's inputs and config is not run at all; the others run, each
  stage reusing its stored output when exactly what it reads is unchanged.
- Per-source failures are values (``sources.parquet`` rows); bugs still raise.

Caching is done with these files rather than Prefect's result cache: the files are the data, so
a rerun on another machine, or with the Prefect database wiped, resumes just the same.
"""

from __future__ import annotations

import collections
import itertools
import logging
from typing import Iterable, Iterator

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.book import book_steps
from flows.common import whole_source
from flows.executor import dask_lanes, stage_lanes
from flows.inflight import Step, forget_task_results, run_bounded
from flows.resources import RunResources
from flows.video import video_steps
from pipeline import __version__
from pipeline.config import IngestConfig
from pipeline.errors import StageError
from pipeline.objectstore import OutputTarget, resolve_output
from pipeline.records import SourceResult
from pipeline.sources import SourceDefaults, SourceEntry, SourceItem
from pipeline.storage import OutputLayout, dumps_json, write_if_changed
from pipeline.workdir import SourceRun


@task(name="expand", cache_policy=NO_CACHE)
def expand_task(entry: SourceEntry, defaults: SourceDefaults, cfg: IngestConfig) -> tuple[list[SourceItem], SourceResult | None]:
    """A sources-file entry -> downloadable items (playlists, channels and searches expand)."""
    from pipeline.sources import expand_entry

    try:
        return expand_entry(entry, defaults, cfg.fetch), None
    except StageError as error:
        failed = SourceResult(source_id=entry.source_id, input=entry.url or str(entry.path), kind=entry.kind or "video",
                              status=error.status, error=str(error), stage="expand")
        return [], failed


@task(name="write-dataset", cache_policy=NO_CACHE)
def write_dataset_task(layout: OutputLayout, results: list[SourceResult], cfg: IngestConfig,
                       target: OutputTarget | None = None) -> dict:
    """The dataset files in ``layout.root``; for a remote ``--out``, then published to the store."""
    from pipeline.objectstore import publish
    from pipeline.output.card import write_card
    from pipeline.output.catalog import write_catalog, write_sources_table
    from pipeline.output.shards import write_shards

    ok_dirs = sorted(layout.source_dir(r.source_id) for r in results if r.status == "ok")
    summary = write_shards(ok_dirs, layout, cfg.shards, cfg.hash(), __version__)
    write_catalog(summary, layout.catalog)
    write_sources_table(results, layout.sources_table)
    remote = target is not None and target.remote
    name = target.name if remote else None  # a remote dataset's card: titled after its URL, not the work dir
    write_card(summary, results, cfg.output_settings(), layout, name=name)  # models only when one is used
    written = {"stories": summary.stories, "frames": summary.frames, "shards": len(summary.shards)}
    if remote:
        # the network retry settings also cover the store: an outage outlasting them fails the run; rerun it
        report = publish(layout, target.store(retries=cfg.fetch.retries, backoff_s=cfg.fetch.backoff_s))
        written["published"] = {"uploaded": len(report.uploaded), "unchanged": len(report.unchanged),
                                "removed": len(report.removed)}
    return written


@flow(name="ingest", log_prints=False)
def ingest(sources_file: str, out_dir: str, config_file: str | None = None, work_dir: str | None = None,
           storage_options: dict | None = None, run_settings: dict | None = None) -> dict:
    """Build a story dataset in ``out_dir`` (a directory or an object store URL: then built in
    ``work_dir`` and published, :mod:`pipeline.objectstore`) from the sources in ``sources_file``.

    ``run_settings`` override the config file's ``run`` section (the command line's --executor ...);
    with ``run.executor: dask`` run this flow with :func:`flows.executor.task_runner`'s Dask runner.
    """
    from pipeline.models.loading import load_enabled_models
    from pipeline.sources import load_sources

    logger = get_run_logger()
    cfg = IngestConfig.load(config_file).with_run(**(run_settings or {}))
    sources = load_sources(sources_file)
    target = resolve_output(out_dir, work_dir, storage_options)
    layout = OutputLayout(target.local_root)
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    resolved = {"config": cfg.to_dict(), "config_hash": cfg.hash(), "version": __version__}
    write_if_changed(layout.config, dumps_json(resolved).encode("utf-8"))

    load_enabled_models(cfg.models)  # a model that cannot be loaded fails the run here, before any source
    if cfg.run.executor == "dask":  # the tasks run in the Dask workers: no pool here, each worker's own slots
        results = _run_sources(sources, layout, cfg, RunResources.for_cluster(cfg), logger)
    else:
        with RunResources.open(cfg) as resources:
            results = _run_sources(sources, layout, cfg, resources, logger)
    summary = write_dataset_task(layout, results, cfg, target)
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    logger.info(
        "ingest done: %d stories, %d frames, %d shards; sources ok %d, skipped %d, failed %d",
        summary["stories"], summary["frames"], summary["shards"], counts["ok"], counts["skipped"], counts["failed"],
    )
    return {**summary, "sources": counts, "out": target.url, "results": [r.to_dict() for r in results]}


def _run_sources(sources, layout: OutputLayout, cfg: IngestConfig, resources: RunResources,
                 logger: logging.Logger) -> list[SourceResult]:
    results: list[SourceResult] = []
    local = cfg.run.executor == "local"
    lanes, in_flight = (stage_lanes(cfg), cfg.run.sources_in_flight()) if local else dask_lanes(cfg)
    logger.info("%d sources-file entries; at most %d sources in flight", len(sources.entries), in_flight)
    items = _expand_ahead(sources, cfg, results, logger, ahead=cfg.run.download_workers)
    started = _start_sources(items, layout, cfg, sources.defaults, resources, results)
    for done, result in enumerate(run_bounded(started, lanes, in_flight, lost=_worker_lost, quoted=local), start=1):
        results.append(result)
        detail = f"{result.frames} frames" if result.status == "ok" else f"{result.stage}: {result.error}"
        reused = f"; reused {', '.join(result.reused)}" if result.reused else ""
        logger.info("[%d] %s %s (%s%s)", done, result.source_id, result.status, detail, reused)
    return sorted(results, key=lambda r: r.source_id)


def _expand_ahead(sources, cfg: IngestConfig, results: list[SourceResult], logger: logging.Logger,
                  ahead: int) -> Iterator[SourceItem]:
    """Every entry's items, in the sources file's order, listing ``ahead`` entries in advance:
    the first sources start while later entries are still being listed (not after all of them)."""
    entries = iter(sources.entries)
    window: collections.deque = collections.deque(
        expand_task.submit(entry, sources.defaults, cfg) for entry in itertools.islice(entries, ahead))
    while window:
        listed = window.popleft().result()
        forget_task_results(listed)  # passed to no task: the items go on in new SourceRuns
        expanded, failure = listed
        following = next(entries, None)
        if following is not None:
            window.append(expand_task.submit(following, sources.defaults, cfg))
        if failure is not None:
            results.append(failure)
            logger.warning("source %s %s: %s", failure.input, failure.status, failure.error)
        yield from expanded


def _start_sources(items: Iterable[SourceItem], layout: OutputLayout, cfg: IngestConfig, defaults: SourceDefaults,
                   resources: RunResources, results: list[SourceResult]) -> Iterator[tuple[SourceRun, list[Step]]]:
    """The sources that need work, one at a time as there is room for them (:func:`run_bounded`
    asks); finished and unsupported ones go straight to ``results``."""
    from pipeline.book.stages import book_work
    from pipeline.video.stages import video_work

    steps = {"video": video_steps(cfg, defaults, resources, layout.download_archive),
             "ebook": book_steps(cfg, defaults, resources)}
    if cfg.run.executor == "dask":  # a task run costs more than a stage on a worker: one per source
        steps = {kind: whole_source(kind_steps, cfg.run.task_retries) for kind, kind_steps in steps.items()}
    seen: set[str] = set()
    for item in items:
        if item.source_id in seen:  # the same video listed twice (or in two playlists)
            continue
        seen.add(item.source_id)
        if item.kind not in ("video", "ebook"):
            row = SourceResult.for_item(item)
            row.status, row.stage, row.error = "skipped", "expand", f"{item.kind} sources are not supported by this version"
            results.append(row)
            continue
        make_work = video_work if item.kind == "video" else book_work
        work = make_work(layout.source_dir(item.source_id), item, cfg, defaults)
        previous = work.finished()
        if previous is not None:
            results.append(previous)
            continue
        yield SourceRun.start(item, work), steps[item.kind]


def _worker_lost(run: SourceRun, error: Exception) -> SourceResult | None:
    """The row of a source whose task killed every Dask worker that ran it (out of memory, a crash in
    a native library): a failure of that source, not of the run; no marker, so a rerun tries again.
    Any other exception is a bug and is raised (None)."""
    if type(error).__name__ != "KilledWorker":  # distributed's, checked by name: distributed is optional
        return None
    row = SourceResult.for_item(run.item)
    row.status, row.stage = "failed", "worker"
    row.error = f"the Dask worker process running it died each time it was tried ({error})"
    return row
