"""The bundled example dataset: four short synthetic stories and their ``sources.yaml``.

:func:`example_specs` gives their specs; :func:`write_example_sources` writes the videos (only
those missing or out of date) for ``make run`` and the offline example.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from pipeline.storage import atomic_write_text
from pipeline.synthetic.spec import PageSpec, VideoSpec, output_files
from pipeline.synthetic.writer import write_story_video

log = logging.getLogger(__name__)


EXAMPLE_STORIES: dict[str, dict[str, Any]] = {
    "fox-home": {
        "title": "The Fox Who Looked for a Home",
        "style": "cut", "line_art": True, "intro": False, "outro": False,
        "pages": [
            "The Fox Who Looked for a Home",
            "Little Fox had no home. The wind was cold.",
            "She looked under a big rock. A snail lived there.",
            "She looked in a hollow tree. An owl said, go away!",
            "At last she found a hill with soft grass. She dug and dug.",
            "Now Little Fox has a warm den. She sleeps well.",
        ],
    },
    "little-cloud": {
        "title": "The Little Cloud",
        "style": "crossfade", "line_art": False, "intro": False, "outro": False, "pillarbox": True,
        "pages": [
            "The Little Cloud",
            "A little cloud floated over a dry field.",
            "The corn was thirsty. The cows were thirsty too.",
            "The cloud grew big and grey. Then it began to rain.",
            "The field turned green. The little cloud smiled.",
        ],
    },
    "moon-boat": {
        "title": "Mia and the Moon Boat",
        "style": "fade", "line_art": False, "intro": True, "outro": True,
        "pages": [
            "Mia and the Moon Boat",
            "Mia could not sleep. The moon was shining in her window.",
            "A silver boat came down on a moonbeam.",
            "Mia climbed in. They sailed past the stars.",
            "A sleepy star asked for a song. Mia sang softly.",
            "The boat brought her home. Her bed was warm.",
            "Goodnight, moon. Goodnight, Mia.",
        ],
    },
    "turtle-drum": {
        "title": "The Turtle's Drum",
        "style": "kenburns", "line_art": False, "intro": True, "outro": False, "pillarbox": True,
        "pages": [
            "The Turtle's Drum",
            "Turtle found an old drum by the river.",
            "Boom, boom! The frogs came to listen.",
            "The birds came, and the goats came too.",
            "Everyone danced until the sun went down.",
        ],
    },
}


def example_specs() -> dict[str, VideoSpec]:
    """The specs of the bundled example videos (320x180, 2-4 s per page, English, CC0)."""
    specs = {}
    for i, (name, story) in enumerate(EXAMPLE_STORIES.items()):
        pages = [PageSpec(text, round(min(max(1.4 + 0.045 * len(text), 2.0), 4.0), 2)) for text in story["pages"]]
        specs[name] = VideoSpec(pages=pages, style=story["style"], intro=story["intro"], outro=story["outro"],
                                line_art=story["line_art"], pillarbox=story.get("pillarbox", False),
                                seed=100 + i, title=story["title"], language="en", license="CC0")
    return specs


def _up_to_date(out_dir: Path, name: str, spec: VideoSpec) -> bool:
    files = output_files(out_dir, name, spec)
    if not all(p.exists() and p.stat().st_size > 0 for p in files.values()):
        return False
    try:
        data = json.loads(files["truth"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if data.get("generator", {}).get("fingerprint") != spec.fingerprint():
        return False
    return all((out_dir / s["image"]).exists() for s in data["segments"] if s.get("image"))


def write_example_sources(out_dir: Path) -> Path:
    """Write the bundled example videos and their ``sources.yaml``; returns the yaml's path.

    Videos whose files are there with a matching fingerprint are not rendered again. Paths in the
    yaml are relative to its own directory.
    """
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, spec in example_specs().items():
        if _up_to_date(out_dir, name, spec):
            log.debug("example %s is up to date", name)
        else:
            log.info("writing example video %s (%s, %d pages)", name, spec.style, len(spec.pages))
            write_story_video(out_dir, name, spec)
        entries.append({"path": f"{name}.mp4", "kind": "video", "title": spec.title,
                        "license": spec.license, "language": spec.language, "tags": ["synthetic", "example"]})
    doc = {"defaults": {"language": "en", "license_allow": ["CC0"]}, "sources": entries}
    text = ("# Bundled synthetic read-aloud videos for `make run` (written by pipeline.synthetic).\n"
            "# Paths are relative to this file. Each video has NAME.en.vtt subtitles and NAME.truth.json.\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    path = out_dir / "sources.yaml"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path
