"""Reading a finished dataset back: the stories equal the catalog; bad directories are refused clearly."""

from __future__ import annotations

import shutil

import pytest

from pipeline.dataset.reader import DatasetError, open_dataset


def test_the_mixed_dataset_reads_back_as_the_catalog_says(mixed_dataset):
    dataset = open_dataset(mixed_dataset)
    catalog = dataset.catalog().to_pylist()
    records = list(dataset.iter_stories())
    assert len(records) == len({row["story_id"] for row in catalog}) >= 6
    by_story = {r.story.story_id: r for r in records}
    for row in catalog:
        record = by_story[row["story_id"]]
        assert record.shard == row["shard"]
        frame = record.story.frames[row["frame"]]
        assert frame.text == row["text"]
        assert record.media[frame.image][:3] == b"\xff\xd8\xff"
        assert (f"{row['frame']:03d}.mask.png" in record.media) == (row["mask"] is not None)
    kinds = {r.story.source.kind for r in records}
    assert kinds == {"video", "ebook"}
    assert {r.story.split for r in records} == {"train", "test"}
    assert {s.status for s in dataset.sources()} == {"ok", "failed"}
    assert any(row["mask"] for row in catalog), "the PDF with text over its picture gives masks"
    assert any("no_text_source" in row["flags"] for row in catalog)


def test_selected_stories_open_only_their_shards(mixed_dataset):
    dataset = open_dataset(mixed_dataset)
    catalog = dataset.catalog(columns=["story_id", "shard"]).to_pylist()
    one = catalog[-1]
    records = list(dataset.iter_stories(story_ids=[one["story_id"]], with_media=False))
    assert [(r.story.story_id, r.shard, r.media) for r in records] == [(one["story_id"], one["shard"], {})]


@pytest.mark.parametrize("damage", ["missing", "file", "empty", "no-catalog", "lost-shard", "bad-catalog"])
def test_a_directory_that_is_not_a_dataset_is_refused_with_the_reason(mixed_dataset, tmp_path, damage):
    target = tmp_path / "ds"
    if damage == "missing":
        expected = "no such directory"
    elif damage == "file":
        target.write_text("x")
        expected = "not a directory"
    elif damage == "empty":
        target.mkdir()
        expected = "manifest.json, catalog.parquet missing"
    else:
        shutil.copytree(mixed_dataset, target, ignore=shutil.ignore_patterns("work"))
        if damage == "no-catalog":
            (target / "catalog.parquet").unlink()
            expected = "catalog.parquet missing"
        elif damage == "lost-shard":
            next((target / "shards").glob("*.tar")).unlink()
            expected = "missing"
        else:
            (target / "catalog.parquet").write_bytes(b"not parquet")
            expected = "not a readable Parquet file"
    with pytest.raises(DatasetError, match=expected):
        open_dataset(target)
