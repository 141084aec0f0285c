"""How much does `storyloom curate` cost next to reading the catalog alone?

Builds a synthetic dataset (default 10,000 stories, tiny JPEGs, written by the real shard writer:
``tests/dataset_helpers.py``), then measures, each in a fresh subprocess run the same way:

- ``catalog``: ``open_dataset(IN).catalog()`` (the reference: what any decision has to read);
- ``read-all``: every story of every shard through the dataset reader, media included (context:
  the read a full copy cannot avoid);
- ``curate-filtered``: a typical curation (licence allow-list, CLIP score, a flag, ``frames >= 2``);
- ``curate-all``: a curation that keeps everything (the largest copy).

For each: the median time of the work (after imports) and the peak resident memory above the
process's resident memory after imports (Linux: VmHWM reset through /proc/self/clear_refs, so
import-time peaks do not hide the work's), with the ratios to the reference. Machines are shared
and noisy; the ratios are what to compare.

    python bench/curate_speed.py [--stories 10000] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FILTERED = {"license_allow": ["CC-BY", "CC0", "public-domain", "CC-BY-SA"],
            "where": ["score_clip >= 0.2", "flags lacks repeated_image", "frames >= 2"]}


def _memory_kib() -> tuple[int, int]:
    """(peak, current) resident KiB of this process: VmHWM and VmRSS."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmHWM"].split()[0]), int(fields["VmRSS"].split()[0])


def _reset_peak() -> bool:
    """Linux: make VmHWM start again from the current RSS (so import peaks do not hide the work's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(task: str, source: str, out: str) -> None:
    """One measurement, in this (fresh) process: prints JSON with seconds and KiB."""
    import gc

    import jinja2  # noqa: F401
    import pyarrow  # noqa: F401 - imported before the baseline: every task needs it
    import tqdm  # noqa: F401

    from pipeline.dataset.curate import CurationSpec, curate
    from pipeline.dataset.reader import open_dataset

    gc.collect()
    _reset_peak()
    base = _memory_kib()[1]
    start = time.perf_counter()
    if task == "catalog":
        rows = open_dataset(source).catalog().num_rows
    elif task == "read-all":
        rows = sum(len(r.story.frames) for r in open_dataset(source).iter_stories())
    else:
        settings = FILTERED if task == "curate-filtered" else {}
        spec = CurationSpec(where=tuple(settings.get("where", ())),
                            license_allow=tuple(settings["license_allow"]) if "license_allow" in settings else None)
        rows = curate(source, out, spec.validate(), progress=False).selection.frames_out
    seconds = time.perf_counter() - start
    print(json.dumps({"task": task, "seconds": seconds, "base_kib": base, "peak_kib": _memory_kib()[0], "rows": rows}))


def measure(task: str, source: Path, scratch: Path, repeat: int) -> dict:
    runs = []
    for i in range(repeat):
        out = scratch / f"{task}-{i}"
        shutil.rmtree(out, ignore_errors=True)
        result = subprocess.run([sys.executable, __file__, "--child", task, str(source), str(out)], cwd=ROOT,
                                capture_output=True, text=True, check=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {"task": task, "seconds": statistics.median(r["seconds"] for r in runs),
            "extra_mib": statistics.median((r["peak_kib"] - r["base_kib"]) / 1024 for r in runs),
            "peak_mib": statistics.median(r["peak_kib"] / 1024 for r in runs), "rows": runs[0]["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build (or reuse) the dataset here instead of a temp dir")
    parser.add_argument("--child", nargs=3, metavar=("TASK", "IN", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from tests.dataset_helpers import write_synthetic_dataset

    scratch = Path(tempfile.mkdtemp(prefix="curate-bench-"))
    try:
        source = args.keep or scratch / "in"
        if not (source / "catalog.parquet").is_file():
            start = time.perf_counter()
            write_synthetic_dataset(source, args.stories, seed=1, test_fraction=0.05)
            print(f"built {args.stories} stories in {time.perf_counter() - start:.1f} s")
        size = sum(p.stat().st_size for p in (source / "shards").glob("*.tar"))
        print(f"input: {source} ({size / 2**20:.1f} MiB of shards)")
        tasks = ("catalog", "read-all", "curate-filtered", "curate-all")
        results = [measure(task, source, scratch, args.repeat) for task in tasks]
        reference = results[0]
        print(f"{'task':<16} {'frames':>8} {'seconds':>8} {'x time':>7} {'extra MiB':>10} {'x mem':>6} {'peak MiB':>9}")
        for r in results:
            print(f"{r['task']:<16} {r['rows']:>8} {r['seconds']:>8.2f} {r['seconds'] / reference['seconds']:>7.1f} "
                  f"{r['extra_mib']:>10.1f} {r['extra_mib'] / max(reference['extra_mib'], 0.1):>6.1f} "
                  f"{r['peak_mib']:>9.1f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
