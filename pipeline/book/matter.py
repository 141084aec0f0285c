"""Front and back matter: which pages of a book are not the story, and the credits they hold.

A page (PDF page, EPUB spine item, HTML section) is left out, with the reason counted, when

1. the book says so: EPUB ``epub:type`` / guide / landmarks (cover, titlepage, copyright-page,
   dedication, toc, acknowledgments, backmatter...), a non-linear spine item, or a distributor's
   boilerplate (Project Gutenberg's header and licence, marked by the HTML reader);
2. anywhere: its text reads like a copyright or licence page (©, ISBN, "all rights reserved",
   Creative Commons, "published by"), "about the author/illustrator", or a table of contents;
3. in the leading pages, until the first story page: the cover (page one with a picture and only
   title/credit words, or none), title and half-title pages (nothing but title, names and credit
   words), dedications ("For Ama, who...", "To my mother"), blank pages;
4. in the trailing pages, back from the end: the back-cover blurb (the last page, speaking about
   the book: its title, "this story", reading levels, ages, series), a lone "The End", credits,
   blank pages.

Rule 2 needs words that story text almost never holds, so it applies everywhere; rules 3 and 4
are weaker and only apply at the edges, where such pages live. Credits (authors, illustrators)
and a licence sentence are read from the pages left out, for the story's ``source``.

Flowing books (HTML, reflowable EPUB) often hold title, credits, publisher lines, the story and
"THE END" in one section, so there matter is judged at the granularity it occurs, block by block
and picture by picture (:func:`trim_flow_edges`), never by dropping a section that also holds the
story: a section with illustrations is matter as a whole only when its own first block says so
("About the author", "Contents"); copyright and distributor words mark just their blocks. Then,
by position:

- the *front*: from the start until the first block of narrative text, every heading (the title
  block), title and credit lines, publisher and printer lines ("First published 1902",
  "Printed and bound in..."), short lines in capitals, dedications and contents lists are front
  matter; pictures before the last of them (a frontispiece before the title, a decoration among
  the title and publisher lines) are front matter too: no story text follows them before more
  matter does;
- the *back*: everything after the last "THE END" (when fewer pictures follow it than come
  before); back from the end to the last picture, title-only, blurb and publisher blocks; and
  pictures after the first matter that follows the story's last text (credits' thumbnails, logos,
  an advertisement): a wordless last illustration before "THE END" stays.
"""

from __future__ import annotations

import logging
import re

from typing import Any

from pipeline.book.model import Book, Page, Picture, TextBlock, split_names

log = logging.getLogger(__name__)

SEMANTIC_REASONS = {
    "cover": "cover", "titlepage": "title_page", "title-page": "title_page", "halftitlepage": "title_page",
    "copyright-page": "copyright", "colophon": "copyright", "imprint": "copyright", "imprimatur": "copyright",
    "dedication": "dedication", "epigraph": "dedication", "toc": "contents", "loi": "contents", "lot": "contents",
    "landmarks": "contents", "nav": "contents", "acknowledgments": "about", "acknowledgements": "about",
    "foreword": "front_matter", "preface": "front_matter", "introduction": "front_matter", "prologue": None,
    "frontmatter": "front_matter", "backmatter": "back_matter", "afterword": "back_matter", "appendix": "back_matter",
    "index": "back_matter", "glossary": "back_matter", "bibliography": "back_matter", "contributors": "about",
    "other-credits": "about", "credits": "about", "errata": "back_matter", "nonlinear": "nonlinear",
    "distributor": "distributor", "notice": "copyright", "rearnotes": "back_matter", "endnotes": "back_matter",
    "footnotes": "back_matter",
}
_ABOUT = re.compile(r"\babout the (author|illustrator|writer|artist|translator|publisher|authors|illustrators|"
                    r"series|book)\b|\bmeet the (author|illustrator)|acknowledge?ments?\b|\bbiography\b", re.I)
_CONTENTS = re.compile(r"^\s*(table of )?contents\b|^\s*list of (colou?red )?(illustrations|plates|pictures)\b", re.I)
_CONTENTS_HEADING = re.compile(r"^\W*((table of )?contents|(list of )?(colou?red |full-page |black and white )?"
                               r"(illustrations|plates|pictures))\W*$", re.I)
# block rules for flowing books: anywhere (words story text never holds), or only outside the story
_STRONG_MATTER = re.compile(r"©|\(c\)\s*\d{4}|\bcopyright\b|all rights reserved|\bisbn\b|creative\s*commons|"
                            r"licen[cs]ed\s+under|this (work|book) is licen[cs]ed", re.I)
# a whole printed page: the block words, plus a licence tag and publishing lines
_COPYRIGHT = re.compile(_STRONG_MATTER.pattern + r"|\bcc[- ]?(by|0)\b|published\s+by|first\s+published|"
                        r"printed\s+(in|by)\b|project gutenberg", re.I)
_DISTRIBUTOR = re.compile(r"project\s+gutenberg|gutenberg\.(org|net)|\bpgdp\b|distributed\s+proofread|"
                          r"transcriber'?s?\s+notes?\b|\be-?text\s+(prepared|produced)\b", re.I)
_WEAK_MATTER = re.compile(r"published\s+(by|in)\b|first\s+published|\bprinted\s+(and\s+bound\s+)?(in|by|at|for)\b|"
                          r"\bprinters?\b|\bpublishers?\b|\bproduced\s+by\b|\bimprint\b|\bedition\b", re.I)
_PUBLISHER = re.compile(r"&\s*co\b|\bco\.|\bltd\b|\blimited\b|\binc\b|\bpublish\w*|\bpress\b|\bcompany\b|"
                        r"\bsons\b|\bverlag\b|\b[ée]ditions?\b", re.I)
_BACK_HEADING = re.compile(r"^\W*(transcriber'?s?\s+notes?|(foot|end)?notes|advertisements?|errata|glossary|index|"
                           r"other books (by|in)\b.*|books by\b.*|also by\b.*)\W*$", re.I)
_LABEL = re.compile(r"^\W*(frontispiece|vignette|title[- ]page|plate|fig(ure)?|illustration|cover)\b\W*"
                    r"(\d+|[ivxlc]+)?\W*$", re.I)  # a picture's label, not story text
_YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b|\bM[DCLXVI]{2,}\b")
_DEDICATION = re.compile(r"^\s*((?i:dedicated)\b|(?i:in (loving )?memory)\b|(?i:for|to)\s+((?i:my|our|your|all|every|"
                         r"everyone|the children)\b|[A-Z][a-z]+\s*(,|\band\b|&|\bwho\b|[.!]|$)))")
_BLURB = re.compile(r"\bthis (book|story|tale)\b|\blevel \d|\bages? \d|\breaders?\b|\breading\b|\bseries\b|"
                    r"\bstory ?books?\b|\bpicture books?\b|\bbarcode\b|www\.|https?://", re.I)
_END = re.compile(r"^\W*the end\W*$", re.I)
_NARRATIVE = ("body", "caption")
_CREDIT_WORDS = {"by", "written", "illustrated", "illustrations", "pictures", "story", "text", "words", "author",
                 "authors", "illustrator", "illustrators", "and", "retold", "adapted", "translated", "with",
                 "a", "an", "the", "of", "art", "drawings", "published", "edition", "book", "picture"}
_STOP = r"(?=\s+(?:illustrat\w*|written|story|text|pictures|drawings|translated|published|adapted|retold)\b|[.;\n©]|$)"
_AUTHOR_CREDIT = re.compile(r"(?:written|story|text|words|retold|adapted)\s+by\s+(.+?)" + _STOP, re.I)
_ILLUSTRATOR_CREDIT = re.compile(r"(?:illustrat\w*|pictures|drawings|art(?:work)?)\s+by\s+(.+?)" + _STOP, re.I)
_LABELLED = re.compile(r"\s*(authors?|writers?|illustrators?)\s*:\s*(.+?)" + _STOP, re.I)  # at a block's start
_BARE_BY = re.compile(r"\bby\s+([A-Z][\w.'-]+(?:\s+[A-Z][\w.'-]+){0,3})")
_LICENCE_SENTENCE = re.compile(r"[^.]*(creative\s*commons|creativecommons\.org/\S+|\bcc[- ]?by[\w.-]*|\bcc0\b|"
                               r"public domain)[^.]*", re.I)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def _title_words(book: Book) -> set[str]:
    names = [book.meta.title or "", *book.meta.authors, *book.meta.illustrators, book.meta.publisher or ""]
    return {w for name in names for w in _words(name)} | _CREDIT_WORDS


def is_cover_picture(picture: Picture, book: Book) -> bool:
    """The picture the package names as its cover, or one named or described as a cover."""
    if book.meta.cover_key and picture.key == book.meta.cover_key:
        return True
    return bool(re.search(r"(^|[\W_])cover([\W_]|$)", f"{picture.hint} {picture.alt or ''}", re.I))


def classify_pages(book: Book) -> dict[int, str]:
    """Page number -> why it is front or back matter; story pages are absent."""
    reasons: dict[int, str] = {}
    for page in book.pages:
        reason = next((SEMANTIC_REASONS[s] for s in sorted(page.semantics) if SEMANTIC_REASONS.get(s)), None)
        text = page.all_text()
        if reason is None and book.layout == "flow" and page.illustrations:
            # a section with pictures may hold the story too: only its own first block speaks for all of it
            first = next((t.text for t in page.texts if t.role != "running"), "")
            reason = "about" if _ABOUT.search(first[:200]) else "contents" if _CONTENTS.search(first) else None
            reason = reason or ("back_matter" if _BACK_HEADING.match(first) else None)
        elif reason is None and book.layout == "flow" and _BACK_HEADING.match(
                next((t.text for t in page.texts if t.role != "running"), "")):
            reason = "back_matter"  # notes, advertisements, an index: under their own heading
        elif reason is None and _COPYRIGHT.search(text):
            # a printed page may hold the story's last words above a notice: then only the notice goes
            if not _split_story_from_matter(page, book):
                reason = "distributor" if re.search(r"project gutenberg", text, re.I) else "copyright"
        elif reason is None and (_ABOUT.search(text[:200]) or _CONTENTS.search(text)):
            reason = "about" if _ABOUT.search(text[:200]) else "contents"
        if reason:
            reasons[page.number] = reason
    _guess_title(book, reasons)
    title_words = _title_words(book)
    for i, page in enumerate(book.pages):  # leading matter, until the first story page
        if page.number in reasons:
            continue
        reason = _leading_reason(page, i, book, title_words)
        if reason is None:
            break
        reasons[page.number] = reason
    for i in range(len(book.pages) - 1, -1, -1):  # trailing matter, back to the last story page
        page = book.pages[i]
        if page.number in reasons:
            continue
        reason = _trailing_reason(page, i == len(book.pages) - 1, book, title_words)
        if reason is None:
            break
        reasons[page.number] = reason
    return reasons


def _split_story_from_matter(page: Page, book: Book) -> bool:
    """A paginated page with an illustration whose story text (8 words or more) comes before a
    notice (a distributor's footer, a copyright line) and "The End": the notice, everything after
    it and a "The End" just before it become matter blocks, the page stays a story page."""
    if book.layout != "paginated" or not page.illustrations:
        return False
    blocks = sorted((t for t in page.texts if t.role != "running" and t.box is not None), key=lambda t: t.box[1])
    first = next((i for i, t in enumerate(blocks) if _COPYRIGHT.search(t.text)), None)
    if first is None:
        return False
    start = first
    while start > 0 and _END.match(blocks[start - 1].text):
        start -= 1
    if sum(len(_words(t.text)) for t in blocks[:start]) < 8:
        return False
    for block in blocks[start:]:
        block.role = "matter"
    return True


def _title_only(text: str, title_words: set[str]) -> bool:
    """Nothing but the title, names, credit phrases and numbers (a cover, a title or credits page)."""
    if not _words(text):
        return False
    stripped = text
    for pattern in (_AUTHOR_CREDIT, _ILLUSTRATOR_CREDIT, _LABELLED, _BARE_BY):
        stripped = pattern.sub(" ", stripped)
    rest = _words(stripped)
    # something must be title-like (a credit, or a word of the title or a name): "Tano ran." is story
    titled = stripped != text or any(w in title_words and w not in _CREDIT_WORDS for w in rest)
    return titled and sum(w not in title_words and not w.isdigit() for w in rest) <= 2


def _leading_reason(page: Page, index: int, book: Book, title_words: set[str]) -> str | None:
    text = page.all_text()
    pictures = page.illustrations
    if not text.strip() and not pictures:
        return "blank"
    if index == 0 and book.layout == "paginated" and pictures and (not text.strip() or _title_only(text, title_words)):
        return "cover"
    title_only = not text.strip() or _title_only(text, title_words)
    if pictures and all(is_cover_picture(p, book) for p in pictures) and title_only:
        return "cover"
    if not pictures and _title_only(text, title_words):
        return "title_page"
    if pictures and book.layout == "paginated" and _title_only(text, title_words):
        return "title_page"  # a title vignette or frontispiece over the title and the author
    if not pictures and len(_words(text)) <= 25 and _DEDICATION.match(text):
        return "dedication"
    return None


def _trailing_reason(page: Page, last: bool, book: Book, title_words: set[str]) -> str | None:
    text = page.all_text()
    pictures = page.illustrations
    if not text.strip() and not pictures:
        return "blank"
    if _END.match(text) and not pictures:
        return "end_marker"
    if not pictures and _title_only(text, title_words):
        return "credits"
    mentions_title = bool(book.meta.title) and book.meta.title.lower() in text.lower()
    flowing_story = book.layout == "flow" and pictures  # its blocks are judged one by one (trim_flow_edges)
    if last and text.strip() and not flowing_story and (mentions_title or _BLURB.search(text)):
        return "blurb"
    if last and pictures and not text.strip() and book.layout == "paginated" and book.pages[0].illustrations:
        cover_keys = {p.key for p in book.pages[0].illustrations}
        if all(p.key in cover_keys for p in pictures):
            return "blurb"  # the back cover repeats the front cover's art
    return None


def trim_flow_edges(book: Book, reasons: dict[int, str]) -> dict[str, int]:
    """Matter inside the story sections of a flowing book, block by block and picture by picture (see
    the module's docstring); marked blocks get the role ``matter``, pictures a ``decoration``. Counts
    by reason."""
    if book.layout != "flow":
        return {}
    pages = [p for p in book.pages if p.number not in reasons]
    blocks = sorted((t for p in pages for t in p.texts if t.role not in ("running", "description")),
                    key=lambda t: t.order)
    pictures = sorted((x for p in pages for x in p.illustrations), key=lambda x: x.order)
    title_words = _title_words(book)
    counts: dict[str, int] = {}

    def mark(item: TextBlock | Picture, reason: str) -> None:
        if isinstance(item, Picture):
            item.decoration = reason
        else:
            item.role = "matter"
        counts[f"matter_{reason}"] = counts.get(f"matter_{reason}", 0) + 1

    for block in blocks:  # anywhere: words no story holds
        if _DISTRIBUTOR.search(block.text):
            mark(block, "distributor")
        elif _STRONG_MATTER.search(block.text):
            mark(block, "copyright")
    _mark_contents(blocks, pictures, mark)
    story = [b for b in blocks if b.role in _NARRATIVE]

    # the front: up to the first block of story text
    first_text = next((b for b in story if not _front_block(b, title_words)), None)
    if first_text is not None:
        for block in story:
            if block.order >= first_text.order:
                break
            mark(block, "front_block")
        for block in blocks:
            if block.role == "heading" and block.order < first_text.order:
                mark(block, "front_block")  # the title block: headings before any story text
        matter_orders = [t.order for t in blocks if t.role == "matter" and t.order < first_text.order]
        matter_orders += [x.order for p in book.pages if p.number in reasons and "distributor" not in p.semantics
                          for x in [*p.texts, *p.pictures] if x.order < first_text.order]
        front_end = max(matter_orders, default=-1)
        for picture in pictures:
            if picture.order < front_end:
                mark(picture, "front_picture")  # a frontispiece, or a decoration among title and publisher lines
        pictures = [p for p in pictures if p.decoration is None]

    # the back: everything after the last "THE END", then trailing blurbs and credits
    ends = [b.order for p in book.pages if "distributor" not in p.semantics for b in p.texts if _END.match(b.text)]
    if ends and pictures:
        end = max(ends)
        after = [p for p in pictures if p.order > end]
        if len(after) < len(pictures) - len(after):
            for item in [*after, *(b for b in blocks if b.order >= end and b.role != "matter")]:
                mark(item, "back_picture" if isinstance(item, Picture) else "back_block")
            pictures = [p for p in pictures if p.decoration is None]
    last_picture = max((p.order for p in pictures), default=-1)
    for block in reversed(story):
        if block.role != "matter":
            if block.order < last_picture or not _back_block(block.text, title_words, book):
                break
            mark(block, "back_block")
    # pictures after the story's last text that only matter follows: credits' thumbnails, logos
    last_text = max((b.order for b in story if b.role != "matter"), default=None)
    if last_text is not None:
        later = [t.order for t in blocks if t.role == "matter" and t.order > last_text]
        later += [x.order for p in book.pages if p.number in reasons for x in [*p.texts, *p.pictures] if x.order > last_text]
        back_start = min(later, default=None)
        for picture in pictures:
            if back_start is not None and picture.order > back_start:
                mark(picture, "back_picture")
    return counts


def is_end_marker(text: str) -> bool:
    """"The End", alone in its block."""
    return bool(_END.match(text))


def _front_block(block: TextBlock, title_words: set[str]) -> bool:
    """Title, credit, dedication, publisher and printer lines: what comes before a story."""
    text = block.text
    words = _words(text)
    credited = any(p.search(text) for p in (_AUTHOR_CREDIT, _ILLUSTRATOR_CREDIT, _LABELLED))
    sentence = bool(re.search(r"[.!?][\"'\u2019\u201d)]*$", text)) and not credited  # "The goat was lost."
    if (_title_only(text, title_words) and not sentence) or (_DEDICATION.match(text) and len(words) <= 25):
        return True
    if _WEAK_MATTER.search(text) or _ABOUT.search(text[:200]) or _CONTENTS_HEADING.match(text) or _LABEL.match(text):
        return True
    if len(words) <= 12 and (_PUBLISHER.search(text) or _YEAR.search(text)):
        return True  # "Frederick Warne & Co.", "London, 1902"
    letters = [c for c in text if c.isalpha()]
    return len(words) <= 8 and bool(letters) and not any(c.islower() for c in letters)  # "LONDON AND NEW YORK"


def _back_block(text: str, title_words: set[str], book: Book) -> bool:
    mentions_title = bool(book.meta.title) and book.meta.title.lower() in text.lower()
    return (bool(_END.match(text)) or _title_only(text, title_words) or mentions_title or bool(_BLURB.search(text))
            or bool(_WEAK_MATTER.search(text)))


def _mark_contents(blocks: list[TextBlock], pictures: list[Picture], mark: Any) -> None:
    """A "Contents" or "List of Illustrations" heading and the entries under it (short lines, or
    lines ending in a page number), up to the next picture, heading or paragraph of prose."""
    picture_orders = [p.order for p in pictures]
    inside = False
    for i, block in enumerate(blocks):
        if block.role == "matter":
            continue
        if _CONTENTS_HEADING.match(block.text):
            inside = True
            mark(block, "contents")
            continue
        if not inside:
            continue
        if block.role == "heading" or any(blocks[i - 1].order < o < block.order for o in picture_orders):
            inside = False
            continue
        words = _words(block.text)
        numbered = bool(re.search(r"(\d+|\b[ivxlc]+|frontispiece)\W*$", block.text, re.I))
        sentence = bool(re.search(r"[.!?,;:\u2014-][\"'\u2019\u201d)]*$", block.text))
        if not ((len(words) <= 20 and numbered) or (len(words) <= 10 and not sentence)):
            inside = False
            continue
        mark(block, "contents")


def _guess_title(book: Book, reasons: dict[int, str]) -> None:
    """No title in the metadata: the first line of a cover or title page (credits removed)."""
    if book.meta.title or not book.pages:
        return
    first = book.pages[0]
    headings = [t.text for page in book.pages[:3] for t in page.texts if t.role == "heading"]
    candidates = headings or [t.text for t in first.texts if t.role != "running"]
    for text in candidates:
        title = re.split(r"\b(?:written|illustrated|story|pictures)?\s*by\b", text, flags=re.I)[0].strip(" .,:;-")
        if 0 < len(_words(title)) <= 12:
            book.meta.title = title
            return


def read_credits(book: Book, matter: dict[int, str]) -> None:
    """Fill in authors, illustrators and the licence sentence from the matter pages' text blocks."""
    pages = [p for p in book.pages if p.number in matter] + [p for p in book.pages[:1] if p.number not in matter]
    blocks = [t.text for p in pages for t in p.texts if t.role != "running"]
    authors: list[str] = []
    illustrators: list[str] = []
    for text in blocks:
        for match in _AUTHOR_CREDIT.finditer(text):
            authors += _names(match.group(1))
        for match in _ILLUSTRATOR_CREDIT.finditer(text):
            illustrators += _names(match.group(1))
        match = _LABELLED.match(text)
        if match:
            (illustrators if match.group(1).lower().startswith("illustrator") else authors).extend(_names(match.group(2)))
    if not authors and not book.meta.authors:
        for text in blocks[:6]:
            match = _BARE_BY.search(text)
            if match and not _ILLUSTRATOR_CREDIT.search(text[max(0, match.start() - 20):match.end()]):
                authors += _names(match.group(1))
                break
    book.meta.authors = _unique(book.meta.authors or authors)
    book.meta.illustrators = _unique(book.meta.illustrators or illustrators)
    if not book.meta.license:
        for text in blocks:
            match = _LICENCE_SENTENCE.search(text)
            if match:
                book.meta.license = match.group(0).strip()[:300]
                break


def _names(text: str) -> list[str]:
    """Names in a credit, keeping only what looks like a name (capitalised, at most five words)."""
    out = []
    for name in split_names(text):
        words = name.split()
        if 1 <= len(words) <= 5 and name[0].isupper() and sum(w[0].islower() for w in words) <= 1:
            out.append(name)
    return out


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for name in names:
        seen.setdefault(name.lower(), name)
    return list(seen.values())
