"""Keyframe stage CPU time against `ffmpeg -threads 1 -i VIDEO -f null -` on the same files.

Usage: python bench/keyframes_speed.py [VIDEO ...] [--dir DIR ...]
       (default: ../shared/samples/readaloud/*.mp4; --dir adds every DIR/*.mp4, e.g. the filmed
       samples in ../shared/samples/readaloud/filmed)

Both are measured in this one process, interleaved run by run, best of --repeat runs each, so
that the ratio holds on a noisy shared machine. ffmpeg's CPU comes from RUSAGE_CHILDREN; ours from
RUSAGE_SELF (all threads). Imports are warmed before timing. For reference, the same is measured
for PySceneDetect's ContentDetector at its defaults (`scenedetect.detect`, OpenCV backend), with
the number of scenes it finds. The style column comes from a NAME.truth.json next to the video
(cut, xfade, fade, kenburns, filmed...) when there is one; the target is a ratio of at most 1.25
on every style.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import KeyframeConfig  # noqa: E402
from pipeline.video.ffmpeg import find_ffmpeg  # noqa: E402
from pipeline.video.keyframes import detect_keyframes  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "samples" / "readaloud"


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def ffmpeg_cpu(ffmpeg: str, video: Path) -> float:
    before = _cpu(resource.RUSAGE_CHILDREN)
    subprocess.run([ffmpeg, "-v", "error", "-threads", "1", "-i", str(video), "-f", "null", "-"], check=True)
    return _cpu(resource.RUSAGE_CHILDREN) - before


def stage_cpu(video: Path, cfg: KeyframeConfig) -> tuple[float, int]:
    before = _cpu(resource.RUSAGE_SELF)
    result = detect_keyframes(video, cfg)
    return _cpu(resource.RUSAGE_SELF) - before, len(result.keyframes)


def scenedetect_cpu(video: Path) -> tuple[float, int]:
    from scenedetect import ContentDetector, detect

    before = _cpu(resource.RUSAGE_SELF)
    scenes = detect(str(video), ContentDetector())
    return _cpu(resource.RUSAGE_SELF) - before, max(1, len(scenes))


def style_of(video: Path) -> str:
    truth = video.with_name(f"{video.stem}.truth.json")
    try:
        return str(json.loads(truth.read_text(encoding="utf-8")).get("style") or "?")
    except (OSError, ValueError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--dir", type=Path, action="append", default=[], help="measure every DIR/*.mp4 (repeatable)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-scenedetect", action="store_true", help="skip the PySceneDetect reference")
    args = parser.parse_args(argv)
    videos = list(args.videos) + [v for d in args.dir for v in sorted(d.glob("*.mp4"))]
    if not videos and not args.dir:
        videos = sorted(DEFAULT_DIR.glob("*.mp4"))
    if not videos:
        parser.error(f"no videos given and none found in {', '.join(map(str, args.dir)) or DEFAULT_DIR}")
    ffmpeg = find_ffmpeg(None)
    cfg = KeyframeConfig()
    detect_keyframes(videos[0], cfg)  # warm imports and caches
    if not args.no_scenedetect:
        scenedetect_cpu(videos[0])
    total_ff = total_stage = total_sd = 0.0
    worst: dict[str, float] = {}
    print(f"{'video':<20} {'style':<9} {'pages':>5} {'ffmpeg cpu s':>12} {'stage cpu s':>11} {'ratio':>6}   "
          f"{'scenedetect scenes':>18} {'ratio':>6}")
    for video in videos:
        ffs, runs, sd_runs = [], [], []
        for _ in range(args.repeat):  # interleaved, so that a busy moment hits all three alike
            ffs.append(ffmpeg_cpu(ffmpeg, video))
            runs.append(stage_cpu(video, cfg))
            if not args.no_scenedetect:
                sd_runs.append(scenedetect_cpu(video))
        ff = min(ffs)
        st = min(cpu for cpu, _ in runs)
        sd = min(cpu for cpu, _ in sd_runs) if sd_runs else float("nan")
        total_ff += ff
        total_stage += st
        total_sd += sd
        style = style_of(video)
        worst[style] = max(worst.get(style, 0.0), st / ff)
        scenes = sd_runs[0][1] if sd_runs else "-"
        print(f"{video.stem:<20} {style:<9} {runs[0][1]:>5} {ff:>12.3f} {st:>11.3f} {st / ff:>6.2f}   "
              f"{scenes:>18} {sd / ff:>6.2f}")
    print(f"{'all':<20} {'':<9} {'':>5} {total_ff:>12.3f} {total_stage:>11.3f} {total_stage / total_ff:>6.2f}   "
          f"{'':>18} {total_sd / total_ff:>6.2f}")
    print("worst ratio per style: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(worst.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
