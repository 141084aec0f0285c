"""Shard writer: split assignment, tar layout read back by webdataset and wids, rollover, reruns."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import ShardConfig
from pipeline.output.contract import Frame, SourceInfo, Story
from pipeline.output.shards import assign_split, write_shards
from pipeline.storage import OutputLayout, read_json

CONFIG_HASH = "cafe0123"
VERSION = "0.1.0"


def colour_for(story_id: str, index: int) -> tuple[int, int, int]:
    """A distinct solid colour per frame, so decoded pixels tell frames apart."""
    digest = hashlib.sha256(f"{story_id}/{index}".encode()).digest()
    return digest[0], digest[1], digest[2]


def make_story_dir(
    work: Path,
    story_id: str,
    n_frames: int = 2,
    *,
    masks: tuple[int, ...] = (),
    texts: list[str] | None = None,
    flags: dict[int, list[str]] | None = None,
    language: str | None = "en",
    license: str | None = "CC-BY",
    kind: str = "video",
    noise_side: int = 0,
) -> Path:
    """A finished source dir: story.json plus real JPEG frames (and PNG masks)."""
    source_dir = work / story_id
    (source_dir / "frames").mkdir(parents=True)
    frames = []
    for i in range(n_frames):
        if noise_side:  # incompressible pixels: a big JPEG for the byte-limit tests
            rng = random.Random(f"{story_id}/{i}")
            image = Image.frombytes("RGB", (noise_side, noise_side), rng.randbytes(noise_side * noise_side * 3))
        else:
            image = Image.new("RGB", (48, 32), colour_for(story_id, i))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        (source_dir / "frames" / f"{i:03d}.jpg").write_bytes(buffer.getvalue())
        if i in masks:
            mask = io.BytesIO()
            Image.new("L", image.size, 255).save(mask, "PNG")
            (source_dir / "frames" / f"{i:03d}.mask.png").write_bytes(mask.getvalue())
        text = texts[i] if texts else f"{story_id} sentence {i}."
        frames.append(Frame(index=i, image=f"{i:03d}.jpg", width=image.width, height=image.height,
                            t_start=2.0 * i, t_end=2.0 * i + 1.5, text=text, flags=(flags or {}).get(i, []),
                            scores={"align": 0.5 + i / 100, "clip": None}, has_mask=i in masks))
    source = SourceInfo(kind=kind, url=f"https://example.org/{story_id}", title=f"Title {story_id}",
                        creator="Teller", license=license, language=language, duration_s=60.0)
    story = Story(story_id=story_id, source=source, frames=frames)
    (source_dir / "story.json").write_text(json.dumps(story.to_dict()), encoding="utf-8")
    return source_dir


def _write(dirs: list[Path], root: Path, **cfg):
    return write_shards(dirs, OutputLayout(root), ShardConfig(**cfg), CONFIG_HASH, VERSION)


def _file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_assign_split_is_a_stable_hash():
    # pinned: the split of a story must never move between versions or machines
    assert assign_split("yt-abc123", 0.5) == "train"  # u = 0.789
    assert assign_split("book-the-fox", 0.5) == "test"  # u = 0.424
    assert assign_split("story-0", 0.14) == "test"  # u = 0.130
    ids = [f"id-{n}" for n in range(3000)]
    share = sum(assign_split(i, 0.2) == "test" for i in ids) / len(ids)
    assert 0.17 < share < 0.23
    small = {i for i in ids if assign_split(i, 0.1) == "test"}
    assert small <= {i for i in ids if assign_split(i, 0.2) == "test"}  # more test never moves back
    assert all(assign_split(i, 0.0) == "train" for i in ids[:100])
    with pytest.raises(ValueError):
        assign_split("x", 1.0)


def test_shards_read_back_with_webdataset(tmp_path):
    import webdataset as wds

    ids = ["yt-abc123", "book-the-fox", "story-0", "story-1", "story-3"]
    dirs = [make_story_dir(tmp_path / "work", sid, 3, masks=(2,) if sid == "story-1" else ()) for sid in ids]
    summary = _write(dirs, tmp_path / "out", test_fraction=0.5)
    expected_split = {sid: assign_split(sid, 0.5) for sid in ids}
    assert set(expected_split.values()) == {"train", "test"}
    assert [s.url for s in summary.shards] == ["shards/train-000000.tar", "shards/test-000000.tar"]

    urls = [str(tmp_path / "out" / s.url) for s in summary.shards]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    keys = [s["__key__"] for s in samples]
    assert keys == sorted(k for k in ids if expected_split[k] == "train") + sorted(
        k for k in ids if expected_split[k] == "test")
    for sample in samples:
        key = sample["__key__"]
        story = json.loads(sample["json"])
        assert story["story_id"] == key and story["split"] == expected_split[key]
        assert story["pipeline"] == {"version": VERSION, "config_hash": CONFIG_HASH}
        assert [f["image"] for f in story["frames"]] == ["000.jpg", "001.jpg", "002.jpg"]
        for i in range(3):
            data = sample[f"{i:03d}.jpg"]
            assert data == (tmp_path / "work" / key / "frames" / f"{i:03d}.jpg").read_bytes()
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=int)
            assert pixels.shape == (32, 48, 3)
            assert np.abs(pixels - np.array(colour_for(key, i))).max() <= 3
        assert ("002.mask.png" in sample) == (key == "story-1")

    with tarfile.open(urls[0]) as tar:  # deterministic member metadata
        for member in tar.getmembers():
            assert (member.mtime, member.uid, member.gid, member.uname, member.gname, member.mode) == (
                0, 0, 0, "", "", 0o644)


def test_wids_reads_the_split_manifest(tmp_path, monkeypatch):
    import wids

    ids = [f"story-{n}" for n in range(6)]
    dirs = [make_story_dir(tmp_path / "work", sid, 2) for sid in ids]
    summary = _write(dirs, tmp_path / "out", test_fraction=0.3, max_stories_per_shard=2)
    train_ids = sorted(i for i in ids if assign_split(i, 0.3) == "train")

    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert manifest["__kind__"] == "wids-shard-index-v1" and manifest["wids_version"] == 1
    assert [e["url"] for e in manifest["shardlist"]] == [s.url for s in summary.shards]
    for entry in manifest["shardlist"]:
        data = (tmp_path / "out" / entry["url"]).read_bytes()
        assert entry["filesize"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["url"].startswith(f"shards/{entry['split']}-")
    train = read_json(tmp_path / "out" / "manifest-train.json")
    assert {e["split"] for e in train["shardlist"]} == {"train"}
    assert sum(e["nsamples"] for e in train["shardlist"]) == len(train_ids)

    monkeypatch.chdir(tmp_path)  # relative manifest path: shard urls resolve against its folder
    # localname=identity reads local shards in place (wids' default cache would serve stale copies
    # of a rebuilt shard); this is the usage the card recommends
    dataset = wids.ShardListDataset("out/manifest-train.json", localname=lambda url: url, transformations=[])
    assert len(dataset) == len(train_ids)
    got = [dataset[i] for i in range(len(dataset))]
    assert [s["__key__"] for s in got] == train_ids
    for sample in got:
        assert json.loads(sample[".json"].read())["split"] == "train"
        jpg = sample[".001.jpg"].read()
        assert jpg == (tmp_path / "work" / sample["__key__"] / "frames" / "001.jpg").read_bytes()
    dataset.close()
    assert all(p.suffix == ".tar" for p in (tmp_path / "out" / "shards").iterdir())  # no lock files left


def test_rollover_on_story_count(tmp_path):
    dirs = [make_story_dir(tmp_path / "work", f"s-{n}", 1) for n in range(5)]
    summary = _write(dirs, tmp_path / "out", test_fraction=0.0, max_stories_per_shard=2)
    assert [(s.url, s.nsamples) for s in summary.shards] == [
        ("shards/train-000000.tar", 2), ("shards/train-000001.tar", 2), ("shards/train-000002.tar", 1)]
    assert [p.shard for p in summary.placed] == [s.url for s in summary.shards for _ in range(s.nsamples)]


def test_rollover_on_bytes_and_oversize_story(tmp_path):
    work = tmp_path / "work"
    dirs = [make_story_dir(work, f"s-{n}", 1, noise_side=128) for n in range(6)]  # ~17 KB a story
    dirs.append(make_story_dir(work, "s-big", 1, noise_side=256))  # ~60 KB: more than a shard may hold
    limit = 40 * 1024  # two small stories fit (tars grow in 10 KiB records), three do not
    summary = _write(dirs, tmp_path / "out", test_fraction=0.0, max_shard_bytes=limit)
    groups = [[p.story.story_id for p in summary.placed if p.shard == s.url] for s in summary.shards]
    assert groups == [["s-0", "s-1"], ["s-2", "s-3"], ["s-4", "s-5"], ["s-big"]]
    for shard in summary.shards:
        size = (tmp_path / "out" / shard.url).stat().st_size
        assert size == shard.filesize
        assert (size > limit) == (shard.nsamples == 1)  # only the lone oversize story goes over


def test_rerun_is_byte_identical_and_touches_nothing(tmp_path):
    dirs = [make_story_dir(tmp_path / "work", f"story-{n}", 2, masks=(0,)) for n in range(5)]
    out = tmp_path / "out"
    first = _write(dirs, out, test_fraction=0.3, max_stories_per_shard=2)
    before = _file_hashes(out)
    old = 1_000_000_000
    for path in out.glob("*"):
        if path.is_file():
            os.utime(path, (old, old))
    for path in (out / "shards").iterdir():
        os.utime(path, (old, old))

    second = _write(list(reversed(dirs)), out, test_fraction=0.3, max_stories_per_shard=2)
    assert _file_hashes(out) == before
    assert second.shards == first.shards and second.rewritten == () and second.removed == ()
    touched = [p.name for p in [*out.glob("*.json"), *(out / "shards").iterdir()] if p.stat().st_mtime != old]
    assert touched == []


def test_changed_story_rewrites_only_its_shard(tmp_path):
    dirs = [make_story_dir(tmp_path / "work", f"s-{n}", 1) for n in range(4)]
    out = tmp_path / "out"
    _write(dirs, out, test_fraction=0.0, max_stories_per_shard=2)
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (1, 2, 3)).save(buffer, "JPEG")
    (dirs[3] / "frames" / "000.jpg").write_bytes(buffer.getvalue())
    summary = _write(dirs, out, test_fraction=0.0, max_stories_per_shard=2)
    assert summary.rewritten == ("shards/train-000001.tar",)
    entry = read_json(out / "manifest.json")["shardlist"][1]
    assert entry["sha256"] == hashlib.sha256((out / entry["url"]).read_bytes()).hexdigest()


def test_stale_shards_and_temp_files_are_removed(tmp_path):
    dirs = [make_story_dir(tmp_path / "work", f"s-{n}", 1) for n in range(4)]
    out = tmp_path / "out"
    _write(dirs, out, test_fraction=0.0, max_stories_per_shard=1)
    assert len(list((out / "shards").glob("*.tar"))) == 4
    (out / "shards" / ".train-000000.tar.x1y2.tmp").write_bytes(b"partial")
    (out / "shards" / "README.txt").write_text("not ours")
    summary = _write(dirs, out, test_fraction=0.0, max_stories_per_shard=10)
    assert summary.removed == ("shards/train-000001.tar", "shards/train-000002.tar", "shards/train-000003.tar")
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["README.txt", "train-000000.tar"]
    assert [e["url"] for e in read_json(out / "manifest.json")["shardlist"]] == ["shards/train-000000.tar"]
    assert read_json(out / "manifest-test.json")["shardlist"] == []


def test_duplicate_story_ids_keep_the_first_dir(tmp_path):
    first = make_story_dir(tmp_path / "a", "yt-same", 1)
    second = make_story_dir(tmp_path / "b", "yt-same", 2)
    summary = _write([second, first], tmp_path / "out", test_fraction=0.0)
    assert summary.stories == 1 and len(summary.placed[0].story.frames) == 1
    assert summary.duplicates == (str(second),)


def test_too_long_story_id_is_rejected(tmp_path):
    long_id = "yt-" + "x" * 90  # "{id}.000.mask.png" would not fit a ustar name field
    with pytest.raises(ValueError, match="too long"):
        _write([make_story_dir(tmp_path / "work", long_id, 1)], tmp_path / "out")
