"""Tasks every kind of source shares.

- :func:`assemble_task`, the task every source ends with: assemble the story, then write the
  source's marker. Video and book sources differ in their assemble stage
  (:func:`pipeline.video.stages.assemble`, :func:`pipeline.book.stages.assemble`), not in how it is
  run: holding a model slot when CLIP or a captioner is on, through
  :meth:`pipeline.workdir.SourceRun.step`, and writing the marker last.
- :func:`source_task`: all of a source's steps in one task, for executors where a task run costs
  more than a stage does (Dask, :func:`whole_source`).
"""

from __future__ import annotations

from typing import Any, Callable

from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.inflight import Step
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


@task(name="source", cache_policy=NO_CACHE)
def source_task(run: SourceRun, steps: tuple[Step, ...]) -> SourceResult:
    """Every step of one source, one after the other in this task (as :func:`flows.inflight.run_bounded`
    would run them: a failed source goes straight to its last step, which writes the marker).

    The steps' task-level retries do not apply here (the whole task's do: ``run.task_retries``,
    :func:`whole_source`); fetching still retries transient errors itself (``fetch.retries``), and
    an executor that loses the task runs it again.
    """
    at = 0
    while True:
        step = steps[at]
        value = step.task.fn(run, *step.args)
        if at == len(steps) - 1:
            return value
        run = value
        at = len(steps) - 1 if run.failed else at + 1


def whole_source(steps: list[Step], retries: int = 0) -> list[Step]:
    """A source's steps as one step (one task run) in the ``source`` lane.

    On Dask a task run costs far more than in the flow's threads: Prefect rebuilds its settings
    and context in the worker for every task (~0.1-0.4 CPU-s measured) and Dask pickles the
    arguments to name the task, so a source's three or four stage tasks cost more CPU than
    decoding a short video. As one task a source also stays on one worker, its files with it.
    """
    return [Step(source_task.with_options(retries=retries), (tuple(steps),), "source")]
