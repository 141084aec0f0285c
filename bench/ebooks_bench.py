"""Pairing accuracy, matter leaks and PDF speed of the book stage, on generated picture books.

Usage: python bench/ebooks_bench.py [--seeds N] [--pages N] [--keep DIR]

For every layout the tests know (ten PDF layouts, EPUB 2/3 reflowable and fixed-layout, three
kinds of HTML book), N books with different pictures and texts go through the whole book stage
(read, matter, pair, clean, store; then encode the story) and are compared with their truth:

- paired right: true frames whose frame (same position) has the exact text, the exact page, and a
  picture closer to its own truth than to any other (mean abs grey difference at 48x36 below 6);
- extra / missing: frames beyond the truth, or truth frames without one;
- leaks: front/back-matter texts found in any frame text, plus frames showing a matter picture
  (cover, author photo: distance below 12).

Speed: every PDF page of those books through the whole stage, against rendering the same pages
alone with pypdfium2 at the same size (``ebook.render_long_side``), both in this process, one
after the other, best of ``--repeat`` runs each; the ratio is what the stage costs in page renders.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.config import IngestConfig  # noqa: E402
from pipeline.book.fetch import FetchedBook  # noqa: E402
from pipeline.book.stages import assemble_book, book_work, parse_book  # noqa: E402
from pipeline.output.contract import media_path  # noqa: E402
from pipeline.sources import SourceItem  # noqa: E402
from tests.bookgen import BookTruth, picture_distance  # noqa: E402
from tests.bookgen.epub import write_epub  # noqa: E402
from tests.bookgen.html import write_html  # noqa: E402
from tests.bookgen.pdf import LAYOUTS, write_pdf  # noqa: E402


def generate(root: Path, seeds: int, pages: int) -> list[tuple[str, BookTruth]]:
    root.mkdir(parents=True, exist_ok=True)
    books = []
    for seed in range(seeds):
        for layout in LAYOUTS:
            books.append((f"pdf-{layout}", write_pdf(root / f"{layout}-{seed}.pdf", layout, seed=100 + seed, pages=pages)))
        for variant in ("epub2", "epub3", "epub3_fixed"):
            books.append((variant, write_epub(root / f"{variant}-{seed}.epub", variant, seed=200 + seed)))
        for variant in ("gutenberg", "table", "plain"):
            books.append((f"html-{variant}", write_html(root / f"{variant}-{seed}", variant, seed=300 + seed)))
    return books


def run_stage(truth: BookTruth, work: Path, cfg: IngestConfig) -> tuple[dict, list, float]:
    from PIL import Image
    import numpy as np

    item = SourceItem(source_id="bench", input=str(truth.path), kind="ebook", path=str(truth.path))
    start = time.perf_counter()
    owner = book_work(work, item, cfg)
    pairs = parse_book(owner, item, FetchedBook("bench", str(truth.path), truth.path.as_uri()), cfg)
    story = assemble_book(owner, item, cfg, pairs)
    seconds = time.perf_counter() - start
    images = [np.asarray(Image.open(media_path(work, f.image)).convert("RGB")) for f in story.frames]
    return story.to_dict(), images, seconds


def score(truth: BookTruth, story: dict, images: list) -> dict[str, int]:
    frames = story["frames"]
    right = 0
    for i, expected in enumerate(truth.frames):
        if i >= len(frames):
            break
        distances = [picture_distance(images[i], t.picture) for t in truth.frames]
        if (frames[i]["text"] == expected.text and frames[i]["page"] == expected.page
                and min(range(len(distances)), key=distances.__getitem__) == i and distances[i] < 6):
            right += 1
    texts = " ".join(f["text"] for f in frames)
    leaks = sum(m in texts for m in truth.matter_texts)
    leaks += sum(any(picture_distance(image, m) < 12 for m in truth.matter_pictures) for image in images)
    return {"truth": len(truth.frames), "right": right, "extra": max(0, len(frames) - len(truth.frames)),
            "missing": max(0, len(truth.frames) - len(frames)), "leaks": leaks}


def render_alone(paths: list[Path], long_side: int) -> tuple[int, float]:
    import pypdfium2 as pdfium

    pages, start = 0, time.perf_counter()
    for path in paths:
        doc = pdfium.PdfDocument(str(path))
        for page in doc:
            width, height = page.get_size()
            page.render(scale=long_side / max(width, height)).to_numpy()
            page.close()
            pages += 1
        doc.close()
    return pages, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="books per layout")
    parser.add_argument("--pages", type=int, default=6, help="story frames per PDF book")
    parser.add_argument("--keep", type=Path, help="write the books and work dirs here and keep them")
    parser.add_argument("--repeat", type=int, default=3, help="speed: best of this many runs of each side")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="ebooks-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    cfg = IngestConfig()
    try:
        books = generate(root / "books", args.seeds, args.pages)
        totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        pdf_seconds, pdf_paths = 0.0, []
        run_stage(books[0][1], root / "warmup", cfg)  # imports and first-use costs out of the timings
        for n, (layout, truth) in enumerate(books):
            story, images, seconds = run_stage(truth, root / "work" / f"{n:03d}", cfg)
            for key, value in score(truth, story, images).items():
                totals[layout][key] += value
            totals[layout]["books"] += 1
            if truth.path.suffix == ".pdf":
                pdf_seconds += seconds
                pdf_paths.append(truth.path)
        print(f"{'layout':<18}{'books':>6}{'frames':>8}{'paired right':>14}{'extra':>7}{'missing':>9}{'leaks':>7}")
        overall = defaultdict(int)
        for layout, row in totals.items():
            print(f"{layout:<18}{row['books']:>6}{row['truth']:>8}{row['right']:>8} ({row['right'] / row['truth']:4.0%})"
                  f"{row['extra']:>7}{row['missing']:>9}{row['leaks']:>7}")
            for key, value in row.items():
                overall[key] += value
        share = overall["right"] / overall["truth"]
        print(f"{'all':<18}{overall['books']:>6}{overall['truth']:>8}{overall['right']:>8} ({share:4.0%})"
              f"{overall['extra']:>7}{overall['missing']:>9}{overall['leaks']:>7}")
        # speed: best of --repeat for the stage and for rendering, interleaved, so that a busy moment
        # of a shared machine does not decide the ratio (each stage run in a fresh work directory)
        pages, render_seconds = render_alone(pdf_paths, cfg.ebook.render_long_side)
        truths = [truth for _, truth in books if truth.path.suffix == ".pdf"]
        for r in range(1, args.repeat):
            seconds = sum(run_stage(truth, root / "speed" / f"{r}-{n:03d}", cfg)[2] for n, truth in enumerate(truths))
            pdf_seconds = min(pdf_seconds, seconds)
            render_seconds = min(render_seconds, render_alone(pdf_paths, cfg.ebook.render_long_side)[1])
        stage_rate, render_rate = pages / pdf_seconds, pages / render_seconds
        print(f"\nPDF: {pages} pages in {len(pdf_paths)} books; whole book stage {stage_rate:.1f} pages/s "
              f"({pdf_seconds:.2f} s); rendering the same pages alone at {cfg.ebook.render_long_side} px "
              f"{render_rate:.1f} pages/s ({render_seconds:.2f} s); stage / render-only time = "
              f"{pdf_seconds / render_seconds:.2f}")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
