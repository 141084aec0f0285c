"""Tests for pipeline.text.transcript: subtitle track choice, transcripts and the text-source chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.records import FetchedMedia, SubtitleTrack
from pipeline.text.subtitles import Cue, SubtitleError
from pipeline.text.transcript import SubtitleTextSource, TextSource, Transcript, extract_text


def _vtt(text: str) -> str:
    return f"WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n{text}\n"


def _media(tmp_path: Path, tracks: list[tuple[str, str | None, bool, str]], language: str | None = None) -> FetchedMedia:
    """tracks: (file name, language, automatic, content); the files are written into tmp_path."""
    subtitles = []
    for name, lang, automatic, content in tracks:
        path = tmp_path / name
        if content is not None:  # None: the file is missing
            path.write_bytes(content.encode("utf-8"))
        fmt = "srt" if name.endswith(".srt") else "vtt"
        subtitles.append(SubtitleTrack(path=str(path), language=lang, automatic=automatic, format=fmt))
    return FetchedMedia(source_id="s1", video_path=str(tmp_path / "v.mp4"), info={"language": language}, subtitles=subtitles)


def _chosen(media: FetchedMedia, **kwargs) -> str:
    return Path(SubtitleTextSource(**kwargs).rank_tracks(media)[0].path).name


def test_manual_beats_automatic_unless_configured(tmp_path):
    media = _media(tmp_path, [("a.en.vtt", "en", True, _vtt("auto")), ("m.en.vtt", "en", False, _vtt("Manual."))])
    assert _chosen(media, languages=["en"]) == "m.en.vtt"
    assert _chosen(media, languages=["en"], prefer_manual=False) == "a.en.vtt"
    assert [Path(t.path).name for t in SubtitleTextSource(languages=["en"], allow_auto=False).rank_tracks(media)] == ["m.en.vtt"]


def test_exact_language_beats_region_variant_beats_other_language(tmp_path):
    media = _media(
        tmp_path,
        [("fr.vtt", "fr", False, _vtt("x")), ("us.vtt", "en-US", False, _vtt("x")), ("en.vtt", "en", False, _vtt("x"))],
    )
    assert _chosen(media, languages=["en"]) == "en.vtt"
    assert _chosen(media, languages=["en_us"]) == "us.vtt"
    assert _chosen(media, languages=["fr", "en"]) == "fr.vtt"
    no_exact = _media(tmp_path, [("fr.vtt", "fr", False, _vtt("x")), ("us.vtt", "en-US", False, _vtt("x"))])
    assert _chosen(no_exact, languages=["en"]) == "us.vtt"


def test_language_comes_before_manual(tmp_path):
    # a manual French track on an English video is a translation, not the narration
    media = _media(tmp_path, [("fr.vtt", "fr", False, _vtt("x")), ("en.vtt", "en", True, _vtt("x"))])
    assert _chosen(media, languages=["en"]) == "en.vtt"
    # within one language, manual beats automatic even when only a region variant is manual
    media = _media(tmp_path, [("en.vtt", "en", True, _vtt("x")), ("gb.vtt", "en-GB", False, _vtt("x"))])
    assert _chosen(media, languages=["en"]) == "gb.vtt"


def test_default_languages_are_media_language_then_english_then_any(tmp_path):
    tracks = [("de.vtt", "de", False, _vtt("x")), ("en.vtt", "en", False, _vtt("x")), ("es.vtt", "es", False, _vtt("x"))]
    assert _chosen(_media(tmp_path, tracks, language="es")) == "es.vtt"
    assert _chosen(_media(tmp_path, tracks, language=None)) == "en.vtt"
    assert _chosen(_media(tmp_path, tracks[:1] + tracks[2:], language="tl")) == "de.vtt"


def test_transcribe_reads_cleans_and_splits(tmp_path):
    vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:05.000\n[Music] Hi there. How are you?\n\n00:00:06.000 --> 00:00:08.000\n<i>Fine.</i>\n"
    media = _media(tmp_path, [("m.es.vtt", "es", False, vtt)], language="es")
    transcript = SubtitleTextSource().transcribe(media)
    assert transcript.origin == "subtitles:manual" and transcript.language == "es"
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (1.0, 1.0 + 4.0 * 9 / 21, "Hi there."),
        (1.0 + 4.0 * 9 / 21, 5.0, "How are you?"),
        (6.0, 8.0, "Fine."),
    ]
    assert transcript.text == "Hi there. How are you? Fine."
    assert Transcript.from_dict(transcript.to_dict()) == transcript
    unsplit = SubtitleTextSource(sentences=False).transcribe(media)
    assert [s.text for s in unsplit.segments] == ["Hi there. How are you?", "Fine."]


def test_unreadable_best_track_falls_back_to_the_next(tmp_path):
    media = _media(
        tmp_path,
        [("bad.en.vtt", "en", False, "\x00\x01garbage"), ("a.en.vtt", "en", True, _vtt("the fox ran"))],
        language="en",
    )
    transcript = SubtitleTextSource().transcribe(media)
    assert transcript.origin == "subtitles:auto"
    assert transcript.segments == [Cue(1.0, 3.0, "the fox ran")]


def test_all_tracks_unreadable_raises_naming_the_files(tmp_path):
    media = _media(tmp_path, [("bad.en.vtt", "en", False, ""), ("gone.en.srt", "en", True, None)], language="en")
    with pytest.raises(SubtitleError) as info:
        SubtitleTextSource().transcribe(media)
    assert "bad.en.vtt: the subtitle file is empty" in str(info.value)
    assert "gone.en.srt" in str(info.value)


def test_tracks_without_narration_give_nothing(tmp_path):
    media = _media(tmp_path, [("music.vtt", "en", True, _vtt("[Music]"))], language="en")
    assert SubtitleTextSource().transcribe(media) is None
    assert SubtitleTextSource().transcribe(_media(tmp_path, [], language="en")) is None
    assert extract_text(media, [SubtitleTextSource()]) == Transcript([], "en", "none")


class _Fixed:
    def __init__(self, name: str, result: Transcript | None = None, error: str | None = None):
        self.name, self.result, self.error, self.calls = name, result, error, 0

    def transcribe(self, media: FetchedMedia) -> Transcript | None:
        self.calls += 1
        if self.error:
            raise SubtitleError(self.error)
        return self.result


def test_extract_text_first_source_with_a_transcript_wins(tmp_path):
    media = _media(tmp_path, [], language="fr")
    asr = Transcript([Cue(0.0, 1.0, "Bonjour.")], "fr", "asr:tiny")
    later = _Fixed("later", Transcript([], "fr", "x"))
    sources = [_Fixed("empty"), _Fixed("asr", asr), later]
    assert all(isinstance(s, TextSource) for s in sources)
    assert extract_text(media, sources) is asr
    assert later.calls == 0
    assert extract_text(media, [_Fixed("broken", error="bad subs"), _Fixed("asr", asr)]) is asr
    with pytest.raises(SubtitleError, match="bad subs"):
        extract_text(media, [_Fixed("broken", error="bad subs"), _Fixed("empty")])
    assert extract_text(media, []) == Transcript([], "fr", "none")
