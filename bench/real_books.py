"""Accuracy of the book path on real picture books with ground truth (HTML, EPUB and PDF of one book).

Usage: python bench/real_books.py [BOOK_DIR ...] [--show]

A book directory holds ``truth.json`` (``pages``: in order, each the illustration ``image``, a
path relative to the directory, and its narrative ``text``) and the book in any of its formats:
an HTML edition (``*-h/*.htm``), an ``*.epub`` and a ``*.pdf`` (the layout of
``../shared/samples/books/``, the default). Each format goes through the real book stages
(read, matter, pair, clean, assemble) and is scored against the truth:

- found: truth illustrations that a frame shows (picture content: mean absolute grey difference
  at 48x36 below 20 against the truth picture, the truth picture being the closest of all);
- in order: found illustrations whose frames come in the truth's order;
- texts right: found illustrations whose frame text equals the truth text, compared as words
  (case, punctuation, quotes and dashes, hyphenation and spacing ignored);
- extra: frames that show no truth illustration (front matter, decorations, frontispieces...);
- boilerplate: frames whose text holds distributor or licence words (Project Gutenberg, ...).

With ``--show`` every frame is listed with its match and text.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipeline.book.fetch import FetchedBook  # noqa: E402
from pipeline.book.stages import assemble_book, book_work, parse_book  # noqa: E402
from pipeline.config import IngestConfig  # noqa: E402
from pipeline.output.contract import media_path  # noqa: E402
from pipeline.sources import SourceItem  # noqa: E402

DEFAULT_BOOKS = ROOT.parent / "shared" / "samples" / "books"
MATCH_DISTANCE = 20.0
_BOILERPLATE = re.compile(r"project gutenberg|gutenberg\.(org|net)|\blicen[cs]e\b|\bebook\b|pgdp|distributed proofreading",
                          re.I)


def words(text: str) -> list[str]:
    """Text as comparable words: NFKC, lower case, hyphenated line breaks joined, punctuation out."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = re.sub(r"[\u2010-\u2015\u2212-]+", "-", text).replace("\u00ad", "")
    text = re.sub(r"(\w)-\s+(\w)", r"\1\2", text)
    return re.findall(r"[^\W_]+", text.replace("-", ""))


def grey_small(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    picture = Image.fromarray(image).convert("L").resize((48, 36), Image.Resampling.BOX)
    return np.asarray(picture, dtype=np.float32)


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def formats(book_dir: Path) -> dict[str, Path]:
    found = {}
    html = sorted(book_dir.glob("*-h/*.htm*")) or sorted(book_dir.glob("*.htm*"))
    if html:
        found["html"] = html[0]
    for fmt in ("epub", "pdf"):
        files = sorted(book_dir.glob(f"*.{fmt}"))
        if files:
            found[fmt] = files[0]
    return found


def run_book(path: Path, work: Path, cfg: IngestConfig) -> tuple[list[dict], list[np.ndarray], dict, float]:
    item = SourceItem(source_id="bench", input=str(path), kind="ebook", path=str(path))
    owner = book_work(work, item, cfg)
    start = time.perf_counter()
    pairs = parse_book(owner, item, FetchedBook("bench", str(path.absolute()), path.absolute().as_uri()), cfg)
    story = assemble_book(owner, item, cfg, pairs)
    seconds = time.perf_counter() - start
    images = [load_rgb(media_path(work, f.image)) for f in story.frames]
    return [f.to_dict() for f in story.frames], images, pairs, seconds


def score(truth: dict, book_dir: Path, frames: list[dict], images: list[np.ndarray]) -> dict:
    truth_pictures = [grey_small(load_rgb(book_dir / page["image"])) for page in truth["pages"]]
    small = [grey_small(image) for image in images]
    matches: dict[int, int] = {}  # truth page -> frame
    frame_match: dict[int, tuple[int, float]] = {}
    for j, picture in enumerate(small):
        distances = [float(np.abs(picture - t).mean()) for t in truth_pictures]
        best = int(np.argmin(distances))
        if distances[best] < MATCH_DISTANCE:
            frame_match[j] = (best, distances[best])
            if best not in matches or distances[best] < frame_match[matches[best]][1]:
                matches[best] = j
    found = sorted(matches)
    order = [matches[i] for i in found]
    in_order = sum(1 for a, b in zip(order, order[1:]) if b > a) + (1 if order else 0)
    texts_right = sum(words(frames[matches[i]]["text"]) == words(truth["pages"][i]["text"]) for i in found)
    return {
        "truth": len(truth["pages"]), "frames": len(frames), "found": len(found), "in_order": in_order,
        "texts_right": texts_right, "extra": len(frames) - len(set(matches.values())),
        "boilerplate": sum(bool(_BOILERPLATE.search(f["text"] or "")) for f in frames),
        "frame_match": frame_match,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("books", nargs="*", type=Path, help="book directories (default: every one under "
                        f"{DEFAULT_BOOKS})")
    parser.add_argument("--show", action="store_true", help="list every frame with its match and text")
    args = parser.parse_args(argv)
    books = args.books or sorted(p for p in DEFAULT_BOOKS.iterdir() if (p / "truth.json").is_file())
    cfg = IngestConfig()
    totals: dict[str, dict[str, int]] = {}
    print(f"{'book':<16} {'format':<6} {'frames':>6} {'found':>7} {'order':>7} {'texts':>7} {'extra':>6} "
          f"{'boiler':>6} {'seconds':>8}")
    for book_dir in books:
        truth = json.loads((book_dir / "truth.json").read_text(encoding="utf-8"))
        for fmt, path in formats(book_dir).items():
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    frames, images, pairs, seconds = run_book(path, Path(tmp) / "work", cfg)
                except Exception as exc:  # noqa: BLE001 - a book the stage refuses is a result too
                    print(f"{book_dir.name:<16} {fmt:<6} failed: {exc}")
                    frames, images, pairs, seconds = [], [], {"dropped": {}}, 0.0
            result = score(truth, book_dir, frames, images)
            row = totals.setdefault(fmt, {k: 0 for k in ("truth", "frames", "found", "in_order", "texts_right",
                                                          "extra", "boilerplate")})
            for key in row:
                row[key] += result[key]
            n = result["truth"]
            print(f"{book_dir.name:<16} {fmt:<6} {result['frames']:>6} {result['found']:>3}/{n:<3} "
                  f"{result['in_order']:>3}/{n:<3} {result['texts_right']:>3}/{n:<3} {result['extra']:>6} "
                  f"{result['boilerplate']:>6} {seconds:>8.2f}")
            if args.show:
                print(f"    left out: {pairs.get('dropped')}")
                for j, frame in enumerate(frames):
                    match = result["frame_match"].get(j)
                    label = f"truth {match[0]:>2} d={match[1]:5.1f}" if match else "no match      "
                    print(f"    {j:>2} page {frame['page']!s:>4} {label} {frame['text'][:100]!r}")
    if len(books) > 1:
        for fmt, row in totals.items():
            print(f"{'all':<16} {fmt:<6} {row['frames']:>6} {row['found']:>3}/{row['truth']:<3} "
                  f"{row['in_order']:>3}/{row['truth']:<3} {row['texts_right']:>3}/{row['truth']:<3} {row['extra']:>6} "
                  f"{row['boilerplate']:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
