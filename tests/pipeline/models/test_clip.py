"""CLIP stage with a tiny random open_clip model loaded by path: batched embeddings, planted
photo / text-card / near-duplicate frames dropped by reason, CLIP-settled realignment, scores.

A random model's text tower says nothing about pictures, so where a test needs to know what
CLIP "thinks" of a prompt or a sentence, a stub text side maps those strings to the (real)
image embeddings of reference pictures; every image goes through the real model.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open_clip")

import torch  # noqa: E402

from pipeline.frames.clean import CleanResult, FrameCandidate  # noqa: E402
from pipeline.models.clip import (  # noqa: E402
    ClipEncoder, _encode_tokens, clip_scores, encoder_for, frame_classes, refine_with_clip,
)
from pipeline.config import IngestConfig  # noqa: E402
from pipeline.text.subtitles import Cue  # noqa: E402
from tests.model_helpers import write_tiny_models  # noqa: E402
from tests.pipeline.frames.test_clean import picture  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"))


def config(tiny, **clip):
    section = tiny.models_section("clip", clip={"dedup_threshold": 0.99, **clip})
    return IngestConfig.from_dict({"models": section}).models


def photo(seed: int, size=(180, 320)) -> np.ndarray:
    """A photo-like frame: smooth light, a face-coloured oval, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size[0], 0:size[1]]
    base = np.stack([200 - 0.3 * y, 150 - 0.2 * x + 0.1 * y, 120 + 0.1 * x], -1)
    base[((x - 160) / 50) ** 2 + ((y - 90) / 70) ** 2 < 1] = (225, 180, 150)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def card(text: str, size=(180, 320)) -> np.ndarray:
    import cv2

    image = np.zeros((*size, 3), np.uint8)
    cv2.putText(image, text, (20, 100), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    return image


def noisy(image: np.ndarray, seed: int = 1) -> np.ndarray:
    return np.clip(image.astype(int) + np.random.default_rng(seed).integers(-6, 7, image.shape), 0, 255).astype(np.uint8)


ILLUSTRATIONS = [picture(seed) for seed in (1, 3, 4, 6)]


class StubTextEncoder(ClipEncoder):
    """The real image side; texts listed in ``stub`` get the embedding given there."""

    def __init__(self, loaded, batch_size, stub: dict[str, np.ndarray]):
        super().__init__(loaded, batch_size)
        self.stub = stub

    def encode_texts(self, texts):
        real = [t for t in texts if t not in self.stub]
        encoded = dict(zip(real, super().encode_texts(real))) if real else {}
        return np.stack([self.stub[t] if t in self.stub else encoded[t] for t in texts]).astype(np.float32)


@pytest.fixture(scope="module")
def stub_encoder(tiny):
    """Prompts ILLUSTRATION / PHOTO / CARD mean: like these illustrations, this photo, this card."""
    real = encoder_for(config(tiny))
    illustrations, photo_ref, card_ref = real.encode_images(ILLUSTRATIONS), *real.encode_images([photo(0), card("SUBSCRIBE")])
    mean = illustrations.mean(axis=0)
    stub = {"ILLUSTRATION": mean / np.linalg.norm(mean), "PHOTO": photo_ref, "CARD": card_ref}
    return StubTextEncoder(real.loaded, real.batch_size, stub)


def stub_config(tiny, **clip):
    return config(tiny, illustration_prompts=["ILLUSTRATION"], photo_prompts=["PHOTO"], text_card_prompts=["CARD"], **clip)


def frame(image, t0, t1, text="", boundary="change") -> FrameCandidate:
    return FrameCandidate(image=image, t_start=t0, t_end=t1, text=text, flags=[] if text else ["no_speech"], boundary=boundary)


def test_embeddings_are_batched_unit_vectors(tiny):
    images = [picture(s) for s in range(5)]
    one_batch = ClipEncoder(encoder_for(config(tiny)).loaded, batch_size=16).encode_images(images)
    small_batches = ClipEncoder(encoder_for(config(tiny)).loaded, batch_size=2).encode_images(images)
    assert one_batch.shape == (5, 32) and one_batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(one_batch, axis=1), 1.0, atol=1e-5)
    assert np.allclose(one_batch, small_batches, atol=1e-5)


def test_tensor_preprocessing_matches_open_clips_transform(tiny):
    from PIL import Image

    encoder = encoder_for(config(tiny))
    assert encoder._tensor_preprocess_cfg() is not None  # the standard transform: run as tensor ops
    landscape, portrait = picture(7), picture(8, size=(320, 180))
    grey = np.asarray(Image.fromarray(picture(9)).convert("L"))
    rgba = np.asarray(Image.fromarray(picture(10)).convert("RGBA"))
    images = [landscape, portrait, grey, rgba, Image.fromarray(picture(11))]
    reference = torch.stack([encoder.loaded.preprocess(Image.fromarray(np.asarray(img)) if not isinstance(img, Image.Image) else img)
                             for img in images])
    pixels = encoder.pixels(images)
    assert pixels.shape == reference.shape
    assert float((pixels - reference).abs().mean()) < 0.01
    with torch.inference_mode():
        ours = torch.nn.functional.normalize(encoder.loaded.model.encode_image(pixels), dim=-1)
        theirs = torch.nn.functional.normalize(encoder.loaded.model.encode_image(reference), dim=-1)
    assert float((ours * theirs).sum(-1).min()) > 0.999


def test_short_texts_run_on_their_own_length_with_the_same_result(tiny):
    loaded = encoder_for(config(tiny)).loaded
    tokens = loaded.tokenizer(["Pip.", "The hill was too windy, and the river was far too wet for a fox.", ""])
    with torch.inference_mode():
        assert torch.allclose(_encode_tokens(loaded.model, tokens), loaded.model.encode_text(tokens), atol=1e-5)


def test_prompt_classes_are_cached_unit_ensembles(tiny):
    encoder = encoder_for(config(tiny))
    cfg = config(tiny).clip
    classes = frame_classes(encoder, cfg)
    assert classes.names == ("illustration", "photo", "text_card")
    assert classes.embeddings.shape == (3, 32)
    assert np.allclose(np.linalg.norm(classes.embeddings, axis=1), 1.0, atol=1e-5)
    mean = encoder.encode_texts(list(cfg.photo_prompts)).mean(axis=0)
    assert np.allclose(classes.embeddings[1], mean / np.linalg.norm(mean), atol=1e-5)
    assert frame_classes(encoder, cfg) is classes
    assert classes.logit_scale == pytest.approx(100.0)


def test_planted_photo_card_and_duplicate_frames_are_dropped_by_reason(tiny, stub_encoder):
    a, b, c, d = ILLUSTRATIONS
    frames = [
        frame(a, 0, 3, "Once upon a time."),
        frame(noisy(photo(0)), 3, 5, "I am the reader."),  # the reader on camera
        frame(b, 5, 8, "A fox looked for a home."),
        frame(noisy(b), 8, 9, "It was cold."),  # the same page, a little different: pHash let it through
        frame(card("THE END"), 9, 10),  # a text card in the middle (intro/outro rules only see the edges)
        frame(c, 10, 13, "She found a hollow."),
        frame(d, 13, 16, "The end."),
    ]
    result = refine_with_clip(CleanResult(frames, {"blank": 2}), stub_config(tiny), encoder=stub_encoder)
    assert result.dropped == {"blank": 2, "clip_duplicate": 1, "photo": 1, "text_card": 1}
    assert [f.text for f in result.kept] == [
        "Once upon a time. I am the reader.", "A fox looked for a home. It was cold.", "She found a hollow.", "The end.",
    ]
    assert [(f.t_start, f.t_end) for f in result.kept] == [(0, 5), (5, 10), (10, 13), (13, 16)]
    assert all(f.clip_score is not None and -1 <= f.clip_score <= 1 for f in result.kept)


def test_filters_and_dedup_can_be_switched_off(tiny, stub_encoder):
    frames = [frame(ILLUSTRATIONS[0], 0, 3, "One."), frame(noisy(photo(0)), 3, 5), frame(noisy(ILLUSTRATIONS[0]), 5, 7)]
    cfg = stub_config(tiny, filter_photos=False, filter_text_cards=False, dedup=False)
    assert len(refine_with_clip(CleanResult(frames, {}), cfg, encoder=stub_encoder).kept) == 3


def test_the_same_picture_after_a_fade_is_a_page_turn(tiny, stub_encoder):
    a = ILLUSTRATIONS[0]
    frames = [frame(a, 0, 3, "The tall man."), frame(noisy(a), 3, 6, "His hoe was too short.", boundary="fade")]
    result = refine_with_clip(CleanResult(frames, {}), stub_config(tiny), encoder=stub_encoder)
    assert len(result.kept) == 2 and "repeated_image" in result.kept[1].flags


def test_a_frame_dropped_first_gives_its_text_to_the_next(tiny, stub_encoder):
    frames = [frame(noisy(photo(0)), 0, 2, "Hello, I am Ann."), frame(ILLUSTRATIONS[1], 2, 5, "Pip woke up.")]
    result = refine_with_clip(CleanResult(frames, {}), stub_config(tiny, align=False), encoder=stub_encoder)
    assert [f.text for f in result.kept] == ["Hello, I am Ann. Pip woke up."]
    assert (result.kept[0].t_start, result.kept[0].t_end) == (0, 5)


def test_clip_settles_the_sentence_spoken_across_a_page_turn(tiny, stub_encoder):
    a, b, c, _ = ILLUSTRATIONS
    images = stub_encoder.encode_images([a, b, c])
    sentences = [Cue(0.5, 2.5, "A fox in the snow."), Cue(3.0, 5.0, "A red house."), Cue(8.5, 11.0, "A tree.")]
    for target in (0, 1):  # "A red house." is spoken half over page 0 and half over page 1
        stub = dict(stub_encoder.stub)
        stub.update({"A fox in the snow.": images[0], "A red house.": images[target], "A tree.": images[2]})
        encoder = StubTextEncoder(stub_encoder.loaded, 4, stub)
        frames = [frame(a, 0, 4, "A fox in the snow. A red house."), frame(b, 4, 8), frame(c, 8, 12, "A tree.")]
        cfg = stub_config(tiny, filter_photos=False, filter_text_cards=False)
        result = refine_with_clip(CleanResult(frames, {}), cfg, sentences, encoder=encoder)
        texts = [f.text for f in result.kept]
        if target == 1:
            assert texts == ["A fox in the snow.", "A red house.", "A tree."]
            assert result.kept[1].flags == [] and result.kept[1].align_score is not None
        else:
            assert texts == ["A fox in the snow. A red house.", "", "A tree."]
            assert "no_speech" in result.kept[1].flags and result.kept[1].align_score is None
            assert result.kept[1].clip_score is None


def test_with_clear_timing_the_real_model_keeps_the_time_alignment(tiny):
    a, b, c, _ = ILLUSTRATIONS
    sentences = [Cue(0.5, 3.5, "Pip woke up."), Cue(4.5, 7.5, "She went out."), Cue(8.5, 11.5, "She slept.")]
    frames = [frame(a, 0, 4, "Pip woke up."), frame(b, 4, 8, "She went out."), frame(c, 8, 12, "She slept.")]
    cfg = config(tiny, filter_photos=False, filter_text_cards=False)
    result = refine_with_clip(CleanResult(frames, {}), cfg, sentences)
    assert [f.text for f in result.kept] == ["Pip woke up.", "She went out.", "She slept."]
    assert all(0 < f.align_score <= 1 for f in result.kept)


def test_clip_scores_for_books(tiny):
    scores = clip_scores(ILLUSTRATIONS[:3], ["A fox.", "", None], config(tiny))
    assert scores[1] is None and scores[2] is None and -1 <= scores[0] <= 1
    with pytest.raises(ValueError):
        clip_scores(ILLUSTRATIONS[:2], ["x"], config(tiny))
