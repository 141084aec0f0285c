"""The timeline of a synthetic video: segment boundaries, transitions, word timings and frames.

:class:`FrameRenderer` plans a :class:`~pipeline.synthetic.spec.VideoSpec` into truth segments
and renders any frame of it exactly as it goes into the encoder; :func:`word_timings` spreads a
page's words over its speech span.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipeline.synthetic.drawing import draw_card, draw_page
from pipeline.synthetic.spec import SPEECH_LEAD_S, SPEECH_TAIL_S, Segment

if TYPE_CHECKING:
    import numpy as np

    from pipeline.synthetic.spec import VideoSpec


_SYLLABLE_RE = re.compile(r"[aeiouyáéíóúàèìòùäëïöüåæøâêîôû]+", re.IGNORECASE)


def count_syllables(word: str) -> int:
    """A rough syllable count (vowel groups), for pacing generated narration."""
    return max(1, len(_SYLLABLE_RE.findall(word)))


def word_timings(text: str, start: float, end: float) -> list[tuple[str, float, float]]:
    """Spread the words of ``text`` over ``[start, end]``: time per syllable, pauses at punctuation."""
    words = text.split()
    if not words:
        return []
    gap = 0.05
    syl = [count_syllables(w) for w in words]
    pause = [0.0 if i == len(words) - 1 else (1.2 if w[-1] in ".!?" else 0.5 if w[-1] in ",;:" else 0.0)
             for i, w in enumerate(words)]
    span = end - start
    gaps = gap * (len(words) - 1)
    if gaps > span * 0.3:
        gap, gaps = span * 0.3 / max(len(words) - 1, 1), span * 0.3
    unit = (span - gaps) / (sum(syl) + sum(pause))
    out, t = [], start
    for w, s, p in zip(words, syl, pause):
        out.append((w, round(t, 3), round(t + s * unit, 3)))
        t += s * unit + p * unit + gap
    out[-1] = (out[-1][0], out[-1][1], round(end, 3))
    return out


class FrameRenderer:
    """Plans the timeline of a spec and renders any frame of it (RGB uint8).

    ``segments`` are the truth segments (with pictures); ``rgb(n)`` is frame ``n`` exactly as it
    goes into the encoder, so tests can compare decoded frames with what was meant.
    """

    def __init__(self, spec: VideoSpec):
        import numpy as np

        self.spec = spec
        rng = np.random.default_rng([spec.seed, 31337])
        fps = spec.fps
        self.trans_frames = max(1, round(spec.transition_s * fps))
        entries: list[tuple[str, int | None, float]] = []
        if spec.intro:
            entries.append(("intro", None, spec.intro_s))
        entries += [("page", i, p.duration_s) for i, p in enumerate(spec.pages)]
        if spec.outro:
            entries.append(("outro", None, spec.outro_s))
        ends = np.round(np.cumsum([e[2] for e in entries]) * fps).astype(int)
        starts = np.concatenate([[0], ends[:-1]])
        self.n_frames = int(ends[-1])
        self.bounds = list(zip(starts.tolist(), ends.tolist()))
        self.segments: list[Segment] = []
        self._kb: list[tuple[float, float, float, float, float, float] | None] = []
        for k, ((kind, idx, _), (f0, f1)) in enumerate(zip(entries, self.bounds)):
            if k == 0:
                trans = None
            elif spec.style in ("cut", "kenburns"):
                trans = "cut"
            elif spec.style == "mixed":
                trans = str(rng.choice(["cut", "crossfade", "fade"]))
            else:
                trans = spec.style
            kb = kind == "page" and (spec.style == "kenburns" or (spec.style == "mixed" and rng.random() < 0.5))
            if kb:  # (zoom_from, zoom_to, pan fx0, fy0, fx1, fy1): 8-15 % zoom, in or out
                z = rng.uniform(0.08, 0.15)
                zooms = (1.0, 1.0 + z) if rng.random() < 0.6 else (1.0 + z, 1.0)
                self._kb.append((*zooms, *rng.uniform(0.2, 0.8, 4).tolist()))
            else:
                self._kb.append(None)
            t0, t1 = f0 / fps, f1 / fps
            if kind == "page":
                page = spec.pages[idx]
                sp = page.speech or (SPEECH_LEAD_S, (t1 - t0) - SPEECH_TAIL_S)
                s0, s1 = round(t0 + sp[0], 3), round(min(t0 + sp[1], t1), 3)
                pic_id = idx if page.picture is None else page.picture
                picture = draw_page(spec.seed, pic_id, spec.width, spec.height, spec.line_art, spec.pillarbox,
                                    page.text if spec.burnt_text else None)
                seg = Segment("page", idx, t0, t1, page.text, s0, s1, trans, kb, word_timings(page.text, s0, s1),
                              picture=picture)
            else:
                seg = Segment(kind, None, t0, t1, transition_in=trans,
                              picture=draw_card(kind, spec.seed, spec.width, spec.height, spec.channel))
            self.segments.append(seg)

    def segment_index(self, n: int) -> int:
        for k, (f0, f1) in enumerate(self.bounds):
            if f0 <= n < f1:
                return k
        raise IndexError(f"frame {n} outside 0..{self.n_frames - 1}")

    def _own(self, k: int, n: int) -> "np.ndarray":
        """Segment ``k``'s own picture at frame ``n`` (Ken Burns moves it; clamped outside the segment)."""
        import numpy as np

        pic = self.segments[k].picture
        kb = self._kb[k]
        if kb is None:
            return pic
        import cv2

        f0, f1 = self.bounds[k]
        a = min(max((n - f0) / max(f1 - f0 - 1, 1), 0.0), 1.0)
        z = kb[0] + (kb[1] - kb[0]) * a
        fx, fy = kb[2] + (kb[4] - kb[2]) * a, kb[3] + (kb[5] - kb[3]) * a
        h, w = pic.shape[:2]
        cw, ch = w / z, h / z
        x0, y0 = fx * (w - cw), fy * (h - ch)
        m = np.array([[1 / z, 0, x0], [0, 1 / z, y0]], np.float64)
        return cv2.warpAffine(pic, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    def is_static(self, n: int) -> bool:
        """True when frame ``n`` is exactly its segment's still picture."""
        k = self.segment_index(n)
        return self._kb[k] is None and self._transition(k, n) is None

    def _transition(self, k: int, n: int) -> tuple[str, int, int] | None:
        """(kind, previous segment, next segment) if frame ``n`` of segment ``k`` is inside a transition."""
        T = self.trans_frames
        for nxt in (k, k + 1):  # the boundary at the start of segment k, then at its end
            if nxt == 0 or nxt >= len(self.segments):
                continue
            kind, B = self.segments[nxt].transition_in, self.bounds[nxt][0]
            if kind == "crossfade" and B - T // 2 <= n < B - T // 2 + T:
                return kind, nxt - 1, nxt
            if kind == "fade" and B - T <= n <= B + T:
                return kind, nxt - 1, nxt
        return None

    def rgb(self, n: int) -> "np.ndarray":
        import numpy as np

        k = self.segment_index(n)
        tr = self._transition(k, n)
        if tr is None:
            return self._own(k, n)
        kind, a, b = tr
        T, B = self.trans_frames, self.bounds[b][0]
        if kind == "crossfade":
            alpha = (n - (B - T // 2) + 1) / (T + 1)
            mix = self._own(a, n).astype(np.float32) * (1 - alpha) + self._own(b, n).astype(np.float32) * alpha
        else:  # fade through black, black on the boundary frame
            level = abs(n - B) / T
            mix = (self._own(a if n < B else b, n)).astype(np.float32) * level
        return (mix + 0.5).astype(np.uint8)
