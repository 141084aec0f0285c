"""End to end: `storyloom ingest` on generated picture books under a real Prefect API.

Every PDF layout, EPUB 2/3 reflowable and fixed-layout, and three kinds of HTML book, with front
and back matter and decorations, offered as local files, a folder (one story per book), a zip,
and URLs on a loopback server (an HTML page whose images come from the same site), next to
every bad input the issue lists. The stories that come out must match the generated truth
exactly: frames, order, pages, pixels and texts, with no matter leaked; bad inputs must become
failed rows; nothing may be written outside the output directory; a rerun changes nothing.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flows.cli import main as storyloom
from tests.bookgen import AUTHOR, ILLUSTRATOR, TITLE, BookTruth, picture_distance
from tests.bookgen.bad import write_bad_books
from tests.bookgen.epub import write_epub
from tests.bookgen.html import write_html, zip_folder
from tests.bookgen.pdf import LAYOUTS, write_pdf
from tests.conftest import StaticServer

SERVED_PDFS = ("over", "spread")  # these PDFs go through the fetch stage over HTTP


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Books on disk and on a loopback site, the sources file, and the truth per story URL."""
    root = tmp_path_factory.mktemp("library")
    site = root / "site"
    site.mkdir()
    server = StaticServer(site)
    truths: dict[str, BookTruth] = {}
    entries = []
    for seed, layout in enumerate(LAYOUTS):
        if layout in SERVED_PDFS:
            truth = write_pdf(site / f"{layout}.pdf", layout, seed=seed)
            truth.url = server.url(f"{layout}.pdf")
            entries.append(f"  - url: {truth.url}\n")
        else:
            truth = write_pdf(root / f"{layout}.pdf", layout, seed=seed)
            entries.append(f"  - path: {truth.path.name}\n")
        truths[truth.url or truth.path.as_uri()] = truth
    shelf = root / "shelf"  # a folder of books: one story each
    shelf.mkdir()
    for seed, variant in enumerate(("epub2", "epub3"), start=20):
        truth = write_epub(shelf / f"{variant}.epub", variant, seed=seed)
        truths[truth.path.as_uri()] = truth
    entries.append("  - path: shelf\n")
    fixed = write_epub(site / "fixed.epub", "epub3_fixed", seed=22)
    fixed.url = server.url("fixed.epub")
    truths[fixed.url] = fixed
    entries.append(f"  - url: {fixed.url}\n")
    gutenberg = write_html(root / "pg" / "book", "gutenberg", seed=23)
    zipped = zip_folder(gutenberg.path.parent, root / "pg-h.zip")
    gutenberg.path = zipped
    truths[zipped.as_uri()] = gutenberg
    entries.append("  - path: pg-h.zip\n    license: public-domain\n")
    table = write_html(site / "table", "table", seed=24)
    table.url = server.url("table/book.html")
    truths[table.url] = table
    entries.append(f"  - url: {table.url}\n    kind: ebook\n")
    plain = write_html(root / "plain", "plain", seed=25)
    truths[plain.path.as_uri()] = plain
    entries.append("  - path: plain/book.html\n    language: en\n")

    bad = write_bad_books(root / "bad")
    entries += [f"  - path: {path}\n" for path, _ in bad.values()]
    entries.append(f"  - url: {server.url('gone.pdf')}\n")
    sources = root / "sources.yaml"
    sources.write_text("sources:\n" + "".join(entries))
    yield root, sources, truths, bad
    server.close()


@pytest.fixture(scope="module")
def ingested(library, prefect_harness, tmp_path_factory):
    root, sources, _, _ = library
    before = snapshot(root)
    out = tmp_path_factory.mktemp("out")
    assert storyloom(["ingest", str(sources), "--out", str(out)]) == 0
    assert snapshot(root) == before, "ingest wrote into the library"
    return out


def rows(out: Path) -> dict[str, dict]:
    return {row["input"]: row for row in pq.read_table(out / "sources.parquet").to_pylist()}


def read_stories(out: Path) -> dict[str, tuple[dict, list[np.ndarray], dict[int, np.ndarray]]]:
    import webdataset as wds
    from PIL import Image

    stories = {}
    for sample in wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")), shardshuffle=False):
        story = json.loads(sample["json"])
        images = [np.asarray(Image.open(io.BytesIO(sample[f"{i:03d}.jpg"])).convert("RGB"))
                  for i in range(len(story["frames"]))]
        masks = {i: np.asarray(Image.open(io.BytesIO(sample[f"{i:03d}.mask.png"])))
                 for i in range(len(story["frames"])) if f"{i:03d}.mask.png" in sample}
        stories[story["source"]["url"]] = (story, images, masks)
    return stories


def test_bad_books_become_failed_rows_and_the_run_goes_on(library, ingested):
    _, _, truths, bad = library
    table = rows(ingested)
    for name, (path, words) in bad.items():
        row = table[str(path)]
        assert row["status"] == "failed", (name, row)
        assert words in row["error"], (name, row["error"])
    gone = next(r for i, r in table.items() if i.endswith("gone.pdf"))
    assert gone["status"] == "failed" and "404" in gone["error"] and gone["stage"] == "fetch"
    ok = [r for r in pq.read_table(ingested / "sources.parquet").to_pylist() if r["status"] == "ok"]
    assert len(ok) == len(truths) and all(r["kind"] == "ebook" for r in ok)
    assert sum(r["frames"] for r in ok) == sum(len(t.frames) for t in truths.values())
    assert all(any(k.startswith("matter_") for k in dict(r["dropped"])) for r in ok)  # counted by reason


def test_every_story_matches_its_book(library, ingested):
    _, _, truths, _ = library
    stories = read_stories(ingested)
    assert set(stories) == set(truths)
    for url, truth in truths.items():
        story, images, _ = stories[url]
        frames = story["frames"]
        assert [f["text"] for f in frames] == [t.text for t in truth.frames], truth.name
        assert [f["page"] for f in frames] == [t.page for t in truth.frames], truth.name
        assert all(f["t_start"] is None and f["t_end"] is None for f in frames)
        for i, (image, expected) in enumerate(zip(images, truth.frames)):
            distances = [picture_distance(image, t.picture) for t in truth.frames]
            assert int(np.argmin(distances)) == i and distances[i] < 6, (truth.name, i, distances)
            assert image.shape[1] / image.shape[0] == pytest.approx(
                expected.picture.shape[1] / expected.picture.shape[0], abs=0.03), (truth.name, i)
        everything = " ".join(f["text"] for f in frames)
        for text in truth.matter_texts:
            assert text not in everything, (truth.name, text)
        for image in images:  # no cover, author photo or back cover among the frames
            assert all(picture_distance(image, m) > 20 for m in truth.matter_pictures), truth.name


def test_metadata_comes_from_the_books(library, ingested):
    _, _, truths, _ = library
    stories = read_stories(ingested)
    for url, truth in truths.items():
        source = stories[url][0]["source"]
        assert source["kind"] == "ebook" and source["duration_s"] is None
        assert source["title"] == TITLE, (truth.name, source)
        assert source["creator"] == AUTHOR and source["authors"] == [AUTHOR], (truth.name, source)
        assert source["illustrators"] == [ILLUSTRATOR], (truth.name, source)
        assert source["license"] == truth.license, (truth.name, source)
        assert source["language"] == "en", (truth.name, source)


def test_descriptions_and_masks(library, ingested):
    _, _, truths, _ = library
    stories = read_stories(ingested)
    by_name = {t.name: stories[url] for url, t in truths.items()}
    story, images, masks = by_name["pdf-flat_vector"]
    assert set(masks) == {1}, "only the page with text printed inside its vector art has a mask"
    mask = masks[1]
    assert mask.shape == images[1].shape[:2] and 0.02 < (mask == 255).mean() < 0.3
    assert story["frames"][1]["has_mask"] and "text_over_picture" in story["frames"][1]["flags"]
    assert all(set(f["flags"]) >= {"flattened"} for f in story["frames"])
    assert [f["caption"] for f in by_name["html-gutenberg"][0]["frames"]] == [
        f"Tano and the tree, picture {i}" for i in range(1, 5)]  # alt text of the thumbnails
    assert [f["caption"] for f in by_name["html-plain"][0]["frames"]] == [f"Scene {i} of the story" for i in range(1, 5)]
    assert all("spread" in f["flags"] for f in by_name["pdf-spread"][0]["frames"][2:])
    full_size = by_name["html-gutenberg"][1][0]  # the thumbnail links to a 640x480 image: that one is used
    assert full_size.shape[:2] == (480, 640)


def test_rerun_changes_nothing(library, ingested, prefect_harness):
    _, sources, _, _ = library
    outputs = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(ingested.rglob("*"))
               if p.is_file() and "work" not in p.relative_to(ingested).parts}
    assert storyloom(["ingest", str(sources), "--out", str(ingested)]) == 0
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in outputs}
    assert after == outputs


def test_every_book_says_what_it_found(library, ingested):
    _, _, truths, _ = library
    stories = read_stories(ingested)
    by_story = {row["story_id"]: row for row in pq.read_table(ingested / "sources.parquet").to_pylist()
                if row["status"] == "ok"}
    for url, truth in truths.items():
        story = stories[url][0]
        row = by_story[story["story_id"]]
        stats = dict(row["stats"])
        assert stats["frames"] == row["frames"] == len(truth.frames), truth.name
        assert stats["paired"] == sum(1 for t in truth.frames if t.text), truth.name
        assert stats["pictures"] >= stats["illustrations"] >= stats["frames"], (truth.name, stats)
