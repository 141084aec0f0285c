"""Chosen frames decoded again: by pts the very pixels the keyframe stage chose; by time when the
time base is not the recorded one; None for a frame the video does not have."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import KeyframeConfig
from pipeline.synthetic import PageSpec, VideoSpec, write_story_video
from pipeline.video.keyframes import detect_keyframes
from pipeline.video.seek import FrameRef, SeekError, decode_frames


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    spec = VideoSpec(pages=[PageSpec(text, 2.0) for text in ("One.", "Two.", "Three.", "Four.")], seed=5, style="fade")
    truth = write_story_video(tmp_path_factory.mktemp("seek"), "seek", spec, save_pictures=False)
    return truth.video, detect_keyframes(truth.video, KeyframeConfig())


def test_frames_found_by_pts_are_the_chosen_pixels(video):
    path, found = video
    assert len(found.keyframes) == 4 and found.time_base and all(k.pts is not None for k in found.keyframes)
    refs = [FrameRef(k.pts, k.frame_time) for k in reversed(found.keyframes)]  # any order
    images = decode_frames(path, refs, found.time_base)
    assert all(np.array_equal(image, k.image) for image, k in zip(images, reversed(found.keyframes)))


def test_another_time_base_finds_frames_by_time(video):
    path, found = video
    images = decode_frames(path, [FrameRef(123, k.frame_time) for k in found.keyframes], "1/7")
    assert all(np.array_equal(image, k.image) for image, k in zip(images, found.keyframes))


def test_frames_the_video_does_not_have_are_none(video, tmp_path):
    path, found = video
    first = found.keyframes[0]
    refs = [FrameRef(first.pts + 1, None), FrameRef(None, 999.0), FrameRef(None, None), FrameRef(first.pts, None)]
    images = decode_frames(path, refs, found.time_base)
    assert images[:3] == [None, None, None] and np.array_equal(images[3], first.image)
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(SeekError, match="cannot open"):
        decode_frames(tmp_path / "junk.mp4", refs, found.time_base)
