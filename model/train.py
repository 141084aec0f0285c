"""The StoryGen training loop (accelerate): one GPU, many GPUs, or CPU processes with gloo.

    storyloom train --config stage1.yaml --dataset out/ --set train.output_dir=runs/stage1
    accelerate launch -m flows.cli train --config stage2.yaml --set model.weights=runs/stage1

Stage 1 (style) trains the self-attention of every transformer block on single frames. Stage 2
(context) freezes everything but the new image cross-attention and trains it on windows of 1-3
earlier frames plus a target. Each optimizer step: read ``grad_accum`` batches of windows, compute
the masked MSE (``StoryGen.training_loss``), clip, step. Every ``checkpoint_every`` steps a
checkpoint is written (``model.checkpoint``); a run in the same ``output_dir`` resumes from the
latest one by default. Scalars go to TensorBoard (``output_dir/logs``) and to
``output_dir/metrics.jsonl``; sample stories go to ``output_dir/samples/step-N/`` and TensorBoard.

All randomness of a step (timesteps, noise, dropout, number of context frames) comes from one
``torch.Generator`` per process whose state is checkpointed, so a resumed run continues the
same random stream; with ``train.resume_data=skip`` it also replays the data order exactly.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.config import ConfigError, StoryGenConfig

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    step: int
    losses: dict[int, float] = field(default_factory=dict)  # step -> mean loss over processes
    local_losses: dict[int, float] = field(default_factory=dict)  # step -> this process's loss
    checkpoint: Path | None = None
    world_size: int = 1
    rank: int = 0
    backend: str | None = None  # torch.distributed backend (nccl, gloo) when distributed
    trainable_digest: str = ""  # sha256 of this process's trainable weights after the last step


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


def build_optimizer(params: list[torch.nn.Parameter], cfg: StoryGenConfig):
    t = cfg.train
    kwargs = dict(lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps, weight_decay=t.weight_decay)
    if t.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise ImportError("train.optimizer=adamw8bit needs bitsandbytes: pip install 'storyloom[adam8bit]'") from exc
        return bnb.optim.AdamW8bit(params, **kwargs)
    return torch.optim.AdamW(params, **kwargs)


def digest_trainable(unet) -> str:
    import hashlib

    h = hashlib.sha256()
    for name, p in sorted(unet.named_parameters()):
        if p.requires_grad:
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def sample_prompts(cfg: StoryGenConfig, urls: list[str]) -> list[list[str]]:
    """Stories to sample during training: ``sample.prompts`` ("a | b | c" per story) or the first
    stories of the training shards."""
    if cfg.sample.prompts:
        return [[p.strip() for p in story.split("|") if p.strip()] for story in cfg.sample.prompts]
    from model.data import iter_stories

    stories = []
    for story in iter_stories(urls, cfg.data.prompt):
        prompts = [f.prompt for f in story.frames][: cfg.sample.max_frames]
        if prompts:
            stories.append(prompts)
        if len(stories) >= cfg.sample.num_stories:
            break
    return stories


def write_samples(model, cfg: StoryGenConfig, stories: list[list[str]], out_dir: Path, tracker, step: int,
                  autocast) -> None:
    """Generate the sample stories with the current weights; PNGs, contact sheets, TensorBoard."""
    import numpy as np

    from model.generate import generator_for, write_story

    unet = model.unet
    was_training = unet.training
    unet.eval()
    try:
        gen = generator_for(model, cfg)
        for k, prompts in enumerate(stories):
            with autocast():  # the UNet mixes half-precision frozen and fp32 trained weights
                images = gen.story(prompts, seed=cfg.sample.seed + k)
            write_story(images, prompts, out_dir / f"story-{k}", {"step": step})
            if tracker is not None:
                from PIL import Image

                sheet = np.asarray(Image.open(out_dir / f"story-{k}" / "contact-sheet.png").convert("RGB"))
                tracker.add_image(f"samples/story-{k}", sheet, step, dataformats="HWC")
    finally:
        unet.train(was_training)


def train(cfg: StoryGenConfig) -> TrainResult:
    """Run (or resume) a training run as configured; returns what the last step did."""
    from model.storygen import ensure_imports

    ensure_imports()
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from diffusers.optimization import get_scheduler

    from model import checkpoint as ckpt
    from model.data import StoryWindows, make_loader, resolve_shards
    from model.storygen import StoryGen, cast_base_weights, human_count, set_trainable
    from model.weights import latest_checkpoint

    t = cfg.train
    out = Path(t.output_dir)
    cpu_only = not torch.cuda.is_available()
    accelerator = Accelerator(
        mixed_precision="no" if cpu_only else t.mixed_precision,
        gradient_accumulation_steps=t.grad_accum,
        log_with="tensorboard",
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        cpu=cpu_only,
    )
    rank, world = accelerator.process_index, accelerator.num_processes
    if not accelerator.is_main_process:  # one copy of the progress lines, from rank 0
        logging.getLogger("model").setLevel(logging.ERROR)
    if cpu_only and t.mixed_precision != "no":
        log.info("no GPU: training in fp32 (train.mixed_precision=%s applies on GPUs)", t.mixed_precision)
    if torch.cuda.is_available() and t.allow_tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # -- resume point (before anything random happens) -------------------------------------
    info = None
    if t.resume not in ("none", ""):
        if t.resume == "latest":
            latest = latest_checkpoint(out)
            info = ckpt.read_checkpoint(latest) if latest is not None else None
        else:
            info = ckpt.read_checkpoint(t.resume)
    if info is not None and info.stage != t.stage:
        raise ConfigError(f"checkpoint {info.path} is from stage {info.stage}, this run is stage {t.stage}: "
                         f"use a new train.output_dir and start from it with model.weights={info.path}")
    start_step = info.step if info else 0

    torch.manual_seed(t.seed + 1000 * rank)
    generator = torch.Generator(device=accelerator.device).manual_seed(t.seed + 1000 * rank)

    # -- model -------------------------------------------------------------------------------
    model = StoryGen.from_config(cfg.model, attention=t.attention, prediction=t.prediction)
    unet = model.unet
    trainable = set_trainable(unet, t.stage)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)
    if weight_dtype != torch.float32:  # frozen base weights in half precision; trained ones stay fp32
        cast_base_weights(unet, weight_dtype)
    model.to(accelerator.device, dtype=weight_dtype)
    if t.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, cfg)
    lr_scheduler = get_scheduler(t.lr_scheduler, optimizer, num_warmup_steps=t.lr_warmup_steps,
                                 num_training_steps=t.max_steps)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    if info is not None:
        ckpt.load_checkpoint(info, accelerator, unet, optimizer, lr_scheduler, generator)
        log.info("resumed from %s (step %d)", info.path, info.step)
    elif cfg.model.weights is None and t.stage == 2:
        log.warning("stage 2 without model.weights: the self-attention is the base model's (no stage-1 weights)")
    if accelerator.is_main_process:
        log.info("stage %d: %s trainable parameters in %d tensors (of %s in the UNet); %d process(es)", t.stage,
                 human_count(sum(p.numel() for p in params)), len(trainable),
                 human_count(sum(p.numel() for p in unet.parameters())), world)

    # -- data ----------------------------------------------------------------------------------
    urls = resolve_shards(cfg.data.shards, cfg.data.dataset, cfg.data.split)
    data_seed = t.seed + (start_step if t.resume_data == "reseed" else 0)
    max_context, min_context = (0, 0) if t.stage == 1 else (cfg.data.max_context, t.min_context_frames)
    dataset = StoryWindows(urls, resolution=cfg.data.resolution, max_context=max_context, min_context=min_context,
                           prompt_mode=cfg.data.prompt, crop=cfg.data.crop, story_shuffle=cfg.data.story_shuffle,
                           window_shuffle=cfg.data.window_shuffle, shard_mode=cfg.data.shard_mode, repeat=True,
                           seed=data_seed)
    loader = make_loader(dataset, t.batch_size, cfg.data.num_workers)
    batches = iter(loader)
    if info is not None and t.resume_data == "skip":
        skip = start_step * t.grad_accum
        log.info("replaying %d batch(es) of the data order", skip)
        for _ in range(skip):
            next(batches)

    # -- logging -------------------------------------------------------------------------------
    tracker = None
    samples = []
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        accelerator.init_trackers("storygen", config=_flat(cfg.to_dict()))
        tracker = accelerator.get_tracker("tensorboard", unwrap=True)
        if t.sample_every:
            samples = sample_prompts(cfg, urls)
    metrics = out / "metrics.jsonl"

    # -- loop ----------------------------------------------------------------------------------
    result = TrainResult(step=start_step, world_size=world, rank=rank)
    step = start_step
    window_start, windows_seen, data_wait = time.perf_counter(), 0, 0.0
    warned_slow_data = False
    while step < t.max_steps:
        total = torch.zeros((), device=accelerator.device)
        for _ in range(t.grad_accum):
            waited = time.perf_counter()
            batch = next(batches)
            data_wait += time.perf_counter() - waited
            with accelerator.accumulate(unet):
                with accelerator.autocast():
                    loss = model.training_loss(unet, batch, t, generator)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, t.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            total += loss.detach()
            windows_seen += batch["image"].shape[0]
        lr_scheduler.step()
        step += 1
        local = total / t.grad_accum
        result.local_losses[step] = local.item()
        mean_loss = accelerator.reduce(local.clone(), reduction="mean").item()
        if not math.isfinite(mean_loss):
            raise FloatingPointError(f"loss is {mean_loss} at step {step}: lower train.lr or use bf16 over fp16")
        result.losses[step] = mean_loss
        if accelerator.is_main_process and (step % t.log_every == 0 or step == t.max_steps or step == start_step + 1):
            elapsed = max(time.perf_counter() - window_start, 1e-9)
            logs = {"loss": mean_loss, "lr": lr_scheduler.get_last_lr()[0],
                    "windows_per_s": windows_seen * world / elapsed, "data_wait_frac": data_wait / elapsed}
            if logs["data_wait_frac"] > 0.1 and step > start_step + 10 and not warned_slow_data:
                log.warning("the training step waited for data %.0f%% of the time: raise data.num_workers (now %d)",
                            100 * logs["data_wait_frac"], cfg.data.num_workers)
                warned_slow_data = True
            accelerator.log(logs, step=step)
            with metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"step": step, **logs}) + "\n")
            log.info("step %d/%d loss %.4f lr %.2e %.1f windows/s", step, t.max_steps, mean_loss,
                     logs["lr"], logs["windows_per_s"])
            window_start, windows_seen, data_wait = time.perf_counter(), 0, 0.0
        if step % t.checkpoint_every == 0 or step == t.max_steps:
            result.checkpoint = ckpt.save_checkpoint(accelerator, out, step, cfg, unet, optimizer, lr_scheduler,
                                                     generator, keep=t.keep_checkpoints)
        if t.sample_every and step % t.sample_every == 0:
            if accelerator.is_main_process and samples:
                write_samples(model, cfg, samples, out / "samples" / f"step-{step:07d}", tracker, step,
                              accelerator.autocast)
            accelerator.wait_for_everyone()

    result.step = step
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        result.backend = str(torch.distributed.get_backend())
    result.trainable_digest = digest_trainable(accelerator.unwrap_model(unet))
    accelerator.end_training()
    return result
