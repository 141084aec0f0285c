"""Prefect's temporary API server, started as soon as a command knows it will run a flow.

Without ``PREFECT_API_URL`` Prefect starts a temporary API server when a flow first needs its
client, and the flow waits for it: Prefect imports its whole server application into the flow's
process just to find the command that starts it (``prefect.server.api.server``: ~3.4 CPU-s here),
then starts that application in a subprocess and polls it until it answers (~4 s with an existing
database, ~14 s on a fresh ``PREFECT_HOME``, where it creates the database). All that time the
flow has not started and one core is idle: in a 200-source ingest on 2 cores, 23 of the run's 33
idle core-seconds were this start (bench/scale_ingest.py).

:class:`TemporaryAPI` starts the very same server (the command, environment and health check of
``prefect.server.api.server.SubprocessASGIServer``, Prefect 3.8) from a background thread as
soon as the command has checked its arguments, and hands its address to the flow as
``PREFECT_API_URL``: the command's own imports and checks, and the flow's set-up, run while the
server starts, and the flow's process never imports the server. It is stopped when the command
ends (SIGTERM, as Prefect does: the server writes its last batch of task-run records). With
``PREFECT_API_URL`` set (a real ``prefect server start``), or the temporary server disabled,
nothing is started and Prefect behaves as it always does.

Dask workers get the address with the rest of the flow's settings: they report to this server
instead of starting one each (which would be tens of seconds per worker on the same SQLite file).

This module imports nothing from Prefect at import time: the command line imports it first.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Optional

log = logging.getLogger(__name__)

# uvicorn's exit status when the app could not start: its port taken meanwhile, or a start-up error
# (Prefect's own start tries another port then, and so does this one)
_STARTUP_FAILED = 3
_START_ATTEMPTS = 3


class TemporaryAPIError(RuntimeError):
    """The temporary Prefect API server did not start (its exit status, or the time waited)."""


class TemporaryAPI:
    """A Prefect API server for one command, started in the background (:meth:`start`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stopped = False
        self._process: Optional[subprocess.Popen] = None
        self._thread: Optional[threading.Thread] = None
        self._url: Optional[str] = None
        self._error: Optional[BaseException] = None

    @classmethod
    def start(cls) -> "TemporaryAPI":
        """Decide from Prefect's settings (here, in the caller's context: a test harness's API or a
        profile counts) and, when no API is configured, start the server from a daemon thread.

        Everything Prefect is imported here, before the thread starts: the thread only runs the
        process and polls it, so it never imports a module while the command imports others
        (two threads importing the same packages can deadlock on their module locks).
        """
        import prefect
        from prefect.settings import get_current_settings

        api = cls()
        settings = get_current_settings()
        if settings.api.url or not settings.server.ephemeral.enabled:
            return api  # a configured API, or none allowed: Prefect's own behaviour (and its own error)
        env = {**os.environ, **settings.to_environment_variables(exclude_unset=True),
               # as SubprocessASGIServer: no UI, the app treated as a temporary one
               "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        deadline = time.monotonic() + settings.server.ephemeral.startup_timeout_seconds
        app_dir = str(prefect.__module_path__.parent)
        api._thread = threading.Thread(target=api._run, args=(env, deadline, app_dir), name="storyloom-prefect-api",
                                       daemon=True)
        api._thread.start()
        return api

    def url(self) -> Optional[str]:
        """The server's API address once it answers; None when the command uses a configured API
        (or Prefect's own). Raises :class:`TemporaryAPIError` when the server could not start."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        return self._url

    def stop(self) -> None:
        """Stop the server (if it was started; safe to call more than once, and while it starts)."""
        with self._lock:
            self._stopped = True
            process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # ------------------------------------------------------------------ the background thread

    def _run(self, env: dict, deadline: float, app_dir: str) -> None:
        try:
            self._url = self._start_server(env, deadline, app_dir)
        except BaseException as error:  # noqa: BLE001 - handed to the thread that needs the server
            self._error = error

    def _start_server(self, env: dict, deadline: float, app_dir: str) -> Optional[str]:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            command = [sys.executable, "-m", "uvicorn", "--app-dir", app_dir,
                       "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                       "--port", str(port), "--log-level", "error", "--lifespan", "on"]
            with self._lock:
                if self._stopped:
                    return None
                self._process = process = subprocess.Popen(command, env=env)
            api_url = f"http://127.0.0.1:{port}/api"
            log.debug("starting a temporary Prefect API server on %s", api_url)
            status = _wait_until_healthy(process, api_url, deadline, lambda: self._stopped)
            if self._stopped:
                return None
            if status is None:
                return api_url
            if status != _STARTUP_FAILED:
                break
        raise TemporaryAPIError(f"the temporary Prefect API server exited with status {status} while starting "
                                f"(tried {attempt} time(s)); see its output above, or run `prefect server start` "
                                "and set PREFECT_API_URL")


def _wait_until_healthy(process: subprocess.Popen, api_url: str, deadline: float, stopped) -> Optional[int]:
    """None once ``GET /health`` answers 200; the exit status if the server exits first."""
    while True:
        status = process.poll()
        if status is not None:
            return status
        if stopped():
            return None  # the command is ending: stop() has the process
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return None
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        if time.monotonic() >= deadline:
            raise TemporaryAPIError(f"timed out waiting for the temporary Prefect API server on {api_url} to start "
                                    "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); or run `prefect server "
                                    "start` and set PREFECT_API_URL")
        time.sleep(0.1)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
