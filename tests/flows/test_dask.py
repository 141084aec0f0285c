"""`storyloom ingest` on a real Dask cluster (``run.executor: dask``), through prefect-dask.

A `distributed.LocalCluster` of two single-threaded worker processes over TCP on loopback, shared by
the module, is given to the command line by its address (the path an existing cluster takes).
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
import socket
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
from tests.conftest import StaticServer, dataset_files  # noqa: E402
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


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each, over TCP on loopback; a client to watch and kill them."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as local, \
            distributed.Client(local) as client:
        client.run(_warm_up)  # import the flow's modules once per worker, outside the timed runs
        yield client


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
    # the stage tasks ran in the workers: 4 expand + 2 videos x 4 + 2 books x 3 tasks
    ran = sum(cluster.run(lambda dask_worker: dask_worker.state.executed_count).values()) - executed
    assert ran == 4 + 2 * 4 + 2 * 3


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    pytest.importorskip("open_clip")
    from tests.model_helpers import write_tiny_models

    return write_tiny_models(tmp_path_factory.mktemp("dask-tiny"))


def _clip_loads() -> int:
    from pipeline.models.loading import load_counts

    return sum(count for key, count in load_counts().items() if key[0] == "clip")


def test_a_model_is_loaded_once_per_worker_process(site, cluster, tiny_clip, prefect_harness, tmp_path):
    section = tiny_clip.models_section("clip", clip={"filter_photos": False, "filter_text_cards": False, "dedup": False})
    config = tmp_path / "clip.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "models": section}))
    before = cluster.run(_clip_loads)
    assert set(before.values()) == {0}
    with distributed.get_task_stream(client=cluster) as stream:
        assert ingest(site, tmp_path / "out", "--dask-address", cluster.scheduler.address, config=config) == 0
    assemblies: dict[str, int] = {}
    for task in stream.data:
        if "assemble" in str(task["key"]):
            assemblies[task["worker"]] = assemblies.get(task["worker"], 0) + 1
    assert sum(assemblies.values()) == 4 and max(assemblies.values()) >= 2  # a worker assembled two sources or more
    loads = cluster.run(_clip_loads)
    assert loads == {worker: 1 if assemblies.get(worker) else 0 for worker in loads}
    stories = read_stories(tmp_path / "out")
    assert len(stories) == 4
    assert all(isinstance(f["scores"]["clip"], float) for story, _ in stories.values() for f in story["frames"])
