"""Where one source's CPU goes: every stage of the video path, run in one thread without Prefect.

Usage: python bench/source_cost.py [--sources 12] [--size 854x480] [--stretch 2]

The same generated sources as ``bench/scale_ingest.py`` (the bundled examples, each copy a distinct
file, served with its subtitles and an HTML page by a real ``http.server`` on 127.0.0.1), taken
one at a time through the stage functions the flow's tasks call, in this thread: expand (yt-dlp's
listing) -> fetch (download) -> keyframes (decoding, inline instead of in a worker process) ->
text -> assemble -> marker. Each stage's CPU is this thread's CPU time (``time.thread_time``;
the HTTP server runs in another thread and is not counted), summed over sources and shown per
source and against single-thread ``ffmpeg`` decoding of the same files. Whatever the whole ingest
(``bench/scale_ingest.py``) costs above the sum of these stages is the flow's own (Prefect task
runs, its API server, the process pool's hand-offs). The first source is left out of the sums: it
pays the one-off imports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scale_ingest import ffmpeg_reference, make_sources, render_examples, serve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=12)
    parser.add_argument("--size", default="854x480")
    parser.add_argument("--stretch", type=float, default=2.0)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "storyloom-bench-examples")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))

    from pipeline.config import IngestConfig
    from pipeline.sources import SourceDefaults, SourceEntry, expand_entry
    from pipeline.video import stages as video
    from pipeline.workdir import SourceRun

    examples = render_examples(args.cache, width, height, args.stretch)
    with tempfile.TemporaryDirectory(prefix="storyloom-cost-") as tmp:
        tmp_path = Path(tmp)
        sources = make_sources(examples, tmp_path / "site", args.sources + 1)
        httpd, base = serve(tmp_path / "site")
        cfg, defaults = IngestConfig(), SourceDefaults()
        cpu: dict[str, float] = defaultdict(float)
        try:
            for n, (page, _video) in enumerate(sources):
                spent: dict[str, float] = {}

                def timed(stage, fn, *a):
                    start = time.thread_time()
                    try:
                        return fn(*a)
                    finally:
                        spent[stage] = spent.get(stage, 0.0) + time.thread_time() - start

                url = base + page
                entry = SourceEntry(input=url, index=n, url=url)
                (item,) = timed("expand", expand_entry, entry, defaults, cfg.fetch)
                run = SourceRun.start(item, video.video_work(tmp_path / "work" / item.source_id, item, cfg, defaults))
                timed("fetch", run.step, "fetch", video.fetch, cfg, tmp_path / "archive.txt", defaults)
                timed("keyframes", run.step, "keyframes", video.keyframes, cfg)
                timed("text", run.step, "text", video.text, cfg)
                timed("assemble", run.step, "assemble", video.assemble, cfg)
                result = timed("marker", run.finish)
                if result.status != "ok":
                    raise SystemExit(f"{item.source_id}: {result.stage}: {result.error}")
                if n:  # the first pays the imports
                    for stage, seconds in spent.items():
                        cpu[stage] += seconds
        finally:
            httpd.shutdown()
        counted = [video for _page, video in sources[1:]]
        reference = ffmpeg_reference(counted, examples)

    total = sum(cpu.values())
    print(f"{args.sources} sources ({args.size}), CPU-seconds of this thread per source "
          f"(ffmpeg -threads 1 decode: {reference / args.sources:.3f} s per source)")
    for stage, seconds in cpu.items():
        print(f"  {stage:10s} {seconds / args.sources:7.3f} s   {seconds / reference:5.2f}x ffmpeg")
    print(f"  {'all':10s} {total / args.sources:7.3f} s   {total / reference:5.2f}x ffmpeg")


if __name__ == "__main__":
    main()
