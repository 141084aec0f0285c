"""Synthetic read-aloud story videos with exact ground truth, for tests, examples and benchmarks.

A :class:`VideoSpec` describes a "storytime" upload the way real ones are made: an optional
channel intro card, one illustrated page on screen while its narration plays, transitions
between pages (hard cuts, cross-fades, fades through black, a slow Ken Burns zoom, or a mix),
an optional outro card, and subtitles timed to the narration. :func:`write_story_video` renders
it with PIL + numpy, encodes H.264/AAC mp4 with PyAV (no ffmpeg binary needed), and writes the
WebVTT subtitles, a small HTML page that yt-dlp's generic extractor understands, the page
pictures and a ``truth.json`` in the format of the real samples in ``shared/samples/readaloud``.

Timing conventions (the same as the real samples):

- segment boundaries fall on frames; a segment is on screen from ``t_start`` to ``t_end``;
- a cut shows the new page from its boundary frame; a cross-fade is centred on the boundary
  (half done there); a fade goes to black over ``transition_s``, is black on the boundary frame
  and comes back over ``transition_s``;
- a page's speech runs, by default, from 0.3 s after its ``t_start`` to 0.5 s before ``t_end``.

Everything is deterministic for a spec: the same spec gives the same pixels, samples and (with
this PyAV/x264 build, one encoder thread) the same mp4 bytes.

Bad inputs for the error-path tests come from :func:`write_truncated_mp4`,
:func:`write_zero_length`, :func:`write_corrupt_mp4`, :func:`write_garbage_subtitles` and
``VideoSpec(audio=False)``. :func:`write_example_sources` writes the bundled example dataset.
"""

from __future__ import annotations

import colorsys
import hashlib
import html
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.storage import atomic_write_bytes, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1"  # bump when the rendering changes, so cached examples are rebuilt
STYLES = ("cut", "crossfade", "fade", "kenburns", "mixed")
SPEECH_LEAD_S = 0.3  # default speech start after the page appears
SPEECH_TAIL_S = 0.5  # default speech end before the page goes
LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German", "no": "Norwegian",
                  "eo": "Esperanto", "tl": "Tagalog", "pt": "Portuguese", "sw": "Swahili"}


# ----------------------------------------------------------------------------- specs


@dataclass
class PageSpec:
    """One story page: its text, seconds on screen, and optionally its speech span.

    ``speech`` is ``(start, end)`` in seconds from the page's ``t_start``; ``None`` means
    ``(0.3, duration_s - 0.5)``. Pages with the same ``picture`` id show the same illustration
    (default: each page its own); use it for the hard case of a page whose picture repeats.
    """

    text: str
    duration_s: float
    speech: tuple[float, float] | None = None
    picture: int | None = None


@dataclass
class VideoSpec:
    """A whole read-aloud video. ``style``: cut, crossfade, fade, kenburns or mixed."""

    pages: list[PageSpec]
    style: str = "cut"
    intro: bool = False
    outro: bool = False
    fps: int = 25
    width: int = 320
    height: int = 180
    transition_s: float = 0.5
    line_art: bool = False
    audio: bool = True
    seed: int = 0
    title: str = "A Synthetic Story"
    language: str = "en"
    channel: str = "Storyloom Corner"
    intro_s: float = 2.0
    outro_s: float = 3.0
    pillarbox: bool = False  # 4:3 illustration centred on light grey bars, like many uploads
    burnt_text: bool = False  # the page text drawn onto the picture (for mask/OCR tests)
    sample_rate: int = 16000
    license: str = "CC0"
    preset: str = "veryfast"  # x264 preset; "fast" looks the same and costs about 2-3x the CPU
    crf: int = 23

    def __post_init__(self) -> None:
        self.pages = [p if isinstance(p, PageSpec) else PageSpec(**p) for p in self.pages]
        for page in self.pages:
            if page.speech is not None:
                page.speech = (float(page.speech[0]), float(page.speech[1]))
        problems = []
        if self.style not in STYLES:
            problems.append(f"style {self.style!r} is not one of {', '.join(STYLES)}")
        if not self.pages:
            problems.append("a video needs at least one page")
        if self.width % 2 or self.height % 2 or self.width < 32 or self.height < 32:
            problems.append(f"size {self.width}x{self.height} must be even and at least 32x32 (yuv420p)")
        if not 1 <= self.fps <= 120:
            problems.append(f"fps {self.fps} out of range 1..120")
        if self.transition_s < 0:
            problems.append("transition_s must be >= 0")
        # a segment must hold the transitions at both its ends
        per_style = {"fade": 2.0, "mixed": 2.0, "crossfade": 1.0}.get(self.style, 0.0)
        min_s = per_style * self.transition_s + 2 / self.fps
        durations = [("page", i, p.duration_s) for i, p in enumerate(self.pages)]
        durations += [("intro", None, self.intro_s)] if self.intro else []
        durations += [("outro", None, self.outro_s)] if self.outro else []
        for kind, i, dur in durations:
            if dur < min_s:
                problems.append(f"{kind}{'' if i is None else f' {i}'} lasts {dur} s, less than the {min_s:.2f} s "
                                f"that {self.style!r} transitions of {self.transition_s} s need")
        for i, page in enumerate(self.pages):
            if page.speech is None and page.duration_s < SPEECH_LEAD_S + SPEECH_TAIL_S + 0.2:
                problems.append(f"page {i} lasts {page.duration_s} s, too short for the default speech span; "
                                "give it a speech=(start, end)")
            if page.speech is not None and not 0 <= page.speech[0] < page.speech[1] <= page.duration_s:
                problems.append(f"page {i} speech {page.speech} is not inside 0..{page.duration_s}")
        if problems:
            raise ValueError("bad VideoSpec: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VideoSpec":
        data = dict(data)
        data["pages"] = [PageSpec(**p) for p in data["pages"]]
        return cls(**data)

    def fingerprint(self) -> str:
        """A hash of everything that determines the output files."""
        blob = json.dumps([GENERATOR_VERSION, self.to_dict()], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- truth


@dataclass
class Segment:
    """One stretch of the video: a story page or an intro/outro card."""

    kind: str  # "page" | "intro" | "outro"
    page: int | None
    t_start: float
    t_end: float
    text: str = ""
    speech_start: float | None = None
    speech_end: float | None = None
    transition_in: str | None = None  # cut / crossfade / fade; None for the first segment
    kenburns: bool = False
    words: list[tuple[str, float, float]] = field(default_factory=list)  # (word, start, end)
    image: str | None = None  # file name of the picture PNG next to the video
    picture: "np.ndarray | None" = field(default=None, repr=False, compare=False)  # RGB, HxWx3

    def to_dict(self) -> dict[str, Any]:
        """The real samples' truth format: pages carry no ``kind``, cards no text or speech."""
        data: dict[str, Any] = {"page": self.page, "t_start": self.t_start, "t_end": self.t_end,
                                "transition_in": self.transition_in}
        if self.kind != "page":
            data.update(kind=self.kind, image=self.image)
            return data
        data.update(speech_start=self.speech_start, speech_end=self.speech_end, text=self.text,
                    image=self.image, kenburns=self.kenburns, words=[list(w) for w in self.words])
        return data


@dataclass
class Truth:
    """What :func:`write_story_video` wrote and what is in it."""

    name: str
    out_dir: Path
    spec: VideoSpec
    segments: list[Segment]
    n_frames: int
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.spec.fps

    @property
    def video(self) -> Path:
        return self.files["video"]

    @property
    def subtitles(self) -> Path:
        return self.files["subtitles"]

    def pages(self) -> list[Segment]:
        return [s for s in self.segments if s.kind == "page"]

    def segment_at(self, t: float) -> Segment:
        for seg in self.segments:
            if seg.t_start <= t < seg.t_end:
                return seg
        return self.segments[-1]

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "key": self.name, "lang": spec.language, "title": spec.title, "license": spec.license,
            "style": spec.style, "intro": spec.intro, "outro": spec.outro, "fps": spec.fps,
            "width": spec.width, "height": spec.height, "n_frames": self.n_frames,
            "duration_s": self.duration_s, "audio": spec.audio, "line_art": spec.line_art,
            "segments": [s.to_dict() for s in self.segments],
            "generator": {"name": "storyloom.synthetic", "version": GENERATOR_VERSION,
                          "fingerprint": spec.fingerprint(), "spec": spec.to_dict()},
        }


def load_truth(path: Path) -> Truth:
    """Read a ``{name}.truth.json`` written by :func:`write_story_video` (pictures from the PNGs)."""
    import numpy as np
    from PIL import Image

    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    spec = VideoSpec.from_dict(data["generator"]["spec"])
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
    return Truth(name, path.parent, spec, segments, data["n_frames"], _file_map(path.parent, name, spec))


def _file_map(out_dir: Path, name: str, spec: VideoSpec) -> dict[str, Path]:
    return {"video": out_dir / f"{name}.mp4", "subtitles": out_dir / f"{name}.{spec.language}.vtt",
            "html": out_dir / f"{name}.html", "truth": out_dir / f"{name}.truth.json"}


# ----------------------------------------------------------------------------- drawing


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(int(size), 6))
    except (TypeError, ValueError, OSError):  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _fit_font(draw, text: str, max_w: float, size: int):
    font = _font(size)
    while size > 7 and draw.textlength(text, font=font) > max_w:
        size -= 1
        font = _font(size)
    return font


def draw_page(seed: int, picture: int, width: int, height: int, line_art: bool = False,
              pillarbox: bool = False, text: str | None = None) -> "np.ndarray":
    """An illustration-like page (RGB uint8, ``height x width x 3``), a pure function of its inputs.

    Colour pages: a gradient or flat pastel background, ground, and outlined figures (sun, house,
    trees, a creature, clouds, shapes) with some texture. ``line_art``: thin dark strokes on a
    near-white background with almost no fill, so a cut hardly moves the mean grey level.
    Consecutive ``picture`` ids get background hues a golden-ratio step apart.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, picture, 7])
    ss = 2  # draw at twice the size, then downsample: anti-aliased edges like real artwork
    if pillarbox:
        ih = height
        iw = min(width, (height * 4 // 3) // 2 * 2)
    else:
        iw, ih = width, height
    W, H = iw * ss, ih * ss
    hue = (seed * 0.137 + picture * 0.618034) % 1.0
    ink = (24, 24, 28) if line_art else _hsv(hue + 0.5, 0.5, 0.16)
    lw = 3 if line_art else 2 * ss  # line art: strokes about 1.5 px wide

    if line_art:
        base = np.full((H, W, 3), 247, np.float32) + rng.uniform(-2, 2, 3).astype(np.float32)
    elif rng.random() < 0.6:
        top = np.array(_hsv(hue, 0.35, 0.97), np.float32)
        bottom = np.array(_hsv(hue + 0.08, 0.2, 1.0), np.float32)
        ramp = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
        base = np.broadcast_to(top * (1 - ramp) + bottom * ramp, (H, W, 3)).copy()
    else:
        base = np.broadcast_to(np.array(_hsv(hue, 0.28, 0.96), np.float32), (H, W, 3)).copy()
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)

    def fill(h_off: float, s: float = 0.65, v: float = 0.85):
        return None if line_art else _hsv(hue + h_off, s, v)

    # ground: a wavy band across the lower part
    gy = int(H * rng.uniform(0.62, 0.78))
    xs = np.linspace(0, W, 9)
    ys = gy + rng.uniform(-0.05, 0.05, 9) * H
    ground = [(float(x), float(y)) for x, y in zip(xs, ys)]
    if line_art:
        d.line(ground, fill=ink, width=lw)
    else:
        d.polygon(ground + [(W, H), (0, H)], fill=fill(0.3, 0.5, 0.7), outline=ink, width=lw)
        for _ in range(int(rng.integers(25, 45))):  # grass / pebble texture
            x, y = rng.uniform(0, W), rng.uniform(gy + 0.06 * H, H)
            d.line([(x, y), (x + rng.uniform(-4, 4) * ss, y - rng.uniform(3, 7) * ss)],
                   fill=_hsv(hue + 0.3, 0.6, 0.45), width=ss)
    # sun
    if rng.random() < 0.7:
        r = H * rng.uniform(0.07, 0.11)
        cx, cy = rng.uniform(0.1, 0.9) * W, rng.uniform(0.1, 0.28) * H
        for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            d.line([(cx + 1.3 * r * np.cos(a), cy + 1.3 * r * np.sin(a)),
                    (cx + 1.8 * r * np.cos(a), cy + 1.8 * r * np.sin(a))],
                   fill=ink if line_art else (240, 170, 30), width=lw)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=None if line_art else (252, 208, 60), outline=ink, width=lw)
    # clouds
    for _ in range(int(rng.integers(0, 3))):
        cx, cy, r = rng.uniform(0, W), rng.uniform(0.08, 0.3) * H, H * rng.uniform(0.04, 0.07)
        for dx in (-1.2, 0, 1.2):
            d.ellipse([cx + dx * r - r, cy - r, cx + dx * r + r, cy + r], fill=None if line_art else (255, 255, 255),
                      outline=ink if line_art else _hsv(hue, 0.1, 0.8), width=max(1, lw // 2))
    # figures standing on the ground, in random order and places
    close_up = rng.random() < 0.3  # one big figure, as in a close-up spread
    slots = rng.permutation(np.linspace(0.12, 0.88, 4)) if not close_up else [rng.uniform(0.3, 0.45)]
    figures = rng.permutation(["house", "tree", "tree", "creature"])[: int(rng.integers(2, 5))]
    if close_up:
        figures = [str(rng.choice(["creature", "house", "tree"]))]
    for kind, sx in zip(figures, slots):
        x0, base_y = float(sx * W), float(gy + rng.uniform(0.0, 0.08) * H)
        s = H * (rng.uniform(0.5, 0.6) if close_up else rng.uniform(0.22, 0.34))
        if kind == "house":
            d.rectangle([x0 - s * 0.5, base_y - s, x0 + s * 0.5, base_y],
                        fill=fill(0.05, 0.55, 0.9), outline=ink, width=lw)
            d.polygon([(x0 - s * 0.65, base_y - s), (x0, base_y - s * 1.6), (x0 + s * 0.65, base_y - s)],
                      fill=fill(0.95, 0.7, 0.7), outline=ink, width=lw)
            d.rectangle([x0 - s * 0.12, base_y - s * 0.45, x0 + s * 0.12, base_y],
                        fill=fill(0.6, 0.6, 0.45), outline=ink, width=lw)
            d.rectangle([x0 + s * 0.2, base_y - s * 0.8, x0 + s * 0.4, base_y - s * 0.6],
                        fill=None if line_art else (250, 240, 170), outline=ink, width=max(1, lw // 2))
        elif kind == "tree":
            d.rectangle([x0 - s * 0.08, base_y - s * 0.7, x0 + s * 0.08, base_y],
                        fill=fill(0.08, 0.6, 0.45), outline=ink, width=lw)
            for _ in range(int(rng.integers(1, 4))):
                cx, cy = x0 + rng.uniform(-0.25, 0.25) * s, base_y - s * rng.uniform(0.9, 1.2)
                rx, ry = s * rng.uniform(0.3, 0.45), s * rng.uniform(0.25, 0.4)
                d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=fill(0.33, 0.6, 0.6), outline=ink, width=lw)
        else:  # a creature: body, head, ears, eye, legs
            body = fill(rng.uniform(0, 1), 0.75, 0.9)
            bw, bh = s * 0.6, s * 0.35
            for lx in (-0.35, 0.3):
                d.line([(x0 + lx * bw, base_y - bh * 0.3), (x0 + lx * bw, base_y)], fill=ink, width=lw)
            d.ellipse([x0 - bw, base_y - bh * 1.6, x0 + bw, base_y - bh * 0.2], fill=body, outline=ink, width=lw)
            hx, hy, hr = x0 + bw * 0.95, base_y - bh * 1.6, s * 0.2
            d.polygon([(hx - hr * 0.8, hy - hr * 0.5), (hx - hr * 0.4, hy - hr * 1.7), (hx, hy - hr * 0.7)],
                      fill=body, outline=ink, width=lw)
            d.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body, outline=ink, width=lw)
            d.ellipse([hx + hr * 0.2, hy - hr * 0.35, hx + hr * 0.5, hy - hr * 0.05], fill=ink)
    # a few free shapes (flowers, stones, kites)
    for _ in range(int(rng.integers(2, 5))):
        cx, cy, r = rng.uniform(0.05, 0.95) * W, rng.uniform(0.3, 0.95) * H, H * rng.uniform(0.03, 0.07)
        color = fill(rng.uniform(0, 1), 0.7, 0.95)
        if rng.random() < 0.5:
            d.ellipse([cx - r, cy - r * 0.7, cx + r, cy + r * 0.7], fill=color, outline=ink, width=max(1, lw // 2))
        else:
            n = int(rng.integers(3, 7))
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            d.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for a in ang],
                      fill=color, outline=ink, width=max(1, lw // 2))
    if line_art and rng.random() < 0.5:  # a little pale fill somewhere
        cx, cy, r = rng.uniform(0.2, 0.8) * W, rng.uniform(0.3, 0.6) * H, H * 0.05
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_hsv(hue, 0.15, 0.97), outline=ink, width=lw)

    img = img.resize((iw, ih), Image.BOX)
    if text:
        _draw_burnt_text(img, text)
    arr = np.asarray(img, dtype=np.int16)
    if not line_art:  # paper grain
        arr = arr + rng.integers(-3, 4, size=(ih, iw, 1), dtype=np.int16)
    arr = arr.clip(0, 255).astype(np.uint8)
    if not pillarbox or iw == width:
        return arr
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = (243, 244, 242)
    x = (width - iw) // 2
    frame[:, x:x + iw] = arr
    return frame


def _draw_burnt_text(img, text: str) -> None:
    """Page text in a white band at the bottom of the picture, as in scanned picture books."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(img)
    w, h = img.size
    font = _font(max(8, h // 16))
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if line and d.textlength(trial, font=font) > w * 0.92:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    lines = lines[:3]
    step = int(font.size * 1.25) if hasattr(font, "size") else 12
    top = h - step * len(lines) - 6
    d.rectangle([0, top - 3, w, h], fill=(252, 252, 250))
    for i, ln in enumerate(lines):
        d.text((w * 0.04, top + i * step), ln, fill=(20, 20, 20), font=font)


def draw_card(kind: str, seed: int, width: int, height: int, channel: str) -> "np.ndarray":
    """An intro ("Storytime with CHANNEL" and a logo) or outro ("Thanks for watching! Subscribe") card."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, 99, 1 if kind == "intro" else 2])
    bg = _hsv(rng.uniform(0.0, 1.0), rng.uniform(0.55, 0.75), rng.uniform(0.45, 0.62))
    img = Image.new("RGB", (width, height), bg)
    d = ImageDraw.Draw(img)
    white = (250, 248, 240)
    if kind == "intro":
        r = height * 0.16
        cx, cy = width * 0.16, height * 0.45
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(252, 210, 70), outline=white, width=2)
        for side, paper in ((-1, white), (1, (235, 235, 225))):  # an open book
            d.polygon([(cx + side * r * 0.6, cy - r * 0.3), (cx, cy - r * 0.1), (cx, cy + r * 0.5),
                       (cx + side * r * 0.6, cy + r * 0.3)], fill=paper)
        title, sub = f"Storytime with {channel}", "read-aloud stories for kids"
        x0 = width * 0.3
        font = _fit_font(d, title, width * 0.66, int(height * 0.1))
        d.text((x0, height * 0.34), title, fill=white, font=font, stroke_width=1, stroke_fill=white)
        d.text((x0, height * 0.52), sub, fill=white, font=_fit_font(d, sub, width * 0.6, int(height * 0.06)))
    else:
        title = "Thanks for watching!"
        font = _fit_font(d, title, width * 0.8, int(height * 0.11))
        tw = d.textlength(title, font=font)
        d.text(((width - tw) / 2, height * 0.25), title, fill=white, font=font, stroke_width=1, stroke_fill=white)
        bw, bh = width * 0.36, height * 0.17
        bx, by = (width - bw) / 2, height * 0.55
        d.rounded_rectangle([bx, by, bx + bw, by + bh], radius=int(bh * 0.3), fill=(204, 24, 30))
        font = _fit_font(d, "SUBSCRIBE", bw * 0.8, int(bh * 0.55))
        tw = d.textlength("SUBSCRIBE", font=font)
        d.text(((width - tw) / 2, by + bh * 0.2), "SUBSCRIBE", fill=(255, 255, 255), font=font)
    return np.asarray(img, dtype=np.uint8).copy()


# ----------------------------------------------------------------------------- timeline and frames


_SYLLABLE_RE = re.compile(r"[aeiouyáéíóúàèìòùäëïöüåæøâêîôû]+", re.IGNORECASE)


def _syllables(word: str) -> int:
    return max(1, len(_SYLLABLE_RE.findall(word)))


def word_timings(text: str, start: float, end: float) -> list[tuple[str, float, float]]:
    """Spread the words of ``text`` over ``[start, end]``: time per syllable, pauses at punctuation."""
    words = text.split()
    if not words:
        return []
    gap = 0.05
    syl = [_syllables(w) for w in words]
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


# ----------------------------------------------------------------------------- audio


def synth_audio(segments: list[Segment], n_samples: int, sample_rate: int, seed: int) -> "np.ndarray":
    """Mono float32 narration: a voiced, syllable-modulated signal in each page's words, near-silence elsewhere."""
    import numpy as np

    rng = np.random.default_rng([seed, 4242])
    x = rng.normal(0.0, 2e-4, n_samples).astype(np.float32)  # about -74 dBFS room tone
    sr = sample_rate
    f0_base = rng.uniform(165, 225)
    for seg in segments:
        if seg.kind != "page" or not seg.words:
            continue
        i0, i1 = int(round(seg.speech_start * sr)), min(int(round(seg.speech_end * sr)), n_samples)
        t = np.arange(i1 - i0) / sr
        # pitch: slow declination, vibrato and a random accent curve
        accents = np.interp(t, np.linspace(0, t[-1] if len(t) else 1, 8), rng.uniform(-0.08, 0.12, 8))
        f0 = f0_base * (1.05 - 0.1 * t / max(t[-1], 1e-3) + 0.02 * np.sin(2 * np.pi * 5.5 * t) + accents)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        voiced = np.zeros_like(t)
        for h, amp in zip(range(1, 9), (1.0, 0.7, 0.55, 0.35, 0.25, 0.18, 0.12, 0.08)):
            voiced += amp * np.sin(h * phase + h * 0.3)
        env = np.zeros_like(t)
        for word, w0, w1 in seg.words:
            n_syl = _syllables(word)
            edges = np.linspace(w0, w1, n_syl + 1)
            for s0, s1 in zip(edges[:-1], edges[1:]):
                a0, a1 = int((s0 - seg.speech_start) * sr), int((s1 - seg.speech_start) * sr)
                a1 = min(a1, len(t))
                if a1 - a0 < 4:
                    continue
                u = np.linspace(0, 1, a1 - a0)
                env[a0:a1] = np.maximum(env[a0:a1], np.sin(np.pi * u) ** 0.6 * rng.uniform(0.7, 1.0))
        noise = rng.normal(0, 1, len(t))
        x[i0:i1] += (0.12 * voiced + 0.03 * noise) * env
    return np.clip(x, -1, 1).astype(np.float32)


# ----------------------------------------------------------------------------- encoding


def _encode(path: Path, renderer: FrameRenderer, audio: "np.ndarray | None", spec: VideoSpec) -> None:
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


# ----------------------------------------------------------------------------- subtitles and pages


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


# ----------------------------------------------------------------------------- the writer


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
    files = _file_map(out_dir, name, spec)
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
        _encode(tmp, renderer, audio, spec)
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


# ----------------------------------------------------------------------------- bad inputs


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


# ----------------------------------------------------------------------------- bundled examples


EXAMPLE_STORIES: dict[str, dict[str, Any]] = {
    "fox-home": {
        "title": "The Fox Who Looked for a Home",
        "style": "cut", "line_art": True, "intro": False, "outro": False,
        "pages": [
            "The Fox Who Looked for a Home",
            "Little Fox had no home. The wind was cold.",
            "She looked under a big rock. A snail lived there.",
            "She looked in a hollow tree. An owl said, go away!",
            "At last she found a hill with soft grass. She dug and dug.",
            "Now Little Fox has a warm den. She sleeps well.",
        ],
    },
    "little-cloud": {
        "title": "The Little Cloud",
        "style": "crossfade", "line_art": False, "intro": False, "outro": False, "pillarbox": True,
        "pages": [
            "The Little Cloud",
            "A little cloud floated over a dry field.",
            "The corn was thirsty. The cows were thirsty too.",
            "The cloud grew big and grey. Then it began to rain.",
            "The field turned green. The little cloud smiled.",
        ],
    },
    "moon-boat": {
        "title": "Mia and the Moon Boat",
        "style": "fade", "line_art": False, "intro": True, "outro": True,
        "pages": [
            "Mia and the Moon Boat",
            "Mia could not sleep. The moon was shining in her window.",
            "A silver boat came down on a moonbeam.",
            "Mia climbed in. They sailed past the stars.",
            "A sleepy star asked for a song. Mia sang softly.",
            "The boat brought her home. Her bed was warm.",
            "Goodnight, moon. Goodnight, Mia.",
        ],
    },
    "turtle-drum": {
        "title": "The Turtle's Drum",
        "style": "kenburns", "line_art": False, "intro": True, "outro": False, "pillarbox": True,
        "pages": [
            "The Turtle's Drum",
            "Turtle found an old drum by the river.",
            "Boom, boom! The frogs came to listen.",
            "The birds came, and the goats came too.",
            "Everyone danced until the sun went down.",
        ],
    },
}


def example_specs() -> dict[str, VideoSpec]:
    """The specs of the bundled example videos (320x180, 2-4 s per page, English, CC0)."""
    specs = {}
    for i, (name, story) in enumerate(EXAMPLE_STORIES.items()):
        pages = [PageSpec(text, round(min(max(1.4 + 0.045 * len(text), 2.0), 4.0), 2)) for text in story["pages"]]
        specs[name] = VideoSpec(pages=pages, style=story["style"], intro=story["intro"], outro=story["outro"],
                                line_art=story["line_art"], pillarbox=story.get("pillarbox", False),
                                seed=100 + i, title=story["title"], language="en", license="CC0")
    return specs


def _up_to_date(out_dir: Path, name: str, spec: VideoSpec) -> bool:
    files = _file_map(out_dir, name, spec)
    if not all(p.exists() and p.stat().st_size > 0 for p in files.values()):
        return False
    try:
        data = json.loads(files["truth"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if data.get("generator", {}).get("fingerprint") != spec.fingerprint():
        return False
    return all((out_dir / s["image"]).exists() for s in data["segments"] if s.get("image"))


def write_example_sources(out_dir: Path) -> Path:
    """Write the bundled example videos and their ``sources.yaml``; returns the yaml's path.

    Videos whose files are there with a matching fingerprint are not rendered again. Paths in the
    yaml are relative to its own directory.
    """
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for name, spec in example_specs().items():
        if _up_to_date(out_dir, name, spec):
            log.debug("example %s is up to date", name)
        else:
            log.info("writing example video %s (%s, %d pages)", name, spec.style, len(spec.pages))
            write_story_video(out_dir, name, spec)
        entries.append({"path": f"{name}.mp4", "kind": "video", "title": spec.title,
                        "license": spec.license, "language": spec.language, "tags": ["synthetic", "example"]})
    doc = {"defaults": {"language": "en", "license_allow": ["CC0"]}, "sources": entries}
    text = ("# Bundled synthetic read-aloud videos for `make run` (written by pipeline.synthetic).\n"
            "# Paths are relative to this file. Each video has NAME.en.vtt subtitles and NAME.truth.json.\n"
            + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    path = out_dir / "sources.yaml"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)
    return path
