"""Decode chosen frames of a video again, exactly: by presentation timestamp, without detection.

A story records, for each of its video frames, the decoded frame the keyframe stage chose: its
``pts`` (in the stream's time base, recorded in the story's source as ``time_base``) and its time
``t_frame`` in seconds. :func:`decode_frames` finds those frames in a video file again: it seeks
with PyAV to the key frame at or before each one and decodes forward to the frame whose ``pts``
is the recorded one, so the pixels are the very ones the keyframe stage saw (decoding from a key
frame is deterministic). When the stream's time base is not the recorded one (the source was
re-encoded) or a frame has no ``pts``, it takes the first frame shown at ``t_frame`` (within
half a frame); that frame is the nearest there is, not necessarily the same picture.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import StageError
from pipeline.video.keyframes import open_video

log = logging.getLogger(__name__)


class SeekError(StageError):
    """The video cannot be opened or decoded at all (a frame it does not have is just ``None``)."""


@dataclass(frozen=True)
class FrameRef:
    """Which decoded frame to find: its pts (exact) and its time in seconds (the fallback)."""

    pts: int | None
    t_frame: float | None


def decode_frames(video_path: str | Path, refs: list[FrameRef], time_base: str | None) -> list[np.ndarray | None]:
    """The RGB pixels of each frame ``refs`` names (None where the video has no such frame).

    ``time_base`` is the one the refs' pts were counted in; when the video's stream has another,
    the frames are found by ``t_frame`` instead.
    """
    import av

    name = Path(video_path).name
    with open_video(video_path, None, SeekError) as (container, video):
        stream, fps = video.stream, video.fps
        exact = time_base is not None and video.time_base == time_base
        images: list[np.ndarray | None] = []
        for ref in refs:
            try:
                if exact and ref.pts is not None:
                    frame = _frame_at_pts(container, stream, ref.pts)
                elif ref.t_frame is not None:
                    frame = _frame_at_time(container, stream, ref.t_frame, fps)
                else:
                    frame = None  # nothing recorded to find it by
            except av.error.FFmpegError as exc:
                raise SeekError(f"video {name} cannot be decoded: {exc}") from exc
            images.append(None if frame is None else frame.to_ndarray(format="rgb24"))
    return images


def _frames_from(container, stream, pts: int):
    """Decoded frames from the key frame at or before ``pts`` on (from the start if the seek overshoots)."""
    container.seek(max(0, pts), stream=stream, backward=True, any_frame=False)
    frames = container.decode(stream)
    first = next(frames, None)
    if first is not None and first.pts is not None and first.pts > pts:
        # the demuxer landed after the target (an index without that key frame): decode from the start
        container.seek(0, stream=stream, backward=True, any_frame=False)
        frames = container.decode(stream)
        first = next(frames, None)
    if first is None:
        return
    yield first
    yield from frames


def _frame_at_pts(container, stream, pts: int):
    for frame in _frames_from(container, stream, pts):
        if frame.pts is None:
            continue
        if frame.pts == pts:
            return frame
        if frame.pts > pts:
            return None  # no frame has that pts: the video is not the one recorded
    return None


def _frame_at_time(container, stream, seconds: float, fps: float):
    if stream.time_base is None:
        return None
    target = int(seconds / float(stream.time_base))
    half = 0.5 / fps
    for frame in _frames_from(container, stream, target):
        if frame.time is not None and frame.time > seconds - half:
            return frame if frame.time <= seconds + half else None
    return None
