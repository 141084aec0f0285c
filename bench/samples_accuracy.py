"""Accuracy and wall time of `storyloom ingest` on the real read-aloud samples, served on loopback.

Usage: python bench/samples_accuracy.py [--samples DIR] [--keep]

Each sample NAME.mp4 (+ NAME.LANG.vtt, NAME.truth.json) is offered as an HTML page with a
<video> and a subtitle <track>, from an http.server on 127.0.0.1; `storyloom ingest` (a
subprocess, so the wall time includes starting Prefect) downloads them with yt-dlp and builds the
dataset. Then every story is compared with its truth:

- pages found: true pages that exactly one frame covers (most time overlap) and whose pixels
  match the video at the middle of that page (mean abs grey difference at 64x36 below 12);
- extra frames: frames that match no page or a page already matched (intro/outro cards too);
- texts right: pages whose frame text equals the true text (whitespace-normalised);
- in order: the matched pages appear in page order.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SAMPLES = ROOT.parent / "shared" / "samples" / "readaloud"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stage_site(samples: Path, site: Path, port: int) -> tuple[Path, dict[str, dict]]:
    truths = {}
    entries = []
    for truth_path in sorted(samples.glob("*.truth.json")):
        truth = json.loads(truth_path.read_text())
        name, lang = truth["key"], truth["lang"]
        (site / f"{name}.mp4").symlink_to(samples / f"{name}.mp4")
        (site / f"{name}.{lang}.vtt").symlink_to(samples / f"{name}.{lang}.vtt")
        (site / f"{name}.html").write_text(
            f"<html><head><title>{truth['title']}</title></head><body><video controls>"
            f'<source src="{name}.mp4" type="video/mp4">'
            f'<track kind="subtitles" srclang="{lang}" label="{lang}" src="{name}.{lang}.vtt"></video></body></html>'
        )
        entries.append(f"  - url: http://127.0.0.1:{port}/{name}.html\n    license: {truth['license']}\n    language: \"{lang}\"\n")
        truths[name] = truth
    sources = site.parent / "sources.yaml"
    sources.write_text("sources:\n" + "".join(entries))
    return sources, truths


def grey_small(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (64, 36), interpolation=cv2.INTER_AREA).astype(np.float32)


def frame_at(video: Path, t: float) -> np.ndarray:
    import av

    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= t:
                return frame.to_ndarray(format="rgb24")
    raise ValueError(f"no frame at {t} s in {video}")


def evaluate(story: dict, frames_dir: Path, truth: dict, video: Path) -> dict:
    from PIL import Image

    pages = [s for s in truth["segments"] if s.get("page") is not None]
    matched: dict[int, int] = {}  # page -> frame index
    extra = 0
    order = []
    for frame in story["frames"]:
        overlaps = [max(0.0, min(frame["t_end"], s["t_end"]) - max(frame["t_start"], s["t_start"])) for s in truth["segments"]]
        segment = truth["segments"][int(np.argmax(overlaps))]
        page = segment.get("page")
        if page is None or page in matched:
            extra += 1
            continue
        ours = grey_small(np.asarray(Image.open(frames_dir / frame["image"]).convert("RGB")))
        mid = (segment["t_start"] + segment["t_end"]) / 2
        reference = grey_small(frame_at(video, mid))
        if float(np.abs(ours - reference).mean()) >= 12:
            extra += 1
            continue
        matched[page] = frame["index"]
        order.append(page)
    norm = lambda text: " ".join(text.split())  # noqa: E731
    texts_right = sum(
        norm(story["frames"][matched[p["page"]]]["text"]) == norm(p["text"]) for p in pages if p["page"] in matched
    )
    return {
        "pages": len(pages),
        "found": len(matched),
        "extra": extra,
        "texts_right": texts_right,
        "in_order": order == sorted(order),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--keep", action="store_true", help="keep the output directory")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="storyloom-bench-"))
    site = tmp / "site"
    site.mkdir()
    server = serve(site)
    try:
        sources, truths = stage_site(args.samples, site, server.server_address[1])
        out = tmp / "out"
        env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
        storyloom = Path(sys.executable).with_name("storyloom")
        start = time.perf_counter()
        subprocess.run([str(storyloom), "ingest", str(sources), "--out", str(out)], check=True, env=env)
        wall = time.perf_counter() - start
        print(f"\nwhole ingest of {len(truths)} samples from loopback: {wall:.1f} s wall (Prefect start-up included)")
        print(f"{'video':<14} {'pages found':>11} {'extra':>5} {'texts right':>11} {'in order':>8}")
        totals = np.zeros(4, dtype=int)
        for name, truth in truths.items():
            work = next(p for p in (out / "work").iterdir() if p.is_dir() and (p / "story.json").exists() and name in json.loads((p / "story.json").read_text())["source"].get("url", ""))
            story = json.loads((work / "story.json").read_text())
            result = evaluate(story, work / "frames", truth, args.samples / f"{name}.mp4")
            totals += [result["pages"], result["found"], result["extra"], result["texts_right"]]
            print(f"{name:<14} {result['found']:>5}/{result['pages']:<5} {result['extra']:>5} "
                  f"{result['texts_right']:>5}/{result['pages']:<5} {str(result['in_order']):>8}")
        print(f"{'all':<14} {totals[1]:>5}/{totals[0]:<5} {totals[2]:>5} {totals[3]:>5}/{totals[0]:<5}")
    finally:
        server.shutdown()
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
