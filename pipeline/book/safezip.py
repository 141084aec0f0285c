"""Reading EPUBs and zipped books in place, safely: no extraction, no path tricks, no zip bombs.

:class:`SafeZip` checks the whole central directory when it opens an archive and refuses it
(:class:`pipeline.book.model.EbookError`) when

- a member name is absolute (``/etc/passwd``, ``C:\\x``) or climbs out with ``..``: an EPUB
  holding such names is malformed or hostile, even though nothing is ever extracted here;
- there are more than ``ebook.max_members`` members;
- a member declares an uncompressed size over ``max_compression_ratio`` times its compressed size
  (the shape of a zip bomb), or all members together declare more than ``max_uncompressed_mb``.

Declared sizes can lie, so :meth:`SafeZip.read` also counts the bytes it actually inflates and
stops at the declared size and at the archive's total budget.
"""

from __future__ import annotations

import io
import logging
import posixpath
import re
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

from pipeline.config import EbookConfig
from pipeline.book.model import EbookError

log = logging.getLogger(__name__)
_CHUNK = 1 << 16


def safe_member_name(name: str) -> str | None:
    """The normalised member name, or None when it is absolute or climbs out of the archive."""
    if not name or "\x00" in name:
        return None
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return None
    parts = name.replace("\\", "/").split("/")
    if any(part == ".." for part in parts):
        return None
    normal = posixpath.normpath(name.replace("\\", "/"))
    return None if normal == "." else normal


class SafeZip:
    """A zip archive opened for reading members into memory under the configured caps."""

    def __init__(self, source: Path | BinaryIO, cfg: EbookConfig, name: str | None = None):
        self.name = name or (Path(source).name if isinstance(source, (str, Path)) else "archive")
        self.cfg = cfg
        try:
            self._zip = zipfile.ZipFile(source)
            infos = self._zip.infolist()
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
            raise EbookError(f"{self.name} is not a readable zip archive (truncated or corrupt: {exc})") from exc
        if len(infos) > cfg.max_members:
            raise EbookError(f"{self.name} has {len(infos)} entries, over ebook.max_members={cfg.max_members}")
        self._infos: dict[str, zipfile.ZipInfo] = {}
        declared = 0
        for info in infos:
            safe = safe_member_name(info.filename)
            if safe is None:
                raise EbookError(f"{self.name} holds an unsafe path {info.filename!r} (absolute or with '..'): "
                                 "refused, nothing was extracted")
            if info.is_dir():
                continue
            ratio = info.file_size / max(1, info.compress_size)
            if info.file_size > 1_000_000 and ratio > cfg.max_compression_ratio:
                raise EbookError(f"{self.name}: {info.filename} inflates {ratio:.0f}x ({info.compress_size} -> "
                                 f"{info.file_size} bytes), over ebook.max_compression_ratio={cfg.max_compression_ratio:g} "
                                 "(a zip bomb?)")
            declared += info.file_size
            self._infos[safe] = info
        if declared > self.budget:
            raise EbookError(f"{self.name} would inflate to {declared / 1e6:.0f} MB, over "
                             f"ebook.max_uncompressed_mb={cfg.max_uncompressed_mb:g} (a zip bomb?)")
        self._read_total = 0

    @property
    def budget(self) -> int:
        return int(self.cfg.max_uncompressed_mb * 1_000_000)

    def names(self) -> list[str]:
        return list(self._infos)

    def has(self, name: str) -> bool:
        return name in self._infos

    def size(self, name: str) -> int:
        return self._infos[name].file_size

    def read(self, name: str) -> bytes:
        """A member's bytes, never more than it declared nor than the archive's remaining budget."""
        info = self._infos.get(name)
        if info is None:
            raise EbookError(f"{self.name} has no member {name!r}")
        limit = min(info.file_size, self.budget - self._read_total)
        out = io.BytesIO()
        try:
            with self._zip.open(info) as member:
                while True:
                    chunk = member.read(_CHUNK)
                    if not chunk:
                        break
                    if out.tell() + len(chunk) > limit:
                        raise EbookError(f"{self.name}: {name} inflates past its declared size or the "
                                         f"ebook.max_uncompressed_mb budget (a zip bomb?)")
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise EbookError(f"{self.name}: {name} cannot be read (truncated or corrupt: {exc})") from exc
        self._read_total += out.tell()
        return out.getvalue()

    def close(self) -> None:
        self._zip.close()
