"""The text stage: the narration of a fetched video as timed sentences.

Text comes from pluggable :class:`TextSource` objects tried in order (:func:`extract_text`); the
first that has something for the media wins. :class:`SubtitleTextSource` reads the best subtitle
track that the fetch stage saved; :class:`pipeline.text.asr.AsrTextSource` transcribes the audio,
and its transcripts carry ``origin="asr:<model>"``. Which sources a run uses, in which order, is
:func:`pipeline.text.narration.build_text_sources`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

from pipeline.errors import StageError
from pipeline.records import FetchedMedia, SubtitleTrack
from pipeline.text.subtitles import Cue, SubtitleError, Word, clean_cues, parse_subtitles, split_sentences

log = logging.getLogger(__name__)


class TextSourceError(StageError):
    """A text source cannot read what the media offers (undecodable audio, ...); the message is for the user."""


@dataclass
class Transcript:
    """Timed narration of one source: sentences (or cues), their language and where they came from."""

    segments: list[Cue]
    language: str | None
    origin: str  # "subtitles:manual" | "subtitles:auto" | "none"; ASR adds "asr:<model>"

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments)

    def to_dict(self) -> dict[str, Any]:
        """The stored form (text.json): a segment with word timings adds ``words``: [[start, end, text], ...]."""
        segments = []
        for s in self.segments:
            segment: dict[str, Any] = {"start": s.start, "end": s.end, "text": s.text}
            if s.words:
                segment["words"] = [[w.start, w.end, w.text] for w in s.words]
            segments.append(segment)
        return {"language": self.language, "origin": self.origin, "segments": segments}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Transcript":
        segments = [
            Cue(float(s["start"]), float(s["end"]), s["text"],
                tuple(Word(float(a), float(b), str(t)) for a, b, t in s.get("words") or ()))
            for s in data["segments"]
        ]
        return cls(segments=segments, language=data.get("language"), origin=data["origin"])


@runtime_checkable
class TextSource(Protocol):
    """Something that can produce a transcript for fetched media (subtitles, ASR, ...)."""

    name: str

    def transcribe(self, media: FetchedMedia) -> Transcript | None:
        """The transcript of ``media``, or None when this source has nothing for it."""
        ...


class SubtitleTextSource:
    """Reads the best subtitle track of the media: cleaned, and split into sentences.

    Ranking, best first: a track in an earlier preferred language (``languages``; when empty,
    the media's own language, then English); within a language, manual before automatic (the
    reverse when ``prefer_manual`` is False); then an exact language tag before a region variant
    (``en`` vs ``en-US``); tracks in no preferred language come last. Language goes first
    because a manual track in another language is a translation, not the narration.
    """

    name = "subtitles"

    def __init__(
        self,
        languages: Sequence[str] = (),
        prefer_manual: bool = True,
        allow_auto: bool = True,
        sentences: bool = True,
    ) -> None:
        self.languages = [_norm_lang(code) for code in languages if code and code.strip()]
        self.prefer_manual = prefer_manual
        self.allow_auto = allow_auto
        self.sentences = sentences

    def rank_tracks(self, media: FetchedMedia) -> list[SubtitleTrack]:
        """The media's usable subtitle tracks, best first."""
        preferred = self.languages or [
            _norm_lang(code) for code in (media.info.get("language"), "en") if isinstance(code, str) and code.strip()
        ]
        preferred = list(dict.fromkeys(preferred))

        def key(item: tuple[int, SubtitleTrack]) -> tuple[int, int, int, int]:
            position, track = item
            group, level = len(preferred), 2
            for rank, wanted in enumerate(preferred):
                match = _language_match(track.language, wanted)
                if match is not None:
                    group, level = rank, match
                    break
            automatic_rank = int(track.automatic) if self.prefer_manual else int(not track.automatic)
            return group, automatic_rank, level, position

        tracks = [t for t in media.subtitles if self.allow_auto or not t.automatic]
        return [track for _, track in sorted(enumerate(tracks), key=key)]

    def transcribe(self, media: FetchedMedia) -> Transcript | None:
        """The best readable track as a transcript; None when there is no track or no text.

        Raises :class:`SubtitleError` naming every file when no candidate track can be read.
        """
        candidates = self.rank_tracks(media)
        failures = []
        for track in candidates:
            try:
                segments = self.read_track(track)
            except (SubtitleError, OSError) as exc:
                log.warning("cannot read subtitles %s: %s", track.path, exc)
                failures.append(f"{track.path}: {exc}")
                continue
            if not segments:
                log.info("subtitle track %s holds no narration after cleaning", track.path)
                continue
            language = track.language or media.info.get("language")
            origin = "subtitles:auto" if track.automatic else "subtitles:manual"
            log.info("text from %s (%s, %s): %d segment(s)", Path(track.path).name, language, origin, len(segments))
            return Transcript(segments=segments, language=language, origin=origin)
        if candidates and len(failures) == len(candidates):
            raise SubtitleError(f"no readable subtitle track: {'; '.join(failures)}")
        return None

    def read_track(self, track: SubtitleTrack) -> list[Cue]:
        """Parse, clean and (if configured) sentence-split one subtitle file."""
        cues = clean_cues(parse_subtitles(Path(track.path).read_bytes(), track.format or None))
        return split_sentences(cues, track.language) if self.sentences else cues


def extract_text(media: FetchedMedia, sources: Sequence[TextSource]) -> Transcript:
    """The transcript of the first source that has one, else an empty one with origin "none".

    A source that raises :class:`SubtitleError` or :class:`TextSourceError` is passed over so that
    a later source (ASR) can still provide the text; if no source provides any, the first such
    error is raised again.
    """
    first_error: SubtitleError | TextSourceError | None = None
    for source in sources:
        try:
            transcript = source.transcribe(media)
        except (SubtitleError, TextSourceError) as exc:
            log.warning("text source %s failed for %s: %s", source.name, media.source_id, exc)
            first_error = first_error or exc
            continue
        if transcript is not None:
            return transcript
    if first_error is not None:
        raise first_error
    return Transcript(segments=[], language=media.info.get("language"), origin="none")


def _norm_lang(code: str) -> str:
    return code.strip().lower().replace("_", "-")


def _language_match(track_language: str | None, wanted: str) -> int | None:
    """0 for the same tag, 1 for a variant of the same language (en-US for en), None otherwise."""
    if not track_language:
        return None
    have = _norm_lang(track_language)
    if have == wanted:
        return 0
    return 1 if have.split("-")[0] == wanted.split("-")[0] else None
