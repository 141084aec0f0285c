"""The shard contract: story ids, member names and the story JSON schema, in one place.

Every story is one WebDataset sample whose key is its story id (``[a-z0-9_-]``, no dots: WebDataset
splits keys at the first dot). Its members:

- ``{key}.json``: the story (:class:`Story`, serialised by :meth:`Story.to_json`);
- ``{key}.{i:03d}.jpg``: frame ``i``, RGB, original aspect, long side at most ``shards.image_max_side``;
- ``{key}.{i:03d}.mask.png``: optional, 255 where the loss must ignore pixels (burnt-in text).

The shard writer, the catalog, the video and book stages and the trainer's reader
(``model/data.py``) all name members through this module. Before the shard writer packs it, a
finished story waits in its source's work directory as ``story.json`` plus ``frames/{suffix}``
(:func:`write_finished_story`, :func:`read_finished_story`). The full contract, with the output
directory layout, is in ``pipeline/docs/contracts.md``.

A field that a stage did not compute is ``None``, never invented.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STORY_ID_RE = re.compile(r"^[a-z0-9_-]+$")
MAX_STORY_ID = 80  # "{id}.000.mask.png" must fit the 100-byte name field of a USTAR header (wids reads no longer names)
JSON_MEMBER = "json"  # the story's member suffix
STORY_FILE = "story.json"  # a finished story in its source's work directory ...
FRAMES_DIR = "frames"  # ... and its frame files, named by member suffix
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_story_id(prefix: str, raw_id: str) -> str:
    """A story id made of ``[a-z0-9_-]`` only, at most :data:`MAX_STORY_ID` characters."""
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", f"{prefix}-{raw_id}".lower()).strip("-_")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if not cleaned:
        raise ValueError(f"cannot make a story id from {prefix!r}/{raw_id!r}")
    return cleaned[:MAX_STORY_ID].rstrip("-_")


def image_member(index: int) -> str:
    """The member suffix of frame ``index``'s image: ``"000.jpg"``."""
    return f"{index:03d}.jpg"


def mask_member(index: int) -> str:
    """The member suffix of frame ``index``'s mask: ``"000.mask.png"``."""
    return f"{index:03d}.mask.png"


def member_name(key: str, suffix: str) -> str:
    """The full tar member name: ``"{key}.{suffix}"``."""
    return f"{key}.{suffix}"


@dataclass
class Frame:
    """One illustration of a story with its narrative text."""

    index: int
    image: str  # member suffix inside the sample, image_member(index)
    width: int
    height: int
    t_start: float | None = None  # seconds in the source video (videos only)
    t_end: float | None = None
    page: int | None = None  # page / spine item / position (books only)
    text: str = ""
    caption: str | None = None
    scores: dict[str, float | None] = field(default_factory=lambda: {"align": None, "clip": None})
    flags: list[str] = field(default_factory=list)
    has_mask: bool = False  # a mask_member(index) member sits next to the image
    text_assignment: str | None = None  # videos: how the text was assigned ("words", "sentences", "split_estimate")
    t_frame: float | None = None  # videos: seconds at which the chosen frame shows (rounded to ms)
    pts: int | None = None  # videos: that frame's presentation timestamp in the stream's time base (source time_base)

    @property
    def members(self) -> list[str]:
        """The frame's media member suffixes: its image, then its mask when it has one."""
        return [self.image, mask_member(self.index)] if self.has_mask else [self.image]

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
    """An ordered list of frames from one source: the ``{key}.json`` member."""

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


# --- a finished story in its work directory ----------------------------------------------------


def media_path(work_dir: Path, suffix: str) -> Path:
    """Where a finished story keeps the member ``suffix`` (``frames/000.jpg``)."""
    return Path(work_dir) / FRAMES_DIR / suffix


def write_finished_story(work_dir: Path, story: Story, media: dict[str, bytes]) -> None:
    """Write the frames' media, then ``story.json`` (last: its presence means the story is whole)."""
    from pipeline.storage import atomic_write_bytes, reset_dir

    expected = [suffix for frame in story.frames for suffix in frame.members]
    if sorted(expected) != sorted(media):
        raise ValueError(f"story {story.story_id}: media {sorted(media)} do not match its frames {expected}")
    reset_dir(Path(work_dir) / FRAMES_DIR)
    for suffix in expected:
        atomic_write_bytes(media_path(work_dir, suffix), media[suffix])
    atomic_write_bytes(Path(work_dir) / STORY_FILE, story.to_json().encode("utf-8"))


def read_story(work_dir: Path) -> Story:
    """The finished story of a work directory, checked against the contract (frames in order, names)."""
    from pipeline.storage import read_json

    path = Path(work_dir) / STORY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{work_dir} is not a finished source: no {STORY_FILE}")
    story = Story.from_dict(read_json(path))
    if not story.frames:
        raise ValueError(f"{path}: story {story.story_id} has no frames")
    last = -1
    for frame in story.frames:
        if frame.index <= last:
            raise ValueError(f"{path}: frame indices must increase, got {frame.index} after {last}")
        if frame.image != image_member(frame.index):
            raise ValueError(f"{path}: frame {frame.index} image must be {image_member(frame.index)}, got {frame.image!r}")
        last = frame.index
    return story


def read_media(work_dir: Path, story: Story) -> dict[str, bytes]:
    """The media of a finished story keyed by member suffix, each checked to be what its name says."""
    media: dict[str, bytes] = {}
    for frame in story.frames:
        for suffix in frame.members:
            path = media_path(work_dir, suffix)
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise FileNotFoundError(f"story {story.story_id}: frame {frame.index} file {path} is missing") from None
            magic = _PNG_MAGIC if suffix.endswith(".png") else _JPEG_MAGIC
            if not data.startswith(magic):
                raise ValueError(f"story {story.story_id}: {path} is not a {suffix.rsplit('.', 1)[1].upper()} file")
            media[suffix] = data
    return media


def read_finished_story(work_dir: Path) -> tuple[Story, dict[str, bytes]]:
    """The story in ``work_dir/story.json`` and its media keyed by member suffix."""
    story = read_story(work_dir)
    return story, read_media(work_dir, story)
