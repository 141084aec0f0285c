"""Curate: a new dataset directory made from an existing one by keeping or dropping stories and frames.

``storyloom curate IN --out OUT --where EXPR ...`` reads only ``IN``'s catalog (to decide) and the
shards holding the stories it keeps (to copy them); ``IN`` is never written. ``OUT`` gets the full
output contract: shards and manifests, ``catalog.parquet``, ``sources.parquet``, ``card.md`` and a
``config.json`` that records the curation (input, conditions, what each one dropped).

Conditions (``FIELD OP VALUE``, e.g. ``score_clip >= 0.25``) are parsed by
:mod:`pipeline.dataset.conditions`. Fields are of three levels. Story fields (the source's, the
same on every frame of a story) drop whole stories; frame fields drop frames; ``frames`` (the
frames a story has left) is checked after the frame conditions. A story left with fewer than
``min_frames`` frames is dropped. A comparison on a null value is false, whatever the operator
(``!=`` and ``not in`` included): only ``is null`` / ``is not null`` select nulls. Several
conditions are ANDed.

The decision is made with ``pyarrow.compute`` on the catalog (vectorised over every frame); the
copy streams one story at a time: a first pass reads only the kept stories' JSON members and
member sizes (tar headers) to plan the shards, the shard writer then pulls each story's media as
it writes it. Frames a story keeps are renumbered ``0..n-1`` (members ``{i:03d}.jpg``,
``{i:03d}.mask.png``); everything else of the story JSON is kept, except ``split`` (when
re-split) and ``pipeline`` (which names the curation and keeps the input's as ``curated_from``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.dataset.conditions import (
    COMPARISONS,
    Condition,
    CurationError,
    parse_condition,
)
from pipeline.dataset.reader import Dataset, DatasetError, StoryRecord, open_dataset
from pipeline.output.contract import (
    STORY_ID_RE,
    Frame,
    Story,
    image_member,
    mask_member,
)
from pipeline.output.shards import assign_split, plan_story, write_planned_shards
from pipeline.records import SourceResult
from pipeline.storage import OutputLayout, dumps_json, write_if_changed

log = logging.getLogger(__name__)

# flags the contract documents (pipeline/docs/contracts.md); a flag outside these and the input's
# own flags is refused as a likely typo instead of silently matching nothing
DOCUMENTED_FLAGS = frozenset({"no_speech", "no_text_source", "repeated_image", "rectified", "no_text", "spread",
                              "flattened", "text_over_picture", "cover"})

# Python's str.split() whitespace, spelled for RE2 (whose \s is ASCII only): "words" counts what
# the card counts, len(text.split())
_PY_WHITESPACE = ("\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}"
                  "\\x{202f}\\x{205f}\\x{3000}")
WORD_RE2 = f"[^{_PY_WHITESPACE}]+"


# --- the curation settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class CurationSpec:
    """What to keep. ``validate()`` parses every condition, so a mistake is reported before any work."""

    where: tuple[str, ...] = ()
    license_allow: tuple[str, ...] | None = None  # sugar for `license in [...]`
    keep_story_ids: tuple[str, ...] | None = None  # only these stories (None: no such list)
    drop_story_ids: tuple[str, ...] = ()
    min_frames: int = 1  # a story left with fewer frames is dropped
    test_fraction: float | None = None  # re-split with assign_split; None keeps the input's splits

    def validate(self) -> CurationSpec:
        self.conditions()
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise CurationError(f"min_frames must be an integer >= 1, got {self.min_frames!r}")
        if self.test_fraction is not None and not 0.0 <= self.test_fraction < 1.0:
            raise CurationError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.license_allow is not None and not self.license_allow:
            raise CurationError("the licence allow-list is empty: it would drop every story")
        for name, ids in (("story id list", self.keep_story_ids or ()), ("drop list", self.drop_story_ids)):
            bad = [i for i in ids if not STORY_ID_RE.match(i)]
            if bad:
                raise CurationError(f"{name}: {bad[0]!r} is not a story id ([a-z0-9_-] only)")
        return self

    def conditions(self) -> list[Condition]:
        """Every condition in evaluation order: the licence allow-list first, then --where in order."""
        conditions = []
        if self.license_allow is not None:
            conditions.append(Condition("license", "in", tuple(self.license_allow)))
        conditions.extend(parse_condition(text) for text in self.where)
        return conditions

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded in config.json; id lists as count and sha256 (they can be long)."""
        return {
            "where": [parse_condition(text).text for text in self.where],
            "license_allow": None if self.license_allow is None else list(self.license_allow),
            "keep_story_ids": _id_list_record(self.keep_story_ids),
            "drop_story_ids": _id_list_record(self.drop_story_ids or None),
            "min_frames": self.min_frames,
            "test_fraction": self.test_fraction,
        }


def _id_list_record(ids: tuple[str, ...] | None) -> dict[str, Any] | None:
    if ids is None:
        return None
    unique = sorted(set(ids))
    return {"count": len(unique), "sha256": hashlib.sha256("\n".join(unique).encode("utf-8")).hexdigest()}


def read_story_ids(path: str | Path) -> tuple[str, ...]:
    """Story ids from a file, one per line; blank lines and ``#`` comments are ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CurationError(f"cannot read the story id list {path}: {exc}") from exc
    ids = tuple(line.split("#", 1)[0].strip() for line in lines)
    return tuple(i for i in ids if i)


# --- deciding on the catalog -------------------------------------------------------------------


@dataclass(frozen=True)
class Drop:
    """What one reason dropped: whole stories, and frames (a dropped story's frames count here too)."""

    reason: str
    level: str  # "list", "story", "frame" or "count"
    stories: int
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Selection:
    """The decision: which stories and which of their frames to keep, and why the rest went."""

    frames_by_story: dict[str, tuple[int, ...]]  # kept story id -> kept input frame indices, ascending
    shard_of: dict[str, str]  # kept story id -> input shard url
    split_of: dict[str, str]  # kept story id -> input split
    stories_in: int
    frames_in: int
    drops: tuple[Drop, ...]  # in evaluation order; every input frame not kept is in exactly one
    frame_drops_by_story: dict[str, dict[str, int]]  # kept story id -> reason -> frames dropped
    unknown_story_ids: tuple[str, ...]  # ids of the keep / drop lists that the input does not have

    @property
    def story_ids(self) -> list[str]:
        return sorted(self.frames_by_story)

    @property
    def stories_out(self) -> int:
        return len(self.frames_by_story)

    @property
    def frames_out(self) -> int:
        return sum(len(v) for v in self.frames_by_story.values())


def catalog_columns(conditions: list[Condition]) -> list[str]:
    """The catalog columns a decision needs: the keys, plus what the conditions read."""
    columns = ["story_id", "frame", "shard", "split"]
    for condition in conditions:
        column = condition.spec.column if condition.spec.column else ("text" if condition.level == "frame" else None)
        if column and column not in columns:
            columns.append(column)
    return columns


def select(catalog: pa.Table, spec: CurationSpec) -> Selection:
    """Decide on the catalog (one row per frame) which stories and frames to keep; pure, no I/O.

    Order: the keep / drop id lists, story conditions, frame conditions, then ``min_frames`` and
    the ``frames`` conditions on what is left. A dropped thing is counted under the first reason
    that dropped it.
    """
    conditions = spec.conditions()
    _check_flags(conditions, catalog)
    n_rows = catalog.num_rows
    encoded = pc.dictionary_encode(catalog.column("story_id")).combine_chunks() if n_rows else None
    codes = np.asarray(encoded.indices, dtype=np.int64) if n_rows else np.zeros(0, np.int64)
    story_ids = encoded.dictionary.to_pylist() if n_rows else []
    n_stories = len(story_ids)

    drops: list[tuple[str, str]] = []  # (reason, level), index = reason code
    story_reason = np.full(n_stories, -1, np.int64)
    row_reason = np.full(n_rows, -1, np.int64)

    def drop_stories(failed: np.ndarray, reason: str, level: str) -> None:
        code = len(drops)
        drops.append((reason, level))
        newly = failed & (story_reason < 0)
        story_reason[newly] = code
        rows = newly[codes] & (row_reason < 0)
        row_reason[rows] = code

    known = set(story_ids)
    unknown: set[str] = set()
    if spec.keep_story_ids is not None:
        keep = set(spec.keep_story_ids)
        unknown |= keep - known
        drop_stories(np.array([sid not in keep for sid in story_ids], bool), "not in the --stories list", "list")
    if spec.drop_story_ids:
        dropped = set(spec.drop_story_ids)
        unknown |= dropped - known
        drop_stories(np.array([sid in dropped for sid in story_ids], bool), "in the --drop-stories list", "list")
    for condition in (c for c in conditions if c.level == "story"):
        failing_rows = ~row_mask(condition, catalog)
        drop_stories(np.bincount(codes[failing_rows], minlength=n_stories) > 0, condition.text, "story")
    for condition in (c for c in conditions if c.level == "frame"):
        code = len(drops)
        drops.append((condition.text, "frame"))
        row_reason[~row_mask(condition, catalog) & (row_reason < 0)] = code

    kept_rows = row_reason < 0
    kept_counts = np.bincount(codes[kept_rows], minlength=n_stories)
    drop_stories(kept_counts < spec.min_frames, f"fewer than min_frames={spec.min_frames} frames left", "count")
    counts = pa.table({"frames": pa.array(kept_counts, pa.int64())})
    for condition in (c for c in conditions if c.level == "count"):
        drop_stories(~row_mask(condition, counts), condition.text, "count")

    kept_rows = row_reason < 0
    frame_numbers = catalog.column("frame").to_numpy()
    shards = catalog.column("shard").to_pylist()
    splits = catalog.column("split").to_pylist()
    frames_by_story: dict[str, list[int]] = {}
    shard_of: dict[str, str] = {}
    split_of: dict[str, str] = {}
    for row in np.flatnonzero(kept_rows).tolist():
        sid = story_ids[codes[row]]
        frames_by_story.setdefault(sid, []).append(int(frame_numbers[row]))
        shard_of.setdefault(sid, shards[row])
        split_of.setdefault(sid, splits[row])
    by_story: dict[str, dict[str, int]] = {sid: {} for sid in frames_by_story}
    for row in np.flatnonzero(~kept_rows & (story_reason[codes] < 0)).tolist():  # frames lost by kept stories
        reasons = by_story[story_ids[codes[row]]]
        reason = drops[row_reason[row]][0]
        reasons[reason] = reasons.get(reason, 0) + 1

    story_tally = np.bincount(story_reason[story_reason >= 0], minlength=len(drops))
    frame_tally = np.bincount(row_reason[row_reason >= 0], minlength=len(drops))
    return Selection(
        frames_by_story={sid: tuple(sorted(frames)) for sid, frames in sorted(frames_by_story.items())},
        shard_of=shard_of,
        split_of=split_of,
        stories_in=n_stories,
        frames_in=n_rows,
        drops=tuple(Drop(reason, level, int(story_tally[i]), int(frame_tally[i]))
                    for i, (reason, level) in enumerate(drops)),
        frame_drops_by_story=by_story,
        unknown_story_ids=tuple(sorted(unknown)),
    )


def row_mask(condition: Condition, table: pa.Table) -> np.ndarray:
    """Rows of ``table`` that satisfy ``condition``; a null value satisfies nothing but ``is null``."""
    values = _values(condition, table)
    op = condition.op
    if op == "is null":
        mask = pc.is_null(values)
    elif op == "is not null":
        mask = pc.is_valid(values)
    elif op in ("has", "lacks"):
        has = _has_flag(values, condition.value)
        return ~has if op == "lacks" else has
    elif op in ("in", "not in"):
        value_type = pa.float64() if condition.spec.kind == "num" else pa.string()
        mask = pc.is_in(values, value_set=pa.array(list(condition.value), value_type))  # null -> false
        if op == "not in":
            mask = pc.and_(pc.invert(mask), pc.is_valid(values))
    else:
        value_type = pa.float64() if condition.spec.kind == "num" else pa.string()
        mask = getattr(pc, COMPARISONS[op])(values, pa.scalar(condition.value, value_type))
    return np.asarray(pc.fill_null(mask, False).to_numpy(zero_copy_only=False), dtype=bool)


def _values(condition: Condition, table: pa.Table):
    if condition.field == "words":
        return pc.count_substring_regex(table.column("text"), WORD_RE2).cast(pa.float64())
    if condition.field == "text_chars":
        return pc.utf8_length(table.column("text")).cast(pa.float64())
    column = table.column(condition.spec.column or condition.field)
    if condition.spec.kind == "num":
        return column.cast(pa.float64())
    return column


def _has_flag(flags, flag: str) -> np.ndarray:
    lists = flags.combine_chunks() if isinstance(flags, pa.ChunkedArray) else flags
    result = np.zeros(len(lists), bool)
    if len(lists):
        hits = np.asarray(pc.fill_null(pc.equal(pc.list_flatten(lists), flag), False).to_numpy(zero_copy_only=False),
                          dtype=bool)
        result[np.asarray(pc.list_parent_indices(lists))[hits]] = True
    return result


def _check_flags(conditions: list[Condition], catalog: pa.Table) -> None:
    named = {c.value for c in conditions if c.field == "flags"}
    if not named:
        return
    present = set(pc.unique(pc.list_flatten(catalog.column("flags").combine_chunks())).to_pylist()) \
        if catalog.num_rows else set()
    unknown = sorted(named - DOCUMENTED_FLAGS - present)
    if unknown:
        raise CurationError(f"unknown flag {unknown[0]!r}: neither a documented flag "
                            f"({', '.join(sorted(DOCUMENTED_FLAGS))}) nor one the input has")


# --- writing the curated dataset ---------------------------------------------------------------


@dataclass(frozen=True)
class CurationResult:
    """What :func:`curate` wrote."""

    out: Path
    selection: Selection
    shards: int
    rewritten: int  # shards whose bytes changed
    config_hash: str

    def summary_line(self) -> str:
        sel = self.selection
        line = (f"storyloom: curated {sel.stories_out} of {sel.stories_in} stories, {sel.frames_out} of "
                f"{sel.frames_in} frames into {self.shards} shard(s) under {self.out}")
        dropped = [f"{d.reason}: {d.stories} stories, {d.frames} frames" for d in sel.drops if d.stories or d.frames]
        if dropped:
            line += "; dropped by " + "; ".join(dropped)
        if sel.unknown_story_ids:
            line += f"; {len(sel.unknown_story_ids)} listed story id(s) not in the input"
        return line


def curate(in_dir: str | Path, out_dir: str | Path, spec: CurationSpec, progress: bool | None = None) -> CurationResult:
    """Write the curated copy of the dataset ``in_dir`` into ``out_dir``.

    Raises :class:`DatasetError` for an input that is not a dataset and :class:`CurationError`
    for bad settings or an output directory that must not be written (the input itself, a
    directory inside it, or a non-empty directory that is not an earlier curation's output).
    ``progress=None`` shows bars only on a terminal.
    """
    from pipeline import __version__
    from pipeline.output.card import write_card
    from pipeline.output.catalog import write_catalog, write_sources_table

    spec.validate()
    dataset = open_dataset(in_dir)
    layout = OutputLayout(Path(out_dir))
    _check_output(dataset.root, layout.root)

    conditions = spec.conditions()
    catalog = _read_catalog(dataset, catalog_columns(conditions))
    selection = select(catalog, spec)
    del catalog
    for unknown in selection.unknown_story_ids[:5]:
        log.warning("listed story id %s is not in %s", unknown, dataset.root)

    input_config = dataset.config()
    input_hash = input_config.get("config_hash") or "unknown"
    config_hash = curation_hash(input_hash, spec)
    settings = dict(input_config.get("config") or {})
    shard_cfg = _shard_config(settings, spec)
    record = {
        "input": {"name": dataset.root.resolve().name, "config_hash": input_hash,
                  "manifest_sha256": hashlib.sha256(dataset.layout.manifest.read_bytes()).hexdigest(),
                  "stories": selection.stories_in, "frames": selection.frames_in},
        "settings": spec.to_dict(),
        "kept": {"stories": selection.stories_out, "frames": selection.frames_out},
        "dropped": [drop.to_dict() for drop in selection.drops],
        "unknown_story_ids": len(selection.unknown_story_ids),
    }
    if "curation" in input_config:
        record["previous"] = input_config["curation"]
    if spec.test_fraction is not None and isinstance(settings.get("shards"), dict):
        settings["shards"] = {**settings["shards"], "test_fraction": spec.test_fraction}
    resolved = {"config": settings, "config_hash": config_hash, "version": __version__, "curation": record}
    layout.root.mkdir(parents=True, exist_ok=True)
    # first, as ingest does: a run killed after this is recognised as a curation output and redone
    write_if_changed(layout.config, dumps_json(resolved).encode("utf-8"))

    new_split = {sid: selection.split_of[sid] if spec.test_fraction is None else assign_split(sid, spec.test_fraction)
                 for sid in selection.story_ids}
    feed = _MediaFeed(dataset, selection, new_split, progress)
    try:
        planned = list(_plan(dataset, selection, new_split, feed, config_hash, __version__, progress))
        summary = write_planned_shards(planned, layout, shard_cfg, config_hash, __version__)
    finally:
        feed.close()
    write_catalog(summary, layout.catalog)
    results = _source_rows(dataset.sources(), selection)
    write_sources_table(results, layout.sources_table)
    write_card(summary, results, _card_config(settings, record), layout)
    log.info("curated %d of %d stories (%d of %d frames) from %s into %s", selection.stories_out,
             selection.stories_in, selection.frames_out, selection.frames_in, dataset.root, layout.root)
    return CurationResult(out=layout.root, selection=selection, shards=len(summary.shards),
                          rewritten=len(summary.rewritten), config_hash=config_hash)


def _read_catalog(dataset: Dataset, columns: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    names = pq.read_schema(dataset.layout.catalog).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise DatasetError(f"{dataset.layout.catalog} has no column(s) {', '.join(missing)}: "
                           "written by another storyloom version? (the conditions need them)")
    return dataset.catalog(columns=columns)


def curation_hash(input_config_hash: str, spec: CurationSpec) -> str:
    """The curated dataset's config hash: the input's and the curation settings, hashed together."""
    blob = json.dumps({"input_config_hash": input_config_hash, "curation": spec.to_dict()}, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _check_output(in_root: Path, out_root: Path) -> None:
    source, target = in_root.resolve(), out_root.resolve()
    if target == source or source in target.parents:
        raise CurationError(f"--out {out_root} is the input dataset or inside it; curate writes a new directory")
    if target.exists() and not target.is_dir():
        raise CurationError(f"--out {out_root} is a file, not a directory")
    if target.is_dir() and any(target.iterdir()):
        config = target / "config.json"
        try:
            earlier = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
        except (OSError, ValueError):
            earlier = {}
        if not isinstance(earlier, dict) or "curation" not in earlier:
            raise CurationError(f"--out {out_root} is not empty and is not the output of an earlier "
                                "`storyloom curate`; give a new or empty directory")


def _shard_config(settings: dict[str, Any], spec: CurationSpec):
    """The input's shard sizes (the defaults when its config does not say)."""
    from pipeline.config import ShardConfig

    known = {f.name for f in dataclasses.fields(ShardConfig)}
    given = {k: v for k, v in (settings.get("shards") or {}).items() if k in known}
    try:
        cfg = ShardConfig(**given)
        cfg.validate()
    except Exception as exc:
        raise DatasetError(f"the input's config.json has unusable shard settings ({exc})") from exc
    if spec.test_fraction is not None:
        cfg = dataclasses.replace(cfg, test_fraction=spec.test_fraction)
    return cfg


def _plan(dataset: Dataset, selection: Selection, new_split: dict[str, str], feed: _MediaFeed,
          config_hash: str, version: str, progress: bool | None) -> Iterator:
    """First pass: each kept story's JSON and member sizes (tar headers only), as a planned story."""
    from tqdm import tqdm

    wanted = selection.frames_by_story
    seen: set[str] = set()
    records = dataset.iter_stories(story_ids=wanted, shards=_shards_holding(dataset, selection, wanted),
                                   with_media=False)
    for record in tqdm(records, total=len(wanted), desc="curate: planning", unit="story", disable=_off(progress)):
        sid = record.story.story_id
        if sid in seen:
            raise DatasetError(f"{dataset.root}: story {sid} is in more than one shard")
        seen.add(sid)
        story, members = curated_story(record.story, wanted[sid], new_split[sid], config_hash, version)
        missing = sorted(set(members.values()) - set(record.sizes))
        if missing:
            raise DatasetError(f"{dataset.root / record.shard}: story {sid} lacks member(s) {', '.join(missing)}")
        sizes = {new: record.sizes[old] for new, old in members.items()}
        yield plan_story(story, sizes, partial(feed.media, sid, members), f"{dataset.root / record.shard}")
    absent = sorted(set(wanted) - seen)
    if absent:
        raise DatasetError(f"{dataset.root}: the catalog names {len(absent)} story(ies) no shard holds: "
                           f"{', '.join(absent[:5])}")


def curated_story(story: Story, keep: Iterable[int], split: str, config_hash: str,
                  version: str) -> tuple[Story, dict[str, str]]:
    """The story with only the frames ``keep`` (input indices), renumbered 0..n-1.

    Returns the new story and its member map, new suffix -> input suffix.
    """
    by_index = {frame.index: frame for frame in story.frames}
    frames: list[Frame] = []
    members: dict[str, str] = {}
    for new_index, old_index in enumerate(keep):
        if old_index not in by_index:
            raise DatasetError(f"story {story.story_id}: the catalog names frame {old_index}, the shard does not")
        old = by_index[old_index]
        frame = dataclasses.replace(old, index=new_index, image=image_member(new_index),
                                    scores=dict(old.scores), flags=list(old.flags))
        members[frame.image] = old.image
        if old.has_mask:
            members[mask_member(new_index)] = mask_member(old_index)
        frames.append(frame)
    pipeline = {"version": version, "config_hash": config_hash, "curated_from": dict(story.pipeline)}
    return Story(story_id=story.story_id, source=story.source, frames=frames, split=split, pipeline=pipeline), members


def _shards_holding(dataset: Dataset, selection: Selection, story_ids: Iterable[str]) -> list[str]:
    holding = {selection.shard_of[sid] for sid in story_ids}
    return [url for url in dataset.shard_urls() if url in holding]


class _MediaFeed:
    """Second pass: hands the shard writer each story's media, in the order it writes them.

    The writer goes split by split, story id by story id; the input's shards hold each input
    split in story id order too. So one stream per (input split, output split) pair, reading
    only that pair's stories, yields them exactly when asked: one story's media in memory.
    A story that comes early anyway (shards out of order) waits in a buffer.
    """

    def __init__(self, dataset: Dataset, selection: Selection, new_split: dict[str, str], progress: bool | None):
        from tqdm import tqdm

        self.dataset = dataset
        self.selection = selection
        self.pair_of = {sid: (selection.split_of[sid], new_split[sid]) for sid in selection.story_ids}
        self.streams: dict[tuple[str, str], Iterator[StoryRecord]] = {}
        self.buffer: dict[str, StoryRecord] = {}
        self.bar = tqdm(total=len(self.pair_of), desc="curate: writing", unit="story", disable=_off(progress))

    def media(self, story_id: str, members: dict[str, str]) -> dict[str, bytes]:
        record = self._take(story_id)
        self.bar.update(1)
        return {new: record.media[old] for new, old in members.items()}

    def _take(self, story_id: str) -> StoryRecord:
        if story_id in self.buffer:
            return self.buffer.pop(story_id)
        pair = self.pair_of[story_id]
        if pair not in self.streams:
            ids = [sid for sid, p in self.pair_of.items() if p == pair]
            self.streams[pair] = self.dataset.iter_stories(
                story_ids=ids, shards=_shards_holding(self.dataset, self.selection, ids))
        for record in self.streams[pair]:
            if record.story.story_id == story_id:
                return record
            log.debug("story %s read before it is written: buffered", record.story.story_id)
            self.buffer[record.story.story_id] = record
        raise DatasetError(f"{self.dataset.root}: story {story_id} vanished from "
                           f"{self.selection.shard_of[story_id]} while it was copied")

    def close(self) -> None:
        for stream in self.streams.values():
            stream.close()  # type: ignore[attr-defined]  # generators: closes the open tar
        self.bar.close()


def _off(progress: bool | None) -> bool | None:
    return None if progress is None else not progress  # tqdm: None = off when not a terminal


def _source_rows(results: list[SourceResult], selection: Selection) -> list[SourceResult]:
    """``sources.parquet`` of the output: the rows of kept stories, with their frames after curation.

    Frames the curation took from a story are added to its ``dropped`` as ``curate: <reason>``.
    Sources without a kept story (failed, skipped, dropped) stay in the input's table only.
    """
    rows = []
    for result in results:
        if result.story_id not in selection.frames_by_story:
            continue
        dropped = dict(result.dropped)
        for reason, count in selection.frame_drops_by_story[result.story_id].items():
            key = f"curate: {reason}"
            dropped[key] = dropped.get(key, 0) + count
        rows.append(dataclasses.replace(result, frames=len(selection.frames_by_story[result.story_id]),
                                        dropped=dropped))
    return rows


def _card_config(settings: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The card's configuration section: the input's output settings, plus the curation."""
    from pipeline.config import IngestConfig

    try:
        shown = IngestConfig.from_dict(settings).output_settings()
    except Exception:  # noqa: BLE001 - a config of another version: show it as written
        shown = {k: v for k, v in settings.items() if k != "run"}
    curation = {"input": record["input"]["name"], "input_config_hash": record["input"]["config_hash"],
                **{k: v for k, v in record["settings"].items() if v is not None and v != []}}
    return {**shown, "curation": curation}
