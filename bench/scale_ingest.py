"""Ingest throughput and memory at scale: N generated sources from loopback through yt-dlp.

Usage: python bench/scale_ingest.py [--sources 40] [--checkpoints 100 ...] [--config EXTRA.yaml]
       the issue's figures (on a quiet machine):
         python bench/scale_ingest.py --sources 200 --json scale-200.json            # core use, CPU cost
         python bench/scale_ingest.py --sources 1000 --checkpoints 100 --size 320x180 --stretch 0.5 \
             --json scale-1000.json                                                    # peak RSS, flat?

What it does, in one run:

1. Renders the four bundled example videos (:func:`pipeline.synthetic.example_specs`) at ``--size``
   (default 854x480, as the real read-aloud samples) with pages ``--stretch`` times as long
   (default 2: 30-50 s, 39 s on average) once into ``--cache``, then makes N distinct sources of
   them: ``sNNNNN.mp4`` is a copy of one example with a ``free`` box naming the copy appended (valid mp4, distinct bytes and sha256),
   with its subtitles and an HTML page yt-dlp's generic extractor reads. A real
   ``http.server`` on 127.0.0.1 (a thread of this process) serves them.
2. Runs ``storyloom ingest`` on them as a child process, with a ``PREFECT_HOME`` of its own whose
   database exists and is empty (a copy of one prepared once: creating the database is a cost of
   the first run on a machine, ~10 CPU-s; ``--fresh-prefect-home`` measures that first run,
   ``--prefect-home`` uses a given one as it is)
   with the default run settings (``--config`` for others) and measures:
   - wall time, and the CPU-seconds of every process of the ingest (the flow process, its decode
     workers, the Prefect API server, ffmpeg/ffprobe: RUSAGE_CHILDREN of this process, which
     counts every descendant that was waited for, checked against a /proc poll of the tree);
   - **utilisation** = wall / (ingest CPU-seconds / cores); 1.0 means every core busy the whole
     run (target <= 1.25). On a shared machine other people's work takes cores too: the machine's
     busy fraction during the run is printed next to it.
   - **CPU cost** = ingest CPU-seconds / CPU-seconds of ``ffmpeg -threads 1 -i V -f null -`` on the
     same N files (measured here, before and after the run, averaged; target <= 1.5); also against the same decodes
     run as many at a time as there are cores: the ingest keeps every core busy, and on a busy
     machine a CPU-second decodes less (~1.2x measured on this 2-vCPU machine);
   - how often the decode workers had work (running or runnable when polled), from the first
     decode to the last source: whether the pool is kept saturated, a figure that, unlike
     utilisation, holds on a machine others use too;
   - **peak RSS** of every process of the tree, by role (flow, decode worker, Prefect server,
     other), polled every 0.2 s, at each ``--checkpoints`` count of finished sources, when every
     source has finished (before the dataset is written) and at the end; growth from the first
     checkpoint to the last source should be <= 10% (flat in N).
3. Prints one table; ``--json FILE`` writes the numbers.

This is not a test: the numbers depend on the machine (utilisation needs a machine nobody else
uses). ``--keep`` keeps the site and output.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil

from pipeline.video.ffmpeg import find_ffmpeg


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


# --------------------------------------------------------------------------- sources


def render_examples(cache: Path, width: int, height: int, stretch: float) -> list[Path]:
    """The bundled example videos at ``width`` x ``height``, every page ``stretch`` times as long,
    rendered once into ``cache`` (reused when there)."""
    from dataclasses import replace

    from pipeline.synthetic import example_specs, write_story_video

    cache = cache / f"{width}x{height}-x{stretch:g}"
    cache.mkdir(parents=True, exist_ok=True)
    videos = []
    for name, spec in example_specs().items():
        spec = replace(spec, width=width, height=height,
                       pages=[replace(page, duration_s=round(page.duration_s * stretch, 2)) for page in spec.pages])
        if not (cache / f"{name}.mp4").is_file() or not (cache / f"{name}.en.vtt").is_file():
            write_story_video(cache, name, spec, save_pictures=False)
        videos.append(cache / f"{name}.mp4")
    return videos


def make_sources(examples: list[Path], site: Path, count: int) -> list[tuple[str, Path]]:
    """``count`` distinct sources: (page name, mp4 path); copy i of example i mod len(examples)."""
    from pipeline.synthetic.subtitles import html_page

    site.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        example = examples[i % len(examples)]
        name = f"s{i:05d}"
        tag = f"storyloom bench source {i}".encode("ascii")
        # a trailing top-level `free` box: players and demuxers skip it; the bytes differ per source
        (site / f"{name}.mp4").write_bytes(example.read_bytes() + struct.pack(">I", 8 + len(tag)) + b"free" + tag)
        shutil.copyfile(example.with_name(f"{example.stem}.en.vtt"), site / f"{name}.en.vtt")
        (site / f"{name}.html").write_text(html_page(name, f"Bench story {i}", "en"), encoding="utf-8")
        made.append((f"{name}.html", site / f"{name}.mp4"))
    return made


# --------------------------------------------------------------------------- reference


def video_seconds(video: Path) -> float:
    import av

    with av.open(str(video)) as container:
        return container.duration / 1e6 if container.duration else 0.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ffmpeg_reference(videos: list[Path], examples: list[Path], at_once: int = 1) -> float:
    """CPU-seconds of single-thread ffmpeg decoding of every source video.

    The copies of one example differ only in a trailing box ffmpeg skips, so each example is
    decoded (best of 3) and counted once per copy. ``at_once`` > 1 runs that many decodes of it side
    by side and takes the CPU of one: a CPU-second buys less decoding when every core is busy
    (caches, memory bandwidth, a host's sibling threads), and the ingest keeps every core busy.
    """
    ffmpeg = find_ffmpeg(None)
    per_example = {}
    for example in examples:
        runs = []
        for _ in range(3):
            before = _children_cpu()
            decodes = [subprocess.Popen([ffmpeg, "-v", "error", "-threads", "1", "-i", str(example), "-f", "null", "-"])
                       for _ in range(at_once)]
            if any(decode.wait() for decode in decodes):
                raise SystemExit(f"ffmpeg could not decode {example}")
            runs.append((_children_cpu() - before) / at_once)
        per_example[example.stem] = min(runs)
    return sum(per_example[examples[i % len(examples)].stem] for i in range(len(videos)))


# --------------------------------------------------------------------------- the watched run


def role_of(proc: psutil.Process, root_pid: int) -> str:
    if proc.pid == root_pid:
        return "flow"
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if "multiprocessing" in cmd and ("spawn_main" in cmd or "forkserver" in cmd):
        return "decode worker"
    if "prefect" in cmd and ("server" in cmd or "uvicorn" in cmd):
        return "prefect server"
    if "ffmpeg" in cmd or "ffprobe" in cmd:
        return "ffmpeg"
    return "other"


class TreeWatch:
    """Polls the ingest's process tree: peak RSS per process, CPU seen, finished sources."""

    def __init__(self, root_pid: int, work_dir: Path, checkpoints: list[int], interval: float = 0.2):
        self.root_pid = root_pid
        self.work_dir = work_dir
        self.checkpoints = sorted(checkpoints)
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}  # pid -> (role, peak rss)
        self.cpu: dict[int, float] = {}  # pid -> last CPU-seconds seen (own, not its children's)
        self.at_checkpoint: dict[int, dict[str, int]] = {}  # finished count -> role -> peak rss so far
        self.finished = 0
        # decode workers: polls in which each was running or runnable (had work), from the first
        # such poll to the last source's marker: does the pool stay saturated? (unlike wall time,
        # this does not depend on what else the machine runs)
        self.worker_polls = 0
        self.worker_busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def by_role(self) -> dict[str, int]:
        roles: dict[str, int] = {}
        for role, rss in self.peaks.values():
            roles[role] = max(roles.get(role, 0), rss)
        return roles

    def cpu_by_role(self) -> dict[str, float]:
        roles: dict[str, float] = {}
        for pid, seconds in self.cpu.items():
            role = self.peaks[pid][0]
            roles[role] = roles.get(role, 0.0) + seconds
        return roles

    def _count_finished(self) -> int:
        try:
            entries = list(os.scandir(self.work_dir))
        except OSError:
            return 0
        return sum(os.path.exists(os.path.join(e.path, "DONE.json")) or os.path.exists(os.path.join(e.path, "FAILED.json"))
                   for e in entries if e.is_dir())

    def _run(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
        except psutil.Error:
            return
        last_count = 0.0
        while not self._stop.is_set():
            try:
                procs = [root] + root.children(recursive=True)
            except psutil.Error:
                break
            states = []
            for proc in procs:
                try:
                    with proc.oneshot():
                        rss = proc.memory_info().rss
                        times = proc.cpu_times()
                        status = proc.status()
                except psutil.Error:
                    continue
                role, peak = self.peaks.get(proc.pid, (None, 0))
                if role is None:
                    role = role_of(proc, self.root_pid)
                self.peaks[proc.pid] = (role, max(peak, rss))
                self.cpu[proc.pid] = times.user + times.system  # children_* would count waited children twice
                if role == "decode worker":
                    states.append(status == psutil.STATUS_RUNNING)
            if states and (self.worker_polls or any(states)) and self.finished < self.checkpoints[-1]:
                self.worker_polls += len(states)
                self.worker_busy += sum(states)
            now = time.monotonic()
            if now - last_count >= 1.0:
                last_count = now
                self.finished = self._count_finished()
                for mark in self.checkpoints:
                    if self.finished >= mark and mark not in self.at_checkpoint:
                        self.at_checkpoint[mark] = self.by_role()
            self._stop.wait(self.interval)


def prepared_prefect_home(cache: Path) -> Path:
    """A PREFECT_HOME whose API database exists and holds nothing (made once, in ``cache``).

    Prefect's temporary API server creates its database on its first start (migrations, block
    types: ~10 CPU-s, ~10 s): a cost of the first run on a machine, not of an ingest. Each measured
    run gets a copy of this one (an empty database, as after `make run` on a clean machine, without
    the history that run leaves), unless --fresh-prefect-home or --prefect-home.
    """
    import prefect

    home = cache / f"prefect-home-{prefect.__version__}"
    if (home / "prefect.db").is_file():
        return home
    staging = Path(tempfile.mkdtemp(prefix="prefect-home-", dir=cache))
    start_stop = ("from flows.cli import _prefect_defaults; _prefect_defaults(); from flows.api_server import TemporaryAPI; "
                  "api = TemporaryAPI.start(); assert api.url(); api.stop()")
    subprocess.run([sys.executable, "-c", start_stop], cwd=ROOT, check=True,
                   env={**{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")},
                        "PREFECT_HOME": str(staging)})
    staging.rename(home)
    return home


def run_ingest(sources: Path, out: Path, config: Path, checkpoints: list[int], prefect_home: Path) -> dict:
    env = dict(os.environ)
    env["PREFECT_HOME"] = str(prefect_home)
    env.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    cmd = [sys.executable, "-m", "flows.cli", "ingest", str(sources), "--out", str(out), "--config", str(config)]
    machine_before = psutil.cpu_times()
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch = TreeWatch(proc.pid, out / "work", checkpoints)
    watch.start()
    output = proc.communicate()[0]
    wall = time.perf_counter() - started
    watch.stop()
    cpu = _children_cpu() - cpu_before
    machine_after = psutil.cpu_times()
    if proc.returncode != 0:
        sys.stderr.write(output)
        raise SystemExit(f"ingest failed with status {proc.returncode}")
    busy = lambda t: t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)
    machine_busy = (busy(machine_after) - busy(machine_before)) / (wall * (psutil.cpu_count() or 1))
    return {"wall_s": wall, "cpu_s": cpu, "cpu_polled_s": sum(watch.cpu.values()), "machine_busy": machine_busy,
            "rss_end": watch.by_role(), "rss_at": watch.at_checkpoint, "summary": output.strip().splitlines()[-1:],
            "cpu_polled_by_role": watch.cpu_by_role(),
            "decode_workers_busy": watch.worker_busy / watch.worker_polls if watch.worker_polls else None, "processes": {role: sum(1 for r, _ in watch.peaks.values() if r == role) for role in set(r for r, _ in watch.peaks.values())}}


def stage_seconds(out: Path) -> dict[str, float]:
    """Summed wall seconds per stage from sources.parquet (where a source's time went)."""
    import pyarrow.parquet as pq

    totals: dict[str, float] = {}
    for row in pq.read_table(out / "sources.parquet").to_pylist():
        timings = row.get("timings") or {}
        for stage, seconds in (timings.items() if isinstance(timings, dict) else timings):  # struct or map
            totals[stage] = totals.get(stage, 0.0) + float(seconds or 0.0)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=40, help="number of sources (default 40)")
    parser.add_argument("--checkpoints", type=int, nargs="*", default=None,
                        help="finished-source counts at which to record peak RSS (default: 100 if sources > 100)")
    parser.add_argument("--config", type=Path, help="an ingest config to start from (run.* settings, e.g.)")
    parser.add_argument("--size", default="854x480", help="video size, WxH (default 854x480, as the real samples)")
    parser.add_argument("--stretch", type=float, default=2.0,
                        help="page durations times this (default 2: 30-50 s videos, as the real samples)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "storyloom-bench-examples",
                        help="where the rendered examples are kept between runs")
    parser.add_argument("--workdir", type=Path, help="where the site and output go (default: a temp dir)")
    parser.add_argument("--prefect-home", type=Path,
                        help="PREFECT_HOME for the run, used as it is (with its history); default: a copy of one "
                             "whose database was created and never used, as a machine that ran storyloom before has")
    parser.add_argument("--fresh-prefect-home", action="store_true",
                        help="an empty PREFECT_HOME instead: the temporary API server creates its database first, "
                             "as on the first run on a machine (~10 CPU-s and ~10 s more)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    checkpoints = args.checkpoints if args.checkpoints is not None else ([100] if args.sources > 100 else [])
    checkpoints = sorted({c for c in checkpoints if c < args.sources} | {args.sources})

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="storyloom-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        examples = render_examples(args.cache, width, height, args.stretch)
        made = make_sources(examples, workdir / "site", args.sources)
        httpd, base = serve(workdir / "site")
        sources = workdir / "sources.yaml"
        sources.write_text("defaults:\n  language: en\n  license: CC0\nsources:\n"
                           + "".join(f"  - url: {base}{page}\n" for page, _ in made), encoding="utf-8")
        config = workdir / "ingest.yaml"
        config.write_text(args.config.read_text(encoding="utf-8") if args.config else "{}\n", encoding="utf-8")
        cores = len(os.sched_getaffinity(0))  # the cores the ingest may use (a taskset or container share)
        videos = [video for _, video in made]
        # the references are measured before and after the ingest and averaged: on a shared machine
        # what a CPU-second decodes drifts (the same decodes took 95-181 CPU-s in one afternoon)
        before = ffmpeg_reference(videos, examples), ffmpeg_reference(videos, examples, at_once=cores)
        out = workdir / "out"
        prefect_home = args.prefect_home or workdir / "prefect-home"
        if not args.prefect_home and not args.fresh_prefect_home:
            shutil.copytree(prepared_prefect_home(args.cache), prefect_home)
        figures = run_ingest(sources, out, config, checkpoints, prefect_home)
        httpd.shutdown()
        httpd.server_close()
        after = ffmpeg_reference(videos, examples), ffmpeg_reference(videos, examples, at_once=cores)
        reference, loaded = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        cpu = max(figures["cpu_s"], figures["cpu_polled_s"])
        figures.update(ffmpeg_before_after_s=[before[0], after[0]], ffmpeg_loaded_before_after_s=[before[1], after[1]],
                       sources=args.sources, cores=cores, ffmpeg_cpu_s=reference, ffmpeg_loaded_cpu_s=loaded,
                       prefect_home="given" if args.prefect_home else "fresh" if args.fresh_prefect_home else "prepared",
                       utilisation=figures["wall_s"] / (cpu / cores), cpu_cost=cpu / reference,
                       cpu_cost_loaded=cpu / loaded,
                       stage_wall_s=stage_seconds(out))
        print(f"{args.sources} sources ({args.size}, {len(examples)} distinct videos of "
              f"{sum(video_seconds(v) for v in examples) / len(examples):.0f} s on average), {cores} cores (machine busy {figures['machine_busy']:.0%} during the run, "
              f"all users); Prefect home: {figures['prefect_home']}")
        print(f"  wall {figures['wall_s']:.1f} s; ingest CPU {cpu:.1f} s (rusage {figures['cpu_s']:.1f}, "
              f"polled {figures['cpu_polled_s']:.1f}: "
              + ", ".join(f"{k} {v:.1f}" for k, v in sorted(figures["cpu_polled_by_role"].items()))
              + f"); processes {figures['processes']}")
        print(f"  utilisation wall / (CPU / cores) = {figures['utilisation']:.2f}   (target <= 1.25)")
        if figures["decode_workers_busy"] is not None:
            print(f"  decode workers had work (running or runnable) in {figures['decode_workers_busy']:.0%} of polls, "
                  "from the first keyframe to the last source")
        print(f"  CPU cost ingest / ffmpeg -threads 1 decode ({reference:.1f} s: {before[0]:.1f} before the ingest, "
              f"{after[0]:.1f} after) = {figures['cpu_cost']:.2f}   (target <= 1.5)")
        print(f"    against the same decodes {cores} at a time, every core busy as in the ingest ({loaded:.1f} s: "
              f"{before[1]:.1f}, {after[1]:.1f}): {figures['cpu_cost_loaded']:.2f}")
        if figures["stage_wall_s"]:
            print("  stage wall seconds, summed over sources: "
                  + ", ".join(f"{k} {v:.1f}" for k, v in sorted(figures["stage_wall_s"].items())))
        marks = sorted(figures["rss_at"])  # the last one: every source finished, before the dataset is written
        print("  peak RSS per process (MiB), by finished sources; 'end' includes writing the shards and card")
        for role in sorted(figures["rss_end"]):
            at = {m: figures["rss_at"][m].get(role, 0) / 2**20 for m in marks}
            end = figures["rss_end"][role] / 2**20
            cells = [f"at {m}: {at[m]:.0f}" for m in marks]
            growth = f"  growth {at[marks[0]]:.0f} -> {at[marks[-1]]:.0f}: {at[marks[-1]] / at[marks[0]] - 1:+.1%}" \
                if len(marks) > 1 and at[marks[0]] else ""
            print(f"    {role:15s} " + "  ".join(cells + [f"end: {end:.0f}"]) + growth)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1, default=str), encoding="utf-8")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        elif args.keep:
            print(f"kept {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
