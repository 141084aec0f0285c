"""The text files around a synthetic video: WebVTT and SRT subtitles, auto captions, an HTML page.

:func:`vtt_text` and :func:`srt_text` give one cue per page over its speech span;
:func:`write_auto_caption_vtt` writes the narration the way YouTube's auto captions look;
:func:`html_page` is a page that yt-dlp's generic extractor understands.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.storage import atomic_write_text

if TYPE_CHECKING:
    from pipeline.synthetic.spec import Segment, Truth

LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German", "no": "Norwegian",
                  "eo": "Esperanto", "tl": "Tagalog", "pt": "Portuguese", "sw": "Swahili"}


def _ts(t: float, sep: str = ".") -> str:
    ms = int(round(t * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def vtt_text(segments: list[Segment]) -> str:
    """WebVTT with one cue per page over its speech span."""
    cues = [f"{_ts(s.speech_start)} --> {_ts(s.speech_end)}\n{s.text}" for s in segments
            if s.kind == "page" and s.text.strip()]
    return "WEBVTT\n\n" + "\n\n".join(cues) + "\n"


def srt_text(segments: list[Segment]) -> str:
    pages = [s for s in segments if s.kind == "page" and s.text.strip()]
    return "\n".join(f"{i}\n{_ts(s.speech_start, ',')} --> {_ts(s.speech_end, ',')}\n{s.text}\n"
                     for i, s in enumerate(pages, 1))


def html_page(name: str, title: str, language: str) -> str:
    label = LANGUAGE_NAMES.get(language, language)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><video controls><source src=\"{name}.mp4\" type=\"video/mp4\">"
            f"<track kind=\"subtitles\" srclang=\"{language}\" label=\"{html.escape(label)}\" "
            f"src=\"{name}.{language}.vtt\"></video></body></html>\n")


def write_auto_caption_vtt(dst: Path, truth: Truth, seed: int = 0) -> Path:
    """The narration as a YouTube auto-caption VTT: rolling two-line cues with ``<t><c> word</c>``
    inline timings, 10 ms snapshot cues between them, lowercase without punctuation, and a
    ``[Music]`` cue over the intro and outro cards. Lines run across page boundaries, like real ones."""
    import numpy as np

    rng = np.random.default_rng([seed, 555])
    words = [(re.sub(r"[^\w']+", "", w).lower(), s, e) for seg in truth.segments for (w, s, e) in seg.words]
    words = [w for w in words if w[0]]
    lines, i = [], 0
    while i < len(words):
        size = int(rng.integers(4, 9))
        lines.append(words[i:i + size])
        i += size
    setting = " align:start position:0%"
    cues: list[tuple[float, float, str]] = []
    for seg in truth.segments:
        if seg.kind in ("intro", "outro"):
            cues.append((seg.t_start, seg.t_end - 0.01, "[Music]"))
    for j, line in enumerate(lines):
        start = line[0][1]
        nxt = lines[j + 1][0][1] if j + 1 < len(lines) else min(line[-1][2] + 0.5, truth.duration_s)
        prev = " ".join(w for w, _, _ in lines[j - 1]) if j else " "
        timed = line[0][0] + "".join(f"<{_ts(s)}><c> {w}</c>" for w, s, _ in line[1:])
        cues.append((start, nxt - 0.01, f"{prev}\n{timed}"))
        cues.append((nxt - 0.01, nxt, " ".join(w for w, _, _ in line) + "\n "))
    cues.sort(key=lambda c: c[0])
    body = "\n\n".join(f"{_ts(a)} --> {_ts(b)}{setting}\n{text}" for a, b, text in cues)
    lang = truth.spec.language
    atomic_write_text(Path(dst), f"WEBVTT\nKind: captions\nLanguage: {lang}\n\n{body}\n")
    return Path(dst)
