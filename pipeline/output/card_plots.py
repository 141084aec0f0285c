"""The data card's pictures: PNG plots in ``card/`` next to ``card.md``, each carrying the values it shows.

:func:`plot_data` computes, from the shard summary and the per-source results, the values of every
plot (``None`` for a plot without data: the card then says so in a sentence instead of linking a
picture). :func:`write_card_plots` draws them with matplotlib's Agg renderer and writes:

- ``frames_per_story.png``, ``words_per_frame.png``: histograms of integers (one bar per value,
  or bins of equal integer width when the values spread wide);
- ``story_duration.png``: histogram of the source duration of the stories that have one (videos);
- ``languages.png``, ``licenses.png``: stories and frames per label, largest first;
- ``drop_reasons.png``: frames dropped before writing, by reason, and sources by status;
- ``examples.png``: a contact sheet, one row of frame thumbnails for each of the first stories by
  id, read from the written shards (so the same code serves any finished dataset).

Each PNG holds the exact plotted values as JSON in a text chunk (:data:`DATA_KEY`), readable with
``PIL.Image.open(path).text`` (:func:`read_plot_data`), so tests and users can check a picture
against the catalog without reading pixels. The bytes depend only on the data: fixed size, dpi and
style (matplotlib's defaults and its bundled DejaVu fonts), no software tag, no dates. matplotlib's
pyplot is never used: every figure is a private :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.dataset.reader import Dataset
from pipeline.output.shards import ShardSummary
from pipeline.records import SourceResult
from pipeline.storage import OutputLayout, write_if_changed

log = logging.getLogger(__name__)

PLOT_DIR = "card"  # next to card.md; image links in the card are relative to it
DATA_KEY = "storyloom:data"  # PNG text chunk holding the plotted values as JSON
DPI = 100
STATUSES = ("ok", "skipped", "failed")
MAX_LABELS = 20  # languages / licences beyond this many are drawn as one "other" bar
MAX_LABEL_CHARS = 32  # longer tick labels are cut (the card's tables have them whole)
MAX_INT_BARS = 40  # integer histograms with a wider spread are binned
MAX_DURATION_BINS = 30
SHEET_STORIES = 4  # the contact sheet shows the first stories by id ...
SHEET_FRAMES = 8  # ... with at most this many frames each
TILE = (128, 96)  # thumbnail box, pixels (width, height)
GAP = 4
LABEL_BAND = 18  # pixels above each row for the story id
MARGIN = 6
BAR_COLOR = "#4c72b0"
SECOND_COLOR = "#dd8452"


@dataclass(frozen=True)
class PlotSpec:
    """One picture of the card: file stem, alt text, and the sentence shown when it has no data."""

    name: str
    title: str
    empty: str

    @property
    def path(self) -> str:
        """The link target, relative to ``card.md``."""
        return f"{PLOT_DIR}/{self.name}.png"


PLOTS = (
    PlotSpec("frames_per_story", "Frames per story", "No stories, so no frames-per-story plot."),
    PlotSpec("words_per_frame", "Words per frame", "No frames, so no words-per-frame plot."),
    PlotSpec("story_duration", "Story duration", "No story has a source duration (only videos have one), "
             "so no duration plot."),
    PlotSpec("languages", "Stories and frames per language", "No stories, so no language plot."),
    PlotSpec("licenses", "Stories and frames per licence", "No stories, so no licence plot."),
    PlotSpec("drop_reasons", "Frames dropped by reason and sources by status",
             "No sources and no dropped frames, so no drop-reason plot."),
    PlotSpec("examples", "Example stories, one row of frames each", "The dataset holds no stories."),
)
PLOT_SPECS = {spec.name: spec for spec in PLOTS}


# --------------------------------------------------------------------------------- the values


def plot_data(summary: ShardSummary, results: list[SourceResult]) -> dict[str, dict[str, Any] | None]:
    """The values of every plot, by plot name; ``None`` where a plot has nothing to show."""
    stories = [placed.story for placed in summary.placed]
    frames_per_story = [len(story.frames) for story in stories]
    words = [len(frame.text.split()) for story in stories for frame in story.frames]
    durations = [story.source.duration_s for story in stories if story.source.duration_s is not None]
    return {
        "frames_per_story": int_histogram(frames_per_story, "frames per story", "stories"),
        "words_per_frame": int_histogram(words, "words per frame (0 = no text)", "frames"),
        "story_duration": duration_histogram(durations, len(stories)),
        "languages": label_counts(stories, lambda story: story.source.language, "language"),
        "licenses": label_counts(stories, lambda story: story.source.license, "licence"),
        "drop_reasons": drop_counts(results),
        "examples": sheet_layout(summary),
    }


def int_histogram(values: list[int], xlabel: str, ylabel: str) -> dict[str, Any] | None:
    """Counts per integer value, and the bars drawn: one per value, or equal integer-width bins.

    Bin edges sit at half integers so that no value falls on an edge.
    """
    if not values:
        return None
    import numpy as np

    array = np.asarray(values, dtype=np.int64)
    uniques, counts = np.unique(array, return_counts=True)
    low, high = int(uniques[0]), int(uniques[-1])
    width = max(1, math.ceil((high - low + 1) / MAX_INT_BARS))
    n_bins = math.ceil((high - low + 1) / width)
    edges = [low - 0.5 + i * width for i in range(n_bins + 1)]
    bin_counts, _ = np.histogram(array, bins=np.asarray(edges))
    return {"xlabel": xlabel, "ylabel": ylabel, "n": int(array.size),
            "by_value": [[int(v), int(c)] for v, c in zip(uniques, counts)],
            "bin_edges": edges, "bin_counts": [int(c) for c in bin_counts]}


def duration_histogram(durations: list[float], n_stories: int) -> dict[str, Any] | None:
    """Histogram of source durations in seconds (stories without one, books, are only counted)."""
    if not durations:
        return None
    import numpy as np

    array = np.asarray(durations, dtype=np.float64)
    n_bins = min(MAX_DURATION_BINS, max(1, math.ceil(math.sqrt(array.size))))
    low, high = float(array.min()), float(array.max())
    if high == low:  # one value: one bar one second wide around it
        n_bins, low, high = 1, low - 0.5, high + 0.5
    edges = [float(e) for e in np.linspace(low, high, n_bins + 1)]
    bin_counts, _ = np.histogram(array, bins=np.asarray(edges))
    return {"xlabel": "source duration (s)", "ylabel": "stories", "n": int(array.size),
            "without_duration": n_stories - int(array.size), "total_s": float(array.sum()),
            "min_s": float(array.min()), "max_s": float(array.max()),
            "bin_edges": edges, "bin_counts": [int(c) for c in bin_counts]}


def label_counts(stories: list, key: Callable[[Any], str | None], what: str) -> dict[str, Any] | None:
    """Stories and frames per label (missing -> ``unknown``), largest first; the tail past
    :data:`MAX_LABELS` rows merged into one ``other`` row."""
    if not stories:
        return None
    story_counts: Counter[str] = Counter()
    frame_counts: Counter[str] = Counter()
    for story in stories:
        label = key(story) or "unknown"
        story_counts[label] += 1
        frame_counts[label] += len(story.frames)
    rows = [[label, n, frame_counts[label]] for label, n in sorted(story_counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    if len(rows) > MAX_LABELS:
        tail = rows[MAX_LABELS - 1:]
        rows = rows[: MAX_LABELS - 1] + [[f"other ({len(tail)} {what}s)", sum(r[1] for r in tail), sum(r[2] for r in tail)]]
    return {"what": what, "rows": rows}


def drop_counts(results: list[SourceResult]) -> dict[str, Any] | None:
    """Frames dropped per reason over all sources, and sources per status (with the stage that
    stopped the ones not written)."""
    dropped: Counter[str] = Counter()
    for result in results:
        dropped.update(result.dropped)
    if not results and not dropped:
        return None
    status_counts = Counter(result.status for result in results)
    statuses = list(STATUSES) + sorted(s for s in status_counts if s not in STATUSES)
    stopped = Counter((r.status, r.stage or "unknown") for r in results if r.status != "ok")
    return {"frames_dropped": sorted(([reason, n] for reason, n in dropped.items()), key=lambda r: (-r[1], r[0])),
            "sources": [[status, status_counts.get(status, 0)] for status in statuses],
            "not_written": [[status, stage, n] for (status, stage), n in sorted(stopped.items())]}


def sheet_layout(summary: ShardSummary) -> dict[str, Any] | None:
    """Where each thumbnail of the contact sheet goes: the first :data:`SHEET_STORIES` stories by
    id, up to :data:`SHEET_FRAMES` frames each, fitted into :data:`TILE` keeping their aspect."""
    placed = sorted(summary.placed, key=lambda p: p.story.story_id)[:SHEET_STORIES]
    if not placed:
        return None
    tile_w, tile_h = TILE
    rows = []
    y = MARGIN
    for story, shard in placed:
        tiles = []
        top = y + LABEL_BAND
        for column, frame in enumerate(story.frames[:SHEET_FRAMES]):
            scale = min(tile_w / max(frame.width, 1), tile_h / max(frame.height, 1))
            w, h = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
            x0 = MARGIN + column * (tile_w + GAP) + (tile_w - w) // 2
            y0 = top + (tile_h - h) // 2
            tiles.append({"member": frame.image, "box": [x0, y0, x0 + w, y0 + h]})
        rows.append({"story_id": story.story_id, "shard": shard, "frames": len(story.frames),
                     "label_y": y, "tiles": tiles})
        y = top + tile_h + GAP
    width = 2 * MARGIN + SHEET_FRAMES * tile_w + (SHEET_FRAMES - 1) * GAP
    return {"size": [width, y - GAP + MARGIN], "stories": rows}


# ------------------------------------------------------------------------------- the pictures


def write_card_plots(data: dict[str, dict[str, Any] | None], layout: OutputLayout) -> list[str]:
    """Write the plots that have data into ``card/`` (unchanged files keep their bytes and mtime)
    and remove the ones a previous run left that have none now. Returns the names written."""
    directory = layout.root / PLOT_DIR
    written = []
    for spec in PLOTS:
        path = directory / f"{spec.name}.png"
        values = data.get(spec.name)
        if values is None:
            path.unlink(missing_ok=True)  # a stale picture would contradict the card
            continue
        write_if_changed(path, render_plot(spec.name, values, layout.root))
        written.append(spec.name)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
    log.info("card plots -> %s (%d)", directory, len(written))
    return written


def render_plot(name: str, values: dict[str, Any], root: Path) -> bytes:
    """The PNG bytes of plot ``name`` for ``values`` (``root``: the dataset, for the contact sheet)."""
    draw = {"frames_per_story": _draw_histogram, "words_per_frame": _draw_histogram,
            "story_duration": _draw_durations, "languages": _draw_labels, "licenses": _draw_labels,
            "drop_reasons": _draw_drops}
    title = PLOT_SPECS[name].title
    with _fixed_style():
        figure = _draw_sheet(values, root) if name == "examples" else draw[name](values, title)
        return _png(figure, values)


def read_plot_data(path: str | Path) -> dict[str, Any]:
    """The values a card PNG shows, as written by :func:`render_plot`."""
    from PIL import Image

    with Image.open(path) as image:
        return json.loads(image.text[DATA_KEY])


@contextlib.contextmanager
def _fixed_style() -> Iterator[None]:
    """matplotlib's default style whatever the user's matplotlibrc says, restored afterwards."""
    import matplotlib
    import matplotlib.style

    with matplotlib.rc_context():
        matplotlib.style.use("default")
        matplotlib.rcParams.update({"font.family": "DejaVu Sans", "font.size": 9,
                                    "axes.spines.top": False, "axes.spines.right": False})
        yield


def _png(figure, values: dict[str, Any]) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    payload = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None, DATA_KEY: payload})
    return buffer.getvalue()


def _figure(width_px: int, height_px: int):
    from matplotlib.figure import Figure

    # no layout engine: constrained layout took a third of the drawing time; margins are set below
    return Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI)


def _axes_row(figure, label_px: list[int]) -> list:
    """Axes side by side, each with room on its left for tick labels ``label_px`` wide; room for
    the x label below and a title above (pixel sizes: the figure's height varies with its rows)."""
    width, height = figure.get_size_inches() * DPI
    bottom, top, right, gap = 46 / height, 1 - 30 / height, 14 / width, 22 / width
    lefts = [max(px, 36) / width for px in label_px]
    panel = (1 - right - sum(lefts) - gap * (len(lefts) - 1)) / len(lefts)
    axes, x = [], 0.0
    for left in lefts:
        x += left
        axes.append(figure.add_axes((x, bottom, panel, top - bottom)))
        x += panel + gap
    return axes


def _label_px(labels: list[str]) -> int:
    """Room for a column of tick labels (measured at the tick font size), plus the ticks."""
    import matplotlib
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, DPI)
    font = FontProperties(size=matplotlib.rcParams["ytick.labelsize"])
    widths = [renderer.get_text_width_height_descent(label, font, ismath=False)[0] for label in labels]
    return 16 + math.ceil(max(widths, default=0))


def _short(label: str) -> str:
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"


def _draw_histogram(values: dict[str, Any], title: str):
    figure = _figure(600, 320)
    (ax,) = _axes_row(figure, [56])
    edges = values["bin_edges"]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    bars = ax.bar(edges[:-1], values["bin_counts"], width=widths, align="edge", color=BAR_COLOR, edgecolor="white")
    if len(bars) <= 25:
        ax.bar_label(bars, labels=[str(c) if c else "" for c in values["bin_counts"]], fontsize=7)
    if widths[0] == 1:  # one bar per integer: tick the integers
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(values["xlabel"])
    ax.set_ylabel(values["ylabel"])
    ax.set_title(f"{title} (n = {values['n']})")
    return figure


def _draw_durations(values: dict[str, Any], title: str):
    figure = _figure(600, 320)
    (ax,) = _axes_row(figure, [56])
    minutes = values["max_s"] >= 600  # long videos read better in minutes; the data stays in seconds
    scale = 60.0 if minutes else 1.0
    edges = [e / scale for e in values["bin_edges"]]
    widths = [b - a for a, b in itertools.pairwise(edges)]
    bars = ax.bar(edges[:-1], values["bin_counts"], width=widths, align="edge", color=BAR_COLOR, edgecolor="white")
    ax.bar_label(bars, labels=[str(c) if c else "" for c in values["bin_counts"]], fontsize=7)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("source duration (min)" if minutes else values["xlabel"])
    ax.set_ylabel(values["ylabel"])
    note = f", {values['without_duration']} without" if values["without_duration"] else ""
    ax.set_title(f"{title} ({values['n']} stories, {values['total_s'] / 3600:.2f} h{note})")
    return figure


def _draw_labels(values: dict[str, Any], title: str):
    rows = values["rows"]
    labels = [_short(row[0]) for row in rows]
    figure = _figure(600, 80 + 24 * len(rows))
    for column, (ax, what, color) in enumerate(zip(_axes_row(figure, [_label_px(labels), 0]), ("stories", "frames"),
                                                   (BAR_COLOR, SECOND_COLOR))):
        _hbars(ax, labels if column == 0 else [""] * len(rows), [row[column + 1] for row in rows], color)
        ax.set_xlabel(what)
    figure.suptitle(title, y=1 - 6 / figure.get_size_inches()[1] / DPI, va="top")
    return figure


def _draw_drops(values: dict[str, Any], title: str):
    dropped = values["frames_dropped"]
    stages: dict[str, list[str]] = {}
    for status, stage, n in values["not_written"]:
        stages.setdefault(status, []).append(f"{stage} {n}")
    statuses = [_short(f"{status} ({', '.join(stages[status])})" if status in stages else status)
                for status, _ in values["sources"]]
    reasons = [_short(row[0]) for row in dropped]
    figure = _figure(700, 80 + 24 * max(len(dropped), len(statuses)))
    left, right = _axes_row(figure, [_label_px(reasons), _label_px(statuses)])
    if dropped:
        _hbars(left, reasons, [row[1] for row in dropped], SECOND_COLOR)
    else:
        left.text(0.5, 0.5, "no frames dropped", ha="center", va="center", transform=left.transAxes)
        left.set_xticks([])
        left.set_yticks([])
    left.set_xlabel("frames dropped")
    _hbars(right, statuses, [row[1] for row in values["sources"]], BAR_COLOR)
    right.set_xlabel("sources")
    figure.suptitle(title, y=1 - 6 / figure.get_size_inches()[1] / DPI, va="top")
    return figure


def _hbars(ax, labels: list[str], counts: list[int], color: str) -> None:
    positions = list(range(len(labels)))
    bars = ax.barh(positions, counts, color=color)
    ax.bar_label(bars, fontsize=7, padding=2)
    ax.set_yticks(positions, labels=labels)
    ax.invert_yaxis()  # largest on top, as in the card's tables
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.margins(x=0.15)


def _draw_sheet(values: dict[str, Any], root: Path):
    """The contact sheet, pixel for pixel: thumbnails pasted on a canvas the size of the figure."""
    import numpy as np
    from matplotlib.figure import Figure
    from PIL import Image

    width, height = values["size"]
    canvas = Image.new("RGB", (width, height), "white")
    rows = values["stories"]
    records = Dataset(OutputLayout(root)).iter_stories(story_ids=[row["story_id"] for row in rows],
                                                       shards=sorted({row["shard"] for row in rows}))
    media = {record.story.story_id: record.media for record in records}
    for row in rows:
        for tile in row["tiles"]:
            x0, y0, x1, y1 = tile["box"]
            with Image.open(io.BytesIO(media[row["story_id"]][tile["member"]])) as image:
                thumb = image.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS)
            canvas.paste(thumb, (x0, y0))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.imshow(np.asarray(canvas), interpolation="none", aspect="equal")
    ax.set_axis_off()
    for row in rows:
        more = f" (first {len(row['tiles'])} of {row['frames']} frames)" if row["frames"] > len(row["tiles"]) else \
            f" ({row['frames']} frames)"
        ax.text(MARGIN, row["label_y"] + LABEL_BAND - 4, row["story_id"] + more, fontsize=8, va="baseline")
    return figure


def plot_links(data: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """For the card template, per plot: its relative path and alt text, or the sentence saying
    why it is missing."""
    return {spec.name: {"path": spec.path if data.get(spec.name) is not None else None,
                        "alt": spec.title, "empty": spec.empty} for spec in PLOTS}

