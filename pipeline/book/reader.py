"""Opening a book file with the right reader: PDF, EPUB, HTML, or a zip holding one of these.

The format comes from the file's first bytes, not its name (:func:`pipeline.book.model.sniff_format`).
The readers (:mod:`pipeline.book.pdf`, :mod:`pipeline.book.epub`, :mod:`pipeline.book.html`) all
produce the :class:`pipeline.book.model.Book` model; this module is the only one that knows them all.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pipeline.book.epub import read_epub
from pipeline.book.html import read_html_file, read_html_zip
from pipeline.book.model import BOOK_SUFFIXES, Book, EbookError, sniff_format
from pipeline.book.pdf import read_pdf
from pipeline.book.safezip import SafeZip
from pipeline.config import EbookConfig


@contextmanager
def open_book(path: Path, cfg: EbookConfig, base_url: str | None = None,
              url_map: dict[str, str] | None = None) -> Iterator[Book]:
    """Read a book file (PDF, EPUB, HTML, or a zip holding one book) with the right reader.

    ``base_url`` and ``url_map`` describe an HTML book fetched from the web: its address and
    which of its image URLs were downloaded to which local file.
    """
    path = Path(path)
    if not path.is_file():
        raise EbookError(f"book file not found: {path}")
    with path.open("rb") as handle:
        head = handle.read(4096)
    if not head:
        raise EbookError(f"{path.name} is empty")
    kind = sniff_format(head, path.name)
    if kind == "pdf":
        with read_pdf(path, cfg) as book:
            yield book
    elif kind == "epub":
        yield read_epub(path, cfg)
    elif kind == "zip":
        with _book_in_zip(path, cfg) as book:
            yield book
    elif kind == "html":
        yield read_html_file(path, cfg, base_url=base_url, url_map=url_map)
    else:
        raise EbookError(f"{path.name} is not a PDF, EPUB or HTML book (its first bytes are {head[:16]!r})")


@contextmanager
def _book_in_zip(path: Path, cfg: EbookConfig) -> Iterator[Book]:
    """A zip holding exactly one book: a PDF, an EPUB, or an HTML page with its images."""
    archive = SafeZip(path, cfg)
    books = [n for n in archive.names() if n.lower().endswith(BOOK_SUFFIXES) and not n.split("/")[-1].startswith(".")]
    if not books:
        raise EbookError(f"{path.name} is a zip without a PDF, EPUB or HTML book in it")
    binaries = [n for n in books if n.lower().endswith((".pdf", ".epub"))]
    if len(binaries) > 1 or (binaries and len(books) > len(binaries)):
        raise EbookError(f"{path.name} holds {len(books)} books ({', '.join(books[:4])}...); "
                         "unzip it and list the folder as the source, which makes one story per book")
    if binaries:
        data = archive.read(binaries[0])
        if binaries[0].lower().endswith(".pdf"):
            with read_pdf(data, cfg, name=binaries[0]) as book:
                yield book
        else:
            yield read_epub(io.BytesIO(data), cfg, name=binaries[0])
        return
    yield read_html_zip(archive, books, cfg)
