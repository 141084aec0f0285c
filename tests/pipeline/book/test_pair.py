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


# --------------------------------------------------------------------------- flowing books: matter and pairing


def flowing(*items, title: str = "The Lost Goat", split: bool = False) -> Book:
    """A flowing book from ("h1".."h6" | "p" | "img" | "unit", ...) items, in one section (or, with
    ``split``, a section from each h1-h3 on, as the readers do); a "unit" is an element holding a
    picture and blocks: ("unit", seed, "text", ...)."""
    body, ids, order = 1, iter(range(10, 10_000)), iter(range(1, 10_000))
    pictures, texts = [], []
    headings = {item[1] for item in items if item[0] in ("h1", "h2", "h3")}
    for item in items:
        kind, rest = item[0], item[1:]
        if kind == "img":
            pictures.append(pic(f"art{rest[0]}", path=(body, next(ids), next(ids)), order=next(order), seed=rest[0]))
        elif kind == "unit":
            unit = next(ids)
            pictures.append(pic(f"art{rest[0]}", path=(body, unit, next(ids)), order=next(order), seed=rest[0]))
            texts += [text(words, path=(body, unit, next(ids)), order=next(order)) for words in rest[1:]]
        else:
            texts.append(text(rest[0], path=(body, next(ids)), order=next(order),
                              role="heading" if kind.startswith("h") else "body"))
    sections: list[list] = [[]]
    for x in sorted(pictures + texts, key=lambda x: x.order):
        if split and sections[-1] and isinstance(x, TextBlock) and x.role == "heading" and x.text in headings:
            sections.append([])
        sections[-1].append(x)
    return Book("html", "flow", BookMeta(title=title),
                [Page(n + 1, [x for x in part if isinstance(x, Picture)], [x for x in part if isinstance(x, TextBlock)])
                 for n, part in enumerate(sections)])


def flow_frames(book: Book) -> tuple[list[tuple[str, str]], dict[str, int]]:
    from pipeline.book.matter import trim_flow_edges

    dropped = mark_decorations(book, EbookConfig())
    matter = classify_pages(book)
    dropped.update(trim_flow_edges(book, matter))
    for reason in matter.values():  # as the parse stage counts them
        dropped[f"matter_{reason}"] = dropped.get(f"matter_{reason}", 0) + 1
    frames, more = pair_book(book, matter)
    dropped.update(more)
    return [(f.pictures[0].ref, f.text) for f in frames], dropped


def test_copyright_words_drop_their_block_not_the_section_holding_the_story():
    book = flowing(("p", "Copyright 1902 by Frederick Warne & Co. All rights reserved."), ("img", 1), ("p", "The goat ran."),
                   ("img", 2), ("p", "It came home."))
    frames, dropped = flow_frames(book)
    assert frames == [("art1", "The goat ran."), ("art2", "It came home.")]
    assert dropped["matter_copyright"] == 1


def test_the_story_starts_at_the_first_picture_with_story_text():
    book = flowing(("img", 1),  # a frontispiece, before the title
                   ("h1", "THE LOST GOAT"), ("h3", "BY"), ("h2", "AMA MENSAH"),
                   ("img", 2),  # a decoration among the title and publisher lines
                   ("h3", "STORYLOOM PRESS"), ("h6", "First published 1902"), ("p", "LONDON AND ACCRA"),
                   ("p", "Printed and bound in Great Britain by Loom Printers"),
                   ("p", "Once upon a time there was a goat called Ama."),  # the lead-in
                   ("unit", 3, "She lived on a hill."), ("unit", 4, "One day she was lost.", "Nobody knew where."),
                   ("unit", 5, "She came home at night."), ("h2", "THE END"),
                   ("img", 6), ("p", "More books from Storyloom Press: The Blue Kite."))  # an advertisement
    frames, dropped = flow_frames(book)
    assert frames == [("art3", "She lived on a hill."), ("art4", "One day she was lost. Nobody knew where."),
                      ("art5", "She came home at night.")]
    assert dropped["lead_in"] == 1 and dropped["matter_front_picture"] == 2 and dropped["matter_back_picture"] == 1


def test_text_after_its_picture_with_loose_paragraphs_and_a_lead_in():
    book = flowing(("h1", "The Lost Goat"), ("p", "Once upon a time there was a goat."),
                   ("img", 1), ("p", "She lived on a hill."), ("img", 2), ("p", "One day she was lost."),
                   ("p", "Nobody knew where."), ("img", 3), ("p", "She came home."))
    frames, dropped = flow_frames(book)
    assert frames == [("art1", "She lived on a hill."), ("art2", "One day she was lost. Nobody knew where."),
                      ("art3", "She came home.")]
    assert dropped["lead_in"] == 1


def test_a_last_picture_without_words_before_the_end():
    # text after each picture, a lead-in, and a wordless last picture right before "THE END"
    book = flowing(("p", "Once upon a time there was a goat."), ("img", 1), ("p", "She lived on a hill."),
                   ("img", 2), ("p", "One day she was lost."), ("img", 3), ("h2", "THE END"))
    frames, _ = flow_frames(book)
    assert frames == [("art1", "She lived on a hill."), ("art2", "One day she was lost."), ("art3", "")]
    # the same without "THE END": every picture has text before it, so text precedes its picture
    book = flowing(("p", "Once upon a time there was a goat."), ("img", 1), ("p", "She lived on a hill."),
                   ("img", 2), ("p", "One day she was lost."), ("img", 3))
    frames, _ = flow_frames(book)
    assert frames == [("art1", "Once upon a time there was a goat."), ("art2", "She lived on a hill."),
                      ("art3", "One day she was lost.")]


def test_a_row_s_text_moved_in_front_of_its_table_comes_back():
    # HTML5 parsers move a paragraph that sits in a row without a cell out in front of the table
    book = flowing(("p", "Once upon a time there was a goat."), ("unit", 1, "She lived on a hill."),
                   ("p", "One day she was lost."), ("unit", 2), ("unit", 3, "She came home."))
    frames, dropped = flow_frames(book)
    assert frames == [("art1", "She lived on a hill."), ("art2", "One day she was lost."), ("art3", "She came home.")]
    assert dropped["lead_in"] == 1


def test_contents_lists_are_matter_wherever_they_sit():
    book = flowing(("h1", "The Lost Goat"), ("p", "LIST OF ILLUSTRATIONS"), ("p", "The goat on the hill 8"),
                   ("p", "The goat at night 10"), ("p", "Once upon a time there was a goat."),
                   ("img", 1), ("p", "She lived on a hill."), ("img", 2), ("p", "She came home."))
    frames, dropped = flow_frames(book)
    assert frames == [("art1", "She lived on a hill."), ("art2", "She came home.")]
    assert dropped["matter_contents"] == 3 and dropped["lead_in"] == 1


def test_pictures_after_the_story_among_credits_are_matter():
    # a StoryWeaver-style attribution after the story: thumbnails of the pages with their credits
    book = flowing(("unit", 1, "The goat ran."), ("unit", 2, "She came home."),
                   ("p", "Story Attribution: This story is written by Ama Mensah. \u00a9 Storyloom Press, 2015. "
                         "Some rights reserved. Released under CC BY 4.0 license."),
                   ("img", 3), ("p", "Page 1: Goat on a hill, by Kofi Boateng \u00a9 Storyloom Press, 2015. CC BY 4.0."),
                   ("img", 4), ("p", "Page 2: Goat at home, by Kofi Boateng \u00a9 Storyloom Press, 2015. CC BY 4.0."))
    frames, dropped = flow_frames(book)
    assert frames == [("art1", "The goat ran."), ("art2", "She came home.")]
    assert dropped["matter_back_picture"] == 2 and dropped["matter_copyright"] == 3


def test_notes_and_advertisements_under_their_own_heading_are_matter():
    book = flowing(("img", 1), ("p", "The goat ran."), ("img", 2), ("p", "She came home."),
                   ("h2", "Transcriber's Notes"), ("p", "Obvious typographical errors have been silently corrected."),
                   split=True)
    assert [p.number for p in book.pages] == [1, 2]
    frames, dropped = flow_frames(book)
    assert frames == [("art1", "The goat ran."), ("art2", "She came home.")]
    assert dropped["matter_back_matter"] == 1


def test_texts_of_several_open_rows_moved_in_front_come_back():
    book = flowing(("unit", 1, "She lived on a hill."), ("p", "One day she was lost."), ("unit", 2),
                   ("p", "Nobody knew where."), ("unit", 3), ("unit", 4, "She came home."))
    frames, _ = flow_frames(book)
    assert frames == [("art1", "She lived on a hill."), ("art2", "One day she was lost."), ("art3", "Nobody knew where."),
                      ("art4", "She came home.")]


def test_text_before_a_picture_that_holds_its_own_is_not_its_text():
    # most rows of the table were left open: their texts stand in front of their pictures; the first
    # and last rows are whole, and the lead-in stands before the first
    book = flowing(("p", "Once upon a time there was a goat."), ("unit", 1, "She lived on a hill."),
                   ("p", "One day she was lost."), ("unit", 2), ("p", "Nobody knew where."), ("unit", 3),
                   ("p", "It was dark."), ("unit", 4), ("unit", 5, "She came home."))
    frames, dropped = flow_frames(book)
    assert frames == [("art1", "She lived on a hill."), ("art2", "One day she was lost."), ("art3", "Nobody knew where."),
                      ("art4", "It was dark."), ("art5", "She came home.")]
    assert dropped["lead_in"] == 1
