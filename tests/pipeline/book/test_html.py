"""HTML reader (local files, zips, pages fetched with their images) through plain calls."""

from __future__ import annotations

import pytest

from pipeline.config import EbookConfig, IngestConfig
from pipeline.book.model import EbookError
from pipeline.book.reader import open_book
from pipeline.book.html import html_metadata, parse_html
from tests.bookgen import AUTHOR, ILLUSTRATOR, TITLE, assert_matches, parse_book, picture, png_bytes
from tests.bookgen.html import write_html, zip_folder

VARIANTS = ("gutenberg", "table", "plain")


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    root = tmp_path_factory.mktemp("html")
    return {v: write_html(root / v, v, seed=70 + i) for i, v in enumerate(VARIANTS)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_pairs_exactly(books, variant, tmp_path):
    truth = books[variant]
    result, images = parse_book(truth.path, tmp_path)
    assert_matches(truth, result, images)
    source = result["source"]
    assert (source["title"], source["creator"], source["illustrators"]) == (TITLE, AUTHOR, [ILLUSTRATOR])
    assert (source["license"], source["language"]) == (truth.license, "en")


def test_thumbnails_are_replaced_by_the_full_size_image(books, tmp_path):
    _, images = parse_book(books["gutenberg"].path, tmp_path)
    assert [image.shape[:2] for image in images] == [(480, 640)] * 4  # the thumbnails are 128 px wide


def test_gutenberg_boilerplate_is_the_distributor_s(books, tmp_path):
    result, _ = parse_book(books["gutenberg"].path, tmp_path)
    assert result["dropped"]["matter_distributor"] == 2  # header and licence
    assert result["source"]["license_reported"].startswith("This eBook is in the public domain")


def test_text_direction_is_read_from_the_ends(books, tmp_path):
    # "plain" puts each paragraph before its picture: loose text before the first picture, none after
    result, _ = parse_book(books["plain"].path, tmp_path)
    assert [f["caption"] for f in result["frames"]] == [f"Scene {i} of the story" for i in range(1, 5)]


def test_a_zipped_html_book(books, tmp_path):
    archive = zip_folder(books["gutenberg"].path.parent, tmp_path / "pg.zip")
    result, images = parse_book(archive, tmp_path / "work")
    assert_matches(books["gutenberg"], result, images)


def test_a_fetched_page_reads_its_images_through_the_url_map(tmp_path):
    page = tmp_path / "book" / "book.html"
    page.parent.mkdir()
    (page.parent / "files").mkdir()
    (page.parent / "files" / "a.png").write_bytes(png_bytes(picture(3, 200, 150)))
    page.write_text('<html><body><img src="pics/a.png" alt="A fox"><p>The fox ran.</p>'
                    '<img src="/elsewhere/b.png"><img src="https://other.example/c.png"></body></html>')
    url_map = {"http://books.example/fox/pics/a.png": "files/a.png"}
    with pytest.raises(EbookError, match=r"1 image\(s\) missing \(/elsewhere/b.png\); 1 image\(s\) remote"):
        with open_book(page, EbookConfig(), base_url="http://books.example/fox/index.html", url_map=url_map):
            pass
    page.write_text('<html><body><img src="pics/a.png" alt="A fox"><p>The fox ran.</p></body></html>')
    with open_book(page, EbookConfig(), base_url="http://books.example/fox/index.html", url_map=url_map) as book:
        pictures = [p for pg in book.pages for p in pg.pictures]
        assert [(p.size, p.alt) for p in pictures] == [((200, 150), "A fox")]


def test_metadata_from_the_head():
    root = parse_html(b'<html lang="pt-BR"><head><title>The Project Gutenberg eBook of Fox Tales, by Ana Lima and Rui Sousa'
                      b'</title><meta name="illustrator" content="Bea Reis"><meta name="dc.rights" content="CC BY-SA 4.0">'
                      b"</head><body></body></html>", "x.html")
    meta = html_metadata(root)
    assert (meta.title, meta.authors, meta.illustrators) == ("Fox Tales", ["Ana Lima", "Rui Sousa"], ["Bea Reis"])
    assert (meta.language, meta.license) == ("pt-BR", "CC BY-SA 4.0")


def test_images_outside_the_book_folder_are_missing(tmp_path):
    (tmp_path / "outside.png").write_bytes(png_bytes(picture(4, 200, 150)))
    book = tmp_path / "book"
    book.mkdir()
    (book / "index.html").write_text('<html><body><img src="../outside.png"><p>Hi</p></body></html>')
    with pytest.raises(EbookError, match="missing"):
        with open_book(book / "index.html", EbookConfig()):
            pass


def test_inline_images_and_svg(tmp_path):
    import base64

    data = base64.b64encode(png_bytes(picture(5, 300, 200))).decode()
    page = tmp_path / "inline.html"
    page.write_text(f'<html><body><p>Before.</p><img src="data:image/png;base64,{data}"><img src="x.svg"></body></html>')
    with open_book(page, EbookConfig()) as book:
        assert [p.size for pg in book.pages for p in pg.pictures] == [(300, 200)]
        assert book.notes == ["1 SVG image(s) left out (vector images are not rasterised)"]


def test_no_illustrations_is_a_clear_failure(tmp_path):
    page = tmp_path / "words.html"
    page.write_text("<html><body><h1>Words</h1><p>Only words here.</p><img src='dot.png'></body></html>")
    (tmp_path / "dot.png").write_bytes(png_bytes(picture(6, 16, 16)))
    with pytest.raises(EbookError, match="no illustrations found"):
        parse_book(page, tmp_path / "work", IngestConfig())


def _read(tmp_path, body: str, images: dict[str, tuple[int, int]]):
    for name, (w, h) in images.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(picture(len(name) + w, w, h)))
    page = tmp_path / "book.html"
    page.write_text(f"<html><body>{body}</body></html>")
    return open_book(page, EbookConfig())


def test_the_largest_version_of_a_picture_is_taken(tmp_path):
    body = ('<a href="big/a.png"><span><img src="a_th.png" alt="A"></span></a>'  # a link a few levels up
            '<img src="b.png" srcset="b_small.png 200w, b_large.png 900w">'
            '<picture><source srcset="c_2x.png 2x"><img src="c.png"></picture>'
            '<a href="gone.png"><img src="d_th.png"></a>'  # the full-size file is not in the book
            '<a href="e_small.png"><img src="e.png"></a>')  # the link goes to a smaller file
    sizes = {"big/a.png": (800, 600), "a_th.png": (160, 120), "b.png": (400, 300), "b_small.png": (200, 150),
             "b_large.png": (900, 675), "c.png": (300, 200), "c_2x.png": (600, 400), "d_th.png": (160, 120),
             "e.png": (500, 400), "e_small.png": (250, 200)}
    with _read(tmp_path, body, sizes) as book:
        pictures = [p for page in book.pages for p in page.pictures]
        assert [(p.ref, p.size) for p in pictures] == [("big/a.png", (800, 600)), ("b_large.png", (900, 675)),
                                                       ("c_2x.png", (600, 400)), ("d_th.png", (160, 120)),
                                                       ("e.png", (500, 400))]
        assert pictures[0].alt == "A" and pictures[0].load().shape == (600, 800, 3)


def test_what_a_reader_does_not_see_is_left_out(tmp_path):
    body = ('<p>The fox <span class="pagenum"><a id="Page_7">[Pg 7]</a></span>ran home.</p>'
            '<p class="pagenum">[8]</p><p>12</p>'  # page numbers standing alone
            '<p>The owl [Pg 9] slept.</p>'  # a page marker whose class a converter renamed
            '<div style="display: none"><p>Hidden note.</p><img src="x.png"></div><p hidden>Also hidden.</p>'
            '<span epub:type="pagebreak" title="10">10</span>'
            '<p>Footnote [1] stays.</p>')
    with _read(tmp_path, body, {"x.png": (300, 200)}) as book:
        blocks = [(t.text, t.role) for page in book.pages for t in page.texts]
        assert [p for page in book.pages for p in page.pictures] == []
    assert blocks == [("The fox ran home.", "body"), ("12", "running"), ("The owl slept.", "body"),
                      ("Footnote [1] stays.", "body")]


def test_a_caption_repeating_the_alt_text_is_a_description(tmp_path):
    body = ('<div class="figcenter"><img src="a.png" alt="The fox at home"><p class="caption">The fox at home</p></div>'
            '<p>The fox sat by the fire.</p>'
            '<figure><img src="b.png" alt="The owl"><figcaption>The owl flew over the hill.</figcaption></figure>')
    with _read(tmp_path, body, {"a.png": (300, 200), "b.png": (300, 200)}) as book:
        roles = [(t.text, t.role) for page in book.pages for t in page.texts]
    assert roles == [("The fox at home", "description"), ("The fox sat by the fire.", "body"),
                     ("The owl flew over the hill.", "caption")]


def test_broken_tables_are_repaired_as_a_browser_would(tmp_path):
    # rows and cells never closed, a paragraph where its cell never opened
    body = ('<table><tr><td><img src="a.png"></td>\n<p class="story">One.</p>'
            '<tr><td><img src="b.png"><td><p class="story">Two.</p><p>More two.</p>'
            '<tr><td><img src="c.png"></td><td>Three.</table><p>After.</p>')
    with _read(tmp_path, body, {n: (300, 200) for n in ("a.png", "b.png", "c.png")}) as book:
        items = sorted([(t.order, t.text) for page in book.pages for t in page.texts]
                       + [(p.order, p.ref) for page in book.pages for p in page.pictures])
        assert [x for _, x in items] == ["a.png", "One.", "b.png", "Two.", "More two.", "c.png", "Three.", "After."]
        from pipeline.book.matter import classify_pages
        from pipeline.book.pair import pair_book

        frames, _ = pair_book(book, classify_pages(book))
    assert [f.text for f in frames] == ["One.", "Two. More two.", "Three. After."]


def test_a_distributor_header_gives_the_metadata(tmp_path):
    header = ("<pre>The Project Gutenberg EBook of Fox Tales, by Ana Lima\n\nTitle: Fox Tales\n\nAuthor: Ana Lima\n\n"
              "Illustrator: Bea Reis\n\nRelease Date: May 1, 2005 [EBook #1]\n\n"
              "*** START OF THIS PROJECT GUTENBERG EBOOK FOX TALES ***</pre>")
    page = tmp_path / "book.html"
    page.write_text(f"<html><head><title>The Project Gutenberg eBook of Fox Tales</title></head><body>{header}"
                    '<img src="a.png"><p>The fox ran.</p></body></html>')
    (tmp_path / "a.png").write_bytes(png_bytes(picture(1, 300, 200)))
    with open_book(page, EbookConfig()) as book:
        assert (book.meta.title, book.meta.authors, book.meta.illustrators) == ("Fox Tales", ["Ana Lima"], ["Bea Reis"])
        assert [t.text for p in book.pages for t in p.texts if "distributor" not in p.semantics] == ["The fox ran."]
