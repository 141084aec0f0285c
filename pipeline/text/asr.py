"""Speech recognition: Whisper transcripts with timestamps, as a text source beside subtitles.

- Audio is decoded with PyAV (no ffmpeg binary) to 16 kHz mono float32.
- :class:`WhisperTranscriber` runs Whisper through transformers: long-form sequential decoding
  over 30 s windows with timestamp tokens (``generate(..., return_timestamps=True)``, the
  algorithm of OpenAI's reference implementation), greedy unless ``num_beams`` > 1, so the same
  audio always gives the same text. The language is the configured one or detected on the first
  30 s and recorded. Several audios go through one batched ``generate`` call.
- :class:`FasterWhisperTranscriber` does the same with faster-whisper (CTranslate2), an optional
  backend (extra ``asr``) behind the same interface.
- :class:`AsrTextSource` implements :class:`pipeline.text.transcript.TextSource`: a video's narration as
  timed sentences, ``origin="asr:<model>"``, which the time (and CLIP) alignment consume exactly
  like subtitles.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from pipeline.config import AsrConfig, ModelsConfig
from pipeline.records import FetchedMedia
from pipeline.text.subtitles import Cue, split_sentences
from pipeline.text.transcript import TextSourceError, Transcript

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WINDOW_S = 30.0  # Whisper's input window
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class TranscriptionError(TextSourceError):
    """The audio of a source cannot be decoded or transcribed (per-item data, not a bug)."""


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The first audio stream as mono float32 at ``sample_rate``; None when there is no audio stream."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            chunks = []
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().reshape(-1))
    except (av.error.FFmpegError, OSError) as exc:
        raise TranscriptionError(f"cannot decode the audio of {Path(path).name}: {exc}") from exc
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)


@dataclass
class AsrResult:
    """The transcript of one audio: timed segments (as Whisper cut them) and the language."""

    segments: list[Cue]
    language: str | None
    duration_s: float


class Transcriber(Protocol):
    name: str

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[AsrResult]:
        """One result per 16 kHz mono float32 audio, in order."""
        ...


def _clean_segments(raw: list[tuple[float, float, str]], duration_s: float) -> list[Cue]:
    """Timed texts -> cues inside [0, duration], in order, without control characters or empty text."""
    cues = []
    for start, end, text in raw:
        text = " ".join(_CONTROL_RE.sub(" ", text).split())
        if not text:
            continue
        start = round(max(float(start), 0.0), 3)
        if start >= duration_s:  # decoded from the silence that pads the last window
            continue
        end = round(min(max(float(end), start), duration_s), 3)
        cues.append(Cue(start, end, text))
    cues.sort(key=lambda c: c.start)
    return cues


class WhisperTranscriber:
    """Whisper through transformers' ``generate`` (long-form, timestamps), batched over audios."""

    def __init__(self, loaded, cfg: AsrConfig) -> None:
        self.loaded = loaded
        self.cfg = cfg
        self.name = loaded.name
        generation = loaded.model.generation_config
        self._multilingual = bool(getattr(generation, "is_multilingual", False)) and bool(getattr(generation, "lang_to_id", None))
        self._languages = {token_id: token.strip("<|>") for token, token_id in (getattr(generation, "lang_to_id", None) or {}).items()}

    def features(self, audios: Sequence[np.ndarray]):
        """Log-mel features of a batch: 30 s windows when all fit in one, else padded to the longest."""
        extractor = self.loaded.processor.feature_extractor
        if max(len(a) for a in audios) <= WINDOW_S * SAMPLE_RATE:
            inputs = extractor(list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True)
        else:
            inputs = extractor(list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False,
                               padding="longest", return_attention_mask=True)
        return inputs.input_features, inputs.attention_mask

    def generate_kwargs(self, languages: list[str] | None) -> dict:
        kwargs = {"return_timestamps": True, "return_segments": True, "num_beams": self.cfg.num_beams}
        if self._multilingual:
            kwargs.update(language=languages, task="transcribe")
        return kwargs

    def detect_languages(self, features) -> list[str | None]:
        """The configured language, or per audio the language Whisper detects on its first window."""
        batch = features.shape[0]
        if self.cfg.language:
            return [self.cfg.language] * batch
        if not self._multilingual:
            return ["en"] * batch  # English-only checkpoints (*.en)
        import torch

        window = features[:, :, : self.loaded.model.config.max_source_positions * 2]
        with torch.inference_mode():
            ids = self.loaded.model.detect_language(input_features=window)
        return [self._languages.get(int(i)) for i in ids]

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[AsrResult]:
        """Batches of up to ``batch_size`` audios; audios of one window and longer ones are never
        mixed in a batch (Whisper decodes them differently), so batching never changes a transcript."""
        audios = [np.asarray(a, dtype=np.float32) for a in audios]
        short = [i for i, a in enumerate(audios) if len(a) <= WINDOW_S * SAMPLE_RATE]
        long = [i for i, a in enumerate(audios) if len(a) > WINDOW_S * SAMPLE_RATE]
        results: dict[int, AsrResult] = {}
        for group in (short, long):
            for start in range(0, len(group), self.cfg.batch_size):
                indices = group[start:start + self.cfg.batch_size]
                results.update(zip(indices, self._transcribe_batch([audios[i] for i in indices])))
        return [results[i] for i in range(len(audios))]

    def _transcribe_batch(self, batch: list[np.ndarray]) -> list[AsrResult]:
        import torch

        features, mask = self.features(batch)  # (B, 80, frames), (B, frames)
        features = features.to(self.loaded.device, self.loaded.dtype)
        languages = self.detect_languages(features)
        with torch.inference_mode():
            out = self.loaded.model.generate(features, attention_mask=mask.to(self.loaded.device), **self.generate_kwargs(languages))
        tokenizer = self.loaded.processor.tokenizer
        results = []
        for b, audio in enumerate(batch):
            duration = len(audio) / SAMPLE_RATE
            raw = [
                (float(seg["start"]), float(seg["end"]), tokenizer.decode(seg["tokens"], skip_special_tokens=True))
                for seg in out["segments"][b]
            ]
            results.append(AsrResult(_clean_segments(raw, duration), languages[b], duration))
        return results


class FasterWhisperTranscriber:
    """faster-whisper (CTranslate2) behind the same interface; one audio per call."""

    def __init__(self, loaded, cfg: AsrConfig) -> None:
        self.loaded = loaded
        self.cfg = cfg
        self.name = loaded.name

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[AsrResult]:
        results = []
        for audio in audios:
            audio = np.asarray(audio, dtype=np.float32)
            segments, info = self.loaded.model.transcribe(
                audio, language=self.cfg.language, task="transcribe", beam_size=self.cfg.num_beams,
                temperature=0.0, condition_on_previous_text=False,
            )
            duration = len(audio) / SAMPLE_RATE
            raw = [(s.start, s.end, s.text) for s in segments]  # a generator: decoding happens here
            results.append(AsrResult(_clean_segments(raw, duration), info.language, duration))
        return results


def make_transcriber(models: ModelsConfig) -> Transcriber:
    """The configured backend with its model (loaded once per process)."""
    from pipeline.models.loading import get_asr

    loaded = get_asr(models)
    if loaded.backend == "faster-whisper":
        return FasterWhisperTranscriber(loaded, models.asr)
    return WhisperTranscriber(loaded, models.asr)


class AsrTextSource:
    """The narration of a video from its audio track: Whisper segments split into sentences."""

    name = "asr"

    def __init__(self, models: ModelsConfig, sentences: bool = True) -> None:
        self.models = models
        self.sentences = sentences

    def transcribe(self, media: FetchedMedia) -> Transcript | None:
        """None when the video has no audio track or nothing was recognised."""
        audio = decode_audio(media.video_path)
        if audio is None:
            log.info("%s: no audio track, nothing to transcribe", media.source_id)
            return None
        if not len(audio):
            return None
        transcriber = make_transcriber(self.models)
        result = transcriber.transcribe([audio])[0]
        if not result.segments:
            log.info("%s: speech recognition found no narration", media.source_id)
            return None
        segments = split_sentences(result.segments, result.language) if self.sentences else result.segments
        log.info("%s: text from ASR (%s, language %s): %d segment(s)", media.source_id, transcriber.name,
                 result.language, len(segments))
        return Transcript(segments=segments, language=result.language, origin=f"asr:{transcriber.name}")
