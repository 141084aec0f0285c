"""PDF picture books in every layout, written with reportlab (BSD; a test-only dependency).

Every book opens with a cover (its own art, the title and the author), a title page with an
ornament and the credits, a copyright/licence page and (most layouts) a dedication; it closes
with "about the author" (with the author's photo) and a back cover (the cover art again and a
blurb). Story pages carry a running header, a page number and the publisher's logo.

Layouts: ``above``, ``below``, ``beside`` (text and picture on one page), ``over`` (full-bleed
picture, text printed on it), ``facing`` (text on the left page, picture on the right),
``facing_left`` (picture left, text right), ``spread`` (one picture over two pages: two halves,
and one image clipped by both pages), ``textonly`` (text-only pages continue the story),
``flat_vector`` (illustrations drawn as vector paths: cropped from the render), ``flat_scan``
(each story page one scanned raster with the words burnt in and an invisible text layer).

Printed books (:func:`write_printed_pdf`): an HTML picture book as a browser prints it (or a layout
program sets it), every glyph placed on its own and drawn in a shuffled order, justified lines,
words broken at line ends with the printer's hyphen, the story as a table of pictures with their
text beside them flowing over the pages. :class:`GlyphPage` places any text that way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from . import (ABOUT, AUTHOR, BLURB, COPYRIGHT, DEDICATION, HEADER, ILLUSTRATOR, TITLE, BookTruth, TruthFrame,
               ornament, picture, story)

W, H = 600.0, 800.0
LAYOUTS = ("above", "below", "beside", "over", "facing", "facing_left", "spread", "textonly", "flat_vector",
           "flat_scan")


def _reader(array: np.ndarray):
    from PIL import Image
    from reportlab.lib.utils import ImageReader

    return ImageReader(Image.fromarray(array))


class _Pdf:
    def __init__(self, path: Path, encrypt: str | None = None):
        from reportlab.lib import pdfencrypt
        from reportlab.pdfgen import canvas

        enc = pdfencrypt.StandardEncryption(encrypt, ownerPassword="owner") if encrypt else None
        self.c = canvas.Canvas(str(path), pagesize=(W, H), invariant=1, lang="en", encrypt=enc)
        self.c.setTitle(TITLE)
        self.c.setAuthor(AUTHOR)
        self.number = 0
        self.logo = _reader(ornament(7, 48))

    # top-left coordinates throughout, like the reader's boxes
    def image(self, array: np.ndarray, x: float, y: float, w: float, h: float, reader=None) -> None:
        self.c.drawImage(reader or _reader(array), x, H - y - h, width=w, height=h)

    def text(self, text: str, x: float, y: float, width: float = 480, size: float = 18, invisible: bool = False) -> float:
        from reportlab.lib.utils import simpleSplit

        lines = simpleSplit(text, "Helvetica", size, width)
        obj = self.c.beginText(x, H - y - size)
        obj.setFont("Helvetica", size, leading=size * 1.25)
        if invisible:
            obj.setTextRenderMode(3)
        for line in lines:
            obj.textLine(line)
        self.c.drawText(obj)
        return y + len(lines) * size * 1.25

    def chrome(self) -> None:
        """Running header, page number and logo, as on every story page."""
        self.text(HEADER, 40, 20, size=11)
        self.text(str(self.number), 290, 770, size=11)
        self.image(None, 530, 740, 36, 36, reader=self.logo)

    def page(self, draw: Callable[[], None], chrome: bool = False) -> int:
        self.number += 1
        draw()
        if chrome:
            self.chrome()
        self.c.showPage()
        return self.number

    def save(self) -> None:
        self.c.save()


def _front(pdf: _Pdf, seed: int, dedication: bool = True) -> tuple[list[str], list[np.ndarray]]:
    cover = picture(seed * 100 + 99, 480, 360)
    pdf.page(lambda: (pdf.image(cover, 60, 200, 480, 360), pdf.text(TITLE, 60, 80, size=36),
                      pdf.text(f"by {AUTHOR}", 60, 600)))
    pdf.page(lambda: (pdf.text(TITLE, 60, 200, size=32), pdf.text(f"Written by {AUTHOR}", 60, 300),
                      pdf.text(f"Illustrated by {ILLUSTRATOR}", 60, 340), pdf.image(ornament(1), 280, 420, 40, 40)))
    pdf.page(lambda: pdf.text(COPYRIGHT, 60, 500, size=12))
    texts = [TITLE, COPYRIGHT, f"Written by {AUTHOR}"]
    if dedication:
        pdf.page(lambda: pdf.text(DEDICATION, 60, 300))
        texts.append(DEDICATION)
    return texts, [cover]


def _back(pdf: _Pdf, seed: int, cover: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
    photo = picture(seed * 100 + 98, 300, 300)
    pdf.page(lambda: (pdf.text(ABOUT, 60, 100), pdf.image(photo, 150, 250, 300, 300)))
    pdf.page(lambda: (pdf.image(cover, 180, 100, 240, 180), pdf.text(BLURB, 60, 400)))
    return [ABOUT, BLURB], [photo]


def write_pdf(path: Path, layout: str, seed: int = 0, pages: int = 4, encrypt: str | None = None) -> BookTruth:
    """One book in ``layout`` with ``pages`` story frames; returns its truth."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}")
    path = Path(path)
    pdf = _Pdf(path, encrypt)
    facing = layout in ("facing", "facing_left")
    matter_texts, matter_pictures = _front(pdf, seed, dedication=not facing and layout != "spread")
    texts = story(seed, max(pages, 5) if layout == "spread" else pages)
    frames: list[TruthFrame] = []
    draw = _LAYOUT_WRITERS[layout]
    draw(pdf, seed, texts, frames)
    more_texts, more_pictures = _back(pdf, seed, matter_pictures[0])
    pdf.save()
    return BookTruth(name=f"pdf-{layout}", path=path, layout=layout, frames=frames,
                     matter_texts=matter_texts + more_texts, matter_pictures=matter_pictures + more_pictures)


# --------------------------------------------------------------------------- layouts


def _single(where: str) -> Callable:
    def write(pdf: _Pdf, seed: int, texts: list[str], frames: list[TruthFrame]) -> None:
        for i, text in enumerate(texts):
            art = picture(seed * 100 + i, 480, 360) if where != "over" else picture(seed * 100 + i, 450, 600)
            beside_left = i % 2 == 0

            def draw() -> None:
                if where == "above":
                    pdf.text(text, 60, 110)
                    pdf.image(art, 60, 260, 480, 360)
                elif where == "below":
                    pdf.image(art, 60, 100, 480, 360)
                    pdf.text(text, 60, 500)
                elif where == "beside":  # alternating sides, as facing columns do
                    pdf.image(art, 30 if beside_left else 270, 250, 300, 225)
                    pdf.text(text, 350 if beside_left else 30, 280, width=220)
                else:  # printed over a full-bleed picture
                    pdf.image(art, 0, 0, W, H)
                    pdf.text(text, 60, 120)
                pdf.image(ornament(2), 500, 680, 30, 30)  # a small flourish near the text

            frames.append(TruthFrame(art, text, pdf.page(draw, chrome=True)))
    return write


def _facing(pdf: _Pdf, seed: int, texts: list[str], frames: list[TruthFrame], picture_first: bool = False) -> None:
    # pages so far: cover 1, title 2, copyright 3 -> spreads (4, 5), (6, 7)...
    for i, text in enumerate(texts):
        art = picture(seed * 100 + i, 450, 600)
        if picture_first:
            number = pdf.page(lambda: pdf.image(art, 0, 0, W, H))
            pdf.page(lambda: pdf.text(text, 60, 300), chrome=True)
        else:
            pdf.page(lambda: pdf.text(text, 60, 300), chrome=True)
            number = pdf.page(lambda: pdf.image(art, 0, 0, W, H))
        frames.append(TruthFrame(art, text, number))


def _spread(pdf: _Pdf, seed: int, texts: list[str], frames: list[TruthFrame]) -> None:
    # pages so far: cover 1, title 2, copyright 3; two plain pages (4, 5), then spreads (6, 7) and (8, 9)
    for i in range(2):
        art = picture(seed * 100 + 10 + i, 480, 360)
        number = pdf.page(lambda: (pdf.image(art, 60, 100, 480, 360), pdf.text(texts[i], 60, 500)), True)
        frames.append(TruthFrame(art, texts[i], number))
    wide = picture(seed * 100 + 1, 960, 360)
    left, right = wide[:, :480], wide[:, 480:]
    number = pdf.page(lambda: (pdf.image(left, 0, 100, W, 450), pdf.text(texts[2], 60, 600)), True)
    pdf.page(lambda: (pdf.image(right, 0, 100, W, 450), pdf.text(texts[3], 60, 600)), True)
    frames.append(TruthFrame(wide, f"{texts[2]} {texts[3]}", number))
    whole = picture(seed * 100 + 2, 960, 360)
    reader = _reader(whole)  # one image drawn across both pages, each page clipping its half
    number = pdf.page(lambda: (pdf.image(whole, 0, 100, 2 * W, 450, reader), pdf.text(texts[4], 60, 600)), True)
    pdf.page(lambda: pdf.image(whole, -W, 100, 2 * W, 450, reader), True)
    frames.append(TruthFrame(whole, texts[4], number))


def _textonly(pdf: _Pdf, seed: int, texts: list[str], frames: list[TruthFrame]) -> None:
    for i in range(0, len(texts), 2):
        art = picture(seed * 100 + i, 480, 360)
        number = pdf.page(lambda: (pdf.image(art, 60, 100, 480, 360), pdf.text(texts[i], 60, 500)), True)
        body = texts[i]
        if i + 1 < len(texts):
            pdf.page(lambda: pdf.text(texts[i + 1], 60, 300), True)  # the story goes on, no picture
            body = f"{texts[i]} {texts[i + 1]}"
        frames.append(TruthFrame(art, body, number))


def _vector_shapes(seed: int) -> tuple[tuple[int, int, int], list[tuple[str, tuple[float, ...], tuple[int, int, int]]]]:
    rng = np.random.default_rng(5000 + seed)
    background = tuple(int(v) for v in rng.integers(60, 200, 3))
    shapes = []
    for _ in range(5):
        cx, cy, rx, ry = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85), rng.uniform(0.05, 0.2), rng.uniform(0.05, 0.2)
        shapes.append(("ellipse" if rng.random() < 0.5 else "rect", (cx - rx, cy - ry, cx + rx, cy + ry),
                       tuple(int(v) for v in rng.integers(0, 255, 3))))
    return background, shapes


def _vector_truth(seed: int, width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw

    background, shapes = _vector_shapes(seed)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    for kind, (x0, y0, x1, y1), colour in shapes:
        box = [x0 * width, y0 * height, x1 * width, y1 * height]
        (draw.ellipse if kind == "ellipse" else draw.rectangle)(box, fill=colour)
    return np.asarray(image)


def _draw_vector(pdf: _Pdf, seed: int, box: tuple[float, float, float, float]) -> None:
    background, shapes = _vector_shapes(seed)
    x, y, w, h = box
    c = pdf.c
    c.setFillColorRGB(*(v / 255 for v in background))
    c.rect(x, H - y - h, w, h, stroke=0, fill=1)
    for kind, (x0, y0, x1, y1), colour in shapes:
        c.setFillColorRGB(*(v / 255 for v in colour))
        left, top, width, height = x + x0 * w, y + y0 * h, (x1 - x0) * w, (y1 - y0) * h
        if kind == "ellipse":
            c.ellipse(left, H - top - height, left + width, H - top, stroke=0, fill=1)
        else:
            c.rect(left, H - top - height, width, height, stroke=0, fill=1)
    c.setFillColorRGB(0, 0, 0)


def _flat_vector(pdf: _Pdf, seed: int, texts: list[str], frames: list[TruthFrame]) -> None:
    for i, text in enumerate(texts):
        box = (60, 100, 480, 360)
        over = i == 1  # one page prints its text inside the artwork: a masked frame

        def draw() -> None:
            _draw_vector(pdf, seed * 100 + i, box)
            pdf.text(text, 80, 120 if over else 500, width=440)

        frames.append(TruthFrame(_vector_truth(seed * 100 + i, 960, 720), text, pdf.page(draw, True)))


def _flat_scan(pdf: _Pdf, seed: int, texts: list[str], frames: list[TruthFrame]) -> None:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=36)
    for i, text in enumerate(texts):
        art = picture(seed * 100 + i, 960, 720)
        scan = Image.new("RGB", (1200, 1600), (250, 248, 240))
        scan.paste(Image.fromarray(art), (120, 500))
        ImageDraw.Draw(scan).text((120, 230), text[:45], fill=(20, 20, 20), font=font)
        ImageDraw.Draw(scan).text((120, 290), text[45:], fill=(20, 20, 20), font=font)
        raster = np.asarray(scan)

        def draw() -> None:
            pdf.image(raster, 0, 0, W, H)
            pdf.text(text, 60, 112, width=500, invisible=True)  # the OCR layer

        frames.append(TruthFrame(art, text, pdf.page(draw)))


_LAYOUT_WRITERS: dict[str, Callable] = {
    "above": _single("above"), "below": _single("below"), "beside": _single("beside"), "over": _single("over"),
    "facing": _facing, "facing_left": lambda *a: _facing(*a, picture_first=True), "spread": _spread,
    "textonly": _textonly, "flat_vector": _flat_vector, "flat_scan": _flat_scan,
}


def write_text_only_pdf(path: Path) -> Path:
    """A "book" without a single illustration."""
    pdf = _Pdf(Path(path))
    for text in story(0, 3):
        pdf.page(lambda: pdf.text(text, 60, 300))
    pdf.save()
    return Path(path)


# --------------------------------------------------------------------------- printed HTML, glyph by glyph
#
# What a browser (or a layout engine) makes of an HTML picture book: every glyph placed on its own
# (a text object each, or a TJ element each), drawn in no particular order, justified lines with
# wide spaces that are gaps, not space glyphs, words broken at line ends with the printer's own
# hyphen, compounds broken after their hyphen, and the story as a table (picture left, text right,
# vertically centred) whose rows flow over the pages.

PRINTERS = {
    # Chromium: one text object per glyph, its own line-end hyphen is U+2010, space glyphs on some lines
    "browser": {"producer": "Skia/PDF m120", "creator": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                "(KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36", "hyphen": "\u2010"},
    # a layout program: one TJ array per line, a kerned element per glyph, its hyphen a plain "-"
    "typeset": {"producer": "Adobe PDF Library 17.0", "creator": "Adobe InDesign 18.0 (Macintosh)", "hyphen": "-"},
}
# each frame: paragraphs, each its printed lines; a line ending in U+00AD is a word the printer broke
# there (it draws its hyphen), one ending in "-" a compound broken after its hyphen
PRINTED_STORY = [
    [["Grandmother Efua", "kept a garden of", "sweet pota\u00ad", "toes behind her", "little house."]],
    [["Every morning Kofi", "carried water to the", "mango-", "tree and to the", "pepper plants."]],
    [["Then Auntie Ama-", "Serwaa came to visit,", "with oranges piled", "in a basket."]],
    [["The goat ate one", "orange\u2014then an\u00ad", "other\u2014", "and ran off into", "the bush."],
     ["Kofi laughed so", "hard that he fell", "over."]],
    [["At night they ate", "roasted pota\u00ad", "toes under the", "mango-tree."]],
]
PRINTED_END = "THE END"
_LETTER = (612.0, 792.0)


def printed_text(paragraphs: list[list[str]]) -> str:
    """The words a reader must give back: broken words whole, compounds kept, paragraphs joined."""
    out = []
    for lines in paragraphs:
        text = ""
        for line in lines:
            if text.endswith("\u00ad"):
                text = text[:-1] + line
            elif text.endswith(("-", "\u2014")):
                text += line
            else:
                text = f"{text} {line}".strip()
        out.append(text)
    return " ".join(out)


def _printed_font(printer: str) -> str:
    """Vera (shipped with reportlab) with a U+2010 hyphen for the browser; Helvetica for TJ arrays."""
    if printer != "browser":
        return "Helvetica"
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "VeraPrinted" not in pdfmetrics.getRegisteredFontNames():
        font = TTFont("VeraPrinted", "Vera.ttf")
        font.face.charToGlyph[0x2010] = font.face.charToGlyph[0x2D]  # draw U+2010 with the hyphen glyph
        font.face.charWidths[0x2010] = font.face.charWidths[0x2D]
        pdfmetrics.registerFont(font)
    return "VeraPrinted"


class GlyphPage:
    """One page whose text is placed glyph by glyph, in a shuffled order, when it is finished."""

    def __init__(self, c, printer: str, rng: np.random.Generator, height: float = _LETTER[1], font: str | None = None):
        self.c, self.printer, self.rng, self.height = c, printer, rng, height
        self.font = font or _printed_font(printer)
        self.glyphs: list[tuple[str, float, float, float]] = []  # text, x, baseline (top-left), size
        self.lines: list[list[tuple[str, float, float, float]]] = []

    def width(self, text: str, size: float) -> float:
        from reportlab.pdfbase.pdfmetrics import stringWidth

        return stringWidth(text, self.font, size)

    def line(self, text: str, x: float, baseline: float, size: float, width: float | None = None,
             spaces: bool = False, tracking: float = 0.0) -> None:
        """One line at ``x``; justified to ``width`` when given: its spaces grow, as in a browser.
        ``spaces``: draw space glyphs (some printers do) instead of leaving gaps; ``tracking``:
        letter spacing in font sizes."""
        words = text.split(" ")
        natural = sum(self.width(w, size) for w in words) + tracking * size * (len(text) - 1)
        space = self.width(" ", size)
        if width is not None and len(words) > 1:
            space = (width - natural) / (len(words) - 1)
        placed = []
        pen = x
        for n, word in enumerate(words):
            if n:
                if spaces:
                    placed.append((" ", pen, baseline, size))
                pen += space + tracking * size
            for k, ch in enumerate(word):
                if k:  # kerning: a glyph a little closer or further than its advance
                    pen += float(self.rng.uniform(-0.03, 0.03)) * size + tracking * size
                placed.append((ch, pen, baseline, size))
                pen += self.width(ch, size)
        self.lines.append(placed)

    def finish(self) -> None:
        """Draw the glyphs: each its own text object (browser), or each line one TJ array of
        single-glyph elements (typeset); lines and glyphs in a shuffled order."""
        c = self.c
        if self.printer == "browser":
            glyphs = [g for line in self.lines for g in line]
            for i in self.rng.permutation(len(glyphs)):
                ch, x, baseline, size = glyphs[i]
                c.setFont(self.font, size)
                c.drawString(x, self.height - baseline, ch)
            return
        c.setFont(self.font, 12)
        name = c._doc.getInternalFontName(self.font)
        for i in self.rng.permutation(len(self.lines)):
            line = self.lines[i]
            if not line:
                continue
            ch, x, baseline, size = line[0]
            parts, pen = [], x
            for ch, gx, _, _ in line:
                shift = (gx - pen) * 1000 / size  # TJ numbers move the pen left: minus is a gap
                if abs(shift) > 0.01:
                    parts.append(f"{-shift:.2f}")
                code = ch.encode("cp1252")[0]  # WinAnsi, as reportlab's standard fonts; octal beyond ASCII
                parts.append(f"({chr(code)})" if 0x20 <= code < 0x7F and chr(code) not in "()\\" else f"(\\{code:03o})")
                pen = gx + self.width(ch, size)
            c._code.append(f"BT {name} {size:.2f} Tf 1 0 0 1 {x:.3f} {self.height - baseline:.3f} Tm "
                           f"[{' '.join(parts)}] TJ ET")


def write_printed_pdf(path: Path, printer: str = "browser", seed: int = 0) -> BookTruth:
    """A picture book printed from HTML: a title page, a publisher page, the story as a table of
    pictures with their text beside them (two rows a page, as the rows fall), and THE END."""
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfbase.pdfmetrics import stringWidth
    from reportlab.pdfgen import canvas

    if printer not in PRINTERS:
        raise ValueError(f"unknown printer {printer!r}")
    path = Path(path)
    spec = PRINTERS[printer]
    rng = np.random.default_rng(7000 + seed)
    c = canvas.Canvas(str(path), pagesize=_LETTER, invariant=1)
    c.setTitle(TITLE)
    c.setAuthor("")
    c.setCreator(spec["creator"])
    c.setProducer(spec["producer"])
    width, height = _LETTER
    page_number = 0

    def new_page() -> GlyphPage:
        nonlocal page_number
        page_number += 1
        return GlyphPage(c, printer, rng)

    def end_page(page: GlyphPage) -> None:
        page.finish()
        c.showPage()

    hyphen = spec["hyphen"]

    def printed(line: str) -> str:
        return line[:-1] + hyphen if line.endswith("\u00ad") else line

    page = new_page()  # title page, centred, with space glyphs (as a browser prints short lines)
    for text, size, baseline in ((TITLE, 32, 300), (f"by {AUTHOR}", 18, 360), (f"Illustrated by {ILLUSTRATOR}", 18, 390)):
        page.line(text, (width - page.width(text, size)) / 2, baseline, size, spaces=True)
    end_page(page)
    page = new_page()  # publisher page
    page.line("Storyloom Press", 250, 200, 14, spaces=True)
    for n, text in enumerate(simpleSplit(COPYRIGHT, page.font, 10, 400)):
        page.line(text, 106, 240 + 14 * n, 10)
    end_page(page)

    column_x, column_w = 380.0, 172.0  # the text cell: every line fits at this size
    widest = max(stringWidth(printed(line), page.font, 1.0) for frame in PRINTED_STORY for lines in frame
                 for line in lines)
    size = min(15.0, column_w / widest)
    leading = size * 1.25
    frames: list[TruthFrame] = []
    page, top = new_page(), 60.0
    for i, paragraphs in enumerate(PRINTED_STORY):
        art = picture(seed * 100 + 50 + i, 400, 300)
        lines = sum(len(p) for p in paragraphs)
        text_h = lines * leading + (len(paragraphs) - 1) * size  # a paragraph margin between paragraphs
        row_h = max(225.0, text_h)
        if top + row_h > height - 60:
            end_page(page)
            page, top = new_page(), 60.0
        c.drawImage(_reader(art), 60, height - top - (row_h + 225) / 2, width=300, height=225)
        baseline = top + (row_h - text_h) / 2 + size  # the cell's text, vertically centred
        for lines_of in paragraphs:
            for n, line in enumerate(lines_of):
                last = n == len(lines_of) - 1
                page.line(printed(line), column_x, baseline, size, width=None if last else column_w)
                baseline += leading
            baseline += size
        frames.append(TruthFrame(art, printed_text(paragraphs), page_number))
        top += row_h + 20
    end_page(page)
    page = new_page()
    page.line(PRINTED_END, (width - page.width(PRINTED_END, 24)) / 2, 200, 24, tracking=0.25)  # letter-spaced
    end_page(page)
    c.save()
    return BookTruth(name=f"printed-{printer}", path=path, layout="printed", frames=frames, license="CC-BY",
                     language=None, matter_texts=[COPYRIGHT, f"Illustrated by {ILLUSTRATOR}", PRINTED_END])
