"""Catalog and sources tables: schemas, row order, determinism and round trips."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.output.catalog import (
    CATALOG_SCHEMA,
    SOURCES_SCHEMA,
    write_catalog,
    write_sources_table,
)
from pipeline.output.contract import Frame, SourceInfo, Story
from pipeline.records import SourceResult
from tests.pipeline.output.test_shards import _write, make_story_dir


def _story(story_id: str, n_frames: int, split: str = "train", **source) -> Story:
    frames = [Frame(index=i, image=f"{i:03d}.jpg", width=64, height=48, page=i + 1, text=f"page {i}",
                    flags=["no_speech"] if i == 0 else [], has_mask=i == 1) for i in range(n_frames)]
    info = SourceInfo(kind="ebook", url=None, title=source.get("title"), license=source.get("license"),
                      language=source.get("language"))
    return Story(story_id=story_id, source=info, frames=frames, split=split)


def _results() -> list[SourceResult]:
    return [
        SourceResult(source_id="src-b", input="https://example.org/b.pdf", kind="ebook", status="failed",
                     error="not a PDF: the server sent an HTML page", stage="fetch"),
        SourceResult(source_id="src-a", input="books/a.epub", kind="ebook", status="ok", story_id="book-a",
                     title="A", license="CC0", language="en", frames=7,
                     dropped={"near_duplicate": 2, "blank": 1}, timings={"parse": 0.25, "clean": 1.5}),
        SourceResult(source_id="src-c", input="https://youtu.be/x", kind="video", status="skipped",
                     error="licence 'all rights reserved' is not allowed", stage="filter"),
    ]


def test_catalog_rows_schema_and_order(tmp_path):
    stories = [(_story("book-b", 2, split="test"), "shards/test-000000.tar"),
               (_story("book-a", 3, license="CC0", language="en"), "shards/train-000000.tar")]
    path = tmp_path / "catalog.parquet"
    assert write_catalog(stories, path) == 5
    table = pq.read_table(path)
    assert table.schema.equals(CATALOG_SCHEMA, check_metadata=False)
    # all-null columns keep their real types
    assert table.schema.field("t_start").type == pa.float64()
    assert table.schema.field("caption").type == pa.string()
    assert table.schema.field("flags").type == pa.list_(pa.string())
    rows = table.to_pylist()
    assert [(r["story_id"], r["frame"]) for r in rows] == [
        ("book-a", 0), ("book-a", 1), ("book-a", 2), ("book-b", 0), ("book-b", 1)]
    first, second = rows[0], rows[1]
    assert first["image"] == "book-a.000.jpg" and first["mask"] is None and second["mask"] == "book-a.001.mask.png"
    assert first["shard"] == "shards/train-000000.tar" and rows[3]["split"] == "test"
    assert first["flags"] == ["no_speech"] and first["page"] == 1 and first["t_start"] is None
    assert first["license"] == "CC0" and rows[3]["license"] is None and first["source_kind"] == "ebook"


def test_catalog_is_deterministic(tmp_path):
    stories = [(_story(f"book-{n}", 2), "shards/train-000000.tar") for n in range(6)]
    write_catalog(stories, tmp_path / "one.parquet")
    random.Random(3).shuffle(stories)
    write_catalog(stories, tmp_path / "two.parquet")
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()


def test_catalog_from_written_shards(tmp_path):
    dirs = [make_story_dir(tmp_path / "work", f"story-{n}", 2) for n in range(4)]
    summary = _write(dirs, tmp_path / "out", test_fraction=0.5, max_stories_per_shard=1)
    assert write_catalog(summary, tmp_path / "out" / "catalog.parquet") == 8  # a summary or its pairs
    write_catalog(summary.placed, tmp_path / "pairs.parquet")
    assert (tmp_path / "pairs.parquet").read_bytes() == (tmp_path / "out" / "catalog.parquet").read_bytes()
    rows = pq.read_table(tmp_path / "out" / "catalog.parquet").to_pylist()
    assert len(rows) == summary.frames == 8
    shard_of = {p.story.story_id: (p.shard, p.story.split) for p in summary.placed}
    for row in rows:
        assert (row["shard"], row["split"]) == shard_of[row["story_id"]]
        assert (tmp_path / "out" / row["shard"]).is_file()
        assert row["score_align"] == pytest.approx(0.5 + row["frame"] / 100) and row["score_clip"] is None
        assert row["t_end"] == 2.0 * row["frame"] + 1.5 and row["duration_s"] == 60.0


def test_catalog_needs_a_split(tmp_path):
    with pytest.raises(ValueError, match="no split"):
        write_catalog([(_story("book-a", 1, split=None), "shards/x.tar")], tmp_path / "c.parquet")


def read_sources_table(path) -> list[SourceResult]:
    """The table's rows back as results (what a user reading sources.parquet gets)."""
    results = []
    for row in pq.read_table(path).select(SOURCES_SCHEMA.names).to_pylist():
        row["dropped"] = {k: int(v) for k, v in row["dropped"] or []}
        row["timings"] = {k: float(v) for k, v in row["timings"] or []}
        row["stats"] = {k: int(v) for k, v in row["stats"] or []}
        results.append(SourceResult.from_dict(row))
    return results


def test_sources_table_round_trip(tmp_path):
    path = tmp_path / "sources.parquet"
    results = _results()
    write_sources_table(results, path)
    table = pq.read_table(path)
    assert table.schema.equals(SOURCES_SCHEMA, check_metadata=False)
    assert table.column("source_id").to_pylist() == ["src-a", "src-b", "src-c"]
    assert table.column("dropped").to_pylist()[0] == [("blank", 1), ("near_duplicate", 2)]
    back = read_sources_table(path)
    assert back == sorted(results, key=lambda r: r.source_id)
    assert back[1].error == "not a PDF: the server sent an HTML page" and back[1].dropped == {}

    write_sources_table(list(reversed(results)), tmp_path / "again.parquet")
    assert (tmp_path / "again.parquet").read_bytes() == path.read_bytes()


def test_sources_table_rejects_duplicate_ids(tmp_path):
    results = _results() + [_results()[0]]
    with pytest.raises(ValueError, match="src-b"):
        write_sources_table(results, tmp_path / "sources.parquet")


def test_empty_tables_keep_their_schema(tmp_path):
    write_sources_table([], tmp_path / "sources.parquet")
    write_catalog([], tmp_path / "catalog.parquet")
    assert read_sources_table(tmp_path / "sources.parquet") == []
    assert pq.read_table(tmp_path / "catalog.parquet").schema.equals(CATALOG_SCHEMA, check_metadata=False)
