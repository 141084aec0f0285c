"""The static preview: a page per story and an index, checked in a real headless Chromium.

The browser tests load the pages over ``file://`` (what a user double-clicking gets) and once
through a real ``http.server``; they fail on any console error, failed request or broken image.
Screenshots of the index and one story page are kept as test artifacts under
``$STORYLOOM_TEST_ARTIFACTS`` (else ``<repo>/.artifacts/preview/``).
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections import Counter
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flows.cli import main as storyloom
from pipeline.dataset.preview import (
    NONE_VALUE,
    PreviewConfig,
    PreviewError,
    build_preview,
    source_link,
)
from pipeline.dataset.reader import open_dataset

REPO = Path(__file__).resolve().parents[3]
# 6 stories -> 3 screens of 2 over 2 row files of 4: paging is exercised, and screens and filters
# whose stories straddle row files
CONFIG = PreviewConfig(page_size=2, rows_per_file=4)


@pytest.fixture(scope="module")
def preview(mixed_dataset, tmp_path_factory):
    """The preview of the mixed dataset, with the catalog it was built from."""
    out = tmp_path_factory.mktemp("preview") / "site"
    build_preview(mixed_dataset, out, CONFIG, progress=False)
    catalog = open_dataset(mixed_dataset).catalog().to_pylist()
    stories: dict[str, list[dict]] = {}
    for row in catalog:
        stories.setdefault(row["story_id"], []).append(row)
    for rows in stories.values():
        rows.sort(key=lambda r: r["frame"])
    return out, stories


def test_every_story_gets_a_page_and_its_frames(preview):
    out, stories = preview
    assert len(stories) == 6
    assert sorted(p.stem for p in (out / "stories").glob("*.html")) == sorted(stories)
    for story_id, rows in stories.items():
        frames = sorted(p.name for p in (out / "frames" / story_id).iterdir())
        assert [f for f in frames if f.endswith(".jpg")] == [f"{r['frame']:03d}.jpg" for r in rows]
        assert [f for f in frames if f.endswith(".mask.png")] == [f"{r['frame']:03d}.mask.png" for r in rows if r["mask"]]
        page = (out / "stories" / f"{story_id}.html").read_text(encoding="utf-8")
        assert page.count('<li class="frame"') == len(rows)
    assert (out / "index.html").is_file() and (out / "index" / "facets.js").is_file()
    assert len(list((out / "index").glob("rows-*.js"))) == 2


def test_a_rebuild_writes_the_same_bytes_and_nothing_new(preview, mixed_dataset, tmp_path):
    out, _ = preview
    again = tmp_path / "again"
    first = build_preview(mixed_dataset, again, CONFIG, progress=False)
    assert first.written == sum(1 for p in again.rglob("*") if p.is_file())
    assert _tree(again) == _tree(out)
    second = build_preview(mixed_dataset, again, CONFIG, progress=False)
    assert (second.written, second.removed) == (0, 0)


def test_stale_story_files_are_removed_and_nothing_else(preview, mixed_dataset, tmp_path):
    out, _ = preview
    site = tmp_path / "site"
    shutil.copytree(out, site)
    (site / "stories" / "gone-story.html").write_text("old", encoding="utf-8")
    (site / "frames" / "gone-story").mkdir()
    (site / "frames" / "gone-story" / "000.jpg").write_bytes(b"old")
    (site / "index" / "rows-00009.js").write_text("old", encoding="utf-8")
    (site / "notes.txt").write_text("mine", encoding="utf-8")  # not the preview's: left alone
    summary = build_preview(mixed_dataset, site, CONFIG, progress=False)
    assert summary.removed == 3
    assert (site / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert not (site / "frames" / "gone-story").exists()
    assert _tree(site) == {**_tree(out), "notes.txt": b"mine"}


def test_story_pages_escape_text_and_link_the_time_span():
    assert source_link("https://www.youtube.com/watch?v=abc&t=3s", 12.9, 20.0, None) == \
        "https://www.youtube.com/watch?v=abc&t=12s"
    assert source_link("https://youtu.be/abc", 0.5, 2.0, None) == "https://youtu.be/abc?t=0s"
    assert source_link("https://example.org/v.mp4", 2.72, 6.0, None) == "https://example.org/v.mp4#t=2.72,6"
    assert source_link("https://example.org/b.pdf", None, None, 7) == "https://example.org/b.pdf#page=7"
    assert source_link("https://example.org/b.epub", None, None, 7) == "https://example.org/b.epub"
    assert source_link("javascript:alert(1)", 1.0, 2.0, None) is None
    assert source_link(None, 1.0, 2.0, None) is None

    from pipeline.dataset.preview import story_html
    from pipeline.output.contract import Frame, SourceInfo, Story

    story = Story("x-1", SourceInfo(kind="video", url="javascript:alert(1)", title="<b>T</b> & co", language="en"),
                  [Frame(0, "000.jpg", 10, 10, t_start=1.0, t_end=2.0, text="<script>alert(1)</script>",
                         caption="a \"quoted\" <i>", flags=["no_speech"])], split="train")
    page = story_html(story, "shards/train-000000.tar", 1, 1, None, None)
    assert "<script>" not in page and "<b>T</b>" not in page and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "&lt;b&gt;T&lt;/b&gt; &amp; co" in page
    assert 'href="javascript:' not in page


def test_the_command_writes_the_preview_into_the_dataset_by_default(mixed_dataset, tmp_path, capsys):
    dataset = tmp_path / "dataset"
    shutil.copytree(mixed_dataset, dataset, ignore=shutil.ignore_patterns("work"))
    assert storyloom(["preview", str(dataset), "--page-size", "4"]) == 0
    assert "6 stories, 27 frames (2 index pages" in capsys.readouterr().out
    assert len(list((dataset / "preview" / "stories").glob("*.html"))) == 6
    assert '"page_size":4' in (dataset / "preview" / "index" / "facets.js").read_text(encoding="utf-8")


def test_bad_inputs_exit_2_with_a_message(tmp_path, capsys, mixed_dataset):
    assert storyloom(["preview", str(tmp_path / "nowhere")]) == 2
    assert "no such directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert storyloom(["preview", str(tmp_path / "empty")]) == 2
    assert "not a storyloom dataset" in capsys.readouterr().err
    assert storyloom(["preview", str(mixed_dataset), "--out", str(mixed_dataset)]) == 2
    assert "its own directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        storyloom(["preview", str(mixed_dataset), "--page-size", "0"])
    assert exit_info.value.code == 2
    assert "page size" in capsys.readouterr().err
    with pytest.raises(PreviewError, match="page size"):
        build_preview(mixed_dataset, tmp_path / "x", PreviewConfig(page_size=0))


@pytest.mark.parametrize("damage", ["story-not-in-catalog", "catalog-story-not-in-shards"])
def test_a_catalog_that_disagrees_with_the_shards_exits_2(mixed_dataset, tmp_path, capsys, damage):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    dataset = tmp_path / "dataset"
    shutil.copytree(mixed_dataset, dataset, ignore=shutil.ignore_patterns("work"))
    catalog = pq.read_table(dataset / "catalog.parquet")
    last = max(catalog["story_id"].to_pylist())
    if damage == "story-not-in-catalog":
        catalog = catalog.filter(pc.not_equal(catalog["story_id"], last))
        expected = f"story {last} is not in the catalog"
    else:
        ghost = catalog.filter(pc.equal(catalog["story_id"], last))
        ghost = ghost.set_column(0, catalog.schema.field("story_id"),
                                 pa.array(["zz-ghost"] * ghost.num_rows, pa.string()))
        catalog = pa.concat_tables([catalog, ghost])
        expected = "1 story(ies) of the catalog are in no shard: zz-ghost"
    pq.write_table(catalog, dataset / "catalog.parquet")
    assert storyloom(["preview", str(dataset), "--out", str(tmp_path / "site")]) == 2
    assert expected in capsys.readouterr().err


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        storyloom(["preview", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--out" in text and "--page-size" in text and "http.server" in text


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if executable is None:
        pytest.skip("no chromium on PATH for the headless browser tests")
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as exc:  # noqa: BLE001 - a browser that cannot start here is an environment gap
            pytest.skip(f"chromium at {executable} does not start: {exc}")
        yield browser
        browser.close()


class _Watched:
    """A page that records console errors, page errors, failed requests and HTTP errors."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1200, "height": 900})
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def open(self, url: str) -> None:
        self.page.goto(url, wait_until="load")

    def wait_index(self) -> None:
        # the index sets data-ready when a render has finished (rows in place)
        self.page.wait_for_function("document.body.getAttribute('data-ready') !== null")

    def close(self) -> None:
        self.page.close()
        assert self.problems == []


def _artifacts() -> Path:
    folder = Path(os.environ.get("STORYLOOM_TEST_ARTIFACTS") or REPO / ".artifacts") / "preview"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _assert_not_blank(png: Path) -> None:
    from PIL import Image, ImageStat

    assert png.is_file() and png.stat().st_size > 1000
    with Image.open(png) as image:
        stat = ImageStat.Stat(image.convert("L"))
        assert image.width >= 800 and stat.stddev[0] > 5, f"{png} looks blank"


def _check_story_page(watched: _Watched, url: str, rows: list[dict]) -> None:
    watched.open(url)
    page = watched.page
    assert page.locator("li.frame").count() == len(rows)
    assert page.locator("li.frame .text").all_text_contents() == [r["text"] for r in rows]
    assert [int(i) for i in page.locator("li.frame").evaluate_all("els => els.map(e => e.dataset.index)")] == \
        [r["frame"] for r in rows]
    sizes = page.locator("li.frame img").evaluate_all(
        "imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert sizes == [[True, r["width"], r["height"]] for r in rows]
    captions = [r["caption"] for r in rows if r["caption"]]
    assert page.locator("li.frame .caption").all_text_contents() == captions
    flags = [f for r in rows for f in r["flags"]]
    assert page.locator("li.frame .flag").all_text_contents() == flags
    first = rows[0]
    assert page.locator("td.meta-licence").text_content() == (first["license"] or "—")
    assert page.locator("td.meta-language").text_content() == (first["language"] or "—")


def test_every_story_page_loads_in_chromium_with_its_frames(preview, browser):
    out, stories = preview
    watched = _Watched(browser)
    for story_id, rows in stories.items():
        _check_story_page(watched, (out / "stories" / f"{story_id}.html").as_uri(), rows)
        links = watched.page.locator("a.source").evaluate_all("as => as.map(a => a.href)")
        if rows[0]["t_start"] is not None:  # a video: each frame links its time span
            assert any(link.endswith(f"#t={_secs(rows[1]['t_start'])},{_secs(rows[1]['t_end'])}") for link in links)
    # the story with a mask: its page is the kept screenshot (pictures, text, flags, a mask link)
    masked = next(sid for sid, rows in stories.items() if any(r["mask"] for r in rows))
    watched.open((out / "stories" / f"{masked}.html").as_uri())
    assert watched.page.locator("a.mask").count() == sum(1 for r in stories[masked] if r["mask"])
    watched.page.locator("a[rel=next]").first.click()
    watched.page.wait_for_load_state("load")
    assert watched.page.url.endswith(".html") and masked not in watched.page.url
    watched.open((out / "stories" / f"{masked}.html").as_uri())
    shot = _artifacts() / "story.png"
    watched.page.screenshot(path=str(shot), full_page=True)
    watched.close()
    _assert_not_blank(shot)


def test_the_index_filters_and_pages_like_the_catalog(preview, browser):
    out, stories = preview
    watched = _Watched(browser)
    page = watched.page
    watched.open((out / "index.html").as_uri())
    watched.wait_index()
    assert page.locator("#count").text_content() == "6 stories"
    assert page.locator("#page-info").text_content() == "page 1 of 3"
    shot = _artifacts() / "index.png"
    page.screenshot(path=str(shot), full_page=True)
    _assert_not_blank(shot)

    def listed() -> list[str]:
        """Every story the current filter lists, across all its pages (clicking next)."""
        seen = []
        while True:
            seen += page.locator("#stories tbody tr").evaluate_all("trs => trs.map(t => t.dataset.story)")
            if page.locator("#next").is_disabled():
                return seen
            ready = page.evaluate("document.body.getAttribute('data-ready')")
            page.locator("#next").click()
            page.wait_for_function(f"document.body.getAttribute('data-ready') !== '{ready}'")

    everything = listed()
    assert everything == sorted(stories)  # every story once, in id order, over 3 pages
    assert page.locator("#page-info").text_content() == "page 3 of 3"
    frames = page.locator("#stories tbody tr td.num").all_text_contents()
    assert frames[1::2] == [str(len(stories[sid])) for sid in everything[-len(frames) // 2:]]

    facts = {
        "language": Counter(rows[0]["language"] or NONE_VALUE for rows in stories.values()),
        "license": Counter(rows[0]["license"] or NONE_VALUE for rows in stories.values()),
        "flag": Counter(f for rows in stories.values() for f in {f for r in rows for f in r["flags"]}),
    }
    assert len(facts["language"]) >= 2 and len(facts["license"]) >= 3 and "no_text_source" in facts["flag"]
    for facet, counts in facts.items():
        options = page.locator(f"#filter-{facet} option").evaluate_all(
            "os => os.filter(o => o.value).map(o => [o.value, Number(o.dataset.count)])")
        assert dict(options) == dict(counts)
        for value, count in counts.items():
            ready = page.evaluate("document.body.getAttribute('data-ready')")
            page.select_option(f"#filter-{facet}", value)
            page.wait_for_function(f"document.body.getAttribute('data-ready') !== '{ready}'")
            assert page.locator("#count").text_content() == f"{count} stor{'y' if count == 1 else 'ies'}"
            expected = sorted(sid for sid, rows in stories.items()
                              if value in ({f for r in rows for f in r["flags"]} if facet == "flag"
                                           else {rows[0][facet] or NONE_VALUE}))
            assert listed() == expected
        page.locator("#reset").click()
        page.wait_for_function("document.querySelector('#count').textContent === '6 stories'")

    # two filters at once: the intersection (English and CC-BY)
    both = sorted(sid for sid, rows in stories.items() if rows[0]["language"] == "en" and rows[0]["license"] == "CC-BY")
    watched.open((out / "index.html").as_uri() + "#language=en&license=CC-BY")
    watched.wait_index()
    assert page.locator("#filter-language").input_value() == "en"
    assert listed() == both and both
    # a story link from the index opens its page
    page.locator("#stories tbody a").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/stories/{both[0]}.html")
    watched.close()


def test_the_preview_served_by_http_server(preview, browser):
    out, stories = preview
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        watched = _Watched(browser)
        watched.open(f"{base}/index.html")
        watched.wait_index()
        assert watched.page.locator("#count").text_content() == "6 stories"
        story_id = max(stories)
        _check_story_page(watched, f"{base}/stories/{story_id}.html", stories[story_id])
        watched.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def _secs(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
