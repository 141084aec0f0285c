"""Locate the ffmpeg binary that yt-dlp uses to merge separate video and audio streams.

Order: the path the config names (``fetch.ffmpeg``), then ``ffmpeg`` on PATH, then the static
binary that the ``imageio-ffmpeg`` package ships (no ffprobe; yt-dlp only needs ffmpeg to merge).
A configured path that does not work is an error, never silently replaced by another ffmpeg.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)


class FFmpegNotFoundError(RuntimeError):
    """No usable ffmpeg; the message says where we looked and how to provide one."""


def find_ffmpeg(configured: str | None = None) -> str:
    """Absolute path of an ffmpeg executable."""
    if configured:
        return _configured(configured)
    on_path = shutil.which("ffmpeg")
    if on_path:
        return on_path
    try:
        import imageio_ffmpeg

        bundled = imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        bundled = None
    except RuntimeError as exc:  # imageio-ffmpeg installed without its binary
        log.debug("imageio-ffmpeg has no binary: %s", exc)
        bundled = None
    if bundled and _is_executable(Path(bundled)):
        return bundled
    raise FFmpegNotFoundError(
        "ffmpeg not found: no ffmpeg on PATH and no imageio-ffmpeg binary. Install one "
        "(apt install ffmpeg, or pip install imageio-ffmpeg) or set fetch.ffmpeg to its path."
    )


def _configured(value: str) -> str:
    path = Path(value).expanduser()
    if path.is_dir():  # yt-dlp accepts a folder; we resolve the binary inside it
        path = path / "ffmpeg"
    if _is_executable(path):
        return str(path.absolute())
    found = shutil.which(value)
    if found:
        return found
    raise FFmpegNotFoundError(f"fetch.ffmpeg = {value!r} is not an executable ffmpeg (checked the path and PATH)")


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
