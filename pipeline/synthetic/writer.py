"""Writing one synthetic video and everything that goes with it: :func:`write_story_video`.

It plans and renders the frames, synthesises the narration, encodes the mp4 and writes the
subtitles, the HTML page, the pictures and ``truth.json``, every file atomically.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.storage import atomic_write_bytes, atomic_write_json, atomic_write_text
from pipeline.synthetic.audio import synth_audio
from pipeline.synthetic.encode import encode_video
from pipeline.synthetic.spec import Truth, output_files
from pipeline.synthetic.subtitles import html_page, srt_text, vtt_text
from pipeline.synthetic.timeline import FrameRenderer

if TYPE_CHECKING:
    from pipeline.synthetic.spec import VideoSpec

log = logging.getLogger(__name__)


def write_story_video(out_dir: Path, name: str, spec: VideoSpec, srt: bool = False,
                      save_pictures: bool = True) -> Truth:
    """Render, encode and describe one video; returns its :class:`Truth`.

    Writes ``{name}.mp4``, ``{name}.{lang}.vtt``, ``{name}.html``, ``{name}.truth.json``,
    ``{name}.pageNN.png`` / ``{name}.intro.png`` / ``{name}.outro.png`` (unless
    ``save_pictures=False``) and ``{name}.srt`` when ``srt``. Every file is written atomically.
    """
    import time

    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    renderer = FrameRenderer(spec)
    segments = renderer.segments
    files = output_files(out_dir, name, spec)
    for seg in segments:
        seg.image = f"{name}.page{seg.page:02d}.png" if seg.kind == "page" else f"{name}.{seg.kind}.png"
        if save_pictures:
            buf = _png_bytes(Image.fromarray(seg.picture))
            atomic_write_bytes(out_dir / seg.image, buf)
        else:
            seg.image = None
    audio = None
    if spec.audio:
        n_samples = int(round(renderer.n_frames / spec.fps * spec.sample_rate))
        audio = synth_audio(segments, n_samples, spec.sample_rate, spec.seed)
    tmp = out_dir / f".{name}.{os.getpid()}.tmp.mp4"
    try:
        encode_video(tmp, renderer, audio, spec)
        os.replace(tmp, files["video"])
    finally:
        tmp.unlink(missing_ok=True)
    atomic_write_text(files["subtitles"], vtt_text(segments))
    atomic_write_text(files["html"], html_page(name, spec.title, spec.language))
    if srt:
        files["srt"] = out_dir / f"{name}.srt"
        atomic_write_text(files["srt"], srt_text(segments))
    truth = Truth(name, out_dir, spec, segments, renderer.n_frames, files)
    atomic_write_json(files["truth"], truth.to_dict())
    log.debug("synthetic video %s: %d frames, %s, %.2f s", name, renderer.n_frames, spec.style,
              time.perf_counter() - started)
    return truth


def _png_bytes(img) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
