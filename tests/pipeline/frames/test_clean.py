"""Clean stage: planted blank, blurred, duplicate and intro/outro frames are dropped, by reason."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.frames.clean import FrameCandidate, clean_frames, hamming, phash, _grey
from pipeline.config import CleanConfig


def picture(seed: int, size=(180, 320)) -> np.ndarray:
    """An illustration-like picture: random ellipses and bars with edges."""
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((*size, 3), rng.integers(120, 255, 3), dtype=np.uint8)
    for _ in range(12):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        centre = (int(rng.integers(0, size[1])), int(rng.integers(0, size[0])))
        axes = (int(rng.integers(10, 60)), int(rng.integers(10, 60)))
        cv2.ellipse(image, centre, axes, float(rng.integers(0, 180)), 0, 360, colour, -1)
        cv2.ellipse(image, centre, axes, 0, 0, 360, (20, 20, 20), 2)
    return image


def blurred(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 12)


def frame(image, t0, t1, text="", boundary="change") -> FrameCandidate:
    return FrameCandidate(image=image, t_start=t0, t_end=t1, text=text, flags=[] if text else ["no_speech"], boundary=boundary)


def test_planted_frames_are_dropped_by_reason():
    frames = [
        frame(picture(100), 0, 2),  # intro card: no speech at the start
        frame(picture(1), 2, 5, "Once upon a time."),
        frame(np.zeros((180, 320, 3), np.uint8), 5, 6),  # black
        frame(picture(2), 6, 9, "A fox looked for a home."),
        frame(picture(2), 9, 10, "It was cold."),  # same picture, no fade between: a duplicate
        frame(blurred(picture(3)), 10, 12),
        frame(picture(4), 12, 15, "The end."),
        frame(picture(101), 15, 18),  # outro card
    ]
    result = clean_frames(frames, CleanConfig())
    assert result.dropped == {"blank": 1, "blurred": 1, "intro": 1, "near_duplicate": 1, "outro": 1}
    assert [f.text for f in result.kept] == ["Once upon a time.", "A fox looked for a home. It was cold.", "The end."]
    # the duplicate's time span joined the frame it duplicates; the black and blurred frames
    # joined the previous kept frame
    assert [(f.t_start, f.t_end) for f in result.kept] == [(2, 6), (6, 12), (12, 15)]


def test_same_picture_after_a_fade_is_a_page_turn():
    frames = [
        frame(picture(1), 0, 3, "The tall man."),
        frame(picture(1), 3, 6, "His hoe was too short.", boundary="fade"),
    ]
    result = clean_frames(frames, CleanConfig())
    assert len(result.kept) == 2 and result.dropped == {}
    assert result.kept[1].flags == ["repeated_image"]


def test_no_speech_anywhere_keeps_edge_frames():
    frames = [frame(picture(1), 0, 3), frame(picture(2), 3, 6)]
    result = clean_frames(frames, CleanConfig())
    assert len(result.kept) == 2 and result.dropped == {}


def test_switches_turn_filters_off():
    frames = [frame(np.zeros((90, 160, 3), np.uint8), 0, 1, "dark"), frame(blurred(picture(3)), 1, 2, "soft")]
    cfg = CleanConfig(drop_blank=False, drop_blurred=False, drop_intro_outro=False)
    assert len(clean_frames(frames, cfg).kept) == 2


@pytest.mark.parametrize("other_seed, near", [(1, True), (2, False)])
def test_phash_separates_pictures(other_seed, near):
    a = phash(_grey(picture(1)))
    b = phash(_grey(picture(other_seed)[:, ::-1] if not near else (picture(other_seed) * 0.9).astype(np.uint8)))
    assert (hamming(a, b) <= CleanConfig().phash_max_distance) is near
