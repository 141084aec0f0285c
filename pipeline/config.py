"""Typed, validated configuration for an ingest run.

A config file (YAML or JSON) holds any subset of the sections below; everything else takes
its default. Unknown keys and bad values raise :class:`ConfigError` before any work starts.
The resolved config is saved with every output (``config.json``) and its hash goes into every
story (``pipeline.config_hash``).

This module also holds what every storyloom YAML input shares (ingest and StoryGen config files,
``--set`` values, the sources file): :class:`Yaml12Loader` (YAML 1.2 booleans: ``no`` is the
text "no"), :func:`read_yaml_mapping`, and the typed builder :func:`build_dataclass`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import types
import typing
from collections.abc import Sequence
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


KEYFRAME_MODES = ("pages", "shots", "auto")
SHOT_DETECTORS = ("auto", "transnetv2", "scenedetect")


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
    turn_min_area: float = 0.2  # a page turn (motion, not a blend) sweeps at least this fraction of the frame
    rectify: bool = False  # warp each chosen page flat (the paper's quadrilateral), flag it `rectified`
    decode_threads: int = 1  # 1 is the cheapest in CPU time; processes give the parallelism
    # decode only the frames other frames are predicted from (most B-frames are not): about half the
    # decoding CPU on H.264/HEVC/AV1 videos. Pages are found in them as in a lower-frame-rate video; used
    # only where that leaves at least 12 frames a second, else every frame is decoded (false: always).
    reference_frames_only: bool = True
    # shot mode, for animated or live-action stories (pipeline/video/shots.py). With mode "pages" none of
    # the fields below is read, and they are left out of the config hash and the keyframe stage's key:
    # a config without them (or with them at any value in pages mode) keeps its hash and its outputs.
    mode: str = "pages"  # pages (one frame per still page) | shots (one per shot) | auto (decided per video, recorded)
    shot_detector: str = "auto"  # auto (transnetv2 when installed, else scenedetect) | transnetv2 | scenedetect
    shot_threshold: float = 0.5  # TransNetV2: a frame with a transition probability above this is a transition
    scenedetect_threshold: float = 3.0  # the fallback, PySceneDetect's AdaptiveDetector: its adaptive_threshold
    min_shot_s: float = 0.5  # shorter shots (flashes, the middle of a long dissolve) are transition debris
    auto_still_fraction: float = 0.5  # auto: pages when at least this fraction of the frames is in still runs

    _SHOT_FIELDS = ("mode", "shot_detector", "shot_threshold", "scenedetect_threshold", "min_shot_s",
                   "auto_still_fraction")
    # fields added later (filmed books, reference frames), left out of the hash at their defaults
    # (the hash a config had before them)
    _LATER_DEFAULTS = (("turn_min_area", 0.2), ("rectify", False), ("reference_frames_only", True))

    def validate(self) -> None:
        _check(16 <= self.analysis_width <= 512, "keyframes.analysis_width must be in [16, 512]")
        _check(self.still_threshold > 0, "keyframes.still_threshold must be > 0")
        _check(self.still_cap >= self.still_threshold, "keyframes.still_cap must be >= still_threshold")
        _check(self.baseline_window_s > 0, "keyframes.baseline_window_s must be > 0")
        _check(self.page_change_threshold > 0, "keyframes.page_change_threshold must be > 0")
        _check(self.min_page_s > 0, "keyframes.min_page_s must be > 0")
        _check(self.max_candidates >= 1, "keyframes.max_candidates must be >= 1")
        _check(0 < self.turn_min_area <= 1, "keyframes.turn_min_area must be in (0, 1]")
        _check(self.decode_threads >= 0, "keyframes.decode_threads must be >= 0 (0 = auto)")
        _check(self.mode in KEYFRAME_MODES, f"keyframes.mode must be one of {', '.join(KEYFRAME_MODES)}, got {self.mode!r}")
        _check(self.shot_detector in SHOT_DETECTORS,
               f"keyframes.shot_detector must be one of {', '.join(SHOT_DETECTORS)}, got {self.shot_detector!r}")
        _check(0.0 < self.shot_threshold < 1.0, "keyframes.shot_threshold must be in (0, 1)")
        _check(self.scenedetect_threshold > 0, "keyframes.scenedetect_threshold must be > 0")
        _check(self.min_shot_s > 0, "keyframes.min_shot_s must be > 0")
        _check(0.0 <= self.auto_still_fraction <= 1.0, "keyframes.auto_still_fraction must be in [0, 1]")

    def output_settings(self) -> dict[str, Any]:
        """The keyframe settings that shape outputs: in pages mode, none of the shot fields.

        So a run in pages mode has the hash (and the keyframe stage key) it had before shot mode existed.
        """
        data = to_jsonable(dataclasses.asdict(self))
        if self.mode == "pages":
            for name in self._SHOT_FIELDS:
                data.pop(name)
        for name, default in self._LATER_DEFAULTS:
            if data[name] == default:
                data.pop(name)
        return data


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


# ----------------------------------------------------------------------------- models
# Every model is off by default: without a `models` section a run needs no weights, and its
# outputs (and config hash) are exactly those of the model-free pipeline.

ASR_MODES = ("prefer-subtitles", "always", "never")


@dataclass(frozen=True)
class ClipConfig:
    """open_clip: embedding near-duplicates, zero-shot frame filters, CLIP+time alignment, scores.clip."""

    enabled: bool = False
    model: str = "ViT-B-32"  # open_clip architecture, "hf-hub:org/repo", or a folder holding open_clip_config.json
    pretrained: str | None = "laion2b_s34b_b79k"  # weights tag or checkpoint file (with an architecture name only)
    model_config: str | None = None  # JSON file of a custom architecture, registered with open_clip first
    batch_size: int = 32
    dedup: bool = True
    dedup_threshold: float = 0.96  # cosine of consecutive kept frames at or above which the later is a duplicate
    filter_photos: bool = True
    photo_threshold: float = 0.6  # zero-shot probability of "photo" at or above which a frame is dropped
    filter_text_cards: bool = True
    text_card_threshold: float = 0.7  # zero-shot probability of "text card" at or above which a frame is dropped
    illustration_prompts: tuple[str, ...] = (
        "an illustration from a children's picture book", "a page of a picture book", "a drawing",
        "a cartoon", "a painting", "a watercolour illustration",
    )
    photo_prompts: tuple[str, ...] = (
        "a photo of a person", "a photo of a person talking to the camera", "a photo of a person reading a book",
        "a photo of hands holding a book", "a photo of a room", "a webcam photo",
    )
    text_card_prompts: tuple[str, ...] = (
        "a title card with text", "white text on a plain background", "end credits", "a subscribe button",
        "a channel logo", "a screen full of text",
    )
    align: bool = True  # refine sentence-to-frame alignment with CLIP similarity (monotonic DTW)
    align_weight: float = 0.3  # weight of CLIP against the time prior (whose scores lie in [0, 1])
    align_time_scale_s: float = 1.0  # time outside every frame goes to frames this close (exp(-distance/scale))

    def validate(self) -> None:
        _check(self.batch_size >= 1, "models.clip.batch_size must be >= 1")
        _check(-1.0 <= self.dedup_threshold <= 1.0, "models.clip.dedup_threshold must be a cosine in [-1, 1]")
        for name in ("photo_threshold", "text_card_threshold"):
            _check(0.0 <= getattr(self, name) <= 1.0, f"models.clip.{name} must be in [0, 1]")
        for name in ("illustration_prompts", "photo_prompts", "text_card_prompts"):
            _check(len(getattr(self, name)) >= 1, f"models.clip.{name} needs at least one prompt")
        _check(self.align_weight >= 0, "models.clip.align_weight must be >= 0")
        _check(self.align_time_scale_s > 0, "models.clip.align_time_scale_s must be > 0")


@dataclass(frozen=True)
class AsrConfig:
    """Whisper speech recognition for videos without usable subtitles."""

    enabled: bool = False
    mode: str = "prefer-subtitles"  # prefer-subtitles | always (ASR first, subtitles as fallback) | never
    backend: str = "transformers"  # transformers | faster-whisper (extra `asr`; needs a CTranslate2 model)
    model: str = "openai/whisper-base"  # hub id or local folder (faster-whisper: size name, hub id or folder)
    language: str | None = None  # None: detected per video (and recorded)
    batch_size: int = 4  # audios per generate call
    num_beams: int = 1
    compute_type: str = "default"  # faster-whisper only (int8, float16, ...)

    @property
    def active(self) -> bool:
        return self.enabled and self.mode != "never"

    def validate(self) -> None:
        _check(self.mode in ASR_MODES, f"models.asr.mode must be one of {', '.join(ASR_MODES)}, got {self.mode!r}")
        _check(self.backend in {"transformers", "faster-whisper"}, "models.asr.backend must be 'transformers' or 'faster-whisper'")
        _check(self.batch_size >= 1, "models.asr.batch_size must be >= 1")
        _check(self.num_beams >= 1, "models.asr.num_beams must be >= 1")


@dataclass(frozen=True)
class CaptionConfig:
    """A transformers image-to-text model (BLIP, GIT, VisionEncoderDecoder) writing `caption` per frame."""

    enabled: bool = False
    model: str = "Salesforce/blip-image-captioning-base"  # hub id or local folder
    batch_size: int = 16
    max_new_tokens: int = 30
    num_beams: int = 1

    def validate(self) -> None:
        _check(self.batch_size >= 1, "models.captions.batch_size must be >= 1")
        _check(self.max_new_tokens >= 1, "models.captions.max_new_tokens must be >= 1")
        _check(self.num_beams >= 1, "models.captions.num_beams must be >= 1")


@dataclass(frozen=True)
class ModelsConfig:
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    dtype: str = "auto"  # auto (float16 on cuda, float32 elsewhere) | float32 | float16 | bfloat16
    cache_dir: str | None = None  # where hub downloads go; None: the Hugging Face default cache
    local_files_only: bool = False  # never download: hub ids must already be in the cache
    max_concurrent: int = 1  # model tasks running at once in one process (bounds memory)
    clip: ClipConfig = field(default_factory=ClipConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    captions: CaptionConfig = field(default_factory=CaptionConfig)

    # where a model runs, and how many inputs go per call, do not change what it outputs
    _PLACEMENT = ("device", "dtype", "cache_dir", "local_files_only", "max_concurrent", "batch_size")

    @property
    def any_enabled(self) -> bool:
        return self.clip.enabled or self.asr.active or self.captions.enabled

    def output_settings(self) -> dict[str, Any]:
        """The settings of the models in use that shape outputs (empty when no model is used)."""
        enabled = {"clip": self.clip.enabled, "asr": self.asr.active, "captions": self.captions.enabled}
        data = to_jsonable(dataclasses.asdict(self))
        return {
            name: {k: v for k, v in data[name].items() if k not in self._PLACEMENT}
            for name, on in enabled.items() if on
        }

    def validate(self) -> None:
        _check(self.device in {"auto", "cpu", "cuda", "mps"} or self.device.startswith("cuda:"),
               f"models.device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        _check(self.dtype in {"auto", "float32", "float16", "bfloat16"},
               f"models.dtype must be auto, float32, float16 or bfloat16, got {self.dtype!r}")
        _check(self.max_concurrent >= 1, "models.max_concurrent must be >= 1")
        self.clip.validate()
        self.asr.validate()
        self.captions.validate()


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
class EbookConfig:
    """PDF, EPUB and HTML picture books: safety caps, then the decoration and layout rules."""

    max_download_mb: float = 300.0  # a book URL (or one of an HTML book's images) larger than this is refused
    max_uncompressed_mb: float = 1024.0  # EPUB/zip: total uncompressed bytes read from the archive (zip bombs)
    max_compression_ratio: float = 200.0  # EPUB/zip: uncompressed/compressed size of any one member
    max_members: int = 20000  # EPUB/zip: entries in the archive
    max_image_pixels: int = 50_000_000  # an image with more pixels is refused from its header, before decoding
    max_pages: int = 2000  # PDF pages / spine items / HTML sections read at most
    render_long_side: int = 1600  # px; PDF pages are rendered this large to crop flattened illustrations
    min_picture_side: int = 64  # px; a smaller image is a decoration (ornament, icon, bullet)
    min_picture_area: float = 0.04  # fraction of the page; a smaller image on a paginated page is a decoration
    max_picture_aspect: float = 6.0  # a longer image is a rule, border or banner
    repeat_as_decoration: int = 3  # the same image on this many pages is a logo or ornament
    running_band: float = 0.1  # top/bottom fraction of a PDF page where repeated lines are headers/footers
    cover_frame: bool = False  # the cover becomes frame 0 (text: the title, flag "cover")

    def validate(self) -> None:
        _check(self.max_download_mb > 0, "ebook.max_download_mb must be > 0")
        _check(self.max_uncompressed_mb > 0, "ebook.max_uncompressed_mb must be > 0")
        _check(self.max_compression_ratio >= 1, "ebook.max_compression_ratio must be >= 1")
        _check(self.max_members >= 1, "ebook.max_members must be >= 1")
        _check(self.max_image_pixels >= 64 * 64, "ebook.max_image_pixels must be >= 4096")
        _check(self.max_pages >= 1, "ebook.max_pages must be >= 1")
        _check(256 <= self.render_long_side <= 8192, "ebook.render_long_side must be in [256, 8192]")
        _check(self.min_picture_side >= 1, "ebook.min_picture_side must be >= 1")
        _check(0.0 <= self.min_picture_area < 1.0, "ebook.min_picture_area must be in [0, 1)")
        _check(self.max_picture_aspect >= 1.0, "ebook.max_picture_aspect must be >= 1")
        _check(self.repeat_as_decoration >= 2, "ebook.repeat_as_decoration must be >= 2")
        _check(0.0 <= self.running_band < 0.5, "ebook.running_band must be in [0, 0.5)")


EXECUTORS = ("local", "dask")
# a Dask scheduler address: [protocol://]host:port, host a name, an IPv4 address or [an IPv6 address]
_DASK_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss)://)?(?:[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\]):(\d{1,5})$")


def _cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's)."""
    import os

    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class RunConfig:
    """Where and how wide a run executes; none of it changes outputs (not in the config hash)."""

    download_workers: int = 4  # threads
    decode_workers: int = field(default_factory=_cores)  # processes for the CPU stages (executor local): one per core
    # sources started and not yet finished, at most; 0: download_workers + 3 x decode_workers, enough
    # to keep every download thread and decode process busy (sources_in_flight()); on Dask, two per
    # worker thread of the cluster (flows.executor.dask_lanes)
    max_sources_in_flight: int = 0
    task_retries: int = 0  # Prefect-level retries of a whole source (network steps retry inside)
    progress: bool = True
    executor: str = "local"  # local (threads + a process pool here) | dask (the stage tasks on a Dask cluster)
    dask_address: str | None = None  # executor dask: an existing scheduler, tcp://host:8786; None: a local cluster
    dask_workers: int = 0  # executor dask without an address: worker processes of the local cluster; 0: one per core

    def validate(self) -> None:
        _check(self.download_workers >= 1, "run.download_workers must be >= 1")
        _check(self.decode_workers >= 1, "run.decode_workers must be >= 1")
        _check(self.task_retries >= 0, "run.task_retries must be >= 0")
        _check(self.executor in EXECUTORS, f"run.executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        _check(self.dask_workers >= 0, "run.dask_workers must be >= 0 (0 = one per core)")
        if self.dask_address is not None:
            _check(self.executor == "dask", f"run.dask_address is set ({self.dask_address!r}) but run.executor is "
                                            f"{self.executor!r}; set run.executor: dask (or --executor dask)")
            match = _DASK_ADDRESS.match(self.dask_address)
            _check(match is not None and 1 <= int(match.group(1)) <= 65535,
                   f"run.dask_address must be a Dask scheduler address such as tcp://host:8786, "
                   f"got {self.dask_address!r}")
        _check(self.max_sources_in_flight >= 0, "run.max_sources_in_flight must be >= 0 (0: from the worker counts)")

    def sources_in_flight(self) -> int:
        """How many sources are in flight at most: ``max_sources_in_flight``, or when 0 one per
        download thread plus three per decode process (one decoding, one queued for it, one in
        the flow-process stages)."""
        return self.max_sources_in_flight or self.download_workers + 3 * self.decode_workers


@dataclass(frozen=True)
class IngestConfig:
    fetch: FetchConfig = field(default_factory=FetchConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    text: TextConfig = field(default_factory=TextConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    ebook: EbookConfig = field(default_factory=EbookConfig)
    run: RunConfig = field(default_factory=RunConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)

    def validate(self) -> "IngestConfig":
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))

    def with_run(self, **settings: Any) -> "IngestConfig":
        """This config with some ``run`` settings replaced (command-line options), validated again.

        ``None`` values are left as they are. Run settings never change outputs: the hash stays.
        """
        given = {name: value for name, value in settings.items() if value is not None}
        if not given:
            return self
        known = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"unknown run setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **given)).validate()

    def output_settings(self) -> dict[str, Any]:
        """The settings that change outputs: no run settings, and models only where one is used.

        With every model disabled this is exactly the model-free config, so the hash (and every
        story and shard) stays the same as a run without a ``models`` section.
        """
        data = self.to_dict()
        data.pop("run")
        data.pop("models")
        data["keyframes"] = self.keyframes.output_settings()  # the shot fields only outside pages mode
        if self.models.any_enabled:
            data["models"] = self.models.output_settings()
        return data

    def hash(self) -> str:
        """Hash of the settings that change outputs (run settings such as worker counts do not)."""
        return _config_hash(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "IngestConfig":
        return build_dataclass(cls, data or {}).validate()

    @classmethod
    def load(cls, path: str | Path | None) -> "IngestConfig":
        if path is None:
            return cls().validate()
        return cls.from_dict(read_yaml_mapping(path))


@functools.lru_cache(maxsize=32)
def _config_hash(cfg: IngestConfig) -> str:
    # a frozen config hashes by value; every source and stage asks, so it is computed once per config
    blob = json.dumps(cfg.output_settings(), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ----------------------------------------------------------------------------- YAML
# PyYAML implements YAML 1.1, where unquoted yes/no/on/off are booleans: `language: no` (Norwegian)
# or `--set train.mixed_precision=no` would arrive as False. Every storyloom YAML input is read
# with YAML 1.2 booleans instead. PyYAML itself is imported on first use (`storyloom --help`
# imports this module and stays fast).

_BOOL_TAG = "tag:yaml.org,2002:bool"
_YAML12_BOOL = r"^(?:true|True|TRUE|false|False|FALSE)$"  # the YAML 1.2 core schema's booleans
_YAML_NULLS = ("null", "Null", "NULL", "~")
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


@functools.cache
def _yaml12_loader() -> type:
    import re

    import yaml

    class Yaml12Loader(yaml.SafeLoader):
        """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false (True, TRUE, ...) are booleans.

        ``yes``, ``no``, ``on``, ``off``, ``y`` and ``n`` stay strings; everything else (numbers,
        null, dates) resolves as with ``yaml.safe_load``. PyYAML's resolvers are class-level
        dicts: this class holds its own copy, so ``yaml.SafeLoader`` is left as it is.
        """

    Yaml12Loader.__qualname__ = "Yaml12Loader"
    Yaml12Loader.yaml_implicit_resolvers = {
        first: kept
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        if (kept := [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG])
    }
    Yaml12Loader.add_implicit_resolver(_BOOL_TAG, re.compile(_YAML12_BOOL), list("tTfF"))
    return Yaml12Loader


def __getattr__(name: str) -> Any:
    # PEP 562: `from pipeline.config import Yaml12Loader` builds the class (and imports PyYAML) on first use
    if name == "Yaml12Loader":
        return _yaml12_loader()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`Yaml12Loader`; raises ``yaml.YAMLError`` when it is not valid YAML."""
    import yaml

    return yaml.load(text, Loader=_yaml12_loader())  # a SafeLoader subclass: safe


def read_yaml_mapping(
    path: str | Path,
    *,
    what: str = "config file",
    not_mapping: str = "must hold a mapping of sections",
    allow_empty: bool = True,
    error: type[Exception] = ConfigError,
) -> dict[str, Any]:
    """The mapping a YAML (or JSON) file holds, read with :class:`Yaml12Loader`.

    Raises ``error`` with "cannot read {what} {path}: ...", "{what} {path} is not valid YAML: ..."
    or "{what} {path} {not_mapping}". An empty file is ``{}`` when ``allow_empty``, else not a mapping.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
    if data is None and allow_empty:
        return {}
    if not isinstance(data, dict):
        raise error(f"{what} {path} {not_mapping}")
    return data


# ----------------------------------------------------------------------------- typed builder


def to_jsonable(value: Any) -> Any:
    """``dataclasses.asdict`` output as plain JSON data (tuples become lists)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def build_dataclass(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build a (nested) frozen dataclass from a mapping, rejecting unknown keys and bad types.

    Values are coerced by the field's type: a ``bool`` takes true/false or the words
    yes/no/on/off/true/false (any case); a ``str`` takes text only, as written; an ``int`` an
    integer; a ``float`` any number (or text such as "1e-4"); a ``tuple[str, ...]`` a list of
    strings (or one string). ``prefix`` ("section.") names the keys in error messages.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = build_dataclass(hint, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(hint, value, prefix + key)
    return cls(**kwargs)


def field_text_value(cls: type, keys: Sequence[str], text: str) -> Any:
    """What ``text``, typed for the field at ``keys`` of dataclass ``cls`` (``--set``), means.

    A ``str`` field takes the text as typed (``null`` or ``~`` is None only where the field is
    optional, ``str | None``). Any other field, or keys naming no field, gets the text parsed
    as YAML 1.2 (``3``, ``1e-4``, ``true``, ``[a, b]``, ``null``; empty text is ""), for
    :func:`build_dataclass` to coerce and check. Raises ``yaml.YAMLError`` for invalid YAML.
    """
    hint: Any = cls
    for key in keys:
        if not (isinstance(hint, type) and dataclasses.is_dataclass(hint)):
            hint = None  # keys name no field: the builder reports them
            break
        names = {f.name for f in dataclasses.fields(hint)}
        hint = get_type_hints(hint)[key] if key in names else None
    optional, inner = _unwrap_optional(hint)
    if inner is str:
        return None if optional and text in _YAML_NULLS else text
    return load_yaml(text) if text.strip() else ""


def _unwrap_optional(hint: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None``, ``(False, hint)`` otherwise."""
    if typing.get_origin(hint) in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(rest) < len(args):
            return True, rest[0]
    return False, hint


def _coerce(hint: Any, value: Any, name: str) -> Any:
    optional, hint = _unwrap_optional(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must not be null")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return _BOOL_WORDS[value.lower()]
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{name} must be a string, got {value!r}"
                          + (" (quote it in YAML to keep it as text)" if isinstance(value, (bool, int, float)) else ""))
    raise ConfigError(f"{name}: unsupported config type {hint!r}")  # a bug in this module
