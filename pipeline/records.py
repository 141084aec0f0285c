"""Story and frame records: the JSON schema written into every shard (see DESIGN.md).

A field that a stage did not compute is ``None``, never invented.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

STORY_ID_RE = re.compile(r"^[a-z0-9_-]+$")


def make_story_id(prefix: str, raw_id: str) -> str:
    """A story id made of ``[a-z0-9_-]`` only (WebDataset splits keys at the first dot)."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", f"{prefix}-{raw_id}".lower()).strip("-_")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if not cleaned:
        raise ValueError(f"cannot make a story id from {prefix!r}/{raw_id!r}")
    # "{id}.000.mask.png" must fit the 100-byte name field of a USTAR tar header (wids reads
    # no longer names), so ids stop at 80 characters
    return cleaned[:80].rstrip("-_")


@dataclass
class Frame:
    """One illustration of a story with its narrative text."""

    index: int
    image: str  # member suffix inside the sample, e.g. "000.jpg"
    width: int
    height: int
    t_start: float | None = None  # seconds in the source video (videos only)
    t_end: float | None = None
    page: int | None = None  # page / spine item / position (books only)
    text: str = ""
    caption: str | None = None
    scores: dict[str, float | None] = field(default_factory=lambda: {"align": None, "clip": None})
    flags: list[str] = field(default_factory=list)
    has_mask: bool = False  # a "{i:03d}.mask.png" member sits next to the image

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.has_mask:
            data.pop("has_mask")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Frame":
        return cls(**data)


@dataclass
class SourceInfo:
    """Where a story came from; copied into every story and into the catalog."""

    kind: str  # "video" | "ebook"
    url: str | None = None
    title: str | None = None
    creator: str | None = None
    license: str | None = None
    language: str | None = None
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        data.update(extra)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceInfo":
        known = {k: data.get(k) for k in ("kind", "url", "title", "creator", "license", "language", "duration_s")}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**known, extra=extra)


@dataclass
class Story:
    """An ordered list of frames from one source."""

    story_id: str
    source: SourceInfo
    frames: list[Frame]
    split: str | None = None  # assigned by the shard writer
    pipeline: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not STORY_ID_RE.match(self.story_id):
            raise ValueError(f"story id {self.story_id!r} must match [a-z0-9_-]+")

    def to_dict(self) -> dict[str, Any]:
        return {
            "story_id": self.story_id,
            "split": self.split,
            "source": self.source.to_dict(),
            "frames": [f.to_dict() for f in self.frames],
            "pipeline": dict(self.pipeline),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Story":
        return cls(
            story_id=data["story_id"],
            split=data.get("split"),
            source=SourceInfo.from_dict(data["source"]),
            frames=[Frame.from_dict(f) for f in data["frames"]],
            pipeline=dict(data.get("pipeline") or {}),
        )

    def to_json(self) -> str:
        # sort_keys + fixed separators: the same story always serialises to the same bytes
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceResult":
        return cls(**data)
