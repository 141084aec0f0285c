"""Broken inputs for the error-path tests: truncated, empty and corrupt mp4s, garbage subtitles.

Each maker writes its file atomically and returns its path; the bytes are a function of the
arguments.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.storage import atomic_write_bytes


def write_truncated_mp4(src: Path, dst: Path, keep_fraction: float = 0.5) -> Path:
    """A copy of ``src`` cut after ``keep_fraction`` of its bytes (an interrupted download)."""
    if not 0 <= keep_fraction < 1:
        raise ValueError(f"keep_fraction {keep_fraction} must be in [0, 1)")
    data = Path(src).read_bytes()
    atomic_write_bytes(Path(dst), data[: int(len(data) * keep_fraction)])
    return Path(dst)


def write_zero_length(dst: Path) -> Path:
    """An empty file."""
    atomic_write_bytes(Path(dst), b"")
    return Path(dst)


def write_corrupt_mp4(dst: Path, size: int = 64 * 1024, seed: int = 0) -> Path:
    """Random bytes behind a plausible ``ftyp`` box and a bogus ``moov`` header."""
    import numpy as np

    head = (24).to_bytes(4, "big") + b"ftypisom" + (512).to_bytes(4, "big") + b"isomiso2"
    head += (size - 24).to_bytes(4, "big") + b"moov"
    body = np.random.default_rng(seed).integers(0, 256, max(size - len(head), 0), dtype=np.uint8).tobytes()
    atomic_write_bytes(Path(dst), head + body)
    return Path(dst)


def write_garbage_subtitles(dst: Path, flavor: str = "mixed") -> Path:
    """A subtitle file a parser must survive: ``binary`` (NULs, invalid UTF-8), ``no_header``
    (cues without ``WEBVTT``), ``bad_timestamps`` (malformed, reversed and overlapping cues)
    or ``mixed`` (all of them in one file)."""
    parts = {
        "binary": b"\x00\x01\xff\xfe WEBVTT? \x80\x81\x00garbage\xc3\x28\n",
        "no_header": b"1\n00:00:01.000 --> 00:00:02.000\nno header here\n\n",
        "bad_timestamps": (b"WEBVTT\n\n00:00:xx.abc --> soon\nbroken time\n\n"
                           b"00:00:05.000 --> 00:00:03.000\nends before it starts\n\n"
                           b"99:99:99.999 --> 00:00:01\nout of range\n\n"
                           b"00:00:01.000 -->\nmissing end\n\n<c>unclosed tag\n"),
    }
    if flavor == "mixed":
        data = parts["binary"] + parts["no_header"] + parts["bad_timestamps"]
    elif flavor in parts:
        data = parts[flavor]
    else:
        raise ValueError(f"flavor {flavor!r} is not one of mixed, {', '.join(parts)}")
    atomic_write_bytes(Path(dst), data)
    return Path(dst)
