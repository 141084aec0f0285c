"""StoryGen on Stable Diffusion 1.5: an image cross-attention in every transformer block.

The base model is diffusers' ``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder,
loaded from a hub id or a local diffusers directory. StoryGen (Liu et al., "Intelligent Grimm",
CVPR 2024) adds to every transformer block an attention from the frame being made to features of
the earlier frames of the story. Here it is attached through diffusers' attention-processor
mechanism, not a fork of the UNet:

- every ``attn2`` (text cross-attention) gets a :class:`ImageCrossAttnProcessor`: it runs the
  block's own text cross-attention processor unchanged, and adds an image cross-attention whose
  query is the same input (the block's hidden states after self-attention, layer-normed by
  ``norm2``) and whose keys/values come from the context frames. Its output projection starts at
  zero, so an untrained StoryGen predicts exactly what the base UNet predicts;
- every ``attn1`` gets a :class:`PassThroughProcessor` that runs its processor unchanged and only
  swallows the ``story`` keyword (diffusers passes ``cross_attention_kwargs`` to both).

Context features (one UNet pass per context frame, all frames batched together): each earlier
frame is encoded by the VAE, noised to ``t_ctx = t * d / 10`` for the frame ``d`` steps before
the target (the nearest frame is the least noisy), and run through the same UNet conditioned on
its own text with a :class:`StoryContext` in "record" mode: each ``attn2`` processor stores its
input, the block's hidden states after self-attention. Those become, per block, the keys and
values of the target's image cross-attention ("attend" mode). The StoryContext travels in
``cross_attention_kwargs``, so gradient checkpointing recomputes blocks with the same context.
Training and generation share this protocol: :meth:`StoryGen.record_context` is the record pass,
:meth:`StoryContext.attend` lays the per-slot features out for the target pass.

Which UNet parameters are StoryGen's, and their weights file, are in ``model.weights``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from model.config import ConfigError, ModelConfig, TrainConfig
from model.weights import (
    is_image_attention,
    is_self_attention,
    is_storygen_weight,
    load_storygen_weights,
)
from pipeline.errors import ModelLoadError

log = logging.getLogger(__name__)


def ensure_imports() -> None:
    """Call before diffusers/transformers are first imported (see pipeline.models.torch_compat)."""
    from pipeline.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()


# ----------------------------------------------------------------------------- loading


@dataclass
class Components:
    unet: Any  # diffusers.UNet2DConditionModel
    vae: Any  # diffusers.AutoencoderKL
    text_encoder: Any  # transformers.CLIPTextModel
    tokenizer: Any  # transformers.CLIPTokenizer
    noise_scheduler: Any  # diffusers.DDPMScheduler (training noise schedule)


def _load_part(cls, what: str, cfg: ModelConfig, subfolder: str, **kwargs):
    options: dict[str, Any] = {"subfolder": subfolder, "local_files_only": cfg.local_files_only}
    if cfg.revision:
        options["revision"] = cfg.revision
    if cfg.variant and subfolder in ("unet", "vae", "text_encoder"):
        options["variant"] = cfg.variant
    try:
        return cls.from_pretrained(cfg.pretrained, **options, **kwargs)
    except (OSError, ValueError, RuntimeError) as exc:
        local = Path(cfg.pretrained).expanduser()
        where = f"local directory {local}" if local.exists() else f"hub id {cfg.pretrained!r}"
        raise ModelLoadError(
            f"cannot load the {what} of the Stable Diffusion model from {where} (subfolder {subfolder}/): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n"
            f"model.pretrained must be a hub id or a diffusers directory holding unet/, vae/, text_encoder/, "
            f"tokenizer/ and scheduler/. To use a local copy: `huggingface-cli download {cfg.pretrained} "
            f"--local-dir DIR` on a machine with network, then `--set model.pretrained=DIR` "
            f"(or model: {{pretrained: DIR}} in the config file)."
        ) from exc


def load_components(cfg: ModelConfig) -> Components:
    """The SD-1.5 parts, each through its library's own ``from_pretrained``."""
    ensure_imports()
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return Components(
        unet=_load_part(UNet2DConditionModel, "UNet", cfg, "unet"),
        vae=_load_part(AutoencoderKL, "VAE", cfg, "vae"),
        text_encoder=_load_part(CLIPTextModel, "text encoder", cfg, "text_encoder"),
        tokenizer=_load_part(CLIPTokenizer, "tokenizer", cfg, "tokenizer"),
        noise_scheduler=_load_part(DDPMScheduler, "noise scheduler", cfg, "scheduler"),
    )


# ----------------------------------------------------------------------------- the processors


@dataclass
class StoryContext:
    """What the ``attn2`` processors see during one UNet call.

    ``mode="record"``: each processor stores its input under its name in ``features``
    (``(M, L, C)`` for M context frames). ``mode="attend"``: ``features[name]`` is
    ``(B, N * L, C)``, the N context frames of each target side by side; ``valid`` ``(B, N)`` says
    which slots hold a real frame and ``gate`` ``(B,)`` scales the image branch per sample
    (0 drops all context: classifier-free guidance).
    """

    mode: str
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    valid: torch.Tensor | None = None  # (B, N) bool
    gate: torch.Tensor | None = None  # (B,) float

    @classmethod
    def attend(cls, features: dict[str, torch.Tensor], valid: torch.Tensor,
               gate: torch.Tensor | None = None) -> StoryContext:
        """An "attend" context from per-slot features ``(B, N, L, C)`` per block: each target's N
        slots side by side, ``(B, N * L, C)``; ``valid`` (B, N), ``gate`` (B,) as above."""
        return cls(mode="attend", features={name: f.flatten(1, 2) for name, f in features.items()},
                   valid=valid, gate=gate)

    def key_mask(self, tokens: int) -> torch.Tensor | None:
        """(B, 1, 1, N * L) bool for SDPA, or None when every slot is valid.

        A sample with no valid slot attends to all (zero) slots and is silenced by its gate, so
        no softmax row is empty."""
        if self.valid is None or bool(self.valid.all()):
            return None
        b, n = self.valid.shape
        mask = self.valid.repeat_interleave(tokens // n, dim=1)  # (B, N * L)
        mask = mask | ~self.valid.any(dim=1, keepdim=True)
        return mask[:, None, None, :]


class PassThroughProcessor:
    """Runs the layer's own processor and drops the ``story`` keyword meant for ``attn2``."""

    def __init__(self, base):
        self.base = base

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, story=None):
        return self.base(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                         attention_mask=attention_mask, temb=temb)


class ImageCrossAttnProcessor(nn.Module):
    """Text cross-attention (the layer's own processor) plus StoryGen's image cross-attention.

    The image branch has its own query/key/value projections and an output projection that is
    zero at initialisation; its parameters live in this module, which diffusers registers under
    ``...attn2.processor``.
    """

    def __init__(self, name: str, dim: int, heads: int, head_dim: int, base):
        super().__init__()
        self.name = name
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)
        self.base = base  # a plain object (AttnProcessor2_0, XFormersAttnProcessor): not a submodule

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, story=None):
        out = self.base(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                        attention_mask=attention_mask, temb=temb)
        if story is None:
            return out
        if story.mode == "record":
            story.features[self.name] = hidden_states  # (M, L, C): after self-attention, norm2'd
            return out
        context = story.features.get(self.name)
        if context is None:
            return out
        return out + self.image_attention(hidden_states, context, story)

    def image_attention(self, x: torch.Tensor, context: torch.Tensor, story: StoryContext) -> torch.Tensor:
        b, lq, _ = x.shape  # (B, Lq, C)
        context = context.to(x.dtype)
        q = self.to_q(x).view(b, lq, self.heads, self.head_dim).transpose(1, 2)  # (B, h, Lq, d)
        k = self.to_k(context).view(b, -1, self.heads, self.head_dim).transpose(1, 2)  # (B, h, Lk, d)
        v = self.to_v(context).view(b, -1, self.heads, self.head_dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=story.key_mask(context.shape[1]))
        o = self.to_out(o.transpose(1, 2).reshape(b, lq, self.heads * self.head_dim))  # (B, Lq, C)
        if story.gate is not None:
            o = o * story.gate.to(o.dtype)[:, None, None]
        return o


def attach_image_attention(unet, init: str = "self_attention", attention: str = "sdpa") -> dict[str, ImageCrossAttnProcessor]:
    """Give every transformer block of ``unet`` an image cross-attention (idempotent per UNet).

    Returns the new processors by attention path. ``init="self_attention"`` starts their
    query/key/value from the block's self-attention (the context features live in the same space
    as the block's own hidden states); the output projection always starts at zero.
    """
    if attention == "xformers":  # before wrapping: it replaces every processor
        try:
            unet.enable_xformers_memory_efficient_attention()
        except (ImportError, ModuleNotFoundError, ValueError) as exc:
            raise ConfigError(f"train.attention=xformers, but xformers cannot be used here ({exc}); "
                              "the default train.attention=sdpa needs nothing extra") from exc
    modules = dict(unet.named_modules())
    processors = {}
    new: dict[str, ImageCrossAttnProcessor] = {}
    for key, processor in unet.attn_processors.items():
        path = key.removesuffix(".processor")
        if isinstance(processor, (ImageCrossAttnProcessor, PassThroughProcessor)):
            raise RuntimeError("attach_image_attention was already applied to this UNet")
        attn = modules[path]
        if path.endswith(".attn2") and attn.is_cross_attention:
            heads = attn.heads
            head_dim = attn.inner_dim // heads
            proc = ImageCrossAttnProcessor(path, attn.query_dim, heads, head_dim, processor)
            if init == "self_attention":
                self_attn = modules[path.removesuffix(".attn2") + ".attn1"]
                with torch.no_grad():
                    for mine, theirs in ((proc.to_q, self_attn.to_q), (proc.to_k, self_attn.to_k), (proc.to_v, self_attn.to_v)):
                        mine.weight.copy_(theirs.weight)
            param = attn.to_q.weight
            proc.to(device=param.device, dtype=param.dtype)
            processors[key] = proc
            new[path] = proc
        else:
            processors[key] = PassThroughProcessor(processor)
    if not new:
        raise ValueError("this UNet has no transformer blocks with cross-attention: not an SD-style UNet")
    unet.set_attn_processor(processors)
    return new


# ----------------------------------------------------------------------------- parameter groups


def set_trainable(unet, stage: int) -> list[str]:
    """Freeze everything, then unfreeze stage 1's self-attention or stage 2's image attention."""
    chosen = is_self_attention if stage == 1 else is_image_attention
    names = []
    for name, param in unet.named_parameters():
        param.requires_grad_(chosen(name))
        if param.requires_grad:
            names.append(name)
    if not names:
        raise RuntimeError(f"stage {stage}: no trainable parameters found")
    return names


def cast_base_weights(unet, dtype: torch.dtype) -> None:
    """Cast the base model's weights to ``dtype``; StoryGen's own weights stay fp32.

    Under mixed precision nothing updates the frozen base weights, so they need no fp32 copy;
    the weights StoryGen trains (either stage) stay fp32 for the optimizer."""
    for name, p in unet.named_parameters():
        if not is_storygen_weight(name):
            p.data = p.data.to(dtype)


# ----------------------------------------------------------------------------- the model


class StoryGen:
    """The base parts plus the image cross-attention, and StoryGen's forward computations.

    ``unet`` arguments below may be the DDP-wrapped training UNet; the context pass always uses
    the unwrapped one (it runs without gradients).
    """

    def __init__(self, parts: Components, init: str = "self_attention", attention: str = "sdpa",
                 prediction: str = "epsilon"):
        self.unet = parts.unet
        self.vae = parts.vae
        self.text_encoder = parts.text_encoder
        self.tokenizer = parts.tokenizer
        self.noise_scheduler = parts.noise_scheduler
        # what the UNet predicts; sampling schedulers made from this config inherit it
        self.noise_scheduler.register_to_config(prediction_type=prediction)
        self.image_attention = attach_image_attention(self.unet, init=init, attention=attention)
        self.vae.requires_grad_(False)
        self.text_encoder.requires_grad_(False)
        self.latent_scale = float(self.vae.config.scaling_factor)
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    @classmethod
    def from_config(cls, cfg: ModelConfig, attention: str = "sdpa", prediction: str = "epsilon") -> "StoryGen":
        model = cls(load_components(cfg), init=cfg.image_attention_init, attention=attention, prediction=prediction)
        if cfg.weights:
            load_storygen_weights(model.unet, cfg.weights)
            log.info("loaded StoryGen weights from %s", cfg.weights)
        return model

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device, dtype: torch.dtype | None = None) -> "StoryGen":
        """Move everything; ``dtype`` casts the frozen VAE and text encoder (and not the UNet)."""
        self.unet.to(device)
        kwargs = {} if dtype in (None, torch.float32) else {"dtype": dtype}
        self.vae.to(device, **kwargs)
        self.text_encoder.to(device, **kwargs)
        return self

    # -- encoders (frozen) ----------------------------------------------------------------

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> scaled latents (N, 4, H/f, W/f)."""
        vae_dtype = next(self.vae.parameters()).dtype
        posterior = self.vae.encode(images.to(self.device, vae_dtype)).latent_dist
        return posterior.sample(generator=generator).float() * self.latent_scale

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images (N, 3, H, W) in [0, 1]."""
        vae_dtype = next(self.vae.parameters()).dtype
        images = self.vae.decode((latents / self.latent_scale).to(vae_dtype)).sample
        return (images.float() / 2 + 0.5).clamp(0, 1)

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> CLIP text hidden states (N, 77, D)."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        return self.text_encoder(ids)[0]

    # -- StoryGen ------------------------------------------------------------------------

    def context_timesteps(self, timesteps: torch.Tensor, slots: int, divisor: float = 10.0) -> torch.Tensor:
        """(B,) target timesteps -> (B, N): ``t * d / divisor`` for the frame d = slot + 1 steps back."""
        d = torch.arange(1, slots + 1, device=timesteps.device, dtype=torch.float32)
        t_ctx = torch.floor(timesteps.float()[:, None] * d[None, :] / divisor).long()
        return t_ctx.clamp(0, self.noise_scheduler.config.num_train_timesteps - 1)

    @torch.no_grad()
    def record_context(self, latents: torch.Tensor, text: torch.Tensor, t_ctx: torch.Tensor,
                       noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """The record pass: context frames -> every block's features ``{name: (M, L, C)}``.

        ``latents`` (M, 4, h, w) are clean; each frame is noised with its ``noise`` to its
        ``t_ctx`` (M,) and run, conditioned on its ``text`` (M, 77, D), through the unwrapped UNet
        in one batched, gradient-free pass. The features are the blocks' hidden states after
        self-attention (what each ``attn2`` processor receives).
        """
        noisy = self.noise_scheduler.add_noise(latents, noise, t_ctx)
        record = StoryContext(mode="record")
        unet_dtype = self.unet.dtype if hasattr(self.unet, "dtype") else latents.dtype
        self.unet(noisy.to(unet_dtype), t_ctx, encoder_hidden_states=text.to(unet_dtype),
                  cross_attention_kwargs={"story": record})
        return record.features

    @torch.no_grad()
    def context_features(self, latents: torch.Tensor, text: torch.Tensor, valid: torch.Tensor,
                         timesteps: torch.Tensor, gate: torch.Tensor | None = None, divisor: float = 10.0,
                         generator: torch.Generator | None = None) -> StoryContext:
        """Context frames of a training batch -> a StoryContext in "attend" mode for the target pass.

        ``latents`` (M, 4, h, w) and ``text`` (M, 77, D) hold the M valid slots of ``valid``
        (B, N) in row-major order; ``timesteps`` (B,) are the targets' timesteps. The record pass
        runs over the M frames only; empty slots get zero features.
        """
        b, n = valid.shape
        t_ctx = self.context_timesteps(timesteps, n, divisor)[valid]  # (M,)
        if latents.shape[0] == 0:  # every slot dropped: run one slot so every block has features
            raise ValueError("context_features needs at least one valid context frame")
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        per_slot = {}
        for name, feats in self.record_context(latents, text, t_ctx, noise).items():  # (M, L, C)
            full = feats.new_zeros(b, n, feats.shape[1], feats.shape[2])
            full[valid] = feats
            per_slot[name] = full  # (B, N, L, C)
        return StoryContext.attend(per_slot, valid, gate)

    def predict(self, unet, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                story: StoryContext | None = None) -> torch.Tensor:
        kwargs = {"story": story} if story is not None else None
        return unet(noisy, timesteps, encoder_hidden_states=text, cross_attention_kwargs=kwargs).sample

    def training_loss(self, unet, batch: dict[str, Any], train: TrainConfig, generator: torch.Generator) -> torch.Tensor:
        """Masked MSE of the noise (or v) prediction for one batch of windows.

        Stage 2 draws the number of context frames (``min_context_frames`` .. all slots) once per
        batch; classifier-free-guidance dropout empties a sample's prompt (``text_dropout``) or
        removes all its context frames (``context_dropout``).
        """
        device = self.device
        images = batch["image"]
        bsz = images.shape[0]
        latents = self.encode_images(images, generator=generator)  # (B, 4, h, w)
        noise = torch.randn(latents.shape, generator=generator, device=device)
        num_t = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, num_t, (bsz,), generator=generator, device=device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)

        drop_text = torch.rand(bsz, generator=generator, device=device) < train.text_dropout
        prompts = ["" if drop else p for p, drop in zip(batch["prompt"], drop_text.tolist())]
        text = self.encode_prompts(prompts)

        story = None
        if train.stage == 2:
            slots = batch["context"].shape[1]
            n = int(torch.randint(min(train.min_context_frames, slots), slots + 1, (1,), generator=generator,
                                  device=device).item())
            valid = batch["context_valid"][:, :n].to(device).clone()  # (B, n)
            keep = torch.rand(bsz, generator=generator, device=device) >= train.context_dropout
            valid &= keep[:, None]
            if not bool(valid.any()):  # nothing left: keep one frame so every block has features
                valid[0, 0] = True  # (slot 0 of a stage-2 window always holds a frame)
                keep[0] = False  # ... and silence it: this sample still trains without context
            frames = batch["context"][:, :n].to(device)[valid]  # (M, 3, H, W)
            prompts_ctx = [batch["context_prompts"][j][i] for i in range(bsz) for j in range(n) if bool(valid[i, j])]
            ctx_latents = self.encode_images(frames, generator=generator)
            ctx_text = self.encode_prompts(prompts_ctx)
            gate = (keep & valid.any(dim=1)).float()
            story = self.context_features(ctx_latents, ctx_text, valid, timesteps, gate=gate,
                                          divisor=train.context_noise_divisor, generator=generator)

        pred = self.predict(unet, noisy, timesteps, text, story)
        if train.prediction == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        return masked_mse(pred, target, batch["mask"].to(device))


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the latent pixels the mask keeps.

    ``mask`` (B, 1, H, W) is 1 where the loss ignores pixels, at image resolution; it is
    area-averaged to the latent grid, so a latent pixel counts by the share of its image pixels
    that are kept."""
    keep = 1.0 - F.interpolate(mask.float(), size=pred.shape[-2:], mode="area")  # (B, 1, h, w)
    err = (pred.float() - target.float()).pow(2) * keep  # (B, C, h, w)
    return err.sum() / (keep.sum() * pred.shape[1]).clamp_min(1.0)


def human_count(n: int) -> str:
    if n < 1000:
        return str(n)
    units = ["K", "M", "B"]
    k = min(int(math.log10(n) // 3), 3)
    return f"{n / 10 ** (3 * k):.1f}{units[k - 1]}"
