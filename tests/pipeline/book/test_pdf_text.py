"""PDFs printed glyph by glyph (a browser printing an HTML picture book, a layout program): the
reader rebuilds words, lines, columns and hyphenation from the glyphs' positions alone."""

from __future__ import annotations

import html
import shutil
import subprocess

import numpy as np
import pytest

from pipeline.book.pdf import read_pdf
from pipeline.config import EbookConfig
from tests.bookgen import AUTHOR, COPYRIGHT, ILLUSTRATOR, TITLE, assert_matches, parse_book, picture, picture_distance
from tests.bookgen.pdf import PRINTED_END, PRINTED_STORY, PRINTERS, GlyphPage, printed_text, write_printed_pdf

PRINTER_NAMES = sorted(PRINTERS)


def body_blocks(path, cfg=None) -> dict[int, list[str]]:
    """Page number -> its body text blocks, top to bottom."""
    with read_pdf(path, cfg or EbookConfig()) as book:
        return {page.number: [t.text for t in sorted(page.texts, key=lambda t: (t.box[1], t.box[0]))
                              if t.role == "body"] for page in book.pages}


def glyph_book(path, printer: str, draw_pages, seed: int = 0):
    """A book whose pages ``draw_pages`` fills: each a function of (GlyphPage, canvas)."""
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=(612, 792), invariant=1)
    c.setProducer(PRINTERS[printer]["producer"])
    c.setCreator(PRINTERS[printer]["creator"])
    rng = np.random.default_rng(seed)
    for draw in draw_pages:
        page = GlyphPage(c, printer, rng)
        draw(page, c)
        page.finish()
        c.showPage()
    c.save()
    return path


@pytest.fixture(scope="module")
def printed(tmp_path_factory):
    root = tmp_path_factory.mktemp("printed")
    return {printer: write_printed_pdf(root / f"{printer}.pdf", printer, seed=3) for printer in PRINTER_NAMES}


@pytest.mark.parametrize("printer", PRINTER_NAMES)
def test_printed_book_pairs_exactly(printed, printer, tmp_path):
    """Title and publisher pages left out, each picture with its own words, rows flowing over pages."""
    truth = printed[printer]
    result, images = parse_book(truth.path, tmp_path)
    assert_matches(truth, result, images)
    assert [f["page"] for f in result["frames"]] == [3, 3, 4, 4, 5]  # two table rows a page
    dropped = result["dropped"]
    assert (dropped["matter_title_page"], dropped["matter_copyright"], dropped["matter_end_marker"]) == (1, 1, 1)


@pytest.mark.parametrize("printer", PRINTER_NAMES)
def test_printed_pages_read_as_words_lines_and_paragraphs(printed, printer):
    """Every block's exact words: glyphs drawn in any order, justified gaps, kerning, broken words
    joined ("pota-\\ntoes"), compounds kept ("mango-\\ntree", "Ama-\\nSerwaa"), lines broken at a dash."""
    blocks = body_blocks(printed[printer].path)
    paragraphs = [printed_text([lines]) for frame in PRINTED_STORY for lines in frame]
    assert blocks[1] == [TITLE, f"by {AUTHOR} Illustrated by {ILLUSTRATOR}"]  # space glyphs on these lines
    assert blocks[2] == ["Storyloom Press", COPYRIGHT]
    assert blocks[3] == paragraphs[0:2]
    assert blocks[4] == paragraphs[2:5]  # the fourth picture's two paragraphs stay two blocks
    assert blocks[5] == paragraphs[5:6]
    assert blocks[6] == [PRINTED_END]  # letter-spaced: "T H E  E N D" is two words
    assert paragraphs[0] == "Grandmother Efua kept a garden of sweet potatoes behind her little house."
    assert paragraphs[3] == "The goat ate one orange\u2014then another\u2014and ran off into the bush."


@pytest.mark.parametrize("printer", PRINTER_NAMES)
def test_line_end_hyphens_follow_the_book_then_the_printer(printer, tmp_path):
    """A compound the book writes on one line elsewhere keeps its hyphen at a line end; a capital
    after the hyphen keeps it; a browser's own break (U+2010) is a broken word, its "-" the
    author's; a layout program's "-" breaks words unless the book says otherwise."""
    hyphen = PRINTERS[printer]["hyphen"]

    def first(page, c):
        page.line("Efua bought a sun-hat at the", 60, 100, 14, width=300)
        page.line("market.", 60, 118, 14)

    def second(page, c):
        for n, line in enumerate(["She wore the sun-", f"hat and ate a pump{hyphen}", "kin pie with Nana-",
                                  f"Yaa and her tall grand{hyphen}", "son."]):
            page.line(line, 60, 100 + 18 * n, 14, width=None if n == 4 else 300)

    def third(page, c):
        page.line("The rain-", 60, 100, 14, width=150)  # no word of the book says which: the printer does
        page.line("coat was wet.", 60, 118, 14)

    path = glyph_book(tmp_path / "hyphens.pdf", printer, [first, second, third])
    blocks = body_blocks(path)
    assert blocks[1] == ["Efua bought a sun-hat at the market."]
    assert blocks[2] == ["She wore the sun-hat and ate a pumpkin pie with Nana-Yaa and her tall grandson."]
    assert blocks[3] == ["The rain-coat was wet." if printer == "browser" else "The raincoat was wet."]


JUSTIFIED_LEFT = ["The river was wide and", "brown after the long", "rains, and many frogs", "sang          all",
                  "night."]
JUSTIFIED_RIGHT = ["On the far bank an old", "crocodile lay very still", "in the warm mud and", "waited for his dinner",
                   "to come by."]


@pytest.mark.parametrize("printer", PRINTER_NAMES)
def test_columns_are_cut_at_the_gutter_not_at_wide_spaces(printer, tmp_path):
    """Two justified columns on the same baselines under a heading: each column its own block, in
    its own order; a two-word justified line ("sang   all") is not taken for two columns; two
    speech bubbles side by side stay apart; a sideways label reads as drawn."""
    size, left_x, right_x, column = 12, 60, 290, 210  # a gutter of 20 pt, under two font sizes

    def columns(page, c):
        page.line("THE RIVER", 250, 80, 16)
        for n, (left, right) in enumerate(zip(JUSTIFIED_LEFT, JUSTIFIED_RIGHT)):
            last = n == len(JUSTIFIED_LEFT) - 1
            page.line(" ".join(left.split()), left_x, 110 + 15 * n, size, width=None if last else column)
            page.line(right, right_x, 110 + 15 * n, size, width=None if last else column)
        for n, (one, two) in enumerate([("Where is", "It is on"), ("my hat?", "your head!")]):  # bubbles
            page.line(one, 110 - page.width(one, 14) / 2, 400 + 18 * n, 14)
            page.line(two, 470 - page.width(two, 14) / 2, 400 + 18 * n, 14)
        c.saveState()
        c.translate(30, 300)
        c.rotate(90)
        c.setFont("Helvetica", 10)
        c.drawString(0, 0, "Storyloom Books")
        c.restoreState()

    path = glyph_book(tmp_path / "columns.pdf", printer, [columns], seed=5)
    with read_pdf(path, EbookConfig()) as book:
        texts = sorted(book.pages[0].texts, key=lambda t: (t.box[1], t.box[0]))
        found = [t.text for t in texts]
    left = " ".join(" ".join(line.split()) for line in JUSTIFIED_LEFT)
    right = " ".join(JUSTIFIED_RIGHT)
    assert sorted(found) == sorted(["THE RIVER", left, right, "Storyloom Books", "Where is my hat?",
                                    "It is on your head!"])  # (which block comes first is pairing's business)


def test_the_same_glyph_drawn_twice_is_read_once(tmp_path):
    """A fake bold (each glyph drawn twice, a hair apart) and a drop shadow are one word."""
    def bold(page, c):
        page.line("A very bold title", 60, 100, 20)
        page.lines.append([(ch, x + 0.3, baseline, size) for ch, x, baseline, size in page.lines[-1]])
        page.line("and a plain line", 60, 130, 20)

    path = glyph_book(tmp_path / "bold.pdf", "browser", [bold])
    assert body_blocks(path)[1] == ["A very bold title and a plain line"]


# --------------------------------------------------------------------------- a real browser

CHROMIUM_STORY = [
    "Grandmother Efua kept a garden of sweet po\u00adta\u00adtoes and yams behind her little house by the river.",
    "Every morning Kofi carried water to the mango-tree, the pepper plants and the old lemon-bush.",
    "Then Auntie Ama-Serwaa came to visit, with oranges piled high in a basket on her head.",
    "The goat ate one orange\u2014then an\u00adoth\u00ader\u2014and ran off into the bush, bleating hap\u00adpi\u00adly.",
]


def chromium_book(root) -> None:
    """A small HTML picture book: title and publisher pages, the story as a table (picture left,
    justified text right, narrow enough to break words at their soft hyphens), THE END."""
    from PIL import Image

    rows = []
    for i, text in enumerate(CHROMIUM_STORY):
        Image.fromarray(picture(80 + i, 400, 300)).save(root / f"p{i}.png")
        rows.append(f'<tr><td><img src="p{i}.png" width="320" height="240" alt=""></td>'
                    f'<td class="t">{html.escape(text)}</td></tr>')
    (root / "book.html").write_text(f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>{TITLE}</title><style>
body {{ font-family: monospace; font-size: 16px; }} td {{ vertical-align: middle; padding: 8px; }}
td.t {{ width: 14ch; text-align: justify; }} .front {{ text-align: center; break-after: page; }}
</style></head><body>
<div class="front"><h1>{TITLE}</h1><p>by {AUTHOR}</p><p>Illustrated by {ILLUSTRATOR}</p></div>
<div class="front"><p>{html.escape(COPYRIGHT)}</p></div>
<table>{''.join(rows)}</table>
<h2 style="break-before: page; text-align: center">{PRINTED_END}</h2>
</body></html>""", encoding="utf-8")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not on PATH: no real browser to print with")
def test_a_book_printed_by_chromium_reads_right(tmp_path):
    import pypdfium2 as pdfium

    chromium_book(tmp_path)
    pdf = tmp_path / "book.pdf"
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--print-to-pdf={pdf}", (tmp_path / "book.html").as_uri()]
    done = subprocess.run(command, capture_output=True, timeout=180, check=False)
    assert done.returncode == 0 and pdf.is_file(), done.stderr.decode(errors="replace")[-2000:]
    doc = pdfium.PdfDocument(str(pdf))
    try:  # the print really breaks words with its own hyphen, and a compound after its "-"
        printed = "".join(doc[i].get_textpage().get_text_range() for i in range(len(doc)))
    finally:
        doc.close()
    assert "\u2010" in printed and "\ufffe" in printed, printed

    result, images = parse_book(pdf, tmp_path / "work")
    frames = result["frames"]
    assert [f["text"] for f in frames] == [t.replace("\u00ad", "") for t in CHROMIUM_STORY]
    for i, image in enumerate(images):
        distances = [picture_distance(image, picture(80 + k, 400, 300)) for k in range(len(CHROMIUM_STORY))]
        assert int(np.argmin(distances)) == i and distances[i] < 6, (i, distances)
    assert [f["page"] for f in frames] == sorted(f["page"] for f in frames) and frames[0]["page"] >= 3
    texts = " ".join(f["text"] for f in frames)
    assert TITLE not in texts and "Creative Commons" not in texts and PRINTED_END not in texts


HEBREW_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


@pytest.mark.skipif(not __import__("os").path.exists(HEBREW_FONT), reason="no DejaVu Sans here: no Hebrew glyphs to draw")
def test_right_to_left_lines_read_from_their_right_end(tmp_path):
    """Glyphs sit on the page in visual order; a Hebrew line reads from the right, its numbers left to right."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "DejaVuHebrew" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("DejaVuHebrew", HEBREW_FONT))
    logical = ["\u05e9\u05dc\u05d5\u05dd \u05dc\u05db\u05dd.", "\u05d1\u05e9\u05e0\u05ea 2024"]  # "hello to you." "in 2024"
    visual = [logical[0][::-1], "2024 " + "\u05d1\u05e9\u05e0\u05ea"[::-1]]

    def hebrew(page, c):
        page.font = "DejaVuHebrew"
        for n, line in enumerate(visual):
            page.line(line, 400 - page.width(line, 16), 100 + 20 * n, 16)  # right-aligned

    path = glyph_book(tmp_path / "hebrew.pdf", "browser", [hebrew])
    assert body_blocks(path)[1] == [" ".join(logical)]


def test_a_tilted_scans_invisible_text_reads_in_order_and_is_burnt_in(tmp_path):
    """An OCR layer written line by line along a tilted baseline (as OCR engines do for a scan
    that is not quite straight): read in the order it is written, and marked as the scan's pixels."""
    from reportlab.pdfgen import canvas

    lines = ["Grandmother Efua kept a garden", "of sweet potatoes behind her", "little house by the river."]
    path = tmp_path / "scan.pdf"
    c = canvas.Canvas(str(path), pagesize=(612, 792), invariant=1)
    page = np.full((1100, 850, 3), 245, np.uint8)
    page[500:900, 100:750] = picture(9, 650, 400)
    from tests.bookgen.pdf import _reader

    c.drawImage(_reader(page), 0, 0, width=612, height=792)
    for n, line in enumerate(lines):
        c.saveState()
        c.translate(72, 700 - 22 * n)
        c.rotate(-1.5)  # the scan leans a little
        text = c.beginText(0, 0)
        text.setFont("Helvetica", 16)
        text.setTextRenderMode(3)  # invisible: the words are the scan's pixels
        text.textOut(line)
        c.drawText(text)
        c.restoreState()
    c.showPage()
    c.save()
    with read_pdf(path, EbookConfig()) as book:
        texts = [(t.text, t.burnt) for t in book.pages[0].texts]
    assert texts == [(" ".join(lines), True)]
