"""Read a finished output directory back: its catalog, sources table, config and stories.

Every dataset tool (``curate``, ``preview``, ``export``, the card) starts here, so a directory
that is not a storyloom dataset is refused in one place with one clear message
(:class:`DatasetError`), and the stories come out of the shards exactly as the trainer would see
them. Reading is streaming: one shard open at a time, only the shards that hold the stories
asked for, members in tar order, so memory does not grow with the dataset.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.objectstore import StorageError, is_store_url, local_path, mirror_dataset, url_scheme
from pipeline.output.contract import JSON_MEMBER, Story
from pipeline.records import SourceResult
from pipeline.storage import OutputLayout

log = logging.getLogger(__name__)


class DatasetError(Exception):
    """The directory is not a (complete) storyloom dataset; the message says what is missing."""


@dataclass(frozen=True)
class StoryRecord:
    """One story read from a shard: the story, its media keyed by member suffix, and its shard."""

    story: Story
    media: dict[str, bytes]  # "000.jpg" -> bytes, "000.mask.png" -> bytes
    shard: str  # relative to the dataset root, e.g. "shards/train-000000.tar"
    sizes: dict[str, int] = field(default_factory=dict)  # media member suffix -> bytes, even without media


@dataclass(frozen=True)
class Dataset:
    """A storyloom output directory, checked to hold the files of the contract."""

    layout: OutputLayout

    @property
    def root(self) -> Path:
        return self.layout.root

    def manifest(self) -> dict[str, Any]:
        return _read_json(self.layout.manifest)

    def config(self) -> dict[str, Any]:
        """``config.json``: ``{"config": ..., "config_hash": ..., "version": ...}`` (plus ``curation``)."""
        if not self.layout.config.is_file():
            return {}
        return _read_json(self.layout.config)

    def catalog(self, columns: list[str] | None = None, filters: Any = None):
        """The catalog as a ``pyarrow.Table`` (optionally only some columns / rows)."""
        import pyarrow.parquet as pq

        return pq.read_table(self.layout.catalog, columns=columns, filters=filters)

    def sources(self) -> list[SourceResult]:
        """The rows of ``sources.parquet`` (empty when the dataset has none)."""
        import pyarrow.parquet as pq

        if not self.layout.sources_table.is_file():
            return []
        rows = pq.read_table(self.layout.sources_table).to_pylist()
        for row in rows:  # parquet maps come back as lists of pairs
            for name in ("dropped", "timings", "stats"):
                row[name] = dict(row[name] or [])
        return [SourceResult.from_dict(row) for row in rows]

    def shard_urls(self) -> list[str]:
        return [entry["url"] for entry in self.manifest()["shardlist"]]

    def iter_stories(self, story_ids: Iterable[str] | None = None, shards: Iterable[str] | None = None,
                     with_media: bool = True) -> Iterator[StoryRecord]:
        """The stories of the dataset in shard order (split, then story id).

        ``story_ids`` limits the output to those stories; ``shards`` to those shard urls (when only
        ``story_ids`` is given, the catalog names the shards to open). ``with_media=False`` skips
        reading image bytes (the JSON members only).
        """
        wanted = None if story_ids is None else set(story_ids)
        if shards is None:
            if wanted is None:
                shards = self.shard_urls()
            else:
                catalog = self.catalog(columns=["story_id", "shard"]).to_pydict()
                holding = {shard for sid, shard in zip(catalog["story_id"], catalog["shard"]) if sid in wanted}
                shards = [url for url in self.shard_urls() if url in holding]
        for url in shards:
            yield from _read_shard(self.root / url, url, wanted, with_media)


def open_dataset(path: str | Path) -> Dataset:
    """The dataset at ``path``, or :class:`DatasetError` saying why it is not one.

    ``path`` may be an object store URL (``s3://bucket/ds``): the dataset is then copied to a
    local cache first (:func:`pipeline.objectstore.mirror_dataset`, only what changed) and read there.
    """
    if isinstance(path, str) and is_store_url(path):
        try:
            path = mirror_dataset(path)
        except (StorageError, ValueError, ImportError) as exc:
            raise DatasetError(f"{path}: cannot read the dataset from the store ({exc})") from exc
    elif isinstance(path, str) and url_scheme(path) == "file":
        path = local_path(path)
    root = Path(path)
    if not root.exists():
        raise DatasetError(f"{root}: no such directory")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory (give the --out directory of `storyloom ingest`)")
    layout = OutputLayout(root)
    missing = [p.name for p in (layout.manifest, layout.catalog) if not p.is_file()]
    if missing:
        raise DatasetError(f"{root} is not a storyloom dataset: {', '.join(missing)} missing "
                           "(give the --out directory of a finished `storyloom ingest`)")
    manifest = _read_json(layout.manifest)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("shardlist"), list):
        raise DatasetError(f"{layout.manifest}: not a storyloom manifest (no shardlist)")
    absent = [e.get("url") for e in manifest["shardlist"] if not (root / str(e.get("url"))).is_file()]
    if absent:
        raise DatasetError(f"{root}: {len(absent)} shard(s) named in manifest.json are missing: {', '.join(absent[:5])}")
    try:
        import pyarrow.parquet as pq

        pq.read_schema(layout.catalog)
    except Exception as exc:  # noqa: BLE001 - any unreadable catalog is the same user error
        raise DatasetError(f"{layout.catalog}: not a readable Parquet file ({exc})") from exc
    return Dataset(layout)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from exc


def _read_shard(path: Path, url: str, wanted: set[str] | None, with_media: bool) -> Iterator[StoryRecord]:
    """Stories of one tar; members of a sample are consecutive (the shard writer's order)."""
    key: str | None = None
    story: Story | None = None
    media: dict[str, bytes] = {}
    sizes: dict[str, int] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                member_key, _, suffix = info.name.partition(".")
                if member_key != key:
                    if story is not None:
                        yield StoryRecord(story, media, url, sizes)
                    key, story, media, sizes = member_key, None, {}, {}
                if wanted is not None and member_key not in wanted:
                    continue
                if suffix == JSON_MEMBER:
                    story = Story.from_dict(json.loads(tar.extractfile(info).read().decode("utf-8")))
                    continue
                sizes[suffix] = info.size  # from the header: planning a copy needs no media bytes
                if with_media:
                    media[suffix] = tar.extractfile(info).read()
            if story is not None:
                yield StoryRecord(story, media, url, sizes)
    except (tarfile.TarError, OSError, ValueError, KeyError) as exc:
        raise DatasetError(f"{path}: cannot read shard ({exc})") from exc
