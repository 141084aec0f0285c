"""Synthetic filmed picture books: a printed book lying open on a table, filmed by a phone or webcam.

The kind of input in ``shared/samples/readaloud/filmed``: the story page (illustration, text line,
page number) is the right-hand page of an open spread seen in perspective, with board covers, a
spine shadow, lamp falloff and vignette, on a wooden or grey table. The camera drifts slowly (and,
handheld, shakes), the exposure flickers, the sensor adds noise, H.264 at CRF 26-28 smooths it.
Pages change by animated page turns: the leaf lifts, curls over the spine and falls onto the left
page; a hand may come in, lift the corner and go. A hand may also rest on the book while a page is
read (``resting_hands``).

:class:`FilmedSpec` is a :class:`~pipeline.synthetic.spec.VideoSpec` with ``style="filmed"`` and
the filming knobs; :class:`FilmedRenderer` has the interface of
:class:`~pipeline.synthetic.timeline.FrameRenderer` (``segments``, ``n_frames``, ``rgb(n)``), so
the mp4 encoder, the narration and the subtitles are the slideshow generator's own;
:func:`write_filmed_video` writes the same files as :func:`write_story_video` and returns the same
:class:`~pipeline.synthetic.spec.Truth` (``truth.pages()``...); :func:`load_filmed_truth` reads it
back.

Truth, as in the real samples: a page's segment runs from the end of the turn before it to the
start of the turn after it; a turn belongs to no segment. A page segment's ``picture`` is the
printed page, flat (what a perfect rectification of the page recovers); :meth:`FilmedRenderer.view`
is the page as the camera sees it, without hand, flicker or noise (what a keyframe shows).
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.storage import atomic_write_bytes, atomic_write_json, atomic_write_text
from pipeline.synthetic.audio import synth_audio
from pipeline.synthetic.drawing import draw_card, draw_page
from pipeline.synthetic.encode import encode_video
from pipeline.synthetic.spec import (
    SPEECH_LEAD_S,
    SPEECH_TAIL_S,
    PageSpec,
    Segment,
    Truth,
    VideoSpec,
    output_files,
)
from pipeline.synthetic.subtitles import html_page, srt_text, vtt_text
from pipeline.synthetic.timeline import word_timings

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

FILMED_VERSION = "1"  # bump when the filmed rendering changes
SKIN_TONES = ((224, 172, 140), (198, 134, 96), (141, 85, 54), (236, 194, 166))
COVER_COLOURS = ((52, 64, 150), (120, 60, 140), (150, 40, 48), (40, 110, 90))
TURN_PHASES = (0.25, 0.85)  # with a hand: it reaches the corner by 25 % of the turn, the leaf lands at 85 %


@dataclass
class FilmedSpec(VideoSpec):
    """A filmed book. ``pages[i].duration_s`` is the time page i lies still (its truth segment);
    the turns between pages add ``turn_s`` each.

    ``resting_hands``: ``(page, start_s, end_s)`` triples, seconds from the page's ``t_start``: a hand
    slides in from the bottom edge, rests on that page, and slides out again (0.4 s each way, inside
    the window; a 0.8 s window is a hand passing over the page). ``turn_hand``: a hand lifts the
    corner of every leaf it turns.
    """

    style: str = "filmed"
    turn_s: float = 1.0
    book_width: float = 0.72  # the spread's width as a fraction of the frame's
    page_aspect: float = 1.3  # page height / page width
    perspective: float = 0.10  # the book's far edge this much shorter than its near edge
    tilt_deg: float = 1.5  # in-plane rotation of the book
    table: str = "wood"  # wood | grey
    drift_px: float = 3.0  # slow camera drift, pixels at the output size
    shake_px: float = 0.0  # handheld shake (2-6 Hz), pixels
    flicker: float = 0.03  # exposure gain wanders within +- this
    noise: float = 3.0  # sensor noise sigma (grey levels) before encoding
    vignette: float = 0.25
    turn_hand: bool = True
    resting_hands: list[tuple[int, float, float]] = field(default_factory=list)
    crf: int = 27

    def __post_init__(self) -> None:
        self.pages = [p if isinstance(p, PageSpec) else PageSpec(**p) for p in self.pages]
        for page in self.pages:
            if page.speech is not None:
                page.speech = (float(page.speech[0]), float(page.speech[1]))
        self.resting_hands = [(int(p), float(a), float(b)) for p, a, b in self.resting_hands]
        problems = []
        if self.style != "filmed":
            problems.append(f"a FilmedSpec has style 'filmed', not {self.style!r}")
        if not self.pages:
            problems.append("a video needs at least one page")
        if self.width % 2 or self.height % 2 or self.width < 96 or self.height < 64:
            problems.append(f"size {self.width}x{self.height} must be even and at least 96x64")
        if not 1 <= self.fps <= 120:
            problems.append(f"fps {self.fps} out of range 1..120")
        if not 0.3 <= self.turn_s <= 5.0:
            problems.append("turn_s must be in [0.3, 5]")
        if self.table not in ("wood", "grey"):
            problems.append("table must be 'wood' or 'grey'")
        if not 0.3 <= self.book_width <= 0.98:
            problems.append("book_width must be in [0.3, 0.98]")
        for i, page in enumerate(self.pages):
            if page.duration_s < 0.5:
                problems.append(f"page {i} lasts {page.duration_s} s; a filmed page needs 0.5 s at least")
            if page.speech is None and page.duration_s < SPEECH_LEAD_S + SPEECH_TAIL_S + 0.2:
                problems.append(f"page {i} lasts {page.duration_s} s, too short for the default speech span; "
                                "give it a speech=(start, end)")
            if page.speech is not None and not 0 <= page.speech[0] < page.speech[1] <= page.duration_s:
                problems.append(f"page {i} speech {page.speech} is not inside 0..{page.duration_s}")
        for page, start, end in self.resting_hands:
            if not 0 <= page < len(self.pages) or not 0 <= start <= end - 0.8 or end > self.pages[page].duration_s:
                problems.append(f"resting hand {(page, start, end)}: needs a page and 0 <= start <= end - 0.8, "
                                "end <= the page's duration (0.8 s: in and out, no rest)")
        if problems:
            raise ValueError("bad FilmedSpec: " + "; ".join(problems))

    def fingerprint(self) -> str:
        import hashlib

        blob = json.dumps(["filmed", FILMED_VERSION, self.to_dict()], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- pictures


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(int(size), 6))
    except (TypeError, ValueError, OSError):
        return ImageFont.load_default()


def printed_page(seed: int, picture: int, text: str, number: int, width: int, height: int,
                 line_art: bool = False) -> "np.ndarray":
    """A printed story page, flat: cream paper, the illustration, a line of text, the page number."""
    import numpy as np
    from PIL import Image, ImageDraw

    paper = (246, 243, 234)
    page = Image.new("RGB", (width, height), paper)
    margin = max(2, round(0.08 * width))
    pic_w = width - 2 * margin
    pic_h = min(round(0.66 * height), round(pic_w * 0.95)) // 2 * 2
    art = draw_page(seed, picture, pic_w, pic_h, line_art)
    page.paste(Image.fromarray(art), (margin, margin))
    d = ImageDraw.Draw(page)
    size = max(7, round(height * 0.045))
    font = _font(size)
    while size > 6 and d.textlength(text, font=font) > pic_w:
        size -= 1
        font = _font(size)
    y = margin + pic_h + round(0.05 * height)
    d.text(((width - d.textlength(text, font=font)) / 2, y), text, fill=(28, 28, 30), font=font)
    small = _font(max(6, round(height * 0.03)))
    label = str(number + 1)
    d.text(((width - d.textlength(label, font=small)) / 2, height - margin * 0.9), label, fill=(80, 80, 80), font=small)
    return np.asarray(page, dtype=np.uint8).copy()


def _table(rng, kind: str, width: int, height: int) -> "np.ndarray":
    """Wood grain (warm stripes that wander) or a grey mat with a little texture, RGB float32."""
    import cv2
    import numpy as np

    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    if kind == "wood":
        base = np.array([150, 104, 66], np.float32)
        period = rng.uniform(18, 30)
        wander = 6 * np.sin(xs / rng.uniform(40, 90) + rng.uniform(0, 6)) + 3 * np.sin(xs / 17.0)
        grain = np.sin((ys + wander) / period * 2 * np.pi) * 0.5 + 0.5
        tone = 0.82 + 0.18 * grain ** 3
        streak = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 6, sigmaY=1.2)
        tone = tone + 0.05 * streak / max(float(np.abs(streak).max()), 1e-6)
        return base[None, None, :] * tone[:, :, None]
    grey = rng.uniform(100, 130)
    speck = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1.5)
    return np.full((height, width, 3), grey, np.float32) + 4 * speck[:, :, None]


# ----------------------------------------------------------------------------- the renderer


class FilmedRenderer:
    """Plans a :class:`FilmedSpec` into truth segments and renders any frame of it (RGB uint8).

    Book geometry lives in a flat "table plane" (one unit about one output pixel); a homography
    (perspective, tilt) plus the frame's camera offset (drift, shake) maps it to the image. Hands
    are drawn in the image, then lamp falloff, vignette, exposure and sensor noise are applied.
    """

    def __init__(self, spec: FilmedSpec):
        import numpy as np

        self.spec = spec
        rng = np.random.default_rng([spec.seed, 5150])
        fps = spec.fps
        self.turn_frames = max(2, round(spec.turn_s * fps))
        # the timeline: ("intro"|"outro"|"page"|"turn", index, first frame, end frame)
        plan: list[tuple[str, int, int, int]] = []
        n = 0

        def add(kind: str, index: int, seconds: float) -> None:
            nonlocal n
            count = max(1, int(math.floor(seconds * fps + 0.5)))
            plan.append((kind, index, n, n + count))
            n += count

        if spec.intro:
            add("intro", -1, spec.intro_s)
        for i, page in enumerate(spec.pages):
            if i:
                add("turn", i - 1, spec.turn_s)
            add("page", i, page.duration_s)
        if spec.outro:
            add("outro", -1, spec.outro_s)
        self.plan = plan
        self.n_frames = n
        self._entry_of = np.zeros(n, np.int32)
        for k, (_, _, f0, f1) in enumerate(plan):
            self._entry_of[f0:f1] = k

        self._layout(rng)
        self.segments: list[Segment] = []
        self._segment_of_entry: dict[int, int] = {}
        for k, (kind, index, f0, f1) in enumerate(plan):
            if kind == "turn":
                continue
            t0, t1 = f0 / fps, f1 / fps
            trans = None if not self.segments else ("turn" if kind == "page" and index > 0 else "cut")
            if kind == "page":
                page = spec.pages[index]
                sp = page.speech or (SPEECH_LEAD_S, (t1 - t0) - SPEECH_TAIL_S)
                s0, s1 = round(t0 + sp[0], 3), round(min(t0 + sp[1], t1), 3)
                seg = Segment("page", index, t0, t1, page.text, s0, s1, trans, False,
                              word_timings(page.text, s0, s1), picture=self.pages[index])
            else:
                seg = Segment(kind, None, t0, t1, transition_in=trans,
                              picture=draw_card(kind, spec.seed, spec.width, spec.height, spec.channel))
            self._segment_of_entry[k] = len(self.segments)
            self.segments.append(seg)
        self._camera = self._camera_path(rng)
        self._gain = self._exposure(rng)
        self._hands = self._plan_hands(rng)
        self._canvas_cache: dict[tuple[int, bool], np.ndarray] = {}

    # -- geometry

    def _layout(self, rng) -> None:
        import cv2
        import numpy as np

        spec = self.spec
        w, h = spec.width, spec.height
        squash = 0.86  # the table is seen at an angle: depth is foreshortened
        pw = round(spec.book_width * w / 2)
        if pw * spec.page_aspect * squash > 0.88 * h:
            pw = round(0.88 * h / (spec.page_aspect * squash))
        ph = round(pw * spec.page_aspect)
        self.pw, self.ph = pw, ph
        border = max(2, round(0.035 * pw))
        self.border = border
        self.pages = [printed_page(spec.seed, i if p.picture is None else p.picture, p.text, i, pw, ph, spec.line_art)
                      for i, p in enumerate(spec.pages)]
        self.blank = np.full((ph, pw, 3), (244, 241, 232), np.uint8)
        # the spine: a soft shadow on both sides of the fold (the same on a leaf lying flat)
        xs = np.arange(2 * pw, dtype=np.float32) - pw + 0.5
        self.spine = 1 - 0.28 * np.exp(-(xs / (0.06 * pw)) ** 2) - 0.06 * np.exp(-(xs / (0.25 * pw)) ** 2)
        # book corners in the flat plane: the spread [0, 2pw] x [0, ph] plus its board border
        bw, bh = 2 * pw + 2 * border, ph + 2 * border
        cx = w / 2 + rng.uniform(-0.03, 0.03) * w
        cy = h / 2 + rng.uniform(-0.02, 0.02) * h
        near, far, tall = bw, bw * (1 - spec.perspective), bh * squash
        dst = np.array([[cx - far / 2, cy - tall / 2], [cx + far / 2, cy - tall / 2],
                        [cx + near / 2, cy + tall / 2], [cx - near / 2, cy + tall / 2]], np.float64)
        angle = math.radians(spec.tilt_deg) * (1 if rng.random() < 0.5 else -1)
        rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        dst = (dst - [cx, cy]) @ rot.T + [cx, cy]
        src = np.array([[-border, -border], [2 * pw + border, -border], [2 * pw + border, ph + border],
                        [-border, ph + border]], np.float64)
        book_h = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)
        # the flat canvas: everything the camera can see, however far it drifts
        reach = spec.drift_px * 1.6 + spec.shake_px * 1.6 + 6
        frame_corners = np.array([[-reach, -reach], [w + reach, -reach], [w + reach, h + reach], [-reach, h + reach]],
                                 np.float64)
        back = cv2.perspectiveTransform(frame_corners[None], np.linalg.inv(book_h))[0]
        x0, y0 = np.floor(back.min(axis=0)) - 2
        x1, y1 = np.ceil(back.max(axis=0)) + 2
        self.origin = np.array([x0, y0])  # flat-plane coordinates of canvas pixel (0, 0)
        cw, ch = int(x1 - x0), int(y1 - y0)
        shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], np.float64)  # canvas px -> flat plane
        self.homography = book_h @ shift  # canvas px -> image px, camera at rest
        self.book_homography = book_h  # flat plane -> image px, camera at rest
        table = _table(rng, spec.table, cw, ch)
        # lamp falloff on the table plane: brighter towards one side
        gx = np.linspace(-1, 1, cw, dtype=np.float32)[None, :]
        gy = np.linspace(-1, 1, ch, dtype=np.float32)[:, None]
        lx, ly = rng.uniform(-0.6, 0.6), rng.uniform(-0.8, -0.2)
        self.lamp = (1.08 - 0.22 * ((gx - lx) ** 2 + (gy - ly) ** 2)).clip(0.6, 1.1)[:, :, None].astype(np.float32)
        self.table = table.astype(np.float32)
        self.cover = np.array(COVER_COLOURS[int(rng.integers(len(COVER_COLOURS)))], np.float32)
        # output-space lighting: vignette
        ux = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        uy = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        self.vignette = np.repeat((1 - spec.vignette * 0.5 * (ux ** 2 + uy ** 2))[:, :, None], 3, axis=2)
        self.skin = np.array(SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], np.float32)

    def _flat_to_canvas(self, x: float, y: float) -> tuple[float, float]:
        return x - self.origin[0], y - self.origin[1]

    def _canvas(self, right: int, lit: bool) -> "np.ndarray":
        """The table and the open book with page ``right`` on the right (float32 RGB, canvas space),
        lamp light applied when ``lit`` (a turn draws its leaf first, then lights the canvas)."""

        key = (right, lit)
        if key in self._canvas_cache:
            return self._canvas_cache[key]
        canvas = self.table.copy()
        pw, ph, b = self.pw, self.ph, self.border
        x0, y0 = (int(round(v)) for v in self._flat_to_canvas(-b, -b))
        canvas[y0:y0 + ph + 2 * b, x0:x0 + 2 * pw + 2 * b] = self.cover
        # page edges: a few lines of stacked paper under each page
        px, py = x0 + b, y0 + b
        canvas[py - 1:py + ph + 1, px - 1:px + 2 * pw + 1] = (205, 200, 190)
        canvas[py:py + ph, px:px + pw] = self.blank
        canvas[py:py + ph, px + pw:px + 2 * pw] = self.pages[right]
        canvas[py:py + ph, px:px + 2 * pw] *= self.spine[None, :, None]
        if lit:
            canvas *= self.lamp
        if len(self._canvas_cache) > 3:
            self._canvas_cache.clear()
        self._canvas_cache[key] = canvas
        return canvas

    def _draw_leaf(self, canvas: "np.ndarray", front: "np.ndarray", theta: float) -> "np.ndarray":
        """The turning leaf at angle ``theta`` (0: flat on the right, pi: flat on the left), curling."""
        import cv2
        import numpy as np

        out = canvas.copy()
        pw, ph = self.pw, self.ph
        sx, sy = self._flat_to_canvas(pw, 0)  # the spine's top in canvas px
        lift = 0.22  # a point z above the page shows this much z higher up the frame
        curl = 0.7 * math.sin(theta)
        inner = 0.55  # the inner part of the leaf bends at theta, the outer part leads by `curl`
        ends = [(0.0, inner * pw, theta), (inner * pw, float(pw), min(math.pi, theta + curl))]
        x_at, z_at = float(sx), 0.0
        # the shadow the leaf casts on the page beneath it
        reach = pw * abs(math.cos(theta)) * (1 if theta < math.pi / 2 else -1)
        lo, hi = sorted((sx, sx + reach * 1.08))
        if hi - lo > 1:
            c0, c1 = int(max(lo, 0)), int(min(hi, out.shape[1]))
            out[int(sy):int(sy) + ph, c0:c1] *= 0.86 + 0.1 * abs(math.cos(theta))
        for u0, u1, angle in ends:
            c = math.cos(angle)
            if abs(c) < 0.03:
                c = 0.03 if c >= 0 else -0.03
            s = math.sin(angle)
            face = front if c > 0 else self.blank
            shade = 0.78 + 0.22 * abs(c)
            stop = min(pw, int(u1) + 2)  # strips overlap: no seam between them
            strip = face[:, int(u0):stop].astype(np.float32) * (shade * self.spine[pw + int(u0):pw + stop])[None, :, None]
            if c < 0:  # the back of the leaf: its left edge is the strip's outer end
                strip = strip[:, ::-1]
            # strip x (0..u1-u0) -> canvas: x = x_at + x*c ; y = sy + v - lift*(z_at + x*s)
            m = np.array([[c, 0, x_at], [-lift * s, 1, sy - lift * z_at]], np.float64)
            if c < 0:  # mirrored strip: its column j sits at x = (width - 1 - j)
                width = strip.shape[1]
                m = np.array([[-c, 0, x_at + c * (width - 1)], [lift * s, 1, sy - lift * (z_at + s * (width - 1))]])
            size = (out.shape[1], out.shape[0])
            warped = cv2.warpAffine(strip, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            mask = cv2.warpAffine(np.ones(strip.shape[:2], np.float32), m, size, flags=cv2.INTER_LINEAR)
            out = out * (1 - mask[:, :, None]) + warped  # warped is premultiplied by its mask
            x_at += (u1 - u0) * c
            z_at += (u1 - u0) * s
        return out

    def leaf_corner(self, theta: float) -> tuple[float, float]:
        """The turning leaf's outer top corner at ``theta``, in canvas px."""
        pw = self.pw
        sx, sy = self._flat_to_canvas(pw, 0)
        curl = 0.7 * math.sin(theta)
        inner = 0.55
        a2 = min(math.pi, theta + curl)
        x = sx + inner * pw * math.cos(theta) + (1 - inner) * pw * math.cos(a2)
        z = inner * pw * math.sin(theta) + (1 - inner) * pw * math.sin(a2)
        return x, sy - 0.22 * z + 0.08 * self.ph

    # -- motion, light, hands

    def _camera_path(self, rng) -> "np.ndarray":
        """(n_frames, 2) camera offset in px: slow drift (periods of 6-20 s) plus shake (2-6 Hz)."""
        import numpy as np

        spec = self.spec
        t = np.arange(self.n_frames, dtype=np.float64) / spec.fps
        out = np.zeros((self.n_frames, 2))
        for axis in range(2):
            drift = sum(np.sin(2 * np.pi * t / rng.uniform(6, 20) + rng.uniform(0, 6)) for _ in range(2)) / 2
            shake = sum(np.sin(2 * np.pi * t * rng.uniform(2, 6) + rng.uniform(0, 6)) for _ in range(3)) / 2
            out[:, axis] = spec.drift_px * drift + spec.shake_px * shake
        return out

    def _exposure(self, rng) -> "np.ndarray":
        """Per-frame exposure gain: a wandering level with small steps (auto exposure hunting)."""
        import numpy as np

        spec = self.spec
        level, out = 0.0, np.ones(self.n_frames)
        for n in range(self.n_frames):
            if rng.random() < 0.25:
                level += rng.normal(0, 0.35)
            level *= 0.98
            level = min(max(level, -1.0), 1.0)
            out[n] = 1 + spec.flicker * level
        return out

    def _plan_hands(self, rng) -> list[dict[str, Any]]:
        hands = []
        fps = self.spec.fps
        starts = {index: f0 for kind, index, f0, _ in self.plan if kind == "page"}
        for page, a, b in self.spec.resting_hands:
            f0 = starts[page]
            hands.append({"kind": "rest", "f0": f0 + round(a * fps), "f1": f0 + round(b * fps),
                          "spot": (rng.uniform(0.55, 0.85), rng.uniform(0.6, 0.85)), "side": 1 if rng.random() < 0.7 else 0,
                          "seed": int(rng.integers(1 << 30))})
        return hands

    def camera(self, n: int) -> "np.ndarray":
        """The 3x3 homography canvas px -> image px at frame ``n`` (drift and shake included)."""
        import numpy as np

        dx, dy = self._camera[min(n, self.n_frames - 1)]
        return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], np.float64) @ self.homography

    def _hand(self, frame: "np.ndarray", tip: tuple[float, float], direction: tuple[float, float], scale: float) -> None:
        """Draw a hand in the image: fingertips at ``tip``, the arm leaving along ``direction``."""
        import cv2
        import numpy as np

        dx, dy = direction
        norm = math.hypot(dx, dy) or 1.0
        dx, dy = dx / norm, dy / norm
        px, py = -dy, dx  # across the hand
        s = scale
        skin = tuple(float(v) for v in self.skin)
        dark = tuple(float(v) * 0.72 for v in self.skin)
        sub = 16  # fixed-point drawing: smooth sub-pixel motion

        def pt(along: float, across: float) -> tuple[int, int]:
            return (int(round((tip[0] + dx * along + px * across) * sub)), int(round((tip[1] + dy * along + py * across) * sub)))

        arm = np.array([pt(0.95 * s, -0.28 * s), pt(0.95 * s, 0.28 * s), pt(7 * s, 0.4 * s), pt(7 * s, -0.4 * s)], np.int32)
        cv2.fillPoly(frame, [arm], dark, cv2.LINE_AA, shift=4)
        palm = np.array([pt(0.35 * s, -0.3 * s), pt(0.35 * s, 0.3 * s), pt(1.0 * s, 0.28 * s), pt(1.0 * s, -0.28 * s)],
                        np.int32)
        cv2.fillPoly(frame, [palm], skin, cv2.LINE_AA, shift=4)
        for k, (across, length) in enumerate(((-0.22, 0.36), (-0.075, 0.4), (0.075, 0.38), (0.22, 0.3))):
            a, b = pt(0.38 * s - length * s, across * s), pt(0.38 * s, across * s)
            cv2.line(frame, a, b, skin, max(1, int(round(0.13 * s))), cv2.LINE_AA, shift=4)
            cv2.line(frame, a, a, dark, max(1, int(round(0.05 * s))), cv2.LINE_AA, shift=4)
        thumb_a, thumb_b = pt(0.75 * s, 0.3 * s), pt(0.45 * s, 0.5 * s)
        cv2.line(frame, thumb_a, thumb_b, skin, max(1, int(round(0.14 * s))), cv2.LINE_AA, shift=4)

    def _hands_at(self, n: int, frame: "np.ndarray", cam: "np.ndarray") -> None:
        import cv2
        import numpy as np

        spec, fps = self.spec, self.spec.fps
        scale = 0.42 * self.ph * 0.86  # a hand is about 40 % of a page tall
        for hand in self._hands:
            f0, f1 = hand["f0"], hand["f1"]
            if not f0 <= n < f1:
                continue
            slide = max(1, round(0.4 * fps))
            a = min(1.0, (n - f0) / slide, (f1 - 1 - n) / slide)
            a = 0.5 - 0.5 * math.cos(math.pi * max(a, 0.0))  # eased: 0 outside, 1 resting
            u, v = hand["spot"]
            fx = self.pw * (1 + u) if hand["side"] else self.pw * (1 - u)
            spot = np.array([[[*self._flat_to_canvas(fx, v * self.ph)]]], np.float64)
            tip = cv2.perspectiveTransform(spot, cam)[0, 0]
            jitter = 0.6 * math.sin(n * 0.9 + hand["seed"] % 7)
            away = np.array([0.35 if hand["side"] else -0.35, 1.0])
            out = tip + away / np.linalg.norm(away) * (1 - a) * (spec.height * 0.9 + scale * 1.2)
            self._hand(frame, (float(out[0]) + jitter, float(out[1])), (float(away[0]), float(away[1])), scale)

    # -- frames

    def entry(self, n: int) -> tuple[str, int, int, int]:
        return self.plan[int(self._entry_of[n])]

    def segment_index(self, n: int) -> int:
        """The truth segment frame ``n`` belongs to (a turn: the page before it)."""
        k = int(self._entry_of[n])
        while k not in self._segment_of_entry:
            k -= 1
        return self._segment_of_entry[k]

    def is_static(self, n: int) -> bool:
        """Only intro and outro cards are exact still pictures; the book always moves a little."""
        return self.entry(n)[0] in ("intro", "outro")

    def _scene(self, n: int, hands: bool = True) -> "np.ndarray":
        """The book at frame ``n`` through the camera, hands included, before light and noise (float32)."""
        import cv2

        kind, index, f0, f1 = self.entry(n)
        cam = self.camera(n)
        size = (self.spec.width, self.spec.height)
        hand_at: tuple[float, float] | None = None
        if kind == "page":
            canvas = self._canvas(index, lit=True)
        else:  # a turn from page `index` to `index + 1`
            u = (n - f0 + 0.5) / (f1 - f0)
            lo, hi = TURN_PHASES if self.spec.turn_hand else (0.0, 1.0)
            leaf = min(max((u - lo) / (hi - lo), 0.0), 1.0)
            theta = math.pi * (0.5 - 0.5 * math.cos(math.pi * leaf))
            canvas = self._draw_leaf(self._canvas(index + 1, lit=False), self.pages[index], theta)
            canvas *= self.lamp
            if self.spec.turn_hand:
                corner = self.leaf_corner(theta)
                reach = min(1.0, u / lo) if u < lo else (1.0 if theta < 0.55 * math.pi else
                                                          max(0.0, 1 - (theta - 0.55 * math.pi) / (0.3 * math.pi)))
                hand_at = (corner, 0.5 - 0.5 * math.cos(math.pi * reach))
        frame = cv2.warpPerspective(canvas, cam, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if hands:
            if hand_at is not None and hand_at[1] > 0:
                import numpy as np

                tip = cv2.perspectiveTransform(np.array([[hand_at[0]]], np.float64), cam)[0, 0]
                scale = 0.42 * self.ph * 0.86
                away = np.array([1.0, -0.5])
                pos = tip + away / np.linalg.norm(away) * (1 - hand_at[1]) * (self.spec.width * 0.6 + scale)
                self._hand(frame, (float(pos[0]), float(pos[1])), (float(away[0]), float(away[1])), scale)
            self._hands_at(n, frame, cam)
        return frame

    def rgb(self, n: int) -> "np.ndarray":
        import numpy as np

        kind, _, _, _ = self.entry(n)
        if kind in ("intro", "outro"):
            return self.segments[self.segment_index(n)].picture
        import cv2

        frame = cv2.multiply(self._scene(n), self.vignette, scale=float(self._gain[n]))
        if self.spec.noise > 0:  # OpenCV's generator, seeded per frame: fast and reproducible
            cv2.setRNGSeed((self.spec.seed * 1_000_003 + n) % 2_147_483_647)
            noise = np.empty(frame.shape[:2], np.float32)  # luma noise, the same on R, G and B
            cv2.randn(noise, 0.5, self.spec.noise)
            frame += noise[:, :, None]
        else:
            frame += 0.5
        return np.clip(frame, 0, 255, out=frame).astype(np.uint8)

    def view(self, segment: int, n: int | None = None) -> "np.ndarray":
        """Truth segment ``segment`` as the camera sees it at frame ``n`` (default: the segment's
        middle frame), without hand, flicker or noise: what its keyframe should show. A card is its picture."""
        import cv2
        import numpy as np

        seg = self.segments[segment]
        if seg.kind != "page":
            return seg.picture
        if n is None:
            n = int(round((seg.t_start + seg.t_end) / 2 * self.spec.fps))
        n = min(max(n, 0), self.n_frames - 1)
        size = (self.spec.width, self.spec.height)
        scene = cv2.warpPerspective(self._canvas(seg.page, lit=True), self.camera(n), size, flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
        return (scene * self.vignette + 0.5).clip(0, 255).astype(np.uint8)

    def page_corners(self, n: int) -> "np.ndarray":
        """The right-hand page's corners in the image at frame ``n`` (tl, tr, br, bl), float."""
        import cv2
        import numpy as np

        pts = np.array([[self._flat_to_canvas(self.pw, 0), self._flat_to_canvas(2 * self.pw, 0),
                         self._flat_to_canvas(2 * self.pw, self.ph), self._flat_to_canvas(self.pw, self.ph)]], np.float64)
        return cv2.perspectiveTransform(pts, self.camera(n))[0]


# ----------------------------------------------------------------------------- writing


def write_filmed_video(out_dir: Path, name: str, spec: FilmedSpec, srt: bool = False,
                       save_pictures: bool = True) -> Truth:
    """Render, encode and describe one filmed book; the files and :class:`Truth` of :func:`write_story_video`.

    ``{name}.pageNN.png`` is the printed page, flat; ``truth.renderer`` is the :class:`FilmedRenderer`
    (for :meth:`~FilmedRenderer.view`: what each keyframe should show).
    """
    import io

    from PIL import Image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    renderer = FilmedRenderer(spec)
    segments = renderer.segments
    files = output_files(out_dir, name, spec)
    for seg in segments:
        seg.image = f"{name}.page{seg.page:02d}.png" if seg.kind == "page" else f"{name}.{seg.kind}.png"
        if save_pictures:
            buf = io.BytesIO()
            Image.fromarray(seg.picture).save(buf, format="PNG", compress_level=1)
            atomic_write_bytes(out_dir / seg.image, buf.getvalue())
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
    truth = FilmedTruth(name, out_dir, spec, segments, renderer.n_frames, files)
    truth.renderer = renderer
    atomic_write_json(files["truth"], truth.to_dict())
    return truth


@dataclass
class FilmedTruth(Truth):
    """:class:`Truth` of a filmed book; ``turns()`` are the page turns' (start, end) seconds."""

    renderer: FilmedRenderer | None = field(default=None, repr=False, compare=False)

    def turns(self) -> list[tuple[float, float]]:
        pages = self.pages()
        return [(a.t_end, b.t_start) for a, b in zip(pages, pages[1:])]

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["generator"]["filmed_version"] = FILMED_VERSION
        return data


def load_filmed_truth(path: Path) -> FilmedTruth:
    """Read a ``{name}.truth.json`` written by :func:`write_filmed_video` (pictures from the PNGs,
    the renderer rebuilt from the spec)."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    spec = FilmedSpec.from_dict(data["generator"]["spec"])
    segments = []
    for s in data["segments"]:
        seg = Segment(kind=s.get("kind", "page"), page=s["page"], t_start=s["t_start"], t_end=s["t_end"],
                      text=s.get("text", ""), speech_start=s.get("speech_start"), speech_end=s.get("speech_end"),
                      transition_in=s.get("transition_in"), kenburns=s.get("kenburns", False),
                      words=[tuple(w) for w in s.get("words", [])], image=s.get("image"))
        if seg.image and (path.parent / seg.image).exists():
            seg.picture = np.asarray(Image.open(path.parent / seg.image).convert("RGB"))
        segments.append(seg)
    name = data["key"]
    return FilmedTruth(name, path.parent, spec, segments, data["n_frames"], output_files(path.parent, name, spec),
                       renderer=FilmedRenderer(spec))
