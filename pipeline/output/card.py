"""The dataset card (``card.md``): counts, sources, licences, filters and examples of one output.

:func:`card_context` computes every number from the shard summary and the per-source results;
``data_cards/template.md.j2`` lays them out. The card's plots (``card/*.png``, linked from the
card) are drawn by :mod:`pipeline.output.card_plots` from the same inputs. The card holds no
timestamps or absolute paths, so a rerun on the same inputs writes the same bytes.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from pipeline.output.card_plots import plot_data, plot_links, write_card_plots
from pipeline.output.contract import member_name
from pipeline.output.shards import SPLITS, ShardSummary
from pipeline.records import SourceResult
from pipeline.storage import OutputLayout, write_if_changed

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "data_cards"
TEMPLATE_NAME = "template.md.j2"
N_EXAMPLES = 5
EXAMPLE_TEXT_CHARS = 240
STATUSES = ("ok", "skipped", "failed")


def render_card(
    summary: ShardSummary,
    results: list[SourceResult],
    config_dict: dict[str, Any],
    layout: OutputLayout,
    name: str | None = None,
) -> str:
    """The card as Markdown (its plots are not drawn). ``name`` defaults to the output directory's name."""
    context = card_context(summary, results, config_dict, name or layout.root.resolve().name)
    return _template().render(**context)


def write_card(
    summary: ShardSummary,
    results: list[SourceResult],
    config_dict: dict[str, Any],
    layout: OutputLayout,
    name: str | None = None,
) -> Path:
    """Draw the card's plots into ``card/``, then render the card and write it atomically to
    ``layout.card`` (files left alone when unchanged)."""
    context = card_context(summary, results, config_dict, name or layout.root.resolve().name)
    write_card_plots(context["plot_data"], layout)
    write_if_changed(layout.card, _template().render(**context).encode("utf-8"))
    log.info("card -> %s", layout.card)
    return layout.card


def card_context(
    summary: ShardSummary, results: list[SourceResult], config_dict: dict[str, Any], name: str
) -> dict[str, Any]:
    """Every value the template shows, computed here so the template only lays them out."""
    stories = [placed.story for placed in summary.placed]
    frames = [frame for story in stories for frame in story.frames]
    pipeline = stories[0].pipeline if stories else {}
    split_totals = summary.split_totals()
    splits = [{"split": s, **split_totals[s], "size": human_bytes(split_totals[s]["bytes"])} for s in SPLITS]
    totals = {"stories": summary.stories, "frames": summary.frames, "shards": len(summary.shards),
              "bytes": summary.total_bytes, "size": human_bytes(summary.total_bytes)}

    with_text = sum(1 for f in frames if f.text.strip())
    no_speech = sum(1 for f in frames if not f.text.strip() and "no_speech" in f.flags)
    text_words = [len(f.text.split()) for f in frames if f.text.strip()]
    frames_per_story = [len(s.frames) for s in stories]
    durations = [s.source.duration_s for s in stories if s.source.duration_s is not None]

    dropped: Counter[str] = Counter()
    for result in results:
        dropped.update(result.dropped)
    status_counts = Counter(r.status for r in results)
    plots = plot_data(summary, results)
    problems = sorted((r for r in results if r.status != "ok"),
                      key=lambda r: (r.status != "failed", r.status, r.source_id))  # failures first
    return {
        "name": name,
        "version": pipeline.get("version"),
        "config_hash": pipeline.get("config_hash"),
        "totals": totals,
        "splits": splits,
        "duplicates": len(summary.duplicates),
        "languages": _tally(stories, lambda s: s.source.language),
        "licenses": _tally(stories, lambda s: s.source.license),
        "kinds": _tally(stories, lambda s: s.source.kind),
        "source_status": [{"status": s, "count": status_counts.get(s, 0)} for s in STATUSES]
        + [{"status": s, "count": c} for s, c in sorted(status_counts.items()) if s not in STATUSES],
        "n_sources": len(results),
        "problems": [{"source_id": r.source_id, "input": r.input, "status": r.status, "stage": r.stage or "",
                      "error": r.error or ""} for r in problems],
        "dropped": sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])),
        "dropped_total": sum(dropped.values()),
        "text": {"with_text": with_text, "no_speech": no_speech,
                 "empty_other": len(frames) - with_text - no_speech,
                 "captioned": sum(1 for f in frames if f.caption),
                 "with_text_pct": _pct(with_text, len(frames)), "no_speech_pct": _pct(no_speech, len(frames))},
        "flags": sorted(Counter(flag for f in frames for flag in f.flags).items(), key=lambda kv: (-kv[1], kv[0])),
        "distributions": {
            "frames_per_story": _spread(frames_per_story),
            "words_per_text_frame": _spread(text_words),
            "hours_of_video": f"{sum(durations) / 3600:.2f}" if durations else None,
        },
        "examples": _examples(summary),
        "config": _config_sections(config_dict),
        "plot_data": plots,
        "plots": plot_links(plots),
    }


def human_bytes(n: int) -> str:
    """``n`` bytes in binary units, e.g. ``"20.0 KiB"``."""
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            break
    return f"{size:.1f} {unit}"


def md_cell(value: Any) -> str:
    """A value made safe for one Markdown table cell (no pipes or line breaks)."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", "\\|")


def _template() -> jinja2.Template:
    path = TEMPLATE_DIR / TEMPLATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"dataset card template {path} is missing; storyloom must be run from a "
                                "source checkout (pip install -e .) so that data_cards/ is next to pipeline/")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    env.filters["cell"] = md_cell
    return env.get_template(TEMPLATE_NAME)


def _tally(stories: list, key) -> list[dict[str, Any]]:
    counts: Counter[str] = Counter()
    frames: Counter[str] = Counter()
    for story in stories:
        label = key(story) or "unknown"
        counts[label] += 1
        frames[label] += len(story.frames)
    return [{"name": k, "stories": v, "frames": frames[k]} for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def _spread(values: list[int]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"min": min(values), "median": f"{statistics.median(values):g}", "mean": f"{statistics.fmean(values):.1f}",
            "max": max(values)}


def _examples(summary: ShardSummary) -> list[dict[str, Any]]:
    """Up to N_EXAMPLES stories spread evenly over the written order, the first frame with text of each."""
    placed = summary.placed
    if not placed:
        return []
    count = min(N_EXAMPLES, len(placed))
    picks = sorted({round(i * (len(placed) - 1) / max(count - 1, 1)) for i in range(count)})
    examples = []
    for i in picks:
        story, shard = placed[i]
        frame = next((f for f in story.frames if f.text.strip()), story.frames[0])
        text = " ".join(frame.text.split())
        if len(text) > EXAMPLE_TEXT_CHARS:
            text = text[: EXAMPLE_TEXT_CHARS - 1].rstrip() + "…"
        examples.append({"story_id": story.story_id, "frame": frame.index, "split": story.split, "shard": shard,
                         "member": member_name(story.story_id, frame.image), "title": story.source.title,
                         "text": text, "caption": frame.caption})
    return examples


def _config_sections(config_dict: dict[str, Any]) -> list[dict[str, Any]]:
    """Config as (section, [(key, JSON value)]); ``run`` is left out: it does not change outputs."""
    sections = []
    for section, values in sorted(config_dict.items()):
        if section == "run":
            continue
        if isinstance(values, dict):
            items = [(k, json.dumps(v, sort_keys=True, ensure_ascii=False)) for k, v in sorted(values.items())]
        else:
            items = [("value", json.dumps(values, sort_keys=True, ensure_ascii=False))]
        sections.append({"name": section, "items": items})
    return sections
