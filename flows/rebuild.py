"""Prefect flow ``rebuild``: a shareable manifest -> the dataset it describes, remade from the sources.

``storyloom ingest --from-manifest FILE --out DIR``. Wiring only, as :mod:`flows.ingest`: per
story of the manifest one chain of tasks around the plain stages of
:mod:`pipeline.dataset.rebuild` (fetch with retries; books: parse in the process pool; rebuild:
decoding in the process pool), each run through :meth:`pipeline.workdir.SourceRun.step`, so a
source that cannot be fetched any more is a failed row, never a crash of the run. When every
story is done the dataset (shards, catalog, sources table, card) and ``rebuild-report.json`` are
written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from flows.resources import RunResources
from pipeline.config import IngestConfig
from pipeline.dataset import rebuild as stages
from pipeline.dataset.manifest import ManifestStory, read_manifest
from pipeline.storage import OutputLayout
from pipeline.workdir import SourceRun


@task(name="rebuild-fetch", cache_policy=NO_CACHE)
def fetch_task(run: SourceRun, cfg: IngestConfig) -> SourceRun:
    run.step("fetch", stages.fetch, cfg)
    return run


@task(name="rebuild-parse", cache_policy=NO_CACHE)
def parse_task(run: SourceRun, cfg: IngestConfig, resources: RunResources) -> SourceRun:
    run.step("parse", stages.parse, cfg, resources.in_process)
    return run


@task(name="rebuild-frames", cache_policy=NO_CACHE)
def frames_task(run: SourceRun, cfg: IngestConfig, entry: ManifestStory,
                resources: RunResources) -> tuple[Any, stages.StoryOutcome]:
    outcome = run.step("rebuild", stages.rebuild, cfg, entry, resources.in_process)
    return run.result, outcome or stages.failed_outcome(run, entry)


@flow(name="rebuild", log_prints=False)
def rebuild(manifest_file: str, out_dir: str) -> dict:
    """Rebuild the dataset described by ``manifest_file`` into ``out_dir``."""
    logger = get_run_logger()
    manifest = read_manifest(manifest_file)
    cfg = stages.manifest_config(manifest)
    layout = OutputLayout(Path(out_dir))
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    with RunResources.open(cfg) as resources:
        pending = []
        for entry in manifest.stories:
            run = stages.start_run(layout, entry, cfg)
            fetched = fetch_task.with_options(retries=cfg.run.task_retries).submit(run, cfg)
            parsed = parse_task.submit(fetched, cfg, resources)
            pending.append(frames_task.submit(parsed, cfg, entry, resources))
        results, outcomes = [], []
        for done, future in enumerate(as_completed(pending), start=1):
            result, outcome = future.result()
            results.append(result)
            outcomes.append(outcome)
            detail = f"{result.frames} frames" if result.status == "ok" else f"{result.stage}: {result.error}"
            logger.info("[%d/%d] %s %s (%s)", done, len(pending), result.source_id, result.status, detail)
    summary = stages.write_rebuilt_dataset(layout, manifest, cfg, sorted(results, key=lambda r: r.source_id), outcomes)
    return {**summary, "out": str(layout.root), "problems": stages.summary_lines(outcomes)}
