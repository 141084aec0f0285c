"""Where the tasks of a flow run: ``run.executor`` -> a Prefect task runner.

- ``local``: a thread pool in the flow's process (stage tasks wait for their upstream task in a
  thread; CPU stages go to the run's process pool, :class:`flows.resources.RunResources`).
- ``dask``: Prefect's own Dask integration, ``prefect_dask.DaskTaskRunner``. With
  ``run.dask_address`` the tasks go to that existing scheduler (``dask scheduler`` and
  ``dask worker ADDRESS --nthreads 2`` on any number of machines); without it a
  ``distributed.LocalCluster`` of ``run.dask_workers`` worker processes of two threads each is
  started for the run and closed after it. Each source is one task there
  (:func:`flows.common.whole_source`: a task run on a worker costs more than a stage), two per
  worker thread in flight (:func:`dask_lanes`); in a worker, CPU stages take the process's CPU
  lock, so with two threads one source downloads while another decodes. Dask sends a task again
  when the worker running it dies.

Every worker must see the run's output directory at the same path (on one machine it does; on
several, a shared filesystem) and reach the Prefect API the flow uses (``PREFECT_API_URL``; without
one, the command line's temporary server on 127.0.0.1, :mod:`flows.api_server`, which workers on
this machine only can reach).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from pipeline.config import ConfigError, IngestConfig

log = logging.getLogger(__name__)


def check_executor(cfg: IngestConfig) -> None:
    """Raise :class:`ConfigError` when the run's executor cannot be used (before any work): Dask
    not installed, or no scheduler answering at ``run.dask_address``."""
    if cfg.run.executor != "dask":
        return
    try:
        import distributed
        import prefect_dask  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"run.executor is dask but {exc.name or 'prefect-dask'} is not installed: "
                          "pip install 'storyloom[dask]' (prefect-dask), or use run.executor: local") from exc
    if not cfg.run.dask_address:
        return
    try:  # waits up to Dask's connect timeout (distributed.comm.timeouts.connect, 30s by default)
        with distributed.Client(cfg.run.dask_address, set_as_default=False) as client:
            workers = client.scheduler_info(n_workers=-1)["workers"]
    except (OSError, TimeoutError) as exc:
        raise ConfigError(f"run.dask_address: no Dask scheduler answers at {cfg.run.dask_address} ({exc}); start "
                          "one with `dask scheduler` and workers with `dask worker ADDRESS --nthreads 2`") from exc
    threads = sorted({info.get("nthreads", 1) for info in workers.values()})
    log.info("Dask scheduler %s: %d worker(s) (threads per worker: %s)", cfg.run.dask_address, len(workers),
             ", ".join(map(str, threads)) or "-")
    if not workers:
        log.warning("the Dask scheduler at %s has no workers yet: the run waits until `dask worker %s` joins",
                    cfg.run.dask_address, cfg.run.dask_address)


def local_cluster_workers(cfg: IngestConfig) -> int:
    """Worker processes of the local cluster started when no address is given (0: one per core)."""
    return cfg.run.dask_workers or os.cpu_count() or 1


LOCAL_CLUSTER_THREADS = 2  # per worker process of a run's own cluster: one source downloads while one decodes


def dask_lanes(cfg: IngestConfig) -> tuple[dict[str, int], int]:
    """Lanes and sources in flight on Dask, where a source is one task (:func:`flows.common.whole_source`):
    ``run.max_sources_in_flight``, or when 0 two per worker thread of the cluster (one running,
    one queued), so that a bigger cluster gets more sources at once; never fewer than a local run
    would have (a scheduler whose workers join after the start counts none yet)."""
    in_flight = cfg.run.max_sources_in_flight or max(2 * cluster_threads(cfg), cfg.run.sources_in_flight())
    return {"source": in_flight}, in_flight


def cluster_threads(cfg: IngestConfig) -> int:
    """Worker threads of the cluster the run uses (its own local cluster's, or the scheduler's now)."""
    if not cfg.run.dask_address:
        return local_cluster_workers(cfg) * LOCAL_CLUSTER_THREADS
    import distributed

    with distributed.Client(cfg.run.dask_address, set_as_default=False) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"]
    return sum(info.get("nthreads", 1) for info in workers.values())


def task_runner(cfg: IngestConfig) -> Any:
    """The Prefect task runner for ``cfg.run`` (see the module docstring)."""
    if cfg.run.executor == "dask":
        from prefect_dask import DaskTaskRunner

        if cfg.run.dask_address:
            _warn_if_api_is_local(cfg.run.dask_address)
            return DaskTaskRunner(address=cfg.run.dask_address)
        return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
            "n_workers": local_cluster_workers(cfg), "threads_per_worker": LOCAL_CLUSTER_THREADS, "processes": True,
            "dashboard_address": ":0",  # a free port: two runs on one machine do not collide
        })
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=task_threads(cfg))  # every step that may run at once


def task_threads(cfg: IngestConfig) -> int:
    """The task runner's threads: one per step that may run at once, and the listings ahead."""
    return sum(stage_lanes(cfg).values()) + cfg.run.download_workers


def stage_lanes(cfg: IngestConfig) -> dict[str, int]:
    """How many steps of each lane run at once (:mod:`flows.inflight`): downloads; process-pool
    stages, one more per worker queued so no worker waits; flow-process stages."""
    return {"download": cfg.run.download_workers, "decode": 2 * cfg.run.decode_workers, "host": cfg.run.decode_workers}


def _warn_if_api_is_local(address: str) -> None:
    """Workers on other machines report to the Prefect API the flow uses: a loopback one is out of their reach."""
    host = urlsplit(address if "://" in address else f"tcp://{address}").hostname or ""
    if _is_loopback(host):
        return
    from prefect.settings import get_current_settings

    api = get_current_settings().api.url or ""  # the environment or the active Prefect profile
    if not api:
        log.warning("run.dask_address %s is not on this machine but PREFECT_API_URL is not set: the run uses a "
                    "temporary Prefect API on 127.0.0.1 that workers on other machines cannot reach. Start "
                    "`prefect server start --host 0.0.0.0` and set PREFECT_API_URL=http://THIS-HOST:4200/api", address)
    elif _is_loopback(urlsplit(api).hostname or ""):
        log.warning("PREFECT_API_URL %s is a loopback address: Dask workers on other machines cannot reach it", api)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
