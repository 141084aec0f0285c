"""PDF text rebuilt from glyph positions: words, lines, columns, blocks and line-end hyphens.

pdfium gives every glyph with its box, in the order the content stream draws them. A browser or a
layout engine may draw them in any order, one text object (or ``TJ`` element) each, with spacing
of its own, so the text is rebuilt from geometry alone, never from the drawing order (the steps
are below). :func:`page_blocks` reads one page; once every page is read, :func:`place_text`
decides line-end hyphens on the whole book's words and makes the pages' text blocks, and
:func:`mark_running_lines` marks headers, footers and page numbers. Used by :mod:`pipeline.book.pdf`.
"""

from __future__ import annotations

import ctypes
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline.book.model import Box, Page, TextBlock, clean_text
from pipeline.config import EbookConfig

# How: glyphs -> words -> lines -> blocks
#
# pdfium gives every glyph with its box, in the order the content stream draws them. A browser or a
# layout engine may draw them in any order, one text object (or ``TJ`` element) each, with spacing
# of its own, so the text is rebuilt from geometry alone, never from the drawing order:
#
# 1. rows: glyphs whose boxes sit on one band (centres within half the font size) form a row;
# 2. words: a row's glyphs read left to right; a space wherever the gap between two glyphs (their
#    advance boxes) is wider than SPACE_GAP of the font size beyond the row's own letter spacing,
#    or a space glyph sits between them;
# 3. lines: a row is cut into lines only at a column gutter: a gap of GUTTER_GAP font sizes or more
#    that the rows next to it leave open too, along a column edge (see _is_gutter: a justified
#    line's wide spaces are covered by its neighbours' words, or line up by chance without an edge);
#    a right-to-left line reads from its right end;
# 4. blocks: lines close together in one column, top to bottom (as the reader always did);
# 5. hyphens: a line ending in a hyphen after a letter, followed by a line starting with one, is a
#    word broken at the line end or a compound ("mango-tree"); the book's own words decide, then
#    the printer (a browser hyphenates only with its own mark, U+2010), see _drops_hyphen.
#
# Rotated glyphs (a spine title, a sideways label) are read in drawing order instead.

SPACE_GAP = 0.15  # font sizes: a wider gap between two glyphs (beyond the row's letter spacing) is a space
GUTTER_GAP = 1.0  # font sizes: a gap between words this wide may be a column gutter
NEIGHBOUR_REACH = 2.5  # font sizes: how far above and below a row its neighbour rows are looked for
_HYPHENS = {0x2D: "-", 0x02: "-", 0x2010: "\u2010", 0xAD: "\u00ad"}  # 0x02: pdfium's line-end '-' or soft hyphen
_LIGATURES = {0xFB00: "ff", 0xFB01: "fi", 0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "st", 0xFB06: "st"}
_BROWSER = re.compile(r"skia/pdf|headlesschrome|chromium", re.I)
_TOKEN = re.compile(r"[^\W\d_]+(?:[-\u2010][^\W\d_]+)*")
_RTL = re.compile(r"[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")  # Hebrew, Arabic, Syriac, Thaana, N'Ko...
_UPRIGHT = 0.02  # radians


@dataclass(slots=True)
class _Glyph:
    text: str  # "" for a glyph without a Unicode mapping, " " for a space glyph
    x0: float  # advance box (pdfium's loose box): glyphs of one word touch
    x1: float
    mid: float  # vertical centre of the advance box: the same for every glyph of a font on a line
    half: float  # half the advance box's height (the font's ascent and descent)
    top: float  # ink box (tight): what the line's box is made of
    bottom: float
    em: float  # font size
    hidden: bool  # invisible text (a scan's OCR layer)
    hyphen: str = ""  # "-", "\u2010" or "\u00ad" when the glyph is a hyphen


@dataclass(slots=True)
class Line:
    box: Box  # ink
    band: tuple[float, float]  # top and bottom of the font's advance boxes (ascent to descent)
    text: str
    hyphen: str  # the hyphen ending the line after a letter ("" when none)
    hidden: int  # invisible glyphs
    count: int


class _TextApi:
    """pdfium's per-glyph calls, bound once to take and return plain integer handles (no pointer
    objects made per glyph: a page has thousands)."""

    def __init__(self) -> None:
        import pypdfium2.raw as raw

        def bind(fn: Any, restype: Any, *argtypes: Any) -> Any:
            return ctypes.CFUNCTYPE(restype, *argtypes)(ctypes.cast(fn, ctypes.c_void_p).value)

        p, i = ctypes.c_void_p, ctypes.c_int  # out parameters too: plain addresses are the cheapest to pass
        self.rect = raw.FS_RECTF
        self.count = bind(raw.FPDFText_CountChars, i, p)
        self.unicode = bind(raw.FPDFText_GetUnicode, ctypes.c_uint, p, i)
        self.text = bind(raw.FPDFText_GetText, i, p, i, i, ctypes.POINTER(ctypes.c_ushort))
        self.generated = bind(raw.FPDFText_IsGenerated, i, p, i)
        self.loose = bind(raw.FPDFText_GetLooseCharBox, i, p, i, p)
        self.tight = bind(raw.FPDFText_GetCharBox, i, p, i, p, p, p, p)
        self.object = bind(raw.FPDFText_GetTextObject, p, p, i)
        self.font_size = bind(raw.FPDFText_GetFontSize, ctypes.c_double, p, i)
        self.angle = bind(raw.FPDFText_GetCharAngle, ctypes.c_float, p, i)
        self.render_mode = bind(raw.FPDFTextObj_GetTextRenderMode, i, p)
        self.invisible = raw.FPDF_TEXTRENDERMODE_INVISIBLE


@functools.cache
def _text_api() -> _TextApi:
    return _TextApi()


def _glyphs(textpage: Any, left: float, top: float) -> tuple[list[_Glyph], list[list[_Glyph]]]:
    """The page's upright glyphs (page units, top-left origin), and its rotated text as runs in
    drawing order (a spine title, a sideways label, the OCR layer of a slightly tilted scan, whose
    engine writes each line along its baseline: read as drawn, one run a line)."""
    api = _text_api()
    handle = ctypes.cast(textpage.raw, ctypes.c_void_p).value
    count = api.count(handle)
    codes = _codes(api, handle, count)
    loose = api.rect()
    loose_ref = ctypes.addressof(loose)
    ink = (ctypes.c_double * 4)()  # left, right, bottom, top
    refs = tuple(ctypes.addressof(ink) + 8 * k for k in range(4))
    get_loose, get_tight, get_object, generated = api.loose, api.tight, api.object, api.generated
    upright: list[_Glyph] = []
    runs: list[list[_Glyph]] = []
    obj, size, hidden, straight = None, 0.0, False, True
    spaced = False  # pdfium guessed a space just before: only used for rotated runs
    for index in range(count):
        code = codes[index]
        if code in (0x0D, 0x0A) or (code == 0x20 and generated(handle, index)):
            spaced = spaced or code == 0x20
            continue  # pdfium's own line breaks and guessed spaces: spacing comes from geometry
        if code < 0x20 and code not in (0x00, 0x02) or not get_loose(handle, index, loose_ref):
            continue
        current = get_object(handle, index)
        if current != obj:
            obj = current
            size = api.font_size(handle, index)
            hidden = bool(current) and api.render_mode(current) == api.invisible
            angle = api.angle(handle, index)  # (-1: unknown, taken as upright)
            straight = angle < _UPRIGHT or angle > 2 * math.pi - _UPRIGHT
        height = loose.top - loose.bottom
        if height <= 0 or loose.right < loose.left:
            continue
        side = height if straight else max(height, loose.right - loose.left)  # sideways: the advance is the height
        em = size if 0.4 * side <= size <= 2.5 * side else side
        if 0x20 <= code < 0x7F and code != 0x2D:
            text, hyphen = chr(code), ""
        else:
            hyphen = _HYPHENS.get(code, "")
            text = ("-" if hyphen == "-" else hyphen) or _LIGATURES.get(code) or (chr(code) if code else "")
        if get_tight(handle, index, *refs) and ink[3] > ink[2]:
            ink_top, ink_bottom = top - ink[3], top - ink[2]
        else:
            ink_top, ink_bottom = top - loose.top, top - loose.bottom
        glyph = _Glyph(text, loose.left - left, loose.right - left, top - (loose.top + loose.bottom) / 2,
                       height / 2, ink_top, ink_bottom, em, hidden, hyphen)
        if straight:
            upright.append(glyph)
        else:
            last = runs[-1][-1] if runs else None
            if (last is None or abs(last.em - em) > 0.1 * em or max(glyph.x0 - last.x1, last.x0 - glyph.x1) > 1.5 * em
                    or abs(glyph.mid - last.mid) - glyph.half - last.half > 1.5 * em):
                runs.append([])  # not drawn next to the last glyph: a new line (or label)
            elif spaced and last.text != " ":
                runs[-1].append(_Glyph(" ", glyph.x0, glyph.x0, glyph.mid, glyph.half, glyph.top, glyph.bottom, em,
                                       hidden))
            runs[-1].append(glyph)
        spaced = False
    return upright, runs


def _codes(api: _TextApi, handle: int, count: int) -> list[int]:
    """Every glyph's Unicode value: the page's text in one call when it maps one to one (pdfium
    writes its line-end hyphen mark 0x02 as U+FFFE there), else one call per glyph."""
    buffer = (ctypes.c_ushort * (count + 1))()
    written = api.text(handle, 0, count, buffer)
    text = bytes(buffer)[:2 * max(0, written - 1)].decode("utf-16-le", "replace")
    if len(text) == count:
        return [0x02 if c == "\ufffe" else ord(c) for c in text]
    return [api.unicode(handle, i) for i in range(count)]


def _lines(glyphs: list[_Glyph], runs: list[list[_Glyph]] = ()) -> list[Line]:
    """Glyphs -> rows -> words -> lines (a row cut at column gutters)."""
    rows = _rows(glyphs)
    words = [_words(row) for row in rows]
    mids = [sum(g.mid for g in row) / len(row) for row in rows]
    ems = [sorted(g.em for g in row)[len(row) // 2] for row in rows]
    lines = []
    for k, row in enumerate(words):
        start = 0
        for j in range(len(row)):
            if j == len(row) - 1 or _is_gutter(words, mids, ems, k, j):
                lines.append(_make_line(row[start:j + 1]))
                start = j + 1
    lines += [_make_line([[g for g in run if g.text != " "]], spaced=run) for run in runs]
    return [line for line in lines if line.text]


def _rows(glyphs: list[_Glyph]) -> list[list[_Glyph]]:
    """Glyphs on one band: centres within half a font size of the row's first glyph."""
    rows: list[tuple[float, float, list[_Glyph]]] = []  # (centre, font size, glyphs), by centre
    reach = max((g.em for g in glyphs), default=0.0)
    for glyph in sorted(glyphs, key=lambda g: g.mid):
        best, distance = None, 0.0
        for row in reversed(rows):
            d = glyph.mid - row[0]
            if d > reach:
                break
            d = d if d >= 0 else -d  # (plain arithmetic: this loop runs for every glyph)
            if d <= 0.5 * (glyph.em if glyph.em < row[1] else row[1]) and (best is None or d < distance):
                best, distance = row, d
        if best is None:
            rows.append((glyph.mid, glyph.em, [glyph]))
        else:
            best[2].append(glyph)
    return [row[2] for row in rows]


def _words(row: list[_Glyph]) -> list[list[_Glyph]]:
    """A row's glyphs left to right, cut into words at space glyphs and at gaps wider than a space."""
    ordered: list[_Glyph] = []
    for glyph in sorted(row, key=lambda g: g.x0 + g.x1):
        last = ordered[-1] if ordered else None
        if (last is not None and glyph.text == last.text and abs(glyph.x0 - last.x0) < 0.1 * glyph.em
                and abs(glyph.mid - last.mid) < 0.1 * glyph.em):
            continue  # the same glyph drawn twice (a fake bold, a shadow)
        ordered.append(glyph)
    gaps = sorted(b.x0 - a.x1 for a, b in zip(ordered, ordered[1:]) if a.text != " " and b.text != " ")
    em = sorted(g.em for g in ordered)[len(ordered) // 2]
    tracking = min(max(gaps[len(gaps) // 4], 0.0), 0.5 * em) if len(gaps) >= 3 else 0.0  # letter spacing
    words: list[list[_Glyph]] = []
    word: list[_Glyph] = []
    for glyph in ordered:
        if glyph.text == " ":
            if word:
                words.append(word)
            word = []
            continue
        if word:
            last = word[-1]
            if glyph.x0 - last.x1 > tracking + SPACE_GAP * (glyph.em if glyph.em > last.em else last.em):
                words.append(word)
                word = []
        word.append(glyph)
    if word:
        words.append(word)
    return words


def _is_gutter(words: list[list[list[_Glyph]]], mids: list[float], ems: list[float], k: int, j: int) -> bool:
    """Whether the gap after word ``j`` of row ``k`` is a column gutter, not a justified line's space.

    A gutter stays open in the rows next to it, and a column edge runs along it: the words after
    it start at one x (or the words before it end at one x) row after row. The wide spaces of a
    justified line are covered by its neighbours' words, or line up with theirs by chance (a
    river) without such an edge. A row on its own (or between the ends of columns) is cut where
    its gap is wider than its other spaces.
    """
    row, em = words[k], ems[k]
    a, b = row[j][-1].x1, row[j + 1][0].x0
    width = b - a
    if width < GUTTER_GAP * em:
        return False
    core = (a + 0.25 * width, b - 0.25 * width)
    span = (row[0][0].x0, row[-1][-1].x1)

    def walk(step: int) -> tuple[list[list[list[_Glyph]]], bool]:
        """The next rows that way with the gap open (two at most), and whether a row covers it."""
        found: list[list[list[_Glyph]]] = []
        i, mid = k + step, mids[k]
        while 0 <= i < len(words) and len(found) < 2 and abs(mids[i] - mid) <= NEIGHBOUR_REACH * em:
            near = words[i]
            if near and near[0][0].x0 < span[1] and near[-1][-1].x1 > span[0]:  # a row of this region
                if any(w[0].x0 < core[1] and w[-1].x1 > core[0] for w in near):
                    return found, not found
                if not (any(w[-1].x1 <= core[0] for w in near) and any(w[0].x0 >= core[1] for w in near)):
                    break  # words on one side only: a column's last line, or its margin
                found.append(near)
                mid = mids[i]
            i += step
        return found, False

    others = [row[i + 1][0].x0 - row[i][-1].x1 for i in range(len(row) - 1) if i != j]
    like_spaces = bool(others) and width <= 1.5 * max(others)  # no wider than the row's other spaces

    def edge(rows: list[list[list[_Glyph]]]) -> bool:
        """A column edge along the gap: the words after it start at one x in every row (a column's
        left edge), or, for a gap wider than the row's spaces, the words before it end at one x."""
        starts = [next(w[0].x0 for w in r if w[0].x0 >= core[1]) for r in rows]
        ends = [max(w[-1].x1 for w in r if w[-1].x1 <= core[0]) for r in rows]
        return max(starts) - min(starts) <= 0.15 * em or (not like_spaces and max(ends) - min(ends) <= 0.15 * em)

    above, covered_above = walk(-1)
    below, covered_below = walk(1)
    rows = [*above, row, *below]
    if covered_above and covered_below:
        return False
    if len(rows) >= 3 and edge(rows):
        return True  # a column edge over three rows (under a heading that spans the columns, too)
    if covered_above or covered_below or like_spaces:
        return False  # one column, or a justified line
    return len(rows) == 1 or edge(rows) or width >= 3 * em


def _make_line(words: list[list[_Glyph]], spaced: list[_Glyph] | None = None) -> Line:
    """One line's text from its words (left to right on the page), and its box and line-end hyphen.

    A right-to-left line (most of its letters Hebrew, Arabic...) reads from its right end: its
    words in reverse, each right-to-left word's glyphs in reverse (numbers and Latin words stay).
    """
    glyphs = [g for word in words for g in word]
    text = "".join(g.text for g in spaced) if spaced else " ".join("".join(g.text for g in w) for w in words)
    last = glyphs[-2:]
    hyphen = last[1].hyphen if len(last) == 2 and last[1].hyphen and last[0].text[-1:].isalpha() else ""
    if not spaced and _RTL.search(text) and 2 * len(_RTL.findall(text)) > sum(c.isalpha() for c in text):
        texts = ["".join(g.text for g in w) for w in reversed(words)]
        text = " ".join(t[::-1] if _RTL.search(t) else t for t in texts)
        hyphen = ""
    if not glyphs:
        return Line((0.0, 0.0, 0.0, 0.0), (0.0, 0.0), "", "", 0, 0)
    box = (min(g.x0 for g in glyphs), min(g.top for g in glyphs), max(g.x1 for g in glyphs),
           max(g.bottom for g in glyphs))
    band = (min(g.mid - g.half for g in glyphs), max(g.mid + g.half for g in glyphs))
    return Line(box, band, text.strip(), hyphen, sum(g.hidden for g in glyphs), len(glyphs))


def _blocks(lines: list[Line]) -> list[list[Line]]:
    """Lines stacked close together with overlapping columns form one block (a paragraph): their
    ink less than 0.9 line heights apart, or their fonts' bands touching (a line without ascenders
    under one without descenders: "the old man" over "swam across our river")."""
    blocks: list[list[Any]] = []  # ink box, band bottom, lines
    for line in sorted(lines, key=lambda s: (s.box[1], s.box[0])):
        box = line.box
        height, band = box[3] - box[1], line.band[1] - line.band[0]
        for block in reversed(blocks):
            bb = block[0]
            gap, band_gap = box[1] - bb[3], line.band[0] - block[1]
            if ((-0.5 * height < gap < 0.9 * height or -0.5 * band < band_gap < 0.35 * band)
                    and min(bb[2], box[2]) - max(bb[0], box[0]) > 0):
                block[0] = (min(bb[0], box[0]), bb[1], max(bb[2], box[2]), max(bb[3], box[3]))
                block[1] = max(block[1], line.band[1])
                block[2].append(line)
                break
        else:
            blocks.append([box, line.band[1], [line]])
    return [block[2] for block in blocks]


def place_text(read: list[tuple[Page, float, list[list[Line]]]], browser: bool) -> None:
    """Every page's blocks become its text blocks, line-end hyphens decided on the whole book's words."""
    words: set[str] = set()
    compounds: set[str] = set()
    for _, _, blocks in read:
        for line in (line for block in blocks for line in block):
            tokens = _TOKEN.findall(line.text)
            for token in tokens[:-1] if line.hyphen else tokens:  # a broken word's first half is no word
                token = token.lower().replace("\u2010", "-")
                (compounds if "-" in token else words).add(token)
    for page, _, blocks in read:
        for lines in blocks:
            text = ""
            for before, line in zip([None, *lines], lines):
                if not text:
                    text = line.text
                elif before.hyphen and line.text[:1].isalpha():
                    drop = _drops_hyphen(text[:-1], line.text, before.hyphen, words, compounds, browser)
                    text = text[:-1] + line.text if drop else text + line.text
                elif text.endswith("\u2014") or line.text.startswith("\u2014"):
                    text += line.text  # a line broken at an em dash ("orange\u2014\nthen")
                else:
                    text = f"{text} {line.text}"
            text = clean_text(text)
            if text:
                box = (min(x.box[0] for x in lines), min(x.box[1] for x in lines), max(x.box[2] for x in lines),
                       max(x.box[3] for x in lines))
                burnt = any(2 * x.hidden >= x.count for x in lines)  # the words are pixels of a scan
                page.texts.append(TextBlock(text, box, burnt=burnt))


def _drops_hyphen(before: str, after: str, hyphen: str, words: set[str], compounds: set[str], browser: bool) -> bool:
    """Whether a hyphen ending a line (after ``before``, with ``after`` on the next line) only breaks
    a word there: a soft hyphen always; then the book itself (the compound, or the whole word,
    written elsewhere on one line); a capital after it keeps it ("Nana-Yaa"); a browser marks
    the hyphens it adds with U+2010, so its "-" is the author's; other printers hyphenate words."""
    left, right = re.search(r"[^\W\d_]+$", before), re.match(r"[^\W\d_]+", after)
    if left is None or right is None:
        return False
    first, second = left.group(0), right.group(0)
    if hyphen == "\u00ad":
        return True
    if f"{first}-{second}".lower() in compounds:
        return False
    if (first + second).lower() in words:
        return True
    if second[0].isupper() and not first.isupper():
        return False
    if browser:
        return hyphen != "-"
    return True


def printed_by_browser(doc: Any) -> bool:
    info = doc.get_metadata_dict(skip_empty=True)
    return bool(_BROWSER.search(f"{info.get('Producer', '')} {info.get('Creator', '')}"))


def mark_running_lines(pages: list[Page], cfg: EbookConfig) -> None:
    """Headers, footers and page numbers: in the top/bottom band and repeated (digits aside)."""
    def key(text: str) -> str:
        return re.sub(r"\d+", "#", text.lower())

    def in_band(block: TextBlock, page: Page) -> bool:
        band = cfg.running_band * page.size[1]
        return block.box[3] <= band or block.box[1] >= page.size[1] - band

    seen: dict[str, set[int]] = {}
    for page in pages:
        for block in page.texts:
            if in_band(block, page):
                seen.setdefault(key(block.text), set()).add(page.number)
    for page in pages:
        for block in page.texts:
            number = re.fullmatch(r"[-–—\s]*(?:page\s*)?\d{1,4}[-–—\s]*", block.text, re.I)
            if number or (in_band(block, page) and len(seen[key(block.text)]) >= 3):
                block.role = "running"


def page_blocks(textpage: Any, left: float, top: float) -> list[list[Line]]:
    """A pdfium text page's blocks, as lines (top-left origin: ``left``/``top`` of the crop box)."""
    return _blocks(_lines(*_glyphs(textpage, left, top)))
