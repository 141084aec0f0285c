"""A bounded number of sources in flight, each stage submitted only when it can start.

Submitting every source's whole chain of tasks at once (each task waiting for its upstream one)
fills the task runner's threads with tasks that only wait, queues them in source order, and keeps
every source's objects alive until the end: downloads and decoding barely overlap, and memory
grows with the number of sources. Here instead:

- at most ``max_in_flight`` sources are started at once; the next one starts as soon as one
  finishes (not in batches), and each finished source's result is handed back at once;
- a source's next stage is submitted when its previous one has finished, with its value (not a
  future), so a task never holds a thread while it waits;
- every stage belongs to a *lane* with its own limit: downloads (``download``, I/O bound),
  the process-pool stages (``decode``; a little over the pool's size so that a worker never waits
  for the flow to hand it the next source) and the flow-process stages (``host``: text, and the
  assemble that runs the models). Downloads of some sources run while others decode;
- a source that failed at a stage skips to its last one (which writes its marker) at once.

Within a lane, sources go in the order they were started: the ones in flight finish first. The
order in which sources finish does not change any output (each source has its own work directory
and the flow sorts the rows), so the bound changes only speed and memory.
"""

from __future__ import annotations

import collections
import queue
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect.utilities.annotations import quote

from pipeline.records import SourceResult
from pipeline.workdir import SourceRun


@dataclass(frozen=True)
class Step:
    """One stage of a source: ``task.submit(run, *args)``; every step but the last returns the
    :class:`SourceRun`, the last its :class:`SourceResult` (after writing the marker)."""

    task: Any  # a Prefect task (anything with .submit() returning a future with .result() and .add_done_callback())
    args: tuple
    lane: str


@dataclass
class _Source:
    run: SourceRun
    steps: Sequence[Step]
    at: int = 0

    @property
    def step(self) -> Step:
        return self.steps[self.at]


def run_bounded(sources: Iterable[tuple[SourceRun, Sequence[Step]]], lanes: Mapping[str, int], max_in_flight: int,
                on_event: Callable[[str, str, str], None] | None = None,
                lost: Callable[[SourceRun, Exception], SourceResult | None] | None = None,
                quoted: bool = False) -> Iterator[SourceResult]:
    """Run every source's steps, at most ``max_in_flight`` sources and ``lanes[lane]`` steps per lane
    at once; yields each source's result as it finishes (in finishing order).

    ``sources`` is consumed lazily: a source is only taken (and its work directory looked at) when
    there is room for it. ``on_event(kind, source_id, stage)`` (``start``/``end`` of each submitted
    step) is for tests and progress. A task that raises (a bug: per-source problems are values)
    raises here, unless ``lost(run, error)`` makes a row of it (the executor lost the task: a Dask
    worker that died each time it ran it); that source then ends with that row.

    ``quoted``: hand every argument wrapped in Prefect's ``quote``, so that Prefect does not walk
    through them (the source's outputs so far, the config) looking for futures before each task
    run: ~0.1 s of CPU per source. Prefect's own task runners unwrap it; Dask's does not (it
    rebuilds the wrapper, a tuple, as a plain tuple), so only for the local executor.
    """
    if max_in_flight < 1:
        raise ValueError("max_in_flight must be >= 1")
    pending = iter(sources)
    waiting: dict[str, collections.deque[_Source]] = {lane: collections.deque() for lane in lanes}
    busy = dict.fromkeys(lanes, 0)
    running: dict[Any, _Source] = {}  # future -> source
    finished: queue.SimpleQueue = queue.SimpleQueue()
    in_flight = 0
    exhausted = False
    try:
        while True:
            while not exhausted and in_flight < max_in_flight:
                started = next(pending, None)
                if started is None:
                    exhausted = True
                    break
                source = _Source(*started)
                in_flight += 1
                waiting[source.step.lane].append(source)
            for lane, ready in waiting.items():
                while ready and busy[lane] < lanes[lane]:
                    source = ready.popleft()
                    step = source.step
                    busy[lane] += 1
                    if on_event:
                        on_event("start", source.run.item.source_id, step.task.name)
                    args = (source.run, *step.args)
                    future = step.task.submit(*(map(quote, args) if quoted else args))
                    running[future] = source
                    future.add_done_callback(finished.put)
            if not running:
                return
            future = finished.get()
            source = running.pop(future)
            busy[source.step.lane] -= 1
            release_task_run(future)
            try:
                value = future.result()  # a bug in a task raises here
            except Exception as error:  # noqa: BLE001 - only what ``lost`` turns into a row is kept
                row = lost(source.run, error) if lost else None
                if row is None:
                    raise
                in_flight -= 1  # the source is over: its row says why, and it has no marker (a rerun tries again)
                forget_task_results(source.run)
                yield row
                continue
            if on_event:
                on_event("end", source.run.item.source_id, source.step.task.name)
            if source.at == len(source.steps) - 1:
                in_flight -= 1
                forget_task_results(source.run, value)
                yield value
                continue
            source.run = value
            # a failed source has nothing left to compute: on to its last step, which writes the marker
            source.at = len(source.steps) - 1 if value.failed else source.at + 1
            waiting[source.step.lane].append(source)
    finally:
        # an error (or the caller stopping early): let the tasks already running finish, start none
        while running:
            running.pop(finished.get(), None)


def forget_task_results(*results: Any) -> None:
    """Drop the flow run's links from these task results, and their direct parts, to their tasks.

    Prefect links every object a task returns, and each of its direct parts (a dataclass's fields,
    a tuple's items), to a copy of the task's final state for the rest of the flow run
    (``FlowRunContext.run_results``): when the object is passed to another task, the link names the
    upstream task. A finished source's objects go to no other task, so its links only cost memory
    (a copy of the state per object, ten or so objects per source). A part shared with a source
    still in flight (an interned string) loses its link too; that only drops an arrow from Prefect's
    task graph (stage arguments are handed on quoted on the local executor, where Prefect does not
    look for upstream tasks at all).
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None:
        return
    links = context.run_results
    for result in results:
        links.pop(id(result), None)
        parts = vars(result).values() if hasattr(result, "__dict__") else result if isinstance(result, tuple) else ()
        for part in parts:
            links.pop(id(part), None)


def release_task_run(future: Any) -> None:
    """Let go of what Prefect's thread-pool task runner keeps for a task run that is over.

    ``ThreadPoolTaskRunner`` keeps a cancel event per task run it was given until the flow ends
    (``_cancel_events``: an Event with its Condition, lock and deque, ~1 KB; four task runs per
    source), to set them all if the flow is cancelled; a finished task run has nothing to cancel.
    Other task runners (Dask's) keep no such map: nothing to do.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    events = getattr(getattr(context, "task_runner", None), "_cancel_events", None)
    if isinstance(events, dict):
        events.pop(getattr(future, "task_run_id", None), None)
