"""Publishing a dataset folder to a real S3 server on loopback (moto behind a fault proxy): what is
uploaded, in which order, what a rerun touches (nothing), and errors from the store for a while."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from pipeline.objectstore import (
    ObjectStore,
    StorageError,
    dataset_files,
    fetch_object,
    is_store_source,
    parse_storage_options,
    publish,
    resolve_output,
    store_identity,
)
from pipeline.errors import StageError
from pipeline.storage import OutputLayout


def make_dataset(root: Path, shards: dict[str, bytes]) -> OutputLayout:
    """A folder with the files of an output directory (the bytes do not matter to publishing)."""
    files = {
        "manifest.json": b'{"all": 1}\n', "manifest-train.json": b'{"train": 1}\n', "manifest-test.json": b"{}\n",
        "catalog.parquet": b"PAR1 catalog", "sources.parquet": b"PAR1 sources", "card.md": b"# card\n",
        "card/languages.png": b"\x89PNG languages", "config.json": b"{}\n",
        "work/src-1/DONE.json": b"{}", "work/src-1/frames/000.jpg": b"jpeg",  # never published
        "shards/.train-000000.tar.abc.tmp": b"half",  # a temp file: never published
        "preview/index.html": b"<html>", "notes.txt": b"mine",  # not the dataset's: never published
    }
    files.update({f"shards/{name}": data for name, data in shards.items()})
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return OutputLayout(root)


def bucket(server) -> str:
    import fsspec

    name = f"b{uuid.uuid4().hex[:12]}"
    fsspec.filesystem("s3").mkdir(name)
    return name


def remote_files(url: str) -> dict[str, bytes]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {path[len(root) + 1:]: fs.cat_file(path) for path in fs.find(root)}


def local_files(layout: OutputLayout) -> dict[str, bytes]:
    return {rel: (layout.root / rel).read_bytes() for rel in dataset_files(layout.root)}


def test_dataset_files_leave_out_work_and_temp_files_and_put_the_manifests_last(tmp_path):
    layout = make_dataset(tmp_path, {"train-000000.tar": b"t0", "test-000000.tar": b"s0"})
    names = dataset_files(layout.root)
    assert names[-3:] == ["manifest-test.json", "manifest-train.json", "manifest.json"]
    assert names[:3] == ["card/languages.png", "shards/test-000000.tar", "shards/train-000000.tar"]
    assert not any(n.startswith("work/") or "/." in n for n in names) and len(names) == 10


def test_publish_uploads_once_then_touches_nothing_and_removes_stale_shards_after_the_index(tmp_path, s3_server):
    url = f"s3://{bucket(s3_server)}/ds"
    layout = make_dataset(tmp_path / "ds", {"train-000000.tar": b"a" * 3000, "train-000001.tar": b"b" * 1000,
                                            "test-000000.tar": b"c" * 512})
    store = ObjectStore(url, retries=1, backoff_s=0.01)
    s3_server.clear()
    report = publish(layout, store)
    assert remote_files(url) == local_files(layout)
    assert len(report.uploaded) == 11 and report.unchanged == () and report.removed == ()
    puts = [path.split("/ds/", 1)[1] for method, path in s3_server.requests("PUT")]
    assert puts[-3:] == ["manifest-test.json", "manifest-train.json", "manifest.json"]  # the index last
    sha = hashlib.sha256(b"a" * 3000).hexdigest()
    assert store.stored_sha256("shards/train-000000.tar") == sha  # recorded with the object

    s3_server.clear()
    again = publish(layout, ObjectStore(url, retries=1, backoff_s=0.01))
    assert again.uploaded == () and len(again.unchanged) == 11
    assert s3_server.requests("PUT") == [] and s3_server.requests("DELETE") == []

    # one shard changes (same size), one goes away; the other files stay as they are
    (layout.root / "shards/train-000000.tar").write_bytes(b"A" * 3000)
    (layout.root / "shards/train-000001.tar").unlink()
    (layout.root / "manifest.json").write_bytes(b'{"all": 2}\n')
    s3_server.clear()
    third = publish(layout, ObjectStore(url, retries=1, backoff_s=0.01))
    assert third.uploaded == ("shards/train-000000.tar", "manifest.json")
    assert third.removed == ("shards/train-000001.tar",)
    assert remote_files(url) == local_files(layout)
    writes = [(m, p.split("/ds/", 1)[1]) for m, p in s3_server.requests() if m in ("PUT", "DELETE", "POST")]
    # the stale shard goes after the index that no longer names it
    assert writes == [("PUT", "shards/train-000000.tar"), ("PUT", "manifest.json"), ("DELETE", "shards/train-000001.tar")]


def test_a_shard_too_big_for_one_put_goes_up_in_parts_with_its_checksum(tmp_path, s3_server):
    """Shards reach ``shards.max_shard_bytes`` (256 MiB by default): s3fs uploads anything over twice
    its 50 MiB part size as a multipart upload. The object appears whole when the upload completes
    (a store that fails the parts leaves nothing under the name), carries the same sha256 metadata,
    and the next publish leaves it alone."""
    url = f"s3://{bucket(s3_server)}/ds"
    part = 50 * 2**20
    big = bytes(range(256)) * ((2 * part + 4096) // 256)  # three parts: 50 + 50 MiB + the rest
    layout = make_dataset(tmp_path / "ds", {"train-000000.tar": big, "test-000000.tar": b"small"})
    # the store refuses every part: the upload is begun, never completed, and nothing has the name
    s3_server.fail(1000, methods=("PUT",))
    with pytest.raises(StorageError):
        ObjectStore(url, retries=1, backoff_s=0.01).upload(layout.root / "shards/train-000000.tar",
                                                           "shards/train-000000.tar", "0" * 64)
    assert any(method == "POST" and "/ds/shards/train" in path for method, path in s3_server.requests())
    assert remote_files(url) == {}

    s3_server.clear()
    publish(layout, ObjectStore(url, retries=1, backoff_s=0.01))
    calls = [(method, path.split("/ds/", 1)[1]) for method, path in s3_server.requests() if "/ds/shards/train" in path]
    # parts of the failed upload above may still arrive now (s3fs sends them concurrently and does not
    # wait for the others when one fails): only this upload's, the one completed, are counted
    completed = [path.split("uploadId=")[1] for method, path in calls if method == "POST" and "uploadId=" in path]
    assert len(completed) == 1
    parts = sorted(path for method, path in calls if method == "PUT" and path.endswith(f"uploadId={completed[0]}"))
    assert [path.split("partNumber=")[1].split("&")[0] for path in parts] == ["1", "2", "3"]  # UploadPart x3
    assert [path.split("?")[1].split("=")[0] for method, path in calls if method == "POST"] == ["uploads", "uploadId"]
    store = ObjectStore(url, retries=1, backoff_s=0.01)
    assert store.stored_sha256("shards/train-000000.tar") == hashlib.sha256(big).hexdigest()
    assert remote_files(url)["shards/train-000000.tar"] == big

    s3_server.clear()
    again = publish(layout, store)
    assert again.uploaded == () and s3_server.requests("PUT") == []


def test_store_errors_for_a_while_are_retried_and_an_outage_leaves_no_partial_object(tmp_path, s3_server):
    url = f"s3://{bucket(s3_server)}/ds"
    layout = make_dataset(tmp_path / "ds", {"train-000000.tar": b"x" * 2048, "test-000000.tar": b"y" * 1024})

    # an outage longer than the retries: the publish fails, and what is there is whole
    s3_server.clear()
    s3_server.fail(1000, methods=("PUT",))
    with pytest.raises(StorageError, match="ServiceUnavailable|gave up"):
        publish(layout, ObjectStore(url, retries=2, backoff_s=0.01, upload_workers=1))
    tries: dict[str, int] = {}
    for _, path in s3_server.requests("PUT"):
        tries[path] = tries.get(path, 0) + 1
    assert tries and set(tries.values()) == {3}  # the first try and two retries per file, then it stops
    assert len(tries) < 5  # and starts no more uploads
    assert remote_files(url) == {}  # nothing under a final name, the index least of all

    # the store answers again, but with errors now and then: every call gets through on a retry
    s3_server.clear()
    s3_server.fail(4, methods=("PUT", "HEAD", "GET"))
    report = publish(layout, ObjectStore(url, retries=4, backoff_s=0.01))
    assert s3_server.faults.failed == 4 and len(report.uploaded) == 10
    assert remote_files(url) == local_files(layout)


def test_an_outage_in_the_middle_is_finished_by_the_next_publish(tmp_path, s3_server):
    url = f"s3://{bucket(s3_server)}/ds"
    layout = make_dataset(tmp_path / "ds", {f"train-{n:06d}.tar": bytes([n]) * 700 for n in range(4)})
    store = ObjectStore(url, retries=1, backoff_s=0.01, upload_workers=1)
    s3_server.clear()
    original = store.upload
    calls = []

    def upload(local, rel, sha):  # the store goes down after three files are in
        calls.append(rel)
        if len(calls) == 4:
            s3_server.fail(1000, methods=("PUT",))
        return original(local, rel, sha)

    store.upload = upload
    with pytest.raises(StorageError):
        publish(layout, store)
    there = remote_files(url)
    assert len(there) == 3 and all(there[rel] == (layout.root / rel).read_bytes() for rel in there)
    assert not any(rel.startswith("manifest") for rel in there)
    s3_server.clear()
    report = publish(layout, ObjectStore(url, retries=1, backoff_s=0.01))
    assert len(report.unchanged) == 3 and len(report.uploaded) == 9  # 4 shards and 8 other files in all
    assert remote_files(url) == local_files(layout)


def test_a_missing_bucket_is_permanent_and_said_at_once(tmp_path, s3_server):
    layout = make_dataset(tmp_path / "ds", {"train-000000.tar": b"z"})
    s3_server.clear()
    with pytest.raises(StorageError) as info:
        publish(layout, ObjectStore(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/ds", retries=3, backoff_s=5.0))
    assert "gave up" not in str(info.value)  # no retries: a permanent error
    assert s3_server.faults.failed == 0


def test_a_filesystem_without_atomic_uploads_gets_a_temp_key_then_a_move(tmp_path):
    target = tmp_path / "remote"
    layout = make_dataset(tmp_path / "ds", {"train-000000.tar": b"q" * 100})
    store = ObjectStore(f"file://{target}", retries=0, backoff_s=0.0)
    assert store.stored_sha256("anything") is None  # no metadata: the bytes are hashed when sizes match
    publish(layout, store)
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()} == local_files(layout)
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.is_file()}
    report = publish(layout, store)
    assert report.uploaded == () and {p: p.stat().st_mtime_ns for p in before} == before


def test_output_targets_and_storage_options():
    local = resolve_output("file:///tmp/some/ds")
    assert not local.remote and local.local_root == Path("/tmp/some/ds") and local.name == "some/ds".split("/")[-1]
    remote = resolve_output("s3://bucket/a/ds/", work_dir="/tmp/w", storage_options={"anon": False})
    assert remote.remote and remote.url == "s3://bucket/a/ds" and remote.name == "ds" and remote.local_root == Path("/tmp/w")
    assert resolve_output("s3://bucket/ds").local_root != resolve_output("s3://bucket/ds2").local_root
    for bad, message in (("https://example.org/ds", "cannot be written"), ("s3://bucket", "folder inside the bucket"),
                         ("nosuchproto://x/y", "no filesystem")):
        with pytest.raises(ValueError, match=message):
            resolve_output(bad)
    with pytest.raises(ValueError, match="--work-dir"):
        resolve_output("/tmp/ds", work_dir="/tmp/w")
    assert parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "config_kwargs={retries: {max_attempts: 2}}"]) == {
        "endpoint_url": "http://127.0.0.1:9000", "config_kwargs": {"retries": {"max_attempts": 2}}}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_storage_options(["novalue"])


def test_objects_are_fetched_whole_with_retries_and_missing_ones_are_permanent(tmp_path, s3_server):
    import fsspec

    name = bucket(s3_server)
    fsspec.filesystem("s3").pipe(f"{name}/books/fox.epub", b"E" * 5000)
    url = f"s3://{name}/books/fox.epub"
    assert is_store_source(url) and not is_store_source("https://example.org/x.epub")
    first = store_identity(url)
    assert first is not None and first[0] == 5000
    s3_server.clear()
    s3_server.fail(2, methods=("GET",))
    assert fetch_object(url, tmp_path / "fox.epub", retries=2, backoff_s=0.01) == 5000
    assert (tmp_path / "fox.epub").read_bytes() == b"E" * 5000 and not (tmp_path / "fox.epub.part").exists()
    with pytest.raises(StageError) as info:
        fetch_object(f"s3://{name}/books/none.epub", tmp_path / "none.epub", retries=3, backoff_s=5.0)
    assert info.value.permanent and "not found" in str(info.value)
    with pytest.raises(StageError) as info:
        fetch_object(url, tmp_path / "big.epub", retries=0, backoff_s=0.0, max_bytes=1000)
    assert info.value.skipped and not (tmp_path / "big.epub").exists()
    fsspec.filesystem("s3").pipe(f"{name}/books/fox.epub", b"F" * 5001)
    assert store_identity(url) != first  # a new version of the object is a new input
