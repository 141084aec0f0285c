"""End to end: `storyloom ingest` under a real Prefect API, real yt-dlp over a loopback server.

Generated read-aloud videos (hard cuts on line art, cross-fades, fades through black, Ken Burns,
intro and outro cards) are offered as HTML pages with a <video> and a subtitle <track>, next to
every kind of bad input. The stories that come out must match the generated truth exactly:
frame count, order, pixels and texts; bad inputs must become rows in sources.parquet.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flows.cli import main as storyloom
from pipeline.synthetic import (
    PageSpec,
    VideoSpec,
    write_garbage_subtitles,
    write_story_video,
    write_truncated_mp4,
    write_zero_length,
)
from tests.conftest import StaticServer

STORY = [
    "Pip the fox woke up in the cold.",
    "She went to look for a warmer home.",
    "The hill was too windy. The river was too wet!",
    "Under an old oak she found a dry hollow.",
    "It was just right, and Pip slept.",
]

GOOD = {
    "cuts": dict(style="cut", line_art=True, intro=True),
    "xfade": dict(style="crossfade", outro=True),
    "fades": dict(style="fade", intro=True, outro=True),
    "kenburns": dict(style="kenburns", intro=True),
}


def page_html(title: str, video: str, track: str | None = None, lang: str = "en") -> str:
    track_tag = f'<track kind="subtitles" srclang="{lang}" src="{track}">' if track else ""
    return (f"<html><head><title>{title}</title></head><body><video controls>"
            f'<source src="{video}" type="video/mp4">{track_tag}</video></body></html>')


def spec(seed: int, pages: int = 5, **kw) -> VideoSpec:
    return VideoSpec(pages=[PageSpec(text, 2.4 + 0.2 * (i % 3)) for i, text in enumerate(STORY[:pages])], seed=seed, **kw)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The loopback site, the sources file and the truth of every good video."""
    root = tmp_path_factory.mktemp("site")
    server = StaticServer(root)
    truths = {}
    for seed, (name, style) in enumerate(GOOD.items()):
        truths[name] = write_story_video(root, name, spec(seed, **style))
    # a video without audio but with subtitles is still a good story
    truths["silent"] = write_story_video(root, "silent", spec(11, pages=3, audio=False))
    # the same, without subtitles: no narration anywhere
    write_story_video(root, "mute", spec(12, pages=3, audio=False))
    (root / "mute.html").write_text(page_html("Mute", "mute.mp4"))
    # subtitles missing: kept with empty texts
    truths["nosubs"] = write_story_video(root, "nosubs", spec(13, pages=3))
    (root / "nosubs.html").write_text(page_html("No subtitles", "nosubs.mp4"))
    # garbage subtitles
    write_story_video(root, "garbled", spec(14, pages=3))
    write_garbage_subtitles(root / "garbled.en.vtt", flavor="binary")
    # truncated video
    write_truncated_mp4(truths["cuts"].video, root / "truncated.mp4", keep_fraction=0.4)
    (root / "truncated.html").write_text(page_html("Truncated", "truncated.mp4", "cuts.en.vtt"))
    # too long (max_duration_s below)
    write_story_video(root, "long", VideoSpec(pages=[PageSpec("A very long page.", 31.0)], seed=15))
    # a page without a video, and a local zero-length file
    (root / "novideo.html").write_text("<html><head><title>Nothing here</title></head><body><p>Hello</p></body></html>")
    write_zero_length(root / "empty.mp4")

    names = ["cuts", "xfade", "fades", "kenburns", "silent", "mute", "nosubs", "garbled", "truncated", "long", "novideo"]
    entries = [f"  - url: {server.url(name + '.html')}\n" for name in names]
    entries.append(f"  - url: {server.url('missing.html')}\n")
    entries.append("  - url: http://127.0.0.1:9/unreachable.html\n")  # nothing listens on port 9
    entries.append(f"  - path: {root / 'empty.mp4'}\n")
    sources = root.parent / "sources.yaml"
    sources.write_text("defaults:\n  language: en\n  license: CC0\n  max_duration_s: 25\nsources:\n" + "".join(entries))
    config = root.parent / "config.yaml"  # quick retries: the unreachable host is retried, then fails
    config.write_text("fetch:\n  retries: 1\n  backoff_s: 0.05\n  socket_timeout_s: 5\n")
    yield server, sources, config, truths
    server.close()


def tree_digest(out: Path) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every output file outside work/."""
    return {
        str(p.relative_to(out)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*"))
        if p.is_file() and "work" not in p.relative_to(out).parts
    }


@pytest.fixture(scope="module")
def ingested(site, prefect_harness, tmp_path_factory):
    _, sources, config, _ = site
    out = tmp_path_factory.mktemp("out")
    assert storyloom(["ingest", str(sources), "--out", str(out), "--config", str(config)]) == 0
    return out


def sources_rows(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out / "sources.parquet").to_pylist()
    return {Path(row["input"]).stem: row for row in rows}


def grey(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (64, 36), interpolation=cv2.INTER_AREA).astype(np.float32)


def read_stories(out: Path) -> dict[str, tuple[dict, list[np.ndarray]]]:
    import webdataset as wds
    from PIL import Image

    stories = {}
    urls = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    for sample in wds.WebDataset(urls, shardshuffle=False):
        story = json.loads(sample["json"])
        images = [np.asarray(Image.open(io.BytesIO(sample[f"{i:03d}.jpg"])).convert("RGB")) for i in range(len(story["frames"]))]
        stories[Path(story["source"]["url"]).stem] = (story, images)
    return stories


def test_bad_inputs_become_rows_and_the_run_goes_on(ingested):
    rows = sources_rows(ingested)
    expect = {
        "cuts": ("ok", None), "xfade": ("ok", None), "fades": ("ok", None), "kenburns": ("ok", None),
        "silent": ("ok", "no audio track"),
        "nosubs": ("ok", "no subtitles found"),
        "mute": ("failed", "no audio track and no subtitles"),
        "garbled": ("failed", "subtitles unusable"),
        "truncated": ("failed", "truncated"),
        "long": ("skipped", "max_duration_s"),
        "novideo": ("failed", "no video found"),
        "missing": ("failed", "404"),
        "unreachable": ("failed", "127.0.0.1:9"),
        "empty": ("failed", "empty"),
    }
    assert set(rows) == set(expect)
    for name, (status, message) in expect.items():
        row = rows[name]
        assert row["status"] == status, (name, row)
        if message:
            assert message in row["error"], (name, row["error"])


def test_stories_match_the_generated_truth(site, ingested):
    _, _, _, truths = site
    stories = read_stories(ingested)
    assert set(stories) == {"cuts", "xfade", "fades", "kenburns", "silent", "nosubs"}
    for name, truth in truths.items():
        story, images = stories[name]
        pages = truth.pages()
        assert [f["index"] for f in story["frames"]] == list(range(len(pages)))
        assert len(images) == len(pages), name
        texts = [f["text"] for f in story["frames"]]
        if name == "nosubs":
            assert texts == [""] * len(pages)
            assert all("no_text_source" in f["flags"] and "no_speech" in f["flags"] for f in story["frames"])
        else:
            assert texts == [p.text for p in pages], name
        pictures = [grey(s.picture) for s in truth.segments]
        for image, page in zip(images, pages):
            distances = [float(np.abs(grey(image) - p).mean()) for p in pictures]
            # each frame shows its own page (cards included among the alternatives)
            assert int(np.argmin(distances)) == truth.segments.index(page), (name, page.page, distances)
            if not page.kenburns:
                assert min(distances) < 6, (name, page.page, distances)
        assert story["source"]["license"] == "CC0" and story["source"]["language"] == "en"
        assert story["split"] in ("train", "test")


def test_shards_read_back_through_wids(ingested):
    import wids

    manifest = json.loads((ingested / "manifest.json").read_text())
    assert sum(s["nsamples"] for s in manifest["shardlist"]) == 6
    everything = wids.ShardListDataset(str(ingested / "manifest.json"), localname=lambda url: url)
    assert sorted(everything[i]["__key__"] for i in range(len(everything))) == sorted(
        json.loads(p.read_text())["story_id"] for p in ingested.glob("work/*/story.json"))
    for shard in manifest["shardlist"]:
        data = (ingested / shard["url"]).read_bytes()
        assert len(data) == shard["filesize"] and hashlib.sha256(data).hexdigest() == shard["sha256"]
    train = json.loads((ingested / "manifest-train.json").read_text())
    dataset = wids.ShardListDataset(str(ingested / "manifest-train.json"), localname=lambda url: url)
    assert len(dataset) == sum(s["nsamples"] for s in train["shardlist"]) > 0
    sample = dataset[0]
    story = sample[".json"]  # wids decodes .json members
    assert sample["__key__"] == story["story_id"]
    assert story["split"] == "train" and len(story["frames"]) >= 3


def test_second_run_changes_nothing(site, ingested, prefect_harness):
    _, sources, config, _ = site
    before = tree_digest(ingested)
    assert storyloom(["ingest", str(sources), "--out", str(ingested), "--config", str(config)]) == 0
    assert tree_digest(ingested) == before


def test_run_killed_midway_resumes_to_identical_shards(site, ingested, prefect_harness, tmp_path):
    _, sources, config, _ = site
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "PREFECT_LOGGING_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "ingest", str(sources), "--out", str(out), "--config", str(config)],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("work/*/DONE.json")) and time.monotonic() < deadline:
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not (out / "manifest.json").exists(), "killed too late to test a resume"
    assert storyloom(["ingest", str(sources), "--out", str(out), "--config", str(config)]) == 0
    for name in ["manifest.json", "catalog.parquet", *[f"shards/{p.name}" for p in (ingested / "shards").glob("*.tar")]]:
        assert (out / name).read_bytes() == (ingested / name).read_bytes(), name
