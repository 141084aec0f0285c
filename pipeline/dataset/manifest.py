"""Shareable manifests: a dataset described well enough to rebuild it, without its frames.

A storyloom dataset of YouTube frames cannot always be redistributed, but the sources can be
named. :func:`export_manifest` writes ``storyloom-manifest.jsonl`` (JSON Lines, UTF-8, one object
per line, keys sorted, fixed separators: the same dataset always gives the same bytes):

- line 1, the header: ``{"format": "storyloom-manifest", "version": 1, "config": ...,
  "config_hash": ..., "pipeline_version": ..., "stories": N, "frames": M}``: the resolved
  ingest config that made the frames (``config.json``), so a rebuild post-processes them alike;
- then one line per story, sorted by story id: ``{"story": ...}``, the story exactly as its
  shard holds it (:class:`pipeline.output.contract.Story`: split, source with url, ``video_id``,
  ``extractor``, title, creator, licence, language and ``source_sha256``, the frames with their
  ``t_frame``/``pts`` or ``page``, size, text, caption, scores and flags), each frame adding
  ``sha256`` (of its image member's bytes) and, with a mask, ``mask_sha256``.

The texts are included: they are short, a rebuild could not re-derive them without rerunning
alignment (and the models), and they carry the story; the pixels are not. Whoever publishes a
manifest publishes those texts under each story's licence, which the manifest names.

:func:`read_manifest` reads one back (:class:`ManifestError` for a file that is not one);
``storyloom ingest --from-manifest`` (:mod:`pipeline.dataset.rebuild`) rebuilds the frames.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.dataset.reader import Dataset, DatasetError
from pipeline.output.contract import Story, mask_member
from pipeline.storage import atomic_write_bytes

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "storyloom-manifest"
MANIFEST_VERSION = 1
MANIFEST_FILE = "storyloom-manifest.jsonl"
FRAME_HASH_FIELDS = ("sha256", "mask_sha256")  # what a manifest adds to a story's frames


class ManifestError(ValueError):
    """The file is not a storyloom manifest (or one of a version this code cannot read)."""


@dataclass(frozen=True)
class ManifestStory:
    """One story of a manifest: the story as its shard held it, and the hashes of its media."""

    story: Story
    media_sha256: dict[str, str]  # member suffix ("000.jpg", "000.mask.png") -> sha256 hex

    @property
    def story_id(self) -> str:
        return self.story.story_id


@dataclass(frozen=True)
class Manifest:
    """A read manifest: the header (config, its hash, the pipeline version) and its stories."""

    header: dict[str, Any]
    stories: tuple[ManifestStory, ...]

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.header.get("config") or {})

    @property
    def config_hash(self) -> str | None:
        return self.header.get("config_hash")

    @property
    def pipeline_version(self) -> str | None:
        return self.header.get("pipeline_version")


def _line(obj: Any) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def story_entry(story: Story, media: dict[str, bytes]) -> dict[str, Any]:
    """A story's manifest line: the story, each frame with the sha256 of its image (and mask)."""
    data = story.to_dict()
    for frame, record in zip(story.frames, data["frames"]):
        if frame.image not in media:
            raise DatasetError(f"story {story.story_id}: frame {frame.index} has no {frame.image} member")
        record["sha256"] = hashlib.sha256(media[frame.image]).hexdigest()
        if frame.has_mask:
            mask = media.get(mask_member(frame.index))
            if mask is None:
                raise DatasetError(f"story {story.story_id}: frame {frame.index} has no {mask_member(frame.index)} member")
            record["mask_sha256"] = hashlib.sha256(mask).hexdigest()
    return {"story": data}


def export_manifest(dataset: Dataset, out_dir: str | Path) -> Path:
    """Write ``out_dir/storyloom-manifest.jsonl`` for ``dataset``; returns its path.

    Raises :class:`~pipeline.dataset.reader.DatasetError` when the dataset has no ``config.json``
    (a rebuild needs the settings that made the frames) or a story lacks a member.
    """
    resolved = dataset.config()
    if not resolved.get("config"):
        raise DatasetError(f"{dataset.root}: no config.json with the ingest config; a manifest needs the settings "
                           "that made the frames")
    lines: dict[str, bytes] = {}
    frames = 0
    unplaced = 0
    for record in dataset.iter_stories():
        story = record.story
        if any(f.t_frame is None and f.pts is None for f in story.frames if story.source.kind == "video"):
            unplaced += 1
        lines[story.story_id] = _line(story_entry(story, record.media))
        frames += len(story.frames)
    if unplaced:
        log.warning("%d video stories were made before frames recorded their time (t_frame/pts): a rebuild cannot "
                    "find their frames; ingest them again with this version first", unplaced)
    header = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "config": resolved["config"],
              "config_hash": resolved.get("config_hash"), "pipeline_version": resolved.get("version"),
              "stories": len(lines), "frames": frames}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MANIFEST_FILE
    atomic_write_bytes(path, _line(header) + b"".join(lines[k] for k in sorted(lines)))
    log.info("manifest: %d stories, %d frames -> %s", len(lines), frames, path)
    return path


def read_manifest(path: str | Path) -> Manifest:
    """A manifest written by :func:`export_manifest`, checked line by line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read ({exc})") from exc
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise ManifestError(f"{path}: empty, not a storyloom manifest")
    try:
        header = json.loads(lines[0])
    except ValueError as exc:
        raise ManifestError(f"{path}: line 1 is not JSON ({exc})") from exc
    if not isinstance(header, dict) or header.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{path}: not a storyloom manifest (line 1 must say \"format\": \"{MANIFEST_FORMAT}\")")
    if header.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"{path}: manifest version {header.get('version')!r}; this storyloom reads "
                            f"version {MANIFEST_VERSION}")
    if not isinstance(header.get("config"), dict):
        raise ManifestError(f"{path}: the header has no config")
    stories = []
    seen: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        try:
            data = json.loads(line)["story"]
            hashes: dict[str, str] = {}
            for frame in data["frames"]:
                image, mask = frame.pop("sha256"), frame.pop("mask_sha256", None)
                hashes[frame["image"]] = image
                if mask is not None:
                    hashes[mask_member(frame["index"])] = mask
            story = Story.from_dict(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise ManifestError(f"{path}: line {number} is not a manifest story ({exc!r})") from exc
        if story.story_id in seen:
            raise ManifestError(f"{path}: line {number}: story {story.story_id} is listed twice")
        seen.add(story.story_id)
        stories.append(ManifestStory(story, hashes))
    return Manifest(header, tuple(stories))
