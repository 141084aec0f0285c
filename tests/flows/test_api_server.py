"""The command line's temporary Prefect API server (:mod:`flows.api_server`): started only when no
API is configured, never left running, and a start that fails is an error that says so. A whole
ingest through it (every task run and log recorded) is in ``test_prefect_server.py``."""

from __future__ import annotations

import time

import pytest

from flows.api_server import TemporaryAPI, TemporaryAPIError
from tests.conftest import child_processes


def api_servers() -> set[int]:
    """Prefect API servers started by this test process (uvicorn running Prefect's app)."""
    return child_processes("prefect.server.api.server:create_app")


def no_api_url(updates: dict | None = None):
    """Prefect settings without an API URL (the test session's harness sets one), plus ``updates``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates=updates or {}, restore_defaults={PREFECT_API_URL})


def test_with_an_api_configured_nothing_is_started(prefect_harness):
    before = api_servers()
    api = TemporaryAPI.start()
    try:
        assert api.url() is None  # the harness's API is the one the flow uses
        assert api_servers() == before
    finally:
        api.stop()


def test_a_server_that_does_not_answer_in_time_is_an_error_and_is_stopped(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    before = api_servers()
    with no_api_url({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: 1,
                     PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"}):
        api = TemporaryAPI.start()
    try:
        with pytest.raises(TemporaryAPIError, match="timed out waiting for the temporary Prefect API server"):
            api.url()
        assert len(api_servers() - before) == 1  # still starting: stop() ends it
    finally:
        api.stop()
    assert api_servers() == before


def test_stopping_while_the_server_starts_leaves_nothing_running(prefect_harness, tmp_path):
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    before = api_servers()
    with no_api_url({PREFECT_API_DATABASE_CONNECTION_URL: f"sqlite+aiosqlite:///{tmp_path / 'api.db'}"}):
        api = TemporaryAPI.start()
    deadline = time.monotonic() + 60
    while not (api_servers() - before) and time.monotonic() < deadline:
        time.sleep(0.05)  # until its process exists, so that stop() has something to stop
    started = time.monotonic()
    api.stop()  # a command that ends (a bad --out, say) before the server answered
    assert api.url() is None
    assert time.monotonic() - started < 10  # not a wait for the server to finish starting
    assert api_servers() == before
    api.stop()  # twice is fine
