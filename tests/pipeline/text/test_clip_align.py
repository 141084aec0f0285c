"""Monotonic DTW alignment on constructed score and similarity matrices with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.text.align import align_by_time
from pipeline.text.clip_align import align_sentences, clip_preference, combined_score, monotonic_assignment, time_prior
from pipeline.text.subtitles import Cue


def brute_force(score: np.ndarray) -> list[int]:
    """The best non-decreasing path by enumeration; the lexicographically earliest among equals."""
    n, m = score.shape
    best, best_path = -np.inf, None
    for path in itertools.combinations_with_replacement(range(m), n):  # non-decreasing, in lexicographic order
        total = sum(score[i, j] for i, j in enumerate(path))
        if total > best + 1e-12:
            best, best_path = total, list(path)
    return best_path


def test_diagonal_and_shapes():
    assert monotonic_assignment(np.eye(4)) == [0, 1, 2, 3]
    assert monotonic_assignment(np.zeros((0, 3))) == []
    with pytest.raises(ValueError, match="zero frames"):
        monotonic_assignment(np.zeros((2, 0)))


def test_greedy_choice_out_of_order_is_repaired():
    # sentence 1 prefers frame 0 a little, but sentence 0 is certainly on frame 1: monotonic
    # paths put both on frame 1 (0.9 + 0.4 = 1.3 beats 0.1 + 0.6 = 0.7 and 0.9 + ... on frame 0)
    score = np.array([[0.1, 0.9, 0.0],
                      [0.6, 0.4, 0.0],
                      [0.0, 0.1, 0.9]])
    assert monotonic_assignment(score) == [1, 1, 2]


def test_frames_may_stay_empty_and_take_several_sentences():
    score = np.array([[0.9, 0.1, 0.0, 0.0],
                      [0.8, 0.2, 0.0, 0.0],
                      [0.0, 0.0, 0.1, 0.9]])
    assert monotonic_assignment(score) == [0, 0, 3]  # frames 1 and 2 get no sentence


def test_ties_go_to_the_earlier_frame():
    assert monotonic_assignment(np.array([[0.5, 0.5], [0.5, 0.5]])) == [0, 0]


@pytest.mark.parametrize("seed", range(20))
def test_matches_brute_force_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    score = rng.random((n, m)).round(1)  # rounded: plenty of ties
    path = monotonic_assignment(score)
    expected = brute_force(score)
    assert sum(score[i, j] for i, j in enumerate(path)) == pytest.approx(sum(score[i, j] for i, j in enumerate(expected)))
    assert path == expected


SPANS = [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)]


def test_time_prior_shares_time_and_spreads_gaps_to_the_nearest_frame():
    sentences = [Cue(1.0, 3.0, "inside"), Cue(3.0, 5.0, "straddles"), Cue(12.5, 13.5, "after the end")]
    prior = time_prior(sentences, SPANS, time_scale_s=1.0)
    assert prior.sum(axis=1) == pytest.approx([1.0, 1.0, 1.0])
    assert prior[0] == pytest.approx([1.0, 0.0, 0.0])
    assert prior[1] == pytest.approx([0.5, 0.5, 0.0])
    # 8.5, 4.5 and 0.5 s away: weights exp(-8), exp(-4), 1
    weights = np.exp([-8.0, -4.0, 0.0])
    assert prior[2] == pytest.approx(weights / weights.sum())


def test_clip_preference_is_a_softmax_over_frames():
    preference = clip_preference(np.array([[0.30, 0.20, 0.20]]), logit_scale=100.0)
    assert preference.sum() == pytest.approx(1.0)
    assert preference[0, 0] == pytest.approx(np.exp(10) / (np.exp(10) + 2))
    assert combined_score(np.array([[1.0, 0.0]]), None, 0.3).tolist() == [[1.0, 0.0]]


def test_without_clip_the_answer_is_the_time_alignment():
    sentences = [Cue(0.5, 3.5, "One."), Cue(4.2, 6.0, "Two."), Cue(6.5, 7.9, "Three."), Cue(8.5, 11.0, "Four.")]
    by_time = align_by_time(sentences, SPANS)
    by_dtw = align_sentences(sentences, SPANS)
    assert [f.text for f in by_dtw] == [f.text for f in by_time] == ["One.", "Two. Three.", "Four."]
    assert [f.score for f in by_dtw] == [1.0, 1.0, 1.0]


def test_clip_settles_a_sentence_straddling_a_page_turn():
    # "Two." is spoken half over frame 0 and half over frame 1: timing cannot tell
    sentences = [Cue(0.5, 2.5, "One."), Cue(3.0, 5.0, "Two."), Cue(9.0, 11.0, "Three.")]
    prefers_frame_1 = np.array([[0.3, 0.1, 0.1],
                                [0.1, 0.3, 0.1],
                                [0.1, 0.1, 0.3]])
    prefers_frame_0 = prefers_frame_1.copy()
    prefers_frame_0[1] = [0.3, 0.1, 0.1]
    assert [f.text for f in align_sentences(sentences, SPANS, prefers_frame_1)] == ["One.", "Two.", "Three."]
    assert [f.text for f in align_sentences(sentences, SPANS, prefers_frame_0)] == ["One. Two.", "", "Three."]


def test_clip_settles_a_sentence_spoken_in_a_gap():
    spans = [(0.0, 4.0), (6.0, 10.0)]  # a dropped card between the two pages
    sentences = [Cue(4.6, 5.4, "In the gap.")]  # as near to one page as to the other
    towards_second = np.array([[0.1, 0.3]])
    towards_first = np.array([[0.3, 0.1]])
    assert [f.text for f in align_sentences(sentences, spans, towards_second)] == ["", "In the gap."]
    assert [f.text for f in align_sentences(sentences, spans, towards_first)] == ["In the gap.", ""]


def test_timing_wins_where_it_is_clear():
    # "Two." lies entirely in frame 1; CLIP says frame 2 with all its confidence: timing wins at w < 1
    sentences = [Cue(0.5, 3.5, "One."), Cue(4.5, 7.5, "Two."), Cue(8.5, 11.5, "Three.")]
    clip_says_frame_2 = np.array([[1.0, 0.0, 0.0],
                                  [0.0, 0.0, 1.0],
                                  [0.0, 0.0, 1.0]])
    frames = align_sentences(sentences, SPANS, clip_says_frame_2, logit_scale=100.0, weight=0.3)
    assert [f.text for f in frames] == ["One.", "Two.", "Three."]
    # its score shows the disagreement: (1 + 0.3 * ~0) / 1.3
    assert frames[1].score == pytest.approx(1 / 1.3, abs=1e-3)
    assert frames[0].score == pytest.approx(1.0, abs=1e-3)


def test_output_shape_and_flags():
    frames = align_sentences([Cue(1.0, 2.0, "Only.")], SPANS, np.zeros((1, 3)))
    assert [f.text for f in frames] == ["Only.", "", ""]
    assert [f.flags for f in frames] == [[], ["no_speech"], ["no_speech"]]
    assert frames[1].score is None
    assert align_sentences([], SPANS)[0].flags == ["no_speech"]
    with pytest.raises(ValueError, match="shape"):
        align_sentences([Cue(1.0, 2.0, "x")], SPANS, np.zeros((2, 3)))
