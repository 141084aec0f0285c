"""The sources file: parse and validate it, expand its entries into downloadable items, and
decide from a source's metadata whether policy lets it in (licence allow-list, max duration).

``load_sources`` reads the YAML format of ``pipeline/docs/contracts.md`` and raises
:class:`SourcesError` for anything wrong with it, before any work starts. ``expand_entry`` turns one entry into
:class:`SourceItem` s: single videos, e-books and local files pass through without touching the
network; playlists, channels, searches and pages of unknown kind are listed with yt-dlp's flat
extraction. Failures there (a removed playlist, a dead host) are per-entry data: they raise
:class:`pipeline.video.ytdlp.FetchError` for the caller to record, never crash the run.

Values under ``defaults`` apply to every entry exactly as if written there, so a ``license``
or ``language`` given there (or in the entry) wins over what the site reports.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from pipeline.objectstore import is_store_source, local_path, store_identity, url_scheme
from pipeline.output.contract import make_story_id
from pipeline.video.ytdlp import FetchError, extract_flat, extractor_for

KINDS = ("video", "playlist", "channel", "search", "ebook")
LICENSES = ("CC-BY", "CC-BY-SA", "CC-BY-NC", "CC-BY-NC-SA", "CC-BY-ND", "CC-BY-NC-ND", "CC0", "public-domain")
EBOOK_EXTENSIONS = (".pdf", ".epub", ".htm", ".html", ".zip")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".ts", ".m3u8", ".mpd", ".flv", ".ogv")
_ENTRY_KEYS = ("url", "path", "kind", "license", "language", "title", "tags", "limit")
_DEFAULT_KEYS = tuple(k for k in _ENTRY_KEYS if k not in ("url", "path")) + ("license_allow", "max_duration_s")
_SEARCH_PREFIX = re.compile(r"^[a-z0-9]+search(?:\d+|all|date)?:", re.I)
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_GENERIC_EXTRACTORS = {"generic", "html5mediaembed"}
_FLAT_INFO_KEYS = ("_type", "ie_key", "id", "url", "title", "duration", "uploader", "channel", "creator",
                   "license", "language", "webpage_url", "extractor_key", "playlist_index", "live_status")


class SourcesError(ValueError):
    """The sources file is unreadable or one of its entries is wrong (the message says which)."""


@dataclass(frozen=True)
class SourceEntry:
    """One entry of the sources file, validated; ``path`` is absolute, ``input`` as written."""

    input: str
    index: int
    url: str | None = None
    path: str | None = None
    kind: str | None = None  # as written; None: guessed by expand_entry
    license: str | None = None  # canonical tag
    language: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()
    limit: int | None = None

    @property
    def source_id(self) -> str:
        """The id its single item gets; also the id to record a failed expansion under."""
        return local_source_id(Path(self.path)) if self.path else url_source_id(self.url or "")


@dataclass(frozen=True)
class SourceDefaults:
    """Entry fields applied to every entry, plus the run-wide filters."""

    kind: str | None = None
    license: str | None = None
    language: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()
    limit: int | None = None
    license_allow: tuple[str, ...] | None = None  # canonical tags; None: every licence
    max_duration_s: float | None = None

    def policy(self) -> dict[str, Any]:
        """The run-wide filters, for the markers of finished sources (a new policy re-decides them)."""
        return {"license_allow": None if self.license_allow is None else list(self.license_allow),
                "max_duration_s": self.max_duration_s}


@dataclass(frozen=True)
class SourcesFile:
    defaults: SourceDefaults
    entries: tuple[SourceEntry, ...]
    base_dir: Path


@dataclass
class SourceItem:
    """One downloadable unit after expansion (one video, one book, one local file)."""

    source_id: str  # [a-z0-9_-], stable across runs
    input: str  # the entry's url/path as written in the sources file
    kind: str  # "video" | "ebook"
    url: str | None = None
    path: str | None = None  # absolute
    license: str | None = None  # entry (or defaults) override; None: what the site reports
    language: str | None = None
    title: str | None = None
    tags: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)  # yt-dlp flat info, if the item came from a list
    playlist_index: int | None = None  # 1-based position on a multi-video page without own URLs
    # yt-dlp's full info when listing the entry already resolved it (a page of one video): the fetch
    # takes it instead of asking the site a second time. Not part of what the item is (identity).
    resolved: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def identity(self) -> dict[str, Any]:
        """What the item is, for the keys of the stages that read it: the address, and for a local
        file its size and modification time (an edited file is a new input)."""
        data: dict[str, Any] = {"kind": self.kind, "url": self.url, "path": self.path, "playlist_index": self.playlist_index}
        if is_store_source(self.url):  # an object in a store: a new version is a new input
            data["object"] = store_identity(self.url or "")
        if self.path:
            try:
                stat = Path(self.path).stat()
                data["file"] = [stat.st_size, stat.st_mtime_ns]
            except OSError:
                data["file"] = None  # the fetch stage reports it
        return data

    def overrides(self) -> dict[str, Any]:
        """The fields of the sources file that win over what the source itself says."""
        return {"title": self.title, "license": self.license, "language": self.language}


# --------------------------------------------------------------------------- licences


def normalize_license(text: str | None) -> str | None:
    """Map what a site reports to one of LICENSES; None when unknown or not an open licence."""
    if not text or not isinstance(text, str):
        return None
    s = text.strip().lower()
    for tag in LICENSES:
        if s == tag.lower():
            return tag
    s = s.replace("creativecommons.org", " cc ")
    for pattern, token in ((r"creative[\s_-]*commons", " cc "), (r"non[\s_-]*commercial", " nc "),
                           (r"share[\s_-]*alike", " sa "), (r"no[\s_-]*deriv\w*", " nd "),
                           (r"public[\s_-]*domain", " publicdomain ")):
        s = re.sub(pattern, token, s)
    tokens = re.findall(r"[a-z0-9]+", s)
    has_cc = "cc" in tokens
    if "cc0" in tokens or (has_cc and "zero" in tokens):
        return "CC0"
    if "publicdomain" in tokens or tokens in (["pd"], ["pdm"]):
        return "public-domain"
    words = {"by": "BY", "attribution": "BY", "nc": "NC", "sa": "SA", "nd": "ND"}
    attrs = {words[t] for t in tokens if t in words}
    # without a Creative Commons marker, accept only bare attribute strings ("by-nc-sa", "Attribution")
    if not has_cc and any(t not in words and not t.isdigit() for t in tokens):
        return None
    if not attrs or {"SA", "ND"} <= attrs:
        return None
    attrs.add("BY")  # every CC licence but CC0 requires attribution
    return "CC-" + "-".join(a for a in ("BY", "NC", "SA", "ND") if a in attrs)


def check_policy(item: SourceItem, info: dict[str, Any], defaults: SourceDefaults) -> str | None:
    """Why this source must be skipped (licence, duration, live stream), or None to keep it."""
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
        return "live streams are not supported"
    if defaults.license_allow is not None:
        licence = item.license or normalize_license(info.get("license"))
        allowed = ", ".join(defaults.license_allow) or "none"
        if licence is None:
            reported = info.get("license")
            what = f"licence {reported!r} is not an open licence" if reported else "licence unknown"
            return f"{what} (allowed: {allowed}; set license: on the entry if you know it)"
        if licence not in defaults.license_allow:
            return f"licence {licence} not allowed (allowed: {allowed})"
    duration = info.get("duration")
    if defaults.max_duration_s is not None and isinstance(duration, (int, float)) and duration > defaults.max_duration_s:
        return f"video is {duration:.0f} s long, over max_duration_s={defaults.max_duration_s:g}"
    return None


# --------------------------------------------------------------------------- ids and kinds


def _hash8(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def local_source_id(path: Path) -> str:
    path = Path(path).absolute()
    return make_story_id("file", f"{path.stem[:60]}-{_hash8(str(path))}")


def _url_stem(url: str) -> str:
    parsed = urlparse(url)
    stem = Path(unquote(parsed.path)).stem or parsed.hostname or "page"
    return stem[:60]


def url_source_id(url: str, extractor_key: str | None = None, video_id: str | None = None) -> str:
    """``youtube-abc123`` for sites yt-dlp knows; ``generic-<stem>-<8 hex of the URL>`` otherwise.

    Generic ids ("index", "video", "page-1") repeat across sites, so they carry a URL hash.
    """
    if extractor_key is None or video_id is None:
        ie = extractor_for(url) if not _SEARCH_PREFIX.match(url) else None
        temp_id = ie.get_temp_id(url) if ie is not None else None
        if ie is not None and temp_id:
            extractor_key, video_id = ie.ie_key(), temp_id
    if not extractor_key or not video_id or extractor_key.lower() in _GENERIC_EXTRACTORS:
        stem = video_id or (_url_stem(url) if not _SEARCH_PREFIX.match(url) else "search")
        return make_story_id("generic", f"{stem[:60]}-{_hash8(url)}")
    return make_story_id(extractor_key, video_id)


def guess_kind(entry: SourceEntry) -> str:
    """"video", "ebook", or "auto" (a URL whose kind only yt-dlp can tell: a page, a playlist)."""
    if entry.path:
        path = Path(entry.path)
        return "ebook" if path.is_dir() or path.suffix.lower() in EBOOK_EXTENSIONS else "video"
    url = entry.url or ""
    if _SEARCH_PREFIX.match(url):
        return "search"
    suffix = Path(urlparse(url).path).suffix.lower()
    if is_store_source(url):  # one object: a book by its extension, else a video file
        return "ebook" if suffix in EBOOK_EXTENSIONS else "video"
    # .htm/.html URLs are usually video pages: they go to yt-dlp (write kind: ebook for HTML books)
    if suffix in EBOOK_EXTENSIONS and suffix not in (".htm", ".html"):
        return "ebook"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    ie = extractor_for(url)
    return "video" if ie is not None and ie.is_single_video(url) else "auto"


# --------------------------------------------------------------------------- loading


def load_sources(path: str | Path) -> SourcesFile:
    """Read and validate a sources file; relative ``path:`` entries resolve against its folder.

    The file is read as YAML 1.2 (:class:`pipeline.config.Yaml12Loader`): only true/false are
    booleans, so ``language: no`` (Norwegian) is the text "no".
    """
    from pipeline.config import read_yaml_mapping

    path = Path(path)
    data = read_yaml_mapping(path, what="sources file", not_mapping="must be a mapping with a 'sources:' list",
                             allow_empty=False, error=SourcesError)
    unknown = sorted(str(k) for k in set(data) - {"defaults", "sources"})  # a key may be a number or boolean
    if unknown:
        raise SourcesError(f"{path}: unknown top-level key(s) {', '.join(unknown)}; known: defaults, sources")
    base_dir = path.parent.absolute()
    defaults = _parse_defaults(data.get("defaults") or {})
    raw_entries = data.get("sources")
    if not isinstance(raw_entries, list) or not raw_entries:
        raise SourcesError(f"{path}: 'sources:' must be a non-empty list of entries")
    entries: list[SourceEntry] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_entries):
        entry = _parse_entry(raw, i, base_dir)
        key = entry.url or entry.path or ""
        if key in seen:
            raise SourcesError(f"sources[{i}] ({entry.input}) repeats sources[{seen[key]}]")
        seen[key] = i
        entries.append(entry)
    return SourcesFile(defaults=defaults, entries=tuple(entries), base_dir=base_dir)


def _parse_defaults(raw: Any) -> SourceDefaults:
    if not isinstance(raw, dict):
        raise SourcesError("defaults: must be a mapping")
    unknown = sorted(set(raw) - set(_DEFAULT_KEYS))
    if unknown:
        raise SourcesError(f"defaults: unknown key(s) {', '.join(unknown)}; known: {', '.join(_DEFAULT_KEYS)}")
    values = _parse_fields(raw, "defaults")
    if values.get("kind") not in (None, "video", "ebook"):
        raise SourcesError("defaults: kind must be video or ebook (playlists are per entry)")
    allow = raw.get("license_allow")
    if allow is not None:
        if isinstance(allow, str):
            allow = [allow]
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise SourcesError(f"defaults: license_allow must be a list of licences, got {allow!r}")
        values["license_allow"] = tuple(_licence(a, "defaults: license_allow") for a in allow)
    max_duration = raw.get("max_duration_s")
    if max_duration is not None:
        if isinstance(max_duration, bool) or not isinstance(max_duration, (int, float)) or max_duration <= 0:
            raise SourcesError(f"defaults: max_duration_s must be a positive number, got {max_duration!r}")
        values["max_duration_s"] = float(max_duration)
    return SourceDefaults(**values)


def _parse_entry(raw: Any, index: int, base_dir: Path) -> SourceEntry:
    where = f"sources[{index}]"
    if isinstance(raw, str):  # shorthand: "- https://..." or "- books/fox.epub"
        raw = {"url": raw} if "://" in raw or _SEARCH_PREFIX.match(raw) else {"path": raw}
    if not isinstance(raw, dict):
        raise SourcesError(f"{where}: must be a mapping with url: or path:, got {raw!r}")
    where = f"{where} ({raw.get('url') or raw.get('path') or 'no url/path'})"
    unknown = sorted(set(raw) - set(_ENTRY_KEYS))
    if unknown:
        raise SourcesError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_ENTRY_KEYS)}")
    url, path = raw.get("url"), raw.get("path")
    if (url is None) == (path is None):
        raise SourcesError(f"{where}: give exactly one of url: or path:")
    written = url if url is not None else path
    if not isinstance(written, str) or not written.strip():
        raise SourcesError(f"{where}: url/path must be a non-empty string, got {written!r}")
    values = _parse_fields(raw, where)
    kind, limit = values.get("kind"), values.get("limit")
    if path is not None and is_store_source(path.strip()):  # path: s3://bucket/books/fox.epub
        url, path = path.strip(), None
    elif path is not None and url_scheme(path.strip()) == "file":
        path = str(local_path(path.strip()))  # a file:// URL is a local path
    elif url is not None and url_scheme(url.strip()) == "file":
        url, path = None, str(local_path(url.strip()))
    if url is not None and is_store_source(url.strip()):
        if kind not in (None, "video", "ebook"):
            raise SourcesError(f"{where}: an object store URL is one file: kind video or ebook, not {kind}")
        values["url"] = url.strip()
    elif path is not None:
        if kind not in (None, "video", "ebook"):
            raise SourcesError(f"{where}: a local path can be kind video or ebook, not {kind}")
        resolved = Path(path).expanduser()
        values["path"] = str(resolved if resolved.is_absolute() else (base_dir / resolved).absolute())
    else:
        url = url.strip()
        is_search = bool(_SEARCH_PREFIX.match(url))
        if kind == "search" and "://" not in url and not is_search:
            if limit is None:
                raise SourcesError(f"{where}: a plain-text search needs limit: (how many results)")
            url = f"ytsearch{limit}:{url}"
        elif not (is_search or re.match(r"^https?://[^/\s]+", url)):
            raise SourcesError(f"{where}: url must start with http:// or https:// (or be a yt-dlp search like ytsearch5:..., "
                               "or an object store URL such as s3://bucket/videos/tale.mp4)")
        values["url"] = url
    return SourceEntry(input=written, index=index, **values)


def _parse_fields(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate the optional fields shared by entries and defaults."""
    tags = [raw["tags"]] if isinstance(raw.get("tags"), str) else raw.get("tags")
    checks = {  # key: (valid?, value to keep, what it must be)
        "kind": (lambda v: v in KINDS, lambda v: v, f"one of {', '.join(KINDS)}"),
        "language": (lambda v: isinstance(v, str) and _LANGUAGE.match(v), lambda v: v,
                     "a language code such as en or pt-BR"),
        "title": (lambda v: isinstance(v, str), lambda v: v, "a string"),
        "tags": (lambda v: isinstance(tags, list) and all(isinstance(t, str) for t in tags), lambda v: tuple(tags),
                 "a list of strings"),
        "limit": (lambda v: type(v) is int and v >= 1, lambda v: v, "a positive integer"),
    }
    out: dict[str, Any] = {}
    for key, (valid, keep, what) in checks.items():
        value = raw.get(key)
        if value is not None:
            if not valid(value):
                # only unquoted true/false are booleans now (YAML 1.2): no/yes/on/off arrive as text
                hint = " (YAML reads unquoted true/false as booleans: quote the value)" if isinstance(value, bool) else ""
                raise SourcesError(f"{where}: {key} must be {what}, got {value!r}{hint}")
            out[key] = keep(value)
    if raw.get("license") is not None:
        out["license"] = _licence(raw["license"], where)
    return out


def _licence(value: Any, where: str) -> str:
    tag = normalize_license(value) if isinstance(value, str) else None
    if tag is None:
        raise SourcesError(f"{where}: unknown licence {value!r}; use one of {', '.join(LICENSES)}")
    return tag


# --------------------------------------------------------------------------- expansion


def _item(entry: SourceEntry, defaults: SourceDefaults, kind: str, **kw: Any) -> SourceItem:
    base = dict(input=entry.input, kind=kind, license=entry.license or defaults.license,
                language=entry.language or defaults.language, tags=entry.tags or defaults.tags)
    base.update(kw)
    return SourceItem(**base)


def expand_entry(entry: SourceEntry, defaults: SourceDefaults, fetch_cfg: Any) -> list[SourceItem]:
    """The items of one entry; lists (playlist, channel, search, multi-video page) via yt-dlp.

    Raises :class:`FetchError` (per-entry data) when the list cannot be read.
    """
    kind = entry.kind or defaults.kind or guess_kind(entry)
    title = entry.title or defaults.title
    if entry.path and kind == "ebook" and Path(entry.path).is_dir():  # a folder of books: one story each
        from pipeline.book.model import find_books

        books = find_books(Path(entry.path))
        if not books:
            raise FetchError(f"folder {entry.path} holds no PDF, EPUB or HTML book", permanent=True)
        return [_item(entry, defaults, "ebook", source_id=local_source_id(b), path=str(b),
                      title=title if len(books) == 1 else None) for b in books]
    if entry.path:
        return [_item(entry, defaults, "ebook" if kind == "ebook" else "video", source_id=entry.source_id,
                      path=entry.path, title=title)]
    if kind in ("video", "ebook"):
        return [_item(entry, defaults, kind, source_id=entry.source_id, url=entry.url, title=title)]
    if kind == "auto":  # a URL without a telling extension may still serve a book
        from pipeline.book.fetch import content_kind

        if content_kind(entry.url or "", fetch_cfg) == "ebook":
            return [_item(entry, defaults, "ebook", source_id=entry.source_id, url=entry.url, title=title)]
    limit = entry.limit or defaults.limit
    info = extract_flat(entry.url or "", fetch_cfg, limit)
    if not info.get("entries") and info.get("_type") not in ("playlist", "multi_video"):
        return [_item(entry, defaults, "video", source_id=entry.source_id, url=entry.url, title=title,
                      info=_slim(info), resolved=info if _is_resolved_video(info) else None)]
    items = [_expanded_item(entry, defaults, e, info) for e in _flatten(info.get("entries") or [], limit)]
    if not items:
        raise FetchError(f"{kind} {entry.url} lists no videos", permanent=True)
    return items


def _flatten(entries: Any, limit: int | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for e in entries:
        if limit is not None and len(out) >= limit:
            break
        if not isinstance(e, dict):  # yt-dlp yields None for unavailable entries
            continue
        if e.get("entries") is not None:
            out.extend(_flatten(e["entries"], None if limit is None else limit - len(out)))
        else:
            out.append(e)
    return out


def _expanded_item(entry: SourceEntry, defaults: SourceDefaults, e: dict[str, Any], parent: dict[str, Any]) -> SourceItem:
    if e.get("_type") in ("url", "url_transparent"):  # a reference: fetched by its own URL
        source_id = url_source_id(e["url"], e.get("ie_key"), e.get("id"))
        return _item(entry, defaults, "video", source_id=source_id, url=e["url"], info=_slim(e))
    # a video resolved inside the list page (several <video> on one page): no URL of its own
    page = parent.get("webpage_url") or entry.url or ""
    index = int(e.get("playlist_index") or 0)
    source_id = url_source_id(f"{page}#{index}", e.get("extractor_key"), e.get("id"))
    return _item(entry, defaults, "video", source_id=source_id, url=page, playlist_index=index, info=_slim(e))


def _is_resolved_video(info: dict[str, Any]) -> bool:
    """Whether a listing's result is one video with its formats chosen (what the fetch's probe
    would get again), not a reference to resolve or a list."""
    return info.get("_type", "video") == "video" and bool(info.get("formats") or info.get("url")) and bool(info.get("id"))


def _slim(info: dict[str, Any]) -> dict[str, Any]:
    return {k: info[k] for k in _FLAT_INFO_KEYS if info.get(k) is not None}

