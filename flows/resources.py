"""What the stage tasks of one flow run share, handed to every task explicitly (no module globals).

- A process pool of ``run.decode_workers`` processes for the CPU-bound stages (keyframe decoding,
  book parsing), so they are not serialised by the GIL; ``spawn``, so a worker never inherits a
  half-initialised model or a thread's lock.
- ``models.max_concurrent`` model slots: the stages that run a model (ASR in text, CLIP and
  captions in assemble) hold one while they run, so memory stays bounded however many sources are
  in flight. The models themselves are loaded once per process (:mod:`pipeline.models.loading`).

On a Dask cluster (``run.executor: dask``, :meth:`RunResources.for_cluster`) the tasks themselves
run in the worker processes: there is no pool to send work to, and the object travels to the
workers by pickle, so it holds no pool, lock or semaphore of the flow's process. Each worker
process uses its own: CPU stages run there under the process's *CPU lock* (one at a time per
process: pdfium is not thread-safe, and a worker started with ``--nthreads`` above 1 must not
decode two books at once), and model stages hold one of the process's ``models.max_concurrent``
slots.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, TypeVar

from pipeline.config import IngestConfig

T = TypeVar("T")


@dataclass
class RunResources:
    decode_pool: concurrent.futures.Executor | None  # None: CPU stages run in the task's own process
    model_slots: threading.BoundedSemaphore | None  # None: the slots of the process the task runs in
    max_models: int = 1  # models.max_concurrent, for the per-process slots

    @classmethod
    @contextlib.contextmanager
    def open(cls, cfg: IngestConfig) -> Iterator["RunResources"]:
        """The pool and slots of one run; the pool is shut down when the run ends."""
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=cfg.run.decode_workers,
                                                      mp_context=multiprocessing.get_context("spawn"))
        # start every worker now, importing what decoding needs, while the flow lists and downloads
        # its first sources (not when the first keyframe task arrives, with a download waiting on it)
        for _ in range(cfg.run.decode_workers):
            pool.submit(warm_up_worker)
        try:
            yield cls(decode_pool=pool, model_slots=threading.BoundedSemaphore(cfg.models.max_concurrent),
                      max_models=cfg.models.max_concurrent)
        finally:
            pool.shutdown(cancel_futures=True)

    @classmethod
    def for_cluster(cls, cfg: IngestConfig) -> "RunResources":
        """Resources for tasks that run in Dask worker processes: each process's own lock and slots."""
        return cls(decode_pool=None, model_slots=None, max_models=cfg.models.max_concurrent)

    def in_process(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a decode worker process (here, under this process's CPU lock, when the run has no pool)."""
        if self.decode_pool is None:
            with process_cpu_lock():
                return fn(*args)
        return self.decode_pool.submit(fn, *args).result()

    @contextlib.contextmanager
    def model_slot(self, needed: bool) -> Iterator[None]:
        """Hold one of the run's model slots while a stage that runs a model does its work."""
        if not needed:
            yield
            return
        slots = self.model_slots if self.model_slots is not None else process_model_slots(self.max_models)
        with slots:
            yield


def warm_up_worker() -> None:
    """Import the modules of the CPU stage most runs use first (video decoding: PyAV, OpenCV, NumPy).
    A module that is missing is the stage's to report, with its own message, not this warm-up's."""
    import importlib

    for name in ("numpy", "av", "cv2", "pipeline.video.stages", "pipeline.video.keyframes"):
        try:
            importlib.import_module(name)
        except ImportError:
            return


# made at import, once in each process (functools.cache could build two under a race)
_cpu_lock = threading.Lock()
_slots_guard = threading.Lock()
_model_slots: dict[int, threading.BoundedSemaphore] = {}


def process_cpu_lock() -> threading.Lock:
    """This process's lock for CPU stages run in it (one at a time; pdfium is not thread-safe)."""
    return _cpu_lock


def process_model_slots(count: int) -> threading.BoundedSemaphore:
    """This process's ``count`` model slots (one semaphore per count, made on first use)."""
    with _slots_guard:
        return _model_slots.setdefault(count, threading.BoundedSemaphore(count))
