"""Sentence-to-frame alignment by monotonic dynamic time warping over time and CLIP evidence.

Narration and pages advance together, so the assignment of sentences (in spoken order) to frames
(in screen order) is monotonic: sentence ``i+1`` never goes to an earlier frame than sentence
``i``. A frame may take several sentences or none (pages shown in silence), and every sentence
goes to exactly one frame. Among those paths :func:`monotonic_assignment` finds the one with the
highest total score by dynamic programming, O(sentences x frames).

The score of sentence ``i`` on frame ``j`` combines two pieces of evidence (:func:`combined_score`):

- the **time prior** ``T[i, j]`` (:func:`time_prior`): the share of the sentence's time spent
  while frame ``j`` is on screen; the share that falls outside every frame (a transition, a
  dropped card) goes to the frames nearest in time, weighted ``exp(-distance / time_scale_s)``.
  Each row sums to 1.
- the **CLIP preference** ``C[i, j]`` (:func:`clip_preference`): a softmax over frames of the
  sentence's CLIP text-image similarity, at the model's own logit scale. Each row sums to 1.

``score = (T + w * C) / (1 + w)``. Timing is the main signal: with ``w < 1`` CLIP can only move a
sentence between frames whose time shares differ by less than ``w`` (a sentence straddling a
page turn, or spoken in a gap), which is where timing alone is ambiguous. StorySalon aligned with
CLIP and DTW alone; a sentence spoken entirely over one page stays on that page here whatever
CLIP says. Ties go to the earlier frame.

The units are those of :func:`pipeline.text.align.text_units`: words where the narration has
word timings, else sentences (split by estimate only where one runs well across a turn). A
word's own time is better evidence than the similarity of a whole cue to a picture, so words
are placed by time alone (their CLIP weight is 0, and cuts between them move to pauses as in
:func:`pipeline.text.align.align_by_time`); a piece of a sentence takes its sentence's similarity.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pipeline.text.align import (
    WORDS,
    FrameText,
    TextUnit,
    check_spans,
    frame_texts,
    monotonic_assignment,
    overlap_fractions,
    refine_word_cuts,
    span_distances,
    text_units,
    unit_texts,
)
from pipeline.text.subtitles import Cue


def time_prior(sentences: Sequence[Cue | TextUnit], spans: Sequence[tuple[float, float]],
               time_scale_s: float = 1.0) -> np.ndarray:
    """(sentences, frames): each sentence's (unit's) share of time on each frame; rows sum to 1."""
    check_spans(spans)
    overlap = overlap_fractions(sentences, spans)  # (n, m)
    outside = np.clip(1.0 - overlap.sum(axis=1, keepdims=True), 0.0, 1.0)  # (n, 1) time on no frame
    distance = span_distances(sentences, spans)  # (n, m) seconds, 0 where they touch
    nearness = np.exp(-(distance - distance.min(axis=1, keepdims=True)) / time_scale_s)  # max 1 per row
    nearness /= nearness.sum(axis=1, keepdims=True)
    return overlap + outside * nearness


def clip_preference(similarity: np.ndarray, logit_scale: float) -> np.ndarray:
    """(sentences, frames): softmax over frames of text-image cosine similarity x ``logit_scale``."""
    logits = np.asarray(similarity, dtype=np.float64) * float(logit_scale)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def combined_score(prior: np.ndarray, preference: np.ndarray | None, weight: float) -> np.ndarray:
    """``(T + w * C) / (1 + w)``, in [0, 1]; just ``T`` without CLIP evidence."""
    if preference is None or weight == 0:
        return np.asarray(prior, dtype=np.float64)
    return (prior + weight * preference) / (1.0 + weight)


def align_sentences(
    sentences: Sequence[Cue],
    spans: Sequence[tuple[float, float]],
    similarity: np.ndarray | None = None,
    logit_scale: float = 100.0,
    weight: float = 0.3,
    time_scale_s: float = 1.0,
) -> list[FrameText]:
    """Sentences to frames by monotonic DTW over time and (optionally) CLIP similarity.

    ``similarity`` is (sentences, frames) cosine similarity of sentence text and frame image.
    Returns one :class:`~pipeline.text.align.FrameText` per frame, as :func:`~pipeline.text.align.align_by_time`
    does: text joined by spaces, ``no_speech`` on frames without text, how the text was assigned,
    and as score the mean combined score of the frame's units (their share of time on it when
    no CLIP, or for words).
    """
    check_spans(spans)
    if not spans:
        return []
    if not sentences:
        return frame_texts(sentences, [], None, len(spans))
    if similarity is not None:
        similarity = np.asarray(similarity)
        if similarity.shape != (len(sentences), len(spans)):
            raise ValueError(f"similarity has shape {similarity.shape}, expected {(len(sentences), len(spans))} "
                             "(sentences, frames)")
    units = text_units(sentences, spans)
    if not units:
        return frame_texts([], [], None, len(spans))
    prior = time_prior(units, spans, time_scale_s)
    score = prior
    if similarity is not None:
        rows = [u.sentence for u in units]
        combined = combined_score(prior, clip_preference(similarity[rows], logit_scale), weight)
        by_time = np.array([u.how == WORDS for u in units])[:, None]
        score = np.where(by_time, prior, combined)
    assignment = refine_word_cuts(units, spans, monotonic_assignment(score))
    return unit_texts(units, assignment, score, len(spans))
