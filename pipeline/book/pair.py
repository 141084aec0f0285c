"""Pairing: which text belongs to which illustration, for every layout a picture book uses.

Paginated books (PDF, fixed-layout EPUB) pair by geometry, then across pages:

- **on one page**, one illustration takes all the page's text, wherever it sits (above, below,
  beside, printed over it); with several illustrations each text block goes to the nearest one
  (a tie goes to the one above it: captions sit under their picture). Text is read in XY-cut
  order (rows top to bottom, columns left to right).
- **a spread over two pages** (the left half of a picture on page 2k, the right half on 2k+1)
  becomes one frame: either the same image clipped by each page edge, or two images that meet at
  the gutter with continuous pixels across the seam.
- **facing pages**: a text-only page gives its text to the illustration page it belongs with.
  Three hypotheses, chosen for the whole book by how many text-only pages they explain: the
  other page of the same spread (spreads are pages (2k, 2k+1), as printed books open on a right
  page, or EPUB's page-spread-left/right), the next page, the previous page.
- **text-only pages** left over continue the previous frame (or open the next one at the start).

Flowing books (reflowable EPUB, HTML) pair by structure, then by the flow. Each illustration's
*unit* is its outermost ancestor element holding no other illustration (a figure, a table row, a
page div, a one-picture spine item); text inside the unit is the picture's. Text outside any unit
(*loose* text) follows the convention of picture books set as flowing text (Project Gutenberg's
among them): the text of an illustration is the story text after it and before the next one. The
other direction (text before its picture) is taken only when the ends say so: loose text before
the first picture, none after the last, and either loose text between pictures too or no
picture holding text of its own (in a book whose pictures hold their text, loose text before the
first one is an introduction, not a sign of direction).

Where the story begins, text-after-picture books have two things that are not frames:

- a *lead-in*: story text before the first story illustration ("Once upon a time there were four
  little rabbits..."); it belongs to no picture and is left out (counted as ``lead_in``), never
  glued onto the first frame;
- pictures before the first one that has story text of its own: with no text they are
  frontispieces and decorations, and in a book whose pictures hold their text by structure (a
  table row, a figure) a leading picture that holds none is one too (``matter_front_picture``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from pipeline.book.model import Book, Box, Page, Picture, TextBlock
from pipeline.book.matter import is_cover_picture, is_end_marker

log = logging.getLogger(__name__)

EDGE_TOLERANCE = 0.02  # fraction of the page width: a picture this close to an edge touches it
_NARRATIVE = ("body", "caption")


@dataclass
class PairedFrame:
    """One illustration (or a spread's two halves) and the text that goes with it."""

    pictures: list[Picture]
    texts: list[str] = field(default_factory=list)
    page: int = 0
    caption: str | None = None
    flags: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(t for t in self.texts if t)


def pair_book(book: Book, matter: dict[int, str]) -> tuple[list[PairedFrame], dict[str, int]]:
    """Frames of the story pages (matter pages already decided), and counts of what was left out."""
    pages = [p for p in book.pages if p.number not in matter]
    dropped: dict[str, int] = {}
    for page in pages:
        if _narrative(page):
            continue  # the cover's art reused on a page with story text is a story picture there
        for picture in page.illustrations:
            if is_cover_picture(picture, book):  # a cover image on a story page of its own
                picture.decoration = "cover"
                dropped["cover"] = dropped.get("cover", 0) + 1
    if book.layout == "paginated":
        frames = _pair_paginated(pages)
    else:
        frames, flow_drops = _pair_flow(pages, book.pages)
        for reason, count in flow_drops.items():
            dropped[reason] = dropped.get(reason, 0) + count
    for frame in frames:
        alts = [p.alt for p in frame.pictures if p.alt]
        frame.caption = alts[0] if alts else None
        frame.flags = sorted(set(frame.flags + [f for p in frame.pictures for f in p.flags]
                                 + ([] if frame.text else ["no_text"])))
    return frames, dropped


# --------------------------------------------------------------------------- paginated


def _pair_paginated(pages: list[Page]) -> list[PairedFrame]:
    shared = _find_spreads(pages)
    per_page = {page.number: _pair_on_page(page, shared) for page in pages}
    by_number = {p.number: p for p in pages}
    text_only = [p.number for p in pages if not per_page[p.number] and _narrative(p)]
    untexted = {n for n, frames in per_page.items() if frames and not any(f.texts for f in frames)}

    def partner(n: int, how: str) -> int:
        if how == "spread":
            side = by_number[n].spread
            if side in ("left", "right"):
                return n + 1 if side == "left" else n - 1
            return n + 1 if n % 2 == 0 else n - 1
        return n + 1 if how == "next" else n - 1

    def explained(how: str) -> int:
        return len({partner(n, how) for n in text_only} & untexted)

    how = max(("spread", "prev", "next"), key=explained)  # max keeps the first of equals
    frames: list[PairedFrame] = []
    pending: list[str] = []
    for page in pages:
        if page.number in text_only:
            target = partner(page.number, how)
            texts = [t.text for t in _narrative(page)]
            if target in untexted:
                holder = per_page[target]
                if target < page.number:
                    holder[-1].texts.extend(texts)
                else:
                    holder[0].texts[:0] = texts
                untexted.discard(target)
            elif frames:
                frames[-1].texts.extend(texts)  # a text-only page continues the story so far
            else:
                pending.extend(texts)
            continue
        for frame in per_page[page.number]:
            if any(frame is f for f in frames):
                continue  # a spread's frame, already placed from its left page
            if pending:
                frame.texts[:0] = pending
                pending = []
            frames.append(frame)
    if pending:
        log.info("%d text block(s) before the first illustration have none to go with", len(pending))
    return frames


def _narrative(page: Page) -> list[TextBlock]:
    return [t for t in _reading_order(page.texts) if t.role in _NARRATIVE]


def _pair_on_page(page: Page, shared: dict[int, PairedFrame]) -> list[PairedFrame]:
    """The page's frames in reading order, each with the page's text nearest to it."""
    pictures = _reading_order(page.illustrations)
    frames = [shared.get(id(p)) or PairedFrame([p], page=p.page or page.number) for p in pictures]
    texts = _narrative(page)
    if not frames or not texts:
        return _unique(frames)
    if len(pictures) == 1:
        owners = [0] * len(texts)
    elif any(p.box is None for p in pictures) or any(t.box is None for t in texts):
        owners = _owners_by_structure(pictures, texts)
    else:
        owners = [_nearest(t.box, [p.box for p in pictures]) for t in texts]
    for text, owner in zip(texts, owners):
        frames[owner].texts.append(text.text)
        box = pictures[owner].box
        if text.box is not None and box is not None and _centre_in(text.box, box):
            frames[owner].flags.append("text_over_picture")
    return _unique(frames)


def _unique(frames: list[PairedFrame]) -> list[PairedFrame]:
    out: list[PairedFrame] = []
    for frame in frames:
        if not any(frame is f for f in out):
            out.append(frame)
    return out


def _owners_by_structure(pictures: list[Picture], texts: list[TextBlock]) -> list[int]:
    units = _units(pictures)
    owners = []
    for text in texts:
        inside = [i for i, unit in enumerate(units) if unit is not None and unit in text.path]
        if inside:
            owners.append(inside[0])
        else:  # the last picture before it, else the first
            before = [i for i, p in enumerate(pictures) if p.order < text.order]
            owners.append(before[-1] if before else 0)
    return owners


def _find_spreads(pages: list[Page]) -> dict[int, PairedFrame]:
    """id(half) -> the one frame both halves of a spread share (a left page 2k, a right page 2k+1)."""
    shared: dict[int, PairedFrame] = {}
    by_number = {p.number: p for p in pages}
    for page in pages:
        right = by_number.get(page.number + 1)
        if right is None or page.size is None or right.size is None:
            continue
        if not (page.spread == "left" or (page.spread is None and page.number % 2 == 0)):
            continue
        a = next((p for p in page.illustrations if p.box and p.box[2] >= page.size[0] * (1 - EDGE_TOLERANCE)), None)
        b = next((p for p in right.illustrations if p.box and p.box[0] <= right.size[0] * EDGE_TOLERANCE), None)
        if a is None or b is None or id(a) in shared or _vertical_overlap(a.box, b.box) < 0.8:
            continue
        if a.key and a.key == b.key:  # one image drawn across both pages, clipped by each
            whole = Picture(ref=f"{a.ref} + {b.ref}", size=a.size, loader=a.loader, key=a.key, box=a.box,
                            crop=(min(a.crop[0], b.crop[0]), min(a.crop[1], b.crop[1]),
                                  max(a.crop[2], b.crop[2]), max(a.crop[3], b.crop[3])), flags=list(a.flags))
        elif _seam_continues(a, b):
            whole = _joined(a, b)
        else:
            continue
        frame = PairedFrame([whole], page=a.page or page.number, flags=["spread"])
        shared[id(a)] = shared[id(b)] = frame
    return shared


def _joined(a: Picture, b: Picture) -> Picture:
    def load() -> np.ndarray:
        left, right = a.load(), b.load()
        if right.shape[0] != left.shape[0]:
            import cv2

            width = max(1, round(right.shape[1] * left.shape[0] / right.shape[0]))
            right = cv2.resize(right, (width, left.shape[0]), interpolation=cv2.INTER_AREA)
        return np.concatenate([left, right], axis=1)

    wa = a.size[0] * (a.crop[2] - a.crop[0])
    wb = b.size[0] * (b.crop[2] - b.crop[0])
    ha = a.size[1] * (a.crop[3] - a.crop[1])
    return Picture(ref=f"{a.ref} + {b.ref}", size=(round(wa + wb), round(ha)), loader=load, key=f"{a.key}+{b.key}",
                   box=a.box, flags=sorted(set(a.flags + b.flags)))


def _seam_continues(a: Picture, b: Picture) -> bool:
    """The two halves' pixels run on across the gutter (and the edge is not a blank margin)."""
    import cv2

    left, right = a.load(), b.load()
    height = 128
    col_a = cv2.resize(left[:, -3:], (3, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    col_b = cv2.resize(right[:, :3], (3, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    if col_a[:, -1].std() < 6 and col_b[:, 0].std() < 6:
        return False  # plain edges (a white margin, a flat sky) say nothing about continuity
    seam = float(np.abs(col_a[:, -1] - col_b[:, 0]).mean())
    inner = float(np.abs(col_a[:, -1] - col_a[:, -2]).mean() + np.abs(col_b[:, 0] - col_b[:, 1]).mean()) / 2
    return seam <= 2.5 * inner + 8.0


# --------------------------------------------------------------------------- flow


def _pair_flow(pages: list[Page], all_pages: list[Page]) -> tuple[list[PairedFrame], dict[str, int]]:
    pictures = sorted((p for page in pages for p in page.illustrations), key=lambda p: p.order)
    texts = sorted((t for page in pages for t in page.texts if t.role in _NARRATIVE), key=lambda t: t.order)
    page_of = {id(p): page.number for page in pages for p in page.pictures}
    if not pictures:
        return [], {}
    units = _units(pictures)
    owners: list[int | None] = [next((i for i, unit in enumerate(units) if unit is not None and unit in t.path), None)
                                for t in texts]
    gaps = [sum(p.order < t.order for p in pictures) for t in texts]  # gap k: between pictures k-1 and k
    holders = {o for o in owners if o is not None}  # pictures holding text of their own
    structured = 2 * len(holders) >= len(pictures)
    if structured:
        _adopt_displaced(owners, gaps, holders, len(pictures))
    loose_gaps = {g for o, g in zip(owners, gaps) if o is None}
    # the direction that leaves fewer pictures without text; text after its picture when equal
    last_ends = _end_follows(pictures[-1], all_pages)
    empty_after = sum(i not in holders and i + 1 not in loose_gaps for i in range(len(pictures) - (1 if last_ends else 0)))
    empty_before = sum(i not in holders and i not in loose_gaps for i in range(len(pictures)))
    precedes = empty_before < empty_after
    assigned: list[list[str]] = [[] for _ in pictures]
    lead_in: list[str] = []
    for text, owner, gap in zip(texts, owners, gaps):
        if owner is None:
            owner = min(gap, len(pictures) - 1) if precedes else gap - 1
            if precedes and owner in holders and gap < len(pictures):
                owner = gap - 1  # the next picture holds its own text: this one continues the previous
        if owner < 0:
            lead_in.append(text.text)  # story text before the first picture, in a text-after-picture book
        else:
            assigned[owner].append(text.text)  # texts arrive in document order
    dropped: dict[str, int] = {}
    start = 0
    if not precedes:  # the story begins at the first picture with story text of its own
        start = next((i for i in range(len(pictures)) if (i in holders if structured else assigned[i])), None)
        if start is None:
            start = next((i for i in range(len(pictures)) if assigned[i]), 0)
        for i in range(start):
            pictures[i].decoration = "front_matter"
            lead_in += assigned[i]
        if start:
            dropped["matter_front_picture"] = start
    if lead_in:
        dropped["lead_in"] = len(lead_in)
        log.info("%d block(s) of story text before the first illustration left out (a lead-in)", len(lead_in))
    frames = [PairedFrame([p], texts=assigned[i], page=p.page or page_of[id(p)])
              for i, p in enumerate(pictures) if i >= start]
    return frames, dropped


def _adopt_displaced(owners: list[int | None], gaps: list[int], holders: set[int], pictures: int) -> None:
    """In a book whose pictures hold their text by structure, a run of pictures holding none after
    one that does, each with loose text just before it and none after the run, takes that text: the
    text of table rows left open, which HTML5 parsers (calibre's among them) move out in front of
    their tables."""
    loose_gaps = {g for o, g in zip(owners, gaps) if o is None}
    adopted: set[int] = set()
    k = 1
    while k < pictures:
        if k in holders or k - 1 not in holders:
            k += 1
            continue
        m = k
        while m + 1 < pictures and m + 1 not in holders:
            m += 1
        if all(j in loose_gaps for j in range(k, m + 1)) and m + 1 not in loose_gaps:
            adopted.update(range(k, m + 1))
        k = m + 1
    for i, (owner, gap) in enumerate(zip(owners, gaps)):
        if owner is None and gap in adopted:
            owners[i] = gap
    holders.update(adopted)


def _end_follows(picture: Picture, pages: list[Page]) -> bool:
    """The next text after the picture is "The End": a last picture with no words of its own."""
    after = [t for page in pages for t in page.texts if t.order > picture.order and t.role != "running"]
    return bool(after) and is_end_marker(min(after, key=lambda t: t.order).text)


def _units(pictures: list[Picture]) -> list[int | None]:
    """Each picture's outermost ancestor holding no other picture (None without ancestors)."""
    counts: dict[int, int] = {}
    for picture in pictures:
        for node in picture.path:
            counts[node] = counts.get(node, 0) + 1
    return [next((node for node in p.path if counts[node] == 1), None) for p in pictures]


# --------------------------------------------------------------------------- geometry


def _reading_order(items: list) -> list:
    """XY-cut: split into rows at horizontal gaps, rows into columns at vertical gaps; by order without boxes."""
    if not items or any(i.box is None for i in items):
        return sorted(items, key=lambda i: i.order)
    return _xy_cut(list(items), horizontal=True)


def _xy_cut(items: list, horizontal: bool) -> list:
    if len(items) <= 1:
        return items
    lo, hi = (1, 3) if horizontal else (0, 2)
    items.sort(key=lambda i: (i.box[lo], i.box[hi - 1 if horizontal else 1]))
    groups, end = [[items[0]]], items[0].box[hi]
    for item in items[1:]:
        if item.box[lo] >= end - 1e-6:
            groups.append([item])
        else:
            groups[-1].append(item)
        end = max(end, item.box[hi])
    if len(groups) == 1:
        if not horizontal:
            return sorted(items, key=lambda i: (i.box[1], i.box[0]))
        return _xy_cut(items, horizontal=False)
    return [x for group in groups for x in _xy_cut(group, not horizontal)]


def _nearest(box: Box, targets: list[Box]) -> int:
    def distance(t: Box) -> tuple[float, int]:
        dx = max(t[0] - box[2], box[0] - t[2], 0.0)
        dy = max(t[1] - box[3], box[1] - t[3], 0.0)
        above = 0 if t[3] <= box[1] + 1e-6 else 1  # a picture above the text wins a tie
        return (round((dx * dx + dy * dy) ** 0.5, 1), above)

    return min(range(len(targets)), key=lambda i: distance(targets[i]))


def _vertical_overlap(a: Box, b: Box) -> float:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, overlap) / max(1e-6, min(a[3] - a[1], b[3] - b[1]))


def _centre_in(box: Box, other: Box) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return other[0] <= cx <= other[2] and other[1] <= cy <= other[3]
