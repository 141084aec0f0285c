"""Story generation: the first frame from text alone, every next frame from the earlier ones.

For frame ``i`` the earlier frames (nearest first, at most ``max_context``) are noised to
``t_ctx = t * d / 10`` at every denoising step ``t`` and run once through the UNet to give the
context features, by the same record pass as in training (``StoryGen.record_context``). The
prediction then combines three UNet outputs, batched in one call (classifier-free guidance with
separate image and text scales):

    eps = eps(no text, no image)
        + image_scale * (eps(no text, image) - eps(no text, no image))
        + text_scale  * (eps(text, image)    - eps(no text, image))

The first frame uses plain text guidance. ``storyloom generate`` writes ``frame-NNN.png``, a
``contact-sheet.png`` with the prompts under the frames, and ``story.json``.
"""

from __future__ import annotations

import json
import logging
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.config import SampleConfig, StoryGenConfig
from model.storygen import StoryContext, StoryGen

log = logging.getLogger(__name__)


def make_scheduler(name: str, noise_scheduler):
    """A sampling scheduler from the training noise schedule's config."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    cls = {"ddim": DDIMScheduler, "ddpm": DDPMScheduler, "euler": EulerDiscreteScheduler,
           "dpm": DPMSolverMultistepScheduler}[name]
    return cls.from_config(noise_scheduler.config)


@dataclass
class ContextFrame:
    latents: torch.Tensor  # (1, 4, h, w), clean
    prompt: str


class StoryGenerator:
    """Generates frames one after another with a :class:`StoryGen` model (in eval mode)."""

    def __init__(self, model: StoryGen, sample: SampleConfig, resolution: int, max_context: int,
                 divisor: float = 10.0, show_progress: bool = False):
        self.model = model
        self.sample = sample
        self.resolution = resolution
        self.max_context = max_context
        self.divisor = divisor
        self.show_progress = show_progress

    @property
    def latent_shape(self) -> tuple[int, int, int, int]:
        size = self.resolution // self.model.vae_factor
        return (1, self.model.unet.config.in_channels, size, size)

    @torch.no_grad()
    def frame(self, prompt: str, context: list[ContextFrame], generator: torch.Generator) -> torch.Tensor:
        """Latents (1, 4, h, w) of one new frame; ``context`` holds earlier frames, nearest first."""
        model, unet = self.model, self.model.unet
        device = model.device
        dtype = unet.dtype
        scheduler = make_scheduler(self.sample.scheduler, model.noise_scheduler)
        scheduler.set_timesteps(self.sample.steps, device=device)
        context = context[: self.max_context]
        n = len(context)

        text = model.encode_prompts(["", prompt] if n == 0 else ["", "", prompt]).to(dtype)  # uncond, (img), full
        if n:
            ctx_latents = torch.cat([c.latents for c in context]).to(device)  # (N, 4, h, w)
            ctx_text = model.encode_prompts([c.prompt for c in context]).to(dtype)
            ctx_noise = torch.randn(ctx_latents.shape, generator=generator, device=device, dtype=ctx_latents.dtype)
            valid = torch.ones(3, n, dtype=torch.bool, device=device)
            gate = torch.tensor([0.0, 1.0, 1.0], device=device)
        latents = torch.randn(self.latent_shape, generator=generator, device=device) * scheduler.init_noise_sigma
        steps = scheduler.timesteps
        if self.show_progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc="denoising", leave=False)
        for t in steps:
            batch = 2 if n == 0 else 3
            x = scheduler.scale_model_input(torch.cat([latents] * batch), t).to(dtype)
            t_batch = torch.full((batch,), int(t), device=device, dtype=torch.long)
            story = None
            if n:
                story = self._context(ctx_latents, ctx_noise, ctx_text, t, valid, gate)
            eps = model.predict(unet, x, t_batch, text, story).float()
            if n == 0:
                uncond, full = eps.chunk(2)
                guided = uncond + self.sample.text_scale * (full - uncond)
            else:
                uncond, image, full = eps.chunk(3)
                guided = (uncond + self.sample.image_scale * (image - uncond)
                          + self.sample.text_scale * (full - image))
            latents = scheduler.step(guided, t, latents, generator=generator).prev_sample
        return latents

    def _context(self, ctx_latents, ctx_noise, ctx_text, t, valid, gate):
        """Context features at step t for the 3-way batch: one record pass over the N frames, which
        every row of the batch shares (the unconditional row is silenced by its gate)."""
        model = self.model
        n = ctx_latents.shape[0]
        t_ctx = model.context_timesteps(torch.tensor([int(t)], device=ctx_latents.device), n, self.divisor)[0]
        features = model.record_context(ctx_latents, ctx_text, t_ctx, ctx_noise)  # (N, L, C) per block
        per_slot = {name: f[None].expand(valid.shape[0], -1, -1, -1) for name, f in features.items()}
        return StoryContext.attend(per_slot, valid, gate)

    @torch.no_grad()
    def story(self, prompts: list[str], seed: int | None = None,
              true_frames: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Images (3, H, W) in [0, 1], one per prompt.

        With ``true_frames`` ((3, H, W) in [-1, 1], one per prompt), frame i is conditioned on the
        true earlier frames instead of the generated ones (teacher forcing, for evaluation).
        """
        model = self.model
        generator = torch.Generator(device=model.device).manual_seed(self.sample.seed if seed is None else seed)
        history: list[ContextFrame] = []
        images = []
        for i, prompt in enumerate(prompts):
            latents = self.frame(prompt, list(reversed(history))[: self.max_context], generator)
            images.append(model.decode_latents(latents)[0].cpu())
            if true_frames is not None:
                latents = model.encode_images(true_frames[i][None].to(model.device), generator=generator)
            history.append(ContextFrame(latents=latents, prompt=prompt))
        return images


# ----------------------------------------------------------------------------- output


def to_pil(image: torch.Tensor):
    from PIL import Image

    array = (image.clamp(0, 1).permute(1, 2, 0).mul(255).round().to(torch.uint8).numpy())
    return Image.fromarray(array)


def contact_sheet(images: list, prompts: list[str], columns: int = 4, caption_lines: int = 4):
    """A grid of the frames with each prompt wrapped under its frame (PIL image)."""
    from PIL import Image, ImageDraw, ImageFont

    w, h = images[0].size
    font = ImageFont.load_default()
    chars = max(4, int((w - 6) // max(1.0, font.getlength("n"))))  # characters per caption line
    line_h = 12
    cap_h = caption_lines * line_h + 6
    cols = min(columns, len(images))
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * (h + cap_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (img, prompt) in enumerate(zip(images, prompts)):
        x, y = (i % cols) * w, (i // cols) * (h + cap_h)
        sheet.paste(img, (x, y))
        lines = textwrap.wrap(f"{i + 1}. {prompt}", chars)[:caption_lines]
        for k, line in enumerate(lines):
            draw.text((x + 3, y + h + 3 + k * line_h), line, fill="black", font=font)
    return sheet


def write_story(images: list[torch.Tensor], prompts: list[str], out_dir: str | Path,
                meta: dict[str, Any] | None = None) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pils = [to_pil(img) for img in images]
    paths = []
    for i, img in enumerate(pils):
        path = out / f"frame-{i:03d}.png"
        img.save(path)
        paths.append(path)
    contact_sheet(pils, prompts).save(out / "contact-sheet.png")
    doc = {"frames": [{"index": i, "image": p.name, "prompt": pr} for i, (p, pr) in enumerate(zip(paths, prompts))]}
    doc.update(meta or {})
    (out / "story.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return paths


def read_prompts(path: str | Path) -> list[str]:
    """Frame prompts from a text file (one per line), a JSON list, or a storyloom story JSON."""
    from model.data import choose_prompt

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        if isinstance(data, dict) and "frames" in data:
            return [choose_prompt(f, "caption_or_text") for f in data["frames"]]
        if isinstance(data, list) and all(isinstance(p, str) for p in data):
            return data
        raise ValueError(f"{path}: expected a list of prompts or a story with frames")
    return [line.strip() for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- entry point


def load_for_inference(cfg: StoryGenConfig, device: str | None = None, dtype: str = "auto") -> StoryGen:
    """The model of ``cfg`` (base + ``model.weights``) in eval mode on ``device``."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        dtype = "fp16" if device.startswith("cuda") else "fp32"
    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    model = StoryGen.from_config(cfg.model, prediction=cfg.train.prediction)
    if torch_dtype != torch.float32:
        model.unet.to(dtype=torch_dtype)
    model.unet.eval()
    model.to(device, dtype=torch_dtype)
    model.vae.eval()
    model.text_encoder.eval()
    return model


def generator_for(model: StoryGen, cfg: StoryGenConfig, show_progress: bool = False) -> StoryGenerator:
    resolution = cfg.sample.resolution or cfg.data.resolution
    max_context = cfg.data.max_context if cfg.sample.max_context is None else cfg.sample.max_context
    return StoryGenerator(model, cfg.sample, resolution, max_context, cfg.train.context_noise_divisor, show_progress)


def generate(cfg: StoryGenConfig, prompts: list[str], out_dir: str | Path, device: str | None = None,
             dtype: str = "auto") -> list[Path]:
    if not prompts:
        raise ValueError("no prompts: give --prompt (repeatable) or --prompts FILE")
    model = load_for_inference(cfg, device, dtype)
    images = generator_for(model, cfg, show_progress=True).story(prompts)
    meta = {"seed": cfg.sample.seed, "weights": cfg.model.weights, "base": cfg.model.pretrained,
            "sample": cfg.to_dict()["sample"]}
    return write_story(images, prompts, out_dir, meta)
