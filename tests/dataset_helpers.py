"""A synthetic storyloom dataset written through the real writers, for tests and benchmarks of the
dataset tools: many stories in seconds, with values the real fixtures lack (CLIP scores, every
flag, several languages and licences).

Frames are one tiny JPEG whose comment segment names the story and frame, so every frame's
bytes differ (a copy can be checked byte for byte) without encoding thousands of images.
"""

from __future__ import annotations

import random
from functools import partial
from io import BytesIO
from pathlib import Path

from pipeline import __version__
from pipeline.output.catalog import write_catalog, write_sources_table
from pipeline.output.contract import Frame, SourceInfo, Story, image_member, mask_member
from pipeline.output.shards import assign_split, plan_story, write_planned_shards
from pipeline.records import SourceResult
from pipeline.storage import OutputLayout, dumps_json, write_if_changed

LANGUAGES = ("en", "de", "fr", None)
LICENSES = ("CC-BY", "CC0", "CC-BY-NC", "public-domain", "CC-BY-SA", None)
FLAGS = ("no_speech", "repeated_image", "rectified", "flattened", "text_over_picture")
WORDS = ("fox", "moon", "boat", "the", "a", "little", "river", "sang", "under", "stars", "kite", "home")
CONFIG_HASH = "synthetic0000000"


def _base_images() -> tuple[bytes, bytes]:
    from PIL import Image

    jpeg, png = BytesIO(), BytesIO()
    Image.new("RGB", (16, 12), (200, 120, 40)).save(jpeg, format="JPEG", quality=80)
    Image.new("L", (16, 12), 255).save(png, format="PNG")
    return jpeg.getvalue(), png.getvalue()


def tagged_jpeg(base: bytes, tag: str) -> bytes:
    """``base`` with a JPEG comment segment (COM) holding ``tag`` right after the SOI marker."""
    body = tag.encode("utf-8")
    return base[:2] + b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body + base[2:]


def synthetic_story(i: int, rng: random.Random) -> Story:
    n_frames = rng.randint(1, 8)
    kind = "video" if i % 3 else "ebook"
    frames = []
    for f in range(n_frames):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.choice((0, 1, 2, 3, 5, 8, 13))))
        flags = sorted(rng.sample(FLAGS, rng.choice((0, 0, 0, 1, 2))))
        if not text and "no_speech" not in flags:
            flags = sorted([*flags, "no_speech"])
        frames.append(Frame(
            index=f, image=image_member(f), width=16, height=12,
            t_start=float(f) if kind == "video" else None, t_end=float(f) + 1.0 if kind == "video" else None,
            page=None if kind == "video" else f + 1, text=text,
            scores={"align": None if rng.random() < 0.3 else round(rng.random(), 3),
                    "clip": None if rng.random() < 0.25 else round(rng.uniform(0.1, 0.4), 3)},
            flags=flags, has_mask=kind == "ebook" and rng.random() < 0.3,
            text_assignment="sentences" if kind == "video" and text else None))
    source = SourceInfo(kind=kind, url=f"https://example.org/{i}", title=f"Story {i}", creator="synthetic",
                        license=LICENSES[i % len(LICENSES)], language=LANGUAGES[(i // 2) % len(LANGUAGES)],
                        duration_s=float(n_frames) if kind == "video" else None, extra={"source_id": f"syn-{i:05d}"})
    return Story(story_id=f"syn-{i:05d}", source=source, frames=frames)


def _media(story: Story, jpeg: bytes, png: bytes) -> dict[str, bytes]:
    media = {}
    for frame in story.frames:
        media[frame.image] = tagged_jpeg(jpeg, f"{story.story_id}/{frame.index}")
        if frame.has_mask:
            media[mask_member(frame.index)] = png
    return media


def write_synthetic_dataset(root: Path, n_stories: int, seed: int = 0, test_fraction: float = 0.2,
                            max_stories_per_shard: int = 100) -> Path:
    """A complete dataset (shards, manifests, catalog, sources, card, config.json) of ``n_stories``."""
    from pipeline.config import IngestConfig, ShardConfig
    from pipeline.output.card import write_card

    rng = random.Random(seed)
    jpeg, png = _base_images()
    layout = OutputLayout(Path(root))
    layout.root.mkdir(parents=True, exist_ok=True)
    cfg = ShardConfig(max_stories_per_shard=max_stories_per_shard, test_fraction=test_fraction)
    planned, results = [], []
    for i in range(n_stories):
        story = synthetic_story(i, rng)
        story.split = assign_split(story.story_id, test_fraction)
        story.pipeline = {"version": __version__, "config_hash": CONFIG_HASH}
        media = _media(story, jpeg, png)
        planned.append(plan_story(story, {k: len(v) for k, v in media.items()}, partial(_media, story, jpeg, png),
                                  "synthetic"))
        results.append(SourceResult(source_id=story.story_id, input=story.source.url, kind=story.source.kind,
                                    status="ok", story_id=story.story_id, title=story.source.title,
                                    license=story.source.license, language=story.source.language,
                                    frames=len(story.frames), dropped={"blank": i % 3}))
    results.append(SourceResult(source_id="syn-failed", input="https://example.org/gone", kind="video",
                                status="failed", error="HTTP 404", stage="fetch"))
    summary = write_planned_shards(planned, layout, cfg, CONFIG_HASH, __version__)
    write_catalog(summary, layout.catalog)
    write_sources_table(results, layout.sources_table)
    settings = IngestConfig().to_dict()
    settings["shards"] = {**settings["shards"], "max_stories_per_shard": max_stories_per_shard,
                          "test_fraction": test_fraction}
    write_if_changed(layout.config, dumps_json({"config": settings, "config_hash": CONFIG_HASH,
                                                "version": __version__}).encode("utf-8"))
    write_card(summary, results, settings, layout)
    return layout.root
