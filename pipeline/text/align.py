"""Time alignment: which narration sentences belong to which frame (shot) of a video.

Each sentence goes to the frame its time span overlaps most; a sentence that overlaps no frame
goes to the nearest one in time. Narration and pages advance together, so the assignment is
monotonic: among the monotonic assignments the one with the largest total overlap is chosen by
dynamic programming, which equals the per-sentence choice whenever that is already in order.
Ties go to the earlier frame. A later stage may refine this with image-text similarity.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from pipeline.text.subtitles import Cue

log = logging.getLogger(__name__)

_NEAR_WEIGHT = 1e-6  # breaks ties between non-overlapping frames by distance, never outweighs overlap
_SPAN_TOLERANCE_S = 1e-6


@dataclass
class FrameText:
    """The narration of one frame: its text, alignment score, flags and sentence indices."""

    text: str
    score: float | None  # mean share of its sentences' time inside the frame; None without sentences
    flags: list[str] = field(default_factory=list)
    sentences: list[int] = field(default_factory=list)


def align_by_time(sentences: Sequence[Cue], spans: Sequence[tuple[float, float]]) -> list[FrameText]:
    """Assign sentences (in spoken order) to frames given as sorted, disjoint (t_start, t_end).

    Returns one :class:`FrameText` per span. A frame's text is its sentences joined by single
    spaces; a frame without sentences has text "", score None and the flag "no_speech". The
    score is the mean over the frame's sentences of (overlap with the frame / sentence
    duration); a zero-length sentence counts 1.0 when its instant lies inside the frame.
    """
    check_spans(spans)
    if not spans:
        return []
    assignment = assign_sentences(sentences, spans) if sentences else []
    overlap = overlap_fractions(sentences, spans) if sentences else None
    return frame_texts(sentences, assignment, overlap, len(spans))


def frame_texts(
    sentences: Sequence[Cue], assignment: Sequence[int], score: np.ndarray | None, frames: int
) -> list[FrameText]:
    """One FrameText per frame from a sentence -> frame assignment (shared by every aligner).

    A frame's text is its sentences joined by single spaces and its score the mean ``score[i, j]``
    of its sentences; a frame without sentences gets text "", score None and the flag "no_speech".
    """
    texts = [FrameText(text="", score=None) for _ in range(frames)]
    for i, j in enumerate(assignment):
        texts[j].sentences.append(i)
    for j, frame in enumerate(texts):
        if not frame.sentences:
            frame.flags.append("no_speech")
            continue
        frame.text = " ".join(t for t in (sentences[i].text.strip() for i in frame.sentences) if t)
        frame.score = round(float(np.mean([score[i, j] for i in frame.sentences])), 4)
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
    """The frame index of every sentence: the monotonic assignment with the most overlap."""
    check_spans(spans)
    if not sentences:
        return []
    if not spans:
        raise ValueError("cannot assign sentences to zero frames")
    preference = overlap_fractions(sentences, spans) + _NEAR_WEIGHT / (1.0 + span_distances(sentences, spans))
    assignment = monotonic_assignment(preference)
    independent = np.argmax(preference, axis=1)
    moved = int(np.sum(independent != np.asarray(assignment)))
    if moved:
        log.debug("monotonic alignment moved %d of %d sentence(s) off their best frame", moved, len(assignment))
    return assignment


def overlap_fractions(sentences: Sequence[Cue], spans: Sequence[tuple[float, float]]) -> np.ndarray:
    """(n, m): share of each sentence's time inside each frame (instants: 1.0 inside, else 0)."""
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


def span_distances(sentences: Sequence[Cue], spans: Sequence[tuple[float, float]]) -> np.ndarray:
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
