"""The e-book model every format reader produces, and the rules all formats share.

A reader (:mod:`pipeline.book.pdf`, :mod:`~pipeline.book.epub`, :mod:`~pipeline.book.html`) turns one file into a :class:`Book`:
metadata plus an ordered list of :class:`Page` s, each holding :class:`Picture` s and
:class:`TextBlock` s. A *page* is a PDF page, an EPUB spine item, or a section of an HTML
document (split at its headings). Paginated books (PDF, fixed-layout EPUB) carry positions on the
page; flowing ones (reflowable EPUB, HTML) carry each block's chain of ancestor elements instead,
which is what pairing reads structure from (:mod:`pipeline.book.pair`).

Readers never decode a picture while reading: a picture knows its pixel size from the file header
(so the pixel cap refuses decompression bombs before any decoding) and decodes on ``load()``.
:func:`pipeline.book.reader.open_book` picks the reader from the file's first bytes, not its name.

Every problem with the input is an :class:`EbookError` carrying a message for the user; the flow
records it in ``sources.parquet`` and goes on with the other sources.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.config import EbookConfig
from pipeline.errors import StageError

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 on the page, origin top left
BOOK_SUFFIXES = (".pdf", ".epub", ".html", ".htm", ".xhtml")
_DECORATION_HINT = re.compile(r"logo|ornament|deco|divider|separator|spacer|icon|dingbat|flourish|border|"
                              r"bullet|rule|banner|badge|button|arrow|pixel", re.I)


class EbookError(StageError):
    """A book that cannot become a story (``skipped``: a policy decision, not a broken file)."""


@dataclass
class Picture:
    """One image in a book; pixels are decoded only by :meth:`load`."""

    ref: str  # where it came from: "page 3 image 1", "OEBPS/img/p3.jpg"
    size: tuple[int, int]  # pixel width, height (from the header)
    loader: Callable[[], np.ndarray] = field(repr=False)  # -> RGB uint8
    key: str = ""  # equal keys: the same image (repeats make logos and ornaments)
    box: Box | None = None  # where it sits on a positioned page
    path: tuple[int, ...] = ()  # flowing documents: ids of its ancestor elements, outermost first
    order: int = 0  # position among the book's blocks, in reading order
    alt: str | None = None  # alt or title text: a description, kept as the frame's caption
    page: int | None = None  # the frame's ``page`` when not the page number (HTML: position among its images)
    hint: str = ""  # file name, class and id: decoration hints
    crop: Box = (0.0, 0.0, 1.0, 1.0)  # visible part, as fractions of the image (clipped at the page edge)
    mask: list[Box] = field(default_factory=list)  # burnt-in text, as fractions of the visible part
    flags: list[str] = field(default_factory=list)
    decoration: str | None = None  # why it is not an illustration (set by the readers and mark_decorations)

    def load(self) -> np.ndarray:
        image = self.loader()
        x0, y0, x1, y1 = self.crop
        if (x0, y0, x1, y1) != (0.0, 0.0, 1.0, 1.0):
            h, w = image.shape[:2]
            image = image[round(y0 * h):max(round(y1 * h), round(y0 * h) + 1),
                          round(x0 * w):max(round(x1 * w), round(x0 * w) + 1)]
        return np.ascontiguousarray(image)


@dataclass
class TextBlock:
    """A paragraph (or a PDF text block) in reading order."""

    text: str
    box: Box | None = None
    path: tuple[int, ...] = ()
    order: int = 0
    role: str = "body"  # body | heading | caption | running (header, footer, page number)
    burnt: bool = False  # the words are also pixels of a picture (a scan's invisible OCR layer)


@dataclass
class Page:
    number: int  # 1-based: PDF page, spine item, or HTML section
    pictures: list[Picture] = field(default_factory=list)
    texts: list[TextBlock] = field(default_factory=list)
    size: tuple[float, float] | None = None  # positioned pages: width, height
    semantics: set[str] = field(default_factory=set)  # epub:type, guide and landmarks: "cover", "copyright-page"...
    spread: str | None = None  # "left" / "right" where the book says so (EPUB page-spread-*)

    @property
    def illustrations(self) -> list[Picture]:
        return [p for p in self.pictures if p.decoration is None]

    def body_text(self) -> str:
        return " ".join(t.text for t in self.texts if t.role in ("body", "caption"))

    def all_text(self) -> str:
        return " ".join(t.text for t in self.texts if t.role not in ("running", "matter"))


@dataclass
class BookMeta:
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    illustrators: list[str] = field(default_factory=list)
    language: str | None = None
    license: str | None = None  # as the book states it (normalised later)
    publisher: str | None = None
    cover_key: str | None = None  # the picture the package names as its cover


@dataclass
class Book:
    format: str  # pdf | epub | html
    layout: str  # paginated | flow
    meta: BookMeta
    pages: list[Page]
    notes: list[str] = field(default_factory=list)  # things left out that a user may want to know


# --------------------------------------------------------------------------- text


def clean_text(text: str) -> str:
    """One line of text: soft hyphens and zero-width marks out, whitespace collapsed."""
    text = re.sub(r"[\u00ad\u200b\u200c\u200d\ufeff]", "", text or "")
    text = re.sub(r"(\w)-\s*\n\s*(\w)", r"\1\2", text)  # words hyphenated at a line end
    return re.sub(r"\s+", " ", text).strip()


def split_names(text: str | None) -> list[str]:
    """"Ama Mensah and Kofi Boateng" -> two names; roles in brackets are dropped."""
    if not text:
        return []
    text = re.sub(r"\(.*?\)|\[.*?\]", "", text)
    parts = re.split(r"\s*(?:;|,|&|\band\b|\bet\b|\by\b|\bund\b)\s*", text)
    return [p.strip(" .") for p in parts if p and p.strip(" .")]


# --------------------------------------------------------------------------- images


def image_size(data: bytes | io.BufferedIOBase, what: str, cfg: EbookConfig) -> tuple[int, int]:
    """Pixel size from the header only; refuses images over ``max_image_pixels`` before decoding."""
    from PIL import Image, UnidentifiedImageError

    stream = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        with warnings.catch_warnings():  # the cap below decides, not PIL's process-wide warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as picture:
                size = picture.size
    except Image.DecompressionBombError as exc:
        raise EbookError(f"{what} is over ebook.max_image_pixels={cfg.max_image_pixels} ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise EbookError(f"{what} is not a readable image ({exc})") from exc
    check_pixels(size, what, cfg)
    return size


def check_pixels(size: tuple[int, int], what: str, cfg: EbookConfig) -> None:
    w, h = size
    if w <= 0 or h <= 0:
        raise EbookError(f"{what} has an empty size {w}x{h}")
    if w * h > cfg.max_image_pixels:
        raise EbookError(f"{what} is {w}x{h} pixels ({w * h / 1e6:.0f} MP), over ebook.max_image_pixels="
                         f"{cfg.max_image_pixels} (a decompression bomb, or a scan far larger than needed)")


def decode_image(data: bytes, what: str, cfg: EbookConfig) -> np.ndarray:
    """Encoded bytes -> RGB array, with the pixel cap checked on the header first.

    PIL's own bomb check is process-wide and only warns below twice its limit; ours is per call.
    """
    from PIL import Image

    image_size(data, what, cfg)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as picture:
                picture.load()
                return to_rgb(picture)
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        raise EbookError(f"{what} cannot be decoded ({exc})") from exc


def to_rgb(picture: Any) -> np.ndarray:
    """A PIL image as an RGB array; transparency is composited over white paper."""
    from PIL import Image

    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        # transparent pixels become white, as on the page they were printed on
        rgba = picture.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(picture.convert("RGB"))


def mark_decorations(book: Book, cfg: EbookConfig) -> dict[str, int]:
    """Mark ornaments, logos, rules and tiny images as decorations; counts by reason.

    Size rules first (per image), then repeats: the same image on ``repeat_as_decoration`` pages
    or more is a publisher logo or an ornament, never an illustration.
    """
    pages_of: dict[str, set[int]] = {}
    for page in book.pages:
        for picture in page.pictures:
            if picture.key:
                pages_of.setdefault(picture.key, set()).add(page.number)
    counts: dict[str, int] = {}
    for page in book.pages:
        for picture in page.pictures:
            if picture.decoration is None:
                picture.decoration = _decoration_reason(picture, page, cfg, len(pages_of.get(picture.key, ())))
            if picture.decoration is not None:
                counts[picture.decoration] = counts.get(picture.decoration, 0) + 1
    return counts


def _decoration_reason(picture: Picture, page: Page, cfg: EbookConfig, repeats: int) -> str | None:
    x0, y0, x1, y1 = picture.crop
    w, h = picture.size[0] * (x1 - x0), picture.size[1] * (y1 - y0)
    if min(w, h) < cfg.min_picture_side:
        return "decoration_small"
    if max(w, h) / max(1.0, min(w, h)) > cfg.max_picture_aspect:
        return "decoration_rule"
    if picture.box is not None and page.size is not None:
        bw, bh = picture.box[2] - picture.box[0], picture.box[3] - picture.box[1]
        if bw * bh < cfg.min_picture_area * page.size[0] * page.size[1]:
            return "decoration_small"
    if repeats >= cfg.repeat_as_decoration:
        return "decoration_repeated"
    if picture.hint and _DECORATION_HINT.search(picture.hint) and min(w, h) < 4 * cfg.min_picture_side:
        return "decoration_named"  # "logo.png", class="ornament": trusted only for smallish images
    return None


# --------------------------------------------------------------------------- opening


def sniff_format(head: bytes, name: str = "") -> str | None:
    """"pdf", "epub", "zip" or "html" from a file's first bytes (its name only breaks ties)."""
    if head.lstrip()[:5] == b"%PDF-" or b"%PDF-" in head[:1024]:
        return "pdf"
    if head[:4] == b"PK\x03\x04":
        if head[30:38] == b"mimetype" and b"application/epub+zip" in head[38:90]:
            return "epub"
        return "epub" if name.lower().endswith(".epub") else "zip"
    text = head[:4096].lower()
    if re.search(rb"<(!doctype html|html|body|p|div|img)\b", text):
        return "html"
    return None


def find_books(folder: Path) -> list[Path]:
    """Book files under a folder, in path order (an HTML book's own image folders included)."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in BOOK_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))
