"""Prefect tasks for video sources: fetch -> keyframes -> text -> assemble.

Each task is one line of wiring around a stage of :mod:`pipeline.video.stages`: it runs the stage
through :meth:`pipeline.workdir.SourceRun.step` (timed; a per-source problem becomes the source's
failure and the later tasks pass it on untouched) and hands the source on. Fetching retries at the
task level too (``run.task_retries``); keyframe decoding runs in the run's process pool; ASR,
CLIP and captions hold a model slot. The last task (:mod:`flows.common`) writes the marker.
:func:`video_steps` lists them for the flow, which submits each when it can start.
"""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.common import assemble_task
from flows.inflight import Step
from flows.resources import RunResources
from pipeline.config import IngestConfig
from pipeline.records import SourceResult
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


@task(name="text-assemble", cache_policy=NO_CACHE)
def text_assemble_task(run: SourceRun, cfg: IngestConfig, resources: RunResources) -> SourceResult:
    """Text from subtitles (no model: milliseconds of work, less than a task run costs), then assemble."""
    run.step("text", video.text, cfg)
    return assemble_task.fn(run, cfg, resources, video.assemble)


def video_steps(cfg: IngestConfig, defaults: SourceDefaults, resources: RunResources, archive: Path) -> list[Step]:
    """The steps of one video source, each in its lane (:mod:`flows.inflight`); without ASR the
    text stage runs in the assemble task (it only reads subtitles)."""
    steps = [Step(fetch_task.with_options(retries=cfg.run.task_retries), (cfg, archive, defaults), "download"),
             Step(keyframes_task, (cfg, resources), "decode")]
    if not cfg.models.asr.active:
        return steps + [Step(text_assemble_task, (cfg, resources), "host")]
    return steps + [Step(text_task, (cfg, resources), "host"), Step(assemble_task, (cfg, resources, video.assemble), "host")]
