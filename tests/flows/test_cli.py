"""The command line's report of books: what each held, what became frames, what was left out."""

from __future__ import annotations

from flows.cli import book_lines


def test_one_line_per_book_with_counts_and_reasons():
    results = [
        {"kind": "ebook", "input": "fox.epub", "title": "The Fox", "status": "ok", "frames": 12, "stage": None,
         "error": None, "dropped": {"matter_title_page": 1, "decoration_small": 3},
         "stats": {"pictures": 16, "illustrations": 13, "paired": 11}},
        {"kind": "ebook", "input": "broken.pdf", "title": None, "status": "failed", "frames": 0, "stage": "parse",
         "error": "broken.pdf is truncated", "dropped": {}, "stats": {}},
        {"kind": "video", "input": "v.mp4", "title": "V", "status": "ok", "frames": 5, "stage": None, "error": None,
         "dropped": {}, "stats": {}},
    ]
    assert book_lines(results) == [
        "book The Fox: 13 illustrations found (of 16 pictures), 12 frames, 11 paired with text; "
        "left out: 3 decoration small, 1 matter title page",
        "book broken.pdf: failed at parse: broken.pdf is truncated",
    ]
