"""Keyframe stage CPU time against `ffmpeg -threads 1 -i VIDEO -f null -` on the same files.

Usage: python bench/keyframes_speed.py [VIDEO ...]   (default: ../shared/samples/readaloud/*.mp4)

Both are measured in this one process, alternating, best of --repeat runs each, so that the
ratio holds on a noisy shared machine. ffmpeg's CPU comes from RUSAGE_CHILDREN; ours from
RUSAGE_SELF (all threads). Imports are warmed before timing. For reference, the same is measured
for PySceneDetect's ContentDetector at its defaults (`scenedetect.detect`, OpenCV backend), with
the number of scenes it finds.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    videos = args.videos or sorted(DEFAULT_DIR.glob("*.mp4"))
    if not videos:
        parser.error(f"no videos given and none found in {DEFAULT_DIR}")
    ffmpeg = find_ffmpeg(None)
    cfg = KeyframeConfig()
    detect_keyframes(videos[0], cfg)  # warm imports and caches
    scenedetect_cpu(videos[0])
    total_ff = total_stage = total_sd = 0.0
    print(f"{'video':<16} {'pages':>5} {'ffmpeg cpu s':>12} {'stage cpu s':>11} {'ratio':>6}   "
          f"{'scenedetect scenes':>18} {'ratio':>6}")
    for video in videos:
        ff = min(ffmpeg_cpu(ffmpeg, video) for _ in range(args.repeat))
        runs = [stage_cpu(video, cfg) for _ in range(args.repeat)]
        st = min(cpu for cpu, _ in runs)
        sd_runs = [scenedetect_cpu(video) for _ in range(args.repeat)]
        sd = min(cpu for cpu, _ in sd_runs)
        total_ff += ff
        total_stage += st
        total_sd += sd
        print(f"{video.stem:<16} {runs[0][1]:>5} {ff:>12.3f} {st:>11.3f} {st / ff:>6.2f}   "
              f"{sd_runs[0][1]:>18} {sd / ff:>6.2f}")
    print(f"{'all':<16} {'':>5} {total_ff:>12.3f} {total_stage:>11.3f} {total_stage / total_ff:>6.2f}   "
          f"{'':>18} {total_sd / total_ff:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
