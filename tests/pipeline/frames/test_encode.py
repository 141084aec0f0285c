"""The frame encoders: the raw keyframe store round-trips exactly; shard JPEGs are deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import ShardConfig
from pipeline.frames.encode import decode_raw, encode_frame, encode_raw


@pytest.mark.parametrize("shape", [(480, 854, 3), (37, 5, 3), (64, 48)])
def test_raw_frames_come_back_pixel_for_pixel(shape):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    image[: shape[0] // 2] = 200  # a flat half, as pages have: it must compress, and still round-trip
    data = encode_raw(image)
    back = decode_raw(data)
    assert back.shape == image.shape and back.dtype == np.uint8
    assert np.array_equal(back, image)
    assert encode_raw(image) == data  # same pixels, same bytes
    if shape[0] > 100:
        assert len(data) < image.nbytes * 0.75  # compressed, not stored


def test_raw_frames_accept_non_contiguous_views():
    image = np.arange(60 * 40 * 3, dtype=np.uint8).reshape(60, 40, 3)[::2, ::-1]
    assert np.array_equal(decode_raw(encode_raw(image)), image)


def test_a_file_that_is_not_a_raw_frame_is_refused():
    with pytest.raises(ValueError, match="not a storyloom raw frame"):
        decode_raw(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_shard_jpegs_are_deterministic_and_fit_the_long_side():
    image = np.random.default_rng(1).integers(0, 256, size=(480, 854, 3), dtype=np.uint8)
    cfg = ShardConfig(image_max_side=512)
    first, width, height = encode_frame(image, cfg)
    assert (width, height) == (512, 288)
    assert encode_frame(image, cfg)[0] == first and first[:2] == b"\xff\xd8"
