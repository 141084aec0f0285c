"""Curating a dataset: every filter keeps what an independent pandas query on the input catalog keeps;
the output is a complete dataset (read back through webdataset, images byte-equal to the input's);
re-split; reruns write the same bytes; bad settings and directories are refused before any work."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.dataset.conditions import parse_condition
from pipeline.dataset.curate import (
    CurationError,
    CurationSpec,
    curate,
    read_story_ids,
    row_mask,
)
from pipeline.dataset.reader import DatasetError, open_dataset
from pipeline.output.shards import assign_split
from tests.dataset_helpers import write_synthetic_dataset


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory):
    """120 stories with CLIP and align scores (some null), every flag, 4 languages, 6 licences, masks."""
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic") / "syn", 120, seed=5, test_fraction=0.3,
                                   max_stories_per_shard=16)


def frame_table(root: Path) -> pd.DataFrame:
    return pq.read_table(Path(root) / "catalog.parquet").to_pandas()


def has_flag(flag):
    return lambda d: d["flags"].apply(lambda flags: flag in list(flags))


def expected_frames(df: pd.DataFrame, rows=None, count=None, min_frames: int = 1) -> dict[str, list[int]]:
    """Story id -> the input frame numbers kept, computed with pandas alone."""
    kept = df[rows(df).fillna(False).astype(bool)] if rows else df
    out = {}
    for story_id, group in kept.groupby("story_id"):
        frames = sorted(group["frame"])
        if len(frames) >= min_frames and (count is None or count(len(frames))):
            out[story_id] = frames
    return out


def frame_keys(df: pd.DataFrame) -> dict[tuple[str, int], tuple]:
    """What identifies a frame's row apart from its number: text, size, times, page, scores, flags."""
    return {(r.story_id, r.frame): (r.text, r.width, r.height, r.t_start, r.t_end, r.page, r.score_align,
                                    r.score_clip, tuple(r.flags), r.mask is not None)
            for r in df.itertuples()}


def assert_same_as_query(in_dir: Path, out_dir: Path, expected: dict[str, list[int]]) -> None:
    """The output catalog holds exactly the expected frames, renumbered 0..n-1, with their data."""
    before, after = frame_table(in_dir), frame_table(out_dir)
    got: dict[str, list[int]] = {}
    for row in after.sort_values(["story_id", "frame"]).itertuples():
        got.setdefault(row.story_id, []).append(row.frame)
    assert {sid: len(v) for sid, v in got.items()} == {sid: len(v) for sid, v in expected.items()}
    assert all(v == list(range(len(v))) for v in got.values()), "kept frames are renumbered 0..n-1"
    keys_in, keys_out = frame_keys(before), frame_keys(after)
    for story_id, frames in expected.items():
        for new, old in enumerate(frames):
            a, b = keys_in[(story_id, old)], keys_out[(story_id, new)]
            assert pd.Series(a).equals(pd.Series(b)), (story_id, old, new)


MIXED_CASES = {
    "language": ({"where": ("language in [de]",)}, lambda d: d.language.isin(["de"]), None),
    "language-ne": ({"where": ("language != de",)}, lambda d: d.language.notna() & (d.language != "de"), None),
    "licence-allow": ({"license_allow": ("CC-BY", "CC0", "public-domain")},
                      lambda d: d.license.isin(["CC-BY", "CC0", "public-domain"]), None),
    "licence-deny": ({"where": ("license not in [CC-BY-NC, CC-BY-NC-SA]",)},
                     lambda d: d.license.notna() & ~d.license.isin(["CC-BY-NC", "CC-BY-NC-SA"]), None),
    "source-kind": ({"where": ("kind == video",)}, lambda d: d.source_kind == "video", None),
    "frame-count": ({"where": ("frames >= 5",)}, None, lambda n: n >= 5),
    "words": ({"where": ("words >= 10",)}, lambda d: d.text.str.split().str.len() >= 10, None),
    "text-chars": ({"where": ("text_chars < 45",)}, lambda d: d.text.str.len() < 45, None),
    "flags-has": ({"where": ("flags has no_speech",)}, has_flag("no_speech"), None),
    "flags-lacks": ({"where": ("flags lacks flattened",)}, lambda d: ~has_flag("flattened")(d), None),
    "align": ({"where": ("score_align >= 0.5",)}, lambda d: d.score_align >= 0.5, None),
    "align-null": ({"where": ("score_align is null",)}, lambda d: d.score_align.isna(), None),
    "clip-on-null": ({"where": ("score_clip >= 0.25",)}, lambda d: d.score_clip >= 0.25, None),
    "clip-ne-on-null": ({"where": ("score_clip != 0.25",)}, lambda d: d.score_clip.notna(), None),
    "clip-is-null": ({"where": ("score_clip is null",)}, lambda d: d.score_clip.isna(), None),
    "words-then-count": ({"where": ("words >= 9", "frames >= 4")}, lambda d: d.text.str.split().str.len() >= 9,
                         lambda n: n >= 4),
    "min-frames": ({"min_frames": 5}, None, lambda n: n >= 5),
    "nothing": ({}, None, None),
}

SYNTHETIC_CASES = {
    "clip": ({"where": ("score_clip >= 0.25",)}, lambda d: d.score_clip >= 0.25, None),
    "clip-below": ({"where": ("clip < 0.2",)}, lambda d: d.score_clip < 0.2, None),
    "clip-ne": ({"where": ("score_clip != 0.3",)}, lambda d: d.score_clip.notna() & (d.score_clip != 0.3), None),
    "clip-not-null": ({"where": ("score_clip is not null",)}, lambda d: d.score_clip.notna(), None),
    "align-and-clip": ({"where": ("score_align > 0.5", "score_clip <= 0.3")},
                       lambda d: (d.score_align > 0.5) & (d.score_clip <= 0.3), None),
    "repeated": ({"where": ("flags lacks repeated_image",)}, lambda d: ~has_flag("repeated_image")(d), None),
    "no-speech": ({"where": ("flags has no_speech",)}, has_flag("no_speech"), None),
    "languages": ({"where": ("language in [en, fr]",)}, lambda d: d.language.isin(["en", "fr"]), None),
    "language-null": ({"where": ("language is null",)}, lambda d: d.language.isna(), None),
    "no-nc": ({"license_allow": ("CC-BY", "CC0", "public-domain", "CC-BY-SA")},
              lambda d: d.license.isin(["CC-BY", "CC0", "public-domain", "CC-BY-SA"]), None),
    "duration": ({"where": ("duration_s >= 4",)}, lambda d: d.duration_s >= 4, None),
    "page": ({"where": ("page in [1, 2]",)}, lambda d: d.page.isin([1, 2]), None),
    "words-count-min": ({"where": ("words > 2", "frames <= 3"), "min_frames": 2},
                        lambda d: d.text.str.split().str.len() > 2, lambda n: 2 <= n <= 3),
}


def _case_params():
    for name, case in MIXED_CASES.items():
        yield pytest.param("mixed_dataset", *case, id=f"mixed-{name}")
    for name, case in SYNTHETIC_CASES.items():
        yield pytest.param("synthetic_dataset", *case, id=f"synthetic-{name}")


@pytest.mark.parametrize("dataset_name, kwargs, rows, count", list(_case_params()))
def test_every_filter_keeps_what_an_independent_query_keeps(request, tmp_path, dataset_name, kwargs, rows, count):
    source = request.getfixturevalue(dataset_name)
    spec = CurationSpec(**kwargs).validate()
    result = curate(source, tmp_path / "out", spec, progress=False)

    df = frame_table(source)
    expected = expected_frames(df, rows, count, spec.min_frames)
    assert_same_as_query(source, tmp_path / "out", expected)
    selection = result.selection
    assert (selection.stories_in, selection.frames_in) == (df.story_id.nunique(), len(df))
    assert (selection.stories_out, selection.frames_out) == (len(expected), sum(map(len, expected.values())))
    # every input story and frame not kept is counted under exactly one reason
    assert sum(d.stories for d in selection.drops) == selection.stories_in - selection.stories_out
    assert sum(d.frames for d in selection.drops) == selection.frames_in - selection.frames_out
    record = json.loads((tmp_path / "out" / "config.json").read_text())["curation"]
    assert record["kept"] == {"stories": len(expected), "frames": selection.frames_out}


def test_story_id_lists_keep_and_drop(mixed_dataset, tmp_path):
    ids = sorted(frame_table(mixed_dataset).story_id.unique())
    listed = tmp_path / "keep.txt"
    listed.write_text(f"# the two I want\n{ids[0]}\n\n{ids[3]}  # and this one\nnot-in-the-input\n")
    spec = CurationSpec(keep_story_ids=read_story_ids(listed) + (ids[2],), drop_story_ids=(ids[2],)).validate()
    result = curate(mixed_dataset, tmp_path / "out", spec, progress=False)
    df = frame_table(mixed_dataset)
    expected = expected_frames(df, lambda d: d.story_id.isin([ids[0], ids[3]]))
    assert_same_as_query(mixed_dataset, tmp_path / "out", expected)
    assert result.selection.unknown_story_ids == ("not-in-the-input",)
    drops = {d.reason: d.stories for d in result.selection.drops}
    assert drops == {"not in the --stories list": 3, "in the --drop-stories list": 1,
                     "fewer than min_frames=1 frames left": 0}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["curation"]["settings"]["keep_story_ids"][
        "count"] == 4


def _samples(root: Path) -> dict[str, dict]:
    import webdataset as wds

    urls = [str(p) for p in sorted((Path(root) / "shards").glob("*.tar"))]
    return {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False)} if urls else {}


@pytest.mark.parametrize("dataset_name, where", [
    ("mixed_dataset", ("words >= 10", "frames >= 2")),
    ("synthetic_dataset", ("score_clip is not null", "flags lacks no_speech")),
])
def test_output_is_a_complete_dataset_with_the_input_images(request, tmp_path, dataset_name, where):
    source = request.getfixturevalue(dataset_name)
    out = tmp_path / "curated"
    result = curate(source, out, CurationSpec(where=where).validate(), progress=False)
    expected = result.selection.frames_by_story
    input_frames = frame_table(source).story_id.value_counts()
    assert expected and any(len(v) < input_frames[sid] for sid, v in expected.items()), "some frames are dropped"

    before, after = _samples(source), _samples(out)
    assert sorted(after) == sorted(expected)
    masks = 0
    for story_id, frames in expected.items():
        story = json.loads(after[story_id]["json"])
        original = json.loads(before[story_id]["json"])
        assert [f["index"] for f in story["frames"]] == list(range(len(frames)))
        media = sorted(k for k in after[story_id] if not k.startswith("__") and k != "json")
        want = sorted([f"{i:03d}.jpg" for i in range(len(frames))]
                      + [f"{i:03d}.mask.png" for i, old in enumerate(frames)
                         if original["frames"][old].get("has_mask")])
        assert media == want
        for new, old in enumerate(frames):
            assert after[story_id][f"{new:03d}.jpg"] == before[story_id][f"{old:03d}.jpg"]
            if f"{new:03d}.mask.png" in after[story_id]:
                assert after[story_id][f"{new:03d}.mask.png"] == before[story_id][f"{old:03d}.mask.png"]
                masks += 1
            kept = dict(story["frames"][new], index=old, image=f"{old:03d}.jpg")
            assert kept == original["frames"][old], "a kept frame is the input's but for its number"
        assert story["source"] == original["source"] and story["split"] == original["split"]
        assert story["pipeline"] == {"version": original["pipeline"]["version"], "config_hash": result.config_hash,
                                     "curated_from": original["pipeline"]}
    assert masks > 0, "the filters keep at least one frame with a mask, renumbered or not"

    dataset = open_dataset(out)  # the reader accepts it: manifests, catalog, shards
    manifest = dataset.manifest()
    assert manifest["nsamples"] == len(expected) and manifest["pipeline"]["config_hash"] == result.config_hash
    for entry in manifest["shardlist"]:
        data = (out / entry["url"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["filesize"], entry["sha256"])
    for split in ("train", "test"):
        part = json.loads((out / f"manifest-{split}.json").read_text())
        assert all(e["url"].startswith(f"shards/{split}-") for e in part["shardlist"])
    catalog = dataset.catalog().to_pylist()
    assert len(catalog) == sum(map(len, expected.values()))
    for row in catalog:
        assert row["shard"] in {e["url"] for e in manifest["shardlist"]}
        assert row["image"] == f"{row['story_id']}.{row['frame']:03d}.jpg"
    config = dataset.config()
    assert config["config_hash"] == result.config_hash
    assert config["config"] == json.loads((source / "config.json").read_text())["config"]
    assert config["curation"]["input"]["name"] == source.name
    assert config["curation"]["settings"]["where"] == list(where)
    sources = {s.story_id: s for s in dataset.sources()}
    assert set(sources) == set(expected) and all(s.status == "ok" for s in sources.values())
    input_sources = {s.story_id: s for s in open_dataset(source).sources() if s.story_id}
    for story_id, row in sources.items():
        assert row.frames == len(expected[story_id])
        lost = {k: v for k, v in row.dropped.items() if k.startswith("curate: ")}
        assert sum(lost.values()) == input_sources[story_id].frames - row.frames
    card = (out / "card.md").read_text()
    assert f"config hash `{result.config_hash}`" in card
    assert "`curation`" in card and where[0] in card
    assert f"| **total** | **{len(expected)}** | **{len(catalog)}** |" in card


def test_resplit_moves_stories_by_the_stable_hash_and_the_default_keeps_splits(synthetic_dataset, tmp_path):
    df = frame_table(synthetic_dataset).drop_duplicates("story_id").set_index("story_id")
    kept = curate(synthetic_dataset, tmp_path / "kept", CurationSpec().validate(), progress=False)
    assert {r.story.story_id: r.story.split for r in open_dataset(tmp_path / "kept").iter_stories(with_media=False)} \
        == df.split.to_dict()
    assert kept.selection.stories_out == len(df)

    curate(synthetic_dataset, tmp_path / "resplit", CurationSpec(test_fraction=0.6).validate(), progress=False)
    out = open_dataset(tmp_path / "resplit")
    splits = {r.story.story_id: (r.story.split, r.shard) for r in out.iter_stories(with_media=False)}
    assert {sid: s for sid, (s, _) in splits.items()} == {sid: assign_split(sid, 0.6) for sid in df.index}
    assert all(shard.startswith(f"shards/{split}-") for split, shard in splits.values())
    moved = sum(splits[sid][0] != df.split[sid] for sid in df.index)
    assert moved > 10
    assert out.config()["config"]["shards"]["test_fraction"] == 0.6
    assert out.config()["curation"]["settings"]["test_fraction"] == 0.6
    rows = out.catalog(columns=["story_id", "split"]).to_pylist()
    assert all(row["split"] == splits[row["story_id"]][0] for row in rows)


def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_curating_is_deterministic_and_leaves_the_input_alone(mixed_dataset, tmp_path):
    spec = CurationSpec(where=("flags lacks text_over_picture", "language == en"), test_fraction=0.5).validate()
    before = {k: v[0] for k, v in _tree(mixed_dataset).items()}
    first = tmp_path / "a" / "cur"
    curate(mixed_dataset, first, spec, progress=False)
    written = _tree(first)
    assert {"card.md", "catalog.parquet", "config.json", "manifest.json", "manifest-train.json",
            "manifest-test.json", "sources.parquet"} <= set(written)

    again = curate(mixed_dataset, first, spec, progress=False)
    assert again.rewritten == 0
    assert _tree(first) == written, "a rerun into the same directory changes no byte and no mtime"

    other = tmp_path / "b" / "cur"
    curate(mixed_dataset, other, spec, progress=False)
    assert {k: v[0] for k, v in _tree(other).items()} == {k: v[0] for k, v in written.items()}
    assert {k: v[0] for k, v in _tree(mixed_dataset).items()} == before, "the input is never written"

    # a different curation into the same directory replaces it whole: no stale shard survives
    curate(mixed_dataset, first, CurationSpec(where=("source_kind == ebook",)).validate(), progress=False)
    names = sorted(p.name for p in (first / "shards").iterdir())
    assert names == sorted(Path(e["url"]).name for e in open_dataset(first).manifest()["shardlist"])
    assert set(frame_table(first).source_kind) == {"ebook"}


def test_a_curation_that_keeps_nothing_is_still_a_dataset(mixed_dataset, tmp_path):
    result = curate(mixed_dataset, tmp_path / "none", CurationSpec(where=("score_clip > 0",)).validate(),
                    progress=False)
    assert (result.selection.stories_out, result.shards) == (0, 0)
    dataset = open_dataset(tmp_path / "none")
    assert dataset.catalog().num_rows == 0 and dataset.manifest()["shardlist"] == []
    assert "| **total** | **0** | **0** |" in (tmp_path / "none" / "card.md").read_text()


def test_bad_settings_and_outputs_are_refused_before_anything_is_written(mixed_dataset, synthetic_dataset, tmp_path):
    for spec, message in [(CurationSpec(min_frames=0), "min_frames"),
                          (CurationSpec(test_fraction=1.0), "test_fraction"),
                          (CurationSpec(license_allow=()), "allow-list is empty"),
                          (CurationSpec(keep_story_ids=("Bad.Id",)), "not a story id")]:
        with pytest.raises(CurationError, match=message):
            spec.validate()
    with pytest.raises(CurationError, match="unknown flag 'no_speach'"):
        curate(mixed_dataset, tmp_path / "typo", CurationSpec(where=("flags has no_speach",)), progress=False)
    assert not (tmp_path / "typo").exists()
    for out in (mixed_dataset, mixed_dataset / "curated"):
        with pytest.raises(CurationError, match="the input dataset or inside it"):
            curate(mixed_dataset, out, CurationSpec(), progress=False)
    with pytest.raises(CurationError, match="not the output of an earlier"):
        curate(mixed_dataset, synthetic_dataset, CurationSpec(), progress=False)  # an ingest-like dataset
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(CurationError, match="not empty"):
        curate(mixed_dataset, stranger, CurationSpec(), progress=False)
    with pytest.raises(DatasetError, match="no such directory"):
        curate(tmp_path / "absent", tmp_path / "out", CurationSpec(), progress=False)


def test_words_are_counted_as_python_splits_them():
    spaces = [chr(c) for c in range(0x110000) if chr(c).isspace()]
    texts = ["", "one", "  two  words ", "x".join(spaces), "a\u00a0b\u3000c\u2003d", "tab\tand\nnew\x1cline",
             "naïve café — ok"]
    table = pa.table({"text": texts})
    for k in range(len(spaces) + 3):
        mask = row_mask(parse_condition(f"words >= {k}"), table)
        assert mask.tolist() == [len(t.split()) >= k for t in texts]


def test_only_the_catalog_and_the_shards_of_kept_stories_are_read(synthetic_dataset, tmp_path):
    import shutil

    source = tmp_path / "in"
    shutil.copytree(synthetic_dataset, source)
    df = frame_table(source)
    shards = sorted(df.shard.unique())
    wanted, broken = shards[0], shards[-1]
    (source / broken).write_bytes(b"\0garbage" * 100)  # unreadable: only a read of it can fail
    keep = tuple(sorted(df[df.shard == wanted].story_id.unique()))
    result = curate(source, tmp_path / "out", CurationSpec(keep_story_ids=keep).validate(), progress=False)
    assert result.selection.story_ids == list(keep)
    assert_same_as_query(source, tmp_path / "out", expected_frames(df, lambda d: d.story_id.isin(keep)))
    with pytest.raises(DatasetError, match="cannot read shard"):
        curate(source, tmp_path / "all", CurationSpec().validate(), progress=False)


def test_a_curated_dataset_can_be_curated_again_and_keeps_its_history(mixed_dataset, tmp_path):
    first = curate(mixed_dataset, tmp_path / "a", CurationSpec(where=("words >= 9",)).validate(), progress=False)
    second = curate(tmp_path / "a", tmp_path / "b", CurationSpec(where=("source_kind == video",)).validate(),
                    progress=False)
    df = frame_table(mixed_dataset)
    expected = expected_frames(df, lambda d: (d.text.str.split().str.len() >= 9) & (d.source_kind == "video"))
    assert {sid: len(v) for sid, v in second.selection.frames_by_story.items()} == \
        {sid: len(v) for sid, v in expected.items()}
    config_a = json.loads((tmp_path / "a" / "config.json").read_text())
    config_b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert config_b["curation"]["previous"] == config_a["curation"]
    assert config_b["curation"]["input"]["config_hash"] == first.config_hash != second.config_hash
    for record in open_dataset(tmp_path / "b").iter_stories(with_media=False):
        assert record.story.pipeline["curated_from"]["config_hash"] == first.config_hash
        assert record.story.pipeline["curated_from"]["curated_from"]["config_hash"] == config_a["curation"]["input"][
            "config_hash"]


def test_a_catalog_without_a_needed_column_is_refused_clearly(synthetic_dataset, tmp_path):
    import shutil

    source = tmp_path / "in"
    shutil.copytree(synthetic_dataset, source)
    table = pq.read_table(source / "catalog.parquet")
    pq.write_table(table.drop_columns(["score_clip"]), source / "catalog.parquet")
    with pytest.raises(DatasetError, match="has no column.s. score_clip"):
        curate(source, tmp_path / "out", CurationSpec(where=("clip >= 0.2",)).validate(), progress=False)
    assert curate(source, tmp_path / "out", CurationSpec(where=("words > 2",)).validate(),
                  progress=False).selection.stories_out > 0
