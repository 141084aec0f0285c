"""Small picture books with known truth, in every format and layout storyloom must read.

Each generator writes one book and returns a :class:`BookTruth`: the story frames it must yield
(picture pixels, text, page), in order, and the front/back matter that must not leak (texts and
pictures). Pictures are smooth, distinct "illustrations" (gradients and shapes, like flat-colour
children's art) so that near-duplicate and blank checks behave as on real books.

Used by the tests (``tests/test_ebook_*.py``) and by ``bench/ebooks_bench.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SENTENCES = [
    "Little Tano found a red seed under the mango tree.",
    "He planted it by the river and gave it water every day.",
    "The rains came, and a green shoot pushed up through the mud.",
    "Soon the shoot was taller than Tano and his goat.",
    "One morning the tree was full of bright red fruit.",
    "Tano shared the fruit with everyone in the village.",
    "Grandmother said it was the sweetest fruit she had ever tasted.",
    "That night the children danced under the new tree.",
    "A small bird built a nest in its highest branch.",
    "And every year the tree gave fruit to the whole village.",
]

# front and back matter: none of these words may reach a frame
TITLE = "The Red Seed"
AUTHOR = "Ama Mensah"
ILLUSTRATOR = "Kofi Boateng"
COPYRIGHT = ("© 2024 Storyloom Press. This work is licensed under a Creative Commons Attribution 4.0 "
             "International License. ISBN 978-0-00-000000-0")
DEDICATION = "For Efua, who loves mangoes."
ABOUT = "About the author: Ama Mensah lives in Accra and writes stories for children."
BLURB = "A warm story about patience and sharing for young readers. Level 2."
HEADER = "Storyloom Free Books"


@dataclass
class TruthFrame:
    picture: np.ndarray  # RGB, the illustration as drawn into the book
    text: str
    page: int


@dataclass
class BookTruth:
    name: str
    path: Path
    layout: str
    frames: list[TruthFrame]
    title: str = TITLE
    authors: list[str] = field(default_factory=lambda: [AUTHOR])
    illustrators: list[str] = field(default_factory=lambda: [ILLUSTRATOR])
    license: str | None = "CC-BY"
    language: str | None = "en"
    matter_texts: list[str] = field(default_factory=list)
    matter_pictures: list[np.ndarray] = field(default_factory=list)
    url: str | None = None  # set when the book is offered over HTTP
    lead_in: str | None = None  # story text before the first illustration, which no frame may hold


def picture(seed: int, width: int = 480, height: int = 360) -> np.ndarray:
    """A distinct smooth illustration: a two-colour gradient sky, a ground band and shapes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(1000 + seed)
    top, bottom = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    t = np.linspace(0, 1, height)[:, None, None]
    sky = (top * (1 - t) + bottom * t).astype(np.uint8).repeat(width, axis=1)
    image = Image.fromarray(sky)
    draw = ImageDraw.Draw(image)
    ground = int(height * rng.uniform(0.6, 0.8))
    draw.rectangle([0, ground, width, height], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    for _ in range(6):
        x, y = rng.integers(0, width), rng.integers(0, height)
        rx, ry = rng.integers(width // 12, width // 4), rng.integers(height // 12, height // 4)
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=colour)
        else:
            draw.rectangle([x - rx, y - ry, x + rx, y + ry], fill=colour)
    return np.asarray(image)


def ornament(seed: int = 0, size: int = 40) -> np.ndarray:
    """A small decoration (a flourish, a logo)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    colour = ((seed * 70) % 255, 90, 160)
    draw.ellipse([4, 4, size - 4, size - 4], outline=colour, width=4)
    draw.line([0, size // 2, size, size // 2], fill=colour, width=3)
    return np.asarray(image)


def png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(array: np.ndarray, quality: int = 95) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def story(offset: int, count: int) -> list[str]:
    return [SENTENCES[(offset + i) % len(SENTENCES)] for i in range(count)]


def grey_small(image: np.ndarray, size: tuple[int, int] = (48, 36)) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def picture_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute grey difference at 48x36 (0-255): same picture < 6, different ones > 20."""
    return float(np.abs(grey_small(a) - grey_small(b)).mean())


def parse_book(path: Path, work_dir: Path, cfg=None, **item_fields):
    """Run the book parse stage (through the work directory owner) on a local file; returns its
    index and the stored frame pictures."""
    from PIL import Image

    from pipeline.book.fetch import FetchedBook
    from pipeline.book.stages import PAIRS_DIR, book_work
    from pipeline.book.stages import parse_book as parse_stage
    from pipeline.config import IngestConfig
    from pipeline.sources import SourceItem

    path = Path(path)
    cfg = cfg or IngestConfig()
    item = SourceItem(source_id="book", input=str(path), kind="ebook", path=str(path), **item_fields)
    work = book_work(Path(work_dir), item, cfg)
    result = parse_stage(work, item, FetchedBook("book", str(path), path.as_uri()), cfg)
    images = [np.asarray(Image.open(Path(work_dir) / PAIRS_DIR / f["file"]).convert("RGB")) for f in result["frames"]]
    return result, images


def assert_matches(truth: BookTruth, result: dict, images: list[np.ndarray], pages: bool = True) -> None:
    """Exact frames, order, (``pages``) pages and texts; each picture closest to its own truth, and no
    matter leaked."""
    frames = result["frames"]
    assert [f["text"] for f in frames] == [t.text for t in truth.frames], truth.name
    assert len(images) == len(truth.frames), truth.name
    if pages:
        assert [f["page"] for f in frames] == [t.page for t in truth.frames], truth.name
    for i, image in enumerate(images):
        distances = [picture_distance(image, t.picture) for t in truth.frames]
        assert int(np.argmin(distances)) == i and distances[i] < 6, (truth.name, i, distances)
        assert all(picture_distance(image, m) > 20 for m in truth.matter_pictures), (truth.name, i)
    texts = " ".join(f["text"] for f in frames)
    assert not [m for m in truth.matter_texts if m in texts], truth.name
