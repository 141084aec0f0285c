"""Dataset card: the counts, tables and sections rendered from a real shard summary."""

from __future__ import annotations

import pytest

from pipeline.output import card
from pipeline.output.card import md_cell, render_card, write_card
from pipeline.output.catalog import write_catalog, write_sources_table
from pipeline.config import IngestConfig
from pipeline.records import SourceResult
from pipeline.storage import OutputLayout
from tests.pipeline.output.test_shards import _file_hashes, _write, make_story_dir

SILENT = "no_speech"


def _build(tmp_path):
    work = tmp_path / "out" / "work"
    dirs = [
        make_story_dir(work, "yt-aaa", 3, texts=["Once upon a time.", "", "The end | really."],
                       flags={1: [SILENT]}),
        make_story_dir(work, "yt-bbb", 2, language="fr", license="CC-BY-SA"),
        make_story_dir(work, "book-ccc", 4, kind="ebook", language="en", license="CC0",
                       texts=["", "", "A fox ran.", "It hid."], flags={0: [SILENT], 1: ["photo"]}),
    ]
    summary = _write(dirs, tmp_path / "out", test_fraction=0.6)  # book-ccc lands in test
    results = [
        SourceResult(source_id="s1", input="https://youtu.be/aaa", kind="video", status="ok", story_id="yt-aaa",
                     frames=3, dropped={"blank": 2, "near_duplicate": 3}, timings={"fetch": 1.0}),
        SourceResult(source_id="s2", input="https://youtu.be/bbb", kind="video", status="ok", story_id="yt-bbb",
                     frames=2, dropped={"blank": 1}),
        SourceResult(source_id="s3", input="books/ccc.pdf", kind="ebook", status="ok", story_id="book-ccc", frames=4),
        SourceResult(source_id="s4", input="https://youtu.be/gone", kind="video", status="failed", stage="fetch",
                     error="video unavailable: removed by the uploader"),
        SourceResult(source_id="s5", input="https://youtu.be/nc", kind="video", status="skipped", stage="filter",
                     error="licence 'all rights reserved' is not in license_allow"),
    ]
    return summary, results, OutputLayout(tmp_path / "out")


def test_card_counts_and_sections(tmp_path):
    summary, results, layout = _build(tmp_path)
    config = IngestConfig().to_dict()
    text = render_card(summary, results, config, layout, name="tiny-tales")
    totals = summary.split_totals()

    assert text.startswith("# tiny-tales\n")
    assert f"| **total** | **3** | **9** | **2** | **{summary.total_bytes // 1024}.0 KiB** " in text
    assert (totals["train"]["stories"], totals["train"]["frames"], totals["test"]["frames"]) == (2, 5, 4)
    for split in ("train", "test"):
        row = totals[split]
        assert f"| {split} | {row['stories']} | {row['frames']} | {row['shards']} | " in text
    assert "| en | 2 | 7 |" in text and "| fr | 1 | 2 |" in text
    assert "| CC-BY | 1 | 3 |" in text and "| CC-BY-SA | 1 | 2 |" in text and "| CC0 | 1 | 4 |" in text
    assert "- ok: 3\n- skipped: 1\n- failed: 1\n" in text
    assert "| s4 | https://youtu.be/gone | failed | fetch | video unavailable: removed by the uploader |" in text
    assert "licence 'all rights reserved' is not in license_allow" in text
    assert "6 frames dropped before writing" in text
    assert "| near_duplicate | 3 |" in text and "| blank | 3 |" in text
    # 9 frames: 6 with text, 2 flagged no_speech, 1 empty without the flag
    assert "| with narrative text | 6 | 66.7% |" in text
    assert "| no speech (flag `no_speech`) | 2 | 22.2% |" in text
    assert "| empty text, other | 1 | |" in text
    assert "| photo | 1 |" in text
    # examples show the first frame with text of each story
    assert "| book-ccc | 2 | test | Title book-ccc | A fox ran. |" in text
    assert "| yt-aaa | 0 | train | Title yt-aaa | Once upon a time. |" in text
    assert "`shards`:" in text and "`max_stories_per_shard=100`" in text and "`run`" not in text
    for section in ("## Context: StorySalon and StoryGen", "## Intended use", "## Limitations"):
        assert section in text
    assert str(tmp_path) not in text  # no absolute paths: the card must not depend on where it was built


def test_whole_output_rerun_is_byte_identical(tmp_path):
    summary, results, layout = _build(tmp_path)
    config = IngestConfig().to_dict()

    def finish(summary, results):
        write_catalog(summary, layout.catalog)
        write_sources_table(results, layout.sources_table)
        return write_card(summary, results, config, layout)

    path = finish(summary, results)
    assert path.read_bytes().startswith(b"# out\n")  # default name: the output directory
    before = _file_hashes(layout.root)
    mtimes = {p: p.stat().st_mtime_ns for p in layout.root.rglob("*") if p.is_file()}
    summary_again = _write(sorted(layout.work_dir.iterdir()), layout.root, test_fraction=0.6)
    finish(summary_again, list(reversed(results)))
    assert _file_hashes(layout.root) == before
    assert {p: p.stat().st_mtime_ns for p in layout.root.rglob("*") if p.is_file()} == mtimes  # nothing rewritten


def test_empty_dataset_renders(tmp_path):
    summary = _write([], tmp_path / "out")
    text = render_card(summary, [], {}, OutputLayout(tmp_path / "out"), name="empty")
    assert "| **total** | **0** | **0** | **0** |" in text and "The dataset holds no stories." in text


def test_missing_template_says_where(tmp_path, monkeypatch):
    summary = _write([], tmp_path / "out")
    monkeypatch.setattr(card, "TEMPLATE_DIR", tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="data_cards"):
        render_card(summary, [], {}, OutputLayout(tmp_path / "out"))


def test_md_cell_keeps_tables_intact():
    assert md_cell("a | b\nc") == "a \\| b c"
    assert md_cell(None) == ""
