"""A bounded number of sources in flight (flows.inflight): the bound holds, the next source starts
as soon as one finishes, and the dataset is the same as with no bound.

The scheduler is checked on its own with plain thread-pool tasks (exact timings), then in the
real ``storyloom ingest`` over loopback: every stage a source runs is recorded from the work
directory owner (``SourceWork.run``, and the marker write that ends a source), and at most
``run.max_sources_in_flight`` sources may ever be between their first stage and their marker.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from prefect import flow, task

from flows.cli import main as storyloom
from flows.inflight import Step, run_bounded
from pipeline.synthetic import PageSpec, VideoSpec, write_story_video
from pipeline.workdir import SourceWork
from tests.conftest import StaticServer, dataset_files


class SleepTask:
    """A task with ``submit`` on a thread pool: sleeps ``run.seconds[name]``, logs start and end."""

    def __init__(self, name: str, pool: concurrent.futures.Executor, log: list, last: bool = False):
        self.name, self.pool, self.log, self.last = name, pool, log, last

    def submit(self, run):
        return self.pool.submit(self._run, run)

    def _run(self, run):
        self.log.append((time.monotonic(), "start", run.item.source_id, self.name))
        time.sleep(run.seconds[self.name])
        self.log.append((time.monotonic(), "end", run.item.source_id, self.name))
        return SimpleNamespace(source_id=run.item.source_id) if self.last else run


def most_at_once(spans: dict[str, tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()])
    level = peak = 0
    for _, change in edges:  # an end before a start at the same instant
        level += change
        peak = max(peak, level)
    return peak


def source_spans(log) -> dict[str, tuple[float, float]]:
    spans: dict[str, tuple[float, float]] = {}
    for when, _, source, _ in log:
        first, last = spans.get(source, (when, when))
        spans[source] = (min(first, when), max(last, when))
    return spans


def test_sources_start_as_others_finish_never_more_than_the_bound():
    log: list = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        fetch, decode = SleepTask("fetch", pool, log), SleepTask("decode", pool, log, last=True)
        steps = [Step(fetch, (), "download"), Step(decode, (), "decode")]
        # s0 is short, s1 long: s2 must start when s0 finishes, long before s1 does (no batches)
        times = {"s0": (0.05, 0.05), "s1": (0.05, 0.8), "s2": (0.05, 0.05), "s3": (0.05, 0.05), "s4": (0.05, 0.05)}
        taken = []

        def sources():
            for sid, (f, d) in times.items():
                taken.append((time.monotonic(), sid))
                yield SimpleNamespace(item=SimpleNamespace(source_id=sid), failed=False,
                                      seconds={"fetch": f, "decode": d}), steps

        done = [r.source_id for r in run_bounded(sources(), {"download": 4, "decode": 4}, max_in_flight=2)]
    assert sorted(done) == sorted(times)
    assert done.index("s0") < done.index("s1") and done[-1] == "s1"  # streamed in finishing order
    spans = source_spans(log)
    assert most_at_once(spans) == 2
    assert spans["s2"][0] < spans["s1"][1] - 0.4  # started while s1 was still decoding
    assert [sid for _, sid in taken] == list(times)  # sources taken lazily, one as another finishes
    assert taken[2][0] >= spans["s0"][1]


def test_lanes_bound_each_kind_of_step_and_a_failure_skips_to_the_last_step():
    log: list = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        fetch, middle, last = SleepTask("fetch", pool, log), SleepTask("middle", pool, log), SleepTask("last", pool, log, True)
        steps = [Step(fetch, (), "download"), Step(middle, (), "decode"), Step(last, (), "host")]
        runs = [SimpleNamespace(item=SimpleNamespace(source_id=f"s{i}"), failed=(i == 0),
                                seconds={"fetch": 0.05, "middle": 0.05, "last": 0.01}) for i in range(6)]
        done = list(run_bounded(((run, steps) for run in runs), {"download": 1, "decode": 2, "host": 2},
                                max_in_flight=6))
    assert len(done) == 6
    fetches = {s: span for s, span in source_spans([e for e in log if e[3] == "fetch"]).items()}
    assert most_at_once(fetches) == 1  # one download at a time: the download lane's limit
    assert not [e for e in log if e[2] == "s0" and e[3] == "middle"]  # failed at fetch: straight to its marker
    assert [e for e in log if e[2] == "s0" and e[3] == "last"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("inflight-site")
    server = StaticServer(root)
    for i in range(5):
        pages = [PageSpec(f"Page {p} of story {i}.", 1.2) for p in range(2)]
        write_story_video(root, f"v{i}", VideoSpec(pages=pages, width=160, height=96, seed=40 + i), save_pictures=False)
    sources = root.parent / "inflight-sources.yaml"
    sources.write_text("defaults:\n  license: CC0\n  language: en\nsources:\n"
                       + "".join(f"  - url: {server.url(f'v{i}.html')}\n" for i in range(5))
                       + f"  - url: {server.url('missing.mp4')}\n")
    yield sources
    server.close()


def test_ingest_never_has_more_sources_in_flight_than_the_bound(site, prefect_harness, tmp_path, monkeypatch):
    log: list = []
    lock = threading.Lock()
    run, finish = SourceWork.run, SourceWork.finish

    def recorded(method, stage_of):
        def wrapper(self, *args, **kwargs):
            with lock:
                log.append((time.monotonic(), "start", self.dir.name, stage_of(args)))
            try:
                return method(self, *args, **kwargs)
            finally:
                with lock:
                    log.append((time.monotonic(), "end", self.dir.name, stage_of(args)))
        return wrapper

    monkeypatch.setattr(SourceWork, "run", recorded(run, lambda args: args[0]))
    monkeypatch.setattr(SourceWork, "finish", recorded(finish, lambda args: "marker"))
    config = tmp_path / "bounded.yaml"
    config.write_text("fetch: {retries: 0}\nrun: {max_sources_in_flight: 2, download_workers: 4, decode_workers: 2}\n")
    bounded = tmp_path / "bounded" / "out"  # the same name: the card names the directory
    assert storyloom(["ingest", str(site), "--out", str(bounded), "--config", str(config)]) == 0

    spans = source_spans(log)
    assert len(spans) == 6  # five videos and the missing mp4 (failed at fetch: straight to its marker)
    assert {stage for _, _, _, stage in log} == {"fetch", "keyframes", "text", "assemble", "marker"}
    missing = [stage for _, _, source, stage in log if source.startswith("generic-missing")]
    assert missing == ["fetch", "fetch", "marker", "marker"]
    assert most_at_once(spans) == 2

    monkeypatch.setattr(SourceWork, "run", run)
    monkeypatch.setattr(SourceWork, "finish", finish)
    config.write_text("fetch: {retries: 0}\nrun: {max_sources_in_flight: 100, download_workers: 4, decode_workers: 2}\n")
    unbounded = tmp_path / "unbounded" / "out"
    assert storyloom(["ingest", str(site), "--out", str(unbounded), "--config", str(config)]) == 0
    files = dataset_files(bounded)
    assert any(name.startswith("shards/") for name in files)
    assert files == dataset_files(unbounded)


@dataclass
class _Item:
    source_id: str


@dataclass
class _Run:
    item: _Item
    outputs: dict = field(default_factory=dict)
    failed: bool = False


@dataclass
class _Result:
    source_id: str
    timings: dict


@task
def _stage(run: _Run) -> _Run:
    run.outputs["stage"] = [run.item.source_id] * 100
    return run


@task
def _finish(run: _Run) -> _Result:
    return _Result(run.item.source_id, {"stage": 0.1})


@flow
def _bounded_flow(count: int) -> tuple[int, int]:
    from prefect.context import FlowRunContext

    steps = [Step(_stage, (), "decode"), Step(_finish, (), "host")]
    runs = ((_Run(_Item(f"s{i}")), steps) for i in range(count))
    done = list(run_bounded(runs, {"decode": 2, "host": 2}, max_in_flight=4, quoted=True))
    context = FlowRunContext.get()
    return len(done), len(context.run_results) + len(context.task_runner._cancel_events)


def test_a_finished_sources_task_results_are_not_kept_for_the_rest_of_the_flow_run(prefect_harness, monkeypatch):
    """Prefect links every task's returned object and its fields to the task's state until the flow
    run ends (FlowRunContext.run_results), and its thread-pool runner keeps a cancel event per task
    run: a finished source's are dropped, so the flow's memory does not grow with the number of
    sources it has finished."""
    import flows.inflight

    assert _bounded_flow(12) == (12, 0)
    monkeypatch.setattr(flows.inflight, "forget_task_results", lambda *results: None)
    monkeypatch.setattr(flows.inflight, "release_task_run", lambda future: None)
    finished, kept = _bounded_flow(12)
    # without them: the run, its item and outputs, the result and its parts; a cancel event per task run
    assert finished == 12 and kept >= 12 * 4 + 12 * 2
