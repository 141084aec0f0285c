"""What the stage tasks of one flow run share, handed to every task explicitly (no module globals).

- A process pool of ``run.decode_workers`` processes for the CPU-bound stages (keyframe decoding,
  book parsing), so they are not serialised by the GIL; ``spawn``, so a worker never inherits a
  half-initialised model or a thread's lock.
- ``models.max_concurrent`` model slots: the stages that run a model (ASR in text, CLIP and
  captions in assemble) hold one while they run, so memory stays bounded however many sources are
  in flight. The models themselves are loaded once per process (:mod:`pipeline.models.loading`).
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
    decode_pool: concurrent.futures.Executor | None
    model_slots: threading.BoundedSemaphore

    @classmethod
    @contextlib.contextmanager
    def open(cls, cfg: IngestConfig) -> Iterator["RunResources"]:
        """The pool and slots of one run; the pool is shut down when the run ends."""
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=cfg.run.decode_workers,
                                                      mp_context=multiprocessing.get_context("spawn"))
        try:
            yield cls(decode_pool=pool, model_slots=threading.BoundedSemaphore(cfg.models.max_concurrent))
        finally:
            pool.shutdown(cancel_futures=True)

    def in_process(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a decode worker process (here, when the run has no pool)."""
        if self.decode_pool is None:
            return fn(*args)
        return self.decode_pool.submit(fn, *args).result()

    @contextlib.contextmanager
    def model_slot(self, needed: bool) -> Iterator[None]:
        """Hold one of the run's model slots while a stage that runs a model does its work."""
        if not needed:
            yield
            return
        with self.model_slots:
            yield
