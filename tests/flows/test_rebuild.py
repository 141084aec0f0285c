"""End to end: ingest over a loopback site (real yt-dlp, real HTTP), `storyloom export --format manifest`,
then `storyloom ingest --from-manifest` into fresh directories under the real Prefect flow: the same
frames and shards; with one source gone and one re-encoded, both reported and the run still done."""

from __future__ import annotations

import json
import subprocess

import pyarrow.parquet as pq
import pytest

from flows.cli import main as storyloom
from pipeline.dataset.manifest import MANIFEST_FILE, read_manifest
from pipeline.dataset.reader import open_dataset
from pipeline.synthetic import PageSpec, VideoSpec, write_story_video
from pipeline.video.ffmpeg import find_ffmpeg
from tests.conftest import StaticServer, dataset_files
from tests.bookgen.pdf import write_pdf

TEXTS = ["Ann has a red kite.", "The wind takes it high.", "It lands in a tall tree."]


def video_spec(seed: int, style: str) -> VideoSpec:
    return VideoSpec(pages=[PageSpec(text, 2.2) for text in TEXTS], seed=seed, style=style)


@pytest.fixture(scope="module")
def site(tmp_path_factory, prefect_harness):
    """Two videos (HTML pages with a <video> and subtitles) and a PDF on a loopback server, ingested."""
    root = tmp_path_factory.mktemp("www")
    server = StaticServer(root)
    write_story_video(root, "cuts", video_spec(1, "cut"), save_pictures=False)
    write_story_video(root, "fades", video_spec(2, "fade"), save_pictures=False)
    write_pdf(root / "book.pdf", "flat_vector", seed=3)
    work = tmp_path_factory.mktemp("run")
    sources = work / "sources.yaml"
    sources.write_text("defaults:\n  license: CC-BY\n  language: en\nsources:\n"
                       + "".join(f"  - url: {server.url(name)}\n" for name in ("cuts.html", "fades.html", "book.pdf")))
    config = work / "config.yaml"  # quick retries: a removed source is retried once, then fails
    config.write_text("fetch:\n  retries: 1\n  backoff_s: 0.05\n  socket_timeout_s: 5\nshards: {test_fraction: 0.5}\n")
    out = work / "dataset"
    assert storyloom(["ingest", str(sources), "--out", str(out), "--config", str(config)]) == 0
    assert storyloom(["export", str(out), "--format", "manifest", "--out", str(work / "shared")]) == 0
    yield server, root, out, work / "shared" / MANIFEST_FILE
    server.close()


def test_the_manifest_rebuilds_identical_frames_and_shards(site, tmp_path, capsys):
    _, _, out, manifest = site
    entries = read_manifest(manifest).stories
    assert sorted(e.story.source.kind for e in entries) == ["ebook", "video", "video"]
    assert all(e.story.source.url.startswith("http://127.0.0.1:") for e in entries)
    again = tmp_path / "again"
    assert storyloom(["ingest", "--from-manifest", str(manifest), "--out", str(again)]) == 0
    printed = capsys.readouterr().out
    frames = sum(len(e.story.frames) for e in entries)
    assert f"rebuilt 3 of 3 stories, {frames} frames" in printed and f"frames identical {frames}," in printed
    original, rebuilt = dataset_files(out), dataset_files(again)
    for name in ("card.md", "card/drop_reasons.png"):  # the card counts what each run found and dropped
        original.pop(name), rebuilt.pop(name)
    assert sorted(name for name in rebuilt if rebuilt[name] != original.get(name)) == []
    assert rebuilt == original
    rows = pq.read_table(again / "sources.parquet").to_pylist()
    assert [r["status"] for r in rows] == ["ok"] * 3 and not any(r["error"] for r in rows)


def test_gone_and_changed_sources_are_reported_and_the_run_finishes(site, tmp_path, capsys):
    server, root, _, manifest = site
    entries = {e.story.source.url.rsplit("/", 1)[-1]: e for e in read_manifest(manifest).stories}
    fades, cuts = entries["fades.html"], entries["cuts.html"]
    (root / "fades.html").rename(root / "fades.html.gone")
    video = root / "cuts.mp4"
    try:
        # re-encoded at another quality: the same pages, other pixels
        subprocess.run([find_ffmpeg(), "-v", "error", "-y", "-i", str(video), "-c:v", "libx264", "-crf", "38",
                        "-c:a", "copy", str(root / "cuts.reencoded.mp4")], check=True)
        video.rename(root / "cuts.original.mp4")
        (root / "cuts.reencoded.mp4").rename(video)
        again = tmp_path / "again"
        assert storyloom(["ingest", "--from-manifest", str(manifest), "--out", str(again)]) == 0
    finally:
        (root / "fades.html.gone").rename(root / "fades.html")
        (root / "cuts.original.mp4").replace(video)
    printed = capsys.readouterr().out
    assert f"gone: {fades.story_id}" in printed
    assert f"{cuts.story_id}: source changed" in printed and f"{cuts.story_id}: frames differ" in printed
    assert "rebuilt 2 of 3 stories" in printed and "sources gone 1, changed 1" in printed
    rows = {r["source_id"]: r for r in pq.read_table(again / "sources.parquet").to_pylist()}
    assert (rows[fades.story_id]["status"], rows[fades.story_id]["stage"]) == ("failed", "fetch")
    report = json.loads((again / "rebuild-report.json").read_text())
    by_id = {s["story_id"]: s for s in report["stories"]}
    assert by_id[cuts.story_id]["source_changed"] and by_id[cuts.story_id]["differing"]
    assert by_id[cuts.story_id]["identical"] == [] and by_id[cuts.story_id]["missing"] == []
    stories = {r.story.story_id: r.story for r in open_dataset(again).iter_stories(with_media=False)}
    assert fades.story_id not in stories
    rebuilt = stories[cuts.story_id]
    # kept, flagged, with the manifest's texts and times
    assert all("rebuild_mismatch" in f.flags for f in rebuilt.frames)
    assert [(f.text, f.pts) for f in rebuilt.frames] == [(f.text, f.pts) for f in cuts.story.frames]


def test_bad_arguments_exit_2_with_a_message(site, tmp_path, capsys):
    _, _, out, manifest = site
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{}\n")
    assert storyloom(["ingest", "--from-manifest", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "not a storyloom manifest" in capsys.readouterr().err
    assert storyloom(["ingest", "--out", str(tmp_path / "x")]) == 2
    assert storyloom(["export", str(tmp_path / "nowhere"), "--format", "manifest", "--out", str(tmp_path / "y")]) == 2
    assert "no such directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # argparse refuses an unknown format
        storyloom(["export", str(out), "--format", "csv", "--out", str(tmp_path / "y")])
    assert exit_info.value.code == 2
