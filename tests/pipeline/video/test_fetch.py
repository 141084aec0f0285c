"""Fetch stage against real yt-dlp and a loopback HTTP server: downloads, subtitles, archive,
retries, permanent errors, policy skips, local files, and nothing written outside dest_dir."""

from __future__ import annotations

from dataclasses import replace

import json
import os
import sys
from pathlib import Path

import av
import pytest

from pipeline.config import FetchConfig
from pipeline.video.fetch import FetchError, _choose_subtitles, classify, fetch_local, fetch_video
from pipeline.sources import SourceDefaults, SourceItem, url_source_id
from pipeline.storage import read_json
from tests.conftest import StaticServer
from tests.media_helpers import Site, make_hls, make_mp4

VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nOnce upon a time.\n\n00:00:01.000 --> 00:00:02.000\nThe end.\n"
CFG = FetchConfig(retries=2, backoff_s=0.01, socket_timeout_s=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = StaticServer(tmp_path_factory.mktemp("www"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def mp4(tmp_path_factory) -> bytes:
    return make_mp4(tmp_path_factory.mktemp("media") / "v.mp4").read_bytes()


@pytest.fixture
def site(server, mp4, request):
    """This test's folder on the loopback server: a video page, a direct mp4, a request log."""
    site = Site(server, request.node.name)
    (site.root / "v.mp4").write_bytes(mp4)
    (site.root / "v.en.vtt").write_text(VTT)
    (site.root / "page.html").write_text(
        "<html><head><title>My Story</title></head><body><video><source src='v.mp4' type='video/mp4'>"
        "<track kind='subtitles' srclang='en' src='v.en.vtt'></video></body></html>")
    return site


def video_item(url: str, **kw) -> SourceItem:
    return SourceItem(source_id=url_source_id(url), input=url, kind="video", url=url, **kw)


def streams(path: str) -> list[tuple[str, int | None]]:
    with av.open(path) as c:
        return [(s.type, s.codec_context.height if s.type == "video" else None) for s in c.streams]


def test_page_with_video_and_subtitles(site, tmp_path, capfd):
    item = video_item(site.url("page.html"), language="en", license="CC-BY")
    dest = tmp_path / "work" / item.source_id
    media = fetch_video(item, dest, CFG, archive=tmp_path / "archive.txt")

    assert media.source_id == item.source_id
    assert Path(media.video_path) == dest / "video.mp4"
    assert Path(media.video_path).read_bytes() == (site.root / "v.mp4").read_bytes()
    assert [(Path(s.path).name, s.language, s.automatic, s.format) for s in media.subtitles] == [
        ("video.en.vtt", "en", False, "vtt")]
    assert "Once upon a time." in Path(media.subtitles[0].path).read_text()
    info = media.info
    assert info["url"] == site.url("page.html") and info["extractor"] == "HTML5MediaEmbed"
    assert info["title"] == "My Story" and info["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert info["license"] == "CC-BY" and info["language"] == "en"
    assert read_json(dest / "fetch.json") == json.loads(json.dumps(media.to_dict()))
    assert (dest / "video.info.json").is_file()
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # yt-dlp talks to logging only


def test_direct_mp4_link(site, tmp_path):
    item = video_item(site.url("v.mp4"), title="The Fox")
    media = fetch_video(item, tmp_path / "d", CFG)
    assert streams(media.video_path) == [("video", 120), ("audio", None)]
    assert media.info["title"] == "The Fox" and media.info["extractor"] == "Generic" and media.subtitles == []


def test_rerun_skips_download_until_files_go_missing(site, tmp_path):
    """The fetch stage through the work directory owner, run again and again on one directory."""
    from pipeline.config import IngestConfig
    from pipeline.video.stages import fetch_media, video_work

    item, dest, archive = video_item(site.url("page.html")), tmp_path / "d", tmp_path / "archive.txt"
    cfg = IngestConfig(fetch=CFG)

    def fetch():
        return fetch_media(video_work(dest, item, cfg), item, cfg, archive)

    first = fetch()
    assert site.gets("v.mp4") == 1 and archive.read_text().strip()

    before = sum(site.requests.counts.values())
    assert fetch().to_dict() == first.to_dict()
    assert sum(site.requests.counts.values()) == before  # fetch.json reused: no request at all

    (dest / "fetch.json").unlink()
    mtime = os.stat(first.video_path).st_mtime_ns
    assert fetch().video_path == first.video_path
    assert site.gets("page.html") == 2 and site.gets("v.mp4") == 1  # archive: probe only
    assert os.stat(first.video_path).st_mtime_ns == mtime

    (dest / "fetch.json").unlink()
    Path(first.video_path).unlink()  # the archive says done, but the file is gone
    fetch()
    assert site.gets("v.mp4") == 2 and Path(first.video_path).stat().st_size > 0

    # other download settings: the stored download is not theirs, so it is fetched again
    taller = IngestConfig(fetch=replace(CFG, max_height=720))
    fetch_media(video_work(dest, item, taller), item, taller, archive)
    assert site.gets("v.mp4") == 3


def test_404_is_permanent_and_not_retried(site, tmp_path):
    with pytest.raises(FetchError) as err:
        fetch_video(video_item(site.url("gone.html")), tmp_path / "d", CFG)
    assert err.value.permanent and not err.value.skipped
    assert "video unavailable: HTTP 404" in str(err.value) and site.url("gone.html") in str(err.value)
    assert site.gets("gone.html") == 1

    (site.root / "dead.html").write_text("<html><body><video src='missing.mp4'></video></body></html>")
    with pytest.raises(FetchError, match="HTTP 404") as err:
        fetch_video(video_item(site.url("dead.html")), tmp_path / "e", CFG)
    assert err.value.permanent and site.gets("missing.mp4") == 1


def test_503_is_retried_until_it_works(site, tmp_path):
    site.fail("page.html", [503, 503])
    site.fail("v.mp4", [503])  # yt-dlp's own download retries take this one
    media = fetch_video(video_item(site.url("page.html")), tmp_path / "d", CFG)
    assert Path(media.video_path).is_file()
    assert site.gets("page.html") == 3 and site.gets("v.mp4") == 2

    site.fail("v.mp4", [503] * 10)
    with pytest.raises(FetchError, match=r"HTTP 503.*gave up after 2 attempts") as err:
        fetch_video(video_item(site.url("v.mp4")), tmp_path / "e", FetchConfig(retries=1, backoff_s=0.01))
    assert not err.value.permanent and site.gets("v.mp4") == 4  # 2 before, 2 tries now


def test_broken_subtitle_does_not_lose_the_video(site, tmp_path, caplog):
    (site.root / "nosub.html").write_text(
        "<html><body><video><source src='v.mp4' type='video/mp4'><track srclang='en' src='gone.vtt'></video></body></html>")
    media = fetch_video(video_item(site.url("nosub.html")), tmp_path / "d", CFG)
    assert Path(media.video_path).is_file() and media.subtitles == [] and site.gets("gone.vtt") == 1
    assert "subtitle download failed: HTTP 404 File not found at " + site.url("gone.vtt") in caplog.text


def test_timeout_is_transient(site, tmp_path):
    site.delay("v.mp4", 1.5)
    cfg = FetchConfig(retries=1, backoff_s=0.01, socket_timeout_s=0.3)
    media = fetch_video(video_item(site.url("v.mp4")), tmp_path / "d", cfg)
    assert Path(media.video_path).is_file() and site.gets("v.mp4") >= 2


def test_page_without_video_is_permanent(site, tmp_path):
    (site.root / "text.html").write_text("<html><head><title>Nothing</title></head><body><p>hi</p></body></html>")
    with pytest.raises(FetchError) as err:
        fetch_video(video_item(site.url("text.html")), tmp_path / "d", CFG)
    assert str(err.value) == f"no video found on the page {site.url('text.html')}"
    assert err.value.permanent and site.gets("text.html") == 1


def test_over_max_duration_is_skipped_before_download(site, tmp_path):
    (site.root / "long.html").write_text(
        "<html><head><title>Long</title><script type='application/ld+json'>"
        '{"@context": "https://schema.org", "@type": "VideoObject", "name": "A long story",'
        f' "contentUrl": "{site.url("v.mp4")}", "encodingFormat": "video/mp4", "duration": "PT40M"}}'
        "</script></head><body></body></html>")
    dest = tmp_path / "d"
    with pytest.raises(FetchError) as err:
        fetch_video(video_item(site.url("long.html")), dest, CFG, defaults=SourceDefaults(max_duration_s=1800))
    assert err.value.skipped and str(err.value) == "video is 2400 s long, over max_duration_s=1800"
    assert site.gets("v.mp4") == 0 and list(dest.iterdir()) == []


def test_unknown_duration_is_checked_on_the_file(site, tmp_path):
    with pytest.raises(FetchError, match="2 s long, over max_duration_s=1") as err:
        fetch_video(video_item(site.url("v.mp4")), tmp_path / "d", CFG, defaults=SourceDefaults(max_duration_s=1))
    assert err.value.skipped


def test_licence_allow_list(site, tmp_path):
    defaults = SourceDefaults(license_allow=("CC-BY", "CC0"))
    for licence, reason in [(None, "licence unknown"), ("CC-BY-NC", "licence CC-BY-NC not allowed (allowed: CC-BY, CC0)")]:
        with pytest.raises(FetchError) as err:
            fetch_video(video_item(site.url("page.html"), license=licence), tmp_path / "d", CFG, defaults=defaults)
        assert err.value.skipped and str(err.value).startswith(reason)
    assert site.gets("v.mp4") == 0
    media = fetch_video(video_item(site.url("page.html"), license="CC0"), tmp_path / "ok", CFG, defaults=defaults)
    assert media.info["license"] == "CC0"


def test_max_filesize_skips(site, tmp_path):
    with pytest.raises(FetchError, match="larger than max_filesize_mb=0.001") as err:
        fetch_video(video_item(site.url("page.html")), tmp_path / "d", FetchConfig(max_filesize_mb=0.001))
    assert err.value.skipped


def test_hls_streams_are_merged_at_the_height_asked_for(site, tmp_path):
    make_hls(site.root / "hls")
    url = site.url("hls/master.m3u8")
    cases = [(480, "/hls/v480.ts"), (240, "/hls/v480.ts"), (720, "/hls/v720.ts")]  # 240: smallest above
    for max_height, wanted in cases:
        media = fetch_video(video_item(url), tmp_path / str(max_height), FetchConfig(max_height=max_height))
        height = 120 if wanted.endswith("480.ts") else 240
        assert streams(media.video_path) == [("video", height), ("audio", None)]
        assert media.video_path.endswith("video.mp4")
    assert site.gets("hls/v480.ts") == 2 and site.gets("hls/v720.ts") == 1


def test_list_url_as_one_video_is_an_error(site, tmp_path):
    make_mp4(site.root / "w.mp4", seconds=1)
    (site.root / "two.html").write_text("<html><body><video src='v.mp4'></video><video src='w.mp4'></video></body></html>")
    with pytest.raises(FetchError, match="is a list of 2 videos") as err:
        fetch_video(video_item(site.url("two.html")), tmp_path / "d", CFG)
    assert err.value.permanent


def test_local_file_with_sidecar_subtitles(tmp_path):
    video = make_mp4(tmp_path / "books" / "fox story.mp4", seconds=1)
    (tmp_path / "books" / "fox story.en.vtt").write_text(VTT)
    (tmp_path / "books" / "fox story.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nHola\n")
    (tmp_path / "books" / "fox story.info.json").write_text("{}")
    item = SourceItem(source_id="file-fox", input="books/fox story.mp4", kind="video", path=str(video), language="es")
    media = fetch_local(item, tmp_path / "work")
    assert media.video_path == str(video) and media.info["duration_s"] == pytest.approx(1.0, abs=0.1)
    assert [(Path(s.path).name, s.language, s.format) for s in media.subtitles] == [
        ("fox story.srt", "es", "srt"), ("fox story.en.vtt", "en", "vtt")]
    assert (tmp_path / "work" / "fetch.json").is_file()

    for name, content, message in [("empty.mp4", b"", "local file is empty"), ("text.mp4", b"<html>", "not a readable video")]:
        (tmp_path / name).write_bytes(content)
        bad = SourceItem(source_id="x", input=name, kind="video", path=str(tmp_path / name))
        with pytest.raises(FetchError, match=message):
            fetch_video(bad, tmp_path / "w2", CFG)
    missing = SourceItem(source_id="x", input="nope.mp4", kind="video", path=str(tmp_path / "nope.mp4"))
    with pytest.raises(FetchError, match="local file not found"):
        fetch_local(missing, tmp_path / "w3")


def test_nothing_is_written_outside_dest_dir(site, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    before = {p for p in tmp_path.rglob("*")}
    dest = tmp_path / "work" / "one"
    fetch_video(video_item(site.url("page.html")), dest, CFG, archive=tmp_path / "work" / "archive.txt")
    new = {p for p in tmp_path.rglob("*")} - before
    assert {p for p in new if dest not in p.parents} == {dest.parent, dest, tmp_path / "work" / "archive.txt"}
    assert sorted(p.name for p in dest.iterdir()) == ["fetch.json", "video.en.vtt", "video.info.json", "video.mp4"]
    assert list(home.iterdir()) == []


def test_subtitle_choice_manual_before_automatic():
    vtt = [{"ext": "vtt", "url": "u"}]
    info = {"subtitles": {"en-GB": vtt, "fr": [{"ext": "ttml", "url": "u"}]},
            "automatic_captions": {"en": vtt, "fr": vtt, "de": vtt}}
    item = SourceItem(source_id="s", input="u", kind="video", url="u", language="fr")
    assert _choose_subtitles(info, item, FetchConfig()) == [("fr", True), ("en-GB", False)]  # fr manual is ttml only
    assert _choose_subtitles(info, item, FetchConfig(prefer_manual_subtitles=False)) == [("fr", True), ("en", True)]
    assert _choose_subtitles(info, item, FetchConfig(allow_auto_subtitles=False)) == [("en-GB", False)]
    assert _choose_subtitles(info, item, FetchConfig(subtitle_languages=("de", "en"))) == [("de", True), ("en-GB", False)]


@pytest.mark.parametrize("code, permanent, text", [
    (429, False, None), (500, False, None), (403, True, "access denied: HTTP 403"), (410, True, "video unavailable: HTTP 410"),
])
def test_http_status_decides_the_retry(site, tmp_path, code, permanent, text):
    site.fail("v.mp4", [code])
    if permanent:
        with pytest.raises(FetchError, match=text) as err:
            fetch_video(video_item(site.url("v.mp4")), tmp_path / "d", CFG)
        assert err.value.permanent and site.gets("v.mp4") == 1
    else:
        assert Path(fetch_video(video_item(site.url("v.mp4")), tmp_path / "d", CFG).video_path).is_file()
        assert site.gets("v.mp4") == 3  # failed probe, probe, download


def test_removed_video_errors_are_permanent():
    from yt_dlp.utils import DownloadError, ExtractorError

    try:
        raise ExtractorError("Private video. Sign in if you've been granted access", expected=True, video_id="abc", ie="youtube")
    except ExtractorError as exc:
        wrapped = DownloadError(f"ERROR: {exc}", sys.exc_info())
    err = classify(wrapped, "https://www.youtube.com/watch?v=abc")
    assert err.permanent and str(err) == "Private video. Sign in if you've been granted access (https://www.youtube.com/watch?v=abc)"
    assert not classify(DownloadError("ERROR: Read timed out."), "u").permanent
    assert classify(DownloadError("ERROR: Requested format is not available"), "u").permanent


@pytest.mark.parametrize("code, permanent, label", [
    (402, True, "video unavailable"), (418, True, "video unavailable"), (451, True, "access denied"),
    (408, False, "server error"), (502, False, "server error"),
])
def test_classify_uses_the_shared_status_table(code, permanent, label):
    import io

    from yt_dlp.networking.common import Response
    from yt_dlp.networking.exceptions import HTTPError
    from yt_dlp.utils import DownloadError

    try:
        raise HTTPError(Response(io.BytesIO(b""), "http://h/v.mp4", {}, status=code, reason="Why"))
    except HTTPError as exc:
        wrapped = DownloadError(f"ERROR: {exc}", sys.exc_info())
    err = classify(wrapped, "http://h/page")
    assert err.permanent is permanent and str(err) == f"{label}: HTTP {code} Why at http://h/v.mp4"
    # a bare "HTTP Error NNN" in an unclassified message is judged by the same table
    assert classify(DownloadError(f"ERROR: Unable to download webpage: HTTP Error {code}: Why"), "u").permanent is permanent


def test_find_ffmpeg_order(tmp_path, monkeypatch):
    import imageio_ffmpeg

    from pipeline.video.ffmpeg import FFmpegNotFoundError, find_ffmpeg

    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    assert find_ffmpeg(str(fake)) == str(fake) and find_ffmpeg(str(fake.parent)) == str(fake)
    with pytest.raises(FFmpegNotFoundError, match="fetch.ffmpeg = '/nope/ffmpeg' is not an executable"):
        find_ffmpeg("/nope/ffmpeg")
    monkeypatch.setenv("PATH", str(fake.parent))
    assert find_ffmpeg(None) == str(fake)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_ffmpeg(None) == imageio_ffmpeg.get_ffmpeg_exe()


def test_a_page_the_listing_resolved_is_not_asked_for_again(site, tmp_path):
    """A sources entry of one video page: the expansion's yt-dlp info is the probe's (same options),
    so fetching reads the page no second time; the files are those of a fetch that asks anew."""
    from pipeline.sources import SourceEntry, expand_entry

    url = site.url("page.html")
    entry = SourceEntry(input=url, index=0, url=url, language="en")
    (item,) = expand_entry(entry, SourceDefaults(), CFG)
    assert item.resolved is not None and item.resolved["id"] and site.gets("page.html") == 1
    reused = fetch_video(item, tmp_path / "reused", CFG)
    assert site.gets("page.html") == 1 and site.gets("v.mp4") == 1
    assert item.resolved is None  # used once: a retried fetch asks the site again

    asked = fetch_video(video_item(url, language="en"), tmp_path / "asked", CFG)
    assert site.gets("page.html") == 2
    assert Path(reused.video_path).read_bytes() == Path(asked.video_path).read_bytes()
    assert reused.info == asked.info
    assert [(Path(s.path).name, s.language) for s in reused.subtitles] == [(Path(s.path).name, s.language) for s in asked.subtitles]


def test_youtubedls_share_ssl_contexts(site, tmp_path):
    from yt_dlp.networking import common

    from pipeline.video.ytdlp import YtDlpLogger, open_ydl, ydl_params

    with open_ydl(ydl_params(CFG, YtDlpLogger("t"))):
        pass
    settings = {"verify": True, "legacy_support": False, "use_certifi": True}
    first = common.make_ssl_context(**settings)
    assert common.make_ssl_context(**settings) is first
    assert common.make_ssl_context(**{**settings, "legacy_support": True}) is not first
    assert fetch_video(video_item(site.url("v.mp4")), tmp_path / "d", CFG).video_path  # downloads still work


@pytest.mark.parametrize("url", ["https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://vimeo.com/76979871",
                                 "http://127.0.0.1:8000/story/page.html", "ytsearch3:bedtime stories",
                                 "https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG"])
def test_the_extractor_handed_to_yt_dlp_is_the_one_it_would_choose(url):
    """``extractor_key`` spares yt-dlp its own scan of every URL pattern: it must name the extractor
    that scan picks (the first suitable one of a YoutubeDL's list, Generic last)."""
    import yt_dlp

    from pipeline.video.ytdlp import extractor_key

    with yt_dlp.YoutubeDL({"quiet": True}) as ydl:
        chosen = next(key for key, ie in ydl._ies.items() if ie.suitable(url))
    assert extractor_key(url) == chosen


def test_print_templates_still_print_and_are_not_rendered_without_one(site, tmp_path, capsys, monkeypatch):
    """YoutubeDL renders its tables for ``--print`` at every step; storyloom's skips that unless a
    template is set, and with one set prints exactly as yt-dlp does."""
    import yt_dlp

    from pipeline.video.ytdlp import YtDlpLogger, open_ydl, ydl_params

    rendered = []
    original = yt_dlp.YoutubeDL.render_formats_table
    monkeypatch.setattr(yt_dlp.YoutubeDL, "render_formats_table", lambda self, info: rendered.append(1) or original(self, info))
    with open_ydl(ydl_params(CFG, YtDlpLogger("t"))) as ydl:
        info = ydl.extract_info(site.url("v.mp4"), download=False)
    assert info["id"] and rendered == []
    with open_ydl(ydl_params(CFG, YtDlpLogger("t"), simulate=True)) as ydl:
        ydl.extract_info(site.url("v.mp4"), download=True)  # every step, nothing written
    assert rendered == []
    for printing in ({"forceprint": {"video": ["title=%(title)s"]}}, {"forcetitle": True}):
        with open_ydl(ydl_params(CFG, YtDlpLogger("t"), simulate=True, **printing)) as ydl:
            ydl.extract_info(site.url("v.mp4"), download=True)
        assert capsys.readouterr().out.splitlines() == [f"title={info['title']}" if "forceprint" in printing else info["title"]]
    assert rendered
