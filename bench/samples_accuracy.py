"""Accuracy and wall time of `storyloom ingest` on the real read-aloud samples, served on loopback.

Usage: python bench/samples_accuracy.py [--samples DIR] [--captions clean|auto|both] [--config FILE] [--keep]

Each sample NAME.mp4 (+ NAME.LANG.vtt, NAME.truth.json) is offered as an HTML page with a
<video> and a subtitle <track>, from an http.server on 127.0.0.1; `storyloom ingest` (a
subprocess, so the wall time includes starting Prefect) downloads them with yt-dlp and builds the
dataset. ``--captions`` says which subtitles the track serves (``both``, the default, runs the
ingest once with each):

- ``clean``: the sample's own VTT, one cue per page;
- ``auto``: the same narration the way YouTube's auto-captions look, made from the truth and the
  clean VTT: each page's words spread over its cue by syllables (``pipeline.synthetic.word_timings``),
  written lower case without punctuation in rolling two-line cues of 3-6 s that run across page
  turns, with 10 ms snapshot cues and inline word timings (``pipeline.synthetic.auto_caption_vtt``),
  ``[Music]`` over intro and outro cards.

Then every story is compared with its truth:

- pages found: true pages that exactly one frame covers (most time overlap) and whose pixels
  match the video at the middle of that page (mean abs grey difference at 64x36 below 12);
- extra frames: frames that match no page or a page already matched (intro/outro cards too);
- texts right: found pages whose frame text equals the true text: whitespace-normalised for
  clean subtitles; for auto captions, which have no case or punctuation, both spelt as auto
  captions spell words (``pipeline.synthetic.caption_word``: lower case, punctuation dropped);
- low align: found pages whose ``scores.align`` is below 0.5 (the alignment's own doubt);
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
import zlib
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


def stage_site(samples: Path, site: Path, port: int, captions: str = "clean") -> tuple[Path, dict[str, dict]]:
    truths = {}
    entries = []
    for truth_path in sorted(samples.glob("*.truth.json")):
        truth = json.loads(truth_path.read_text())
        name, lang = truth["key"], truth["lang"]
        (site / f"{name}.mp4").symlink_to(samples / f"{name}.mp4")
        clean_vtt = samples / f"{name}.{lang}.vtt"
        if captions == "auto":
            (site / f"{name}.{lang}.vtt").write_text(auto_captions(truth, clean_vtt.read_bytes()), encoding="utf-8")
        else:
            (site / f"{name}.{lang}.vtt").symlink_to(clean_vtt)
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


def auto_captions(truth: dict, clean_vtt: bytes) -> str:
    """The sample's narration as YouTube-style auto captions: each page's words spread by syllables
    over the clean VTT's cues on that page (its speech), in rolling 3-6 s lines across page turns."""
    from pipeline.synthetic import auto_caption_vtt, word_timings
    from pipeline.text.subtitles import parse_subtitles

    cues = parse_subtitles(clean_vtt)
    words = []
    for segment in truth["segments"]:
        if segment.get("page") is None or not segment.get("text", "").strip():
            continue
        mine = [c for c in cues if segment["t_start"] <= (c.start + c.end) / 2 < segment["t_end"]]
        start = min((c.start for c in mine), default=segment["t_start"])
        end = max((c.end for c in mine), default=segment.get("speech_end") or segment["t_end"])
        words += word_timings(segment["text"], start, end)
    music = [(s["t_start"], s["t_end"]) for s in truth["segments"] if s.get("kind") in ("intro", "outro")]
    end_s = max(s["t_end"] for s in truth["segments"])
    return auto_caption_vtt(words, language=truth["lang"], seed=zlib.crc32(truth["key"].encode()), music=music,
                            end_s=end_s, line_s=(3.0, 6.0))


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


def normalise(text: str, captions: str) -> str:
    """Text as compared: whitespace-normalised; for auto captions also spelt as they spell words."""
    if captions == "auto":
        from pipeline.synthetic import caption_word

        return " ".join(w for w in (caption_word(w) for w in text.split()) if w)
    return " ".join(text.split())


def evaluate(story: dict, frames_dir: Path, truth: dict, video: Path, captions: str = "clean") -> dict:
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
    found = [(p, story["frames"][matched[p["page"]]]) for p in pages if p["page"] in matched]
    texts_right = sum(normalise(frame["text"], captions) == normalise(p["text"], captions) for p, frame in found)
    low = sum(1 for _, frame in found if (frame["scores"].get("align") or 0.0) < 0.5)
    assignments: dict[str, int] = {}
    for frame in story["frames"]:
        how = frame.get("text_assignment") or "none"
        assignments[how] = assignments.get(how, 0) + 1
    return {
        "pages": len(pages),
        "found": len(matched),
        "extra": extra,
        "texts_right": texts_right,
        "low_align": low,
        "in_order": order == sorted(order),
        "assignments": assignments,
    }


def run_kind(samples: Path, tmp: Path, captions: str, config: Path | None = None) -> np.ndarray:
    """Serve the samples with ``captions`` subtitles, ingest them, print the table; the totals."""
    site = tmp / captions / "site"
    site.mkdir(parents=True)
    server = serve(site)
    try:
        sources, truths = stage_site(samples, site, server.server_address[1], captions)
        out = tmp / captions / "out"
        env = {**os.environ, "PREFECT_LOGGING_LEVEL": "WARNING"}
        storyloom = Path(sys.executable).with_name("storyloom")
        start = time.perf_counter()
        options = ["--config", str(config)] if config else []
        subprocess.run([str(storyloom), "ingest", str(sources), "--out", str(out), *options], check=True, env=env)
        wall = time.perf_counter() - start
    finally:
        server.shutdown()
    print(f"\n{captions} captions: whole ingest of {len(truths)} samples from loopback: {wall:.1f} s wall "
          "(Prefect start-up included)")
    print(f"{'video':<20} {'pages found':>11} {'extra':>5} {'texts right':>11} {'low align':>9} {'in order':>8}  text assignment")
    totals = np.zeros(5, dtype=int)
    for name, truth in truths.items():
        work = next(p for p in (out / "work").iterdir() if p.is_dir() and (p / "story.json").exists() and name in json.loads((p / "story.json").read_text())["source"].get("url", ""))
        story = json.loads((work / "story.json").read_text())
        result = evaluate(story, work / "frames", truth, samples / f"{name}.mp4", captions)
        totals += [result["pages"], result["found"], result["extra"], result["texts_right"], result["low_align"]]
        how = ", ".join(f"{k} {v}" for k, v in sorted(result["assignments"].items()))
        print(f"{name:<20} {result['found']:>5}/{result['pages']:<5} {result['extra']:>5} "
              f"{result['texts_right']:>5}/{result['pages']:<5} {result['low_align']:>9} {str(result['in_order']):>8}  {how}")
    print(f"{'all':<20} {totals[1]:>5}/{totals[0]:<5} {totals[2]:>5} {totals[3]:>5}/{totals[0]:<5} {totals[4]:>9}")
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=lambda p: Path(p).resolve(), default=DEFAULT_SAMPLES)  # the site links to it
    parser.add_argument("--captions", choices=("clean", "auto", "both"), default="both",
                        help="which subtitles to serve: the clean per-page VTT, YouTube-style auto captions, or both")
    parser.add_argument("--keep", action="store_true", help="keep the output directory")
    parser.add_argument("--config", type=lambda p: Path(p).resolve(),
                        help="an ingest config for the runs (e.g. keyframes.reference_frames_only: true)")
    args = parser.parse_args(argv)
    if not any(args.samples.glob("*.truth.json")):
        parser.error(f"no samples (NAME.truth.json) in {args.samples}")
    tmp = Path(tempfile.mkdtemp(prefix="storyloom-bench-"))
    kinds = ("clean", "auto") if args.captions == "both" else (args.captions,)
    try:
        results = {kind: run_kind(args.samples, tmp, kind, args.config) for kind in kinds}
        if len(results) > 1:
            print(f"\n{'captions':<10} {'pages found':>11} {'extra':>5} {'texts right':>11} {'low align':>9}")
            for kind, t in results.items():
                print(f"{kind:<10} {t[1]:>5}/{t[0]:<5} {t[2]:>5} {t[3]:>5}/{t[0]:<5} {t[4]:>9}")
    finally:
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
