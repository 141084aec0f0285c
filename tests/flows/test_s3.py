"""End to end on a real S3 server on loopback (moto behind a fault proxy, ``tests/s3server.py``):
`storyloom ingest` of generated videos and a book read from the store, written with
``--out s3://...``; the objects equal a local run's files byte for byte; a rerun writes no object;
the store failing for a while is survived, and an outage is finished by a rerun with the same
bytes and no partial object; the shards read back through webdataset over fsspec and through
the StoryGen trainer's data loading from ``--dataset s3://...``; the same run on a Dask cluster
writes the same objects."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main as storyloom
from pipeline.synthetic import PageSpec, VideoSpec, write_story_video
from tests.bookgen.pdf import write_pdf
from tests.conftest import dataset_files
from tests.flows.test_video import STORY

CONFIG = "fetch: {retries: 2, backoff_s: 0.05}\nshards: {max_stories_per_shard: 2, test_fraction: 0.4}\n"


def s3fs():
    import fsspec

    fs = fsspec.filesystem("s3")
    fs.invalidate_cache()
    return fs


def objects(url: str) -> dict[str, bytes]:
    fs = s3fs()
    root = url.removeprefix("s3://")
    return {path[len(root) + 1:]: fs.cat_file(path) for path in fs.find(root)}


def published(local: Path) -> dict[str, bytes]:
    """What a local run's directory holds that must be in the store, byte for byte."""
    files = dataset_files(local)
    files["config.json"] = (local / "config.json").read_bytes()
    return files


@pytest.fixture(scope="module")
def sources(tmp_path_factory, s3_server):
    """Two read-aloud videos (with their subtitles next to them) and a PDF book, in a bucket."""
    root = tmp_path_factory.mktemp("s3-sources")
    write_story_video(root, "tale", VideoSpec(pages=[PageSpec(t, 2.4) for t in STORY[:3]], style="cut", seed=41),
                      save_pictures=False)
    write_story_video(root, "moon", VideoSpec(pages=[PageSpec(t, 2.4) for t in STORY[2:4]], style="cut", seed=42),
                      save_pictures=False)
    write_pdf(root / "book.pdf", "below", seed=43)
    fs = s3fs()
    fs.mkdir("src")
    fs.mkdir("out")
    for name in ("tale.mp4", "tale.en.vtt", "moon.mp4", "moon.en.vtt"):
        fs.put_file(str(root / name), f"src/videos/{name}")
    fs.put_file(str(root / "book.pdf"), "src/books/book.pdf")
    path = root / "sources.yaml"
    path.write_text("defaults:\n  license: CC0\n  language: en\nsources:\n"
                    "  - path: s3://src/videos/tale.mp4\n"
                    "  - url: s3://src/videos/moon.mp4\n"
                    "  - url: s3://src/books/book.pdf\n", encoding="utf-8")
    config = root / "ingest.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    return path, config


@pytest.fixture(scope="module")
def runs(sources, s3_server, prefect_harness, tmp_path_factory):
    """A local run, and the same sources written to s3://out/a/ds (built in ``work``)."""
    sources_file, config = sources
    base = tmp_path_factory.mktemp("s3-runs")
    local = base / "local" / "ds"  # named as the remote folder: the card is titled after it
    assert storyloom(["ingest", str(sources_file), "--out", str(local), "--config", str(config)]) == 0
    work = base / "work"
    assert storyloom(["ingest", str(sources_file), "--out", "s3://out/a/ds", "--work-dir", str(work),
                      "--config", str(config)]) == 0
    return local, work


def ingest_s3(sources, url: str, work: Path) -> int:
    sources_file, config = sources
    return storyloom(["ingest", str(sources_file), "--out", url, "--work-dir", str(work), "--config", str(config)])


def test_the_objects_equal_a_local_run_and_the_sources_came_from_the_store(runs):
    local, _ = runs
    rows = {row["kind"] + ":" + row["input"]: row for row in pq.read_table(local / "sources.parquet").to_pylist()}
    assert {row["status"] for row in rows.values()} == {"ok"} and len(rows) == 3, rows
    remote = objects("s3://out/a/ds")
    expected = published(local)
    assert {name: remote[name] for name in expected} == expected
    assert any(name.startswith("shards/") for name in expected) and "sources.parquet" in remote
    assert not any(name.startswith("work/") for name in remote)  # work/ stays local
    catalog = pq.read_table(local / "catalog.parquet").to_pylist()
    texts = " ".join(row["text"] or "" for row in catalog)
    assert "Pip the fox woke up in the cold." in texts  # the subtitles next to the video came along
    urls = {row["source_url"] for row in catalog}
    assert {"s3://src/videos/tale.mp4", "s3://src/videos/moon.mp4", "s3://src/books/book.pdf"} <= urls


def test_a_rerun_on_the_store_writes_no_object(sources, runs, s3_server):
    _, work = runs
    s3_server.clear()
    assert ingest_s3(sources, "s3://out/a/ds", work) == 0
    writes = [r for r in s3_server.requests() if r[0] in ("PUT", "POST", "DELETE") and "/out/" in r[1]]
    assert writes == []


def test_store_errors_for_a_while_are_survived_and_an_outage_is_finished_by_a_rerun(sources, runs, s3_server, capsys):
    local, work = runs
    expected = published(local)

    s3_server.clear()  # a few errors: retried inside the run
    s3_server.fail(2, methods=("PUT",))
    assert ingest_s3(sources, "s3://out/b/ds", work) == 0
    assert s3_server.faults.failed == 2
    remote = objects("s3://out/b/ds")
    assert {name: remote[name] for name in expected} == expected

    s3_server.clear()  # an outage longer than the retries: the run stops, nothing half-written
    s3_server.fail(10_000, methods=("PUT",))
    capsys.readouterr()
    assert ingest_s3(sources, "s3://out/c/ds", work) == 1
    assert "rerun the same command" in capsys.readouterr().err
    partial = objects("s3://out/c/ds")
    assert "manifest.json" not in partial and all(partial[name] == expected[name] for name in partial)
    s3_server.clear()
    assert ingest_s3(sources, "s3://out/c/ds", work) == 0
    remote = objects("s3://out/c/ds")
    assert {name: remote[name] for name in expected} == expected


def test_a_dask_run_reads_its_sources_from_the_store_and_writes_the_same_objects(sources, runs, s3_server, tmp_path):
    """``--executor dask`` with a remote ``--out``: a local cluster's worker processes (started for the
    run, with the environment that points them at the store) fetch the sources from the store and
    build the sources' work folders in ``--work-dir``; the flow publishes: the same objects."""
    pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    local, _ = runs
    sources_file, config = sources
    work = tmp_path / "work"
    assert storyloom(["ingest", str(sources_file), "--out", "s3://out/dask/ds", "--work-dir", str(work),
                      "--config", str(config), "--executor", "dask", "--dask-workers", "1"]) == 0
    remote = objects("s3://out/dask/ds")
    expected = dataset_files(local)
    assert {name: remote[name] for name in expected} == expected
    # config.json records how it ran (run.executor: dask); the config that decides the data is the same
    run_config, local_config = json.loads(remote["config.json"]), json.loads((local / "config.json").read_bytes())
    assert run_config["config"]["run"]["executor"] == "dask"
    assert run_config["config_hash"] == local_config["config_hash"]
    rows = pq.read_table(work / "sources.parquet").to_pylist()
    assert len(rows) == 3 and {row["status"] for row in rows} == {"ok"}


def test_the_shards_read_back_through_webdataset_over_fsspec(runs):
    import importlib

    import fsspec
    import webdataset as wds

    local, _ = runs
    # webdataset 1.0.2 has no s3 handler of its own: fsspec is plugged into its dispatch table
    # (the module, not the function webdataset exports under the same name)
    schemes = importlib.import_module("webdataset.gopen").gopen_schemes
    schemes["s3"] = lambda url, mode="rb", bufsize=8192, **kw: fsspec.open(url, mode).open()
    manifest = json.loads((local / "manifest.json").read_text())
    urls = [f"s3://out/a/ds/{shard['url']}" for shard in manifest["shardlist"]]
    samples = list(wds.WebDataset(urls, shardshuffle=False, empty_check=False))
    local_samples = list(wds.WebDataset([str(local / s["url"]) for s in manifest["shardlist"]], shardshuffle=False,
                                        empty_check=False))
    assert len(samples) == manifest["nsamples"] == 3
    strip = [{k: v for k, v in s.items() if k != "__url__"} for s in samples]
    assert strip == [{k: v for k, v in s.items() if not k.startswith("__") or k == "__key__"} for s in local_samples]
    assert all(json.loads(s["json"])["story_id"] == s["__key__"] for s in samples)


def test_the_trainer_loads_batches_from_the_dataset_in_the_store(runs):
    import torch

    from model.config import StoryGenConfig
    from model.data import StoryWindows, collate_windows, resolve_shards

    local, _ = runs
    batches = []
    for dataset in ("s3://out/a/ds", str(local)):
        cfg = StoryGenConfig.load(None, [f"data.dataset={dataset}", "data.resolution=16", "data.split=train"])
        urls = resolve_shards(cfg.data.shards, cfg.data.dataset, cfg.data.split)
        windows = StoryWindows(urls, resolution=16, max_context=2, min_context=1, repeat=False)
        batches.append(collate_windows(list(windows)))
    remote, here = batches
    assert remote["image"].shape[0] >= 2 and len(remote["key"]) == remote["image"].shape[0]
    for key, value in here.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(remote[key], value), key
        else:
            assert remote[key] == value, key


def test_an_out_that_cannot_be_used_exits_2_before_any_work(sources, s3_server, tmp_path, capsys):
    sources_file, config = sources
    cases = [
        (["--out", "s3://no-such-bucket/ds", "--work-dir", str(tmp_path / "w")], "cannot be used"),
        (["--out", "https://example.org/ds"], "cannot be written"),
        (["--out", str(tmp_path / "ds"), "--work-dir", str(tmp_path / "w")], "--work-dir is for a remote --out"),
        (["--out", "s3://out/x/ds", "--work-dir", str(tmp_path / "w"), "--storage-option", "novalue"], "KEY=VALUE"),
    ]
    for args, message in cases:
        assert storyloom(["ingest", str(sources_file), *args, "--config", str(config)]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "w").exists() and not (tmp_path / "ds").exists()
    assert storyloom(["ingest", "--from-manifest", str(tmp_path / "m.jsonl"), "--out", "s3://out/m"]) == 2
    assert "local --out only" in capsys.readouterr().err


def test_the_dataset_tools_read_a_dataset_in_the_store_through_a_local_copy(runs, s3_server, tmp_path, monkeypatch):
    from pipeline.dataset.reader import DatasetError, open_dataset

    local, _ = runs
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    remote = open_dataset("s3://out/a/ds")
    here = open_dataset(local)
    assert remote.root.is_relative_to(tmp_path / "cache")
    assert remote.catalog().equals(here.catalog()) and remote.manifest() == here.manifest()
    assert [(r.story.to_json(), r.media) for r in remote.iter_stories()] == [
        (r.story.to_json(), r.media) for r in here.iter_stories()]
    s3_server.clear()
    assert open_dataset("s3://out/a/ds").root == remote.root  # the copy is current: nothing downloaded again
    assert not [r for r in s3_server.requests("GET") if "list-type" not in r[1]]
    assert storyloom(["export", "s3://out/a/ds", "--format", "parquet", "--out", str(tmp_path / "export")]) == 0
    assert storyloom(["export", str(local), "--format", "parquet", "--out", str(tmp_path / "export-local")]) == 0
    assert {p.name: p.read_bytes() for p in (tmp_path / "export").iterdir()} == {
        p.name: p.read_bytes() for p in (tmp_path / "export-local").iterdir()}
    with pytest.raises(DatasetError, match="cannot read the dataset from the store"):
        open_dataset("s3://no-such-bucket/ds")


@pytest.mark.usefixtures("torch_one_thread")
def test_storyloom_train_runs_on_a_dataset_in_the_store(runs, tiny_sd, tmp_path):
    pytest.importorskip("diffusers")
    run = tmp_path / "run"
    values = {"model.pretrained": str(tiny_sd), "data.resolution": 16, "data.num_workers": 0, "train.batch_size": 2,
              "train.max_steps": 1, "train.log_every": 1, "train.sample_every": 0, "train.checkpoint_every": 1}
    sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
    assert storyloom(["train", "--dataset", "s3://out/a/ds", "--out", str(run), "--stage", "1", *sets]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1] and rows[0]["loss"] == rows[0]["loss"] > 0  # a finite loss
