"""(X)HTML documents -> pictures and text blocks in reading order, for the EPUB and HTML readers.

:func:`walk_document` visits a parsed document once, in document order, and yields:

- a :class:`pipeline.book.model.Picture` for every ``<img>``, SVG ``<image>`` and inline
  ``background-image``; a thumbnail inside ``<a href="big.jpg">`` is replaced by the full-size
  image it links to; ``alt``/``title`` become its description;
- a :class:`pipeline.book.model.TextBlock` for the text of every block element (paragraph, heading,
  list item, table cell, figcaption...), with its role: heading, caption, running (page chrome:
  ``<header>``, ``<footer>``, ``<nav>``, ``<aside>``), or body.

Each block carries its chain of ancestor element ids: pairing reads structure from it. Sections
start at h1-h3 headings and where the semantics change (``epub:type``, ARIA ``doc-*`` roles, a
distributor's boilerplate), so that matter rules can judge each section on its own.

Image references resolve through :class:`Resources` (a folder, a zip, or what the fetch stage
downloaded); missing and remote images are collected for the reader to report, never fetched here.
"""

from __future__ import annotations

import base64
import logging
import posixpath
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urljoin, urlparse

from pipeline.config import EbookConfig
from pipeline.book.model import EbookError, Page, Picture, TextBlock, clean_text, decode_image, image_size

log = logging.getLogger(__name__)

BLOCKS = {"p", "div", "section", "article", "main", "body", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol",
          "dl", "dt", "dd", "blockquote", "pre", "figure", "figcaption", "table", "tbody", "thead", "tfoot", "tr",
          "td", "th", "caption", "header", "footer", "nav", "aside", "center", "address", "hr"}
SKIP = {"script", "style", "head", "noscript", "template", "iframe", "object", "video", "audio", "title", "math"}
CHROME = {"header", "footer", "nav", "aside"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
_MEANINGLESS_ALT = re.compile(r"^\s*(image|img|picture|illustration|figure|photo|graphic|cover|\[?image\]?|"
                              r"[\w-]+\.(jpe?g|png|gif|webp|svg))?\s*$", re.I)
_PG_START = re.compile(r"\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG", re.I)
_PG_END = re.compile(r"\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG", re.I)
_ROLE_SEMANTICS = re.compile(r"doc-(\w[\w-]*)")
STYLE_URL = re.compile(r"background(?:-image)?\s*:[^;]*url\(\s*['\"]?([^'\")]+)", re.I)


class Resources(Protocol):
    """Where a document's images come from: ``resolve`` a reference, then ``read`` it."""

    def resolve(self, ref: str, doc: str) -> tuple[str | None, str]:
        """(key, status): status is "ok", "missing" or "remote"; key is what ``read`` takes."""

    def read(self, key: str) -> bytes: ...


@dataclass
class FolderResources:
    """Files under ``root`` (a book's folder); references may not climb out of it.

    For a book fetched from the web, ``base_url`` is its address and ``url_map`` maps each
    downloaded image URL to its file under ``root``.
    """

    root: Path
    base_url: str | None = None
    url_map: dict[str, str] = field(default_factory=dict)

    def resolve(self, ref: str, doc: str) -> tuple[str | None, str]:
        if self.base_url is not None:
            url = urljoin(self.base_url, ref).split("#")[0]  # one page: its address is the base
            if url in self.url_map:
                return self.url_map[url], "ok"
            same_host = urlparse(url).netloc == urlparse(self.base_url).netloc
            return None, "missing" if same_host else "remote"
        if urlparse(ref).scheme or ref.startswith("//"):
            return None, "remote"
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(doc), unquote(ref.split("#")[0].split("?")[0])))
        if rel.startswith("../") or rel == ".." or rel.startswith("/"):
            return None, "missing"  # outside the book's folder: not part of the book
        return (rel, "ok") if (self.root / rel).is_file() else (None, "missing")

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()


@dataclass
class ZipResources:
    """Members of a :class:`pipeline.book.safezip.SafeZip` (an EPUB, or a zipped HTML book)."""

    archive: Any

    def resolve(self, ref: str, doc: str) -> tuple[str | None, str]:
        if urlparse(ref).scheme or ref.startswith("//"):
            return None, "remote"
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(doc), unquote(ref.split("#")[0].split("?")[0])))
        return (rel, "ok") if self.archive.has(rel) else (None, "missing")

    def read(self, key: str) -> bytes:
        return self.archive.read(key)


@dataclass
class Walk:
    """What walking one or more documents collected."""

    pages: list[Page] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    skipped_svg: int = 0
    order: int = 0  # running block counter across documents
    pictures: int = 0  # running picture counter (HTML positions)
    page_number: int = 0
    nodes: int = 0  # running element id, so that ids stay unique across documents


def local(node: Any) -> str:
    tag = node.tag if isinstance(node.tag, str) else ""
    return tag.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower()


def attr(node: Any, name: str) -> str | None:
    """An attribute by local name, whatever its namespace (``epub:type``, ``xlink:href``)."""
    for key, value in node.attrib.items():
        if key.rsplit("}", 1)[-1].rsplit(":", 1)[-1].lower() == name:
            return value
    return None


def semantics_of(node: Any) -> set[str]:
    found = set((attr(node, "type") or "").split()) if local(node) not in ("input", "link", "script", "a", "ol") else set()
    found |= set(_ROLE_SEMANTICS.findall(attr(node, "role") or ""))
    ident = f"{attr(node, 'id') or ''} {attr(node, 'class') or ''}".lower()
    if re.search(r"pg-?(header|footer)|pg-boilerplate", ident):
        found.add("distributor")
    return found


def walk_document(root: Any, doc: str, resources: Resources, cfg: EbookConfig, walk: Walk, *,
                  split: bool, semantics: set[str] | None = None, page_of_pictures: int | None = None) -> None:
    """Append the document's pages to ``walk``; ``split`` starts a page at headings and semantics."""
    body = next((n for n in root.iter() if local(n) == "body"), root)
    state = _State(walk, doc, resources, cfg, split, set(semantics or ()), page_of_pictures)
    state.new_page(set())
    state.visit(body, (), set(), "body")
    state.flush()
    _mark_gutenberg(walk)


class _State:
    def __init__(self, walk: Walk, doc: str, resources: Resources, cfg: EbookConfig, split: bool,
                 base_semantics: set[str], page_of_pictures: int | None):
        self.walk, self.doc, self.resources, self.cfg, self.split = walk, doc, resources, cfg, split
        self.base = base_semantics
        self.page_of_pictures = page_of_pictures
        self.buffer: list[str] = []
        self.owner: tuple[tuple[int, ...], str, set[str]] = ((), "body", set())
        self.semantics: set[str] = set()  # of the current page, beyond the document's own

    def new_page(self, semantics: set[str]) -> None:
        self.walk.page_number += 1
        self.semantics = set(semantics)
        self.page = Page(number=self.walk.page_number, semantics=self.base | semantics)
        self.walk.pages.append(self.page)

    def enter(self, semantics: set[str], heading: bool = False) -> None:
        """Start a new page when content with other semantics (or a main heading) begins."""
        if not self.split:  # one page per document: it takes every semantics found inside
            self.page.semantics |= semantics
            return
        if semantics == self.semantics and not heading:
            return
        if self.page.texts or self.page.pictures:
            self.new_page(semantics)
        else:
            self.semantics = set(semantics)
            self.page.semantics = self.base | semantics

    def flush(self) -> None:
        text = clean_text(" ".join(self.buffer))
        self.buffer = []
        if text:
            path, role, semantics = self.owner
            self.enter(semantics)
            self.walk.order += 1
            self.page.texts.append(TextBlock(text, path=path, order=self.walk.order, role=role))

    def visit(self, node: Any, path: tuple[int, ...], semantics: set[str], role: str) -> None:
        tag = local(node)
        if not tag or tag in SKIP:
            return
        here = semantics | semantics_of(node)
        if tag in ("h1", "h2", "h3"):
            self.flush()
            self.enter(here, heading=True)
        self.walk.nodes += 1
        own_path = path + (self.walk.nodes,)
        if tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            role = "heading"
        elif tag in ("figcaption", "caption") or "caption" in (attr(node, "class") or "").lower():
            role = "caption" if role == "body" else role
        elif tag in CHROME and "distributor" not in here:
            role = "running"
        if tag in ("img", "image"):
            self.flush()
            self.enter(here)
            self.picture(node, own_path)
        elif (style := attr(node, "style")) and (found := STYLE_URL.search(style)):
            self.flush()
            self.enter(here)
            self.picture(node, own_path, ref=found.group(1))
        block = tag in BLOCKS
        if block:
            self.flush()
            saved, self.owner = self.owner, (own_path, role, here)
        if node.text and tag not in ("img", "image"):
            self.buffer.append(node.text)
        for child in node:
            self.visit(child, own_path, here, role)
            if child.tail:
                self.buffer.append(child.tail)
        if tag == "br":
            self.buffer.append(" ")
        if block:
            self.flush()
            self.owner = saved

    def picture(self, node: Any, path: tuple[int, ...], ref: str | None = None) -> None:
        ref = ref or attr(node, "src") or attr(node, "href")
        if not ref:
            return
        parent = node.getparent()
        link = parent if parent is not None and local(parent) == "a" else None
        full = attr(link, "href") if link is not None else None
        if full and urlparse(full).path.lower().endswith(IMAGE_EXTENSIONS):
            key, status = self.resources.resolve(full, self.doc)
            if status == "ok":
                ref = full  # a thumbnail: the linked full-size image is the illustration
        if ref.startswith("data:"):
            return self._inline(node, path, ref)
        if urlparse(ref).path.lower().endswith(".svg"):
            self.walk.skipped_svg += 1
            return
        key, status = self.resources.resolve(ref, self.doc)
        if status != "ok":
            (self.walk.remote if status == "remote" else self.walk.missing).append(ref)
            return
        data = self.resources.read(key)
        size = image_size(data, key, self.cfg)
        self._add(node, path, key, size, partial(_load, self.resources, key, self.cfg), ref)

    def _inline(self, node: Any, path: tuple[int, ...], ref: str) -> None:
        header, _, payload = ref.partition(",")
        if ";base64" not in header or "svg" in header:
            return
        try:
            data = base64.b64decode(payload, validate=False)
        except ValueError:
            return
        size = image_size(data, "an inline data: image", self.cfg)
        self._add(node, path, f"data-{hash(payload)}", size, partial(decode_image, data, "inline image", self.cfg), "data:")

    def _add(self, node: Any, path: tuple[int, ...], key: str, size: tuple[int, int], loader: Any, ref: str) -> None:
        alt = clean_text(attr(node, "alt") or attr(node, "title") or "")
        parent = node.getparent()
        hint = " ".join(filter(None, [ref, attr(node, "class"), attr(node, "id"),
                                      parent is not None and attr(parent, "class") or None]))
        self.walk.order += 1
        self.walk.pictures += 1
        self.page.pictures.append(Picture(
            ref=key, size=size, loader=loader, key=key, path=path, order=self.walk.order,
            alt=None if _MEANINGLESS_ALT.match(alt) else alt, hint=hint,
            page=self.page_of_pictures if self.page_of_pictures is not None else self.walk.pictures,
            box=_style_box(node),
        ))


def _load(resources: Resources, key: str, cfg: EbookConfig) -> Any:
    return decode_image(resources.read(key), key, cfg)


def _style_box(node: Any) -> tuple[float, float, float, float] | None:
    """A fixed-layout page places pictures in CSS pixels: left/top/width/height, when all are given."""
    style = (attr(node, "style") or "").replace(" ", "").lower()
    values = {k: float(v) for k, v in re.findall(r"(left|top|width|height):(-?[\d.]+)px", style)}
    for name in ("width", "height"):
        if name not in values and (attr(node, name) or "").strip().isdigit():
            values[name] = float(attr(node, name))
    if "width" not in values or "height" not in values:
        return None
    x, y = values.get("left", 0.0), values.get("top", 0.0)
    return (x, y, x + values["width"], y + values["height"])


def _mark_gutenberg(walk: Walk) -> None:
    """Everything up to "*** START OF THE PROJECT GUTENBERG EBOOK" and from "*** END OF" on is boilerplate."""
    blocks = [(page, b) for page in walk.pages for b in page.texts]
    start = next((i for i, (_, b) in enumerate(blocks) if _PG_START.search(b.text)), None)
    end = next((i for i, (_, b) in enumerate(blocks) if _PG_END.search(b.text)), None)
    if start is None and end is None:
        return
    first = blocks[start][1].order if start is not None else -1
    last = blocks[end][1].order if end is not None else float("inf")
    for page in walk.pages:
        orders = [b.order for b in page.texts] + [p.order for p in page.pictures]
        if orders and (max(orders) <= first or min(orders) >= last):
            page.semantics.add("distributor")
        elif orders:  # a section straddling a marker: drop just the boilerplate blocks
            page.texts = [b for b in page.texts if first < b.order < last]
            page.pictures = [p for p in page.pictures if first < p.order < last]


def report_unresolved(walk: Walk, name: str) -> None:
    """Missing or remote images make a book incomplete: refuse it, naming a few of them."""
    if walk.missing or walk.remote:
        parts = []
        if walk.missing:
            parts.append(f"{len(walk.missing)} image(s) missing ({', '.join(walk.missing[:3])})")
        if walk.remote:
            parts.append(f"{len(walk.remote)} image(s) remote ({', '.join(walk.remote[:3])}); storyloom reads a "
                         "book's images from its own folder or site and does not fetch from other hosts")
        raise EbookError(f"{name}: " + "; ".join(parts))
