"""Typed, validated configuration for StoryGen training, generation and evaluation.

One :class:`StoryGenConfig` holds every setting, in sections (``model``, ``data``, ``train``,
``sample``, ``evaluate``). It is built from defaults, then a YAML/JSON file, then command-line
overrides such as ``--set train.lr=1e-4``. An override is read as its field's type: a text
field takes the value as typed (``train.mixed_precision=no`` is "no", ``model.weights=123`` is
"123"; ``null`` is None where the field is optional), any other field reads it as YAML 1.2, so
``true``, ``3``, ``1e-4``, ``[a, b]`` and ``null`` mean what they look like. Files are YAML 1.2
too: only true/false are booleans, and a boolean field also takes yes/no/on/off. Unknown keys
and bad values raise :class:`ConfigError` naming the key, before any model is loaded. The
resolved config is saved inside every checkpoint, and a checkpoint's config is what generation
and evaluation start from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# one YAML reader and one typed builder for every config
from pipeline.config import ConfigError, build_dataclass, field_text_value, read_yaml_mapping, to_jsonable

SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _one_of(value: str, choices: tuple[str, ...], name: str) -> None:
    _check(value in choices, f"{name} must be one of {', '.join(choices)}; got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    # A hub id or a local diffusers directory with unet/, vae/, text_encoder/, tokenizer/, scheduler/.
    pretrained: str = SD15
    revision: str | None = None
    variant: str | None = None  # e.g. "fp16" weight files on the hub
    local_files_only: bool = False  # never touch the network (HF_HUB_OFFLINE=1 does the same)
    # StoryGen weights to start from (an exported weights file or a checkpoint directory), e.g.
    # the stage-1 result when training stage 2.
    weights: str | None = None
    # The image cross-attention's query/key/value start as copies of the block's self-attention
    # ("self_attention") or random ("random"); its output projection always starts at zero.
    image_attention_init: str = "self_attention"

    def validate(self) -> None:
        _check(bool(self.pretrained), "model.pretrained must name a hub id or a local diffusers directory")
        _one_of(self.image_attention_init, ("self_attention", "random"), "model.image_attention_init")


@dataclass(frozen=True)
class DataConfig:
    # Shard URLs: local paths, brace patterns ("shards/train-{000000..000009}.tar") or any fsspec
    # URL ("s3://bucket/shards/train-000000.tar"). Leave empty and set ``dataset`` instead to read
    # the shard list from a storyloom output directory's manifest-{split}.json.
    shards: tuple[str, ...] = ()
    dataset: str | None = None
    split: str = "train"
    resolution: int = 512
    crop: str = "center"  # "center" or "random"
    max_context: int = 3  # context frames kept before each target (the window is max_context + 1)
    prompt: str = "caption_or_text"  # "caption_or_text", "text" or "caption"
    num_workers: int = 4  # DataLoader worker processes per GPU
    shard_mode: str = "auto"  # "split" (by node and worker), "resampled", or "auto"
    story_shuffle: int = 64  # stories held in the shuffle buffer (0: no shuffle)
    window_shuffle: int = 512  # windows held in the shuffle buffer (0: no shuffle)

    def validate(self) -> None:
        _check(self.resolution >= 8 and self.resolution % 8 == 0, "data.resolution must be a multiple of 8")
        _one_of(self.crop, ("center", "random"), "data.crop")
        _check(0 <= self.max_context <= 16, "data.max_context must be in [0, 16]")
        _one_of(self.prompt, ("caption_or_text", "text", "caption"), "data.prompt")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")
        _one_of(self.shard_mode, ("auto", "split", "resampled"), "data.shard_mode")
        _check(self.story_shuffle >= 0 and self.window_shuffle >= 0, "data shuffle buffers must be >= 0")
        _check(bool(self.split), "data.split must not be empty")


@dataclass(frozen=True)
class TrainConfig:
    stage: int = 1  # 1: style (self-attention, single frames); 2: context (image cross-attention)
    output_dir: str = "runs/storygen"
    max_steps: int = 20000  # optimizer steps
    batch_size: int = 4  # per process
    grad_accum: int = 1
    lr: float = 1e-5
    lr_scheduler: str = "constant"  # any diffusers.optimization scheduler name
    lr_warmup_steps: int = 500
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    optimizer: str = "adamw"  # "adamw" or "adamw8bit" (bitsandbytes, the [adam8bit] extra)
    mixed_precision: str = "bf16"  # "no", "fp16" or "bf16"; "no" on a CPU-only machine
    gradient_checkpointing: bool = False
    attention: str = "sdpa"  # "sdpa" (torch's scaled_dot_product_attention) or "xformers"
    allow_tf32: bool = True
    prediction: str = "epsilon"  # "epsilon" (noise) or "v_prediction"
    text_dropout: float = 0.05  # classifier-free guidance: empty prompt
    context_dropout: float = 0.10  # classifier-free guidance: no context frames at all
    min_context_frames: int = 1  # stage 2 draws min_context_frames..data.max_context frames per batch
    context_noise_divisor: float = 10.0  # t_ctx = t * d / divisor for the frame d steps back
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3  # older ones are removed (0 keeps all)
    resume: str = "latest"  # "latest", "none", or a checkpoint directory
    resume_data: str = "reseed"  # "reseed": new shuffle seed; "skip": replay the data order exactly
    log_every: int = 10
    sample_every: int = 1000  # 0: never
    seed: int = 0

    def validate(self) -> None:
        _check(self.stage in (1, 2), "train.stage must be 1 or 2")
        _check(self.max_steps >= 1, "train.max_steps must be >= 1")
        _check(self.batch_size >= 1 and self.grad_accum >= 1, "train.batch_size and train.grad_accum must be >= 1")
        _check(self.lr > 0, "train.lr must be > 0")
        _check(self.lr_warmup_steps >= 0, "train.lr_warmup_steps must be >= 0")
        _one_of(self.optimizer, ("adamw", "adamw8bit"), "train.optimizer")
        _one_of(self.mixed_precision, ("no", "fp16", "bf16"), "train.mixed_precision")
        _one_of(self.attention, ("sdpa", "xformers"), "train.attention")
        _one_of(self.prediction, ("epsilon", "v_prediction"), "train.prediction")
        _check(0 <= self.text_dropout < 1 and 0 <= self.context_dropout < 1, "train dropouts must be in [0, 1)")
        _check(self.min_context_frames >= 1, "train.min_context_frames must be >= 1")
        _check(self.context_noise_divisor > 0, "train.context_noise_divisor must be > 0")
        _check(self.checkpoint_every >= 1, "train.checkpoint_every must be >= 1")
        _check(self.keep_checkpoints >= 0, "train.keep_checkpoints must be >= 0")
        _check(bool(self.resume), "train.resume must be 'latest', 'none' or a checkpoint directory")
        _one_of(self.resume_data, ("reseed", "skip"), "train.resume_data")
        _check(self.log_every >= 1 and self.sample_every >= 0, "train.log_every must be >= 1, sample_every >= 0")


@dataclass(frozen=True)
class SampleConfig:
    """Story generation: used by ``storyloom generate``, training samples and evaluation."""

    steps: int = 50
    scheduler: str = "ddim"  # "ddim", "ddpm", "euler" or "dpm"
    text_scale: float = 7.5  # guidance towards the text, given the context frames
    image_scale: float = 2.0  # guidance towards the context frames, without text
    seed: int = 0
    resolution: int | None = None  # None: data.resolution
    max_context: int | None = None  # earlier frames a new frame sees; None: data.max_context
    # Prompts of the stories sampled during training; empty: the first stories of data.split.
    prompts: tuple[str, ...] = ()
    num_stories: int = 2  # stories sampled during training when no prompts are given
    max_frames: int = 4  # frames per story sampled during training

    def validate(self) -> None:
        _check(self.steps >= 1, "sample.steps must be >= 1")
        _one_of(self.scheduler, ("ddim", "ddpm", "euler", "dpm"), "sample.scheduler")
        _check(self.text_scale >= 0 and self.image_scale >= 0, "sample guidance scales must be >= 0")
        _check(self.resolution is None or (self.resolution >= 8 and self.resolution % 8 == 0),
               "sample.resolution must be a multiple of 8")
        _check(self.max_context is None or self.max_context >= 0, "sample.max_context must be >= 0")
        _check(self.num_stories >= 1 and self.max_frames >= 1, "sample.num_stories and max_frames must be >= 1")


@dataclass(frozen=True)
class EvaluateConfig:
    split: str = "test"
    # CLIP for CLIP-T / CLIP-I (and FID features when fid_features == "clip"): hub id or local dir.
    clip_model: str = "openai/clip-vit-large-patch14"
    fid_features: str = "inception"  # "inception" (torchvision Inception-v3 pool features) or "clip"
    # Inception-v3 weights (torchvision layout): a local file, an http(s) URL, or
    # "hf://owner/repo/file.pth" on the Hugging Face hub.
    inception_weights: str = "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"
    context: str = "true"  # condition each frame on the "true" earlier frames or the "generated" ones
    max_stories: int = 0  # 0: all stories of the split
    max_frames: int = 0  # per story; 0: all
    batch_size: int = 16  # images per metric-model batch

    def validate(self) -> None:
        _one_of(self.fid_features, ("inception", "clip"), "evaluate.fid_features")
        _one_of(self.context, ("true", "generated"), "evaluate.context")
        _check(self.max_stories >= 0 and self.max_frames >= 0, "evaluate.max_stories/max_frames must be >= 0")
        _check(self.batch_size >= 1, "evaluate.batch_size must be >= 1")


@dataclass(frozen=True)
class StoryGenConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def validate(self) -> "StoryGenConfig":
        for section in dataclasses.fields(self):
            getattr(self, section.name).validate()
        _check(self.train.stage == 1 or self.train.min_context_frames <= self.data.max_context,
               f"train.min_context_frames ({self.train.min_context_frames}) must be <= data.max_context "
               f"({self.data.max_context}) in stage 2")
        return self

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(dataclasses.asdict(self))

    def hash(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "StoryGenConfig":
        return build_dataclass(cls, data or {}).validate()

    def merged(self, data: dict[str, Any]) -> "StoryGenConfig":
        """This config with the (nested, partial) mapping ``data`` laid over it."""
        return StoryGenConfig.from_dict(_deep_merge(self.to_dict(), data))

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> "StoryGenConfig":
        """Apply ``section.key=value`` strings, each value read as its field's type (see parse_overrides)."""
        return self.merged(parse_overrides(overrides))

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> "StoryGenConfig":
        data: dict[str, Any] = {}
        if path is not None:
            data = read_config_file(path)
        return cls.from_dict(_deep_merge(data, parse_overrides(overrides)))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping a StoryGen config file holds (YAML 1.2 or JSON; an empty file is ``{}``)."""
    return read_yaml_mapping(path)


def parse_overrides(overrides: list[str] | tuple[str, ...], schema: type = StoryGenConfig) -> dict[str, Any]:
    """``["train.lr=1e-4", "data.shards=[a.tar, b.tar]"]`` -> nested mapping.

    Each value is read as the type of the field it sets in ``schema``: a ``str`` field takes the
    text as typed (``train.mixed_precision=no`` -> "no"; ``null``/``~`` -> None only for a
    ``str | None`` field), any other field the text parsed as YAML 1.2, which the builder then
    coerces and checks. Keys naming no field get the parsed YAML too; the builder refuses them.
    """
    import yaml

    result: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or "." not in key:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. train.lr=1e-4)")
        *parents, leaf = key.split(".")
        try:
            value = field_text_value(schema, [*parents, leaf], raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = result
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part}")
        node[leaf] = value
    return result


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
