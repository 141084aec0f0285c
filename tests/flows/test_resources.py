"""The run's shared resources (:class:`flows.resources.RunResources`): a process pool whose workers
start when the run opens it, and which runs the CPU stages in other processes."""

from __future__ import annotations

import os
import time

from flows.resources import RunResources
from pipeline.config import IngestConfig, RunConfig
from tests.conftest import child_processes


def worker_modules() -> tuple[int, bool]:
    import sys

    return os.getpid(), "cv2" in sys.modules and "av" in sys.modules and "pipeline.video.keyframes" in sys.modules


def pool_workers() -> set[int]:
    return child_processes("spawn_main")


def test_the_decode_workers_start_and_import_the_decoder_when_the_run_opens_its_pool():
    cfg = IngestConfig(run=RunConfig(decode_workers=2))
    with RunResources.open(cfg) as resources:
        deadline = time.monotonic() + 60
        while len(pool_workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = pool_workers()
        assert len(workers) == 2  # before any stage was handed to the pool
        pid, imported = resources.in_process(worker_modules)
        assert pid != os.getpid() and pid in workers
        assert imported  # the warm-up ran there: decoding imported nothing more on a source's time
