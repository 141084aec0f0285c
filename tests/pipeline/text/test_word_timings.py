"""Auto-captions with inline word timings: parsed, de-duplicated by time, assigned word by word;
sentences without timings split only by estimate, and scored low where that is a guess."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline import synthetic as S
from pipeline.text.align import (
    SPLIT_CONFIDENCE,
    align_by_time,
    assign_units,
    text_units,
)
from pipeline.text.clip_align import align_sentences
from pipeline.text.subtitles import (
    Cue,
    Word,
    clean_cues,
    parse_subtitles,
    split_sentences,
)
from pipeline.text.transcript import Transcript
from tests.pipeline.text.test_subtitles import AUTO_VTT

STORY = [
    "The Red Kite",
    "Ama made a kite. It was red and very light.",
    "The wind pulled it up, up, up over the trees.",
    "The string broke! The kite flew away.",
    "A goat found it in the hills. Now the goat flies it.",
    "Run, run, as fast as you can. Run, run, as fast as you can.",
]


def norm(text: str) -> str:
    return " ".join(w for w in (S.caption_word(t) for t in text.split()) if w)


def narration(vtt: str) -> list[Cue]:
    """What the subtitle text source makes of a track: parsed, cleaned, split into sentences."""
    return split_sentences(clean_cues(parse_subtitles(vtt)), "en")


def planned(style: str, seed: int, tight: bool) -> list[S.Segment]:
    """The truth segments of a generated video (planned only, nothing rendered)."""
    pages = [S.PageSpec(text, 2.6 + 0.4 * (i % 3), speech=(0.0, 2.55 + 0.4 * (i % 3)) if tight else None)
             for i, text in enumerate(STORY)]
    spec = S.VideoSpec(pages=pages, style=style, intro=True, outro=True, audio=False, seed=seed)
    return S.FrameRenderer(spec).segments


def auto_track(segments: list[S.Segment], seed: int, line_s=(3.0, 6.0)) -> str:
    words = [w for seg in segments for w in seg.words]
    music = [(s.t_start, s.t_end) for s in segments if s.kind != "page"]
    return S.auto_caption_vtt(words, seed=seed, music=music, end_s=segments[-1].t_end, line_s=line_s)


# --------------------------------------------------------------------------- parsing


def test_parser_keeps_inline_word_timings_and_strips_them_from_the_text():
    cues = parse_subtitles(AUTO_VTT)
    cue = cues[2]
    assert cue.text == "[Music]\nonce upon a time there was"
    assert [(w.start, w.text) for w in cue.words] == [
        (3.12, "once"), (3.52, "upon"), (3.879, "a"), (4.12, "time"), (4.48, "there"), (4.799, "was")]
    assert [w.end for w in cue.words] == [3.52, 3.879, 4.12, 4.48, 4.799, 5.749]  # the cue's end closes the last
    assert cues[3].words == ()  # the 10 ms snapshot: no timings
    # the untimed rolling repeat above the new line has none either: only the timed line's words
    assert [w.text for w in cues[4].words] == ["a", "little", "fox", "who", "said", "yum"]


def test_parser_reads_short_timings_glued_words_and_clamps_out_of_range_times():
    vtt = ("WEBVTT\n\n00:00:10.000 --> 00:00:12.000\n"
           "big<00:10.500><c> red</c><00:11.000><c>dish</c><00:13.000><c> done</c>\n")
    (cue,) = parse_subtitles(vtt)
    assert cue.text == "big reddish done"
    assert [(w.start, w.end, w.text) for w in cue.words] == [
        (10.0, 10.5, "big"), (10.5, 12.0, "reddish"), (12.0, 12.0, "done")]


def test_words_do_not_change_equality_or_clean_subtitles():
    assert Cue(1.0, 2.0, "hi", (Word(1.0, 2.0, "hi"),)) == Cue(1.0, 2.0, "hi")
    manual = "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nOnce upon a time.\n"
    assert all(c.words == () for c in clean_cues(parse_subtitles(manual)))


# --------------------------------------------------------------------------- cleaning


REFRAIN_VTT = """WEBVTT
Kind: captions
Language: en

00:00:01.000 --> 00:00:02.990 align:start position:0%
 
run<00:00:01.400><c> run</c>

00:00:02.990 --> 00:00:03.000 align:start position:0%
run run
 

00:00:03.000 --> 00:00:04.990 align:start position:0%
run run
run<00:00:03.400><c> run</c>

00:00:04.990 --> 00:00:05.000 align:start position:0%
run run
 

00:00:05.000 --> 00:00:06.990 align:start position:0%
run run
run<00:00:05.400><c> run</c>

00:00:05.000 --> 00:00:06.990 align:start position:0%
run run
run<00:00:05.400><c> run</c>

00:00:06.990 --> 00:00:08.000 align:start position:0%
run run
fox
"""


def test_rolling_lines_are_deduplicated_by_time_not_by_text():
    # a refrain spoken three times looks like the same line three times: by text, the third "run
    # run" repeats both lines of the cue before it and would be lost; by time it is new. The
    # cue written twice (same times) is one; "fox", a one-word line, has no timing and is new.
    cues = clean_cues(parse_subtitles(REFRAIN_VTT))
    assert [c.text for c in cues] == ["run run", "run run", "run run", "fox"]
    assert [w.start for c in cues for w in c.words] == [1.0, 1.4, 3.0, 3.4, 5.0, 5.4, 6.99]
    assert cues[-1].words == (Word(6.99, 8.0, "fox"),)


def test_cleaned_word_timed_cues_have_words_for_all_their_text():
    cues = clean_cues(parse_subtitles(AUTO_VTT))
    assert [c.text for c in cues] == ["once upon a time there was", "a little fox who said yum", "yum yum the end",
                                      "thank you"]
    for cue in cues:
        assert " ".join(w.text for w in cue.words) == cue.text
    assert [w.start for w in cues[2].words] == [8.2, 8.4, 9.12, 9.36]  # ">>" gone with its time


def test_sentences_keep_their_words():
    vtt = ("WEBVTT\n\n00:00:01.000 --> 00:00:04.000\n"
           "The end.<00:00:02.000><c> Or</c><00:00:02.500><c> is</c><00:00:03.000><c> it?</c>\n")
    sentences = split_sentences(clean_cues(parse_subtitles(vtt)), "en")
    assert [(s.start, s.end, s.text) for s in sentences] == [(1.0, 2.0, "The end."), (2.0, 4.0, "Or is it?")]
    assert [w.text for w in sentences[1].words] == ["Or", "is", "it?"]


def test_transcript_keeps_words_through_text_json():
    segments = clean_cues(parse_subtitles(AUTO_VTT))
    transcript = Transcript(segments, "en", "subtitles:auto")
    again = Transcript.from_dict(json.loads(json.dumps(transcript.to_dict())))
    assert [s.words for s in again.segments] == [s.words for s in segments]
    assert "words" not in Transcript([Cue(0.0, 1.0, "Hi.")], "en", "subtitles:manual").to_dict()["segments"][0]


# --------------------------------------------------------------------------- words to frames


@pytest.mark.parametrize("style", ["cut", "crossfade", "fade"])
@pytest.mark.parametrize("tight, slop", [(False, 0.0), (False, 0.25), (True, 0.0), (True, 0.06)])
def test_auto_captions_across_page_turns_give_every_page_exactly_its_words(style, tight, slop):
    # tight: the narration starts on the turn and runs to 0.05 s before the next, so only the
    # words' own times can tell a detected turn 0.06 s off (1.5 frames) where the page changed;
    # else the reader pauses 0.8 s around each turn, and a turn detected 0.25 s off moves to it
    seed = {"cut": 1, "crossfade": 2, "fade": 3}[style]
    segments = planned(style, seed, tight)
    sentences = narration(auto_track(segments, seed))
    pages = [(s.t_start, s.t_end) for s in segments if s.kind == "page"]
    crossing = sum(1 for c in sentences if any(c.words[0].start < t0 <= c.words[-1].start for t0, _ in pages))
    assert crossing >= 3, "the caption lines must run across page turns"
    # turns detected a little early and late, alternately (tight: speech starts on the turn)
    bounds = [s.t_start for s in segments[1:]]
    bounds = [b + (slop if k % 2 else -slop) for k, b in enumerate(bounds)]
    spans = list(zip([0.0, *bounds], [*bounds, segments[-1].t_end]))
    frames = align_by_time(sentences, spans)
    assert [f.text for f in frames] == [norm(s.text) for s in segments]
    for frame, segment in zip(frames, segments):
        if segment.kind == "page":
            assert frame.assignment == "words" and frame.score >= 0.9 and not frame.flags
        else:
            assert frame.assignment is None and frame.score is None and frame.flags == ["no_speech"]


def test_a_word_is_placed_by_the_pause_around_the_turn():
    # the reader pauses after "end" (2.62..3.1) and after "went" (4.3..4.9); the turns were
    # detected at 2.4 (early: "end" runs past it) and 5.1 (late: "then" starts before it)
    starts = [("once", 0.5), ("upon", 0.9), ("a", 1.3), ("time", 1.5), ("the", 1.9), ("end", 2.3), ("and", 3.1),
              ("so", 3.4), ("it", 3.7), ("went", 3.9), ("then", 4.9), ("more", 5.2), ("came", 5.5)]
    words = tuple(Word(t, starts[i + 1][1] if i + 1 < len(starts) else 6.0, w) for i, (w, t) in enumerate(starts))
    sentences = [Cue(0.5, 6.0, " ".join(w.text for w in words), words)]
    spans = [(0.0, 2.4), (2.4, 5.1), (5.1, 8.0)]
    units = text_units(sentences, spans)
    by_time = assign_units(units, spans)  # each word where most of its time is: both wrong
    assert [units[i].text for i, j in enumerate(by_time) if j == 1] == ["end", "and", "so", "it", "went", "then"]
    frames = align_by_time(sentences, spans)
    assert [f.text for f in frames] == ["once upon a time the end", "and so it went", "then more came"]
    assert all(f.assignment == "words" for f in frames)


def test_clip_cannot_move_timed_words():
    segments = planned("cut", 4, tight=True)
    sentences = narration(auto_track(segments, 4))
    spans = [(s.t_start, s.t_end) for s in segments]
    rng = np.random.default_rng(0)
    similarity = rng.uniform(-0.2, 0.4, size=(len(sentences), len(spans)))
    frames = align_sentences(sentences, spans, similarity, logit_scale=100.0, weight=0.3)
    assert [f.text for f in frames] == [norm(s.text) for s in segments]
    assert {f.assignment for f in frames} == {"words", None}


# --------------------------------------------------------------------------- no word timings

SPANS = [(0.0, 5.0), (5.0, 10.0)]


def test_unpunctuated_text_across_a_turn_is_split_by_estimate_and_scored_low():
    # 6 s of caption text, 3 s on each side of the turn at 5.0: the character at half its time
    # is the last of "hill", so the cut is the nearer word boundary, after it
    cue = Cue(2.0, 8.0, "the fox ran over the hill and saw a little house")
    frames = align_by_time([Cue(0.5, 1.5, "Once."), cue], SPANS)
    assert [f.text for f in frames] == ["Once. the fox ran over the hill", "and saw a little house"]
    assert [f.assignment for f in frames] == ["split_estimate", "split_estimate"]
    assert all(f.score <= SPLIT_CONFIDENCE < 0.5 for f in frames)
    assert [f.sentences for f in frames] == [[0, 1], [1]]


def test_a_clause_break_near_the_estimate_is_preferred():
    text = "the fox ran over the hill so, it saw a little red house"
    frames = align_by_time([Cue(2.0, 8.0, text)], SPANS)
    assert [f.text for f in frames] == ["the fox ran over the hill so,", "it saw a little red house"]
    frames = align_by_time([Cue(2.0, 8.0, text.replace(",", ""))], SPANS)  # without it: the nearest space
    assert [f.text for f in frames] == ["the fox ran over the hill", "so it saw a little red house"]


def test_text_with_little_time_on_one_side_stays_whole_where_it_overlaps_most():
    # 1 s before the turn: narration starting while the page turns, or a turn detected late
    frames = align_by_time([Cue(4.0, 9.0, "and then the fox went home to sleep")], SPANS)
    assert [f.text for f in frames] == ["", "and then the fox went home to sleep"]
    assert frames[1].assignment == "sentences" and frames[1].score == 0.8


def test_a_complete_sentence_across_a_turn_stays_whole_with_its_share_as_score():
    frames = align_by_time([Cue(2.0, 9.0, "The fox ran over the hill and saw a little house.")], SPANS)
    assert [f.text for f in frames] == ["", "The fox ran over the hill and saw a little house."]
    assert frames[1].assignment == "sentences" and frames[1].score == pytest.approx(4 / 7, abs=1e-4)


def test_a_long_chunk_over_three_pages_is_cut_twice():
    spans = [(0.0, 4.0), (4.0, 8.0), (8.0, 12.0)]
    text = "one two three four five six seven eight nine ten eleven twelve"
    frames = align_by_time([Cue(0.0, 12.0, text)], spans)
    assert [len(f.text.split()) for f in frames] == [4, 4, 4]
    assert " ".join(f.text for f in frames) == text


def test_text_far_from_any_frame_scores_zero():
    frames = align_by_time([Cue(20.0, 21.0, "Long after.")], SPANS)
    assert frames[1].text == "Long after." and frames[1].score == 0.0


# --------------------------------------------------------------------------- a real video


def test_generated_video_with_auto_captions_through_keyframes_and_assemble(tmp_path):
    av = pytest.importorskip("av")  # noqa: F841
    from pipeline.config import IngestConfig
    from pipeline.records import FetchedMedia, SubtitleTrack
    from pipeline.text.transcript import SubtitleTextSource
    from pipeline.video.stages import compute_keyframes, compute_story

    pages = [S.PageSpec(text, 2.6 + 0.4 * (i % 3), speech=(0.0, 2.5 + 0.4 * (i % 3))) for i, text in enumerate(STORY)]
    spec = S.VideoSpec(pages=pages, style="crossfade", intro=True, audio=False, seed=5)
    truth = S.write_story_video(tmp_path, "kite", spec, save_pictures=False)
    S.write_auto_caption_vtt(truth.subtitles, truth, seed=5, line_s=(3.0, 6.0))
    track = SubtitleTrack(path=str(truth.subtitles), language="en", automatic=True, format="vtt")
    media = FetchedMedia("kite", str(truth.video), {"language": "en"}, [track])
    transcript = SubtitleTextSource(languages=["en"]).transcribe(media)
    assert any(s.words for s in transcript.segments)
    cfg = IngestConfig()
    found = compute_keyframes(str(truth.video), tmp_path / "work", cfg.keyframes)
    story, _ = compute_story(media, tmp_path / "work", cfg, found, transcript)
    assert [f.text for f in story.frames] == [norm(p.text) for p in truth.pages()]
    assert all(f.text_assignment == "words" and f.scores["align"] >= 0.9 for f in story.frames)
    assert "text_assignment" in story.to_json()


# --------------------------------------------------------------------------- through clean and the story


def test_merged_text_keeps_the_lower_score_and_the_less_sure_assignment():
    from pipeline.frames.clean import FrameCandidate, FrameKeeper

    image = np.zeros((4, 4, 3), dtype=np.uint8)
    keeper = FrameKeeper()
    keeper.keep(FrameCandidate(image, 0.0, 5.0, "the fox ran", 0.98, [], text_assignment="words"))
    keeper.drop(FrameCandidate(image, 5.0, 6.0, "over the hill", 0.4, [], text_assignment="split_estimate"), "blank")
    keeper.drop(FrameCandidate(image, 6.0, 7.0, "", None, ["no_speech"]), "blank")
    (kept,) = keeper.result("test").kept
    assert (kept.text, kept.align_score, kept.text_assignment) == ("the fox ran over the hill", 0.4, "split_estimate")


def test_story_frames_carry_text_assignment_and_old_stories_still_load():
    from pipeline.output.contract import Frame

    old = {"index": 0, "image": "000.jpg", "width": 4, "height": 4, "t_start": 0.0, "t_end": 1.0, "page": None,
           "text": "Hi.", "caption": None, "scores": {"align": 1.0, "clip": None}, "flags": []}
    frame = Frame.from_dict(old)
    assert frame.text_assignment is None and frame.to_dict()["text_assignment"] is None
    assert Frame.from_dict({**old, "text_assignment": "words"}).text_assignment == "words"
