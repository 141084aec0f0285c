"""Book fetch stage and book sources against a loopback server: retries, permanent errors, the
size cap, skip-if-present, an HTML page's own images, content-type guessing, folders of books."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import EbookConfig, FetchConfig
from pipeline.book.fetch import FETCH_RECORD, FetchError, fetch_book
from pipeline.sources import SourceDefaults, SourceEntry, SourceItem, expand_entry, guess_kind, url_source_id
from tests.bookgen import picture, png_bytes
from tests.bookgen.pdf import write_pdf
from tests.conftest import StaticServer
from tests.media_helpers import Site

CFG = FetchConfig(retries=2, backoff_s=0.01, socket_timeout_s=5)
EBOOK = EbookConfig()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = StaticServer(tmp_path_factory.mktemp("www"))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def pdf_bytes(tmp_path_factory) -> bytes:
    return write_pdf(tmp_path_factory.mktemp("pdf") / "b.pdf", "below", seed=80, pages=2).path.read_bytes()


@pytest.fixture
def site(server, pdf_bytes, request):
    site = Site(server, request.node.name)
    (site.root / "book.pdf").write_bytes(pdf_bytes)
    return site


def item(url: str) -> SourceItem:
    return SourceItem(source_id=url_source_id(url), input=url, kind="ebook", url=url)


def test_download_then_reuse_without_a_request(site, tmp_path):
    """The fetch stage through the work directory owner, run twice on one directory."""
    from pipeline.book.stages import book_work, fetch_book_file
    from pipeline.config import IngestConfig

    cfg = IngestConfig(fetch=CFG, ebook=EBOOK)
    book = item(site.url("book.pdf"))
    fetched = fetch_book_file(book_work(tmp_path, book, cfg), book, cfg)
    assert Path(fetched.path) == tmp_path / "book" / "book.pdf" and fetched.url == site.url("book.pdf")
    assert Path(fetched.path).read_bytes() == (site.root / "book.pdf").read_bytes()
    assert (tmp_path / FETCH_RECORD).is_file() and not list(tmp_path.rglob("*.part"))
    again = fetch_book_file(book_work(tmp_path, book, cfg), book, cfg)
    assert again == fetched and site.gets("book.pdf") == 1


def test_transient_errors_are_retried_and_404_is_not(site, tmp_path):
    site.fail("book.pdf", [503, 503])
    fetch_book(item(site.url("book.pdf")), tmp_path / "a", CFG, EBOOK)
    assert site.gets("book.pdf") == 3
    site.fail("book.pdf", [503, 503, 503])
    with pytest.raises(FetchError, match="gave up after 3 attempts") as err:
        fetch_book(item(site.url("book.pdf")), tmp_path / "b", CFG, EBOOK)
    assert not err.value.permanent
    with pytest.raises(FetchError, match="404") as err:
        fetch_book(item(site.url("nothing.pdf")), tmp_path / "c", CFG, EBOOK)
    assert err.value.permanent and site.gets("nothing.pdf") == 1


@pytest.mark.parametrize("code, text", [(403, "access denied: HTTP 403"), (402, "book unavailable: HTTP 402"),
                                        (418, "book unavailable: HTTP 418")])
def test_other_4xx_are_permanent_like_for_videos(site, tmp_path, code, text):
    site.fail("book.pdf", [code])
    with pytest.raises(FetchError, match=text) as err:
        fetch_book(item(site.url("book.pdf")), tmp_path, CFG, EBOOK)
    assert err.value.permanent and site.gets("book.pdf") == 1 and not list(tmp_path.rglob("*.part"))


def test_size_cap_stops_the_download(site, tmp_path):
    with pytest.raises(FetchError, match="max_download_mb=0.001") as err:
        fetch_book(item(site.url("book.pdf")), tmp_path, CFG, EbookConfig(max_download_mb=0.001))
    assert err.value.skipped and not list(tmp_path.rglob("*.pdf")) and not list(tmp_path.rglob("*.part"))


def test_not_a_book(site, tmp_path):
    (site.root / "notes.txt").write_text("just words")
    with pytest.raises(FetchError, match="not a PDF, EPUB, zip or HTML book"):
        fetch_book(item(site.url("notes.txt")), tmp_path, CFG, EBOOK)


def test_html_page_brings_its_own_images_only(site, tmp_path):
    (site.root / "img").mkdir()
    (site.root / "img" / "a.png").write_bytes(png_bytes(picture(1, 200, 150)))
    (site.root / "img" / "big.png").write_bytes(png_bytes(picture(2, 400, 300)))
    (site.root / "page.html").write_text(
        '<html><body><img src="img/a.png"><a href="img/big.png"><img src="img/a.png"></a>'
        '<img src="img/gone.png"><img src="http://other.invalid/x.png"></body></html>')
    fetched = fetch_book(item(site.url("page.html")), tmp_path, CFG, EBOOK)
    assert sorted(fetched.url_map) == [site.url("img/a.png"), site.url("img/big.png")]
    assert all((Path(fetched.path).parent / f).is_file() for f in fetched.url_map.values())
    assert all(f.startswith("files/") for f in fetched.url_map.values())  # names storyloom makes
    assert site.gets("img/a.png") == 1 and site.gets("img/gone.png") == 1


def entry(url=None, path=None, **kw) -> SourceEntry:
    return SourceEntry(input=url or path, index=0, url=url, path=path, **kw)


def test_content_type_makes_a_book(site, tmp_path):
    (site.root / "download").write_bytes((site.root / "book.pdf").read_bytes())
    site.server.httpd.RequestHandlerClass.func.extensions_map = {"": "application/pdf"}  # this test's handler
    assert guess_kind(entry(site.url("download"))) == "auto"  # the URL alone does not say
    [book] = expand_entry(entry(site.url("download")), SourceDefaults(), CFG)
    assert book.kind == "ebook" and site.requests.counts[("HEAD", f"/{site.prefix}/download")] == 1
    fetched = fetch_book(book, tmp_path, CFG, EBOOK)
    assert Path(fetched.path).name == "book.pdf"  # named from its content


def test_folder_of_books_expands_to_one_item_per_book(tmp_path, pdf_bytes):
    shelf = tmp_path / "shelf"
    (shelf / "html" / "images").mkdir(parents=True)
    (shelf / "a.pdf").write_bytes(pdf_bytes)
    (shelf / "b.epub").write_bytes(b"PK")
    (shelf / "html" / "book.html").write_text("<html></html>")
    (shelf / ".hidden.pdf").write_bytes(pdf_bytes)
    assert guess_kind(entry(path=str(shelf))) == "ebook"
    items = expand_entry(entry(path=str(shelf)), SourceDefaults(language="en"), CFG)
    assert [Path(i.path).name for i in items] == ["a.pdf", "b.epub", "book.html"]
    assert len({i.source_id for i in items}) == 3 and all(i.kind == "ebook" and i.language == "en" for i in items)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FetchError, match="holds no PDF, EPUB or HTML book"):
        expand_entry(entry(path=str(tmp_path / "empty")), SourceDefaults(), CFG)
