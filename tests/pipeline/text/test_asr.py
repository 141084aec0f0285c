"""ASR with a tiny random Whisper saved with save_pretrained: PyAV audio at 16 kHz, timestamped
long-form transcripts, language recorded, the text-source order per mode, and text.json redone
when the ASR settings change. What a random model says is not tested, only its shape."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")

from pipeline.text.asr import (  # noqa: E402
    SAMPLE_RATE, AsrTextSource, TranscriptionError, WhisperTranscriber, decode_audio, make_transcriber,
)
from pipeline.config import IngestConfig  # noqa: E402
from pipeline.records import FetchedMedia, SubtitleTrack  # noqa: E402
from pipeline.synthetic import PageSpec, VideoSpec, write_garbage_subtitles, write_story_video, write_truncated_mp4  # noqa: E402
from pipeline.text.narration import build_text_sources  # noqa: E402
from pipeline.text.transcript import SubtitleTextSource, extract_text  # noqa: E402
from tests.model_helpers import WHISPER_LANGUAGES, write_tiny_whisper  # noqa: E402

PAGES = ["Pip the fox woke up in the cold.", "She went to look for a warmer home.", "It was just right."]


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return write_tiny_whisper(tmp_path_factory.mktemp("whisper"))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    spec = VideoSpec(pages=[PageSpec(text, 2.4) for text in PAGES], seed=3)
    voiced = write_story_video(root, "voiced", spec)
    silent = write_story_video(root, "silent", VideoSpec(pages=[PageSpec(t, 2.4) for t in PAGES], seed=4, audio=False))
    return voiced, silent, root


def cfg_with(whisper_dir, **asr):
    section = {"device": "cpu", "local_files_only": True, "asr": {"enabled": True, "model": str(whisper_dir), **asr}}
    return IngestConfig.from_dict({"models": section})


def media(truth, subtitles=()) -> FetchedMedia:
    return FetchedMedia(truth.name, str(truth.video), {"language": None, "title": truth.name}, list(subtitles))


def test_audio_is_decoded_at_16_khz_mono(videos):
    voiced, silent, root = videos
    audio = decode_audio(voiced.video)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - voiced.duration_s) < 0.1
    # the narration is louder than the pauses around it
    first = voiced.pages()[0]
    speech = audio[int((first.t_start + 0.6) * SAMPLE_RATE):int((first.t_end - 0.7) * SAMPLE_RATE)]
    pause = audio[int((first.t_end - 0.3) * SAMPLE_RATE):int((first.t_end - 0.1) * SAMPLE_RATE)]
    assert np.sqrt(np.mean(speech ** 2)) > 5 * np.sqrt(np.mean(pause ** 2))
    assert decode_audio(silent.video) is None
    with pytest.raises(TranscriptionError, match="cannot decode the audio"):
        decode_audio(write_truncated_mp4(voiced.video, root / "truncated.mp4", keep_fraction=0.4))


def test_transcripts_are_timed_and_inside_the_audio(whisper_dir, videos):
    transcriber = make_transcriber(cfg_with(whisper_dir).models)
    assert isinstance(transcriber, WhisperTranscriber)
    audio = decode_audio(videos[0].video)
    long_audio = np.concatenate([audio] * 5)  # > 30 s: several windows, sequential long-form
    short, long = transcriber.transcribe([audio, long_audio])
    for result, seconds in ((short, len(audio) / SAMPLE_RATE), (long, len(long_audio) / SAMPLE_RATE)):
        assert result.segments, "a random model still emits timestamped segments"
        assert result.language in WHISPER_LANGUAGES
        assert result.duration_s == pytest.approx(seconds)
        starts = [s.start for s in result.segments]
        assert starts == sorted(starts)
        assert all(0 <= s.start <= s.end <= seconds and s.text == s.text.strip() != "" for s in result.segments)
    assert long.segments[-1].end > 30.0  # beyond the first window
    # a batch gives what one call per audio gives
    for alone, batched in zip(transcriber.transcribe([audio]) + transcriber.transcribe([long_audio]), (short, long)):
        assert alone == batched


def test_a_configured_language_is_used_as_is(whisper_dir, videos):
    transcriber = make_transcriber(cfg_with(whisper_dir, language="fr").models)
    assert transcriber.transcribe([decode_audio(videos[0].video)])[0].language == "fr"


def test_asr_text_source(whisper_dir, videos):
    voiced, silent, _ = videos
    source = AsrTextSource(cfg_with(whisper_dir).models)
    transcript = source.transcribe(media(voiced))
    assert transcript.origin == f"asr:{whisper_dir.name}"
    assert transcript.language in WHISPER_LANGUAGES
    assert transcript.segments and transcript.text.strip()
    assert source.transcribe(media(silent)) is None  # no audio track: nothing to hear


def test_text_sources_per_mode(whisper_dir):
    names = lambda cfg: [s.name for s in build_text_sources(cfg.text, cfg.fetch, cfg.models)]  # noqa: E731
    assert names(IngestConfig()) == ["subtitles"]
    assert names(cfg_with(whisper_dir)) == ["subtitles", "asr"]
    assert names(cfg_with(whisper_dir, mode="always")) == ["asr", "subtitles"]
    assert names(cfg_with(whisper_dir, mode="never")) == ["subtitles"]
    assert names(IngestConfig.from_dict({"models": {"asr": {"mode": "always"}}})) == ["subtitles"]  # not enabled


def test_fallbacks_between_subtitles_and_asr(whisper_dir, videos, tmp_path):
    voiced, silent, _ = videos
    garbage = write_garbage_subtitles(tmp_path / "voiced.en.vtt", flavor="binary")
    track = SubtitleTrack(str(garbage), "en", False, "vtt")
    cfg = cfg_with(whisper_dir)
    # unreadable subtitles: ASR still gives the text
    transcript = extract_text(media(voiced, [track]), build_text_sources(cfg.text, cfg.fetch, cfg.models))
    assert transcript.origin.startswith("asr:")
    # good subtitles win in prefer-subtitles mode, ASR wins in always mode
    good = SubtitleTrack(str(voiced.subtitles), "en", False, "vtt")
    assert extract_text(media(voiced, [good]), build_text_sources(cfg.text, cfg.fetch, cfg.models)).origin == "subtitles:manual"
    always = cfg_with(whisper_dir, mode="always")
    assert extract_text(media(voiced, [good]), build_text_sources(always.text, always.fetch, always.models)).origin.startswith("asr:")
    # always, but no audio track: the subtitles of a silent video
    good_silent = SubtitleTrack(str(silent.subtitles), "en", False, "vtt")
    sources = build_text_sources(always.text, always.fetch, always.models)
    assert extract_text(media(silent, [good_silent]), sources).origin == "subtitles:manual"
    assert isinstance(sources[1], SubtitleTextSource)


def test_stored_text_is_redone_when_asr_settings_change(whisper_dir, videos, tmp_path):
    """The text stage through the work directory owner: its key holds the ASR settings."""
    from pipeline.sources import SourceItem
    from pipeline.video.stages import TEXT_INDEX, transcribe, video_work

    voiced = videos[0]
    work = tmp_path / "work"
    item = SourceItem(source_id=voiced.name, input=str(voiced.video), kind="video", path=str(voiced.video))

    def run_text_stage(cfg):
        return transcribe(video_work(work, item, cfg), media(voiced), cfg)

    assert run_text_stage(IngestConfig()).origin == "none"
    with_asr = cfg_with(whisper_dir)
    first = run_text_stage(with_asr)
    assert first.origin.startswith("asr:")
    stamp = (work / TEXT_INDEX).stat().st_mtime_ns
    again = run_text_stage(with_asr)  # same settings: reused as stored
    assert (work / TEXT_INDEX).stat().st_mtime_ns == stamp and again.to_dict() == first.to_dict()
    assert run_text_stage(IngestConfig()).origin == "none"  # ASR off again


def test_faster_whisper_backend_behind_the_same_interface(videos, tmp_path):
    """Runs where the `asr` extra is installed: a tiny Whisper converted to CTranslate2."""
    pytest.importorskip("faster_whisper")
    converters = pytest.importorskip("ctranslate2.converters")
    from pipeline.text.asr import FasterWhisperTranscriber

    # faster-whisper decodes up to 448 tokens a window: the model needs that many positions
    folder = write_tiny_whisper(tmp_path / "hf", max_target_positions=448)
    converters.TransformersConverter(str(folder), copy_files=["tokenizer.json"]).convert(str(tmp_path / "ct2"))
    section = {"device": "cpu", "local_files_only": True,
               "asr": {"enabled": True, "backend": "faster-whisper", "model": str(tmp_path / "ct2"), "compute_type": "int8"}}
    models = IngestConfig.from_dict({"models": section}).models
    transcriber = make_transcriber(models)
    assert isinstance(transcriber, FasterWhisperTranscriber)
    result = transcriber.transcribe([decode_audio(videos[0].video)])[0]
    assert result.language in WHISPER_LANGUAGES and result.segments
    assert all(0 <= s.start <= s.end <= result.duration_s for s in result.segments)
    transcript = AsrTextSource(models).transcribe(media(videos[0]))
    assert transcript.origin == "asr:ct2" and transcript.segments
