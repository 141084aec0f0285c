"""``storyloom export``: a finished dataset written in another layout (one function per format).

:data:`EXPORTERS` maps each format name to a function ``(dataset, out_dir) -> ExportResult``:

- ``storysalon``: the folders StoryGen's own ``dataset.py`` reads (:mod:`pipeline.dataset.storysalon`);
- ``hf``: Hugging Face Parquet shards with ``datasets`` features and a dataset card
  (:mod:`pipeline.dataset.hf`);
- ``parquet``: one row per frame, the catalog's columns plus the image and mask bytes
  (:mod:`pipeline.dataset.frames_parquet`);
- ``manifest``: a shareable manifest without pixels (:mod:`pipeline.dataset.manifest`).

Every format streams the stories through :meth:`Dataset.iter_stories` (one shard open at a time)
into a staging directory next to ``--out``, which replaces ``--out`` only once complete: a failed
export never leaves half a dataset under the final name (so the files inside the staging
directory need no atomic writes of their own). Same dataset -> same bytes.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pipeline.dataset.export_common import ExportError, ExportResult, relative_files
from pipeline.dataset.frames_parquet import export_frames_parquet
from pipeline.dataset.hf import export_hf
from pipeline.dataset.manifest import ManifestError, export_manifest
from pipeline.dataset.reader import Dataset
from pipeline.dataset.storysalon import export_storysalon

log = logging.getLogger(__name__)

Exporter = Callable[[Dataset, Path], ExportResult]


def export_manifest_format(dataset: Dataset, out_dir: Path) -> ExportResult:
    """The ``manifest`` format (:mod:`pipeline.dataset.manifest`): sources, frame times, hashes and texts."""
    try:
        export_manifest(dataset, out_dir)
    except ManifestError as exc:
        raise ExportError(str(exc)) from exc
    story_ids = dataset.catalog(columns=["story_id"]).column("story_id").to_pylist()
    return ExportResult(len(set(story_ids)), len(story_ids), relative_files(out_dir))


EXPORTERS: dict[str, Exporter] = {
    "storysalon": export_storysalon,
    "hf": export_hf,
    "parquet": export_frames_parquet,
    "manifest": export_manifest_format,
}


def check_out_dir(dataset: Dataset, out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that would lose data: non-empty without ``overwrite``, or holding the dataset."""
    out = Path(out)
    root = dataset.root.resolve()
    target = out.resolve()
    if target == root or target in root.parents:
        raise ExportError(f"--out {out} holds the dataset being exported; choose another directory")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file, not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} is not empty; choose an empty or new directory, "
                          "or pass --overwrite to replace its contents")


def export_dataset(dataset: Dataset, fmt: str, out: Path, overwrite: bool = False) -> ExportResult:
    """Write ``dataset`` as ``fmt`` to ``out``, which is replaced as a whole once the export is complete."""
    if fmt not in EXPORTERS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORTERS)}")
    out = Path(out)
    check_out_dir(dataset, out, overwrite)
    staging = out.parent / f".{out.name}.export-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
    except OSError as exc:
        raise ExportError(f"--out {out}: cannot write next to it ({exc})") from exc
    try:
        result = EXPORTERS[fmt](dataset, staging)
        if out.exists():
            shutil.rmtree(out)  # checked above: empty, or the user asked for --overwrite
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("export %s: %d stories, %d frames, %d files -> %s", fmt, result.stories, result.frames,
             len(result.files), out)
    return result
