"""The same generated sources ingested locally and on a Dask cluster: wall time ratio, identical output.

Usage: python bench/dask_vs_local.py [--sources 20] [--workers 2] [--books-every 5] [--dir DIR]

N short generated read-aloud videos (2-4 pages, every style) served over loopback through the real
yt-dlp, every ``--books-every``-th source a generated PDF picture book instead, are ingested twice
into empty directories of the same name: once with ``run.executor: local`` (threads and
``run.decode_workers`` processes), once with ``--dask-address`` pointing at a
``distributed.LocalCluster`` of ``--workers`` worker processes (``--threads`` each) over TCP on
loopback, started (and its workers' imports warmed) before the clock starts, as a long-lived
cluster would be. Both runs use one Prefect API (``PREFECT_API_URL`` when set, else a temporary
server started here). Printed: wall time of each, the ratio dask/local, the CPU seconds of each
(this process and its children; for Dask, the worker processes too) against wall x cores, and
whether shards, manifests, catalog and card are byte-identical.

Measured in one process, one run after the other: on a shared machine, repeat it and read the
ratio, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STYLES = (dict(style="cut", line_art=True), dict(style="crossfade"), dict(style="fade"), dict(style="kenburns"))


def write_sources(root: Path, count: int, books_every: int, url) -> Path:
    from pipeline.synthetic import write_story_video
    from tests.bookgen.pdf import write_pdf
    from tests.flows.test_video import spec

    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    entries = []
    for i in range(count):
        if books_every and i % books_every == books_every - 1:
            write_pdf(site / f"book{i:04d}.pdf", "below", seed=1000 + i, pages=3)
            entries.append(f"  - path: {site / f'book{i:04d}.pdf'}\n")
        else:
            write_story_video(site, f"v{i:04d}", spec(i, pages=2 + i % 3, **STYLES[i % len(STYLES)]))
            entries.append(f"  - url: {url(f'v{i:04d}.html')}\n")
    sources = root / "sources.yaml"
    sources.write_text("defaults:\n  license: CC0\n  language: en\nsources:\n" + "".join(entries), encoding="utf-8")
    config = root / "config.yaml"
    config.write_text("shards: {max_stories_per_shard: 10}\nfetch: {retries: 1, backoff_s: 0.1}\n", encoding="utf-8")
    return sources


def _own_cpu() -> float:
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _worker_cpu() -> float:
    import psutil

    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def timed_ingest(sources: Path, out: Path, *options: str) -> tuple[float, float]:
    from flows.cli import main as storyloom

    cpu, start = _own_cpu(), time.perf_counter()
    code = storyloom(["ingest", str(sources), "--out", str(out), "--config", str(sources.parent / "config.yaml"),
                      *options])
    if code != 0:
        raise SystemExit(f"ingest {' '.join(options) or '(local)'} exited {code}")
    return time.perf_counter() - start, _own_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", type=int, default=20, help="generated sources (default 20)")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="threads per Dask worker (default 2, as the README says)")
    parser.add_argument("--books-every", type=int, default=5, help="every Nth source is a PDF book (0: none)")
    parser.add_argument("--dir", type=Path, help="keep the sources and both outputs here (default: a temp dir)")
    args = parser.parse_args()

    import distributed

    from tests.conftest import StaticServer, dataset_files

    root = args.dir or Path(tempfile.mkdtemp(prefix="dask-vs-local-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "site").mkdir(exist_ok=True)
    server = StaticServer(root / "site")
    try:
        sources = write_sources(root, args.sources, args.books_every, server.url)
        harness = None
        if not os.environ.get("PREFECT_API_URL"):
            from prefect.testing.utilities import prefect_test_harness

            harness = prefect_test_harness(server_startup_timeout=120)
            harness.__enter__()
        try:
            local_wall, local_cpu = timed_ingest(sources, root / "local" / "out")
            started = time.perf_counter()
            with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=args.threads, processes=True,
                                          host="127.0.0.1", dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                client.run(lambda: __import__("flows.ingest"))
                cluster_start = time.perf_counter() - started
                workers_before = sum(client.run(_worker_cpu).values())
                dask_wall, dask_cpu = timed_ingest(sources, root / "dask" / "out", "--dask-address",
                                                   cluster.scheduler_address)
                dask_cpu += sum(client.run(_worker_cpu).values()) - workers_before
        finally:
            if harness is not None:
                harness.__exit__(None, None, None)
    finally:
        server.close()

    local_files, dask_files = dataset_files(root / "local" / "out"), dataset_files(root / "dask" / "out")
    identical = local_files == dask_files and any(name.startswith("shards/") for name in local_files)
    cores = os.cpu_count() or 1
    books = sum(1 for line in sources.read_text().splitlines() if "path:" in line)
    print(f"sources: {args.sources} ({books} books), cores: {cores}, dask workers: {args.workers}, output under {root}")
    print(f"local: wall {local_wall:.1f} s, cpu {local_cpu:.1f} s "
          f"(wall/(cpu/cores) {local_wall / (local_cpu / cores):.2f})")
    print(f"dask:  wall {dask_wall:.1f} s, cpu {dask_cpu:.1f} s incl. workers (wall/(cpu/cores) "
          f"{dask_wall / (dask_cpu / cores):.2f}); cluster start-up {cluster_start:.1f} s, not counted")
    print(f"wall time ratio dask/local: {dask_wall / local_wall:.2f}; output byte-identical: {identical}")
    if not identical:
        changed = {name for name in local_files if local_files[name] != dask_files.get(name)}
        differing = sorted(set(local_files) ^ set(dask_files) | changed)
        print("differing files:", ", ".join(differing[:20]))
        raise SystemExit(1)


if __name__ == "__main__":
    main()
