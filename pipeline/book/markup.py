"""(X)HTML documents -> pictures and text blocks in reading order, for the EPUB and HTML readers.

:func:`walk_document` visits a parsed document once, in document order, and yields:

- a :class:`pipeline.book.model.Picture` for every ``<img>``, SVG ``<image>`` and inline
  ``background-image``; of the versions of one picture (the ``src``, a ``srcset``, the full-size
  image a thumbnail links to with ``<a href="big.jpg">``) the one with the most pixels is taken;
  ``alt``/``title`` become its description;
- a :class:`pipeline.book.model.TextBlock` for the text of every block element (paragraph, heading,
  list item, table cell, figcaption...), with its role: heading, caption, description (a caption
  that only repeats its picture's alt text), running (page chrome: ``<header>``, ``<footer>``,
  ``<nav>``, ``<aside>``, and page numbers), or body.

What a reader does not see is left out: scripts and styles, elements hidden with ``display:none``
or ``hidden``, and page-number markers (``<span class="pagenum">[Pg 12]</span>``, EPUB
``pagebreak``), which would otherwise split a sentence of the story.

Each block carries its chain of ancestor element ids: pairing reads structure from it. Sections
start at h1-h3 headings and where the semantics change (``epub:type``, ARIA ``doc-*`` roles, a
distributor's boilerplate), so that matter rules can judge each section on its own.

Documents are parsed as a browser would (:func:`parse_markup`): XHTML as XML when it is
well-formed, otherwise (and always for ``.html`` pages) with lxml's forgiving HTML parser, which
repairs what real books get wrong (table rows and cells never closed, stray ``</p>``).
Project Gutenberg's header and licence are found by their markers wherever they sit
(:func:`mark_gutenberg`), and the header's ``Title:``/``Author:`` lines kept for the metadata.

Image references resolve through :class:`Resources` (a folder, a zip, or what the fetch stage
downloaded); missing and remote images are collected for the reader to report, never fetched here.
"""

from __future__ import annotations

import base64
import codecs
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
_PG_START = re.compile(r"\*\*\*\s*START\s+OF\s+(THE|THIS)\s+PROJECT\s+GUTENBERG|\*END\*\s*THE SMALL PRINT", re.I)
_PG_END = re.compile(r"\*\*\*\s*END\s+OF\s+(THE|THIS)\s+PROJECT\s+GUTENBERG|^\W*End of (the )?Project Gutenberg", re.I)
_ROLE_SEMANTICS = re.compile(r"doc-(\w[\w-]*)")
# class names that say what a page is (Bloom's xmatter, converters' title pages); exact tokens only
_CLASS_SEMANTICS = {"bloom-frontmatter": "frontmatter", "bloom-backmatter": "backmatter", "frontcover": "cover",
                    "outsidefrontcover": "cover", "insidefrontcover": "frontmatter", "outsidebackcover": "backmatter",
                    "insidebackcover": "backmatter", "titlepage": "titlepage", "title-page": "titlepage",
                    "halftitlepage": "titlepage", "copyright-page": "copyright-page", "colophon": "colophon"}
_PAGE_NUMBER_CLASS = re.compile(r"(^|\s)(page-?num(ber)?|pagenum\w*|pg-?num|pageno|page-?break|pb|folio)(\s|$)", re.I)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
# a block that is only a page number: "12", "[12]", "[Pg 12]", "Page xii"
_PAGE_NUMBER_TEXT = re.compile(r"^\s*(\d{1,4}|\[\s*(p(a?ge?)?\.?\s*)?(\d{1,4}|[ivxlcdm]{1,7})\s*\]|"
                               r"p(a?ge?)?\.?\s+(\d{1,4}|[ivxlcdm]{1,7}))\s*$", re.I)
# a page number inside a paragraph whose marker lost its class (converters rename classes): "[Pg 12]"
_INLINE_PAGE_NUMBER = re.compile(r"\s*\[\s*(p(a?ge?)?\.?\s*)(\d{1,4}|[ivxlcdm]{1,7})\s*\]\s*", re.I)
_HEADER_FIELD = re.compile(r"\b(Title|Author|Illustrator|Language)\s*:\s*(.+?)\s*(?=\b(?:Title|Author|Authors|Illustrator|"
                           r"Illustrators|Editor|Translator|Release [Dd]ate|Posting [Dd]ate|Most recently updated|"
                           r"Language|Credits|Character set encoding|Original publication)\s*:|\*\*\*|$)")
_EBOOK_TITLE = re.compile(r"^\s*the project gutenberg e-?book,?\s+(of\s+)?", re.I)
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
    header: str = ""  # the distributor's header (Project Gutenberg's "Title: ... Author: ..."), for the metadata


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
    if re.search(r"pg-?(header|footer)|pg-boilerplate", ident) or \
            set((attr(node, "class") or "").lower().split()) & {"transnote", "tnote", "trans-note", "transcriber-note"}:
        found.add("distributor")
    found |= {_CLASS_SEMANTICS[t] for t in (attr(node, "class") or "").lower().split() if t in _CLASS_SEMANTICS}
    if attr(node, "data-xmatter-page"):  # Bloom's front and back matter pages
        found.add("frontmatter")
    return found


def hidden(node: Any) -> bool:
    """What a reader never sees: ``hidden``, ``display:none``, and page-number markers."""
    if attr(node, "hidden") is not None or _HIDDEN_STYLE.search(attr(node, "style") or ""):
        return True
    if "pagebreak" in semantics_of(node) or _PAGE_NUMBER_CLASS.search(attr(node, "class") or ""):
        # a page marker ("[Pg 12]", "xii"); a container named so (a CSS page break) is read as usual
        return len("".join(node.itertext()).strip()) <= 16 and not any(local(n) in ("img", "image") for n in node.iter())
    return False


def parse_markup(data: bytes, name: str, xml: bool) -> Any:
    """A document as a browser reads it: XML rules for well-formed XHTML (``xml``), otherwise
    lxml's HTML parser, which repairs broken markup the way browsers do."""
    import lxml.etree
    import lxml.html

    if xml:
        parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, recover=False,
                                      remove_comments=True, huge_tree=False)
        try:
            root = lxml.etree.fromstring(data, parser=parser)
            if root is not None:
                return root
        except lxml.etree.XMLSyntaxError as exc:
            log.info("%s is not well-formed XML (%s); read as HTML", name, exc)
    encoding = _encoding(data)
    for attempt in (encoding, None) if encoding else (None,):
        try:
            parser = lxml.html.HTMLParser(remove_comments=True, no_network=True, encoding=attempt)
            return lxml.html.document_fromstring(data, parser=parser)
        except LookupError:  # an encoding name the parser does not know: let it guess
            continue
        except (lxml.etree.ParserError, ValueError) as exc:
            raise EbookError(f"{name} is not readable HTML ({exc})") from exc
    raise EbookError(f"{name} is not readable HTML (unknown encoding {encoding!r})")


def _encoding(data: bytes) -> str | None:
    """The encoding the document declares (XML declaration or meta), else UTF-8 when it decodes as such."""
    head = data[:4096]
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    found = re.search(rb"<\?xml[^>]*encoding\s*=\s*['\"]([\w.:-]+)", head) or \
        re.search(rb"<meta[^>]*charset\s*=\s*['\"]?([\w.:-]+)", head, re.I)
    if found:
        try:
            return codecs.lookup(found.group(1).decode("ascii")).name
        except LookupError:
            pass  # a name no codec has: judge by the bytes
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return None  # the parser's own guess


def tidy_title(title: str | None) -> tuple[str | None, str | None]:
    """A distributor's title ("The Project Gutenberg eBook of Fox Tales, by Ana Lima") -> (title, authors)."""
    if not title:
        return None, None
    authors = None
    distributor = bool(_EBOOK_TITLE.match(title))
    title = _EBOOK_TITLE.sub("", title)
    by = re.match(r"^(.*?),?\s+by\s+(.+)$" if distributor else r"^(.*?),\s+by\s+(.+)$", title)
    if by:
        title, authors = by.group(1), by.group(2)
    return title.strip(" ,") or None, authors


def header_fields(walk: Walk) -> dict[str, str]:
    """"Title", "Author", "Illustrator", "Language" from a distributor's header, when it has one."""
    return {m.group(1).lower(): m.group(2).strip(" .") for m in _HEADER_FIELD.finditer(walk.header)
            if m.group(2).strip(" .")}


def walk_document(root: Any, doc: str, resources: Resources, cfg: EbookConfig, walk: Walk, *,
                  split: bool, semantics: set[str] | None = None, page_of_pictures: int | None = None) -> None:
    """Append the document's pages to ``walk``; ``split`` starts a page at headings and semantics."""
    body = next((n for n in root.iter() if local(n) == "body"), root)
    first_page = len(walk.pages)
    state = _State(walk, doc, resources, cfg, split, set(semantics or ()), page_of_pictures)
    state.new_page(set())
    state.visit(body, (), set(), "body")
    state.flush()
    _mark_descriptions(walk.pages[first_page:])
    mark_gutenberg(walk)


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
        if not _PAGE_NUMBER_TEXT.match(text):
            text = clean_text(_INLINE_PAGE_NUMBER.sub(" ", text))
        if text:
            path, role, semantics = self.owner
            if _PAGE_NUMBER_TEXT.match(text):
                role = "running"  # a page number standing alone
            self.enter(semantics)
            self.walk.order += 1
            self.page.texts.append(TextBlock(text, path=path, order=self.walk.order, role=role))

    def visit(self, node: Any, path: tuple[int, ...], semantics: set[str], role: str) -> None:
        tag = local(node)
        if not tag or tag in SKIP or hidden(node):
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
        ref = ref or attr(node, "src") or attr(node, "href") or attr(node, "data-src")
        if not ref:
            return
        if ref.startswith("data:"):
            return self._inline(node, path, ref)
        if urlparse(ref).path.lower().endswith(".svg"):
            self.walk.skipped_svg += 1
            return
        best = None  # (pixels, key, size, ref): the largest version of this picture that the book holds
        for candidate in [ref, *self._other_versions(node)]:
            key, status = self.resources.resolve(candidate, self.doc)
            if status != "ok":
                if candidate == ref:
                    (self.walk.remote if status == "remote" else self.walk.missing).append(ref)
                    return
                continue
            try:
                size = image_size(self.resources.read(key), key, self.cfg)
            except EbookError:
                if candidate == ref:
                    raise
                continue  # a broken full-size file: the picture the page shows is still good
            if best is None or size[0] * size[1] > best[0]:
                best = (size[0] * size[1], key, size, candidate)
        _, key, size, chosen = best
        self._add(node, path, key, size, partial(_load, self.resources, key, self.cfg), chosen)

    def _other_versions(self, node: Any) -> list[str]:
        """Other files of the same picture: ``srcset`` entries (also of a ``<picture>``'s sources) and the
        image a thumbnail links to (an ``<a href>`` around it, a few levels up)."""
        found = []
        holders = [node]
        ancestor = node.getparent()
        for _ in range(3):  # HTML parsers that do not know <source> is empty put the <img> inside it
            if ancestor is None or local(ancestor) not in ("picture", "source"):
                break
            if local(ancestor) == "picture":
                holders += [n for n in ancestor.iter() if local(n) == "source"]
                break
            ancestor = ancestor.getparent()
        for holder in holders:
            for entry in (attr(holder, "srcset") or "").split(","):
                url = entry.strip().split(" ")[0] if entry.strip() else ""
                if url and not url.startswith("data:"):
                    found.append(url)
        ancestor = node.getparent()
        for _ in range(3):
            if ancestor is None:
                break
            if local(ancestor) == "a":
                full = attr(ancestor, "href")
                if full and urlparse(full).path.lower().endswith(IMAGE_EXTENSIONS):
                    found.append(full)
                break
            ancestor = ancestor.getparent()
        return [url for url in found if not urlparse(url).path.lower().endswith(".svg")]

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


def _mark_descriptions(pages: list[Page]) -> None:
    """Captions that are not story text become descriptions of their picture: one that only repeats
    the picture's alt text, a label in capitals ("THE RABBITS' HOME"), and a quotation of a line that
    a longer paragraph of the story holds (told once, where it stands). Converters rename the classes
    that said "caption", so a short block right after a picture is judged the same way."""
    paragraphs = [(block, _plain(block.text)) for page in pages for block in page.texts if block.role == "body"]

    def quoted(block: TextBlock, plain: str) -> bool:
        return len(plain.split()) >= 4 and any(other is not block and len(words) > len(plain)
                                               and f" {plain} " in f" {words} " for other, words in paragraphs)

    for page in pages:
        alts = {_plain(p.alt): p.order for p in page.pictures if p.alt}
        after_picture = {p.order + 1 for p in page.pictures}
        for block in page.texts:
            plain = _plain(block.text)
            near = alts.get(plain)
            letters = [c for c in block.text if c.isalpha()]
            label = bool(letters) and not any(c.islower() for c in letters) and len(block.text.split()) <= 8
            if block.role == "caption":
                if (near is not None and abs(near - block.order) <= 2) or label or quoted(block, plain):
                    block.role = "description"
            elif block.role == "body" and block.order in after_picture and len(plain.split()) <= 20:
                if (near == block.order - 1 and len(plain.split()) <= 8) or quoted(block, plain):
                    block.role = "description"


def _plain(text: str | None) -> str:
    return " ".join(re.findall(r"[^\W_]+", (text or "").lower()))


def mark_gutenberg(walk: Walk) -> None:
    """Everything up to "*** START OF THE PROJECT GUTENBERG EBOOK" and from "*** END OF" on is the
    distributor's (its header and licence), wherever the markers sit: whole sections outside them are
    marked, a section straddling a marker loses just the blocks beyond it. The header's text is kept
    (:func:`header_fields`)."""
    blocks = [(page, b) for page in walk.pages for b in page.texts]
    start = next((i for i, (_, b) in enumerate(blocks) if _PG_START.search(b.text)), None)
    end = next((i for i, (_, b) in enumerate(blocks) if _PG_END.search(b.text)), None)
    if start is None and end is None:
        return
    if start is not None:
        walk.header = " ".join(b.text for _, b in blocks[:start + 1])[-4000:]
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
