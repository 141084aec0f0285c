"""EPUB 2 and 3 picture books -> :class:`pipeline.book.model.Book`, read in place from the zip.

``META-INF/container.xml`` names the package document (OPF); its metadata gives title, creators
with their roles (EPUB 2 ``opf:role``, EPUB 3 ``<meta refines="#id" property="role">``; ``ill``
makes an illustrator), language, rights/licence and the cover image (EPUB 3 ``cover-image``,
EPUB 2 ``<meta name="cover">``); its spine gives the reading order. Each spine document is XHTML,
parsed as XML (entities and the network off) when it is well-formed and with the forgiving HTML
parser when it is not (converters and hand-made books ship broken XHTML that reading systems still
show), then walked by :mod:`pipeline.book.markup` with the same reading rules as an HTML book:
pictures also through SVG ``<image xlink:href>`` (calibre wraps covers, and sometimes every
picture, that way). A distributor's title ("The Project Gutenberg eBook of ...") and placeholder
creators ("Unknown") give way to what the book's own Project Gutenberg header says.

Fixed-layout books (``rendition:layout`` ``pre-paginated``, globally or per item) are paginated:
one page per spine item, sized by its viewport, with ``page-spread-left/right`` where given.
Reflowable books flow, split into sections at headings and semantics. EPUB 2 ``<guide>`` and
EPUB 3 landmarks add semantics (cover, title page, copyright...) to the documents they point to;
non-linear spine items and the navigation document are matter.

The zip goes through :class:`pipeline.book.safezip.SafeZip`: unsafe member names, zip bombs and
truncated archives are refused with a clear message.
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.config import EbookConfig
from pipeline.book.model import Book, BookMeta, EbookError, clean_text, split_names
from pipeline.book.markup import (Walk, ZipResources, attr, header_fields, local, parse_markup, report_unresolved,
                                  tidy_title, walk_document)
from pipeline.book.safezip import SafeZip

log = logging.getLogger(__name__)

XHTML_TYPES = ("application/xhtml+xml", "text/html", "image/svg+xml")
_ILLUSTRATOR_ROLES = {"ill", "art", "pht", "illustrator"}
_AUTHOR_ROLES = {"aut", "author", "wrt", ""}


def _xml(data: bytes, what: str) -> Any:
    import lxml.etree

    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=True,
                                  remove_comments=True, huge_tree=False)
    try:
        root = lxml.etree.fromstring(data, parser=parser)
    except lxml.etree.XMLSyntaxError as exc:
        raise EbookError(f"{what} is not readable XML ({exc})") from exc
    if root is None:
        raise EbookError(f"{what} is empty or not XML")
    return root


def _children(node: Any, name: str) -> list[Any]:
    return [n for n in node.iter() if local(n) == name]


def read_epub(source: Path | BinaryIO, cfg: EbookConfig, name: str | None = None) -> Book:
    archive = SafeZip(source, cfg, name)
    name = archive.name
    if not archive.has("META-INF/container.xml"):
        raise EbookError(f"{name} is not an EPUB: META-INF/container.xml is missing (truncated or not an EPUB)")
    container = _xml(archive.read("META-INF/container.xml"), f"{name}: container.xml")
    rootfile = next((attr(n, "full-path") for n in _children(container, "rootfile")
                     if (attr(n, "media-type") or "application/oebps-package+xml") == "application/oebps-package+xml"), None)
    if not rootfile or not archive.has(posixpath.normpath(rootfile)):
        raise EbookError(f"{name}: the package document {rootfile!r} named by container.xml is missing")
    opf_path = posixpath.normpath(rootfile)
    opf = _xml(archive.read(opf_path), f"{name}: {opf_path}")
    base = posixpath.dirname(opf_path)

    manifest = {}
    for item in _children(opf, "item"):
        href = attr(item, "href")
        if attr(item, "id") and href:
            manifest[attr(item, "id")] = (posixpath.normpath(posixpath.join(base, href.split("#")[0])),
                                          attr(item, "media-type") or "", set((attr(item, "properties") or "").split()))
    meta = _metadata(opf, manifest)
    fixed = any((m.text or "").strip() == "pre-paginated" for m in _children(opf, "meta")
                if attr(m, "property") == "rendition:layout")
    semantics = _landmarks(opf, base, manifest, archive)
    spine = [n for n in _children(opf, "itemref") if attr(n, "idref") in manifest]
    if not spine:
        raise EbookError(f"{name}: the spine lists no documents")
    if len(spine) > cfg.max_pages:
        raise EbookError(f"{name} has {len(spine)} spine items, over ebook.max_pages={cfg.max_pages}")
    items_fixed = [fixed if not (p := set((attr(r, "properties") or "").split())) & {"rendition:layout-pre-paginated",
                   "rendition:layout-reflowable"} else "rendition:layout-pre-paginated" in p for r in spine]
    paginated = sum(items_fixed) > len(spine) / 2

    walk = Walk()
    resources = ZipResources(archive)
    for index, ref in enumerate(spine, start=1):
        href, media_type, properties = manifest[attr(ref, "idref")]
        if media_type not in XHTML_TYPES or not archive.has(href):
            if not archive.has(href):
                raise EbookError(f"{name}: spine document {href} is missing from the archive")
            continue
        extra = set(semantics.get(href, ()))
        if (attr(ref, "linear") or "yes").lower() == "no":
            extra.add("nonlinear")
        if "nav" in properties:
            extra.add("nav")
        root = parse_markup(archive.read(href), f"{name}: {href}", xml=True)
        first = len(walk.pages)
        walk_document(root, href, resources, cfg, walk, split=not paginated, semantics=extra, page_of_pictures=index)
        if paginated:
            _as_one_page(walk, first, index, root, ref)
    report_unresolved(walk, name)
    _tidy(meta, header_fields(walk))
    book = Book(format="epub", layout="paginated" if paginated else "flow", meta=meta, pages=walk.pages)
    if walk.skipped_svg:
        book.notes.append(f"{walk.skipped_svg} SVG image(s) left out (vector images are not rasterised)")
    return book


def _as_one_page(walk: Walk, first: int, index: int, root: Any, ref: Any) -> None:
    """A fixed-layout spine item is one page: numbered by its spine position, sized by its viewport."""
    page = walk.pages[first]
    for extra in walk.pages[first + 1:]:
        page.pictures += extra.pictures
        page.texts += extra.texts
        page.semantics |= extra.semantics
    del walk.pages[first + 1:]
    page.number = index
    walk.page_number = index
    viewport = next((attr(m, "content") for m in _children(root, "meta") if attr(m, "name") == "viewport"), None)
    size = dict(re.findall(r"(width|height)\s*=\s*([\d.]+)", viewport or ""))
    if "width" in size and "height" in size:
        page.size = (float(size["width"]), float(size["height"]))
    props = (attr(ref, "properties") or "").split()
    page.spread = "left" if "page-spread-left" in props else "right" if "page-spread-right" in props else None


def _tidy(meta: BookMeta, header: dict[str, str]) -> None:
    """A converter keeps the distributor's page title and writes "Unknown" for a missing creator."""
    title, by = tidy_title(meta.title)
    meta.title = header.get("title") or title
    meta.authors = [a for a in meta.authors if a.lower() not in ("unknown", "anonymous", "unknown author")]
    if not meta.authors:
        meta.authors = split_names(header.get("author") or by)
    if not meta.illustrators and header.get("illustrator"):
        meta.illustrators = split_names(header["illustrator"])


def _metadata(opf: Any, manifest: dict[str, tuple[str, str, set[str]]]) -> BookMeta:
    metadata = next((n for n in opf.iter() if local(n) == "metadata"), opf)
    refines: dict[str, str] = {}
    licence = None
    cover_id = None
    for node in metadata.iter():
        if local(node) != "meta":
            continue
        prop, refined = attr(node, "property"), (attr(node, "refines") or "").lstrip("#")
        if prop == "role" and refined:
            refines[refined] = (node.text or "").strip().lower()
        elif prop in ("dcterms:license", "dcterms:rights", "cc:license") and node.text:
            licence = licence or clean_text(node.text)
        elif attr(node, "name") == "cover":
            cover_id = attr(node, "content")
    authors, illustrators = [], []
    for node in metadata.iter():
        if local(node) not in ("creator", "contributor"):
            continue
        role = (attr(node, "role") or refines.get(attr(node, "id") or "", "")).lower()
        names = split_names(clean_text(node.text or ""))
        if role in _ILLUSTRATOR_ROLES:
            illustrators += names
        elif role in _AUTHOR_ROLES and local(node) == "creator":
            authors += names
    for node in metadata.iter():
        if local(node) == "link" and "license" in (attr(node, "rel") or ""):
            licence = licence or attr(node, "href")

    def first(tag: str) -> str | None:
        node = next((n for n in metadata.iter() if local(n) == tag and (n.text or "").strip()), None)
        return clean_text(node.text) if node is not None else None

    cover = next((href for href, _, props in manifest.values() if "cover-image" in props), None)
    if cover is None and cover_id in manifest:
        cover = manifest[cover_id][0]
    return BookMeta(title=first("title"), authors=authors, illustrators=illustrators, language=first("language"),
                    license=licence or first("rights"), publisher=first("publisher"), cover_key=cover)


def _landmarks(opf: Any, base: str, manifest: dict[str, tuple[str, str, set[str]]], archive: SafeZip) -> dict[str, set[str]]:
    """Document href -> semantics from the EPUB 2 guide and the EPUB 3 landmarks nav."""
    out: dict[str, set[str]] = {}
    for ref in _children(opf, "reference"):
        if attr(ref, "href") and attr(ref, "type"):
            href = posixpath.normpath(posixpath.join(base, attr(ref, "href").split("#")[0]))
            kind = attr(ref, "type").lower().replace("other.", "")
            if kind not in ("text", "bodymatter", "start"):
                out.setdefault(href, set()).add(kind)
    nav = next((href for href, _, props in manifest.values() if "nav" in props), None)
    if nav and archive.has(nav):
        root = _xml(archive.read(nav), nav)
        for section in (n for n in root.iter() if local(n) == "nav" and "landmarks" in (attr(n, "type") or "")):
            for link in (n for n in section.iter() if local(n) == "a" and attr(n, "href")):
                kind = (attr(link, "type") or "").lower()
                href = posixpath.normpath(posixpath.join(posixpath.dirname(nav), attr(link, "href").split("#")[0]))
                if kind and kind not in ("bodymatter", "chapter"):
                    out.setdefault(href, set()).add(kind)
    return out
