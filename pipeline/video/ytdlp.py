"""yt-dlp plumbing shared by the sources and fetch stages: the error type and how yt-dlp's
exceptions map onto it, the retry loop, the logging adapter, and the common options.

:class:`FetchError` is the one error a source-level failure comes out as: ``permanent`` ones
(HTTP 404/410/403, removed or private videos, unsupported pages, policy skips) are never retried;
transient ones (timeouts, resets, refused connections, HTTP 5xx/429) are retried by
:func:`with_retries` with exponential backoff, on top of yt-dlp's own ``retries``. yt-dlp never
prints: its messages go to the ``pipeline.video.ytdlp`` logger (chatter at DEBUG, warnings at INFO).
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import re
import threading
from typing import Any, Callable, TypeVar

from pipeline.config import FetchConfig
from pipeline.errors import StageError
from pipeline.network import http_status, is_transient_status, retry
from pipeline.video.ffmpeg import find_ffmpeg

log = logging.getLogger(__name__)
T = TypeVar("T")
# words of a transient failure in an unclassified message; "HTTP Error NNN" is judged by pipeline.network's table
_TRANSIENT_TEXT = re.compile(r"timed? ?out|connection (?:reset|refused|aborted)|temporar|try again later|"
                             r"IncompleteRead|bytes read", re.I)
_HTTP_ERROR_TEXT = re.compile(r"HTTP Error (\d{3})", re.I)


class FetchError(StageError):
    """A source could not be fetched (or listed); ``skipped`` marks policy skips."""

    def __init__(self, message: str, *, permanent: bool | None = None, skipped: bool = False, url: str | None = None):
        super().__init__(message, permanent=permanent, skipped=skipped)
        self.url = url
        self.subtitle_only = False  # only a subtitle download failed (the video may be fine)


class YtDlpLogger(logging.LoggerAdapter):
    """yt-dlp's ``logger`` param: its chatter at DEBUG, warnings and errors at INFO (errors
    reach the caller as FetchError); remembers recent lines to explain silent failures."""

    def __init__(self, source_id: str):
        super().__init__(log, {"source_id": source_id})
        self.recent: collections.deque[str] = collections.deque(maxlen=50)

    def process(self, msg: Any, kwargs: Any) -> tuple[str, Any]:
        return f"[{self.extra['source_id']}] {msg}", kwargs

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.recent.append(str(msg))
        super().debug(msg, *args, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.recent.append(str(msg))
        super().info(f"yt-dlp warning: {msg}", *args, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self.recent.append(str(msg))
        super().info(f"yt-dlp error: {msg}", *args, **kwargs)


def ydl_params(cfg: FetchConfig, logger: YtDlpLogger, **extra: Any) -> dict[str, Any]:
    """yt-dlp options every call shares (quiet, no cache in ~, timeouts, retries, format choice)."""

    def sleep(n: int) -> float:
        return cfg.backoff_s * 2**n

    params = {
        "logger": logger, "quiet": True, "noprogress": True, "color": {"stdout": "no_color", "stderr": "no_color"},
        # with noprogress yt-dlp still formats every progress line (two output templates, ~0.5 ms)
        # and drops it; a delta of an hour skips that for all but the final line of a download
        "progress_delta": 3600,
        "cachedir": cfg.cache_dir or False, "socket_timeout": cfg.socket_timeout_s,
        "retries": cfg.retries, "fragment_retries": cfg.retries, "extractor_retries": cfg.retries,
        "retry_sleep_functions": {"http": sleep, "fragment": sleep, "extractor": sleep},
        "noplaylist": True, "extract_flat": "in_playlist",
        # best stream at or below max_height, else the smallest above it; h264/mp4 when it is a tie
        "format": "bv*+ba/b", "format_sort": [f"res:{cfg.max_height}", "vcodec:h264", "ext:mp4:m4a"],
        "merge_output_format": "mp4", "ffmpeg_location": find_ffmpeg(cfg.ffmpeg),
    }
    if cfg.cookies_file:
        params["cookiefile"] = cfg.cookies_file
    params.update(extra)
    return params


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and everything yt-dlp wrapped inside it, outermost first."""
    out: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop(0)
        if not isinstance(e, BaseException) or any(e is seen for seen in out):
            continue
        out.append(e)
        exc_info = getattr(e, "exc_info", None)
        todo += [exc_info[1] if isinstance(exc_info, tuple) else None, getattr(e, "cause", None),
                 e.__cause__, e.__context__]
    return out


def _clean(message: str) -> str:
    message = re.sub(r"^(?:ERROR: )?(?:\[[\w:]+\] )?(?:[^:\s]+: )?", "", message.strip(), count=1)
    message = re.sub(r" \(caused by .*$|;? ?please report this issue.*$", "", message, flags=re.S)
    return message.strip()


def classify(exc: BaseException, url: str) -> FetchError:
    """Turn a yt-dlp exception into a FetchError that says whether a retry can help."""
    err = _classify(exc, url)
    if "Unable to download video subtitles" in str(exc):
        err.message = "subtitle download failed: " + err.message.removeprefix("video unavailable: ")
        err.subtitle_only = True
    return err


def _classify(exc: BaseException, url: str) -> FetchError:
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import ContentTooShortError, ExtractorError, UnsupportedError

    chain = _chain(exc)
    for e in chain:
        if isinstance(e, HTTPError):
            where = getattr(e.response, "url", None) or url
            verdict = http_status(e.status, "video")
            return FetchError(f"{verdict.label}: HTTP {e.status} {e.reason} at {where}",
                              permanent=verdict.permanent, url=url)
        if isinstance(e, UnsupportedError):
            return FetchError(f"no video found on the page {e.url}", permanent=True, url=url)
        if isinstance(e, (TransportError, ContentTooShortError, TimeoutError, ConnectionError)):
            return FetchError(f"network error: {_clean(str(e))} ({url})", permanent=False, url=url)
    for e in chain:
        if isinstance(e, ExtractorError):
            return FetchError(f"{_clean(e.orig_msg)} ({url})", permanent=True, url=url)
    message = _clean(str(exc))
    transient = bool(_TRANSIENT_TEXT.search(message)) or any(
        is_transient_status(int(status)) for status in _HTTP_ERROR_TEXT.findall(message))
    return FetchError(f"{message} ({url})", permanent=not transient, url=url)


def with_retries(call: Callable[[], T], cfg: FetchConfig, what: str, url: str) -> T:
    """Run ``call``; retry transient yt-dlp failures with exponential backoff, never permanent ones
    (:func:`pipeline.network.retry`; a FetchError the call raises itself propagates as it is)."""
    from yt_dlp.utils import YoutubeDLError

    return retry(call, retries=cfg.retries, backoff_s=cfg.backoff_s, what=what, url=url,
                 catch=YoutubeDLError, classify=lambda exc: classify(exc, url), logger=log)


def open_ydl(params: dict[str, Any]) -> Any:
    """``yt_dlp.YoutubeDL(params)``, without the cost of building its extractor list every time.

    A new YoutubeDL matches the names of its ~1,900 extractors against ``allowed_extractors``
    (regular expressions) each time it is made: about 0.2 s of CPU, made three times per source
    (listing, probe, download), more than decoding a short video. The default list (no
    ``allowed_extractors`` given, as :func:`ydl_params` never gives one) is the same every time, so
    it is computed once per process and handed over; extractors are classes until first used, and
    the one instance in the list (``UnsupportedURLIE``) is made anew for each YoutubeDL.
    """
    _share_ssl_contexts()
    if "allowed_extractors" in params:
        return _quiet_youtube_dl()(params)
    ydl = _quiet_youtube_dl()(params, auto_init=False)
    for extractor in _default_extractors():
        ydl.add_info_extractor(extractor if isinstance(extractor, type) else type(extractor)())
    return ydl


@functools.lru_cache(maxsize=1)
def _quiet_youtube_dl() -> type:
    """``yt_dlp.YoutubeDL`` that renders ``--print`` templates only when one is asked for.

    Before and after every processing step (about ten per source: listing, pre-processing, each
    download, each post-processor) YoutubeDL's ``_forceprint`` renders the formats, thumbnails and
    subtitles tables and the output file name into a copy of the info dict for the ``--print``
    and ``--print-to-file`` templates, even when there are none: ~15 ms of CPU per source, 3% of
    decoding a short video. storyloom never sets either option unless a caller passes them; when
    one is set, yt-dlp's own method runs unchanged.
    """
    import yt_dlp

    class QuietYoutubeDL(yt_dlp.YoutubeDL):
        def _forceprint(self, key, info_dict):
            params = self.params
            if (params.get("forceprint", {}).get(key) or params.get("print_to_file", {}).get(key)
                    or any(params.get(name) for name in _LEGACY_PRINTS)):
                return super()._forceprint(key, info_dict)
            # the caller reads the copy only for the legacy options above
            return None if info_dict is None else dict(info_dict)

    return QuietYoutubeDL


# the old --get-title ... options: printed from the copy _forceprint returns
_LEGACY_PRINTS = ("forcetitle", "forceid", "forceurl", "forcethumbnail", "forcedescription", "forcefilename",
                  "forceduration", "forceformat")


@functools.lru_cache(maxsize=1)
def _share_ssl_contexts() -> None:
    """Let every YoutubeDL of this process share its SSL contexts.

    Each YoutubeDL's request handler builds a new ``ssl.SSLContext`` on its first request, loading
    the ~150 certifi CA certificates: about 30 ms of CPU, twice per source (listing, download),
    a tenth of what decoding a short video costs. A context depends only on the keyword arguments
    yt-dlp passes (verify, legacy support, certifi or system store, client certificate) and the
    SSLKEYLOGFILE variable it reads, and is not changed once made (contexts are shared between
    connections and threads by design), so one per distinct set is made and reused. If yt-dlp
    stops making contexts through ``networking.common.make_ssl_context``, nothing is changed.
    """
    from yt_dlp.networking import common

    make = getattr(common, "make_ssl_context", None)
    if make is None:
        return
    made: dict[tuple, Any] = {}
    lock = threading.Lock()

    @functools.wraps(make)
    def shared_ssl_context(*args: Any, **kwargs: Any) -> Any:
        if args:  # not the keyword-only call this was written for: no sharing
            return make(*args, **kwargs)
        key = (tuple(sorted(kwargs.items())), os.environ.get("SSLKEYLOGFILE"))
        with lock:
            if key not in made:
                made[key] = make(**kwargs)
            return made[key]

    common.make_ssl_context = shared_ssl_context


@functools.lru_cache(maxsize=1)
def _default_extractors() -> tuple[Any, ...]:
    import yt_dlp

    with yt_dlp.YoutubeDL({"quiet": True, "no_warnings": True}) as ydl:
        return tuple(ydl._ies.values())  # noqa: SLF001 - the list add_default_info_extractors made, in its order


def extract_flat(url: str, cfg: FetchConfig, limit: int | None = None) -> dict[str, Any]:
    """yt-dlp's flat listing of a URL (playlist entries as references), at most ``limit`` entries."""
    logger = YtDlpLogger("expand")
    params = ydl_params(cfg, logger, noplaylist=False, playlistend=limit)

    def run() -> dict[str, Any]:
        with open_ydl(params) as ydl:
            return ydl.extract_info(url, download=False, ie_key=extractor_key(url)) or {}

    return with_retries(run, cfg, "listing", url)


@functools.lru_cache(maxsize=4096)
def extractor_for(url: str) -> Any | None:
    """yt-dlp's extractor class for ``url`` (not the generic one), or None: the first that fits of the
    list every YoutubeDL of :func:`open_ydl` holds, in its order; a scan of ~1,900 URL patterns
    (~15 ms of CPU), asked several times per entry (its kind, its id, its listing), so remembered."""
    for ie in _specific_extractors():
        if ie.suitable(url):
            return ie if isinstance(ie, type) else type(ie)
    return None


@functools.lru_cache(maxsize=1)
def _specific_extractors() -> tuple[Any, ...]:
    """:func:`_default_extractors` without the generic one (its key looked up once, not per URL and extractor)."""
    return tuple(ie for ie in _default_extractors() if ie.ie_key() != "Generic")


def extractor_key(url: str) -> str:
    """The key of the extractor yt-dlp would choose for ``url``, to hand to ``extract_info``: it
    would otherwise scan the same list (:func:`extractor_for`) again and take the first that
    fits, Generic last."""
    ie = extractor_for(url)
    return ie.ie_key() if ie is not None else "Generic"
