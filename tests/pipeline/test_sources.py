"""Sources file parsing and validation, licence normalisation, policy, ids, and the expansion of
lists (RSS feed, multi-video page, nested channel tabs) with real yt-dlp on loopback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pipeline.sources
from pipeline.config import FetchConfig
from pipeline.video.fetch import FetchError, fetch_video
from pipeline.sources import (
    SourceDefaults, SourceEntry, SourceItem, SourcesError, check_policy, expand_entry, guess_kind, load_sources,
    local_source_id, normalize_license, url_source_id,
)
from tests.conftest import StaticServer
from tests.media_helpers import Site, make_mp4

CFG = FetchConfig(retries=1, backoff_s=0.01, socket_timeout_s=5)


@pytest.mark.parametrize("text, tag", [
    ("Creative Commons Attribution license (reuse allowed)", "CC-BY"),
    ("cc-by-sa 4.0", "CC-BY-SA"),
    ("CC BY-NC", "CC-BY-NC"),
    ("Public Domain", "public-domain"),
    ("CC0 1.0", "CC0"),
    ("https://creativecommons.org/licenses/by-nc-sa/4.0/", "CC-BY-NC-SA"),
    ("https://creativecommons.org/publicdomain/zero/1.0/", "CC0"),
    ("by-nc-nd", "CC-BY-NC-ND"),
    ("Attribution-ShareAlike", "CC-BY-SA"),
    ("Creative Commons Attribution-NoDerivatives 4.0 International", "CC-BY-ND"),
    ("CC-BY-NC-SA", "CC-BY-NC-SA"),
    ("public-domain", "public-domain"),
    ("Standard YouTube License", None),
    ("all-rights-reserved", None),
    ("Creative Commons", None),
    ("cc by-sa-nd", None),
    ("", None),
    (None, None),
])
def test_normalize_license(text, tag):
    assert normalize_license(text) == tag


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_load_sources_defaults_overrides_and_paths(tmp_path):
    sources = load_sources(write(tmp_path / "cfg" / "sources.yaml", """
defaults:
  language: en
  license_allow: [cc-by, CC BY-SA, CC0, Public Domain]
  max_duration_s: 1800
  tags: [bedtime]
sources:
  - url: https://www.youtube.com/watch?v=dQw4w9WgXcQ
    license: Creative Commons Attribution license (reuse allowed)
  - path: books/the-fox.epub
    language: fr
    tags: [fox, animals]
  - path: /abs/story.mp4
  - url: goldilocks read aloud
    kind: search
    limit: 3
  - https://example.org/books/the-lion.pdf
"""))
    assert sources.base_dir == tmp_path / "cfg"
    d = sources.defaults
    assert (d.language, d.license_allow, d.max_duration_s, d.tags) == (
        "en", ("CC-BY", "CC-BY-SA", "CC0", "public-domain"), 1800.0, ("bedtime",))
    yt, fox, abs_, search, lion = sources.entries
    assert yt.license == "CC-BY" and yt.input == "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    assert fox.path == str(tmp_path / "cfg" / "books" / "the-fox.epub") and fox.input == "books/the-fox.epub"
    assert abs_.path == "/abs/story.mp4"
    assert search.url == "ytsearch3:goldilocks read aloud"
    assert lion.url == "https://example.org/books/the-lion.pdf" and lion.index == 4

    items = [expand_entry(e, d, CFG)[0] for e in (yt, fox, lion)]  # no network for these
    assert [(i.source_id, i.kind, i.language, i.license, i.tags) for i in items] == [
        ("youtube-dqw4w9wgxcq", "video", "en", "CC-BY", ("bedtime",)),
        (local_source_id(Path(fox.path)), "ebook", "fr", None, ("fox", "animals")),
        (items[2].source_id, "ebook", "en", None, ("bedtime",)),
    ]
    assert re.fullmatch(r"file-the-fox-[0-9a-f]{8}", items[1].source_id)
    assert re.fullmatch(r"generic-the-lion-[0-9a-f]{8}", items[2].source_id)


@pytest.mark.parametrize("body, message", [
    ("sources: []", "'sources:' must be a non-empty list"),
    ("sauces: [a]", "unknown top-level key(s) sauces"),
    ("sources:\n  - {url: https://a.org/v, path: x.mp4}", r"sources[0] (https://a.org/v): give exactly one of url: or path:"),
    ("sources:\n  - {title: x}", "sources[0] (no url/path): give exactly one of url: or path:"),
    ("sources:\n  - {url: https://a.org/v}\n  - {url: https://a.org/w, kind: movie}", "sources[1] (https://a.org/w): kind must be one of"),
    ("sources:\n  - {url: https://a.org/v, lisence: CC-BY}", "unknown key(s) lisence"),
    ("sources:\n  - {url: https://a.org/v, license: GPL}", "unknown licence 'GPL'; use one of CC-BY"),
    # ftp:// is an fsspec URL now (read like s3://); a scheme no filesystem knows is still refused
    ("sources:\n  - {url: rtsp://a.org/v}", "url must start with http:// or https://"),
    ("sources:\n  - {url: https://a.org/v, limit: 0}", "limit must be a positive integer"),
    ("sources:\n  - {url: cats, kind: search}", "a plain-text search needs limit:"),
    ("sources:\n  - {path: a.mp4, kind: playlist}", "a local path can be kind video or ebook"),
    ("sources:\n  - {url: https://a.org/v, language: english!}", "language must be a language code"),
    # YAML 1.2: only unquoted true/false are booleans (`language: no` is Norwegian, see below)
    ("sources:\n  - {url: https://a.org/v, language: false}",
     "language must be a language code such as en or pt-BR, got False (YAML reads unquoted true/false as booleans: quote the value)"),
    ("sources:\n  - {url: https://a.org/v, title: TRUE}", "title must be a string, got True (YAML reads unquoted true/false"),
    ("defaults: {language: 12}\nsources: [https://a.org/v]", "defaults: language must be a language code such as en or pt-BR, got 12"),
    ("sources:\n  - {url: https://a.org/v, tags: [a, true]}", "tags must be a list of strings, got ['a', True]"),
    ("on: 1\nsources: [https://a.org/v]", "unknown top-level key(s) on; known: defaults, sources"),
    ("true: 1\nsources: [https://a.org/v]", "unknown top-level key(s) True; known: defaults, sources"),
    ("sources:\n  - https://a.org/v\n  - {url: https://a.org/v}", "sources[1] (https://a.org/v) repeats sources[0]"),
    ("defaults: {license_allow: [CC-BY, proprietary]}\nsources: [https://a.org/v]", "defaults: license_allow: unknown licence 'proprietary'"),
    ("defaults: {max_duration_s: -5}\nsources: [https://a.org/v]", "defaults: max_duration_s must be a positive number"),
    ("defaults: {url: https://a.org}\nsources: [https://a.org/v]", "defaults: unknown key(s) url"),
    ("sources: [\n", "is not valid YAML"),
])
def test_bad_sources_raise_with_a_clear_message(tmp_path, body, message):
    with pytest.raises(SourcesError) as err:
        load_sources(write(tmp_path / "s.yaml", body))
    assert message in str(err.value)


def test_yaml_1_2_keeps_no_yes_on_off_as_text(tmp_path):
    """`language: no` is Norwegian, not False: the sources file is read with YAML 1.2 booleans."""
    sources = load_sources(write(tmp_path / "sources.yaml", """
defaults:
  language: no
  tags: [yes, on, off]
sources:
  - url: https://example.org/books/troll.pdf
  - url: https://example.org/books/fox.pdf
    language: NO
    title: no
  - url: https://example.org/books/sami.pdf
    language: se
"""))
    assert sources.defaults.language == "no" and sources.defaults.tags == ("yes", "on", "off")
    troll, fox, sami = sources.entries
    assert (troll.language, fox.language, fox.title, sami.language) == (None, "NO", "no", "se")
    items = [expand_entry(e, sources.defaults, CFG)[0] for e in sources.entries]  # e-book URLs: no network
    assert [(i.language, i.title) for i in items] == [("no", None), ("NO", "no"), ("se", None)]
    assert all(isinstance(i.language, str) for i in items)


@pytest.mark.parametrize("body, message", [
    ("", "must be a mapping with a 'sources:' list"),
    ("- https://a.org/v", "must be a mapping with a 'sources:' list"),
])
def test_sources_file_must_be_a_mapping(tmp_path, body, message):
    path = write(tmp_path / "s.yaml", body)
    with pytest.raises(SourcesError) as err:
        load_sources(path)
    assert str(err.value) == f"sources file {path} {message}"


def test_sources_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"sources: [\xff\xfe]\n")
    with pytest.raises(SourcesError, match=r"cannot read sources file .*s\.yaml"):
        load_sources(path)


def test_missing_sources_file(tmp_path):
    with pytest.raises(SourcesError, match="cannot read sources file"):
        load_sources(tmp_path / "nope.yaml")


def entry(url=None, path=None, **kw) -> SourceEntry:
    return SourceEntry(input=url or path, index=0, url=url, path=path, **kw)


def test_guess_kind_and_ids():
    assert guess_kind(entry("https://a.org/books/lion.PDF")) == "ebook"
    assert guess_kind(entry("https://a.org/story.html")) == "auto"  # pages go to yt-dlp
    assert guess_kind(entry("https://a.org/v/story.mp4")) == "video"
    assert guess_kind(entry("https://youtu.be/dQw4w9WgXcQ")) == "video"
    assert guess_kind(entry("https://www.youtube.com/playlist?list=PL123")) == "auto"
    assert guess_kind(entry("ytsearch5:fox")) == "search"
    assert guess_kind(entry(path="/b/fox.epub")) == "ebook" and guess_kind(entry(path="/b/fox.mkv")) == "video"
    assert url_source_id("https://youtu.be/dQw4w9WgXcQ") == "youtube-dqw4w9wgxcq"
    a, b = url_source_id("https://a.org/video.mp4"), url_source_id("https://b.org/video.mp4")
    assert a != b and a.startswith("generic-video-") and a == url_source_id("https://a.org/video.mp4")
    assert url_source_id("x", "HTML5MediaEmbed", "page-1").startswith("generic-page-1-")
    assert local_source_id(Path("/x/My Story.mp4")) == local_source_id(Path("/x/My Story.mp4")) != local_source_id(Path("/y/My Story.mp4"))


def test_object_store_urls_are_single_files_read_through_fsspec(tmp_path):
    sources = load_sources(write(tmp_path / "sources.yaml", """
sources:
  - path: s3://bucket/books/fox.epub
  - url: s3://bucket/videos/tale.mp4
  - url: gs://bucket/videos/clip
  - url: file:///data/local/tale.mp4
  - path: file:///data/books/lion.pdf
"""))
    fox, tale, clip, local, lion = sources.entries
    assert (fox.url, fox.path, guess_kind(fox)) == ("s3://bucket/books/fox.epub", None, "ebook")
    assert (tale.url, guess_kind(tale)) == ("s3://bucket/videos/tale.mp4", "video")
    assert guess_kind(clip) == "video"  # no telling extension: a store object is a file, never a yt-dlp page
    assert (local.url, local.path) == (None, "/data/local/tale.mp4") and lion.path == "/data/books/lion.pdf"
    assert fox.source_id.startswith("generic-fox-") and fox.source_id != load_sources(write(
        tmp_path / "other.yaml", "sources: [{path: s3://other/books/fox.epub}]")).entries[0].source_id
    [item] = expand_entry(fox, sources.defaults, FetchConfig())  # no network: the object is one item
    assert (item.kind, item.url, item.path) == ("ebook", "s3://bucket/books/fox.epub", None)
    with pytest.raises(SourcesError, match="object store URL is one file"):
        load_sources(write(tmp_path / "bad.yaml", "sources: [{url: s3://bucket/videos/, kind: playlist}]"))


def test_check_policy():
    item = SourceItem(source_id="s", input="u", kind="video", url="u")
    allow = SourceDefaults(license_allow=("CC-BY",), max_duration_s=60)
    assert check_policy(item, {"license": "Creative Commons Attribution license (reuse allowed)", "duration": 60}, allow) is None
    assert check_policy(item, {"license": "Standard YouTube License"}, allow).startswith(
        "licence 'Standard YouTube License' is not an open licence (allowed: CC-BY")
    assert check_policy(item, {"license": "by-sa"}, allow) == "licence CC-BY-SA not allowed (allowed: CC-BY)"
    item.license = "CC-BY"  # the entry's licence wins over the site's
    assert check_policy(item, {"license": "by-sa", "duration": 61.2}, allow) == "video is 61 s long, over max_duration_s=60"
    assert check_policy(item, {"live_status": "is_live"}, SourceDefaults()) == "live streams are not supported"
    assert check_policy(item, {"license": None, "duration": None}, SourceDefaults()) is None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = StaticServer(tmp_path_factory.mktemp("www"))
    yield srv
    srv.close()


@pytest.fixture
def site(server, request):
    site = Site(server, request.node.name)
    for name in ("a", "b", "c"):
        make_mp4(site.root / f"{name}.mp4", seconds=1)
    return site


def test_rss_feed_expands_with_limit_and_keeps_feed_metadata(site, tmp_path):
    items_xml = "".join(
        f"<item><title>Story {n}</title><enclosure url='{site.url(n + '.mp4')}' type='video/mp4'/>"
        f"<guid>story-{n}</guid><itunes:duration>{d}</itunes:duration></item>"
        for n, d in (("a", "00:01"), ("b", "40:00"), ("c", "00:01")))
    write(site.root / "feed.xml", "<?xml version='1.0'?><rss version='2.0' xmlns:itunes="
          f"'http://www.itunes.com/dtds/podcast-1.0.dtd'><channel><title>Story time</title>{items_xml}</channel></rss>")
    feed = entry(site.url("feed.xml"), license="CC-BY", language="de")
    items = expand_entry(feed, SourceDefaults(limit=2), CFG)
    assert [i.info["title"] for i in items] == ["Story a", "Story b"]
    assert all(i.kind == "video" and i.license == "CC-BY" and i.language == "de" for i in items)
    assert len({i.source_id for i in items}) == 2 and all(i.source_id.startswith("generic-") for i in items)
    assert [i.source_id for i in expand_entry(feed, SourceDefaults(limit=2), CFG)] == [i.source_id for i in items]

    media = fetch_video(items[0], tmp_path / "a", CFG)  # the feed's title and duration survive
    assert media.info["title"] == "Story a" and media.info["id"] == "story-a" and media.info["url"] == site.url("a.mp4")
    with pytest.raises(FetchError, match="2400 s long") as err:
        fetch_video(items[1], tmp_path / "b", CFG, defaults=SourceDefaults(max_duration_s=600))
    assert err.value.skipped and site.gets("b.mp4") <= 1  # at most yt-dlp's probe of the link


def test_page_with_several_videos_expands_to_each(site, tmp_path):
    write(site.root / "shelf.html", "<html><head><title>Shelf</title></head><body>"
          + "".join(f"<video><source src='{n}.mp4' type='video/mp4'></video>" for n in "abc") + "</body></html>")
    items = expand_entry(entry(site.url("shelf.html")), SourceDefaults(), CFG)
    assert [i.playlist_index for i in items] == [1, 2, 3] and len({i.source_id for i in items}) == 3
    assert all(i.url == site.url("shelf.html") for i in items)
    assert [i.source_id for i in expand_entry(entry(site.url("shelf.html"), limit=2), SourceDefaults(), CFG)] == [
        i.source_id for i in items[:2]]

    media = fetch_video(items[1], tmp_path / "b", CFG)
    assert Path(media.video_path).read_bytes() == (site.root / "b.mp4").read_bytes()
    assert site.gets("a.mp4") == 0 and site.gets("c.mp4") == 0


def test_single_page_expands_to_one_item_and_dead_lists_fail(site):
    write(site.root / "one.html", "<html><body><video src='a.mp4'></video></body></html>")
    [item] = expand_entry(entry(site.url("one.html"), title="My title"), SourceDefaults(), CFG)
    assert item.source_id == url_source_id(site.url("one.html")) and item.title == "My title" and item.playlist_index is None
    with pytest.raises(FetchError, match="HTTP 404") as err:
        expand_entry(entry(site.url("gone.xml"), kind="playlist"), SourceDefaults(), CFG)
    assert err.value.permanent


def test_nested_lists_are_flattened_within_the_limit(monkeypatch):
    """A YouTube channel lists its tabs as nested playlists of video references (offline fake)."""
    def ref(video_id):
        return {"_type": "url", "ie_key": "Youtube", "id": video_id, "url": f"https://www.youtube.com/watch?v={video_id}"}

    channel = {"_type": "playlist", "id": "UCx", "entries": [
        {"_type": "playlist", "id": "videos", "entries": iter([ref("v1"), None, ref("v2"), ref("v3")])},
        {"_type": "playlist", "id": "shorts", "entries": [ref("s1")]},
    ]}
    calls = []
    monkeypatch.setattr(pipeline.sources, "extract_flat", lambda url, cfg, limit: calls.append(limit) or channel)
    items = expand_entry(entry("https://www.youtube.com/@tales", kind="channel", limit=3), SourceDefaults(), CFG)
    assert calls == [3]
    assert [i.source_id for i in items] == ["youtube-v1", "youtube-v2", "youtube-v3"]
    assert items[0].url == "https://www.youtube.com/watch?v=v1" and items[0].info["ie_key"] == "Youtube"

    channel["entries"] = []
    with pytest.raises(FetchError, match="lists no videos"):
        expand_entry(entry("https://www.youtube.com/@tales", kind="channel"), SourceDefaults(), CFG)
