"""Fetch stage for books: download a book URL (and an HTML book's own images), or take a local
file in place, and describe the result as a :class:`FetchedBook` saved as ``book-fetch.json``.

A book in an object store (``s3://bucket/books/fox.epub``, any fsspec URL but HTTP) is
downloaded through fsspec (:func:`pipeline.objectstore.fetch_object`), with the same retries and
size cap. Other downloads use the standard library over HTTP(S), with the video fetch's policy: transient
failures (timeouts, refused or reset connections, HTTP 408/429/5xx) are retried with exponential
backoff (``fetch.retries``, ``fetch.backoff_s``); permanent ones (404, 410, 401/403/451) fail at
once. A body larger than ``ebook.max_download_mb`` is refused while streaming, before it fills the
disk (the Content-Length is checked first when the server sends one). Files go to
``work/{source_id}/book/`` under names storyloom makes, never names the server chooses.

For an HTML page, the images it references on its own host are downloaded too and listed in
``url_map``; images on other hosts are not fetched (the HTML reader reports them). Whether a stored
``book-fetch.json`` is reused is the work directory owner's decision (:mod:`pipeline.workdir`);
:func:`read_fetched_book` refuses one whose files are gone.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import posixpath
import socket
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlparse

from pipeline.book.model import sniff_format
from pipeline.config import EbookConfig, FetchConfig
from pipeline.errors import StageError
from pipeline.network import http_status, retry
from pipeline.objectstore import fetch_object, is_store_source
from pipeline.storage import atomic_write_json, file_sha256, read_json
from pipeline.video.ytdlp import FetchError

log = logging.getLogger(__name__)

FETCH_RECORD = "book-fetch.json"
BOOK_DIR = "book"
EBOOK_CONTENT_TYPES = ("application/pdf", "application/epub+zip", "application/zip", "application/x-zip-compressed")
_EXTENSIONS = {"pdf": ".pdf", "epub": ".epub", "zip": ".zip", "html": ".html"}
_USER_AGENT = "storyloom (+https://github.com/storyloom)"


@dataclass
class FetchedBook:
    """A book ready to read: the local file, where it came from, and (HTML) its downloaded images."""

    source_id: str
    path: str  # absolute path of the book file (or the source's own file, read in place)
    url: str  # the URL, or the file:// URI of a local book
    base_url: str | None = None  # an HTML page fetched from the web: its address
    url_map: dict[str, str] = field(default_factory=dict)  # image URL -> file under the page's folder
    sha256: str | None = None  # of the book file (an HTML book: its page, not its images)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FetchedBook":
        return cls(**data)


def fetch_book(item: Any, dest_dir: Path, fetch_cfg: FetchConfig, cfg: EbookConfig) -> FetchedBook:
    """A local book as it is, or a book URL downloaded into ``dest_dir/book/``; ``book-fetch.json`` last."""
    dest_dir = Path(dest_dir).absolute()
    if item.path:
        path = Path(item.path)
        if not path.is_file():
            raise FetchError(f"local book not found: {path}", permanent=True)
        if path.stat().st_size == 0:
            raise FetchError(f"local book is empty: {path}", permanent=True)
        fetched = FetchedBook(item.source_id, str(path.absolute()), path.absolute().as_uri(), sha256=file_sha256(path))
        atomic_write_json(dest_dir / FETCH_RECORD, fetched.to_dict())
        return fetched
    url = item.url or ""
    book_dir = dest_dir / BOOK_DIR
    book_dir.mkdir(parents=True, exist_ok=True)
    partial_path = book_dir / "download.part"
    from_store = is_store_source(url)
    fetch = _download_from_store if from_store else download
    content_type = fetch(url, partial_path, fetch_cfg, cfg)
    with partial_path.open("rb") as handle:
        kind = sniff_format(handle.read(4096), urlparse(url).path)
    if kind is None and "html" in content_type:
        kind = "html"
    if kind is None:
        partial_path.unlink(missing_ok=True)
        raise FetchError(f"{url} is not a PDF, EPUB, zip or HTML book (content type {content_type or 'unknown'})",
                         permanent=True, url=url)
    path = book_dir / f"book{_EXTENSIONS[kind]}"
    partial_path.replace(path)
    fetched = FetchedBook(item.source_id, str(path), url, sha256=file_sha256(path))
    if kind == "html" and not from_store:  # a page in a store: its images are not fetched (use a zip)
        fetched.base_url = url
        fetched.url_map = _fetch_page_images(path, url, book_dir, fetch_cfg, cfg)
    atomic_write_json(dest_dir / FETCH_RECORD, fetched.to_dict())
    return fetched


def read_fetched_book(dest_dir: Path) -> FetchedBook:
    """The stored ``book-fetch.json``; raises FileNotFoundError when a file it lists is gone."""
    fetched = FetchedBook.from_dict(read_json(Path(dest_dir) / FETCH_RECORD))
    for path in [Path(fetched.path)] + [Path(fetched.path).parent / f for f in fetched.url_map.values()]:
        if not path.is_file():
            raise FileNotFoundError(f"{path} (listed in {FETCH_RECORD}) is gone")
    if not fetched.sha256:  # a record from before fetches hashed their file
        fetched.sha256 = file_sha256(Path(fetched.path))
    return fetched


def _fetch_page_images(page: Path, url: str, book_dir: Path, fetch_cfg: FetchConfig, cfg: EbookConfig) -> dict[str, str]:
    """Download the images an HTML page references on its own host; a 404 is left for the reader to report."""
    from pipeline.book.html import parse_html
    from pipeline.book.markup import IMAGE_EXTENSIONS, STYLE_URL, attr, local

    root = parse_html(page.read_bytes(), page.name)
    refs: list[str] = []
    for node in root.iter():
        tag = local(node)
        if tag in ("img", "image"):
            refs.append(attr(node, "src") or attr(node, "href") or "")
        elif tag == "a" and urlparse(attr(node, "href") or "").path.lower().endswith(IMAGE_EXTENSIONS):
            refs.append(attr(node, "href"))
        if (style := attr(node, "style")) and (found := STYLE_URL.search(style)):
            refs.append(found.group(1))
    host = urlparse(url).netloc
    url_map: dict[str, str] = {}
    for ref in dict.fromkeys(r for r in refs if r and not r.startswith("data:")):
        absolute = urljoin(url, ref).split("#")[0]
        if urlparse(absolute).netloc != host or absolute in url_map:
            continue
        suffix = posixpath.splitext(urlparse(absolute).path)[1].lower()[:8]
        name = f"files/{hashlib.sha1(absolute.encode()).hexdigest()[:16]}{suffix}"
        try:
            download(absolute, book_dir / name, fetch_cfg, cfg)
        except FetchError as err:
            if not err.permanent:
                raise
            log.info("image %s not downloaded: %s", absolute, err)
            continue
        url_map[absolute] = name
    return url_map


def download(url: str, dest: Path, fetch_cfg: FetchConfig, cfg: EbookConfig) -> str:
    """Stream ``url`` to ``dest`` with retries (:func:`pipeline.network.retry`) and the size cap;
    returns the content type. A failed attempt's partial file is deleted."""
    return retry(lambda: _download_once(url, dest, fetch_cfg, cfg), retries=fetch_cfg.retries,
                 backoff_s=fetch_cfg.backoff_s, what="download", url=url, catch=FetchError,
                 cleanup=lambda: Path(dest).unlink(missing_ok=True), logger=log)


def _download_from_store(url: str, dest: Path, fetch_cfg: FetchConfig, cfg: EbookConfig) -> str:
    """A book in an object store (``s3://...``), downloaded through fsspec with the same retries
    and size cap; there is no content type (the format is sniffed from the bytes)."""
    try:
        fetch_object(url, dest, retries=fetch_cfg.retries, backoff_s=fetch_cfg.backoff_s,
                     max_bytes=int(cfg.max_download_mb * 1_000_000))
    except StageError as err:
        raise FetchError(str(err), permanent=err.permanent, skipped=err.skipped, url=url) from err
    return ""


def _download_once(url: str, dest: Path, fetch_cfg: FetchConfig, cfg: EbookConfig) -> str:
    if urlparse(url).scheme not in ("http", "https"):
        raise FetchError(f"only http(s) book URLs can be fetched, not {url}", permanent=True, url=url)
    cap = int(cfg.max_download_mb * 1_000_000)
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(request, timeout=fetch_cfg.socket_timeout_s) as response:
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > cap:
                raise _too_large(url, int(length), cfg)
            written = 0
            with dest.open("wb") as out:
                while chunk := response.read(1 << 16):
                    written += len(chunk)
                    if written > cap:
                        raise _too_large(url, written, cfg)
                    out.write(chunk)
            if length and length.isdigit() and written < int(length):
                raise FetchError(f"network error: {url} ended after {written} of {length} bytes", permanent=False, url=url)
            return (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    except urllib.error.HTTPError as exc:
        verdict = http_status(exc.code, "book")
        raise FetchError(f"{verdict.label}: HTTP {exc.code} {exc.reason} at {url}",
                         permanent=verdict.permanent, url=url) from exc
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(f"network error: {reason} ({url})", permanent=False, url=url) from exc


def _too_large(url: str, size: int, cfg: EbookConfig) -> FetchError:
    return FetchError(f"{url} is larger than ebook.max_download_mb={cfg.max_download_mb:g} "
                      f"({size / 1e6:.1f} MB and counting)", permanent=True, skipped=True, url=url)


def content_kind(url: str, fetch_cfg: FetchConfig) -> str | None:
    """"ebook" when a HEAD request says the URL serves a PDF, EPUB or zip; None otherwise or on error."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=fetch_cfg.socket_timeout_s) as response:
            kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError):
        return None
    return "ebook" if kind in EBOOK_CONTENT_TYPES else None
