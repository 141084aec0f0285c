"""What every ``storyloom export`` format shares: its result, its errors, the story stream with a
progress bar, and Parquet files written split by split in bounded memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.dataset.reader import Dataset, StoryRecord

PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd"}
ROW_GROUP_BYTES = 64 * 1024 * 1024  # media bytes per row group: bounded memory, reasonable reads


class ExportError(Exception):
    """The export cannot be done as asked (bad --out, unknown or unavailable format)."""


@dataclass(frozen=True)
class ExportResult:
    """What an exporter wrote: counts and the files, relative to the export directory."""

    stories: int
    frames: int
    files: list[str] = field(default_factory=list)


def iter_stories_with_progress(dataset: Dataset, what: str) -> Iterator[StoryRecord]:
    """The dataset's stories in shard order (split, then story id) with a progress bar on a terminal."""
    from tqdm import tqdm

    total = len(set(dataset.catalog(columns=["story_id"]).column("story_id").to_pylist()))
    # disable=None: no bar when stderr is not a terminal (CI logs, tests)
    yield from tqdm(dataset.iter_stories(), total=total, desc=what, unit="story", disable=None)


def relative_files(root: Path) -> list[str]:
    """Every file under ``root``, relative and sorted (what an export wrote)."""
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file())


class SplitParquetWriter:
    """Rows into Parquet files per split: row groups of about ``row_group_bytes`` of media, a new
    file (``path_for(split, n)``) once a file holds ``max_file_bytes`` (None: one file per split).
    A story's rows never straddle two files."""

    def __init__(self, schema: pa.Schema, path_for: Callable[[str, int], Path],
                 row_group_bytes: int = ROW_GROUP_BYTES, max_file_bytes: int | None = None):
        self.schema, self.path_for = schema, path_for
        self.row_group_bytes, self.max_file_bytes = row_group_bytes, max_file_bytes
        self.files: dict[str, list[Path]] = {}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._rows: dict[str, list[dict]] = {}
        self._buffered: dict[str, int] = {}
        self._in_file: dict[str, int] = {}

    def add(self, split: str, rows: list[dict], nbytes: int) -> None:
        """Add one story's rows (``nbytes``: their media bytes)."""
        if self.max_file_bytes is not None and self._in_file.get(split, 0) >= self.max_file_bytes:
            self._close_file(split)
        self._rows.setdefault(split, []).extend(rows)
        self._buffered[split] = self._buffered.get(split, 0) + nbytes
        self._in_file[split] = self._in_file.get(split, 0) + nbytes
        if self._buffered[split] >= self.row_group_bytes:
            self._flush(split)

    def _flush(self, split: str) -> None:
        rows = self._rows.get(split)
        if not rows:
            return
        if split not in self._writers:
            path = self.path_for(split, len(self.files.get(split, [])))
            path.parent.mkdir(parents=True, exist_ok=True)
            self._writers[split] = pq.ParquetWriter(path, self.schema, **PARQUET_OPTIONS)
            self.files.setdefault(split, []).append(path)
        self._writers[split].write_table(pa.Table.from_pylist(rows, schema=self.schema), row_group_size=len(rows))
        self._rows[split], self._buffered[split] = [], 0

    def _close_file(self, split: str) -> None:
        self._flush(split)
        writer = self._writers.pop(split, None)
        if writer is not None:
            writer.close()
        self._in_file[split] = 0

    def close(self) -> dict[str, list[Path]]:
        """Write what is buffered and close every file; the files of each split, in order."""
        for split in sorted(set(self._rows) | set(self._writers)):
            self._close_file(split)
        return self.files
