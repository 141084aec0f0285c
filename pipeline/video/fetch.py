"""Fetch stage: download one video with its subtitles through yt-dlp's Python API, or take a
local file in place, and describe the result as a :class:`FetchedMedia` saved as ``fetch.json``.

Order of work for a URL: probe (metadata only) -> policy check (licence, duration, size: a
skip, before any download) -> download into ``dest_dir`` (best format at or below
``max_height``, merged to mp4 with ffmpeg when video and audio are separate; subtitles, manual
before automatic; info.json) -> verify the file with PyAV. Everything yt-dlp writes stays in
``dest_dir`` (no cache in ``~``); its log goes to the ``pipeline.video.ytdlp`` logger.

Errors come out as :class:`FetchError` (from :mod:`pipeline.video.ytdlp`, re-exported here):
``permanent`` ones (404, removed, no video on the page, policy skips with ``skipped`` set) fail
at once; transient ones (timeouts, resets, HTTP 5xx/429) are retried with exponential backoff.
Whether a stored ``fetch.json`` is reused is the work directory owner's decision
(:mod:`pipeline.workdir`); when the fetch runs again with the same settings, the download archive
stops yt-dlp from downloading a video again unless its files went missing. A video in an object
store (``s3://...``, any fsspec URL but HTTP) is downloaded through fsspec with its sidecar
subtitles (:func:`fetch_from_store`) and then treated as a local file. ``fetch.json`` keeps
what the site reported (``*_reported``); :func:`apply_overrides` lays the sources file's title,
licence and language over it each time it is read, so editing those never needs a download.
"""

from __future__ import annotations

import glob
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pipeline.config import FetchConfig
from pipeline.errors import StageError
from pipeline.objectstore import fetch_object, is_store_source, store_siblings, url_scheme
from pipeline.records import FetchedMedia, SubtitleTrack
from pipeline.sources import SourceDefaults, SourceItem, check_policy, normalize_license
from pipeline.storage import atomic_write_json, file_sha256, read_json
from pipeline.video.ytdlp import (FetchError, YtDlpLogger, classify, extract_flat, extractor_key, open_ydl, with_retries,
                                  ydl_params)

log = logging.getLogger(__name__)
SUBTITLE_FORMATS = ("vtt", "srt")
FETCH_RECORD = "fetch.json"  # written last: the fetch is complete
STORE_DIR = "store"  # a video from an object store, and its sidecar subtitles, downloaded here
_NOT_VIDEO = {"json", "vtt", "srt", "part", "ytdl", "tmp", "temp", "jpg", "webp", "png", "description"}
__all__ = ["FETCH_RECORD", "FetchError", "STORE_DIR", "SUBTITLE_FORMATS", "apply_overrides", "classify", "extract_flat",
           "fetch_from_store", "fetch_local", "fetch_video", "probe", "read_fetched"]


def probe(item: SourceItem, cfg: FetchConfig) -> dict[str, Any]:
    """The raw yt-dlp info of one video (formats selected, nothing downloaded): the listing's when
    it already resolved the video (:attr:`SourceItem.resolved`, same options), else asked anew."""
    url = item.url or ""
    if item.resolved is not None and not item.playlist_index:
        info, item.resolved = item.resolved, None  # once: a retried fetch asks the site again (fresh format URLs)
        return info
    logger = YtDlpLogger(item.source_id)
    extra = {"playlist_items": str(item.playlist_index)} if item.playlist_index else {}
    params = ydl_params(cfg, logger, **extra)

    def run() -> dict[str, Any]:
        with open_ydl(params) as ydl:
            if item.info.get("_type") in ("url", "url_transparent"):
                # a list entry: resolve it the way yt-dlp would, keeping the list's title/duration
                info = ydl.process_ie_result(dict(item.info), download=False)
            else:
                info = ydl.extract_info(url, download=False, ie_key=extractor_key(url))
            entries = [e for e in (info or {}).get("entries") or [] if e]
            if info and info.get("_type") in ("playlist", "multi_video"):
                if len(entries) != 1:
                    raise FetchError(f"{url} is a list of {len(entries)} videos, not one video; "
                                     "give it kind: playlist to expand it", permanent=True, url=url)
                info = entries[0]
                if info.get("_type") in ("url", "url_transparent"):
                    info = ydl.process_ie_result(info, download=False)
            if not info:
                raise FetchError(f"yt-dlp returned no information for {url}", permanent=True, url=url)
            return info

    return with_retries(run, cfg, "probe", url)


# --------------------------------------------------------------------------- fetching


def fetch_video(item: SourceItem, dest_dir: Path, cfg: FetchConfig, archive: Path | None = None,
                defaults: SourceDefaults | None = None) -> FetchedMedia:
    """Download one video item into ``dest_dir`` (local items are used in place)."""
    defaults = defaults or SourceDefaults()
    dest_dir = Path(dest_dir).absolute()
    dest_dir.mkdir(parents=True, exist_ok=True)
    if item.path:
        return fetch_local(item, dest_dir, defaults)
    url = item.url or ""
    if is_store_source(url):
        return fetch_from_store(item, dest_dir, cfg, defaults)
    info = probe(item, cfg)
    reason = check_policy(item, info, defaults) or _size_policy(info, cfg)
    if reason:
        raise FetchError(reason, permanent=True, skipped=True, url=url)
    subtitles = _choose_subtitles(info, item, cfg)
    in_archive = archive is not None and _in_archive(Path(archive), info)
    video = _find_video(dest_dir) if in_archive else None
    if video is None or any(_subtitle_file(dest_dir, lang) is None for lang, _ in subtitles):
        logger = YtDlpLogger(item.source_id)
        try:
            with_retries(lambda: _download(info, dest_dir, cfg, None if in_archive else archive, subtitles, logger),
                          cfg, "download", url)
        except FetchError as err:
            if not err.subtitle_only:
                raise
            # yt-dlp aborts the whole download when a subtitle fails; the video is still worth having
            log.warning("%s: %s; downloading the video without subtitles", item.source_id, err)
            subtitles = []
            with_retries(lambda: _download(info, dest_dir, cfg, None if in_archive else archive, [], logger),
                          cfg, "download", url)
        video = _find_video(dest_dir)
        if video is None:
            if any("max-filesize" in line for line in logger.recent):
                raise FetchError(f"video is larger than max_filesize_mb={cfg.max_filesize_mb:g}",
                                 permanent=True, skipped=True, url=url)
            raise FetchError(f"yt-dlp finished but wrote no video file for {url}", permanent=True, url=url)
    else:
        log.debug("%s: in the download archive and complete in %s; not downloading", item.source_id, dest_dir)
    duration = _media_duration(video)
    if defaults.max_duration_s is not None and duration and duration > defaults.max_duration_s:
        raise FetchError(f"video is {duration:.0f} s long, over max_duration_s={defaults.max_duration_s:g}",
                         permanent=True, skipped=True, url=url)
    tracks = []
    for lang, automatic in subtitles:
        found = _subtitle_file(dest_dir, lang)
        if found is not None:
            tracks.append(SubtitleTrack(str(found), lang, automatic, found.suffix[1:]))
    media = FetchedMedia(item.source_id, str(video), _media_info(item, info, duration), tracks)
    media.info["sha256"] = file_sha256(video)  # the very file the frames come from (shareable manifests)
    atomic_write_json(dest_dir / FETCH_RECORD, media.to_dict())
    return media


def _download(info: dict[str, Any], dest_dir: Path, cfg: FetchConfig, archive: Path | None,
              subtitles: list[tuple[str, bool]], logger: YtDlpLogger) -> dict[str, Any]:
    chosen = dict(subtitles)
    info = dict(info)  # only the chosen tracks stay, so yt-dlp downloads exactly those
    info["subtitles"] = {k: v for k, v in (info.get("subtitles") or {}).items() if chosen.get(k) is False}
    info["automatic_captions"] = {k: v for k, v in (info.get("automatic_captions") or {}).items() if chosen.get(k)}
    params = ydl_params(
        cfg, logger, paths={"home": str(dest_dir), "temp": str(dest_dir)}, outtmpl={"default": "video.%(ext)s"},
        writesubtitles=bool(info["subtitles"]), writeautomaticsub=bool(info["automatic_captions"]),
        subtitleslangs=["all"], subtitlesformat="/".join(SUBTITLE_FORMATS), writeinfojson=True,
        max_filesize=int(cfg.max_filesize_mb * 1_000_000), download_archive=str(archive) if archive else None,
    )
    with open_ydl(params) as ydl:
        return ydl.process_ie_result(info, download=True)


def _choose_subtitles(info: dict[str, Any], item: SourceItem, cfg: FetchConfig) -> list[tuple[str, bool]]:
    """(track key, automatic) per wanted language: manual before automatic unless configured."""
    wanted = cfg.subtitle_languages or tuple(dict.fromkeys(x for x in (item.language, "en") if x))
    manual = info.get("subtitles") or {}
    auto = (info.get("automatic_captions") or {}) if cfg.allow_auto_subtitles else {}
    chosen: list[tuple[str, bool]] = []
    for lang in wanted:
        options = [(_match_language(manual, lang), False), (_match_language(auto, lang), True)]
        if not cfg.prefer_manual_subtitles:
            options.reverse()
        for key, automatic in options:
            if key is not None and key not in dict(chosen):
                chosen.append((key, automatic))
                break
    return chosen


def _match_language(tracks: dict[str, Any], lang: str) -> str | None:
    usable = [k for k, fmts in tracks.items() if any(f.get("ext") in SUBTITLE_FORMATS for f in fmts or [])]
    base = lang.split("-")[0].lower()
    for test in (lambda k: k.lower() == lang.lower(), lambda k: k.lower() == base,
                 lambda k: k.lower().startswith(base + "-")):
        for key in usable:
            if test(key):
                return key
    return None


def _subtitle_file(dest_dir: Path, lang: str) -> Path | None:
    for ext in SUBTITLE_FORMATS:
        path = dest_dir / f"video.{lang}.{ext}"
        if path.is_file() and path.stat().st_size > 0:
            return path
    return None


def _find_video(dest_dir: Path) -> Path | None:
    """The finished ``video.<ext>`` in dest_dir (not parts, subtitles, info.json, format pieces)."""
    for path in sorted(dest_dir.glob("video.*")):
        ext = path.name[len("video."):]
        if "." not in ext and ext.lower() not in _NOT_VIDEO and path.is_file() and path.stat().st_size > 0:
            return path
    return None


def _in_archive(archive: Path, info: dict[str, Any]) -> bool:
    from yt_dlp.utils import make_archive_id

    if not archive.is_file() or not info.get("extractor_key") or not info.get("id"):
        return False
    ids = {make_archive_id(info["extractor_key"], info["id"]), *(info.get("_old_archive_ids") or [])}
    return any(line.strip() in ids for line in archive.read_text(encoding="utf-8").splitlines())


def _size_policy(info: dict[str, Any], cfg: FetchConfig) -> str | None:
    parts = info.get("requested_formats") or [info]
    sizes = [f.get("filesize") or f.get("filesize_approx") for f in parts]
    if all(sizes) and sum(sizes) > cfg.max_filesize_mb * 1_000_000:
        return f"video is {sum(sizes) / 1e6:.0f} MB, over max_filesize_mb={cfg.max_filesize_mb:g}"
    return None


def _media_info(item: SourceItem, info: dict[str, Any], duration: float | None) -> dict[str, Any]:
    from yt_dlp.utils import unsmuggle_url

    url = info.get("webpage_url") or info.get("original_url") or item.url
    return {
        "id": info.get("id"),
        "extractor": info.get("extractor_key") or info.get("extractor"),
        "url": unsmuggle_url(url)[0] if url else None,
        "title": item.title or _page_title(info),
        "title_reported": _page_title(info),
        "creator": next((info[k] for k in ("creator", "uploader", "channel", "artist") if info.get(k)), None),
        "license": item.license or normalize_license(info.get("license")),
        "license_reported": info.get("license"),
        "language": item.language or info.get("language"),
        "language_reported": info.get("language"),
        "duration_s": round(float(duration), 3) if duration else None,
    }


def _page_title(info: dict[str, Any]) -> str | None:
    """yt-dlp names a page's embedded videos "Title (1)", "Title (2)"; one video keeps the page title."""
    title = info.get("title")
    numbered = re.fullmatch(r"(.+) \(1\)", title or "")
    if numbered and info.get("extractor_key") == "HTML5MediaEmbed" and (info.get("n_entries") or 1) == 1:
        return numbered.group(1)
    return title


def read_fetched(dest_dir: Path) -> FetchedMedia:
    """The stored ``fetch.json``; raises FileNotFoundError when it or one of its files is gone."""
    media = FetchedMedia.from_dict(read_json(Path(dest_dir) / FETCH_RECORD))
    for path in [Path(media.video_path)] + [Path(s.path) for s in media.subtitles]:
        if not path.is_file() or path.stat().st_size == 0:
            raise FileNotFoundError(f"{path} (listed in {FETCH_RECORD}) is gone")
    if not media.info.get("sha256"):  # a record from before fetches hashed their file
        media.info["sha256"] = file_sha256(Path(media.video_path))
    return media


def apply_overrides(media: FetchedMedia, item: SourceItem) -> FetchedMedia:
    """The sources file's title, licence and language win over what the site reported."""
    info = media.info
    info.update(title=item.title or info.get("title_reported"),
                license=item.license or normalize_license(info.get("license_reported")),
                language=item.language or info.get("language_reported"))
    return media


# --------------------------------------------------------------------------- local files


def fetch_from_store(item: SourceItem, dest_dir: Path, cfg: FetchConfig,
                     defaults: SourceDefaults | None = None) -> FetchedMedia:
    """A video in an object store (``s3://bucket/videos/tale.mp4``, any fsspec URL but HTTP):
    downloaded through fsspec into ``dest_dir/store/`` with its sidecar subtitles
    (``tale.LANG.vtt|srt``, ``tale.vtt|srt`` next to it), then described as a local file is."""
    url = item.url or ""
    name = Path(urlparse(url).path).name or "video.mp4"
    stem = Path(name).stem
    store_dir = Path(dest_dir) / STORE_DIR
    try:
        fetch_object(url, store_dir / name, retries=cfg.retries, backoff_s=cfg.backoff_s,
                     max_bytes=int(cfg.max_filesize_mb * 1_000_000))
        for sidecar in store_siblings(url, stem + "."):
            sub_name = sidecar.rsplit("/", 1)[-1]
            if sub_name.rsplit(".", 1)[-1].lower() in SUBTITLE_FORMATS:
                fetch_object(sidecar, store_dir / sub_name, retries=cfg.retries, backoff_s=cfg.backoff_s)
    except StageError as err:
        raise FetchError(str(err), permanent=err.permanent, skipped=err.skipped, url=url) from err
    return _describe_file(item, store_dir / name, dest_dir, defaults, url=url, extractor=url_scheme(url) or "store")


def fetch_local(item: SourceItem, dest_dir: Path, defaults: SourceDefaults | None = None) -> FetchedMedia:
    """Use a local video in place, with sidecar subtitles ``STEM.LANG.vtt|srt`` or ``STEM.vtt|srt``."""
    if item.kind != "video" or not item.path:
        raise ValueError(f"fetch_local takes local video items, got kind={item.kind!r} path={item.path!r}")
    path = Path(item.path)
    return _describe_file(item, path, dest_dir, defaults, url=path.absolute().as_uri(), extractor="local")


def _describe_file(item: SourceItem, path: Path, dest_dir: Path, defaults: SourceDefaults | None, *,
                   url: str, extractor: str) -> FetchedMedia:
    """A video file on this machine (with its sidecar subtitles) as the fetch stage's record."""
    if not path.is_file():
        raise FetchError(f"local file not found: {path}", permanent=True)
    if path.stat().st_size == 0:
        raise FetchError(f"local file is empty: {path}", permanent=True)
    duration = _media_duration(path)
    reason = check_policy(item, {"duration": duration}, defaults or SourceDefaults())
    if reason:
        raise FetchError(reason, permanent=True, skipped=True)
    tracks = _sidecar_subtitles(path, item.language)
    info = {"id": path.stem, "extractor": extractor, "url": url, "title": item.title or path.stem,
            "title_reported": path.stem, "creator": None, "license": item.license, "license_reported": None,
            "language": item.language, "language_reported": None, "duration_s": round(duration, 3) if duration else None,
            "sha256": file_sha256(path)}
    media = FetchedMedia(item.source_id, str(path.absolute()), info, tracks)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dest_dir / FETCH_RECORD, media.to_dict())
    return media


def _sidecar_subtitles(video: Path, language: str | None) -> list[SubtitleTrack]:
    tracks = []
    for sub in sorted(video.parent.glob(f"{glob.escape(video.stem)}.*")):
        middle, _, ext = sub.name[len(video.stem) + 1:].rpartition(".")
        if ext.lower() not in SUBTITLE_FORMATS or "." in middle or not sub.is_file() or sub.stat().st_size == 0:
            continue
        tracks.append(SubtitleTrack(str(sub.absolute()), middle or language, False, ext.lower()))
    # the item's own language first, then the rest in name order
    return sorted(tracks, key=lambda t: (t.language != language,))


def _media_duration(path: Path) -> float | None:
    """Duration in seconds read with PyAV; a file PyAV cannot open or with no video is an error."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FetchError(f"{path.name} has no video stream", permanent=True)
            if container.duration:
                return container.duration / 1_000_000
            stream = container.streams.video[0]
            return float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    except av.FFmpegError as exc:
        raise FetchError(f"{path} is not a readable video: {exc}", permanent=True) from exc
