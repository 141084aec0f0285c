"""Captions from a tiny random BLIP saved with save_pretrained: batched, deterministic, off by default."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("transformers")

from pipeline.models.captions import Captioner, caption_images, captioner_for  # noqa: E402
from pipeline.config import IngestConfig  # noqa: E402
from tests.model_helpers import write_tiny_captioner  # noqa: E402
from tests.pipeline.frames.test_clean import picture  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = write_tiny_captioner(tmp_path_factory.mktemp("blip"))
    section = {"device": "cpu", "local_files_only": True, "captions": {"enabled": True, "model": str(folder), "max_new_tokens": 6}}
    return IngestConfig.from_dict({"models": section}).models


def test_captions_for_rgb_images_in_batches(models):
    from PIL import Image

    images = [picture(seed) for seed in range(5)]
    captions = caption_images(images, models)
    assert len(captions) == 5 and all(isinstance(c, str) and c for c in captions)
    vocabulary = set(captioner_for(models).loaded.tokenizer.get_vocab())
    assert all(set(c.split()) <= vocabulary for c in captions)
    one_by_one = Captioner(captioner_for(models).loaded, replace(models.captions, batch_size=1))
    assert one_by_one.caption(images) == captions
    # PIL images work the same, and the same picture always gets the same caption
    assert caption_images([Image.fromarray(images[0])], models) == captions[:1]


def test_off_by_default_and_empty_input():
    off = IngestConfig().models
    assert caption_images([np.zeros((8, 8, 3), np.uint8)] * 3, off) == [None, None, None]
    assert caption_images([], off) == []


def test_book_frames_get_model_captions_and_clip_scores(tmp_path):
    """The book path calls the same captioner and CLIP as videos: captions and scores.clip per frame."""
    from pipeline.book.stages import assemble_book, book_work
    from pipeline.sources import SourceItem
    from tests.bookgen import parse_book
    from tests.bookgen.html import write_html
    from tests.model_helpers import write_tiny_models

    truth = write_html(tmp_path / "book", "plain", seed=3)
    pairs, _ = parse_book(truth.path, tmp_path / "work")
    tiny = write_tiny_models(tmp_path / "models")
    with_models = IngestConfig.from_dict({"models": tiny.models_section("clip", "captions")})
    item = SourceItem(source_id="book", input=str(truth.path), kind="ebook", path=str(truth.path))
    story = assemble_book(book_work(tmp_path / "work", item, with_models), item, with_models, pairs)
    assert len(story.frames) == len(truth.frames) > 0
    assert all(isinstance(f.caption, str) and f.caption for f in story.frames)
    assert all(isinstance(f.scores["clip"], float) and -1 <= f.scores["clip"] <= 1 for f in story.frames)

    without = assemble_book(book_work(tmp_path / "work", item, IngestConfig()), item, IngestConfig(), pairs)
    assert [f.caption for f in without.frames] == [f["caption"] for f in pairs["frames"]]  # the book's alt text
    assert all(f.scores["clip"] is None for f in without.frames)
