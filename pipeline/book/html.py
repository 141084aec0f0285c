"""HTML picture books (Project Gutenberg's HTML editions and the like) -> :class:`pipeline.book.model.Book`.

A book is one HTML page with its images next to it or under its folder: a local file, a zip
holding the page and its images (Project Gutenberg's ``-h.zip``), or a page the fetch stage
downloaded together with the images of its own site (``base_url`` + ``url_map``).

The page is read with lxml's HTML parser, as a browser reads it (it repairs the rows and cells
old editions leave open; XHTML 1.0 editions are read the same way), and walked by
:mod:`pipeline.book.markup`: sections split at h1-h3 headings, images with their neighbouring
paragraphs, tables that set an image beside its text, thumbnails replaced by the full-size image
they link to, alt/title text kept as a description. Project Gutenberg's header and licence
(``pg-boilerplate`` sections, or the ``*** START/END OF THE PROJECT GUTENBERG EBOOK`` markers)
are a distributor's, not the story's.

Metadata comes from ``<title>``, ``<meta>`` (author, DC and Open Graph names), ``<html lang>``
and ``<link rel="license">``; a Project Gutenberg header's ``Title:`` and ``Author:`` lines win
over the distributor's ``<title>`` ("The Project Gutenberg eBook of ..."). A page whose images are missing or on other hosts is refused:
the story would silently lose its pictures.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pipeline.config import EbookConfig
from pipeline.book.model import Book, BookMeta, EbookError, clean_text, split_names
from pipeline.book.markup import (FolderResources, Resources, Walk, ZipResources, attr, header_fields, local, parse_markup,
                                  report_unresolved, tidy_title, walk_document)

log = logging.getLogger(__name__)

MAX_HTML_BYTES = 50_000_000  # a picture book's page is far smaller; beyond this it is not one


def parse_html(data: bytes, name: str) -> Any:
    if len(data) > MAX_HTML_BYTES:
        raise EbookError(f"{name} is {len(data) / 1e6:.0f} MB of HTML, more than a picture book holds")
    return parse_markup(data, name, xml=False)


def read_html_file(path: Path, cfg: EbookConfig, base_url: str | None = None,
                   url_map: dict[str, str] | None = None) -> Book:
    """A local HTML page (its images under its folder), or one the fetch stage downloaded."""
    path = Path(path)
    resources = FolderResources(path.parent, base_url, dict(url_map or {}))
    return _read(path.read_bytes(), path.name, resources, cfg, note=None)


def read_html_zip(archive: Any, html_names: list[str], cfg: EbookConfig) -> Book:
    """The HTML book in a zip: its largest page (other pages are usually notes or indexes)."""
    main = max(html_names, key=lambda n: (archive.size(n), n))
    note = f"{len(html_names) - 1} other HTML page(s) in the zip left out" if len(html_names) > 1 else None
    return _read(archive.read(main), main, ZipResources(archive), cfg, note=note, doc=main)


def _read(data: bytes, name: str, resources: Resources, cfg: EbookConfig, note: str | None, doc: str | None = None) -> Book:
    root = parse_html(data, name)
    walk = Walk()
    walk_document(root, doc or name, resources, cfg, walk, split=True)
    report_unresolved(walk, name)
    if len(walk.pages) > cfg.max_pages:
        raise EbookError(f"{name} has {len(walk.pages)} sections, over ebook.max_pages={cfg.max_pages}")
    book = Book(format="html", layout="flow", meta=html_metadata(root, header_fields(walk)), pages=walk.pages)
    if note:
        book.notes.append(note)
    if walk.skipped_svg:
        book.notes.append(f"{walk.skipped_svg} SVG image(s) left out (vector images are not rasterised)")
    return book


def html_metadata(root: Any, header: dict[str, str] | None = None) -> BookMeta:
    """Title, authors, language and licence from the page's head (and a distributor's ``header``)."""
    header = header or {}
    meta: dict[str, str] = {}
    licence = None
    for node in root.iter():
        tag = local(node)
        if tag == "meta":
            key = (attr(node, "name") or attr(node, "property") or "").lower()
            if key and attr(node, "content"):
                meta.setdefault(key, clean_text(attr(node, "content")))
        elif tag == "link" and "license" in (attr(node, "rel") or "").lower():
            licence = attr(node, "href")
        elif tag == "body":
            break
    title_node = next((n for n in root.iter() if local(n) == "title"), None)
    title = next((meta[k] for k in ("dc.title", "dcterms.title", "og:title", "citation_title") if meta.get(k)), None)
    title = title or (clean_text(title_node.text_content()) if title_node is not None else None)
    authors = next((meta[k] for k in ("author", "dc.creator", "dcterms.creator", "citation_author") if meta.get(k)), None)
    title, by = tidy_title(title)
    title, authors = header.get("title") or title, header.get("author") or authors or by
    language = root.get("lang") or attr(root, "lang") or meta.get("dc.language") or meta.get("content-language")
    licence = licence or meta.get("dc.rights") or meta.get("dcterms.license") or meta.get("license")
    return BookMeta(title=title.strip(" ,") or None if title else None, authors=split_names(authors),
                    illustrators=split_names(header.get("illustrator") or meta.get("illustrator")), language=language or None,
                    license=licence, publisher=meta.get("dc.publisher"))
