"""The owner of a source's work directory, the one rule for reusing stage outputs, and the stage runner.

Every source gets ``work/{source_id}/``; :class:`SourceWork` is the only code that decides what in
it is still valid. The layout:

    stages/{stage}.json     one record per stage (key, settings, serial, upstream serials)
    ...                     each stage's outputs, as the stage declares them (:class:`Stage`)
    DONE.json / FAILED.json the source's marker: finished (ok, or failed for good); written last

**The reuse rule.** Every stage declares the part of the config (and of the source entry) it reads
and its own version; its *key* is a hash of exactly that. A stage's stored output is reused only
when its record is complete, its key equals today's key, and the outputs of the stages it reads
are the very ones it was made from (each computed output gets a random *serial*; a record keeps
the serials of its upstream outputs). Otherwise the stage recomputes, and since a recomputed output
gets a new serial, everything downstream of it recomputes too. When the key changed, the stage's old
outputs are deleted first, so nothing made with other settings (a video downloaded at another
height) is picked up again. The record is written before the stage runs ("started") and after it
has written its outputs ("done"): a run killed in between leaves no record that looks complete.

**Markers.** A source is finished when its ``DONE.json`` (or, for a permanent failure,
``FAILED.json``) names today's *source key*: a hash of every stage key, the run's config hash, the
sources file's policy and the pipeline version. A rerun skips finished sources without looking at
their stages; any change anywhere makes the source run again, each stage reusing what still holds.

**The stage runner.** :class:`SourceRun` carries one source through its stages:
:meth:`SourceRun.step` runs a stage unless an earlier one failed, times it, and turns a
:class:`~pipeline.errors.StageError` into the source's failure (a value in ``sources.parquet``);
anything else is a bug and raises.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from pipeline import __version__
from pipeline.config import IngestConfig
from pipeline.errors import StageError
from pipeline.records import SourceResult
from pipeline.storage import atomic_write_json, read_json

log = logging.getLogger(__name__)

T = TypeVar("T")
RECORDS_DIR = "stages"
DONE_MARKER = "DONE.json"
FAILED_MARKER = "FAILED.json"
_RECORD_FORMAT = 1


def run_inline(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` here; the default for stages a flow may send to a worker process instead."""
    return fn(*args)


def stable_hash(data: Any) -> str:
    """16 hex digits of the sha256 of canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Stage:
    """A stage's declaration: what it reads, what it writes, and which stages' outputs it uses.

    ``settings(cfg, item)`` returns exactly the settings (and source-entry fields) that change the
    stage's output, as plain JSON values; the key is their hash with the stage's name and version.
    Raise ``version`` when the stage's code changes what it writes. ``outputs`` are glob patterns
    relative to the work directory (a directory pattern covers everything under it).
    """

    name: str
    version: int
    settings: Callable[[IngestConfig, Any], dict[str, Any]]
    outputs: tuple[str, ...]
    after: tuple[str, ...] = ()

    def key(self, cfg: IngestConfig, item: Any) -> tuple[str, dict[str, Any]]:
        settings = self.settings(cfg, item)
        return stable_hash({"stage": self.name, "version": self.version, "settings": settings}), settings


class SourceWork:
    """The work directory of one source: stage records and outputs, the reuse rule, the markers."""

    def __init__(self, directory: Path, stages: Sequence[Stage], cfg: IngestConfig, item: Any,
                 policy: dict[str, Any] | None = None):
        self.dir = Path(directory)
        self.stages = {stage.name: stage for stage in stages}
        for stage in stages:
            unknown = [name for name in stage.after if name not in self.stages]
            if unknown:
                raise ValueError(f"stage {stage.name} reads unknown stage(s) {unknown}")
        self._keys = {stage.name: stage.key(cfg, item) for stage in stages}
        self.source_key = stable_hash({
            "stages": {name: key for name, (key, _) in self._keys.items()},
            "config_hash": cfg.hash(), "policy": policy or {}, "version": __version__,
        })
        self.computed: list[str] = []  # stages computed by this object, in order
        self.reused: list[str] = []  # stages whose stored output was reused

    # -- stages ---------------------------------------------------------------------------

    def key(self, stage: str) -> str:
        return self._keys[stage][0]

    def record_path(self, stage: str) -> Path:
        return self.dir / RECORDS_DIR / f"{stage}.json"

    def record(self, stage: str) -> dict[str, Any] | None:
        """The stored record of a stage, or None (never run, or unreadable)."""
        try:
            record = read_json(self.record_path(stage))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and record.get("format") == _RECORD_FORMAT else None

    def _serial(self, stage: str) -> str | None:
        record = self.record(stage)
        return record.get("serial") if record and record.get("status") == "done" else None

    def is_current(self, stage: str) -> bool:
        """Whether the stage's stored output may be reused (by the rule in the module docstring)."""
        record = self.record(stage)
        if record is None or record.get("status") != "done" or record.get("key") != self.key(stage):
            return False
        upstream = {name: self._serial(name) for name in self.stages[stage].after}
        return record.get("upstream") == upstream

    def run(self, stage: str, compute: Callable[[], T], load: Callable[[], T]) -> T:
        """The stage's output: ``load()`` of the stored one when it is current, else ``compute()``.

        ``load`` raising OSError/ValueError/KeyError/TypeError (an output file gone missing or
        cut short) counts as not current. ``compute`` writes the stage's outputs and returns them;
        the record is written around it.
        """
        declared = self.stages[stage]
        if self.is_current(stage):
            try:
                value = load()
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.info("%s: stored %s output unreadable (%s); computing it again", self.dir.name, stage, exc)
            else:
                self.reused.append(stage)
                return value
        key, settings = self._keys[stage]
        previous = self.record(stage)
        if previous is not None and previous.get("key") != key:
            self.clear(declared)  # made with other settings: never to be picked up again
        upstream = {name: self._serial(name) for name in declared.after}
        record = {"format": _RECORD_FORMAT, "stage": stage, "version": declared.version, "key": key,
                  "settings": settings, "upstream": upstream, "status": "started"}
        atomic_write_json(self.record_path(stage), record)
        value = compute()
        atomic_write_json(self.record_path(stage), {**record, "status": "done", "serial": uuid.uuid4().hex})
        self.computed.append(stage)
        return value

    def clear(self, stage: Stage) -> None:
        """Delete a stage's outputs and its record."""
        if self.dir.is_dir():
            for path in sorted(self.dir.iterdir()):
                name = path.name
                if any(fnmatch.fnmatchcase(name, pattern) for pattern in stage.outputs):
                    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        self.record_path(stage.name).unlink(missing_ok=True)

    # -- markers --------------------------------------------------------------------------

    def finished(self) -> SourceResult | None:
        """The stored result when the source is finished for today's source key, else None."""
        for name in (DONE_MARKER, FAILED_MARKER):
            try:
                marker = read_json(self.dir / name)
            except (OSError, ValueError):
                continue
            if isinstance(marker, dict) and marker.get("source_key") == self.source_key:
                return SourceResult.from_dict(marker["result"])
        return None

    def finish(self, result: SourceResult, permanent: bool) -> SourceResult:
        """Write the source's marker, last: DONE when it succeeded, FAILED when a rerun would only
        repeat the failure; a transient failure leaves no marker, so the next run tries again."""
        result.reused = sorted(self.reused)
        marker = {"result": result.to_dict(), "source_key": self.source_key, "version": __version__}
        done, failed = self.dir / DONE_MARKER, self.dir / FAILED_MARKER
        if result.status == "ok":
            failed.unlink(missing_ok=True)
            atomic_write_json(done, marker)
        else:
            done.unlink(missing_ok=True)  # its story is stale now
            if permanent:
                atomic_write_json(failed, marker)
            else:
                failed.unlink(missing_ok=True)
        return result


@dataclass
class SourceRun:
    """One source on its way through its stages: its entry, its work directory, its result row so
    far, and what each finished stage handed on (``outputs[stage]``)."""

    item: Any  # pipeline.sources.SourceItem
    work: SourceWork
    result: SourceResult
    permanent: bool = False  # the failure (if any) would only be repeated by a rerun
    outputs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, item: Any, work: SourceWork) -> "SourceRun":
        return cls(item=item, work=work, result=SourceResult.for_item(item))

    @property
    def failed(self) -> bool:
        return self.result.status != "ok"

    def step(self, stage: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``call(self, *args, **kwargs)`` as stage ``stage``, unless an earlier stage failed.

        Timed into ``result.timings``; the value is kept in ``outputs[stage]`` for later stages. A
        :class:`StageError` becomes this source's failure (status, stage, message) and None is
        returned; any other exception is a bug and propagates.
        """
        if self.failed:
            return None
        start = time.perf_counter()
        try:
            value = call(self, *args, **kwargs)
        except StageError as error:
            self.fail(stage, error)
            return None
        finally:
            self.result.timings[stage] = round(time.perf_counter() - start, 3)
        self.outputs[stage] = value
        return value

    def fail(self, stage: str, error: StageError) -> None:
        self.result.status = error.status
        self.result.stage = stage
        self.result.error = str(error)
        self.permanent = error.permanent

    def note(self, message: str) -> None:
        """A remark on a source that is fine (kept in the row's ``error`` column, status stays ok)."""
        self.result.error = message if not self.result.error else f"{self.result.error}; {message}"

    def finish(self) -> SourceResult:
        """Write the source's marker (last) and return its row.

        The stages' outputs are let go: the files hold them now, and the orchestrator may keep
        every object a task returned until the run ends (Prefect records each task's result for
        its dependency graph), so a finished source would otherwise hold its keyframes, text and
        story in memory for the rest of the run."""
        self.outputs.clear()
        return self.work.finish(self.result, self.permanent)
