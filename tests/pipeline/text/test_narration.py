"""Which text sources a run uses (the ASR cases, with a tiny Whisper, are in test_asr.py)."""

from __future__ import annotations

from pipeline.config import FetchConfig, TextConfig
from pipeline.text.narration import build_text_sources
from pipeline.text.transcript import SubtitleTextSource


def test_build_text_sources_from_config():
    (source,) = build_text_sources(
        TextConfig(split_sentences=False),
        FetchConfig(subtitle_languages=("pt-BR",), prefer_manual_subtitles=False, allow_auto_subtitles=False),
    )
    assert isinstance(source, SubtitleTextSource) and source.name == "subtitles"
    assert (source.languages, source.prefer_manual, source.allow_auto, source.sentences) == (["pt-br"], False, False, False)
