"""Picture books in the shapes real Project Gutenberg editions have, as HTML and as EPUBs that real
converters (pandoc, calibre's ebook-convert) make from them.

The truth is the convention of such books: the text of an illustration is the story text after it
and before the next one. The lead-in (story text before the first illustration), the frontispiece,
the title decoration, the publisher and printer lines, the list of illustrations, the distributor's
header and licence and what follows "THE END" are in no frame.
"""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.book.model import EbookError
from tests.bookgen import AUTHOR, ILLUSTRATOR, TITLE, BookTruth, assert_matches, parse_book
from tests.bookgen.epub import convert_html, converter_missing
from tests.bookgen.html import GUTENBERG_SHAPES, write_gutenberg, zip_folder

BOILERPLATE = ("Gutenberg", "gutenberg", "License", "licence", "eBook", "pgdp", "Proofreading")


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    root = tmp_path_factory.mktemp("pg")
    return {shape: write_gutenberg(root / shape, shape, seed=40 + i) for i, shape in enumerate(GUTENBERG_SHAPES)}


def assert_story(truth: BookTruth, result: dict, images: list[np.ndarray]) -> None:
    """Exact frames in order (texts; pictures by pixels), nothing of the matter, no boilerplate."""
    assert_matches(truth, result, images, pages=False)  # a converter numbers pages its own way
    texts = " ".join(f["text"] for f in result["frames"])
    assert not [w for w in BOILERPLATE if w in texts], truth.name
    assert truth.lead_in and truth.lead_in[:30] not in texts
    assert result["dropped"]["lead_in"] == 2  # the lead-in's two paragraphs, counted
    assert result["dropped"]["matter_front_picture"] == 2  # the frontispiece and the title decoration


@pytest.mark.parametrize("shape", GUTENBERG_SHAPES)
def test_html_editions_pair_exactly(books, shape, tmp_path):
    truth = books[shape]
    result, images = parse_book(truth.path, tmp_path)
    assert_matches(truth, result, images)  # pages too: each picture's position among the page's images
    assert_story(truth, result, images)
    source = result["source"]
    # the header's Title:/Author:/Illustrator: lines, not the distributor's <title>
    assert (source["title"], source["authors"], source["illustrators"]) == (TITLE, [AUTHOR], [ILLUSTRATOR])


@pytest.mark.parametrize("shape", GUTENBERG_SHAPES)
def test_thumbnails_give_way_to_the_full_size_pictures(books, shape, tmp_path):
    _, images = parse_book(books[shape].path, tmp_path)
    assert [image.shape[:2] for image in images] == [t.picture.shape[:2] for t in books[shape].frames]


def test_a_zipped_edition(books, tmp_path):
    archive = zip_folder(books["pg_table"].path.parent, tmp_path / "99999-h.zip", prefix="99999-h")
    result, images = parse_book(archive, tmp_path / "work")
    assert_matches(books["pg_table"], result, images)


@pytest.mark.parametrize("converter", ["pandoc", "calibre"])
@pytest.mark.parametrize("shape", GUTENBERG_SHAPES)
def test_epubs_converted_from_the_html(books, shape, converter, tmp_path):
    if reason := converter_missing(converter):
        pytest.skip(reason)
    truth = convert_html(books[shape], tmp_path / f"{shape}-{converter}.epub", converter)
    result, images = parse_book(truth.path, tmp_path / "work")
    assert result["source"]["format"] == "epub" and result["source"]["layout"] == "flow"
    assert_story(truth, result, images)
    assert (result["source"]["title"], result["source"]["authors"]) == (TITLE, [AUTHOR])


def test_an_edition_without_pictures_is_refused(tmp_path):
    folder = tmp_path / "words"
    folder.mkdir()
    (folder / "book.htm").write_text("<html><body><pre>*** START OF THE PROJECT GUTENBERG EBOOK X ***</pre>"
                                     "<p>Only words.</p><pre>*** END OF THE PROJECT GUTENBERG EBOOK X ***</pre>"
                                     "</body></html>")
    with pytest.raises(EbookError, match="no illustrations found"):
        parse_book(folder / "book.htm", tmp_path / "work")
