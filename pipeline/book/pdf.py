"""PDF picture books -> :class:`pipeline.book.model.Book`, with pypdfium2 (Apache-2.0/BSD; PyMuPDF is AGPL).

One pdfium pass per page gives everything: embedded images with their place on the page and
their pixel size (the pixel cap is checked before any decoding), every glyph with its box, font
size and whether it is invisible (the OCR layer of a scan). pdfium's own text API is used rather
than pdfminer: the same parse, C speed. The text is rebuilt from the glyphs' positions alone
(words, lines, columns, line-end hyphens: :mod:`pipeline.book.pdf_text`), never from the order the file draws
them in: a browser printing HTML, or a layout program, places glyphs one by one in any order.
Blocks are grouped here; their reading order is pairing's job.

Flattened pages, where the illustration is not an embedded image of its own, are cropped from the
rendered page: vector artwork (no illustration-sized image, but paths covering the page), and
scans (one image covering the page with an invisible text layer, so the words are pixels of the
image). The crop is the ink on a low-resolution render once the text boxes are blanked out;
text that sits inside the crop becomes the frame's mask (burnt-in text, :mod:`pipeline.output.contract`).

Refused: encrypted files (a user password, or an owner password restricting use), truncated or
corrupt files (no ``%%EOF`` at the end, or pdfium cannot load them), too many pages.
pdfium is not thread-safe: the flow runs each book in its decode process.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import re
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pipeline.book.model import Book, BookMeta, Box, EbookError, Page, Picture, check_pixels, clean_text, split_names, to_rgb
from pipeline.book.pdf_text import Line, mark_running_lines, page_blocks, place_text, printed_by_browser
from pipeline.config import EbookConfig

log = logging.getLogger(__name__)

ANALYSIS_SIDE = 400  # px, long side of the render that finds a flattened illustration
SCAN_COVER = 0.85  # an image covering this much of the page is a scan (or a full-bleed picture)
_INK_DELTA = 40  # max channel difference from the page background that counts as ink


@contextmanager
def read_pdf(source: Path | bytes, cfg: EbookConfig, name: str | None = None) -> Iterator[Book]:
    """Open a PDF (a path or its bytes) and describe it; pixels load lazily while it stays open."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    name = name or (Path(source).name if not isinstance(source, bytes) else "book.pdf")
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if b"%%EOF" not in data[-2048:]:
        raise EbookError(f"{name} is truncated or corrupt: it does not end with %%EOF")
    try:
        doc = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise EbookError(f"{name} is password-protected (encrypted): storyloom does not open locked PDFs") from exc
        raise EbookError(f"{name} is not a readable PDF (truncated or corrupt: {exc})") from exc
    try:
        if raw.FPDF_GetSecurityHandlerRevision(doc.raw) != -1:
            raise EbookError(f"{name} is encrypted with an owner password that restricts its use: left out")
        count = len(doc)
        if count == 0:
            raise EbookError(f"{name} has no pages (truncated or corrupt)")
        if count > cfg.max_pages:
            raise EbookError(f"{name} has {count} pages, over ebook.max_pages={cfg.max_pages}")
        read = [_read_page(doc, i, cfg) for i in range(count)]
        pages = [page for page, _, _ in read]
        place_text(read, printed_by_browser(doc))
        mark_running_lines(pages, cfg)
        for page, path_area, _ in read:
            _find_flattened(doc, page, path_area, cfg)
        yield Book(format="pdf", layout="paginated", meta=_metadata(doc), pages=pages)
    finally:
        doc.close()


def _metadata(doc: Any) -> BookMeta:
    import pypdfium2.raw as raw

    info = {k: clean_text(v) for k, v in doc.get_metadata_dict(skip_empty=True).items()}
    buffer = (ctypes.c_ushort * 64)()
    size = raw.FPDFCatalog_GetLanguage(doc.raw, buffer, ctypes.sizeof(buffer))
    language = bytes(buffer)[: max(0, size - 2)].decode("utf-16-le", "ignore").strip() or None if size else None
    stated = " ".join(info.get(k, "") for k in ("Subject", "Keywords"))
    licence = stated if re.search(r"creative ?commons|\bcc[- ]?(by|0)\b|public domain", stated, re.I) else None
    return BookMeta(title=info.get("Title") or None, authors=split_names(info.get("Author")), language=language,
                    license=licence)


# --------------------------------------------------------------------------- one page


def _read_page(doc: Any, index: int, cfg: EbookConfig) -> tuple[Page, float, list[list[Line]]]:
    """The page (its pictures; text comes later, from the blocks), the fraction of it that vector
    paths cover, and its text blocks as lines (joined once the whole book's words are known)."""
    import pypdfium2.raw as raw

    page = doc[index]
    left, bottom, right, top = page.get_cropbox()
    width, height = right - left, top - bottom

    def to_box(bounds: tuple[float, float, float, float]) -> Box:  # pdf space -> top-left origin
        x0, y0, x1, y1 = bounds
        return (x0 - left, top - y1, x1 - left, top - y0)

    textpage = page.get_textpage()
    try:
        blocks = page_blocks(textpage, left, top)
    finally:
        textpage.close()

    pictures = []
    paths = 0.0
    for n, obj in enumerate(page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,), max_depth=3)):
        box = to_box(obj.get_bounds())
        visible = _intersect(box, (0.0, 0.0, width, height))
        if visible is None:
            continue
        px = tuple(int(v) for v in obj.get_px_size())
        what = f"page {index + 1} image {n + 1}"
        check_pixels(px, what, cfg)
        bw, bh = max(box[2] - box[0], 1e-6), max(box[3] - box[1], 1e-6)
        crop = ((visible[0] - box[0]) / bw, (visible[1] - box[1]) / bh,
                (visible[2] - box[0]) / bw, (visible[3] - box[1]) / bh)
        key = hashlib.sha1(bytes(obj.get_data(decode_simple=False))).hexdigest()[:16]
        pictures.append(Picture(ref=what, size=px, loader=partial(_load_image, doc, index, n), key=key,
                                box=box, crop=crop))
    for obj in page.get_objects(filter=(raw.FPDF_PAGEOBJ_PATH, raw.FPDF_PAGEOBJ_SHADING), max_depth=3):
        box = _intersect(to_box(obj.get_bounds()), (0.0, 0.0, width, height))
        if box is not None:
            paths += (box[2] - box[0]) * (box[3] - box[1])
    page.close()
    pictures = _join_strips(pictures)
    return Page(number=index + 1, pictures=pictures, size=(width, height)), paths / (width * height), blocks


def _load_image(doc: Any, index: int, ordinal: int) -> np.ndarray:
    """The image's own pixels, clean of any text printed over it.

    Rendered on its own at its own resolution rather than decoded raw: the render applies its
    soft mask (transparent parts come out as white paper, not black) and any rotation or flip.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    page = doc[index]
    try:
        obj = list(page.get_objects(filter=(raw.FPDF_PAGEOBJ_IMAGE,), max_depth=3))[ordinal]
        return to_rgb(obj.get_bitmap(render=True).to_pil())
    except pdfium.PdfiumError as exc:
        raise EbookError(f"page {index + 1} image {ordinal + 1} cannot be decoded ({exc})") from exc
    finally:
        page.close()


def _render(doc: Any, index: int, long_side: int, box: Box | None = None) -> np.ndarray:
    """The page rendered with its long side ``long_side`` px, cropped to ``box`` (page units)."""
    page = doc[index]
    try:
        width, height = page.get_size()
        scale = long_side / max(width, height)
        crop = (0, 0, 0, 0) if box is None else (box[0], height - box[3], width - box[2], box[1])
        bitmap = page.render(scale=scale, crop=crop, rev_byteorder=True, fill_color=(255, 255, 255, 255))
        return np.array(bitmap.to_numpy()[:, :, :3])
    finally:
        page.close()


def _join_strips(pictures: list[Picture]) -> list[Picture]:
    """Images that tile one picture (strips stacked edge to edge, as some PDF writers slice them)
    become one picture: their pixels joined, their boxes united."""
    tol = 1.5  # points
    out: list[Picture] = []
    for picture in sorted(pictures, key=lambda p: (p.box[0], p.box[1])):
        last = out[-1] if out else None
        if (last is not None and abs(last.box[0] - picture.box[0]) < tol and abs(last.box[2] - picture.box[2]) < tol
                and abs(last.box[3] - picture.box[1]) < tol and last.crop == picture.crop == (0.0, 0.0, 1.0, 1.0)):
            out[-1] = _stacked(last, picture)
        else:
            out.append(picture)
    return out


def _stacked(top: Picture, bottom: Picture) -> Picture:
    def load() -> np.ndarray:
        import cv2

        a, b = top.load(), bottom.load()
        if b.shape[1] != a.shape[1]:
            b = cv2.resize(b, (a.shape[1], max(1, round(b.shape[0] * a.shape[1] / b.shape[1]))),
                           interpolation=cv2.INTER_AREA)
        return np.concatenate([a, b], axis=0)

    height = top.size[1] + round(bottom.size[1] * top.size[0] / max(1, bottom.size[0]))
    return Picture(ref=f"{top.ref} + {bottom.ref}", size=(top.size[0], height), loader=load,
                   key=f"{top.key}+{bottom.key}", box=(top.box[0], top.box[1], top.box[2], bottom.box[3]))


# --------------------------------------------------------------------------- flattened pages


def _find_flattened(doc: Any, page: Page, path_area: float, cfg: EbookConfig) -> None:
    """Replace a scan's page image, or add a picture for vector artwork, cropped from the render."""
    area = page.size[0] * page.size[1]
    big = [p for p in page.pictures if _area(p.box) >= cfg.min_picture_area * area]
    scan = next((p for p in big if _area(p.box) >= SCAN_COVER * area and
                 any(t.burnt and _inside_any(t.box, [p.box]) for t in page.texts)), None)
    if scan is None and (big or path_area < cfg.min_picture_area):
        return
    text_boxes = [t.box for t in page.texts if t.role != "running"]
    region = _ink_region(_render(doc, page.number - 1, ANALYSIS_SIDE), page.size, text_boxes,
                         [p.box for p in page.pictures if p is not scan], cfg)
    if scan is not None:
        page.pictures.remove(scan)
    if region is None:
        return
    scale = cfg.render_long_side / max(page.size)
    size = (max(1, round((region[2] - region[0]) * scale)), max(1, round((region[3] - region[1]) * scale)))
    rw, rh = region[2] - region[0], region[3] - region[1]
    mask = [((max(b[0], region[0]) - region[0]) / rw, (max(b[1], region[1]) - region[1]) / rh,
             (min(b[2], region[2]) - region[0]) / rw, (min(b[3], region[3]) - region[1]) / rh)
            for b in text_boxes if _intersect(b, region) is not None]
    page.pictures.append(Picture(
        ref=f"page {page.number} render", size=size, key=f"render-{page.number}", box=region, mask=mask,
        loader=partial(_render, doc, page.number - 1, cfg.render_long_side, region), flags=["flattened"],
    ))


def _ink_region(render: np.ndarray, page_size: tuple[float, float], text_boxes: list[Box], other: list[Box],
                cfg: EbookConfig) -> Box | None:
    """Bounding box (page units) of the large inked areas once text and small images are blanked."""
    import cv2

    h, w = render.shape[:2]
    sx, sy = w / page_size[0], h / page_size[1]
    ring = np.concatenate([render[:3].reshape(-1, 3), render[-3:].reshape(-1, 3),
                           render[:, :3].reshape(-1, 3), render[:, -3:].reshape(-1, 3)])
    background = np.median(ring, axis=0)
    # in whole numbers (a float array is ten times slower): twice the pixel against twice the median
    doubled = render.astype(np.int16) * 2 - (background * 2).astype(np.int16)
    np.abs(doubled, out=doubled)
    ink = ((doubled[:, :, 0] > 2 * _INK_DELTA) | (doubled[:, :, 1] > 2 * _INK_DELTA)
           | (doubled[:, :, 2] > 2 * _INK_DELTA)).astype(np.uint8)
    for box in text_boxes + other:
        pad = 0.3 * (box[3] - box[1]) if box in text_boxes else 0.0
        ink[max(0, int((box[1] - pad) * sy)):int((box[3] + pad) * sy) + 1,
            max(0, int((box[0] - pad) * sx)):int((box[2] + pad) * sx) + 1] = 0
    closed = cv2.morphologyEx(ink, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    count, _, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    keep = [s for s in stats[1:count] if s[2] * s[3] >= 0.5 * cfg.min_picture_area * w * h]
    if not keep:
        return None
    x0 = min(s[0] for s in keep) / sx
    y0 = min(s[1] for s in keep) / sy
    x1 = max(s[0] + s[2] for s in keep) / sx
    y1 = max(s[1] + s[3] for s in keep) / sy
    return (x0, y0, min(x1, page_size[0]), min(y1, page_size[1]))


# --------------------------------------------------------------------------- boxes


def _area(box: Box | None) -> float:
    return 0.0 if box is None else max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _intersect(a: Box, b: Box) -> Box | None:
    box = (max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    return box if box[2] > box[0] and box[3] > box[1] else None


def _inside_any(box: Box, others: list[Box]) -> bool:
    """Whether the centre of ``box`` lies in one of ``others``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return any(o[0] <= cx <= o[2] and o[1] <= cy <= o[3] for o in others)
