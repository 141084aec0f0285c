"""Output directory layout and atomic writes.

Every file storyloom writes goes through :func:`atomic_write_bytes` (temp file in the same
directory, fsync, rename), so a killed run never leaves a half-written file under a final name.
What in a source's work directory is still valid is decided by :mod:`pipeline.workdir`. An
``--out`` in an object store is built in a local directory with this layout and then published
by :mod:`pipeline.objectstore`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


_UMASK = os.umask(0)
os.umask(_UMASK)


def file_sha256(path: Path) -> str:
    """The sha256 (hex) of a file's bytes, read in 1 MiB pieces."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp creates 0600; outputs are ordinary files
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write ``data`` unless ``path`` already holds exactly it; True when written.

    Reruns go through this so that unchanged outputs keep their bytes and their mtimes.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def dumps_json(obj: Any) -> str:
    """Stable JSON: sorted keys, UTF-8, two-space indent, trailing newline."""
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, indent=2) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class OutputLayout:
    """The paths of an output directory (the layout in ``pipeline/docs/contracts.md``)."""

    root: Path

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.parquet"

    @property
    def sources_table(self) -> Path:
        return self.root / "sources.parquet"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def card(self) -> Path:
        return self.root / "card.md"

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def work_dir(self) -> Path:
        return self.root / "work"

    def source_dir(self, source_id: str) -> Path:
        return self.work_dir / source_id

    @property
    def download_archive(self) -> Path:
        return self.work_dir / "download-archive.txt"


def reset_dir(path: Path) -> Path:
    """Remove a (partial) directory and create it empty."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return path
