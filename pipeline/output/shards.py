"""Shard writer: finished stories in ``work/`` become deterministic WebDataset shards.

One sample per story (key = story id) with the members of :mod:`pipeline.output.contract`
(``{key}.json``, ``{key}.{i:03d}.jpg``, ``{key}.{i:03d}.mask.png``), written to
``shards/{split}-{n:06d}.tar``. The same inputs give byte-identical tars: members carry no timestamps or owners, stories are sorted by id
within a split, and the split comes from a hash of the story id. A shard whose bytes would not
change is left alone, so a rerun touches no file. Alongside the shards go ``manifest.json`` and
``manifest-{split}.json`` in the format ``wids.ShardListDataset`` reads.

:func:`write_shards` takes finished work directories (ingest); :func:`write_planned_shards`
takes :class:`PlannedStory` items whose media come from a loader called once, while their shard
is written (``pipeline/dataset/curate.py`` streams them out of another dataset's shards).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from pipeline.config import ShardConfig
from pipeline.output.contract import JSON_MEMBER, Story, mask_member, media_path, member_name, read_media, read_story
from pipeline.storage import OutputLayout, dumps_json, write_if_changed

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
SHARD_NAME_RE = re.compile(r"^(train|test)-\d{6}\.tar$")
MANIFEST_KIND = "wids-shard-index-v1"
TAR_FORMAT = tarfile.USTAR_FORMAT  # plain 512-byte headers: the only kind wids' tar index reads
MAX_MEMBER_NAME = 100  # ustar name field; pax/GNU long names are invisible to wids
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE  # tarfile pads a closed archive to a whole record
_FILE_MODE = 0o644  # outputs are meant to be shared; mkstemp would leave them 0600


class PlacedStory(NamedTuple):
    """A story as written: split and pipeline filled in, and the shard (relative path) holding it."""

    story: Story
    shard: str


@dataclass(frozen=True)
class ShardInfo:
    """One written shard, as listed in the manifests."""

    url: str  # relative to the output root, e.g. "shards/train-000000.tar"
    split: str
    nsamples: int
    nframes: int
    filesize: int
    sha256: str

    def manifest_entry(self) -> dict[str, Any]:
        return {"url": self.url, "nsamples": self.nsamples, "filesize": self.filesize,
                "sha256": self.sha256, "split": self.split}


@dataclass(frozen=True)
class ShardSummary:
    """What :func:`write_shards` produced (and what it changed on disk)."""

    shards: tuple[ShardInfo, ...]
    placed: tuple[PlacedStory, ...]  # every story written, in shard order: split, then story id
    rewritten: tuple[str, ...] = ()  # shard urls whose bytes changed
    removed: tuple[str, ...] = ()  # stale shard urls deleted
    duplicates: tuple[str, ...] = ()  # work dirs skipped because their story id was taken

    @property
    def stories(self) -> int:
        return len(self.placed)

    @property
    def frames(self) -> int:
        return sum(len(p.story.frames) for p in self.placed)

    @property
    def total_bytes(self) -> int:
        return sum(s.filesize for s in self.shards)

    def split_totals(self) -> dict[str, dict[str, int]]:
        """Per split: stories, frames, shards and bytes (every split listed, even when empty)."""
        totals = {split: {"stories": 0, "frames": 0, "shards": 0, "bytes": 0} for split in SPLITS}
        for shard in self.shards:
            row = totals[shard.split]
            row["stories"] += shard.nsamples
            row["frames"] += shard.nframes
            row["shards"] += 1
            row["bytes"] += shard.filesize
        return totals


def assign_split(story_id: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"`` from the sha256 of the id: stable across runs and machines.

    The top 53 bits of the digest give a uniform number in [0, 1); raising ``test_fraction``
    only ever moves stories from train to test, never back.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    return "test" if split_position(story_id) < test_fraction else "train"


def split_position(story_id: str) -> float:
    """The story's place in [0, 1) for :func:`assign_split`: it is in test when below the fraction."""
    digest = hashlib.sha256(story_id.encode("utf-8")).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def split_manifest_path(layout: OutputLayout, split: str) -> Path:
    return layout.root / f"manifest-{split}.json"


def write_shards(
    stories_dirs: list[Path],
    layout: OutputLayout,
    cfg: ShardConfig,
    config_hash: str,
    version: str,
) -> ShardSummary:
    """Write every finished story into split shards, then the manifests; remove stale shards."""
    cfg.validate()
    planned, duplicates = _plan_stories(stories_dirs, cfg, config_hash, version)
    return write_planned_shards(planned, layout, cfg, config_hash, version, duplicates)


def write_planned_shards(
    planned: Iterable[PlannedStory],
    layout: OutputLayout,
    cfg: ShardConfig,
    config_hash: str,
    version: str,
    duplicates: Iterable[str] = (),
) -> ShardSummary:
    """Write planned stories (split and pipeline already set) into split shards, then the manifests.

    Stories go in shard order: split, then story id; each one's ``load_media`` is called once,
    in that order, while its shard is written. Stale shards of an earlier run are removed last.
    """
    cfg.validate()
    planned = sorted(planned, key=lambda p: p.story.story_id)
    layout.shards_dir.mkdir(parents=True, exist_ok=True)

    shards: list[ShardInfo] = []
    placed: list[PlacedStory] = []
    rewritten: list[str] = []
    for split in SPLITS:
        groups = _group_into_shards([p for p in planned if p.story.split == split], cfg)
        for n, group in enumerate(groups):
            url = f"shards/{split}-{n:06d}.tar"
            info, changed = _write_shard(layout.root / url, url, split, group)
            shards.append(info)
            placed.extend(PlacedStory(p.story, url) for p in group)
            if changed:
                rewritten.append(url)

    summary = ShardSummary(shards=tuple(shards), placed=tuple(placed), rewritten=tuple(rewritten),
                           duplicates=tuple(duplicates))
    _write_manifests(layout, summary, config_hash, version)
    # stale shards go last: until the new manifests are in place the old ones still name them
    summary = replace(summary, removed=tuple(_remove_stale(layout, {s.url for s in shards})))
    log.info("shards: %d stories, %d frames in %d shards (%d rewritten, %d unchanged, %d stale removed)",
             summary.stories, summary.frames, len(shards), len(rewritten),
             len(shards) - len(rewritten), len(summary.removed))
    return summary


# --- reading finished stories ------------------------------------------------------------------


def _read_story(source_dir: Path) -> Story:
    story = read_story(source_dir)
    longest = member_name(story.story_id, mask_member(story.frames[-1].index))
    if len(longest.encode("utf-8")) > MAX_MEMBER_NAME:
        raise ValueError(f"story id {story.story_id!r} is too long: tar member names must fit in "
                         f"{MAX_MEMBER_NAME} bytes ({longest!r} does not)")
    return story


# --- planning ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedStory:
    """A story ready to be packed: split and pipeline filled in, its size in a tar, and its media.

    ``load_media`` returns the members keyed by suffix (``frame.members`` of every frame); it is
    called once, when the story's shard is written, so no more than one story's media is held.
    """

    story: Story
    payload: int  # bytes the sample adds to a tar: headers plus padded contents
    load_media: Callable[[], dict[str, bytes]]
    origin: str  # where the story comes from, for messages (a work dir, an input shard)
    story_json: bytes  # the story's JSON member, serialised once (it is what the payload counted)


def plan_story(story: Story, media_sizes: dict[str, int], load_media: Callable[[], dict[str, bytes]],
               origin: str) -> PlannedStory:
    """A :class:`PlannedStory` from the story (final JSON) and the byte size of each media member."""
    story_json = story.to_json().encode("utf-8")
    payload = _member_bytes(len(story_json))
    for frame in story.frames:
        payload += sum(_member_bytes(media_sizes[suffix]) for suffix in frame.members)
    return PlannedStory(story, payload, load_media, origin, story_json)


def _round_up(n: int, block: int) -> int:
    return -(-n // block) * block


def _member_bytes(size: int) -> int:
    return _BLOCK + _round_up(size, _BLOCK)


def _archive_bytes(payload: int) -> int:
    return _round_up(payload + 2 * _BLOCK, _RECORD)  # two zero blocks end the archive


def _plan_stories(stories_dirs: Iterable[Path], cfg: ShardConfig, config_hash: str,
                  version: str) -> tuple[list[PlannedStory], list[str]]:
    planned: dict[str, PlannedStory] = {}
    duplicates: list[str] = []
    for source_dir in sorted(Path(d) for d in stories_dirs):
        story = _read_story(source_dir)
        if story.story_id in planned:
            log.warning("story id %s from %s already comes from %s; skipping the second",
                        story.story_id, source_dir, planned[story.story_id].origin)
            duplicates.append(str(source_dir))
            continue
        story.split = assign_split(story.story_id, cfg.test_fraction)
        story.pipeline = {"version": version, "config_hash": config_hash}
        sizes = {suffix: media_path(source_dir, suffix).stat().st_size
                 for frame in story.frames for suffix in frame.members}
        planned[story.story_id] = plan_story(story, sizes, partial(read_media, source_dir, story), str(source_dir))
    return [planned[k] for k in sorted(planned)], duplicates


def _group_into_shards(items: list[PlannedStory], cfg: ShardConfig) -> list[list[PlannedStory]]:
    """Consecutive groups; a new one starts when the count or the tar size would go over."""
    groups: list[list[PlannedStory]] = []
    current: list[PlannedStory] = []
    payload = 0
    for item in items:
        too_many = len(current) + 1 > cfg.max_stories_per_shard
        too_big = _archive_bytes(payload + item.payload) > cfg.max_shard_bytes
        if current and (too_many or too_big):
            groups.append(current)
            current, payload = [], 0
        if not current and _archive_bytes(item.payload) > cfg.max_shard_bytes:
            log.warning("story %s alone takes %d bytes, over max_shard_bytes=%d: it gets its own shard",
                        item.story.story_id, _archive_bytes(item.payload), cfg.max_shard_bytes)
        current.append(item)
        payload += item.payload
    if current:
        groups.append(current)
    return groups


# --- writing -----------------------------------------------------------------------------------


class _HashingWriter:
    """A write-only file that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    tar.addfile(info, BytesIO(data))


def _file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _write_shard(path: Path, url: str, split: str, group: list[PlannedStory]) -> tuple[ShardInfo, bool]:
    """Stream the tar to a temp file; keep the old file when its bytes are the same."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            out = _HashingWriter(raw)
            with tarfile.open(fileobj=out, mode="w", format=TAR_FORMAT) as tar:  # type: ignore[call-overload]
                for item in group:
                    key = item.story.story_id
                    _add_member(tar, member_name(key, JSON_MEMBER), item.story_json)
                    media = item.load_media()
                    for frame in item.story.frames:  # members in frame order, image before mask
                        for suffix in frame.members:
                            _add_member(tar, member_name(key, suffix), media[suffix])
            raw.flush()
            os.fsync(raw.fileno())
        expected = _archive_bytes(sum(item.payload for item in group))
        if out.size != expected:
            raise RuntimeError(f"{url}: wrote {out.size} bytes, planned {expected}; did an input change while it was written?")
        sha = out.sha.hexdigest()
        unchanged = path.is_file() and path.stat().st_size == out.size and _file_sha256(path) == sha
        if unchanged:
            os.unlink(tmp)
        else:
            os.chmod(tmp, _FILE_MODE)
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    info = ShardInfo(url=url, split=split, nsamples=len(group),
                     nframes=sum(len(item.story.frames) for item in group), filesize=out.size, sha256=sha)
    return info, not unchanged


def _manifest(shards: list[ShardInfo], name: str, config_hash: str, version: str) -> dict[str, Any]:
    return {
        "__kind__": MANIFEST_KIND,
        "wids_version": 1,
        "name": name,
        "pipeline": {"version": version, "config_hash": config_hash},
        "nsamples": sum(s.nsamples for s in shards),
        "shardlist": [s.manifest_entry() for s in shards],
    }


def _write_manifests(layout: OutputLayout, summary: ShardSummary, config_hash: str, version: str) -> None:
    """``manifest.json`` (all shards) and one per split; urls are relative to the output root."""
    manifest = _manifest(list(summary.shards), "storyloom", config_hash, version)
    write_if_changed(layout.manifest, dumps_json(manifest).encode("utf-8"))
    for split in SPLITS:
        shards = [s for s in summary.shards if s.split == split]
        manifest = _manifest(shards, f"storyloom-{split}", config_hash, version)
        write_if_changed(split_manifest_path(layout, split), dumps_json(manifest).encode("utf-8"))


def _remove_stale(layout: OutputLayout, keep: set[str]) -> list[str]:
    """Delete shards of an earlier run that the new set does not name, and leftover temp files."""
    removed: list[str] = []
    for path in sorted(layout.shards_dir.iterdir()):
        url = f"shards/{path.name}"
        if SHARD_NAME_RE.match(path.name) and url not in keep:
            path.unlink()
            removed.append(url)
            log.info("removed stale shard %s", url)
        elif path.name.startswith(".") and path.name.endswith(".tmp") and ".tar." in path.name:
            path.unlink()
    return removed
