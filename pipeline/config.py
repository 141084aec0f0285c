"""Typed, validated configuration for an ingest run.

A config file (YAML or JSON) holds any subset of the sections below; everything else takes
its default. Unknown keys and bad values raise :class:`ConfigError` before any work starts.
The resolved config is saved with every output (``config.json``) and its hash goes into every
story (``pipeline.config_hash``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range."""


@dataclass(frozen=True)
class FetchConfig:
    max_height: int = 480  # best video stream at or below this height
    subtitle_languages: tuple[str, ...] = ()  # empty: the source's language, then English
    prefer_manual_subtitles: bool = True  # manual beats automatic captions when both exist
    allow_auto_subtitles: bool = True
    retries: int = 3  # transient network errors only; permanent ones fail at once
    backoff_s: float = 2.0  # first retry delay, doubled each time
    socket_timeout_s: float = 30.0
    max_filesize_mb: float = 2000.0
    ffmpeg: str | None = None  # path to ffmpeg; default: system ffmpeg, else imageio-ffmpeg's
    cookies_file: str | None = None
    cache_dir: str | None = None  # yt-dlp's cache (YouTube player code); None: no cache, nothing in ~

    def validate(self) -> None:
        _check(self.max_height >= 144, "fetch.max_height must be >= 144")
        _check(self.retries >= 0, "fetch.retries must be >= 0")
        _check(self.backoff_s >= 0, "fetch.backoff_s must be >= 0")
        _check(self.max_filesize_mb > 0, "fetch.max_filesize_mb must be > 0")


@dataclass(frozen=True)
class KeyframeConfig:
    analysis_width: int = 64  # frames are compared at this width (grey, area-averaged)
    still_threshold: float = 0.3  # mean abs grey change per frame (0-255) below which a frame is still
    still_cap: float = 1.5  # the adaptive threshold never rises above this (transitions stay transitions)
    baseline_window_s: float = 4.0  # the threshold adapts to the median change over this many seconds
    page_change_threshold: float = 3.0  # before/after distance that makes a real page change
    blank_std: float = 6.0  # grey std below which a frame is blank (black, white, one colour)
    min_page_s: float = 0.6  # shorter still runs are transition debris, not pages
    settle_margin_s: float = 0.12  # frames this close to a transition are never chosen
    max_candidates: int = 6  # sharpness is measured on at most this many frames per page
    decode_threads: int = 1  # 1 is the cheapest in CPU time; processes give the parallelism

    def validate(self) -> None:
        _check(16 <= self.analysis_width <= 512, "keyframes.analysis_width must be in [16, 512]")
        _check(self.still_threshold > 0, "keyframes.still_threshold must be > 0")
        _check(self.still_cap >= self.still_threshold, "keyframes.still_cap must be >= still_threshold")
        _check(self.baseline_window_s > 0, "keyframes.baseline_window_s must be > 0")
        _check(self.page_change_threshold > 0, "keyframes.page_change_threshold must be > 0")
        _check(self.min_page_s > 0, "keyframes.min_page_s must be > 0")
        _check(self.max_candidates >= 1, "keyframes.max_candidates must be >= 1")
        _check(self.decode_threads >= 0, "keyframes.decode_threads must be >= 0 (0 = auto)")


@dataclass(frozen=True)
class TextConfig:
    source: str = "subtitles"  # "subtitles" now; ASR backends plug in beside it later
    on_missing: str = "keep"  # no subtitles: "keep" the story with empty texts, or "skip" it
    split_sentences: bool = True

    def validate(self) -> None:
        _check(self.source in {"subtitles"}, f"text.source must be 'subtitles', got {self.source!r}")
        _check(self.on_missing in {"keep", "skip"}, "text.on_missing must be 'keep' or 'skip'")


@dataclass(frozen=True)
class CleanConfig:
    drop_blank: bool = True
    blank_std: float = 8.0  # grey std of the frame below which it is blank / near-uniform
    drop_blurred: bool = True
    blur_min_sharpness: float = 15.0  # variance of the Laplacian at 256 px wide
    drop_duplicates: bool = True
    phash_max_distance: int = 6  # of 64 bits
    drop_intro_outro: bool = True
    edge_window_s: float = 15.0  # intro/outro cards sit within this many seconds of either end

    def validate(self) -> None:
        _check(0 <= self.phash_max_distance <= 64, "clean.phash_max_distance must be in [0, 64]")
        _check(self.edge_window_s >= 0, "clean.edge_window_s must be >= 0")


@dataclass(frozen=True)
class ShardConfig:
    max_stories_per_shard: int = 100
    max_shard_bytes: int = 256 * 1024 * 1024
    test_fraction: float = 0.05
    image_max_side: int = 768  # long side of stored frames
    jpeg_quality: int = 90

    def validate(self) -> None:
        _check(self.max_stories_per_shard >= 1, "shards.max_stories_per_shard must be >= 1")
        _check(self.max_shard_bytes >= 1024, "shards.max_shard_bytes must be >= 1024")
        _check(0.0 <= self.test_fraction < 1.0, "shards.test_fraction must be in [0, 1)")
        _check(64 <= self.image_max_side <= 4096, "shards.image_max_side must be in [64, 4096]")
        _check(1 <= self.jpeg_quality <= 100, "shards.jpeg_quality must be in [1, 100]")


@dataclass(frozen=True)
class RunConfig:
    download_workers: int = 4  # threads
    decode_workers: int = 2  # processes
    task_retries: int = 0  # Prefect-level retries of a whole source (network steps retry inside)
    progress: bool = True

    def validate(self) -> None:
        _check(self.download_workers >= 1, "run.download_workers must be >= 1")
        _check(self.decode_workers >= 1, "run.decode_workers must be >= 1")


@dataclass(frozen=True)
class IngestConfig:
    fetch: FetchConfig = field(default_factory=FetchConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    text: TextConfig = field(default_factory=TextConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def validate(self) -> "IngestConfig":
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(dataclasses.asdict(self))

    def hash(self) -> str:
        """Hash of the settings that change outputs (run settings such as worker counts do not)."""
        data = self.to_dict()
        data.pop("run")
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "IngestConfig":
        return _build(cls, data or {}, "").validate()

    @classmethod
    def load(cls, path: str | Path | None) -> "IngestConfig":
        if path is None:
            return cls().validate()
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        return cls.from_dict(data)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _to_jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    """Build a (nested) frozen dataclass from a mapping, rejecting unknown keys and bad types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        name = prefix + key
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, name + ".")
        else:
            kwargs[key] = _coerce(hint, value, name)
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, name: str) -> Any:
    text = str(hint)
    if value is None:
        if "None" in text:
            return None
        raise ConfigError(f"{name} must not be null")
    if hint is bool or text == "bool":
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if text.startswith("tuple"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if hint is str or "str" in text:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value
