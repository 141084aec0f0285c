"""Parquet tables beside the shards: ``catalog.parquet`` (one row per frame) and ``sources.parquet``.

The catalog lets a user filter and inspect frames (text, scores, licence, which shard) without
opening a tar; the sources table records what happened to every source, failures included (why
a source is missing, which stages a rerun reused). Both have explicit schemas, so a column whose
values are all null still has its real type, and a fixed row order, so the same inputs give the
same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.output.contract import Story, mask_member, member_name
from pipeline.records import SourceResult
from pipeline.output.shards import ShardSummary
from pipeline.storage import write_if_changed

log = logging.getLogger(__name__)

CATALOG_SCHEMA = pa.schema([
    pa.field("story_id", pa.string(), nullable=False),
    pa.field("frame", pa.int32(), nullable=False),
    pa.field("shard", pa.string(), nullable=False),  # relative to the output root
    pa.field("split", pa.string(), nullable=False),
    pa.field("image", pa.string(), nullable=False),  # tar member name, e.g. "yt-abc.000.jpg"
    pa.field("mask", pa.string()),  # tar member name of the mask, null when the frame has none
    pa.field("width", pa.int32(), nullable=False),
    pa.field("height", pa.int32(), nullable=False),
    pa.field("t_start", pa.float64()),
    pa.field("t_end", pa.float64()),
    pa.field("t_frame", pa.float64()),  # videos: when the chosen frame shows
    pa.field("pts", pa.int64()),  # videos: that frame's presentation timestamp (the story's source time_base)
    pa.field("page", pa.int32()),
    pa.field("text", pa.string(), nullable=False),
    pa.field("caption", pa.string()),
    pa.field("score_align", pa.float64()),
    pa.field("score_clip", pa.float64()),
    pa.field("flags", pa.list_(pa.string()), nullable=False),
    pa.field("source_kind", pa.string(), nullable=False),
    pa.field("source_url", pa.string()),
    pa.field("title", pa.string()),
    pa.field("creator", pa.string()),
    pa.field("license", pa.string()),
    pa.field("language", pa.string()),
    pa.field("duration_s", pa.float64()),
])

SOURCES_SCHEMA = pa.schema([
    pa.field("source_id", pa.string(), nullable=False),
    pa.field("input", pa.string(), nullable=False),
    pa.field("kind", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # ok | skipped | failed
    pa.field("error", pa.string()),
    pa.field("stage", pa.string()),
    pa.field("story_id", pa.string()),
    pa.field("title", pa.string()),
    pa.field("license", pa.string()),
    pa.field("language", pa.string()),
    pa.field("frames", pa.int64(), nullable=False),
    pa.field("dropped", pa.map_(pa.string(), pa.int64()), nullable=False),  # reason -> frames
    pa.field("timings", pa.map_(pa.string(), pa.float64()), nullable=False),  # stage -> seconds
    pa.field("reused", pa.list_(pa.string()), nullable=False),  # stages an earlier run had already done
    pa.field("stats", pa.map_(pa.string(), pa.int64()), nullable=False),  # what the stages found, by name
])

_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "row_group_size": 64 * 1024}


def catalog_rows(stories_with_shard_names: Iterable[tuple[Story, str]]) -> list[dict[str, Any]]:
    """One dict per frame, ordered by story id then frame index."""
    rows: list[dict[str, Any]] = []
    for story, shard in sorted(stories_with_shard_names, key=lambda pair: pair[0].story_id):
        if story.split is None:
            raise ValueError(f"story {story.story_id} has no split: catalog rows come from written shards")
        source = story.source
        for frame in sorted(story.frames, key=lambda f: f.index):
            rows.append({
                "story_id": story.story_id,
                "frame": frame.index,
                "shard": shard,
                "split": story.split,
                "image": member_name(story.story_id, frame.image),
                "mask": member_name(story.story_id, mask_member(frame.index)) if frame.has_mask else None,
                "width": frame.width,
                "height": frame.height,
                "t_start": frame.t_start,
                "t_end": frame.t_end,
                "t_frame": frame.t_frame,
                "pts": frame.pts,
                "page": frame.page,
                "text": frame.text,
                "caption": frame.caption,
                "score_align": frame.scores.get("align"),
                "score_clip": frame.scores.get("clip"),
                "flags": list(frame.flags),
                "source_kind": source.kind,
                "source_url": source.url,
                "title": source.title,
                "creator": source.creator,
                "license": source.license,
                "language": source.language,
                "duration_s": source.duration_s,
            })
    return rows


def write_catalog(stories_with_shard_names: ShardSummary | Iterable[tuple[Story, str]], path: Path) -> int:
    """Write ``catalog.parquet`` for a shard summary or (story, shard) pairs; returns the row count."""
    if isinstance(stories_with_shard_names, ShardSummary):
        stories_with_shard_names = stories_with_shard_names.placed
    rows = catalog_rows(stories_with_shard_names)
    _write_table(pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA), path)
    log.info("catalog: %d frames -> %s", len(rows), path)
    return len(rows)


def write_sources_table(results: list[SourceResult], path: Path) -> None:
    """Write ``sources.parquet``: one row per source, sorted by source id."""
    ids = [r.source_id for r in results]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate source ids in results: {sorted({i for i in ids if ids.count(i) > 1})}")
    rows = []
    for result in sorted(results, key=lambda r: r.source_id):
        row = result.to_dict()
        row["dropped"] = sorted(result.dropped.items())  # map entries in a fixed order
        row["timings"] = sorted(result.timings.items())
        row["stats"] = sorted(result.stats.items())
        rows.append(row)
    _write_table(pa.Table.from_pylist(rows, schema=SOURCES_SCHEMA), path)
    log.info("sources: %d rows -> %s", len(rows), path)


def _write_table(table: pa.Table, path: Path) -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_PARQUET_OPTIONS)
    write_if_changed(Path(path), sink.getvalue().to_pybytes())
