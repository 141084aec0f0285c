"""EPUB reader and the safe zip reader, through plain calls on generated books."""

from __future__ import annotations

import io
import zipfile

import pytest

from pipeline.config import EbookConfig
from pipeline.book.model import EbookError
from pipeline.book.reader import open_book
from pipeline.book.safezip import SafeZip, safe_member_name
from tests.bookgen import AUTHOR, ILLUSTRATOR, TITLE, assert_matches, parse_book
from tests.bookgen.epub import write_epub, write_zip, xhtml

VARIANTS = ("epub2", "epub3", "epub3_fixed")


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    root = tmp_path_factory.mktemp("epubs")
    return {v: write_epub(root / f"{v}.epub", v, seed=60 + i) for i, v in enumerate(VARIANTS)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_pairs_exactly(books, variant, tmp_path):
    truth = books[variant]
    result, images = parse_book(truth.path, tmp_path)
    assert_matches(truth, result, images)
    source = result["source"]
    assert (source["title"], source["authors"], source["illustrators"]) == (TITLE, [AUTHOR], [ILLUSTRATOR])
    assert (source["license"], source["language"], source["format"]) == ("CC-BY", "en", "epub")
    assert source["layout"] == ("paginated" if variant == "epub3_fixed" else "flow")


def test_structure_gives_the_pairing(books, tmp_path):
    result, _ = parse_book(books["epub3"].path, tmp_path / "3")
    # figure + figcaption, then the neighbouring paragraph; alt text kept as the description
    assert result["frames"][0]["caption"] == "Tano on page 1"
    dropped = result["dropped"]
    assert dropped["matter_cover"] == 1 and dropped["matter_title_page"] == 1 and dropped["matter_dedication"] == 1
    fixed, _ = parse_book(books["epub3_fixed"].path, tmp_path / "fixed")
    assert fixed["frames"][0]["page"] == 5  # its text came from the facing page 4


def test_guide_semantics_reach_the_pages(books):
    with open_book(books["epub2"].path, EbookConfig()) as book:
        semantics = [sorted(p.semantics) for p in book.pages[:3]]
    assert semantics == [["cover"], ["title-page"], ["copyright-page"]]


def _tiny_epub(tmp_path, extra=(), files=None):
    files = files or {
        "OEBPS/content.opf": '<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/>'
                             '<manifest><item id="a" href="a.xhtml" media-type="application/xhtml+xml"/></manifest>'
                             '<spine><itemref idref="a"/></spine></package>',
        "OEBPS/a.xhtml": xhtml("<p>Hello</p>"),
    }
    return write_zip(tmp_path / "tiny.epub", files, list(extra))


@pytest.mark.parametrize("name", ["../evil.xhtml", "a/../../evil", "/etc/passwd", "C:\\evil.txt", "..\\evil"])
def test_unsafe_member_names_are_refused(tmp_path, name):
    assert safe_member_name(name) is None
    path = _tiny_epub(tmp_path, [(zipfile.ZipInfo(name), b"x")])
    with pytest.raises(EbookError, match="unsafe path"):
        SafeZip(path, EbookConfig())
    assert not (tmp_path.parent / "evil.xhtml").exists()


def test_safe_names_normalise():
    assert safe_member_name("./OEBPS//a.xhtml") == "OEBPS/a.xhtml"
    assert safe_member_name("OEBPS/text/../images/a.png") is None  # member names never climb, even inside


def test_zip_bombs_are_refused_by_ratio_and_by_total(tmp_path):
    data = bytes(5_000_000)
    info = zipfile.ZipInfo("OEBPS/zeros.bin")
    info.compress_type = zipfile.ZIP_DEFLATED
    path = _tiny_epub(tmp_path, [(info, data)])
    with pytest.raises(EbookError, match="max_compression_ratio"):
        SafeZip(path, EbookConfig())
    with pytest.raises(EbookError, match="max_uncompressed_mb"):
        SafeZip(path, EbookConfig(max_compression_ratio=1e6, max_uncompressed_mb=2))
    archive = SafeZip(path, EbookConfig(max_compression_ratio=1e6))
    assert len(archive.read("OEBPS/zeros.bin")) == 5_000_000


def test_a_member_inflating_past_its_declared_size_is_stopped(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as z:
        z.writestr("big.txt", b"A" * 5000)
    raw = bytearray(buffer.getvalue())
    # shrink the declared size in the central directory only: a lying header
    cd = raw.rfind(b"PK\x01\x02")
    raw[cd + 24:cd + 28] = (100).to_bytes(4, "little")
    path = tmp_path / "liar.zip"
    path.write_bytes(bytes(raw))
    with pytest.raises(EbookError):
        SafeZip(path, EbookConfig()).read("big.txt")


def test_broken_packages_say_what_is_wrong(tmp_path):
    with pytest.raises(EbookError, match="container.xml is missing"):
        with zipfile.ZipFile(tmp_path / "x.epub", "w") as z:
            z.writestr("mimetype", "application/epub+zip")
        with open_book(tmp_path / "x.epub", EbookConfig()):
            pass
    files = {"OEBPS/content.opf": '<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/><manifest>'
                                  '<item id="a" href="gone.xhtml" media-type="application/xhtml+xml"/></manifest>'
                                  '<spine><itemref idref="a"/></spine></package>'}
    with pytest.raises(EbookError, match="gone.xhtml is missing"):
        with open_book(_tiny_epub(tmp_path, files=files), EbookConfig()):
            pass


def test_entities_are_not_expanded(tmp_path):
    evil = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            '<html xmlns="http://www.w3.org/1999/xhtml"><body><p>&x;</p></body></html>')
    path = _tiny_epub(tmp_path, files={
        "OEBPS/content.opf": '<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/><manifest>'
                             '<item id="a" href="a.xhtml" media-type="application/xhtml+xml"/></manifest>'
                             '<spine><itemref idref="a"/></spine></package>',
        "OEBPS/a.xhtml": evil})
    with open_book(path, EbookConfig()) as book:
        assert "root:" not in " ".join(t.text for p in book.pages for t in p.texts)


def test_svg_wrapped_images_are_pictures(tmp_path):
    from tests.bookgen import picture, png_bytes

    body = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 600 800">'
            '<image width="600" height="800" xlink:href="images/p.png"/></svg><p>The fox slept.</p>')
    files = {"OEBPS/content.opf": '<package xmlns="http://www.idpf.org/2007/opf" version="3.0"><metadata/><manifest>'
                                  '<item id="a" href="a.xhtml" media-type="application/xhtml+xml"/></manifest>'
                                  '<spine><itemref idref="a"/></spine></package>',
             "OEBPS/a.xhtml": xhtml(body), "OEBPS/images/p.png": png_bytes(picture(7, 300, 400))}
    with open_book(_tiny_epub(tmp_path, files=files), EbookConfig()) as book:
        [picture_] = [p for page in book.pages for p in page.pictures]
        assert picture_.size == (300, 400) and picture_.box == (0.0, 0.0, 600.0, 800.0)
        assert picture_.load().shape == (400, 300, 3)


def _spine_epub(tmp_path, documents: dict[str, str], images: dict[str, tuple[int, int]], opf_extra: str = "",
                metadata: str = ""):
    from tests.bookgen import picture, png_bytes

    items = "".join(f'<item id="d{i}" href="{name}" media-type="application/xhtml+xml"/>'
                    for i, name in enumerate(documents))
    spine = "".join(f'<itemref idref="d{i}"/>' for i in range(len(documents)))
    files = {"OEBPS/content.opf": '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" '
                                  'xmlns:dc="http://purl.org/dc/elements/1.1/">'
                                  f"<metadata>{metadata}</metadata><manifest>{items}</manifest>"
                                  f"<spine>{spine}</spine>{opf_extra}</package>"}
    files.update({f"OEBPS/{name}": body for name, body in documents.items()})
    files.update({f"OEBPS/{name}": png_bytes(picture(i, *size)) for i, (name, size) in enumerate(images.items())})
    return write_zip(tmp_path / "book.epub", files)


def test_a_spine_item_that_is_not_well_formed_is_read_as_html(tmp_path):
    broken = ('<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><body>'
              '<p>The fox&nbsp;woke up.<br><img src="a.png" alt="Fox"></p><p>It ran — fast.</body></html>')
    fine = xhtml('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink">'
                 '<image xlink:href="b.png"/></svg><p>The owl slept.</p>')
    path = _spine_epub(tmp_path, {"a.xhtml": broken, "b.xhtml": fine}, {"a.png": (300, 200), "b.png": (300, 200)})
    with open_book(path, EbookConfig()) as book:
        assert [t.text for p in book.pages for t in p.texts] == ["The fox woke up.", "It ran — fast.",
                                                                 "The owl slept."]
        assert [(pic.ref, pic.alt) for p in book.pages for pic in p.pictures] == [("OEBPS/a.png", "Fox"),
                                                                                  ("OEBPS/b.png", None)]


def test_bloom_style_front_and_back_matter_pages(tmp_path):
    def page(classes: str, inner: str) -> str:
        return xhtml(f'<div class="bloom-page {classes}">{inner}</div>')

    text = '<div class="bloom-translationGroup"><div class="bloom-editable" lang="en"><p>{}</p></div></div>'
    image = '<div class="bloom-imageContainer"><img src="{}" alt=""/></div>'
    documents = {
        "1.xhtml": page("cover coverColor bloom-frontMatter frontCover outsideFrontCover",
                        image.format("cover.png") + text.format("Goat Goes Home")),
        "2.xhtml": page("credits bloom-frontMatter", text.format("Goat Goes Home. Story: Ama Mensah. Pictures: "
                                                                 "Kofi Boateng. Thanks to our village school.")),
        "3.xhtml": page("numberedPage", image.format("a.png") + text.format("The goat was lost.")),
        "4.xhtml": page("numberedPage", text.format("It walked all night.") + image.format("b.png")),
        "5.xhtml": page("bloom-backMatter outsideBackCover", image.format("logo.png") + text.format("Read more "
                                                                                                    "books like this.")),
    }
    images = {"cover.png": (400, 500), "a.png": (400, 300), "b.png": (400, 300), "logo.png": (300, 300)}
    path = _spine_epub(tmp_path, documents, images)
    result, _ = parse_book(path, tmp_path / "work")
    assert [(f["text"], f["page"]) for f in result["frames"]] == [("The goat was lost.", 3), ("It walked all night.", 4)]
    dropped = result["dropped"]
    assert dropped["matter_cover"] == 1 and dropped["matter_front_matter"] == 1 and dropped["matter_back_matter"] == 1
