"""Network failure policy shared by every fetcher: which HTTP statuses are worth retrying, how a
failed status is worded for users, and the one retry loop with exponential backoff.

Both the video fetch (yt-dlp, :mod:`pipeline.video.ytdlp`) and the book download (urllib,
:mod:`pipeline.book.fetch`) use it, so a status is treated the same whatever kind of source it
came from:

- :func:`http_status` is the one table: HTTP 408, 429 and every 5xx are transient (a later try
  may work); every other status is permanent. 401/403/451 are worded "access denied", other
  permanent ones "<thing> unavailable", transient ones "server error".
- :func:`retry` runs a call; a failure that comes out as a :class:`~pipeline.errors.StageError`
  (raised by the call, or made from the caught exception by ``classify``) is retried while it is
  not ``permanent``, at most ``retries`` times, waiting ``backoff_s`` and doubling it each time.
  A permanent error is raised at once; a transient one that outlasts the retries is raised with
  " (gave up after N attempts)" added to its message.

Standard library only: importing it costs nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, NamedTuple, TypeVar

from pipeline.errors import StageError

log = logging.getLogger(__name__)
T = TypeVar("T")

ACCESS_DENIED_STATUSES = frozenset({401, 403, 451})


class HttpVerdict(NamedTuple):
    """What an HTTP error status means for a fetch: retry or not, and the words for users."""

    permanent: bool
    label: str  # "server error", "access denied" or "<thing> unavailable"


def is_transient_status(status: int) -> bool:
    """True for the statuses a later try may get past: 408, 429 and every 5xx."""
    return status in (408, 429) or 500 <= status <= 599


def http_status(status: int, thing: str) -> HttpVerdict:
    """The verdict on an HTTP error ``status`` while fetching a ``thing`` ("video", "book")."""
    if is_transient_status(status):
        return HttpVerdict(False, "server error")
    if status in ACCESS_DENIED_STATUSES:
        return HttpVerdict(True, "access denied")
    return HttpVerdict(True, f"{thing} unavailable")


def retry(call: Callable[[], T], *, retries: int, backoff_s: float, what: str, url: str,
          catch: type[BaseException] | tuple[type[BaseException], ...] = StageError,
          classify: Callable[[BaseException], StageError] | None = None,
          cleanup: Callable[[], object] | None = None,
          logger: logging.Logger | None = None) -> T:
    """Run ``call``, retrying transient failures with exponential backoff; its result.

    ``catch``: the exceptions that count as a failed attempt (anything else propagates at once).
    ``classify``: turns a caught exception into the StageError to judge and raise (chained to
    it); without it the caught exception must itself be a StageError and is re-raised as is.
    ``cleanup``: called after every failed attempt, the last one included (a partial file).
    Retry ``n`` (1-based) waits ``backoff_s * 2**(n-1)``; each one logs a line at INFO on
    ``logger`` (this module's by default) naming ``what`` and ``url``.
    """
    logger = logger or log
    attempt = 0
    while True:
        try:
            return call()
        except catch as exc:
            if cleanup is not None:
                cleanup()
            err = classify(exc) if classify is not None else exc
            if not isinstance(err, StageError):
                raise TypeError(f"retry: {type(exc).__name__} is not a StageError; pass classify") from exc
            if err.permanent or attempt >= retries:
                if not err.permanent and attempt:
                    err.message += f" (gave up after {attempt + 1} attempts)"
                if err is exc:
                    raise
                raise err from exc
            delay = backoff_s * 2**attempt
            attempt += 1
            logger.info("%s %s failed (%s); retry %d/%d in %.1f s", what, url, err, attempt, retries, delay)
            time.sleep(delay)
