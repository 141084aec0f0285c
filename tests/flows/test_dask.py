"""`storyloom ingest` on a real Dask cluster (``run.executor: dask``), through prefect-dask.

A `distributed.LocalCluster` of two single-threaded worker processes over TCP on loopback, shared by
the module (a test that kills a worker gets its own), is given to the command line by its address
(the path an existing cluster takes).
Generated videos (over loopback, through the real yt-dlp) and books:

- the Dask run's shards, manifests, catalog and card equal the local run's byte for byte, and its
  stage tasks ran in the worker processes;
- a tiny CLIP model is loaded once per worker process, however many sources a worker assembles;
- a worker process killed with SIGKILL while it runs a source's task: Dask sends the task to
  another worker, the run finishes (or a rerun resumes), the shards equal the local run's and
  every story is there once;
- the scheduler killed mid-run (a `dask scheduler` / `dask worker` cluster started as the README
  says): a rerun against a new scheduler resumes from the work directory (finished sources are
  not run again) to the same shards;
- a bad executor setting exits 2 before any work; run settings change neither the config hash
  nor any stage's key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

distributed = pytest.importorskip("distributed")
pytest.importorskip("prefect_dask")

from flows.cli import main as storyloom  # noqa: E402
from pipeline.synthetic import write_story_video  # noqa: E402
from tests.bookgen.epub import write_epub  # noqa: E402
from tests.bookgen.pdf import write_pdf  # noqa: E402
from tests.conftest import StaticServer, dataset_files, free_port  # noqa: E402
from tests.flows.test_video import read_stories, spec  # noqa: E402

CONFIG = {"shards": {"max_stories_per_shard": 2, "test_fraction": 0.0}, "fetch": {"retries": 1, "backoff_s": 0.05}}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two videos over loopback (one long enough to be caught decoding), a PDF and an EPUB book."""
    root = tmp_path_factory.mktemp("dask-site")
    server = StaticServer(root)
    write_story_video(root, "long", spec(41, pages=5, style="cut", line_art=True, intro=True))
    write_story_video(root, "short", spec(42, pages=3, style="crossfade"))
    write_pdf(root / "book.pdf", "below", seed=43)
    write_epub(root / "tale.epub", "epub3", seed=44)
    sources = root.parent / "dask-sources.yaml"
    sources.write_text("defaults:\n  license: CC0\n  language: en\nsources:\n"
                       f"  - url: {server.url('long.html')}\n  - url: {server.url('short.html')}\n"
                       f"  - path: {root / 'book.pdf'}\n  - path: {root / 'tale.epub'}\n")
    config = root.parent / "dask-config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    yield sources, config
    server.close()


def ingest(site, out: Path, *options: str, config: Path | None = None) -> int:
    sources, default_config = site
    return storyloom(["ingest", str(sources), "--out", str(out), "--config", str(config or default_config), *options])


@pytest.fixture(scope="module")
def local_out(site, prefect_harness, tmp_path_factory):
    out = tmp_path_factory.mktemp("dask-local") / "out"  # the card is titled after the folder: "out" everywhere
    assert ingest(site, out) == 0
    return out


def _local_cluster():
    """Two worker processes, one thread each, over TCP on loopback; a client to watch and kill them."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as local, \
            distributed.Client(local) as client:
        client.run(_warm_up)  # import the flow's modules once per worker, outside the timed runs
        yield client


@pytest.fixture(scope="module")
def cluster():
    yield from _local_cluster()


@pytest.fixture
def own_cluster():
    """A cluster for one test that kills its workers: the next test does not wait for the nannies to
    bring them back (on a loaded 2-core machine that once took over five minutes)."""
    yield from _local_cluster()


def _warm_up() -> None:
    import flows.ingest  # noqa: F401
    import prefect.task_engine  # noqa: F401


def same_dataset(out: Path, expected: Path) -> None:
    got, want = dataset_files(out), dataset_files(expected)
    assert any(name.startswith("shards/") for name in want)
    assert got.keys() == want.keys()
    for name in want:
        assert got[name] == want[name], name


def story_ids(out: Path) -> list[str]:
    return [row["story_id"] for row in pq.read_table(out / "catalog.parquet", columns=["story_id", "frame"]).to_pylist()
            if row["frame"] == 0]


@pytest.mark.parametrize("options, run, message", [
    (["--dask-address", "127.0.0.1"], {}, "run.dask_address must be a Dask scheduler address such as tcp://host:8786"),
    (["--executor", "local", "--dask-address", "tcp://127.0.0.1:8786"], {}, "need --executor dask, not local"),
    (["--dask-workers", "-2"], {}, "run.dask_workers must be >= 0"),
    ([], {"executor": "ray"}, "run.executor must be one of local, dask, got 'ray'"),
    ([], {"executor": "local", "dask_address": "tcp://127.0.0.1:8786"}, "run.dask_address is set"),
    (["--dask-address", "FREE"], {}, "run.dask_address: no Dask scheduler answers at tcp://127.0.0.1:"),
    (["--executor", "dask"], "NO-PREFECT-DASK", "run.executor is dask but prefect_dask is not installed"),
])
def test_bad_executor_settings_exit_2_before_any_work(site, options, run, message, tmp_path, capsys, monkeypatch):
    import dask

    if run == "NO-PREFECT-DASK":
        monkeypatch.setitem(sys.modules, "prefect_dask", None)  # what `import prefect_dask` meets when it is missing
        run = {}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "run": run}))
    options = [f"tcp://127.0.0.1:{free_port()}" if option == "FREE" else option for option in options]
    out = tmp_path / "out"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        assert ingest(site, out, *options, config=config) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_dask_run_gives_the_local_runs_dataset_byte_for_byte(site, local_out, cluster, tmp_path):
    executed = sum(cluster.run(lambda dask_worker: dask_worker.state.executed_count).values())
    out = tmp_path / "out"
    assert ingest(site, out, "--dask-address", cluster.scheduler.address) == 0
    same_dataset(out, local_out)
    rows = pq.read_table(out / "sources.parquet").to_pylist()
    assert len(rows) == 4 and {row["status"] for row in rows} == {"ok"}
    assert sorted(story_ids(out)) == sorted(story_ids(local_out)) and len(set(story_ids(out))) == 4
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["config"]["run"]["executor"] == "dask"
    assert resolved["config_hash"] == json.loads((local_out / "config.json").read_text())["config_hash"]
    # the tasks ran in the workers: 4 expand + one task per source (flows.common.whole_source)
    ran = sum(cluster.run(lambda dask_worker: dask_worker.state.executed_count).values()) - executed
    assert ran == 4 + 4


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    pytest.importorskip("open_clip")
    from tests.model_helpers import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("dask-tiny"))


def _clip_loads() -> int:
    from pipeline.models.loading import load_counts

    return sum(count for key, count in load_counts().items() if key[0] == "clip")


def test_a_model_is_loaded_once_per_worker_process(site, cluster, tiny_clip, prefect_harness, tmp_path):
    random_weights = {"filter_photos": False, "filter_text_cards": False, "dedup": False}  # would drop frames at random
    section = tiny_clip.models_section("clip", clip=random_weights)
    config = tmp_path / "clip.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "models": section}))
    before = cluster.run(_clip_loads)
    assert set(before.values()) == {0}
    with distributed.get_task_stream(client=cluster) as stream:
        assert ingest(site, tmp_path / "out", "--dask-address", cluster.scheduler.address, config=config) == 0
    assemblies: dict[str, int] = {}  # the workers that ran a source's task (its assemble runs CLIP)
    for task in stream.data:
        if str(task["key"]).startswith("source_task-"):  # Dask keys start with the task function's name
            assemblies[task["worker"]] = assemblies.get(task["worker"], 0) + 1
    assert sum(assemblies.values()) == 4 and max(assemblies.values()) >= 2  # a worker assembled two sources or more
    loads = cluster.run(_clip_loads)
    assert loads == {worker: 1 if assemblies.get(worker) else 0 for worker in loads}
    stories = read_stories(tmp_path / "out")
    assert len(stories) == 4
    assert all(isinstance(f["scores"]["clip"], float) for story, _ in stories.values() for f in story["frames"])


def _prefect_servers() -> list[str]:
    import psutil

    return [" ".join(child.cmdline()) for child in psutil.Process().children(recursive=True)
            if "prefect.server" in " ".join(child.cmdline()) or "uvicorn" in " ".join(child.cmdline())]


def test_without_a_configured_api_the_workers_report_to_the_runs_temporary_server(site, cluster, tmp_path):
    """No PREFECT_API_URL: the run's temporary Prefect server is the workers' too (none starts its own)."""
    sources, config = site
    one = tmp_path / "one.yaml"
    one.write_text("\n".join(line for line in sources.read_text().splitlines() if "tale.epub" not in line
                             and "long.html" not in line and "short.html" not in line) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_LOGGING_LEVEL="WARNING")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(one), "--out", str(tmp_path / "out"),
                           "--config", str(config), "--dask-address", cluster.scheduler.address],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1 stories" in done.stdout
    assert cluster.run(_prefect_servers) == {worker: [] for worker in cluster.scheduler_info()["workers"]}


def start_ingest(site, out: Path, address: str, api_url: str) -> subprocess.Popen:
    """`storyloom ingest` as its own process, reporting to the test's Prefect server."""
    sources, config = site
    env = {**os.environ, "PREFECT_API_URL": api_url, "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = out.parent / f"{out.name}-ingest.log"  # a file, not a pipe nobody reads while the run goes on
    with open(log, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "ingest", str(sources), "--out", str(out), "--config", str(config),
             "--dask-address", address],
            env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=stderr,
        )
    process.log = log
    return process


def log_tail(process: subprocess.Popen) -> str:
    return process.log.read_text(errors="replace")[-2000:]


def started_stages(out: Path) -> list[Path]:
    """Stage records written before a stage computes and not yet marked done after it."""
    found = []
    for record in out.glob("work/*/stages/*.json"):
        try:
            if json.loads(record.read_text()).get("status") == "started":
                found.append(record)
        except (OSError, ValueError):  # being replaced right now
            continue
    return found


def wait_until(condition, process: subprocess.Popen, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the run ended before {what}: {log_tail(process)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def gone(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _busy(dask_worker) -> tuple[int, int]:
    return os.getpid(), dask_worker.state.executing_count


def _slow_decoding(seconds: float) -> None:
    """In this worker process, keyframe decoding starts ``seconds`` late: a small video decodes in a
    blink, and the kill must land while a source is in its worker. A restarted worker decodes at
    full speed (a new process: nothing patched)."""
    from pipeline.video import stages

    decode = stages.__dict__.setdefault("_decode_at_full_speed", stages.compute_keyframes)

    def late(*args, **kwargs):
        time.sleep(seconds)
        return decode(*args, **kwargs)

    stages.compute_keyframes = late if seconds else decode


def _set_allowed_failures(count: int, dask_scheduler) -> int:
    before, dask_scheduler.allowed_failures = dask_scheduler.allowed_failures, count
    return before


@pytest.mark.parametrize("allowed_failures", [3, 0], ids=["rescheduled", "given-up"])
def test_a_worker_killed_mid_source_leaves_identical_shards(site, local_out, own_cluster, prefect_harness, tmp_path,
                                                            allowed_failures):
    """Dask sends the killed worker's task to another worker (``rescheduled``: the run finishes), or, when
    it may not (``given-up``: the task failed on as many workers as allowed), that source is a failed row
    of a finished run and the rerun completes it. Either way: the local run's shards, every story once."""
    cluster = own_cluster
    out = tmp_path / "out"
    cluster.run_on_scheduler(_set_allowed_failures, allowed_failures)
    cluster.run(_slow_decoding, 30)
    process = start_ingest(site, out, cluster.scheduler.address, prefect_harness)
    try:
        # the long video's decoding has started: its worker is mid-source (for 30 s)
        wait_until(lambda: any(r.name == "keyframes.json" and "long" in r.parent.parent.name
                               for r in started_stages(out)), process, "the long video's keyframes started")
        # one worker dies; the other goes on (the run must not wait for the nanny to restart it)
        busy = [pid for pid, executing in cluster.run(_busy).values() if executing][:1]
        for pid in busy:
            os.kill(pid, signal.SIGKILL)
        while not all(gone(pid) for pid in busy):
            time.sleep(0.01)
        cluster.run(_slow_decoding, 0, on_error="ignore")  # the worker left decodes at full speed again
        interrupted = started_stages(out)  # records the dead workers can no longer mark done
        unfinished = [d for d in out.glob("work/*") if d.is_dir() and not (d / "DONE.json").exists()]
        process.wait(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert busy, "no worker was running a task"
    assert unfinished, "killed too late: every source was done"
    assert process.returncode == 0, log_tail(process)
    rows = pq.read_table(out / "sources.parquet").to_pylist()
    lost = [row for row in rows if row["status"] != "ok"]
    if allowed_failures:
        assert lost == []
    else:
        assert lost and all(row["stage"] == "worker" and "died" in row["error"] for row in lost)
        assert len(story_ids(out)) == 4 - len(lost)
        assert ingest(site, out, "--dask-address", cluster.scheduler.address) == 0  # resumes
    same_dataset(out, local_out)
    ids = story_ids(out)
    assert len(ids) == len(set(ids)) == 4 and sorted(ids) == sorted(story_ids(local_out))
    rows = pq.read_table(out / "sources.parquet").to_pylist()
    assert len(rows) == 4 and {row["status"] for row in rows} == {"ok"}
    caught = ", ".join(sorted(f"{r.parent.parent.name}/{r.stem}" for r in interrupted))
    print(f"killed {len(busy)} worker(s) with {len(interrupted)} stage(s) in progress ({caught}); "
          f"{len(lost)} source(s) given up")


class DaskCommands:
    """A cluster started the README's way: `dask scheduler` and `dask worker ADDRESS --nworkers 2 --nthreads 2`."""

    def __init__(self, log_dir: Path):
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        repo = str(Path(__file__).resolve().parents[2])  # the workers unpickle this checkout's tasks
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
        dask = [sys.executable, "-m", "dask"]
        self.log = open(log_dir / f"dask-{port}.log", "w")
        self.scheduler = subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                           "--no-dashboard"], env=env, start_new_session=True,
                                          stdout=self.log, stderr=subprocess.STDOUT)
        self.workers = subprocess.Popen([*dask, "worker", self.address, "--nworkers", "2", "--nthreads", "2",
                                         "--host", "127.0.0.1", "--no-dashboard"], env=env, start_new_session=True,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)

    def kill_scheduler(self) -> None:
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()

    def close(self) -> None:
        for process in (self.workers, self.scheduler):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.log.close()


def test_a_rerun_against_a_restarted_scheduler_resumes_to_identical_shards(site, local_out, prefect_harness, tmp_path):
    out = tmp_path / "out"
    first = DaskCommands(tmp_path)
    try:
        with distributed.Client(first.address, timeout=60) as client:
            client.run(_slow_decoding, 30)  # the books finish, the videos are still decoding when the scheduler dies
        process = start_ingest(site, out, first.address, prefect_harness)
        try:
            wait_until(lambda: any(out.glob("work/*/DONE.json")), process, "a source finished")
            first.kill_scheduler()
            try:
                process.wait(timeout=60)  # the run fails without its scheduler
            except subprocess.TimeoutExpired:
                pytest.fail("the run hangs after its scheduler died")
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    finally:
        first.close()
    assert process.returncode != 0
    assert not (out / "manifest.json").exists(), "the run finished before its scheduler was killed"
    done = {marker: (marker.stat().st_mtime_ns, marker.read_bytes()) for marker in out.glob("work/*/DONE.json")}
    assert 1 <= len(done) < 4

    second = DaskCommands(tmp_path)
    try:
        assert ingest(site, out, "--dask-address", second.address) == 0
    finally:
        second.close()
    same_dataset(out, local_out)
    assert {marker: (marker.stat().st_mtime_ns, marker.read_bytes()) for marker in done} == done  # not run again
    assert sorted(story_ids(out)) == sorted(story_ids(local_out))
