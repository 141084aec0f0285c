"""StoryGen training speed against a plain diffusers UNet training step, and loader headroom.

Usage:
    python bench/train_speed.py                 # GPU: SD-1.5-sized random weights, 512 px, batch 4, bf16
    python bench/train_speed.py --tiny          # CPU: tiny random configs (what CI machines can run)
    python bench/train_speed.py --dataset out/  # loader measured on real shards instead of synthetic ones

In one process, with the same random base weights, batch and precision, it times:

- ``plain``: a diffusers text-to-image training step (VAE encode, text encode, UNet forward and
  backward over all UNet parameters, AdamW), as in diffusers' ``train_text_to_image.py``;
- ``stage2 ctx=N``: a StoryGen stage-2 step with N context frames (VAE + text encode of target
  and context, one gradient-free UNet pass over the B*N context frames, the target pass with
  image cross-attention, backward into the image cross-attention only, AdamW);
- ``stage1``: a StoryGen stage-1 step (self-attention only, single frames);
- the data loader: decoded windows/s (N=3 context frames + target at the training resolution)
  with ``--workers`` processes, against the windows/s the stage-2 step consumes.

"per UNet pass" divides a step's time by its UNet passes and compares to plain: 1 for plain and
stage 1, 1 + N for stage 2 with N context frames (the target pass with gradients, plus one
gradient-free pass per context frame over the batch; all N run as one batched call of B*N).
The plain ratio ("vs plain", steps/s over steps/s) is printed next to it.
Peak memory is torch.cuda.max_memory_allocated per phase on a GPU (both models stay loaded: the
plain UNet with its AdamW state is counted in every phase, so compare differences); on the CPU,
the process's peak RSS so far (monotonic). With ``--rounds`` > 1 the phases are interleaved and
each keeps its fastest round, which is what makes figures on a shared CPU comparable.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from model.storygen import ensure_imports  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def timed(step, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """steps/s and peak memory of ``step()``, after ``warmup`` untimed calls."""
    reset_peak(device)
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - start), peak_memory_gib(device)


def fake_batch(batch: int, res: int, slots: int, device: torch.device, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "image": (torch.rand(batch, 3, res, res, generator=g) * 2 - 1).to(device),
        "mask": torch.zeros(batch, 1, res, res, device=device),
        "prompt": [f"a small fox walks through the snowy forest, page {i}" for i in range(batch)],
        "context": (torch.rand(batch, slots, 3, res, res, generator=g) * 2 - 1).to(device),
        "context_valid": torch.ones(batch, slots, dtype=torch.bool),
        "context_prompts": [[f"an earlier page {j} of the story" for _ in range(batch)] for j in range(slots)],
    }


def write_synthetic_shards(root: Path, stories: int = 24, frames: int = 8, long_side: int = 768) -> Path:
    """Story shards in the shard contract's format with JPEG frames of a typical stored size."""
    import numpy as np
    import webdataset as wds
    from PIL import Image

    from pipeline.output.contract import JSON_MEMBER, image_member

    (root / "shards").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    urls = []
    for shard in range(2):
        url = f"shards/train-{shard:06d}.tar"
        with wds.TarWriter(str(root / url)) as sink:
            for s in range(shard * stories // 2, (shard + 1) * stories // 2):
                key = f"bench-{s:04d}"
                sample = {"__key__": key}
                meta = []
                for i in range(frames):
                    h = long_side * 9 // 16
                    base = rng.integers(0, 255, (h // 16, long_side // 16, 3), dtype=np.uint8)
                    img = Image.fromarray(base).resize((long_side, h), Image.BICUBIC)  # smooth, JPEG-realistic
                    buf = io.BytesIO()
                    img.save(buf, format="JPEG", quality=90)
                    sample[image_member(i)] = buf.getvalue()
                    meta.append({"index": i, "image": image_member(i), "width": long_side, "height": h,
                                 "text": f"Page {i} of story {s}.", "caption": None})
                sample[JSON_MEMBER] = json.dumps({"story_id": key, "split": "train", "frames": meta}).encode()
                sink.write(sample)
        urls.append({"url": url, "nsamples": stories // 2})
    (root / "manifest-train.json").write_text(json.dumps({"shardlist": urls}))
    return root


def loader_rate(dataset_dir: str, res: int, batch: int, workers: int, batches: int) -> float:
    from model.data import StoryWindows, make_loader, resolve_shards

    urls = resolve_shards((), dataset_dir, "train")
    ds = StoryWindows(urls, resolution=res, max_context=3, min_context=1, window_shuffle=64, story_shuffle=8,
                      shard_mode="resampled" if workers > len(urls) else "auto")
    it = iter(make_loader(ds, batch, workers))
    for _ in range(max(2, workers)):  # workers started, first batches out
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random configs on the CPU")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=None, help="default 512 (64 with --tiny)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per phase (default 20; 5 with --tiny)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per phase (default 3; 1 with --tiny)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds, best kept (default 1; 3 with --tiny, for a noisy shared CPU)")
    parser.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"), help="default bf16 (fp32 on CPU)")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default 8; 1 with --tiny)")
    parser.add_argument("--loader-batches", type=int, default=None)
    parser.add_argument("--dataset", help="a storyloom output directory to read (default: synthetic shards)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (on a shared CPU, 1 avoids OpenMP contention stalls)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    ensure_imports()
    from diffusers import UNet2DConditionModel

    from model.config import StoryGenConfig
    from model.storygen import StoryGen, cast_base_weights, set_trainable
    from model.testing import random_components

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    size = "tiny" if args.tiny else "sd15"
    res = args.resolution or (64 if args.tiny else 512)
    steps = args.steps or (3 if args.tiny else 20)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    dtype_name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype_name)
    workers = args.workers if args.workers is not None else (1 if args.tiny else 8)
    rounds = args.rounds or (3 if args.tiny else 1)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(f"device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}; size {size}; "
          f"{res} px; batch {args.batch}; {dtype_name}; gradient checkpointing {args.gradient_checkpointing}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {steps} timed steps x {rounds} round(s)")

    def autocast():
        return torch.autocast(device.type, dtype=amp) if amp is not None else torch.autocast(device.type, enabled=False)

    phases = {}  # name -> (step function, setup before timing or None, UNet passes per step)

    # -- plain diffusers UNet step -----------------------------------------------------------
    parts = random_components(size)
    plain = UNet2DConditionModel.from_config(dict(parts.unet.config)).to(device)
    plain.load_state_dict(parts.unet.state_dict())
    if args.gradient_checkpointing:
        plain.enable_gradient_checkpointing()
    plain.train()
    vae = parts.vae.to(device, **({"dtype": amp} if amp else {})).eval()
    text_encoder = parts.text_encoder.to(device, **({"dtype": amp} if amp else {})).eval()
    scheduler = parts.noise_scheduler
    plain_opt = torch.optim.AdamW(plain.parameters(), lr=1e-5)
    plain_batch = fake_batch(args.batch, res, 3, device)
    ids = parts.tokenizer(plain_batch["prompt"], padding="max_length", max_length=77, truncation=True,
                          return_tensors="pt").input_ids.to(device)
    g = torch.Generator(device=device).manual_seed(0)

    def plain_step():
        with torch.no_grad():
            latents = vae.encode(plain_batch["image"].to(vae.dtype)).latent_dist.sample(generator=g).float() * 0.18215
            text = text_encoder(ids)[0]
        noise = torch.randn(latents.shape, generator=g, device=device)
        t = torch.randint(0, 1000, (latents.shape[0],), generator=g, device=device)
        with autocast():
            pred = plain(scheduler.add_noise(latents, noise, t), t, encoder_hidden_states=text).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise)
        loss.backward()
        plain_opt.step()
        plain_opt.zero_grad(set_to_none=True)

    phases["plain"] = (plain_step, None, 1)

    # -- StoryGen (its own copy of the same base weights) ---------------------------------------
    model = StoryGen(random_components(size))
    unet = model.unet
    if amp is not None:  # frozen base weights in half precision, as train.py does
        cast_base_weights(unet, amp)
    model.to(device, dtype=amp)
    if args.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()

    def storygen_phase(stage: int, n: int):
        cfg = StoryGenConfig.load(None, [f"train.stage={stage}", f"train.min_context_frames={max(1, n)}",
                                         f"data.max_context={max(n, 1)}", "train.context_dropout=0",
                                         "train.text_dropout=0"]).train
        batch = fake_batch(args.batch, res, n, device)
        gen = torch.Generator(device=device).manual_seed(0)
        names = set_trainable(unet, stage)
        opt = torch.optim.AdamW([unet.get_parameter(k) for k in names], lr=1e-5)

        def setup():  # phases interleave: make this stage's parameters the trainable ones
            set_trainable(unet, stage)

        def step():
            with autocast():
                loss = model.training_loss(unet, batch, cfg, gen)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step, setup

    phases["stage2 ctx=1"] = (*storygen_phase(2, 1), 2)
    phases["stage2 ctx=3"] = (*storygen_phase(2, 3), 4)
    phases["stage1"] = (*storygen_phase(1, 0), 1)

    # rounds > 1 interleave the phases and keep each one's best round: fair on a shared, noisy CPU
    results: dict[str, dict] = {}
    for _ in range(rounds):
        for name, (step, setup, passes) in phases.items():
            if setup is not None:
                setup()
            rate, mem = timed(step, steps, args.warmup, device)
            best = results.get(name)
            if best is None or rate > best["steps_per_s"]:
                results[name] = {"steps_per_s": rate, "peak_gib": max(mem, best["peak_gib"] if best else 0.0),
                                 "unet_passes": passes}

    base = results["plain"]["steps_per_s"]
    print(f"\n{'phase':<14} {'steps/s':>9} {'peak GiB':>9} {'vs plain':>9} {'per UNet pass':>14}")
    for name, r in results.items():
        r["ratio"] = r["steps_per_s"] / base
        r["ratio_per_unet_pass"] = r["steps_per_s"] * r["unet_passes"] / base
        print(f"{name:<14} {r['steps_per_s']:>9.3f} {r['peak_gib']:>9.2f} {r['ratio']:>8.2f}x "
              f"{r['ratio_per_unet_pass']:>13.2f}x")

    # -- loader ----------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or str(write_synthetic_shards(Path(tmp)))
        batches = args.loader_batches or (10 if args.tiny else 50)
        windows_per_s = loader_rate(dataset, res, args.batch, workers, batches)
    consumed = results["stage2 ctx=3"]["steps_per_s"] * args.batch
    print(f"\nloader: {windows_per_s:.1f} windows/s ({workers} worker(s), 3 context frames + target at {res} px, "
          f"{'given dataset' if args.dataset else 'synthetic 768x432 JPEG shards'}); stage 2 ctx=3 consumes "
          f"{consumed:.1f} windows/s -> headroom {windows_per_s / consumed:.2f}x")
    print(json.dumps({"results": results, "loader_windows_per_s": windows_per_s, "consumed_windows_per_s": consumed,
                      "device": str(device), "size": size, "resolution": res, "batch": args.batch,
                      "dtype": dtype_name}, indent=None))
    return 0


if __name__ == "__main__":
    random.seed(0)
    raise SystemExit(main())
