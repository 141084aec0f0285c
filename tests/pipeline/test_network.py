"""The shared network policy: the one HTTP status table, the one retry loop (delays, attempt
count, permanent errors, classify, cleanup), and a book download against a loopback server."""

from __future__ import annotations

import http.server
import logging
import threading

import pytest

from pipeline.config import EbookConfig, FetchConfig
from pipeline.errors import StageError
from pipeline.network import http_status, is_transient_status, retry

TABLE = [  # status, permanent, label
    (400, True, "book unavailable"), (401, True, "access denied"), (402, True, "book unavailable"),
    (403, True, "access denied"), (404, True, "book unavailable"), (405, True, "book unavailable"),
    (408, False, "server error"), (410, True, "book unavailable"), (418, True, "book unavailable"),
    (429, False, "server error"), (451, True, "access denied"), (500, False, "server error"),
    (502, False, "server error"), (503, False, "server error"),
]


@pytest.mark.parametrize("status, permanent, label", TABLE)
def test_status_table(status, permanent, label):
    assert http_status(status, "book") == (permanent, label)
    assert http_status(status, "book").permanent is permanent and is_transient_status(status) is not permanent
    assert http_status(status, "video").label == label.replace("book", "video")


def test_every_5xx_is_transient():
    assert all(not http_status(s, "x").permanent for s in range(500, 600))


class Flaky:
    """A call that raises the given errors in turn, then returns "done"; counts its calls."""

    def __init__(self, *errors: BaseException):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The delays the retry loop waits, recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr("pipeline.network.time.sleep", delays.append)
    return delays


def transient(text: str = "server error: HTTP 503") -> StageError:
    return StageError(text, permanent=False)


def test_transient_error_is_retried_exactly_retries_times(sleeps, caplog):
    call = Flaky(*[transient() for _ in range(10)])
    with caplog.at_level(logging.INFO, logger="pipeline.network"):
        with pytest.raises(StageError) as err:
            retry(call, retries=3, backoff_s=0.5, what="download", url="http://h/x")
    assert call.calls == 4 and sleeps == [0.5, 1.0, 2.0]
    assert not err.value.permanent
    assert str(err.value) == "server error: HTTP 503 (gave up after 4 attempts)"
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.network"]
    assert lines == [f"download http://h/x failed (server error: HTTP 503); retry {n}/3 in {d:.1f} s"
                     for n, d in [(1, 0.5), (2, 1.0), (3, 2.0)]]


def test_success_after_transient_errors(sleeps):
    call = Flaky(transient(), transient())
    assert retry(call, retries=3, backoff_s=0.25, what="probe", url="u") == "done"
    assert call.calls == 3 and sleeps == [0.25, 0.5]


def test_permanent_error_stops_at_once(sleeps):
    error = StageError("book unavailable: HTTP 404", permanent=True)
    call = Flaky(error, transient())
    with pytest.raises(StageError) as err:
        retry(call, retries=3, backoff_s=0.5, what="download", url="u")
    assert err.value is error and str(err.value) == "book unavailable: HTTP 404"  # no attempt count
    assert call.calls == 1 and sleeps == []


def test_no_retries_means_one_attempt_and_no_count(sleeps):
    call = Flaky(transient())
    with pytest.raises(StageError, match=r"^server error: HTTP 503$"):
        retry(call, retries=0, backoff_s=1.0, what="download", url="u")
    assert call.calls == 1 and sleeps == []


def test_classify_turns_caught_exceptions_into_stage_errors(sleeps):
    cleaned: list[int] = []

    def classify(exc: BaseException) -> StageError:
        return StageError(f"network error: {exc}", permanent=isinstance(exc, LookupError))

    call = Flaky(ConnectionError("reset"), ConnectionError("reset"))
    assert retry(call, retries=2, backoff_s=0.1, what="w", url="u", catch=(ConnectionError, LookupError),
                 classify=classify, cleanup=lambda: cleaned.append(call.calls)) == "done"
    assert call.calls == 3 and sleeps == [0.1, 0.2] and cleaned == [1, 2]  # cleanup after each failed attempt

    original = KeyError("gone")
    with pytest.raises(StageError, match="network error: 'gone'") as err:
        retry(Flaky(original), retries=2, backoff_s=0.1, what="w", url="u", catch=(ConnectionError, LookupError),
              classify=classify, cleanup=lambda: cleaned.append(-1))
    assert err.value.permanent and err.value.__cause__ is original and cleaned[-1] == -1
    with pytest.raises(ValueError):  # not caught: propagates untouched, never retried
        retry(Flaky(ValueError("bug")), retries=2, backoff_s=0.1, what="w", url="u", catch=ConnectionError,
              classify=classify)
    assert sleeps == [0.1, 0.2]


# --------------------------------------------------------------------------- loopback book download


class ScriptedServer:
    """Loopback HTTP server: each path answers the scripted error statuses in turn, then 200 with a body."""

    def __init__(self) -> None:
        self.script: dict[str, list[int]] = {}
        self.counts: dict[str, int] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
                pass

            def do_GET(self):
                server.counts[self.path] = server.counts.get(self.path, 0) + 1
                statuses = server.script.get(self.path) or []
                if statuses:
                    self.send_error(statuses.pop(0))
                    return
                body = b"%PDF-1.4 a tiny book\n"
                self.send_response(200)
                self.send_header("Content-Type", "application/pdf")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def scripted():
    server = ScriptedServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def test_book_download_retries_503_then_succeeds(scripted, sleeps, tmp_path):
    from pipeline.book.fetch import download

    scripted.script["/book.pdf"] = [503, 503]
    dest = tmp_path / "download.part"
    kind = download(scripted.url("/book.pdf"), dest, FetchConfig(retries=3, backoff_s=0.5, socket_timeout_s=5),
                    EbookConfig())
    assert kind == "application/pdf" and dest.read_bytes().startswith(b"%PDF")
    assert scripted.counts["/book.pdf"] == 3 and sleeps == [0.5, 1.0]  # two retries


def test_book_download_402_fails_at_once(scripted, sleeps, tmp_path):
    from pipeline.book.fetch import FetchError, download

    scripted.script["/paid.pdf"] = [402]
    dest = tmp_path / "download.part"
    with pytest.raises(FetchError, match=r"^book unavailable: HTTP 402 ") as err:
        download(scripted.url("/paid.pdf"), dest, FetchConfig(retries=3, backoff_s=0.5, socket_timeout_s=5),
                 EbookConfig())
    assert err.value.permanent and not err.value.skipped and err.value.url == scripted.url("/paid.pdf")
    assert scripted.counts["/paid.pdf"] == 1 and sleeps == [] and not dest.exists()
