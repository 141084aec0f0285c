"""The narration of a video: which text sources a run uses, and in which order.

Subtitles always; with ASR enabled (``models.asr``), Whisper beside them: after the subtitles with
``mode: prefer-subtitles``, before them with ``always``. The text stage
(:func:`pipeline.video.stages.compute_text`) tries them in order with
:func:`pipeline.text.transcript.extract_text`.
"""

from __future__ import annotations

from pipeline.config import ConfigError, FetchConfig, ModelsConfig, TextConfig
from pipeline.text.transcript import SubtitleTextSource, TextSource


def build_text_sources(
    text_cfg: TextConfig, fetch_cfg: FetchConfig, models_cfg: ModelsConfig | None = None
) -> list[TextSource]:
    """The text sources that the config asks for, in the order they are tried."""
    if text_cfg.source == "subtitles":
        sources: list[TextSource] = [
            SubtitleTextSource(
                languages=fetch_cfg.subtitle_languages,
                prefer_manual=fetch_cfg.prefer_manual_subtitles,
                allow_auto=fetch_cfg.allow_auto_subtitles,
                sentences=text_cfg.split_sentences,
            )
        ]
        if models_cfg is not None and models_cfg.asr.active:
            from pipeline.text.asr import AsrTextSource  # imports no model library until it transcribes

            asr = AsrTextSource(models_cfg, sentences=text_cfg.split_sentences)
            sources.insert(0 if models_cfg.asr.mode == "always" else 1, asr)
        return sources
    raise ConfigError(f"unknown text.source {text_cfg.source!r}; known: subtitles")
