"""StoryGen evaluation on a test split: CLIP-T, CLIP-I and FID.

For every story of the split (``evaluate.max_stories`` at most) the model generates each frame
from its prompt, conditioned on the earlier frames: the true ones (``evaluate.context=true``,
the default, as in StoryGen's own evaluation) or its own (``generated``). Then:

- **CLIP-T**: mean cosine similarity between a generated frame and its prompt;
- **CLIP-I**: mean cosine similarity between a generated frame and the true frame;
- **FID**: Fréchet distance between features of the true and the generated frames, from
  torchvision's Inception-v3 (2048-d pool features, ``evaluate.fid_features=inception``) or from
  the CLIP image encoder (``clip``).

Every metric model is loaded like every other model: CLIP by hub id or local directory through
``transformers``' ``from_pretrained``; Inception weights from a local file, an http(s) URL, or
``hf://owner/repo/file``. ``metrics.json`` and the generated stories go to the output directory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from model.config import StoryGenConfig
from model.storygen import ensure_imports
from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- metric models


class ClipScorer:
    """CLIP image and text embeddings (transformers ``CLIPModel``), L2-normalised."""

    def __init__(self, model_id: str, device: str = "cpu", local_files_only: bool = False):
        ensure_imports()
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

        try:
            self.model = CLIPModel.from_pretrained(model_id, local_files_only=local_files_only).to(device).eval()
            self.processor = CLIPImageProcessor.from_pretrained(model_id, local_files_only=local_files_only)
            self.tokenizer = AutoTokenizer.from_pretrained(model_id, local_files_only=local_files_only)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"cannot load the CLIP model for evaluation from {model_id!r}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}\nPoint evaluate.clip_model at a hub id or a local "
                f"directory (`huggingface-cli download {model_id} --local-dir DIR`, then "
                "--set evaluate.clip_model=DIR).") from exc
        self.device = device

    @torch.no_grad()
    def image_features(self, images: list, normalize: bool = True) -> torch.Tensor:
        pixels = self.processor(images=images, return_tensors="pt").pixel_values.to(self.device)
        feats = self._tensor(self.model.get_image_features(pixel_values=pixels)).float()
        return torch.nn.functional.normalize(feats, dim=-1) if normalize else feats

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        max_len = min(self.tokenizer.model_max_length, self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_len,
                                return_tensors="pt").to(self.device)
        feats = self._tensor(self.model.get_text_features(**tokens)).float()
        return torch.nn.functional.normalize(feats, dim=-1)

    @staticmethod
    def _tensor(out) -> torch.Tensor:
        # transformers 5 may return a model output object instead of a bare tensor
        if isinstance(out, torch.Tensor):
            return out
        for attr in ("image_embeds", "text_embeds", "pooler_output"):
            if getattr(out, attr, None) is not None:
                return getattr(out, attr)
        raise TypeError(f"unexpected CLIP output {type(out).__name__}")


def load_inception_state(source: str) -> dict[str, torch.Tensor]:
    """Inception-v3 weights (torchvision layout) from a file, an http(s) URL or hf://owner/repo/file."""
    try:
        if source.startswith(("http://", "https://")):
            return torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=True)
        if source.startswith("hf://"):
            from huggingface_hub import hf_hub_download

            owner, repo, filename = source.removeprefix("hf://").split("/", 2)
            source = hf_hub_download(f"{owner}/{repo}", filename)
        path = Path(source).expanduser()
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure gets the same actionable message
        raise ModelLoadError(
            f"cannot load Inception-v3 weights for FID from {source!r}: {type(exc).__name__}: {exc}\n"
            "Download them once (torchvision's inception_v3_google-0cc3c7bd.pth) and point "
            "evaluate.inception_weights at the file, or use --set evaluate.fid_features=clip.") from exc


class InceptionFeatures:
    """2048-d pool features of torchvision's Inception-v3 (the usual FID feature space)."""

    def __init__(self, weights: str, device: str = "cpu"):
        ensure_imports()
        from torchvision.models import Inception3

        model = Inception3(aux_logits=True, init_weights=False, transform_input=False)
        state = load_inception_state(weights)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if [k for k in missing if not k.startswith("AuxLogits")] or unexpected:
            raise ModelLoadError(f"{weights} is not an Inception-v3 state dict (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        model.fc = torch.nn.Identity()
        self.model = model.to(device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, images: list) -> torch.Tensor:
        import numpy as np

        batch = torch.stack([torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)
                             for im in images]).div(255.0)
        batch = torch.nn.functional.interpolate(batch, size=(299, 299), mode="bilinear", align_corners=False)
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        return self.model(((batch - mean) / std).to(self.device)).float().cpu()


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two feature sets (N, D): |mu_a - mu_b|^2 + tr(Sa + Sb - 2 (Sa Sb)^1/2)."""
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("FID needs at least two images on each side")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # the eigenvalues of Sa Sb (a product of PSD matrices) are real and >= 0: tr sqrt = sum sqrt(eig)
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0)
    return float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum())


# ----------------------------------------------------------------------------- the run


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def evaluate(cfg: StoryGenConfig, out_dir: str | Path, device: str | None = None, dtype: str = "auto") -> dict[str, Any]:
    from model.data import frame_tensor, iter_stories, resolve_shards
    from model.generate import generator_for, load_for_inference, to_pil, write_story

    ev = cfg.evaluate
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    urls = resolve_shards(cfg.data.shards, cfg.data.dataset, ev.split)
    model = load_for_inference(cfg, device, dtype)
    gen = generator_for(model, cfg)
    resolution = gen.resolution

    generated, real, prompts = [], [], []
    n_stories = 0
    for story in iter_stories(urls, cfg.data.prompt):
        frames = story.frames[: ev.max_frames] if ev.max_frames else story.frames
        if not frames:
            continue
        true = [frame_tensor(f, resolution, "center", None) for f in frames]  # (3, H, W) in [-1, 1]
        story_prompts = [f.prompt for f in frames]
        images = gen.story(story_prompts, seed=cfg.sample.seed + n_stories,
                           true_frames=true if ev.context == "true" else None)
        write_story(images, story_prompts, out / "stories" / story.story_id, {"story_id": story.story_id})
        generated += [to_pil(img) for img in images]
        real += [to_pil((t + 1) / 2) for t in true]
        prompts += story_prompts
        n_stories += 1
        log.info("evaluated story %s (%d frames)", story.story_id, len(frames))
        if ev.max_stories and n_stories >= ev.max_stories:
            break
    if not generated:
        raise ValueError(f"no stories in split {ev.split!r} of {urls}")

    clip = ClipScorer(ev.clip_model, device, cfg.model.local_files_only)
    gen_f = torch.cat([clip.image_features(b) for b in _batched(generated, ev.batch_size)])
    real_f = torch.cat([clip.image_features(b) for b in _batched(real, ev.batch_size)])
    text_f = torch.cat([clip.text_features(b) for b in _batched(prompts, ev.batch_size)])
    has_text = torch.tensor([bool(p) for p in prompts])
    clip_t = float((gen_f * text_f).sum(-1)[has_text].mean()) if bool(has_text.any()) else float("nan")
    clip_i = float((gen_f * real_f).sum(-1).mean())

    if ev.fid_features == "inception":
        extractor = InceptionFeatures(ev.inception_weights, device)
        fid_real = torch.cat([extractor(b) for b in _batched(real, ev.batch_size)])
        fid_gen = torch.cat([extractor(b) for b in _batched(generated, ev.batch_size)])
    else:
        fid_real = torch.cat([clip.image_features(b, normalize=False) for b in _batched(real, ev.batch_size)])
        fid_gen = torch.cat([clip.image_features(b, normalize=False) for b in _batched(generated, ev.batch_size)])
    fid = frechet_distance(fid_real, fid_gen) if len(generated) >= 2 else float("nan")

    metrics = {"clip_t": clip_t, "clip_i": clip_i, "fid": fid, "fid_features": ev.fid_features,
               "stories": n_stories, "frames": len(generated), "split": ev.split, "context": ev.context,
               "clip_model": ev.clip_model, "weights": cfg.model.weights, "resolution": resolution,
               "steps": cfg.sample.steps, "text_scale": cfg.sample.text_scale, "image_scale": cfg.sample.image_scale}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return metrics
