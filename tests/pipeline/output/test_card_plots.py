"""The card's plots: each PNG carries the values it shows, and those equal counts computed
independently from the catalog and sources tables of a dataset made by the real ingest."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import IngestConfig
from pipeline.dataset.reader import open_dataset
from pipeline.output.card import write_card
from pipeline.output.card_plots import (
    DATA_KEY,
    MAX_INT_BARS,
    MAX_LABELS,
    PLOT_SPECS,
    PLOTS,
    SHEET_FRAMES,
    SHEET_STORIES,
    int_histogram,
    label_counts,
    plot_data,
    read_plot_data,
    render_plot,
)
from pipeline.records import SourceResult
from pipeline.storage import OutputLayout
from tests.pipeline.output.test_shards import _write, make_story_dir

IMAGE_LINK = re.compile(r"!\[([^\]]+)\]\((card/[a-z_]+\.png)\)")
REPO = Path(__file__).resolve().parents[3]


def _card_plots(root: Path) -> dict[str, dict]:
    """Every picture the card links, by plot name, as its embedded values (each link checked to exist)."""
    links = IMAGE_LINK.findall((root / "card.md").read_text(encoding="utf-8"))
    plots = {}
    for alt, target in links:
        name = Path(target).stem
        assert alt == PLOT_SPECS[name].title
        assert (root / target).is_file(), target
        plots[name] = read_plot_data(root / target)
    return plots


def test_mixed_dataset_plots_show_the_catalogs_counts(mixed_dataset):
    plots = _card_plots(mixed_dataset)
    assert set(plots) == {spec.name for spec in PLOTS}  # every plot has data in this dataset
    catalog = pq.read_table(mixed_dataset / "catalog.parquet")
    rows = catalog.to_pylist()
    per_story = {row["story_id"]: row for row in rows}  # source fields repeat on every frame row
    assert len(per_story) == 6 and len(rows) == 27

    # frames per story, from the catalog's rows grouped by story
    grouped = catalog.group_by("story_id").aggregate([("frame", "count")])
    frame_counts = Counter(grouped["frame_count"].to_pylist())
    fps = plots["frames_per_story"]
    assert fps["by_value"] == sorted([v, c] for v, c in frame_counts.items())
    assert fps["n"] == sum(fps["bin_counts"]) == 6
    assert fps["bin_counts"] == np.histogram(grouped["frame_count"].to_numpy(), bins=fps["bin_edges"])[0].tolist()

    # words per frame, every frame (the kite video has no text source: zeros)
    words = [len(text.split()) for text in catalog["text"].to_pylist()]
    wpf = plots["words_per_frame"]
    assert wpf["by_value"] == sorted([v, c] for v, c in Counter(words).items())
    assert wpf["by_value"][0][0] == 0 and wpf["n"] == 27
    assert wpf["bin_counts"] == np.histogram(words, bins=wpf["bin_edges"])[0].tolist()

    # durations: the three videos have one, the three books none
    durations = [row["duration_s"] for row in per_story.values() if row["duration_s"] is not None]
    duration = plots["story_duration"]
    assert (duration["n"], duration["without_duration"]) == (3, 3)
    assert duration["total_s"] == pytest.approx(sum(durations))  # summed in story order there
    assert duration["bin_counts"] == np.histogram(durations, bins=duration["bin_edges"])[0].tolist()

    # languages and licences: stories and frames per label, largest first
    for name, column in (("languages", "language"), ("licenses", "license")):
        stories = Counter(row[column] or "unknown" for row in per_story.values())
        frames = Counter(row[column] or "unknown" for row in rows)
        expected = sorted(([label, n, frames[label]] for label, n in stories.items()), key=lambda r: (-r[1], r[0]))
        assert plots[name]["rows"] == expected, name
    assert {r[0] for r in plots["languages"]["rows"]} == {"en", "de"}
    assert {r[0] for r in plots["licenses"]["rows"]} == {"CC0", "CC-BY", "CC-BY-NC", "CC-BY-SA", "public-domain"}

    # drop reasons from sources.parquet's maps; sources by status, the failed one with its stage
    sources = pq.read_table(mixed_dataset / "sources.parquet")
    dropped: Counter[str] = Counter()
    for pairs in sources["dropped"].to_pylist():
        dropped.update(dict(pairs))
    drops = plots["drop_reasons"]
    assert dict(drops["frames_dropped"]) == dict(dropped) and sum(dropped.values()) > 0
    statuses = Counter(sources["status"].to_pylist())
    assert drops["sources"] == [["ok", 6], ["skipped", 0], ["failed", 1]] == [[s, statuses.get(s, 0)] for s in
                                                                               ("ok", "skipped", "failed")]
    failed = pc.filter(sources, pc.equal(sources["status"], "failed")).to_pylist()
    assert drops["not_written"] == [["failed", failed[0]["stage"], 1]] and failed[0]["stage"] == "fetch"


def test_mixed_dataset_contact_sheet_shows_the_first_stories_frames(mixed_dataset):
    sheet_path = mixed_dataset / "card" / "examples.png"
    sheet = read_plot_data(sheet_path)
    catalog = pq.read_table(mixed_dataset / "catalog.parquet", columns=["story_id", "image"]).to_pylist()
    members: dict[str, list[str]] = {}
    for row in catalog:
        members.setdefault(row["story_id"], []).append(row["image"])
    first = sorted(members)[:SHEET_STORIES]
    assert [row["story_id"] for row in sheet["stories"]] == first
    for row in sheet["stories"]:
        assert row["frames"] == len(members[row["story_id"]])
        shown = [f"{row['story_id']}.{tile['member']}" for tile in row["tiles"]]
        assert shown == members[row["story_id"]][:SHEET_FRAMES]

    # the pixels: each tile is its frame, read from the shard, at the tile's size
    with Image.open(sheet_path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert [pixels.shape[1], pixels.shape[0]] == sheet["size"]
    records = {r.story.story_id: r for r in open_dataset(mixed_dataset).iter_stories(story_ids=first)}
    for row in sheet["stories"]:
        for tile in row["tiles"]:
            x0, y0, x1, y1 = tile["box"]
            with Image.open(io.BytesIO(records[row["story_id"]].media[tile["member"]])) as frame:
                expected = np.asarray(frame.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS),
                                      dtype=np.int16)
            assert np.abs(pixels[y0:y1, x0:x1] - expected).mean() < 1.0, (row["story_id"], tile["member"])
    assert (pixels[: sheet["stories"][0]["tiles"][0]["box"][1] - 1] < 128).any()  # the story id is written above


def test_plots_are_the_same_bytes_every_time_whatever_the_users_matplotlib_settings(mixed_dataset):
    import matplotlib

    plots = _card_plots(mixed_dataset)
    for name in ("frames_per_story", "languages", "drop_reasons", "examples"):
        first = render_plot(name, plots[name], mixed_dataset)
        with matplotlib.rc_context({"font.size": 20, "axes.facecolor": "black", "savefig.dpi": 300}):
            again = render_plot(name, plots[name], mixed_dataset)
        assert again == first, name
        assert first == (mixed_dataset / "card" / f"{name}.png").read_bytes(), name  # as the ingest wrote it
        with Image.open(io.BytesIO(first)) as image:
            assert "Software" not in image.text and set(image.text) == {DATA_KEY}
    assert matplotlib.rcParams["font.size"] != 20  # the test's settings did not leak either


def test_an_empty_dataset_gets_sentences_instead_of_pictures(tmp_path):
    layout = OutputLayout(tmp_path / "out")
    summary = _write([], layout.root)
    stale = layout.root / "card" / "examples.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    write_card(summary, [], {}, layout)
    text = layout.card.read_text(encoding="utf-8")
    assert not IMAGE_LINK.search(text)
    for spec in PLOTS:
        assert spec.empty in text, spec.name
    assert not (layout.root / "card").exists()  # the stale picture and its empty folder are gone


def test_a_plot_without_data_is_left_out_and_said(tmp_path):
    work = tmp_path / "out" / "work"
    dirs = [make_story_dir(work, "book-aaa", 3, kind="ebook"), make_story_dir(work, "book-bbb", 2, kind="ebook")]
    for source_dir in dirs:  # books have no duration
        story = json.loads((source_dir / "story.json").read_text())
        story["source"]["duration_s"] = None
        (source_dir / "story.json").write_text(json.dumps(story))
    layout = OutputLayout(tmp_path / "out")
    stale = layout.root / "card" / "story_duration.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    results = [SourceResult(source_id=s, input=s, kind="ebook", status="ok", frames=1) for s in ("a", "b")]
    write_card(_write(dirs, layout.root), results, IngestConfig().to_dict(), layout)
    plots = _card_plots(layout.root)
    assert set(plots) == {spec.name for spec in PLOTS} - {"story_duration"}
    assert PLOT_SPECS["story_duration"].empty in layout.card.read_text(encoding="utf-8")
    assert not stale.exists()
    assert plots["drop_reasons"] == {"frames_dropped": [], "not_written": [], "sources": [["ok", 2], ["skipped", 0],
                                                                                           ["failed", 0]]}
    assert plots["frames_per_story"]["by_value"] == [[2, 1], [3, 1]]


def test_wide_integer_spreads_are_binned_without_losing_counts():
    values = [0] * 5 + list(range(1000)) + [999] * 3
    histogram = int_histogram(values, "x", "y")
    assert len(histogram["bin_counts"]) <= MAX_INT_BARS
    assert sum(histogram["bin_counts"]) == histogram["n"] == len(values)
    assert histogram["by_value"][0] == [0, 6] and histogram["by_value"][-1] == [999, 4]
    assert histogram["bin_counts"] == np.histogram(values, bins=histogram["bin_edges"])[0].tolist()
    assert int_histogram([], "x", "y") is None


def test_many_labels_end_in_one_other_bar():
    stories = [SimpleNamespace(language=f"l{i:02d}", frames=[0] * (i + 1)) for i in range(MAX_LABELS + 5)]
    counts = label_counts(stories, lambda story: story.language, "language")
    assert len(counts["rows"]) == MAX_LABELS
    assert counts["rows"][-1][0] == "other (6 languages)"
    assert sum(r[1] for r in counts["rows"]) == len(stories)
    assert sum(r[2] for r in counts["rows"]) == sum(len(s.frames) for s in stories)


def test_plot_data_of_an_empty_summary_is_all_none(tmp_path):
    assert plot_data(_write([], tmp_path / "out"), []) == {spec.name: None for spec in PLOTS}


def test_the_bundled_example_card_and_its_pictures_agree():
    """data_cards/example-card.md is `make run`'s out/card.md; its pictures must be from the same run."""
    root = REPO / "data_cards"
    text = (root / "example-card.md").read_text(encoding="utf-8")
    links = IMAGE_LINK.findall(text)
    assert {Path(target).stem for _, target in links} == {spec.name for spec in PLOTS}
    plots = {Path(target).stem: read_plot_data(root / target) for _, target in links}
    table = re.search(r"\| language \| stories \| frames \|\n\| --- \| ---: \| ---: \|\n((?:\|.*\n)+)", text).group(1)
    assert [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()] == \
        [[label, str(s), str(f)] for label, s, f in plots["languages"]["rows"]]
    total = re.search(r"\| \*\*total\*\* \| \*\*(\d+)\*\* \| \*\*(\d+)\*\*", text)
    assert plots["frames_per_story"]["n"] == int(total.group(1))
    assert plots["words_per_frame"]["n"] == int(total.group(2))
    dropped = re.search(r"(\d+) frames? dropped before writing", text)
    assert sum(n for _, n in plots["drop_reasons"]["frames_dropped"]) == (int(dropped.group(1)) if dropped else 0)
