"""Shareable manifests: the export names every source, frame time and hash; the plain rebuild stages
remake the mixed dataset (local videos and books) byte for byte from it, and report what changed."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

from pipeline.dataset import rebuild as stages
from pipeline.dataset.manifest import MANIFEST_FILE, ManifestError, export_manifest, read_manifest
from pipeline.dataset.reader import DatasetError, open_dataset
from pipeline.storage import OutputLayout
from tests.conftest import dataset_files


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def local(url: str) -> Path:
    return Path(url2pathname(urlparse(url).path))


@pytest.fixture(scope="module")
def exported(mixed_dataset, tmp_path_factory):
    return export_manifest(open_dataset(mixed_dataset), tmp_path_factory.mktemp("manifest"))


def test_the_manifest_names_sources_times_hashes_and_texts(mixed_dataset, exported, tmp_path):
    lines = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    header, entries = lines[0], [line["story"] for line in lines[1:]]
    config = json.loads((mixed_dataset / "config.json").read_text())
    assert (header["format"], header["version"]) == ("storyloom-manifest", 1)
    assert (header["config"], header["config_hash"]) == (config["config"], config["config_hash"])
    records = {r.story.story_id: r for r in open_dataset(mixed_dataset).iter_stories()}
    assert [e["story_id"] for e in entries] == sorted(records) and len(entries) == header["stories"] == 6
    assert sum(len(e["frames"]) for e in entries) == header["frames"] == 27
    for entry in entries:
        record = records[entry["story_id"]]
        source = entry["source"]
        assert entry["split"] == record.story.split
        # the hash of the very file the frames came from (local sources: read in place)
        assert source["source_sha256"] == sha(local(source["url"]).read_bytes())
        for frame, kept in zip(entry["frames"], record.story.frames):
            assert frame["sha256"] == sha(record.media[kept.image])
            assert ("mask_sha256" in frame) == kept.has_mask
            assert frame["text"] == kept.text and frame["flags"] == kept.flags
            if source["kind"] == "video":
                assert isinstance(frame["pts"], int) and frame["t_start"] <= frame["t_frame"] <= frame["t_end"]
                assert frame["page"] is None
            else:
                assert frame["pts"] is None and frame["t_frame"] is None and frame["page"] >= 1
        if source["kind"] == "video":
            assert source["time_base"].startswith("1/") and source["extractor"] == "local" and source["video_id"]
    assert any("mask_sha256" in f for e in entries for f in e["frames"])
    # the same dataset, the same bytes
    assert export_manifest(open_dataset(mixed_dataset), tmp_path).read_bytes() == exported.read_bytes()


def test_a_manifest_reads_back_as_the_stories_it_came_from(mixed_dataset, exported):
    manifest = read_manifest(exported)
    stories = {r.story.story_id: r.story for r in open_dataset(mixed_dataset).iter_stories(with_media=False)}
    assert {e.story_id: e.story.to_json() for e in manifest.stories} == {k: s.to_json() for k, s in stories.items()}
    assert all(e.media_sha256.keys() >= {f.image for f in e.story.frames} for e in manifest.stories)


def test_bad_inputs_are_refused_with_the_reason(tmp_path, exported):
    with pytest.raises(DatasetError, match="no such directory"):
        export_manifest(open_dataset(tmp_path / "nothing"), tmp_path)
    bad = tmp_path / "bad.jsonl"
    for text, expected in [("", "empty"), ("{\"format\": \"other\"}\n", "not a storyloom manifest"),
                           ("not json\n", "line 1 is not JSON"),
                           (exported.read_text().replace('"version":1', '"version":9', 1), "manifest version 9"),
                           (exported.read_text().splitlines()[0] + "\n{\"story\": {}}\n", "line 2")]:
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ManifestError, match=expected):
            read_manifest(bad)


def rebuild_plainly(manifest_path: Path, out: Path) -> tuple[list, list]:
    """The rebuild stages run in order without Prefect (what flows.rebuild wires)."""
    manifest = read_manifest(manifest_path)
    cfg = stages.manifest_config(manifest)
    layout = OutputLayout(out)
    results, outcomes = [], []
    for entry in manifest.stories:
        run = stages.start_run(layout, entry, cfg)
        run.step("fetch", stages.fetch, cfg)
        run.step("parse", stages.parse, cfg)
        outcome = run.step("rebuild", stages.rebuild, cfg, entry)
        results.append(run.result)
        outcomes.append(outcome or stages.failed_outcome(run, entry))
    stages.write_rebuilt_dataset(layout, manifest, cfg, sorted(results, key=lambda r: r.source_id), outcomes)
    return results, outcomes


def test_the_rebuild_gives_identical_frames_and_shards(mixed_dataset, exported, tmp_path):
    results, outcomes = rebuild_plainly(exported, tmp_path / "again")
    assert all(r.status == "ok" for r in results), [(r.source_id, r.error) for r in results]
    assert all(not o.differing and not o.missing and not o.source_changed for o in outcomes)
    assert sum(len(o.identical) for o in outcomes) == 27
    original, rebuilt = dataset_files(mixed_dataset), dataset_files(tmp_path / "again")
    # the card counts what each run found (the rebuild parses no failed source): its text and drop plot differ
    for name in ("card.md", "card/drop_reasons.png"):
        original.pop(name), rebuilt.pop(name)
    assert rebuilt == original
    assert (tmp_path / "again" / "config.json").read_bytes() == (mixed_dataset / "config.json").read_bytes()
    report = json.loads((tmp_path / "again" / stages.REPORT_FILE).read_text())
    assert report["totals"]["frames_identical"] == 27 and report["totals"]["sources_gone"] == 0


def test_a_gone_source_and_a_changed_book_are_reported(mixed_dataset, exported, tmp_path):
    """Sources moved into a copy: one video removed, the PDF rewritten with other art; the rest is the same."""
    manifest = read_manifest(exported)
    copies = tmp_path / "sources"
    copies.mkdir()
    text = exported.read_text(encoding="utf-8")
    by_kind = {}
    for entry in manifest.stories:
        path = local(entry.story.source.url)
        by_kind.setdefault(entry.story.source.extra.get("format", "video"), []).append(entry)
        for sidecar in path.parent.glob(path.stem + ".*"):  # the video's subtitles go with it
            if sidecar.is_file():
                shutil.copy2(sidecar, copies / sidecar.name)
        text = text.replace(path.as_uri(), (copies / path.name).as_uri())
    gone = by_kind["video"][0]
    (copies / Path(local(gone.story.source.url)).name).unlink()
    pdf = by_kind["pdf"][0]
    from tests.bookgen.pdf import write_pdf

    write_pdf(copies / local(pdf.story.source.url).name, "flat_vector", seed=4)  # the same layout, other art
    moved = tmp_path / MANIFEST_FILE
    moved.write_text(text, encoding="utf-8")

    results, outcomes = rebuild_plainly(moved, tmp_path / "again")
    rows = {r.source_id: r for r in results}
    found = {o.story_id: o for o in outcomes}
    assert rows[gone.story_id].status == "failed" and rows[gone.story_id].stage == "fetch"
    assert "not found" in rows[gone.story_id].error
    assert found[pdf.story_id].source_changed and found[pdf.story_id].differing
    assert rows[pdf.story_id].stats["source_changed"] == 1
    assert "frames differ" in rows[pdf.story_id].error
    for entry in manifest.stories:
        if entry.story_id not in (gone.story_id, pdf.story_id):
            assert found[entry.story_id].identical == [f.index for f in entry.story.frames]
    dataset = open_dataset(tmp_path / "again")
    stories = {r.story.story_id: r.story for r in dataset.iter_stories(with_media=False)}
    assert gone.story_id not in stories and len(stories) == 5
    flagged = [f.index for f in stories[pdf.story_id].frames if stages.FLAG_MISMATCH in f.flags]
    assert flagged == found[pdf.story_id].differing
    lines = stages.summary_lines(outcomes)
    assert any(line.startswith(f"gone: {gone.story_id}") for line in lines)
    assert any(line.startswith(f"{pdf.story_id}: frames differ") for line in lines)


def test_a_frame_the_source_lacks_is_left_out_and_the_rest_renumbered(exported, tmp_path):
    header, *lines = exported.read_text(encoding="utf-8").splitlines()
    video = next(json.loads(line) for line in lines if json.loads(line)["story"]["source"]["kind"] == "video")
    frames = video["story"]["frames"]
    assert len(frames) >= 3
    frames[1]["pts"] += 1  # no decoded frame has this pts
    one = tmp_path / MANIFEST_FILE
    one.write_text(header + "\n" + json.dumps(video) + "\n", encoding="utf-8")

    results, outcomes = rebuild_plainly(one, tmp_path / "again")
    assert results[0].status == "ok" and results[0].stats["frames_missing"] == 1
    assert (outcomes[0].missing, outcomes[0].differing) == ([1], [])
    assert outcomes[0].identical == [f["index"] for f in frames if f["index"] != 1]
    (record,) = open_dataset(tmp_path / "again").iter_stories()
    assert [f.text for f in record.story.frames] == [f["text"] for f in frames if f["index"] != 1]
    assert [f.index for f in record.story.frames] == list(range(len(frames) - 1))
    assert sha(record.media["001.jpg"]) == frames[2]["sha256"]  # frame 2, now frame 1, still the same bytes
