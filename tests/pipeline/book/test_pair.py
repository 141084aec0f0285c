"""Pairing, matter and decoration rules on hand-made pages (no files): each rule on its own."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ConfigError, EbookConfig, IngestConfig
from pipeline.book.model import Book, BookMeta, Page, Picture, TextBlock, mark_decorations, split_names
from pipeline.book.matter import classify_pages, read_credits
from pipeline.book.pair import pair_book
from tests.bookgen import picture

SIZE = (600.0, 800.0)


def pic(ref: str, box=None, path=(), order=0, key=None, size=(480, 360), seed=0) -> Picture:
    art = picture(seed, *size)
    return Picture(ref=ref, size=size, loader=lambda: art, key=key or ref, box=box, path=path, order=order)


def text(words: str, box=None, path=(), order=0, role="body") -> TextBlock:
    return TextBlock(words, box=box, path=path, order=order, role=role)


def paginated(pages: list[Page], **meta) -> Book:
    return Book("pdf", "paginated", BookMeta(**meta), pages)


def frames_of(book: Book) -> list[tuple[int, str]]:
    mark_decorations(book, EbookConfig())
    frames, _ = pair_book(book, classify_pages(book))
    return [(f.page, f.text) for f in frames]


PICTURE = (60, 100, 540, 460)


@pytest.mark.parametrize("picture_first", [False, True])
@pytest.mark.parametrize("start", [2, 3])
def test_facing_pages_pair_whichever_side_the_text_is_on(picture_first, start):
    # start 2: pairs fall within spreads (2,3), (4,5)...; start 3: across them, so only next/prev fit
    pages = [Page(1, [pic("cover", PICTURE)], [text("Tale")], SIZE)]
    if start == 3:
        pages.append(Page(2, [], [text("Tale")], SIZE))  # a title page
    number = start
    for i in range(3):
        words = Page(0, [], [text(f"Story line {i}.", (60, 300, 540, 330))], SIZE)
        art = Page(0, [pic(f"p{i}", (0, 0, 600, 800), seed=i)], [], SIZE)
        for page, n in zip([art, words] if picture_first else [words, art], (number, number + 1)):
            page.number = n
            pages.append(page)
        number += 2
    got = frames_of(paginated(pages, title="Tale"))
    assert [t for _, t in got] == [f"Story line {i}." for i in range(3)]
    assert [n for n, _ in got] == [start + 2 * i + (0 if picture_first else 1) for i in range(3)]


def test_text_only_pages_continue_the_previous_frame():
    pages = [Page(1, [pic("cover", PICTURE)], [], SIZE),
             Page(2, [pic("a", PICTURE, seed=1)], [text("First.", (60, 500, 540, 530))], SIZE),
             Page(3, [], [text("More of the first.", (60, 300, 540, 330))], SIZE),
             Page(4, [pic("b", PICTURE, seed=2)], [text("Second.", (60, 500, 540, 530))], SIZE)]
    assert frames_of(paginated(pages, title="Tale")) == [(2, "First. More of the first."), (4, "Second.")]


def test_two_pictures_on_a_page_take_their_nearest_text():
    top, bottom = (60, 60, 540, 300), (60, 420, 540, 660)
    page = Page(2, [pic("a", top, seed=1), pic("b", bottom, seed=2)],
                [text("Under the first.", (60, 310, 540, 330)), text("Under the second.", (60, 670, 540, 690)),
                 text("Above the second.", (60, 390, 540, 410))], SIZE)
    got = frames_of(paginated([Page(1, [pic("cover", PICTURE)], [], SIZE), page], title="Tale"))
    # "Above the second." is 60 below the first picture and 10 above the second: nearest wins
    assert got == [(2, "Under the first."), (2, "Above the second. Under the second.")]


def test_reading_order_is_rows_then_columns():
    page = Page(2, [pic("a", (300, 100, 580, 300), seed=1)],
                [text("right column", (320, 400, 580, 420)), text("left column", (20, 400, 280, 420)),
                 text("headline", (20, 20, 580, 40))], SIZE)
    assert frames_of(paginated([Page(1, [pic("cover", PICTURE)], [], SIZE), page], title="Tale")) == [
        (2, "headline left column right column")]


def test_flow_units_and_loose_text():
    # <body><div fig1><img/><p>cap</p></div><p>after 1</p><div fig2><img/></div><p>after 2</p></body>
    body, fig1, fig2 = 1, 2, 3
    page = Page(1, [pic("a", path=(body, fig1, 10), order=1, seed=1), pic("b", path=(body, fig2, 11), order=4, seed=2)],
                [text("cap", path=(body, fig1, 12), order=2, role="caption"), text("after 1", path=(body, 13), order=3),
                 text("after 2", path=(body, 14), order=5)])
    book = Book("html", "flow", BookMeta(title="Tale"), [page])
    assert [t for _, t in frames_of(book)] == ["cap after 1", "after 2"]
    # text before the first picture and none after the last: text precedes its picture
    page.texts = [text("before 1", path=(body, 13), order=0), text("before 2", path=(body, 14), order=3)]
    assert [t for _, t in frames_of(Book("html", "flow", BookMeta(title="Tale"), [page]))] == ["before 1", "before 2"]


def test_decorations_by_size_shape_repeat_and_name():
    cfg = EbookConfig()
    pages = [Page(n, [pic("logo", (540, 740, 580, 780), key="logo", size=(200, 200)),
                      pic(f"art{n}", PICTURE, seed=n)], [], SIZE) for n in range(1, 5)]
    pages[0].pictures.append(pic("rule", (0, 400, 600, 440), size=(1200, 80)))
    pages[1].pictures.append(pic("deco", None, size=(200, 150)))
    pages[1].pictures[-1].hint = "images/ornament-2.png"
    for page in pages[1:]:  # the same stamp on three pages: a publisher's mark
        page.pictures.append(pic("stamp", (10, 10, 200, 200), key="stamp", size=(300, 300)))
    pages[3].pictures.append(pic("stamp3", (10, 10, 200, 200), key="stamp", size=(300, 300)))
    counts = mark_decorations(Book("pdf", "paginated", BookMeta(), pages), cfg)
    assert counts == {"decoration_small": 4, "decoration_rule": 1, "decoration_named": 1, "decoration_repeated": 4}
    assert all(p.decoration is None for page in pages for p in page.pictures if p.ref.startswith("art"))


def test_matter_rules():
    pages = [Page(1, [pic("cover", PICTURE)], [text("The Lost Goat"), text("by Ama Mensah")], SIZE),
             Page(2, [], [text("To my grandmother, Esi.")], SIZE),
             Page(3, [pic("a", PICTURE, seed=1)], [text("To the north of the village lived a goat.")], SIZE),
             Page(4, [], [text("Contents"), text("1 The goat")], SIZE),
             Page(5, [pic("b", PICTURE, seed=2)], [text("The goat went home.")], SIZE),
             Page(6, [], [text("The End")], SIZE),
             Page(7, [pic("photo", PICTURE, seed=3)], [text("Meet the illustrator: Kofi draws goats.")], SIZE)]
    reasons = classify_pages(paginated(pages))
    assert reasons == {1: "cover", 2: "dedication", 4: "contents", 6: "end_marker", 7: "about"}


def test_credits_and_licence_from_matter_text():
    pages = [Page(1, [pic("cover", PICTURE)], [text("The Lost Goat")], SIZE),
             Page(2, [], [text("Story by Ama Mensah and Efua Owusu"), text("Illustrations by Kofi Boateng"),
                          text("This book is licensed under a Creative Commons Attribution-ShareAlike 4.0 licence.")], SIZE),
             Page(3, [pic("a", PICTURE, seed=1)], [text("A goat.")], SIZE)]
    book = paginated(pages)
    matter = classify_pages(book)
    read_credits(book, matter)
    assert book.meta.title == "The Lost Goat"
    assert (book.meta.authors, book.meta.illustrators) == (["Ama Mensah", "Efua Owusu"], ["Kofi Boateng"])
    from pipeline.sources import normalize_license

    assert normalize_license(book.meta.license) == "CC-BY-SA"


def test_split_names():
    assert split_names("Ama Mensah; Kofi Boateng & Efua (editor)") == ["Ama Mensah", "Kofi Boateng", "Efua"]


def test_ebook_config_is_validated():
    assert IngestConfig.from_dict({"ebook": {"cover_frame": True}}).ebook.cover_frame
    for bad in ({"max_image_pixels": 10}, {"min_picture_area": 1.5}, {"render_long_side": 100},
                {"repeat_as_decoration": 1}, {"max_compression_ratio": 0.5}):
        with pytest.raises(ConfigError, match="ebook"):
            IngestConfig.from_dict({"ebook": bad})
    with pytest.raises(ConfigError, match="unknown config key"):
        IngestConfig.from_dict({"ebook": {"cover": True}})
    assert IngestConfig().hash() != IngestConfig.from_dict({"ebook": {"cover_frame": True}}).hash()


def test_seam_tells_a_spread_from_two_pictures():
    wide = picture(9, 960, 360)
    left = Page(2, [pic("l", (0, 100, 600, 550))], [text("left", (60, 600, 540, 620))], SIZE)
    right = Page(3, [pic("r", (0, 100, 600, 550))], [text("right", (60, 600, 540, 620))], SIZE)
    left.pictures[0].loader, right.pictures[0].loader = (lambda: wide[:, :480]), (lambda: wide[:, 480:])
    left.pictures[0].size = right.pictures[0].size = (480, 360)
    cover = Page(1, [pic("cover", PICTURE)], [], SIZE)
    assert frames_of(paginated([cover, left, right], title="Tale")) == [(2, "left right")]
    other = picture(10, 480, 360)
    right.pictures[0].loader = lambda: other
    right.pictures[0].decoration = left.pictures[0].decoration = None
    assert frames_of(paginated([cover, left, right], title="Tale")) == [(2, "left"), (3, "right")]
    assert np.array_equal(wide[:, :480], left.pictures[0].load())
