"""Prefect tasks for video sources: fetch -> keyframes -> text -> assemble.

Each task is one line of wiring around a stage of :mod:`pipeline.video.stages`: it runs the stage
through :meth:`pipeline.workdir.SourceRun.step` (timed; a per-source problem becomes the source's
failure and the later tasks pass it on untouched) and hands the source on. Fetching retries at the
task level too (``run.task_retries``); keyframe decoding runs in the run's process pool; ASR,
CLIP and captions hold a model slot. The last task (:mod:`flows.common`) writes the marker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import assemble_task
from flows.resources import RunResources
from pipeline.config import IngestConfig
from pipeline.sources import SourceDefaults
from pipeline.video import stages as video
from pipeline.workdir import SourceRun


@task(name="fetch", cache_policy=NO_CACHE)
def fetch_task(run: SourceRun, cfg: IngestConfig, archive: Path, defaults: SourceDefaults) -> SourceRun:
    run.step("fetch", video.fetch, cfg, archive, defaults)
    return run


@task(name="keyframes", cache_policy=NO_CACHE)
def keyframes_task(run: SourceRun, cfg: IngestConfig, resources: RunResources) -> SourceRun:
    run.step("keyframes", video.keyframes, cfg, resources.in_process)
    return run


@task(name="text", cache_policy=NO_CACHE)
def text_task(run: SourceRun, cfg: IngestConfig, resources: RunResources) -> SourceRun:
    with resources.model_slot(cfg.models.asr.active):
        run.step("text", video.text, cfg)
    return run


def submit_video(run: SourceRun, cfg: IngestConfig, defaults: SourceDefaults, resources: RunResources,
                 archive: Path) -> Any:
    """Chain the tasks of one video source; returns the future of its SourceResult."""
    fetched = fetch_task.with_options(retries=cfg.run.task_retries).submit(run, cfg, archive, defaults)
    keyed = keyframes_task.submit(fetched, cfg, resources)
    texted = text_task.submit(keyed, cfg, resources)
    return assemble_task.submit(texted, cfg, resources, video.assemble)
