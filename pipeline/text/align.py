"""Time alignment: which narration belongs to which frame (page) of a video.

The narration is cut into *units* (:func:`text_units`), each assigned to one frame:

- with word timings (auto-captions), every **word** is a unit, so a cue that runs across a page
  turn is cut at the turn. A word lasts from its start to the next word's start, at most as long
  as its letters take at the track's own speaking rate (so a pause after it does not count);
- without them, a **sentence** (or cue) is a unit, whole, on the frame it overlaps most. A
  complete sentence (it ends with . ! ? and the like) always stays whole: in read-alouds a page
  almost always ends with a sentence, so a sentence across a detected turn says more about the
  turn (a missed or false page change) than about the sentence. Text that does not end a
  sentence (a caption line or transcript chunk without punctuation, which runs on across pages)
  is **split by estimate** where it runs across a turn with at least ``SPLIT_MIN_S`` of its time
  on both sides: the cut is the word boundary nearest to where the turn falls when the text's
  time is shared by its characters (a clause break close to that is preferred). Less than that on
  one side is what detection slop and narration that starts before the page settles (or runs
  past the turn) look like, and within the estimate's own error of a word or two, so the text
  stays whole.

Each unit goes to the frame its time span overlaps most; a unit that overlaps no frame goes to
the nearest one in time. Narration and pages advance together, so the assignment is monotonic:
among the monotonic assignments the one with the largest total overlap is chosen by dynamic
programming, which equals the per-unit choice whenever that is already in order. Ties go to the
earlier frame. Keyframe spans run from one transition's midpoint to the next, so narration that
starts while a page fades in, or ends while it fades out, is already inside its page's span.
Where words change frames, the cut then moves to a clear pause (at least ``MIN_PAUSE_S``) within
``PAUSE_WINDOW_S`` of the turn if one is there: a reader pauses at a page turn, and the pause is
a better witness of it than a turn detected a frame or two early or late.

Every frame records how its text was assigned (:class:`FrameText` ``assignment``, the weakest of
its units): ``words``, ``sentences`` or ``split_estimate``; and a confidence ``score`` in [0, 1]:
the mean over its units of the share of the unit's time inside the frame, at most
``SPLIT_CONFIDENCE`` when part of its text was split by estimate. Text far from the frame scores
0. A later stage may refine the sentence units with image-text similarity
(:mod:`pipeline.text.clip_align`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pipeline.text.subtitles import Cue, ends_sentence

log = logging.getLogger(__name__)

_NEAR_WEIGHT = 1e-6  # breaks ties between non-overlapping frames by distance, never outweighs overlap
_SPAN_TOLERANCE_S = 1e-6

WORDS = "words"  # the frame's text was assigned word by word, by the words' own times
SENTENCES = "sentences"  # whole sentences (or cues) went to the frame they overlap most
SPLIT_ESTIMATE = "split_estimate"  # part of it is a sentence cut at a turn where its characters' time share says
ASSIGNMENTS = (WORDS, SENTENCES, SPLIT_ESTIMATE)  # from the surest to the least sure

SPLIT_MIN_S = 1.5  # an untimed sentence is split at a turn only with this much of its time on both sides
SPLIT_CONFIDENCE = 0.4  # the most a frame holding text split by estimate scores: below 0.5, a guess
CLAUSE_WINDOW_S = 0.4  # a clause break (, ; :) this close to the estimated cut is preferred to the nearest space
MIN_PAUSE_S = 0.25  # a silence this long between words is a pause a page turn may fall in
PAUSE_WINDOW_S = 0.5  # ... when it is at most this far from the turn
PAUSE_DISTANCE_COST = 2.0  # seconds of pause that one second of distance from the turn costs
WORD_S_PER_CHAR = (0.04, 0.15)  # the speaking rate (s per character, space included) is kept in this range
WORD_MAX_S = 1.2  # no word lasts longer than this
_CLAUSE_END = ",;:–—"


@dataclass
class FrameText:
    """The narration of one frame: its text, alignment score, flags, sentence indices and how
    the text was assigned (one of :data:`ASSIGNMENTS`, None without text)."""

    text: str
    score: float | None  # mean share of its units' time inside the frame; None without text
    flags: list[str] = field(default_factory=list)
    sentences: list[int] = field(default_factory=list)  # the sentences (all or part) on this frame
    assignment: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class TextUnit:
    """A piece of narration assigned as one: a word, a whole sentence, or a piece of one.

    ``how`` is one of :data:`ASSIGNMENTS`; ``sentence`` the index of the sentence it comes from.
    """

    start: float
    end: float
    text: str
    sentence: int
    how: str


def align_by_time(sentences: Sequence[Cue], spans: Sequence[tuple[float, float]]) -> list[FrameText]:
    """Assign the narration (sentences in spoken order) to frames given as sorted, disjoint (t_start, t_end).

    Returns one :class:`FrameText` per span. A frame's text is its units (words, sentences or
    pieces of sentences, :func:`text_units`) joined by single spaces; a frame without any has
    text "", score None and the flag "no_speech". The score is the mean over the frame's units
    of (overlap with the frame / unit duration); a zero-length unit counts 1.0 when its instant
    lies inside the frame. Without word timings and without sentences crossing a turn by much,
    units are the sentences, and this is exactly the sentence alignment.
    """
    check_spans(spans)
    if not spans:
        return []
    units = text_units(sentences, spans)
    if not units:
        return frame_texts([], [], None, len(spans))
    overlap = overlap_fractions(units, spans)
    assignment = refine_word_cuts(units, spans, assign_units(units, spans))
    return unit_texts(units, assignment, overlap, len(spans))


def text_units(sentences: Sequence[Cue], spans: Sequence[tuple[float, float]]) -> list[TextUnit]:
    """The narration as units to assign: the words of word-timed sentences, else whole sentences,
    or pieces of a sentence that runs well across a turn (:func:`split_at_turns`)."""
    timed = [w for s in sentences for w in s.words]
    rate = speaking_rate(timed) if timed else None
    units: list[TextUnit] = []
    for i, sentence in enumerate(sentences):
        if sentence.words:
            for word in sentence.words:
                end = min(max(word.end, word.start), word.start + min(WORD_MAX_S, rate * (len(word.text) + 1)))
                units.append(TextUnit(word.start, end, word.text, i, WORDS))
            continue
        text = sentence.text.strip()
        if not text:
            continue
        pieces = [(sentence.start, sentence.end, text)] if ends_sentence(text) else split_at_turns(sentence, spans)
        how = SPLIT_ESTIMATE if len(pieces) > 1 else SENTENCES
        units.extend(TextUnit(t0, t1, piece, i, how) for t0, t1, piece in pieces)
    return units


def speaking_rate(words: Sequence) -> float:
    """Seconds per character (one space included) of word-timed narration: the median over
    consecutive words of the time from one start to the next, clamped to ``WORD_S_PER_CHAR``."""
    rates = [(b.start - a.start) / (len(a.text) + 1) for a, b in zip(words, words[1:]) if b.start > a.start]
    low, high = WORD_S_PER_CHAR
    return float(np.clip(np.median(rates), low, high)) if rates else high


def split_at_turns(sentence: Cue, spans: Sequence[tuple[float, float]]) -> list[tuple[float, float, str]]:
    """``(start, end, text)`` pieces of untimed text, cut at the page turns it runs across.

    A turn inside the sentence cuts it only when at least ``SPLIT_MIN_S`` of the sentence's time
    lies on each side of it (and of any earlier cut). The cut is the word boundary nearest to
    the character the turn falls on when the sentence's time is shared evenly by its characters;
    a clause break (after , ; : or a dash) within ``CLAUSE_WINDOW_S`` of it is preferred. A cut
    that would leave a piece without a word is not made. Each piece keeps the time from the
    turn before it to the turn after it, so it lies on one frame. One piece: the sentence whole.
    """
    text = " ".join(sentence.text.split())
    start, end = sentence.start, max(sentence.end, sentence.start)
    duration = end - start
    whole = [(start, end, text)]
    if duration < 2 * SPLIT_MIN_S:
        return whole
    gaps = [m.start() for m in re.finditer(" ", text)]  # a cut at gaps[k]: text[:k], text[k+1:]
    if not gaps:
        return whole
    turns = [(a_end + b_start) / 2 for (_, a_end), (b_start, _) in zip(spans, spans[1:])]
    per_char = duration / len(text)
    cuts: list[tuple[float, int]] = []  # (turn time, character index of the space)
    for turn in turns:
        last_time, last_at = cuts[-1] if cuts else (start, -1)
        if turn - last_time < SPLIT_MIN_S or end - turn < SPLIT_MIN_S:
            continue
        estimate = (turn - start) / per_char
        options = [g for g in gaps if g > last_at]
        if not options:
            break
        nearest = min(options, key=lambda g: abs(g + 0.5 - estimate))
        clauses = [g for g in options if text[g - 1] in _CLAUSE_END and abs(g + 0.5 - estimate) * per_char <= CLAUSE_WINDOW_S]
        at = min(clauses, key=lambda g: abs(g + 0.5 - estimate)) if clauses else nearest
        cuts.append((turn, at))
    if not cuts:
        return whole
    pieces, t0, begin = [], start, 0
    for turn, at in cuts:
        pieces.append((t0, turn, text[begin:at]))
        t0, begin = turn, at + 1
    pieces.append((t0, end, text[begin:]))
    return pieces


def frame_texts(
    sentences: Sequence[Cue], assignment: Sequence[int], score: np.ndarray | None, frames: int
) -> list[FrameText]:
    """One FrameText per frame from a sentence -> frame assignment (whole sentences).

    A frame's text is its sentences joined by single spaces and its score the mean ``score[i, j]``
    of its sentences; a frame without sentences gets text "", score None and the flag "no_speech".
    """
    units = [TextUnit(s.start, s.end, s.text, i, SENTENCES) for i, s in enumerate(sentences)]
    return unit_texts(units, assignment, score, frames)


def unit_texts(units: Sequence[TextUnit], assignment: Sequence[int], score: np.ndarray | None,
               frames: int) -> list[FrameText]:
    """One FrameText per frame from a unit -> frame assignment (shared by every aligner).

    A frame's text is its units joined by single spaces, its score the mean ``score[i, j]`` of
    its units (at most ``SPLIT_CONFIDENCE`` when one is a piece split by estimate), its
    assignment the least sure of its units'. A frame without units gets text "", score None and
    the flag "no_speech".
    """
    texts = [FrameText(text="", score=None) for _ in range(frames)]
    members: list[list[int]] = [[] for _ in range(frames)]
    for i, j in enumerate(assignment):
        members[j].append(i)
    for j, frame in enumerate(texts):
        if not members[j]:
            frame.flags.append("no_speech")
            continue
        mine = [units[i] for i in members[j]]
        frame.sentences = sorted({u.sentence for u in mine})
        frame.text = " ".join(t for t in (u.text.strip() for u in mine) if t)
        value = float(np.mean([score[i, j] for i in members[j]]))
        frame.assignment = max((u.how for u in mine), key=ASSIGNMENTS.index)
        if frame.assignment == SPLIT_ESTIMATE:
            value = min(value, SPLIT_CONFIDENCE)
        frame.score = round(value, 4)
    return texts


def monotonic_assignment(score: np.ndarray) -> list[int]:
    """The column of every row: non-decreasing columns with the largest total ``score``.

    ``score`` is (rows, columns) = (sentences, frames). Among equal totals the path that puts
    each row as early as possible wins.
    """
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 2:
        raise ValueError(f"score must be a 2-D (sentences, frames) matrix, got shape {score.shape}")
    n, m = score.shape
    if n == 0:
        return []
    if m == 0:
        raise ValueError("cannot assign sentences to zero frames")
    columns = np.arange(m)
    total = score[0].copy()  # (m,) best total of rows 0..i with row i on column j
    back = np.zeros((n, m), dtype=np.int64)  # earliest best column of row i-1 given row i on column j
    for i in range(1, n):
        best_before = np.maximum.accumulate(total)  # (m,) best over columns <= j
        # the earliest column reaching best_before[j]: it only moves when the running max strictly rises
        rises = np.concatenate(([True], total[1:] > best_before[:-1]))
        back[i] = np.maximum.accumulate(np.where(rises, columns, 0))
        total = score[i] + best_before
    j = int(np.argmax(total))  # argmax takes the earliest of equal maxima
    path = [j]
    for i in range(n - 1, 0, -1):
        j = int(back[i, j])
        path.append(j)
    path.reverse()
    return path


def assign_sentences(sentences: Sequence[Cue], spans: Sequence[tuple[float, float]]) -> list[int]:
    """The frame index of every sentence, whole: the monotonic assignment with the most overlap."""
    return assign_units(sentences, spans)


def assign_units(units: Sequence, spans: Sequence[tuple[float, float]]) -> list[int]:
    """The frame index of every unit (anything with ``start`` and ``end``): the monotonic
    assignment with the most overlap, the nearest frame for a unit that overlaps none."""
    check_spans(spans)
    if not units:
        return []
    if not spans:
        raise ValueError("cannot assign sentences to zero frames")
    preference = overlap_fractions(units, spans) + _NEAR_WEIGHT / (1.0 + span_distances(units, spans))
    assignment = monotonic_assignment(preference)
    independent = np.argmax(preference, axis=1)
    moved = int(np.sum(independent != np.asarray(assignment)))
    if moved:
        log.debug("monotonic alignment moved %d of %d unit(s) off their best frame", moved, len(assignment))
    return assignment


def refine_word_cuts(units: Sequence[TextUnit], spans: Sequence[tuple[float, float]],
                     assignment: Sequence[int]) -> list[int]:
    """Move each place where consecutive words change frames to a clear pause near the turn.

    For two consecutive words on different frames, the candidates are the other places between
    two words of the same stretch (the words of the two frames, each keeping at least one) whose
    silence lies within ``PAUSE_WINDOW_S`` of the turn between the frames; each is worth its
    silence minus ``PAUSE_DISTANCE_COST`` times its distance from the turn. The best one, when
    its silence is at least ``MIN_PAUSE_S`` and it is worth more than the place by time, becomes
    the cut. Units that are not words are never moved.
    """
    a = list(assignment)
    n = len(units)
    c = 1
    while c < n:
        left, right = a[c - 1], a[c]
        if left == right or units[c - 1].how != WORDS or units[c].how != WORDS:
            c += 1
            continue
        lo = c - 1  # first word of the left frame's stretch
        while lo > 0 and a[lo - 1] == left and units[lo - 1].how == WORDS:
            lo -= 1
        hi = c  # last word of the right frame's stretch
        while hi + 1 < n and a[hi + 1] == right and units[hi + 1].how == WORDS:
            hi += 1
        zone = (spans[left][1], spans[right][0])  # the turn (or the silent pages between them)
        best, best_value = c, _cut_worth(units, c, zone)[0]
        for k in range(lo + 1, hi + 1):
            value, silence = _cut_worth(units, k, zone)
            if silence >= MIN_PAUSE_S and value > best_value + 1e-9:
                best, best_value = k, value
        if best < c:
            a[best:c] = [right] * (c - best)
        elif best > c:
            a[c:best] = [left] * (best - c)
        c = max(best, c) + 1
    return a


def _cut_worth(units: Sequence[TextUnit], k: int, zone: tuple[float, float]) -> tuple[float, float]:
    """What cutting before word ``k`` is worth near a turn ``zone``: (its silence less
    ``PAUSE_DISTANCE_COST`` x its distance from the zone, its silence or -1 beyond ``PAUSE_WINDOW_S``)."""
    silence = max(0.0, units[k].start - units[k - 1].end)
    gap = (units[k - 1].end, max(units[k].start, units[k - 1].end))
    distance = max(0.0, zone[0] - gap[1], gap[0] - zone[1])
    return silence - PAUSE_DISTANCE_COST * distance, (silence if distance <= PAUSE_WINDOW_S else -1.0)


def overlap_fractions(sentences: Sequence[Cue | TextUnit], spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """(n, m): share of each sentence's (unit's) time inside each frame (instants: 1.0 inside, else 0)."""
    starts = np.array([s.start for s in sentences], dtype=np.float64)[:, None]  # (n, 1)
    ends = np.array([max(s.end, s.start) for s in sentences], dtype=np.float64)[:, None]
    t0 = np.array([a for a, _ in spans], dtype=np.float64)[None, :]  # (1, m)
    t1 = np.array([b for _, b in spans], dtype=np.float64)[None, :]
    duration = ends - starts
    overlap = np.clip(np.minimum(ends, t1) - np.maximum(starts, t0), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(duration > 0, overlap / np.where(duration > 0, duration, 1.0), 0.0)
    inside = (starts >= t0) & (starts <= t1)
    return np.where(duration > 0, fraction, inside.astype(np.float64))


def span_distances(sentences: Sequence[Cue | TextUnit], spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """(n, m): seconds between each sentence and each frame, 0 where they touch or overlap."""
    starts = np.array([s.start for s in sentences], dtype=np.float64)[:, None]
    ends = np.array([max(s.end, s.start) for s in sentences], dtype=np.float64)[:, None]
    t0 = np.array([a for a, _ in spans], dtype=np.float64)[None, :]
    t1 = np.array([b for _, b in spans], dtype=np.float64)[None, :]
    return np.maximum(np.maximum(t0 - ends, starts - t1), 0.0)


def check_spans(spans: Sequence[tuple[float, float]]) -> None:
    previous_end = float("-inf")
    for j, (t0, t1) in enumerate(spans):
        if t1 < t0:
            raise ValueError(f"frame span {j} ends before it starts: ({t0}, {t1})")
        if t0 < previous_end - _SPAN_TOLERANCE_S:
            raise ValueError(f"frame spans must be sorted and disjoint; span {j} ({t0}, {t1}) starts before {previous_end}")
        previous_end = t1
