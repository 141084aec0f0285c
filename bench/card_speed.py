"""Time of the data card (plots included) against the rest of the write-dataset step, same process.

Usage: python bench/card_speed.py [OUT] [--stories N]

1. OUT (default ``out/``, made by ``make run``): a copy of the finished dataset is written again
   step by step as ``flows/ingest.py::write_dataset_task`` does (shards, catalog, sources table,
   card), each step timed (the card first with matplotlib's import, as in a real run, then warm);
   the card's share of the whole step is printed.
2. N synthetic stories (default 10000, 10 frames each, a few words per frame, mixed languages,
   licences and durations) held in memory, with the first stories really written to a shard so
   the contact sheet reads real frames: ``write_card`` against ``write_catalog`` (reference) on
   the same summary. matplotlib's import is warmed first; best of --repeat runs each.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.config import IngestConfig, ShardConfig  # noqa: E402
from pipeline.dataset.reader import open_dataset  # noqa: E402
from pipeline.output.card import write_card  # noqa: E402
from pipeline.output.card_plots import SHEET_STORIES  # noqa: E402
from pipeline.output.catalog import write_catalog, write_sources_table  # noqa: E402
from pipeline.output.contract import Frame, SourceInfo, Story, write_finished_story  # noqa: E402
from pipeline.output.shards import PlacedStory, write_shards  # noqa: E402
from pipeline.records import SourceResult  # noqa: E402
from pipeline.storage import OutputLayout  # noqa: E402


def _best(repeat: int, call) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def example_dataset(out: Path, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / out.name
        shutil.copytree(out, root)
        layout = OutputLayout(root)
        cfg = IngestConfig.from_dict(json.loads(layout.config.read_text())["config"])
        version = json.loads(layout.config.read_text())["version"]
        results = open_dataset(root).sources()
        ok_dirs = sorted(layout.source_dir(r.source_id) for r in results if r.status == "ok")
        summary = write_shards(ok_dirs, layout, cfg.shards, cfg.hash(), version)

        def shards():
            shutil.rmtree(layout.shards_dir)  # written from scratch, as in a first run
            return write_shards(ok_dirs, layout, cfg.shards, cfg.hash(), version)

        times = {
            "shards": _best(repeat, shards),
            "catalog": _best(repeat, lambda: write_catalog(summary, layout.catalog)),
            "sources": _best(repeat, lambda: write_sources_table(results, layout.sources_table)),
        }

        def card():
            shutil.rmtree(root / "card", ignore_errors=True)  # draw every plot, not only the changed ones
            write_card(summary, results, cfg.output_settings(), layout)

        times["card"] = _best(1, card)  # first: with matplotlib's import, as in a real run
        warm = _best(repeat, card)
        total = sum(times.values())
        print(f"{out}: {summary.stories} stories, {summary.frames} frames")
        for name, seconds in times.items():
            print(f"  {name:8s} {seconds:7.3f} s")
        print(f"  card, matplotlib already imported: {warm:.3f} s")
        print(f"  card / whole write-dataset step = {times['card']:.3f} / {total:.3f} s = {times['card'] / total:.2f}")


def _story_dir(work: Path, story_id: str, n_frames: int) -> Path:
    """A finished story with real JPEG frames (what the contact sheet reads from the shard)."""
    import io

    from PIL import Image

    media, frames = {}, []
    for i in range(n_frames):
        buffer = io.BytesIO()
        Image.new("RGB", (768, 432), (40 * i % 256, 90, 160)).save(buffer, "JPEG", quality=90)
        media[f"{i:03d}.jpg"] = buffer.getvalue()
        frames.append(Frame(index=i, image=f"{i:03d}.jpg", width=768, height=432, text="a few words here"))
    write_finished_story(work / story_id, Story(story_id, SourceInfo(kind="video", duration_s=60.0), frames), media)
    return work / story_id


def synthetic(n_stories: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        layout = OutputLayout(Path(tmp) / "out")
        dirs = [_story_dir(layout.work_dir, f"a-{i}", 10) for i in range(SHEET_STORIES)]
        written = write_shards(dirs, layout, ShardConfig(test_fraction=0.0), "bench", "0")
        placed = list(written.placed)
        languages, licenses = ("en", "de", "fr", "es", None), ("CC0", "CC-BY", "CC-BY-SA", "public-domain")
        for i in range(n_stories - len(placed)):
            frames = [Frame(index=j, image=f"{j:03d}.jpg", width=768, height=432, text=" ".join(["word"] * ((i + j) % 23)))
                      for j in range(10)]
            source = SourceInfo(kind="video", language=languages[i % 5], license=licenses[i % 4],
                                duration_s=60.0 + (i * 37) % 1200)
            placed.append(PlacedStory(Story(f"z-{i:06d}", source, frames, split="train"), "shards/none.tar"))
        summary = replace(written, placed=tuple(placed))
        results = [SourceResult(source_id=p.story.story_id, input="x", kind="video", status="ok",
                                dropped={"blank": 1, "intro": i % 2}) for i, p in enumerate(placed)]
        write_card(summary, results, {}, layout)  # warm: matplotlib's import and font cache

        def card():
            shutil.rmtree(layout.root / "card", ignore_errors=True)
            write_card(summary, results, {}, layout)

        card_s = _best(repeat, card)
        catalog_s = _best(repeat, lambda: write_catalog(summary, layout.catalog))
        print(f"synthetic: {len(placed)} stories, {summary.frames} frames")
        print(f"  card    {card_s:7.3f} s")
        print(f"  catalog {catalog_s:7.3f} s (reference)")
        print(f"  card / catalog = {card_s / catalog_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="out", type=Path)
    parser.add_argument("--stories", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if (args.out / "config.json").is_file():
        example_dataset(args.out, args.repeat)
    else:
        print(f"{args.out}: no dataset (run `make run` first); skipping the example dataset")
    synthetic(args.stories, args.repeat)


if __name__ == "__main__":
    main()
