"""Per-source records: what the fetch stage found, and the row each source gets in ``sources.parquet``.

The story itself (the JSON member of every shard sample) is the shard contract's:
:mod:`pipeline.output.contract`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SubtitleTrack:
    """A subtitle file that the fetch stage found for a video."""

    path: str  # absolute path
    language: str | None
    automatic: bool  # YouTube-style automatic captions
    format: str  # "vtt" or "srt"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SubtitleTrack":
        return cls(**data)


@dataclass
class FetchedMedia:
    """What the fetch stage leaves in a source's work directory (saved as ``fetch.json``)."""

    source_id: str
    video_path: str  # absolute path of the downloaded (or local) video
    info: dict[str, Any]  # title, creator, license, language, duration_s, url, extractor, id
    subtitles: list[SubtitleTrack] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FetchedMedia":
        return cls(
            source_id=data["source_id"],
            video_path=data["video_path"],
            info=dict(data["info"]),
            subtitles=[SubtitleTrack.from_dict(s) for s in data.get("subtitles", [])],
        )


@dataclass
class SourceResult:
    """One row of ``sources.parquet``: what happened to one source."""

    source_id: str
    input: str  # the url or path as the sources file gave it
    kind: str
    status: str  # "ok" | "skipped" | "failed"
    error: str | None = None  # a message a user understands
    stage: str | None = None  # the stage that failed or skipped it
    story_id: str | None = None
    title: str | None = None
    license: str | None = None
    language: str | None = None
    frames: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> count
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    reused: list[str] = field(default_factory=list)  # stages whose stored output an earlier run made
    stats: dict[str, int] = field(default_factory=dict)  # what the stages found (book: pictures, illustrations, paired)

    @classmethod
    def for_item(cls, item: Any) -> "SourceResult":
        """The row of a source about to be processed (a ``pipeline.sources.SourceItem``): ok so far."""
        return cls(source_id=item.source_id, input=item.input, kind=item.kind, title=item.title,
                   license=item.license, language=item.language, status="ok")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceResult":
        return cls(**data)
