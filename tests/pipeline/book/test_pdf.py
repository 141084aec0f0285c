"""PDF reader and the PDF side of pairing, through plain calls on generated books."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import EbookConfig, IngestConfig
from pipeline.book.model import EbookError
from pipeline.book.reader import open_book
from pipeline.book.pdf import read_pdf
from tests.bookgen import AUTHOR, ILLUSTRATOR, TITLE, assert_matches, parse_book, picture
from tests.bookgen.pdf import LAYOUTS, _Pdf, write_pdf


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    root = tmp_path_factory.mktemp("pdfs")
    return {layout: write_pdf(root / f"{layout}.pdf", layout, seed=40 + i) for i, layout in enumerate(LAYOUTS)}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_pairs_exactly(books, layout, tmp_path):
    truth = books[layout]
    result, images = parse_book(truth.path, tmp_path)
    assert_matches(truth, result, images)
    source = result["source"]
    assert (source["title"], source["creator"], source["illustrators"]) == (TITLE, AUTHOR, [ILLUSTRATOR])
    assert (source["license"], source["language"], source["format"]) == ("CC-BY", "en", "pdf")


def test_embedded_pictures_keep_their_exact_pixels(books, tmp_path):
    truth = books["over"]  # text printed over the picture is a layer of its own: the image stays clean
    result, images = parse_book(truth.path, tmp_path)
    assert all("text_over_picture" in f["flags"] for f in result["frames"])
    for image, expected in zip(images, truth.frames):
        assert image.shape == expected.picture.shape and np.array_equal(image, expected.picture)


def test_matter_pages_and_decorations_are_counted(books, tmp_path):
    result, _ = parse_book(books["below"].path, tmp_path)
    dropped = result["dropped"]
    for reason in ("cover", "title_page", "copyright", "dedication", "about", "blurb"):
        assert dropped[f"matter_{reason}"] == 1, reason
    assert dropped["decoration_small"] >= 9  # the title ornament, and a flourish and a logo per story page


def test_running_headers_and_page_numbers_are_not_text(books):
    with read_pdf(books["below"].path, EbookConfig()) as book:
        story_page = book.pages[4]
        roles = {t.text: t.role for t in story_page.texts}
    assert roles["Storyloom Free Books"] == "running" and roles["5"] == "running"
    assert [r for t, r in roles.items() if r == "body"] == ["body"]


def test_flattened_pages_are_cropped_from_the_render(books, tmp_path):
    for layout in ("flat_vector", "flat_scan"):
        result, images = parse_book(books[layout].path, tmp_path / layout)
        assert all("flattened" in f["flags"] for f in result["frames"]), layout
        for image, truth in zip(images, books[layout].frames):  # the crop has the artwork's aspect ratio
            aspect = truth.picture.shape[1] / truth.picture.shape[0]
            assert image.shape[1] / image.shape[0] == pytest.approx(aspect, abs=0.02)
    vector, _ = parse_book(books["flat_vector"].path, tmp_path / "again")
    assert [bool(f["mask"]) for f in vector["frames"]] == [False, True, False, False]


def test_spreads_become_one_frame(books, tmp_path):
    result, images = parse_book(books["spread"].path, tmp_path)
    assert [f["flags"] for f in result["frames"]] == [[], [], ["spread"], ["spread"]]
    assert [image.shape[1] / image.shape[0] for image in images[2:]] == [pytest.approx(960 / 360, abs=0.02)] * 2


def test_cover_frame_option(books, tmp_path):
    cfg = IngestConfig.from_dict({"ebook": {"cover_frame": True}})
    result, images = parse_book(books["above"].path, tmp_path, cfg)
    first = result["frames"][0]
    assert first["flags"] == ["cover"] and first["text"] == TITLE and first["page"] == 1
    assert len(result["frames"]) == len(books["above"].frames) + 1


def test_sources_file_overrides_the_document(books, tmp_path):
    result, _ = parse_book(books["above"].path, tmp_path, title="Red Seed (retold)", license="CC0", language="fr")
    source = result["source"]
    assert (source["title"], source["license"], source["language"]) == ("Red Seed (retold)", "CC0", "fr")
    assert source["license_reported"].startswith("This work is licensed under a Creative Commons")


def test_owner_password_and_pixel_cap_are_refused(tmp_path):
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    path = tmp_path / "owner.pdf"
    c = canvas.Canvas(str(path), encrypt=pdfencrypt.StandardEncryption("", ownerPassword="owner", canCopy=0))
    c.drawString(100, 100, "hello")
    c.showPage()
    c.save()
    with pytest.raises(EbookError, match="owner password"):
        with open_book(path, EbookConfig()):
            pass
    big = tmp_path / "big.pdf"
    pdf = _Pdf(big)
    pdf.page(lambda: pdf.image(picture(1, 400, 300), 60, 100, 480, 360))
    pdf.save()
    with pytest.raises(EbookError, match="over ebook.max_image_pixels=100000"):
        with open_book(big, EbookConfig(max_image_pixels=100_000)):
            pass


def test_garbage_is_not_a_book(tmp_path):
    path = tmp_path / "noise.pdf"
    path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 20 + b"\n%%EOF\n")
    with pytest.raises(EbookError, match="not a readable PDF"):
        with open_book(path, EbookConfig()):
            pass


def test_parse_index_is_reused_with_the_same_config_only(books, tmp_path):
    import shutil

    book = tmp_path / "copy.pdf"
    shutil.copy(books["below"].path, book)
    first, _ = parse_book(book, tmp_path / "work")
    book.unlink()  # a rerun with the same settings must not need the book again
    again, _ = parse_book(book, tmp_path / "work")
    assert again == first
    with pytest.raises(EbookError, match="not found"):
        parse_book(book, tmp_path / "work", IngestConfig.from_dict({"ebook": {"cover_frame": True}}))


def test_licence_policy_skips_a_book(books, tmp_path):
    from pipeline.config import IngestConfig as Config
    from pipeline.book.fetch import FetchedBook
    from pipeline.book.stages import book_work, parse_book
    from pipeline.sources import SourceDefaults, SourceItem

    path = books["below"].path
    item = SourceItem(source_id="b", input=str(path), kind="ebook", path=str(path))
    with pytest.raises(EbookError, match="licence CC-BY not allowed") as err:
        parse_book(book_work(tmp_path, item, Config()), item, FetchedBook("b", str(path), path.as_uri()), Config(),
                   SourceDefaults(license_allow=("CC0",)))
    assert err.value.skipped


def test_sliced_and_transparent_images(tmp_path):
    from PIL import Image

    art = picture(11, 480, 360)
    cut = picture(12, 400, 300).copy()
    alpha = np.full(cut.shape[:2], 255, np.uint8)
    alpha[:, 200:] = 0  # the right half is transparent
    pdf = _Pdf(tmp_path / "strips.pdf")
    pdf.page(lambda: pdf.text(TITLE, 60, 300))  # a title page
    pdf.page(lambda: ([pdf.image(art[i * 90:(i + 1) * 90], 60, 100 + i * 90, 480, 90) for i in range(4)],
                      pdf.text("Sliced.", 60, 500)))
    from reportlab.lib.utils import ImageReader

    pdf.page(lambda: (pdf.c.drawImage(ImageReader(Image.fromarray(np.dstack([cut, alpha]), "RGBA")), 100, 300,
                                      width=400, height=300, mask="auto"), pdf.text("Cut out.", 60, 600)))
    pdf.save()
    result, images = parse_book(tmp_path / "strips.pdf", tmp_path / "work")
    assert [f["text"] for f in result["frames"]] == ["Sliced.", "Cut out."]
    assert images[0].shape == art.shape and np.array_equal(images[0], art)  # four strips, one picture
    assert np.array_equal(images[1][:, :200], cut[:, :200]) and (images[1][:, 200:] == 255).all()  # white paper
