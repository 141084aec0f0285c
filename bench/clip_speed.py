"""CLIP stage throughput (images/s) against open_clip's ``encode_image`` alone, same images and batch size.

Usage: python bench/clip_speed.py [--arch ViT-B-32] [--images 64] [--batch-size 32] [--repeat 3] [--threads N] [--device auto]

A model of the given architecture with random weights (realistic size and cost) is saved as a
state dict and loaded through the stage's own loading code (``models.clip.pretrained`` = that
file). The images are illustration-like 854x480 keyframes. Measured, best of ``--repeat``,
alternating so that a noisy shared machine affects all alike:

- ``encode_image``: open_clip's ``model.encode_image`` on already preprocessed batches (the model alone);
- ``preprocess+encode_image``: the same plus open_clip's own preprocessing of the images;
- ``stage (images)``: ``refine_with_clip`` on frames without narration: preprocessing (as tensor
  ops on the model's device), embeddings, zero-shot filters and embedding de-duplication (prompt
  classes are embedded once per process, warm);
- ``stage (+sentences)``: the same frames each with a narrated sentence: also sentence and frame
  text embeddings, DTW realignment and scores.clip (text to encode besides the images: not
  comparable to ``encode_image`` alone, shown for the cost of alignment).

The ratio column is stage images/s over ``encode_image`` images/s (target >= 0.9), from wall time
and from process CPU time (all threads; steadier than wall time on a shared machine, and the
right measure on a CPU, where every path is compute bound).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def keyframes(count: int, size=(480, 854)) -> list[np.ndarray]:
    import cv2

    images = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        image = np.full((*size, 3), rng.integers(120, 255, 3), dtype=np.uint8)
        for _ in range(25):
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            centre = (int(rng.integers(0, size[1])), int(rng.integers(0, size[0])))
            axes = (int(rng.integers(20, 160)), int(rng.integers(20, 160)))
            cv2.ellipse(image, centre, axes, float(rng.integers(0, 180)), 0, 360, colour, -1)
            cv2.ellipse(image, centre, axes, 0, 0, 360, (20, 20, 20), 2)
        images.append(image)
    return images


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)

    from pipeline.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import open_clip
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from PIL import Image

    from pipeline.frames.clean import CleanResult, FrameCandidate
    from pipeline.models.clip import encoder_for, refine_with_clip
    from pipeline.config import IngestConfig
    from pipeline.text.subtitles import Cue

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        weights = Path(tmp) / f"{args.arch}-random.pt"
        torch.save(open_clip.create_model(args.arch).state_dict(), weights)
        models = IngestConfig.from_dict({"models": {
            "device": args.device, "local_files_only": True,
            "clip": {"enabled": True, "model": args.arch, "pretrained": str(weights), "batch_size": args.batch_size},
        }}).models
        encoder = encoder_for(models)  # loads through pipeline.models.loading
    loaded = encoder.loaded
    images = keyframes(args.images)
    pixels = [torch.stack([loaded.preprocess(Image.fromarray(img)) for img in images[i:i + args.batch_size]])
              for i in range(0, len(images), args.batch_size)]
    sentences = [Cue(4.0 * i + 0.5, 4.0 * i + 3.5, f"Page {i}: the little fox walked through the snowy forest.") for i in range(len(images))]

    def frames(narrated: bool):
        return CleanResult([FrameCandidate(img, 4.0 * i, 4.0 * i + 4.0, sentences[i].text if narrated else "")
                            for i, img in enumerate(images)], {})

    def encode_only():
        with torch.inference_mode():
            for batch in pixels:
                loaded.model.encode_image(batch.to(loaded.device, loaded.dtype))

    def preprocess_and_encode():
        with torch.inference_mode():
            for i in range(0, len(images), args.batch_size):
                batch = torch.stack([loaded.preprocess(Image.fromarray(img)) for img in images[i:i + args.batch_size]])
                loaded.model.encode_image(batch.to(loaded.device, loaded.dtype))

    runs = {
        "encode_image": encode_only,
        "preprocess+encode_image": preprocess_and_encode,
        "stage (images)": lambda: refine_with_clip(frames(False), models, None, encoder=encoder),
        "stage (+sentences)": lambda: refine_with_clip(frames(True), models, sentences, encoder=encoder),
    }
    for fn in runs.values():  # warm: first-call allocations, prompt classes
        fn()
    wall = {name: float("inf") for name in runs}
    cpu = dict(wall)
    for _ in range(args.repeat):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name] = min(wall[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    print(f"CLIP {args.arch} (random weights), {args.images} images 854x480, batch {args.batch_size}, "
          f"device {loaded.device}, {loaded.dtype}, torch threads {torch.get_num_threads()}, best of {args.repeat}")
    print(f"{'path':<26} {'wall s':>7} {'images/s':>9} {'ratio':>6} {'cpu s':>7} {'images/cpu-s':>13} {'ratio':>6}")
    for name in runs:
        print(f"{name:<26} {wall[name]:>7.2f} {args.images / wall[name]:>9.2f} {wall['encode_image'] / wall[name]:>6.3f} "
              f"{cpu[name]:>7.2f} {args.images / cpu[name]:>13.2f} {cpu['encode_image'] / cpu[name]:>6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
