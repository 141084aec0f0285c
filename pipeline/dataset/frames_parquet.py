"""``storyloom export --format parquet``: one row per frame, the catalog's columns plus the media.

``{split}.parquet`` per split, rows ordered by story id then frame (the catalog's order). The
columns are the catalog's (:data:`pipeline.output.catalog.CATALOG_SCHEMA`), with its member-name
columns ``image``/``mask`` renamed ``image_member``/``mask_member``, then ``image`` (the frame's
JPEG bytes) and ``mask`` (its PNG mask bytes, null when it has none), exactly the shard members.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa

from pipeline.dataset.export_common import (
    ROW_GROUP_BYTES,
    ExportResult,
    SplitParquetWriter,
    iter_stories_with_progress,
    relative_files,
)
from pipeline.dataset.reader import Dataset
from pipeline.output.catalog import CATALOG_SCHEMA, catalog_rows
from pipeline.output.contract import mask_member

log = logging.getLogger(__name__)

_RENAMED = {"image": "image_member", "mask": "mask_member"}
FRAMES_SCHEMA = pa.schema(
    [pa.field(_RENAMED.get(f.name, f.name), f.type, f.nullable) for f in CATALOG_SCHEMA]
    + [pa.field("image", pa.binary(), nullable=False), pa.field("mask", pa.binary())]
)


def export_frames_parquet(dataset: Dataset, out_dir: Path, row_group_bytes: int = ROW_GROUP_BYTES) -> ExportResult:
    """Write ``{split}.parquet`` files of :data:`FRAMES_SCHEMA` rows under ``out_dir``."""
    out_dir = Path(out_dir)
    # the shards hold each split's stories in story id order, the catalog's order
    writer = SplitParquetWriter(FRAMES_SCHEMA, lambda split, _: out_dir / f"{split}.parquet", row_group_bytes)
    stories = frames = 0
    try:
        for record in iter_stories_with_progress(dataset, "export parquet"):
            story = record.story
            by_index = {frame.index: frame for frame in story.frames}
            rows, nbytes = [], 0
            for row in catalog_rows([(story, record.shard)]):
                frame = by_index[row["frame"]]
                image = record.media[frame.image]
                mask = record.media[mask_member(frame.index)] if frame.has_mask else None
                row = {_RENAMED.get(name, name): value for name, value in row.items()}
                row["image"], row["mask"] = image, mask
                nbytes += len(image) + len(mask or b"")
                rows.append(row)
            writer.add(story.split, rows, nbytes)
            stories += 1
            frames += len(rows)
    finally:
        writer.close()
    return ExportResult(stories, frames, relative_files(out_dir))
