"""Shared test fixtures: a real HTTP server on 127.0.0.1 serving a temp directory."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

# Before anything imports torchvision (open_clip, transformers, diffusers): see torch_compat.
try:
    from pipeline.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
except ImportError:  # the core install has no torch: model tests skip themselves
    pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
        pass


class StaticServer:
    """Serves ``root`` over HTTP on loopback; ``url(name)`` gives the address of a file."""

    def __init__(self, root: Path):
        self.root = Path(root)
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, name: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    server = StaticServer(root)
    yield server
    server.close()


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API (SQLite) shared by every flow test of the session."""
    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.settings import get_current_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(get_current_settings().api.url)
