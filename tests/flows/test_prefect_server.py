"""`storyloom ingest` against a Prefect server started the README's way (`prefect server start`,
``PREFECT_API_URL`` set): the run and every source's stage tasks are recorded there, as a user
watching the UI would see them, and the dataset is the same as without a server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.synthetic import write_story_video
from tests.bookgen.pdf import write_pdf
from tests.conftest import StaticServer, dataset_files, free_port
from tests.flows.test_video import spec


@pytest.fixture
def prefect_server(tmp_path):
    """`prefect server start` on loopback with its own home (an empty SQLite database)."""
    import httpx

    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "server-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = open(tmp_path / "prefect-server.log", "w")  # noqa: SIM115 - closed below, after the process
    prefect = Path(sys.executable).with_name("prefect")
    server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "prefect-server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prefect server start did not answer in 180 s"
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield api
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def task_runs(api: str, flow_run_id: str, expected: int, timeout_s: float = 30) -> list[dict]:
    """The flow run's task runs, once ``expected`` of them are Completed (the server records them
    from the run's events, a moment after they happen)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        runs = httpx.post(f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
        if sum(run["state_type"] == "COMPLETED" for run in runs) >= expected or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)


def video_page_and_book(tmp_path: Path, seed: int) -> tuple[StaticServer, Path]:
    """A sources file of two entries: a video page on a loopback site (served until ``close``) and a PDF book."""
    site = tmp_path / "site"
    site.mkdir()
    write_story_video(site, "tale", spec(seed, pages=3, style="cut"))
    write_pdf(site / "book.pdf", "below", seed=seed + 1)
    static = StaticServer(site)
    sources = tmp_path / "sources.yaml"
    sources.write_text("defaults:\n  license: CC0\n  language: en\nsources:\n"
                       f"  - url: {static.url('tale.html')}\n  - path: {site / 'book.pdf'}\n")
    return static, sources


def test_an_ingest_against_prefect_server_start_is_recorded_there(prefect_server, tmp_path, prefect_harness):
    import httpx

    from flows.cli import main as storyloom

    static, sources = video_page_and_book(tmp_path, seed=51)
    try:
        out = tmp_path / "out"
        env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_HOME": str(tmp_path / "client-home")}
        done = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(sources), "--out", str(out)],
                              env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        # the same sources without a configured server (the test harness's API): the same dataset
        assert storyloom(["ingest", str(sources), "--out", str(tmp_path / "here" / "out")]) == 0
    finally:
        static.close()
    assert dataset_files(out) == dataset_files(tmp_path / "here" / "out")

    flow_runs = httpx.post(f"{prefect_server}/flow_runs/filter", json={}).json()
    assert [(run["name"] != "", run["state_type"]) for run in flow_runs] == [(True, "COMPLETED")]
    assert flow_runs[0]["parameters"]["out_dir"] == str(out)
    flow = httpx.get(f"{prefect_server}/flows/{flow_runs[0]['flow_id']}").json()
    assert flow["name"] == "ingest"
    # two listings; the video's fetch, keyframes, text-assemble; the book's three stages; the dataset
    runs = task_runs(prefect_server, flow_runs[0]["id"], expected=9)
    assert {run["state_type"] for run in runs} == {"COMPLETED"}, runs
    assert sorted(run["name"].rsplit("-", 1)[0] for run in runs) == [
        "book-assemble", "book-fetch", "book-parse", "expand", "expand", "fetch", "keyframes", "text-assemble",
        "write-dataset"]


def test_prefects_temporary_server_records_every_task_run_with_storyloom_settings(tmp_path):
    """Without ``PREFECT_API_URL`` storyloom's CLI starts Prefect's temporary server itself
    (:mod:`flows.api_server`), with batched task-run records and without the automations and event-history services. Every task
    run, its three states and the run's logs must still be in its database when the run is over
    (the last batch is written as the server stops)."""
    import sqlite3

    static, sources = video_page_and_book(tmp_path, seed=53)
    try:
        env = {**os.environ, "PREFECT_HOME": str(tmp_path / "home")}
        env.pop("PREFECT_API_URL", None)
        done = subprocess.run([sys.executable, "-m", "flows.cli", "ingest", str(sources), "--out", str(tmp_path / "out")],
                              env=env, capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
    finally:
        static.close()
    assert "Error flushing" not in done.stderr, done.stderr[-2000:]
    # the CLI's own temporary server (flows.api_server) stops only once Prefect has sent what it had
    assert "Error logging to API" not in done.stderr, done.stderr[-2000:]
    with sqlite3.connect(tmp_path / "home" / "prefect.db") as db:
        assert db.execute("select name, state_type from flow_run").fetchall()[0][1] == "COMPLETED"
        runs = db.execute("select id, name, state_type from task_run").fetchall()
        assert sorted(name.rsplit("-", 1)[0] for _, name, _ in runs) == [
            "book-assemble", "book-fetch", "book-parse", "expand", "expand", "fetch", "keyframes", "text-assemble",
            "write-dataset"]
        assert {state for _, _, state in runs} == {"COMPLETED"}
        states = dict(db.execute("select task_run_id, count(*) from task_run_state group by task_run_id").fetchall())
        assert sorted(states.values()) == [3] * len(runs)  # pending, running, completed
        assert any("ingest done" in message for (message,) in db.execute("select message from log"))
