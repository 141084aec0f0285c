"""Keyframes on generated read-aloud videos: one frame per page, showing that page, never a blend."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import KeyframeConfig
from pipeline.video.keyframes import KeyframeError, detect_keyframes
from pipeline.synthetic import PageSpec, VideoSpec, write_corrupt_mp4, write_story_video, write_truncated_mp4, write_zero_length

TEXTS = [
    "The fox woke up early.",
    "She looked for a new home.",
    "The hill was too windy.",
    "The river was too wet.",
    "Under the old oak she found a den.",
    "It was just right.",
]

STYLES = {
    "cut-line-art": dict(style="cut", line_art=True, intro=True),
    "crossfade": dict(style="crossfade", outro=True),
    "fade": dict(style="fade", intro=True, outro=True),
    "kenburns": dict(style="kenburns", intro=True),
    "mixed": dict(style="mixed", intro=True, outro=True),
}


def grey(image: np.ndarray, size=(64, 36)) -> np.ndarray:
    import cv2

    return cv2.resize(cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA).astype(np.float32)


@pytest.fixture(scope="module", params=sorted(STYLES))
def video(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    pages = [PageSpec(text, 2.4 + 0.3 * (i % 3)) for i, text in enumerate(TEXTS)]
    spec = VideoSpec(pages=pages, seed=7, **STYLES[request.param])
    return write_story_video(out, request.param, spec)


@pytest.fixture(scope="module", params=[False, True], ids=["every-frame", "reference-frames"])
def generated(request, video):
    """Pages found decoding every frame, and decoding only reference frames (x264's B-frames are
    mostly not: about half of them are skipped), which must find the same pages."""
    result = detect_keyframes(video.video, KeyframeConfig(reference_frames_only=request.param))
    if request.param:
        assert 12 <= result.stats["reference_fps"] <= 0.75 * result.fps
        assert result.frames_decoded <= 0.75 * result.duration_s * result.fps
    else:
        assert "reference_fps" not in result.stats
    return video, result


def test_one_keyframe_per_segment_showing_it(generated):
    truth, result = generated
    segments = truth.segments
    assert len(result.keyframes) == len(segments)
    pictures = [grey(s.picture) for s in segments]
    for key, segment in zip(result.keyframes, segments):
        distances = [float(np.abs(grey(key.image) - p).mean()) for p in pictures]
        # the chosen frame is its own segment's picture, closer to it than to any other
        assert int(np.argmin(distances)) == segments.index(segment), (segment.kind, segment.page, distances)
        if not segment.kenburns:  # a zoomed page differs from the unzoomed picture by design
            assert min(distances) < 6


def test_spans_follow_the_truth(generated):
    truth, result = generated
    for key, segment in zip(result.keyframes, truth.segments):
        assert key.t_start == pytest.approx(segment.t_start, abs=0.3)
        assert key.t_end == pytest.approx(segment.t_end, abs=0.3)
        # the chosen frame is settled: inside its segment, clear of the transitions
        assert segment.t_start + 0.1 <= key.frame_time <= segment.t_end - 0.1


def test_reference_frames_only_decodes_every_frame_where_skipping_would_not_pay(tmp_path):
    """A video without B-frames (x264's ultrafast preset): nothing to skip; every frame is decoded
    and the result is the every-frame one."""
    import dataclasses

    pages = [PageSpec(text, 2.0) for text in TEXTS[:3]]
    truth = write_story_video(tmp_path, "flat", VideoSpec(pages=pages, seed=3, style="cut", preset="ultrafast"))
    every = detect_keyframes(truth.video, KeyframeConfig(reference_frames_only=False))
    reference = detect_keyframes(truth.video, KeyframeConfig(reference_frames_only=True))
    assert "reference_fps" not in reference.stats and reference.frames_decoded == every.frames_decoded
    assert [dataclasses.replace(k, image=None) for k in reference.keyframes] == [
        dataclasses.replace(k, image=None) for k in every.keyframes]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(reference.keyframes, every.keyframes))


def test_fade_between_identical_pictures_is_a_page_turn(tmp_path):
    pages = [PageSpec("The tall man.", 2.5, picture=0), PageSpec("His hoe was short.", 2.5, picture=0),
             PageSpec("His bed was short.", 2.5, picture=1)]
    truth = write_story_video(tmp_path, "repeat", VideoSpec(pages=pages, style="fade", seed=3))
    result = detect_keyframes(truth.video, KeyframeConfig())
    assert [k.boundary for k in result.keyframes] == ["start", "fade", "fade"]


def test_still_video_is_one_page(tmp_path):
    truth = write_story_video(tmp_path, "still", VideoSpec(pages=[PageSpec("Only one page.", 4.0)], seed=1))
    result = detect_keyframes(truth.video, KeyframeConfig())
    assert len(result.keyframes) == 1
    assert result.keyframes[0].t_start == 0.0 and result.keyframes[0].t_end == pytest.approx(4.0, abs=0.05)


@pytest.mark.parametrize("maker", ["truncated", "zero", "corrupt"])
def test_broken_videos_raise_a_clear_error(tmp_path, maker):
    truth = write_story_video(tmp_path, "good", VideoSpec(pages=[PageSpec("A page.", 3.0), PageSpec("Another.", 3.0)], seed=2))
    bad = tmp_path / "bad.mp4"
    if maker == "truncated":
        write_truncated_mp4(truth.video, bad, keep_fraction=0.5)
    elif maker == "zero":
        write_zero_length(bad)
    else:
        write_corrupt_mp4(bad)
    with pytest.raises(KeyframeError, match="bad.mp4"):
        detect_keyframes(bad, KeyframeConfig())
