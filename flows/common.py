"""The task every kind of source ends with: assemble the story, then write the source's marker.

Video and book sources differ in their assemble stage (:func:`pipeline.video.stages.assemble`,
:func:`pipeline.book.stages.assemble`), not in how it is run: holding a model slot when CLIP or
a captioner is on, through :meth:`pipeline.workdir.SourceRun.step`, and writing the marker last.
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.resources import RunResources
from pipeline.config import IngestConfig
from pipeline.records import SourceResult
from pipeline.workdir import SourceRun


@task(name="assemble", cache_policy=NO_CACHE)
def assemble_task(run: SourceRun, cfg: IngestConfig, resources: RunResources,
                  assemble: Callable[[SourceRun, IngestConfig], Any]) -> SourceResult:
    """Caption, score and encode the story (``assemble``), then write the source's marker (last)."""
    with resources.model_slot(cfg.models.clip.enabled or cfg.models.captions.enabled):
        run.step("assemble", assemble, cfg)
    return run.finish()
