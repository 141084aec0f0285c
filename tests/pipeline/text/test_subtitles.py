"""Tests for pipeline.text.subtitles: parsing, auto-caption cleanup and sentence splitting."""

from __future__ import annotations

import logging

import pytest

from pipeline.text.subtitles import Cue, SubtitleError, clean_cues, parse_subtitles, split_sentences

MANUAL_VTT = (
    "\ufeffWEBVTT - The Lion and the Mouse\r\n"
    "Kind: subtitles\r\n"
    "Language: en\r\n"
    "\r\n"
    "STYLE\r\n"
    "::cue { color: yellow; }\r\n"
    "\r\n"
    "REGION\r\n"
    "id:bottom width:40% lines:3\r\n"
    "\r\n"
    "NOTE This file was written by hand.\r\n"
    "It has two lines of notes.\r\n"
    "\r\n"
    "intro\r\n"
    "00:01.000 --> 00:04.500 align:start position:10% line:85%\r\n"
    "<v Narrator>A lion was <i>asleep</i> in the forest.</v>\r\n"
    "\r\n"
    "2\r\n"
    "00:00:05.250 --> 00:00:08.000\r\n"
    "A little mouse ran over\r\n"
    "his&nbsp;nose &amp; woke him.\r\n"
    "\r\n"
    "00:00:08.500 --> 00:00:10.000\r\n"
    "<c.colorE5E5E5>&quot;Let me go!&quot;</c> &gt; said the mouse.\r\n"
)

MANUAL_SRT = (
    "1\n"
    "00:00:01,000 --> 00:00:04,500\n"
    "<font color=\"#ffffff\">Once upon a time,</font>\n"
    "there was a fox.\n"
    "\n"
    "2\n"
    "00:00:05,000 --> 00:00:07,250 X1:100 X2:500 Y1:10 Y2:50\n"
    "{\\an8}<b>The fox was hungry.</b>\n"
    "3\n"
    "00:00:07,500 --> 00:00:09,000\n"
    "He saw some grapes.\n"
    "\n"
    "4\n"
    "01:00:10,000 --> 01:00:12,5\n"
    "They were sour.\n"
)

# YouTube automatic captions as yt-dlp saves them: every cue repeats the previous line and adds
# a new one word-timed with <c> tags; 10 ms cues show the finished screen between them.
AUTO_VTT = """WEBVTT
Kind: captions
Language: en

00:00:00.000 --> 00:00:03.110 align:start position:0%
 
[Music]

00:00:03.110 --> 00:00:03.120 align:start position:0%
[Music]
 

00:00:03.120 --> 00:00:05.749 align:start position:0%
[Music]
once<00:00:03.520><c> upon</c><00:00:03.879><c> a</c><00:00:04.120><c> time</c><00:00:04.480><c> there</c><00:00:04.799><c> was</c>

00:00:05.749 --> 00:00:05.759 align:start position:0%
once upon a time there was
 

00:00:05.759 --> 00:00:08.190 align:start position:0%
once upon a time there was
a<00:00:06.000><c> little</c><00:00:06.359><c> fox</c><00:00:06.879><c> who</c><00:00:07.200><c> said</c><00:00:07.600><c> yum</c>

00:00:08.190 --> 00:00:08.200 align:start position:0%
a little fox who said yum
 

00:00:08.200 --> 00:00:10.470 align:start position:0%
a little fox who said yum
yum<00:00:08.400><c> yum</c><00:00:08.639><c> &gt;&gt;</c><00:00:09.120><c> the</c><00:00:09.360><c> end</c>

00:00:10.470 --> 00:00:10.480 align:start position:0%
yum yum &gt;&gt; the end
 

00:00:10.480 --> 00:00:12.950 align:start position:0%
yum yum &gt;&gt; the end
[Applause] ♪♪ thank<00:00:11.000><c> you</c>

00:00:12.950 --> 00:00:12.960 align:start position:0%
thank you
 

00:00:12.960 --> 00:00:15.000 align:start position:0%
thank you
(laughs)
"""


def test_parse_manual_vtt_with_blocks_settings_tags_and_entities():
    cues = parse_subtitles(MANUAL_VTT.encode("utf-8"))
    assert cues == [
        Cue(1.0, 4.5, "A lion was asleep in the forest."),
        Cue(5.25, 8.0, "A little mouse ran over\nhis nose & woke him."),
        Cue(8.5, 10.0, '"Let me go!" > said the mouse.'),
    ]


def test_parse_srt_with_comma_decimals_ids_and_missing_blank_line():
    cues = parse_subtitles(MANUAL_SRT)
    assert cues == [
        Cue(1.0, 4.5, "Once upon a time,\nthere was a fox."),
        Cue(5.0, 7.25, "The fox was hungry."),
        Cue(7.5, 9.0, "He saw some grapes."),
        Cue(3610.0, 3612.5, "They were sour."),
    ]
    assert parse_subtitles(MANUAL_SRT, fmt="srt") == cues


def test_parse_srt_keeps_text_after_a_blank_line_inside_a_cue():
    data = "1\n00:00:01,000 --> 00:00:02,000\nFirst line\n\nstill the first cue\n\n2\n00:00:03,000 --> 00:00:04,000\nSecond\n"
    assert [c.text for c in parse_subtitles(data)] == ["First line\nstill the first cue", "Second"]


def test_parse_non_utf8_srt_falls_back_to_cp1252():
    data = "1\n00:00:01,000 --> 00:00:02,000\nCaf\xe9 cr\xe8me\n".encode("cp1252")
    assert parse_subtitles(data)[0].text == "Café crème"


def test_parse_skips_malformed_cues_with_a_warning(caplog):
    data = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nGood one\n\n00:00:0x.000 --> 00:00:03.000\nBad start\n\n00:00:05.000 --> 00:00:04.000\nEnds first\n\n00:00:06.000 --> 00:00:07.000\nGood two\n"
    with caplog.at_level(logging.WARNING, logger="pipeline.text.subtitles"):
        cues = parse_subtitles(data)
    assert [c.text for c in cues] == ["Good one", "Good two"]
    assert "malformed" in caplog.text


def test_parse_salvages_cues_from_a_file_with_binary_junk(caplog):
    data = (
        b"\x00\x01\xff\xfe WEBVTT? \x80\x81\x00garbage\xc3\x28\n"
        b"1\n00:00:01.000 --> 00:00:02.000\nno header here\n\n"
        b"00:00:xx.abc --> soon\nbroken time\n\n99:99:99.999 --> 00:00:01\nout of range\n\n<c>unclosed tag\n"
    )
    with caplog.at_level(logging.WARNING, logger="pipeline.text.subtitles"):
        assert parse_subtitles(data) == [Cue(1.0, 2.0, "no header here")]
    assert "binary junk" in caplog.text and "skipped 2 malformed" in caplog.text


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        ("  \n\r\n ", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x02\x00" * 8, "binary"),
        (bytes(range(256)) * 4, "binary"),
        ("Just some prose without any timings.\n", "no subtitle cues"),
        ("WEBVTT\n\nNOTE nothing here\n", "no subtitle cues"),
        ("WEBVTT\n\n00:00:aa.000 --> 00:00:02.000\nx\n\n1:2 --> 3:4\ny\n", "none of the 2"),
        ("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n\n00:00:03.000 --> 00:00:04.000\n<i></i>\n", "no text"),
    ],
)
def test_parse_rejects_unusable_input(data, message):
    with pytest.raises(SubtitleError, match=message):
        parse_subtitles(data)


def test_parse_rejects_unknown_format():
    with pytest.raises(SubtitleError, match="unsupported subtitle format 'ttml'"):
        parse_subtitles("WEBVTT\n\n00:01.000 --> 00:02.000\nhi\n", fmt="ttml")


def test_clean_youtube_rolling_auto_captions():
    cues = clean_cues(parse_subtitles(AUTO_VTT))
    assert cues == [
        Cue(3.12, 5.749, "once upon a time there was"),
        Cue(5.759, 8.19, "a little fox who said yum"),
        Cue(8.2, 10.47, "yum yum the end"),
        Cue(10.48, 12.95, "thank you"),
    ]
    words = " ".join(c.text for c in cues).split()
    assert words == "once upon a time there was a little fox who said yum yum yum the end thank you".split()
    # no punctuation at all: sentences stay cue-sized
    assert split_sentences(cues, "en") == cues


def test_clean_growing_auto_captions():
    cues = [
        Cue(0.0, 1.0, "the cat"),
        Cue(1.0, 2.0, "the cat sat on"),
        Cue(2.0, 3.0, "the cat sat on the mat"),
        Cue(3.0, 4.0, "and slept"),
    ]
    assert [c.text for c in clean_cues(cues)] == ["the cat", "sat on", "the mat", "and slept"]


def test_clean_keeps_clean_manual_subtitles_unchanged_apart_from_whitespace():
    cues = parse_subtitles(MANUAL_VTT) + [
        Cue(11.0, 12.0, '"Aw, aw," said the dog.'),
        Cue(12.0, 13.0, '"Aw, aw," said the dog.\nThen he slept.'),
        Cue(13.0, 14.0, "Then he slept."),
    ]
    assert clean_cues(cues) == [Cue(c.start, c.end, " ".join(c.text.split())) for c in cues]


def test_clean_drops_annotations_and_empty_cues_and_sorts_by_time():
    cues = [
        Cue(5.0, 6.0, "  the   fox   ran  "),
        Cue(1.0, 2.0, "[Music]"),
        Cue(2.0, 3.0, "♪♪"),
        Cue(3.0, 4.0, "(MUSIC PLAYING) Hello (laughs) there [Applause]"),
        Cue(6.0, 7.0, "(and that was the end of it)"),
    ]
    assert clean_cues(cues) == [
        Cue(3.0, 4.0, "Hello there"),
        Cue(5.0, 6.0, "the fox ran"),
        Cue(6.0, 7.0, "(and that was the end of it)"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        '"Unga," sabi ng baka.',
        "¿Dónde encontraré agua?",
        '"Shhh!" sabi ng magsasaka.',
        "Mr. Fox met Dr. Owl on St. Mark's day.",
        "Some animals, e.g. foxes, i.e. the red ones, sleep by day.",
        "It weighed 3.5 kilos and cost 2.75 dollars.",
        "Well… maybe not.",
        "J. K. Rowling wrote it.",
    ],
)
def test_split_keeps_one_sentence_together(text):
    assert split_sentences([Cue(0.0, 4.0, text)]) == [Cue(0.0, 4.0, text)]


def test_split_cue_with_several_sentences_shares_its_time_by_length():
    units = split_sentences([Cue(0.0, 6.0, "Hi there. How are you?")])
    assert [u.text for u in units] == ["Hi there.", "How are you?"]
    assert units[0].start == 0.0 and units[1].end == 6.0
    assert units[0].end == pytest.approx(6.0 * 9 / 21) == units[1].start


def test_split_terminators_closing_quotes_and_cjk():
    units = split_sentences([Cue(0.0, 10.0, '"Run!" The fox ran. Wait… Then it rained?! «Yes.» (The end.) It was 3.5. Done')])
    assert [u.text for u in units] == ['"Run!"', "The fox ran.", "Wait…", "Then it rained?!", "«Yes.»", "(The end.)", "It was 3.5.", "Done"]
    cjk = split_sentences([Cue(0.0, 9.0, "我很饿。「你呢？」好的！")], "zh")
    assert [u.text for u in cjk] == ["我很饿。", "「你呢？」", "好的！"]
    assert [round(u.end, 6) for u in cjk] == [3.0, 6.75, 9.0]


def test_split_sentence_across_cues():
    cues = [
        Cue(0.0, 2.0, "Once upon a time, there was"),
        Cue(2.1, 3.5, "a little fox named"),
        Cue(3.6, 5.0, "Felix. He was hungry."),
        Cue(5.2, 6.0, '"Help!"'),
        Cue(6.1, 7.0, "cried the fox."),
    ]
    units = split_sentences(cues, "en")
    assert [u.text for u in units] == [
        "Once upon a time, there was a little fox named Felix.",
        "He was hungry.",
        '"Help!" cried the fox.',
    ]
    assert (units[0].start, units[2].start, units[2].end) == (0.0, 5.2, 7.0)
    assert units[0].end == pytest.approx(3.6 + 1.4 * 6 / 20)


def test_split_does_not_join_across_pauses_titles_or_openers():
    cues = [
        Cue(0.0, 2.821, "Buscando agua"),
        Cue(3.44, 5.791, "¿Dónde encontraré agua?"),
        Cue(5.8, 6.5, "Pagmasdan ang mga hayop"),
        Cue(6.6, 7.0, "¡Mira!"),
        Cue(7.1, 8.0, "Hay un poco en la olla."),
    ]
    assert split_sentences(cues, "es") == cues


def test_split_capital_after_an_unpunctuated_cue_joins_only_across_a_tight_gap():
    title = [Cue(0.0, 2.0, "Pagmasdan ang mga hayop"), Cue(2.3, 4.0, "Pagmasdan ang mga hayop.")]
    assert split_sentences(title, "tl") == title
    lowercase = [Cue(0.0, 2.0, "The fox looked up"), Cue(2.3, 4.0, "at the grapes.")]
    assert split_sentences(lowercase) == [Cue(0.0, 4.0, "The fox looked up at the grapes.")]
    comma = [Cue(0.0, 2.0, "The fox looked up,"), Cue(2.3, 4.0, "Then he jumped.")]
    assert split_sentences(comma) == [Cue(0.0, 4.0, "The fox looked up, Then he jumped.")]
    far = [Cue(0.0, 2.0, "The fox looked up"), Cue(2.6, 4.0, "at the grapes.")]
    assert split_sentences(far) == far


def test_split_joins_cjk_cues_without_a_space():
    units = split_sentences([Cue(0.0, 1.0, "从前有一只"), Cue(1.1, 2.0, "小狐狸。"), Cue(2.1, 3.0, "它饿了。")], "zh")
    assert [u.text for u in units] == ["从前有一只小狐狸。", "它饿了。"]
