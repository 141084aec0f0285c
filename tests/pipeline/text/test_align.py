"""Tests for pipeline.text.align: sentences to frames by time overlap, monotonic."""

from __future__ import annotations

import random

import pytest

from pipeline.text.align import FrameText, align_by_time, assign_sentences
from pipeline.text.subtitles import Cue

SPANS = [(0.0, 5.0), (5.0, 10.0), (10.0, 15.0)]


def test_sentences_inside_frames():
    sentences = [Cue(0.5, 2.0, "One."), Cue(2.5, 4.5, "Two."), Cue(10.5, 14.0, "Three.")]
    assert align_by_time(sentences, SPANS) == [
        FrameText("One. Two.", 1.0, [], [0, 1]),
        FrameText("", None, ["no_speech"], []),
        FrameText("Three.", 1.0, [], [2]),
    ]


def test_sentence_goes_to_the_frame_it_overlaps_most():
    frames = align_by_time([Cue(4.0, 7.0, "Across.")], SPANS)
    assert [f.sentences for f in frames] == [[], [0], []]
    assert frames[1].score == pytest.approx(0.6667)


def test_equal_overlap_goes_to_the_earlier_frame():
    frames = align_by_time([Cue(4.0, 6.0, "Half and half.")], SPANS)
    assert [f.sentences for f in frames] == [[0], [], []]
    assert frames[0].score == 0.5


def test_sentences_in_gaps_and_outside_all_frames_go_to_the_nearest_frame():
    spans = [(2.0, 4.0), (6.0, 10.0), (12.0, 14.0)]
    sentences = [
        Cue(0.0, 1.0, "Before."),  # before the first frame
        Cue(4.5, 5.5, "Tie."),  # 0.5 s from frames 0 and 1: the earlier
        Cue(10.5, 11.9, "Nearer the last."),  # 0.5 s from frame 1, 0.1 s from frame 2
        Cue(20.0, 21.0, "After."),  # after the last frame
    ]
    assert assign_sentences(sentences, spans) == [0, 0, 2, 2]
    frames = align_by_time(sentences, spans)
    assert [f.text for f in frames] == ["Before. Tie.", "", "Nearer the last. After."]
    assert [f.score for f in frames] == [0.0, None, 0.0]
    assert frames[1].flags == ["no_speech"]


def test_assignment_is_monotonic_with_the_most_overlap():
    spans = [(0.0, 4.0), (4.0, 10.0)]
    # alone, the long sentence belongs to frame 1 (6 s of 10) and the short one to frame 0;
    # in order, both on frame 0 keeps 0.4 + 1.0 of overlap against 0.6 + 0.0 on frame 1
    frames = align_by_time([Cue(0.0, 10.0, "Long."), Cue(3.0, 3.8, "Short.")], spans)
    assert [f.sentences for f in frames] == [[0, 1], []]
    assert frames[0].text == "Long. Short." and frames[0].score == 0.7
    # here moving the later sentence forward costs less than moving the earlier one back
    frames = align_by_time([Cue(5.0, 6.0, "A."), Cue(3.0, 4.2, "B.")], spans)
    assert [f.sentences for f in frames] == [[], [0, 1]]
    assert frames[1].score == pytest.approx((1.0 + 0.2 / 1.2) / 2, abs=1e-4)


def test_zero_length_sentences():
    spans = [(0.0, 5.0), (5.0, 10.0), (12.0, 15.0)]
    sentences = [Cue(2.0, 2.0, "a"), Cue(5.0, 5.0, "b"), Cue(7.0, 7.0, "c"), Cue(11.5, 11.5, "d")]
    frames = align_by_time(sentences, spans)
    assert [f.sentences for f in frames] == [[0, 1], [2], [3]]
    assert [f.score for f in frames] == [1.0, 1.0, 0.0]


def test_no_sentences_no_frames_and_bad_spans():
    assert [f.flags for f in align_by_time([], SPANS)] == [["no_speech"]] * 3
    assert align_by_time([Cue(0.0, 1.0, "x")], []) == []
    with pytest.raises(ValueError, match="sorted and disjoint"):
        align_by_time([], [(0.0, 5.0), (4.0, 8.0)])
    with pytest.raises(ValueError, match="ends before it starts"):
        align_by_time([], [(3.0, 2.0)])


def test_random_story_is_monotonic_and_keeps_contained_sentences():
    rng = random.Random(7)
    bounds = sorted(rng.uniform(0, 600) for _ in range(80))
    spans = [(bounds[i], bounds[i + 1]) for i in range(0, 79, 2)]  # 40 frames with gaps
    sentences, t = [], 0.0
    for n in range(300):
        length = rng.uniform(0.0, 6.0)
        sentences.append(Cue(t, t + length, f"s{n}"))
        t += length + rng.uniform(0.0, 1.5)
    assignment = assign_sentences(sentences, spans)
    assert all(a <= b for a, b in zip(assignment, assignment[1:]))
    for s, j in zip(sentences, assignment):
        inside = [k for k, (t0, t1) in enumerate(spans) if t0 <= s.start and s.end <= t1]
        if inside:
            assert j == inside[0]
    frames = align_by_time(sentences, spans)
    assert sum(len(f.sentences) for f in frames) == 300
    assert " ".join(f.text for f in frames if f.text) == " ".join(s.text for s in sentences)
