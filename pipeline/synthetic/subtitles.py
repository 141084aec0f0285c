"""The text files around a synthetic video: WebVTT and SRT subtitles, auto captions, an HTML page.

:func:`vtt_text` and :func:`srt_text` give one cue per page over its speech span;
:func:`auto_caption_vtt` writes timed words the way YouTube's auto captions look (and
:func:`write_auto_caption_vtt` a generated video's narration so); :func:`caption_word` is a word
as they spell it; :func:`html_page` is a page that yt-dlp's generic extractor understands.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

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


def caption_word(word: str) -> str:
    """A word as auto captions spell it: lower case, no punctuation but apostrophes ("" for "--")."""
    return re.sub(r"[^\w']+", "", word.lower())


def auto_caption_vtt(words: Sequence[tuple[str, float, float]], *, language: str = "en", seed: int = 0,
                     music: Sequence[tuple[float, float]] = (), end_s: float | None = None,
                     line_words: tuple[int, int] = (4, 8), line_s: tuple[float, float] | None = None) -> str:
    """Timed words ``(word, start, end)`` as a YouTube auto-caption VTT.

    What YouTube writes: the words lower case without punctuation (:func:`caption_word`), in
    lines that run on regardless of sentences or pages; each line gets a rolling two-line cue
    from its first word's start to the next line's, showing the previous line (untimed) above
    it with ``<00:00:01.520><c> word</c>`` inline timings for every word after the first (a
    one-word line has none), then a 10 ms "snapshot" cue showing the finished line alone; cue
    settings ``align:start position:0%``; a ``[Music]`` cue over each ``music`` span. A line
    holds ``line_words`` words (drawn), or, with ``line_s``, the words that start within a
    drawn number of seconds of its first. The last line ends 0.5 s after its last word (at most
    ``end_s``). Deterministic for ``seed``.
    """
    import numpy as np

    rng = np.random.default_rng([seed, 555])
    timed = [(caption_word(w), s, e) for (w, s, e) in words]
    timed = [w for w in timed if w[0]]
    lines, i = [], 0
    while i < len(timed):
        if line_s is None:
            size = int(rng.integers(line_words[0], line_words[1] + 1))
        else:
            limit = timed[i][1] + float(rng.uniform(*line_s))
            size = max(1, sum(1 for w in timed[i:] if w[1] < limit))
        lines.append(timed[i:i + size])
        i += size
    setting = " align:start position:0%"
    cues: list[tuple[float, float, str]] = [(a, b - 0.01, "[Music]") for a, b in music]
    last = end_s if end_s is not None else float("inf")
    for j, line in enumerate(lines):
        start = line[0][1]
        nxt = lines[j + 1][0][1] if j + 1 < len(lines) else min(line[-1][2] + 0.5, last)
        prev = " ".join(w for w, _, _ in lines[j - 1]) if j else " "
        tagged = line[0][0] + "".join(f"<{_ts(s)}><c> {w}</c>" for w, s, _ in line[1:])
        cues.append((start, nxt - 0.01, f"{prev}\n{tagged}"))
        cues.append((nxt - 0.01, nxt, " ".join(w for w, _, _ in line) + "\n "))
    cues.sort(key=lambda c: c[0])
    body = "\n\n".join(f"{_ts(a)} --> {_ts(b)}{setting}\n{text}" for a, b, text in cues)
    return f"WEBVTT\nKind: captions\nLanguage: {language}\n\n{body}\n"


def write_auto_caption_vtt(dst: Path, truth: Truth, seed: int = 0, line_s: tuple[float, float] | None = None) -> Path:
    """The narration of a generated video as a YouTube auto-caption VTT (:func:`auto_caption_vtt`):
    its pages' word timings, ``[Music]`` over the intro and outro cards. Lines run across page
    boundaries, like real ones; ``line_s`` as there (default: 4-8 words a line)."""
    words = [w for seg in truth.segments for w in seg.words]
    music = [(seg.t_start, seg.t_end) for seg in truth.segments if seg.kind in ("intro", "outro")]
    text = auto_caption_vtt(words, language=truth.spec.language, seed=seed, music=music, end_s=truth.duration_s,
                            line_s=line_s)
    atomic_write_text(Path(dst), text)
    return Path(dst)
