"""Encoding a synthetic video to mp4 with PyAV: H.264 yuv420p video and AAC mono audio.

No ffmpeg binary is needed; one encoder thread and time-interleaved muxing keep the output
reproducible for a spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from pipeline.synthetic.spec import VideoSpec
    from pipeline.synthetic.timeline import FrameRenderer


def encode_video(path: Path, renderer: FrameRenderer, audio: "np.ndarray | None", spec: VideoSpec) -> None:
    """H.264 yuv420p (+ AAC mono) mp4 via PyAV, one encoder thread, interleaved by time."""
    import av

    fps = spec.fps
    with av.open(str(path), mode="w", format="mp4") as container:
        container.metadata["title"] = spec.title
        v = container.add_stream("libx264", rate=fps, options={"crf": str(spec.crf), "preset": spec.preset})
        v.width, v.height, v.pix_fmt = spec.width, spec.height, "yuv420p"
        v.codec_context.gop_size = 2 * fps
        v.codec_context.thread_count = 1
        a = None
        if audio is not None:
            a = container.add_stream("aac", rate=spec.sample_rate, layout="mono", options={"aac_coder": "fast"})
            a.codec_context.thread_count = 1
        chunk, audio_pos = 1024, 0
        still: tuple[int, Any] | None = None  # (segment, its yuv420p picture)
        for n in range(renderer.n_frames):
            if renderer.is_static(n):
                k = renderer.segment_index(n)
                if still is None or still[0] != k:
                    still = (k, _to_i420(renderer.rgb(n)))
                yuv = still[1]
            else:
                yuv = _to_i420(renderer.rgb(n))
            frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
            frame.pts = n
            for packet in v.encode(frame):
                container.mux(packet)
            while a is not None and audio_pos < len(audio) and audio_pos <= (n + 1) * spec.sample_rate / fps:
                audio_pos = _encode_audio_chunk(container, a, audio, audio_pos, chunk, spec.sample_rate)
        for packet in v.encode():
            container.mux(packet)
        if a is not None:
            while audio_pos < len(audio):
                audio_pos = _encode_audio_chunk(container, a, audio, audio_pos, chunk, spec.sample_rate)
            for packet in a.encode():
                container.mux(packet)


def _to_i420(rgb: "np.ndarray") -> "np.ndarray":
    """RGB -> planar yuv420p (BT.601 limited range, what decoders assume for untagged H.264);
    OpenCV does it about 4x faster than swscale via ``VideoFrame.reformat``."""
    import cv2

    return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)


def _encode_audio_chunk(container, stream, audio, pos: int, chunk: int, sample_rate: int) -> int:
    import av

    frame = av.AudioFrame.from_ndarray(audio[None, pos:pos + chunk], format="fltp", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = pos
    for packet in stream.encode(frame):
        container.mux(packet)
    return pos + chunk
