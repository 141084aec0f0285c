"""Synthetic animated story clips with exact shot truth, for shot mode (``keyframes.mode: shots``).

An animated (or live-action) story is not a slideshow: the picture moves all the time, so a page
detector's still runs do not exist, and the story is told in *shots* joined by hard cuts and
dissolves. :func:`write_animated_video` renders such a clip from an :class:`AnimatedSpec`:

- every shot is a wide illustrated background (:func:`~pipeline.synthetic.drawing.draw_page`)
  seen through a moving camera (a pan, or a zoom with a drift) with a few coloured shapes
  flying across it, so consecutive frames always differ;
- shots are joined by hard cuts or dissolves (cross-fades of ``dissolve_s``, both shots moving
  while they mix), centred on the boundary frame the way the read-aloud generator centres its
  cross-fades: the mix is half done between frames ``B - 1`` and ``B``;
- each shot has a line of narration, spoken (synthetic audio) and subtitled over its speech span.

It writes ``{name}.mp4`` (H.264 via PyAV, like every generated video), ``{name}.{lang}.vtt``,
``{name}.html`` and ``{name}.truth.json``: the shots (``t_start``/``t_end`` on boundary frames,
text, speech span, words, motion) and the boundaries (``frame`` = the first frame of the new
shot, ``kind`` = cut or dissolve, ``first``/``last`` = the frames that carry the transition).
:class:`AnimatedRenderer` renders any frame exactly as it went into the encoder, so tests can
check that a chosen frame is the frame it claims to be.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.storage import atomic_write_json, atomic_write_text
from pipeline.synthetic.audio import synth_audio
from pipeline.synthetic.drawing import draw_page
from pipeline.synthetic.encode import encode_video
from pipeline.synthetic.spec import SPEECH_LEAD_S, SPEECH_TAIL_S, Segment
from pipeline.synthetic.subtitles import html_page, vtt_text
from pipeline.synthetic.timeline import word_timings

if TYPE_CHECKING:
    import numpy as np

ANIMATED_VERSION = "1"  # bump when the rendering changes
MOTIONS = ("pan", "zoom")
TRANSITIONS = ("cut", "dissolve")


@dataclass
class ShotSpec:
    """One shot: its narration, seconds (boundary to boundary), how it begins and how the camera moves.

    ``transition_in`` is ignored for the first shot. ``speech`` is ``(start, end)`` from the
    shot's start; ``None`` means ``(0.3, duration_s - 0.5)``.
    """

    text: str
    duration_s: float
    transition_in: str = "cut"  # cut | dissolve
    motion: str = "pan"  # pan | zoom
    speech: tuple[float, float] | None = None


@dataclass
class AnimatedSpec:
    """A whole animated clip (the encoder reads fps, size, crf, preset, title and sample_rate)."""

    shots: list[ShotSpec]
    fps: int = 25
    width: int = 320
    height: int = 180
    dissolve_s: float = 0.8  # a dissolve mixes this many seconds, centred on its boundary
    speed: float = 1.0  # camera and shape speed factor (1: about 2-4 px a frame at 320 px wide)
    seed: int = 0
    title: str = "A Synthetic Cartoon"
    language: str = "en"
    license: str = "CC0"
    audio: bool = True
    sample_rate: int = 16000
    preset: str = "veryfast"
    crf: int = 23

    def __post_init__(self) -> None:
        self.shots = [s if isinstance(s, ShotSpec) else ShotSpec(**s) for s in self.shots]
        problems = []
        if not self.shots:
            problems.append("a clip needs at least one shot")
        if self.width % 2 or self.height % 2 or self.width < 32 or self.height < 32:
            problems.append(f"size {self.width}x{self.height} must be even and at least 32x32 (yuv420p)")
        if not 1 <= self.fps <= 120:
            problems.append(f"fps {self.fps} out of range 1..120")
        for i, shot in enumerate(self.shots):
            if shot.transition_in not in TRANSITIONS:
                problems.append(f"shot {i}: transition_in {shot.transition_in!r} is not one of {', '.join(TRANSITIONS)}")
            if shot.motion not in MOTIONS:
                problems.append(f"shot {i}: motion {shot.motion!r} is not one of {', '.join(MOTIONS)}")
            # a shot must hold half of a dissolve at each end, and some clean frames between them
            if shot.duration_s < self.dissolve_s + 0.5:
                problems.append(f"shot {i} lasts {shot.duration_s} s, less than dissolve_s + 0.5 s")
            if shot.speech is None and shot.duration_s < SPEECH_LEAD_S + SPEECH_TAIL_S + 0.2:
                problems.append(f"shot {i} is too short for the default speech span")
            if shot.speech is not None and not 0 <= shot.speech[0] < shot.speech[1] <= shot.duration_s:
                problems.append(f"shot {i} speech {shot.speech} is not inside 0..{shot.duration_s}")
        if problems:
            raise ValueError("bad AnimatedSpec: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "AnimatedSpec":
        data = dict(data)
        data["shots"] = [ShotSpec(**{**s, "speech": tuple(s["speech"]) if s.get("speech") else None})
                         for s in data["shots"]]
        return cls(**data)

    def fingerprint(self) -> str:
        blob = json.dumps([ANIMATED_VERSION, self.to_dict()], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass
class Boundary:
    """Where one shot gives way to the next: ``frame`` is the new shot's first frame (its ``t_start``
    times fps); ``first``..``last`` are the frames that carry the transition (a cut: ``frame`` only)."""

    frame: int
    kind: str  # cut | dissolve
    first: int
    last: int


@dataclass
class Shot:
    index: int
    t_start: float
    t_end: float
    f_start: int
    f_end: int  # exclusive
    transition_in: str | None
    motion: str
    text: str
    speech_start: float
    speech_end: float
    words: list[tuple[str, float, float]] = field(default_factory=list)


@dataclass
class AnimatedTruth:
    """What :func:`write_animated_video` wrote and what is in it."""

    name: str
    out_dir: Path
    spec: AnimatedSpec
    shots: list[Shot]
    boundaries: list[Boundary]
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

    def shot_at_frame(self, n: int) -> Shot:
        for shot in self.shots:
            if shot.f_start <= n < shot.f_end:
                return shot
        return self.shots[-1]

    def in_transition(self, n: int) -> bool:
        """Whether frame ``n`` shows a mix of two shots (or is the first frame after a cut)."""
        return any(b.first <= n <= b.last for b in self.boundaries)

    def to_dict(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "key": self.name, "lang": spec.language, "title": spec.title, "license": spec.license,
            "style": "animated", "fps": spec.fps, "width": spec.width, "height": spec.height,
            "n_frames": self.n_frames, "duration_s": self.duration_s, "audio": spec.audio,
            "shots": [{"shot": s.index, "t_start": s.t_start, "t_end": s.t_end, "transition_in": s.transition_in,
                       "motion": s.motion, "text": s.text, "speech_start": s.speech_start,
                       "speech_end": s.speech_end, "words": [list(w) for w in s.words]} for s in self.shots],
            "boundaries": [asdict(b) for b in self.boundaries],
            "generator": {"name": "storyloom.synthetic.animated", "version": ANIMATED_VERSION,
                          "fingerprint": spec.fingerprint(), "spec": spec.to_dict()},
        }


# ----------------------------------------------------------------------------- rendering


@dataclass
class _Sprite:
    kind: str  # disc | box | star
    color: tuple[int, int, int]
    radius: float
    x0: float
    y0: float
    vx: float  # px per frame at speed 1
    vy: float
    spin: float  # radians per frame


class AnimatedRenderer:
    """Plans an :class:`AnimatedSpec` into shots and boundaries, and renders any frame (RGB uint8).

    It offers what :func:`pipeline.synthetic.encode.encode_video` asks of a renderer
    (``n_frames``, ``is_static``, ``segment_index``, ``rgb``); no frame is static.
    """

    def __init__(self, spec: AnimatedSpec):
        import numpy as np

        self.spec = spec
        fps = spec.fps
        self.mix_frames = max(2, round(spec.dissolve_s * fps))
        ends = np.round(np.cumsum([s.duration_s for s in spec.shots]) * fps).astype(int)
        starts = np.concatenate([[0], ends[:-1]])
        self.n_frames = int(ends[-1])
        self.bounds = list(zip(starts.tolist(), ends.tolist()))
        self.shots: list[Shot] = []
        self.boundaries: list[Boundary] = []
        self._backgrounds: list[np.ndarray] = []
        self._cameras: list[tuple[float, ...]] = []
        self._sprites: list[list[_Sprite]] = []
        rng = np.random.default_rng([spec.seed, 2718])
        for i, (shot, (f0, f1)) in enumerate(zip(spec.shots, self.bounds)):
            t0, t1 = f0 / fps, f1 / fps
            sp = shot.speech or (SPEECH_LEAD_S, (t1 - t0) - SPEECH_TAIL_S)
            s0, s1 = round(t0 + sp[0], 3), round(min(t0 + sp[1], t1), 3)
            trans = None if i == 0 else shot.transition_in
            self.shots.append(Shot(i, t0, t1, f0, f1, trans, shot.motion, shot.text, s0, s1,
                                   word_timings(shot.text, s0, s1)))
            if trans == "dissolve":
                first = f0 - self.mix_frames // 2
                self.boundaries.append(Boundary(f0, "dissolve", first, first + self.mix_frames - 1))
            elif trans == "cut":
                self.boundaries.append(Boundary(f0, "cut", f0, f0))
            # a wide background to move the camera over: 1.8 x the frame, 1.3 x as high
            bw, bh = _even(spec.width * 1.8), _even(spec.height * 1.3)
            self._backgrounds.append(draw_page(spec.seed + 101, 1 + 3 * i, bw, bh))
            # camera: (x from, x to, y from, y to, zoom from, zoom to), in background pixels
            span_x, span_y = bw - spec.width, bh - spec.height
            if shot.motion == "pan":
                left = rng.random() < 0.5
                xs = (0.05, 0.95) if left else (0.95, 0.05)
                ys = tuple(rng.uniform(0.2, 0.8, 2))
                zooms = (1.0, 1.0)
            else:
                xs, ys = tuple(rng.uniform(0.3, 0.7, 2)), tuple(rng.uniform(0.3, 0.7, 2))
                zooms = (1.0, 1.45) if rng.random() < 0.5 else (1.45, 1.0)
            self._cameras.append((xs[0] * span_x, xs[1] * span_x, ys[0] * span_y, ys[1] * span_y, *zooms))
            sprites = []
            for k in range(int(rng.integers(3, 6))):
                speed = rng.uniform(1.5, 3.5)
                angle = rng.uniform(0, 2 * np.pi)
                sprites.append(_Sprite(
                    kind=str(rng.choice(["disc", "box", "star"])),
                    color=tuple(int(c) for c in rng.integers(30, 240, 3)),
                    radius=float(spec.height * rng.uniform(0.06, 0.12)),
                    x0=float(rng.uniform(0, spec.width)), y0=float(rng.uniform(0, spec.height)),
                    vx=float(speed * np.cos(angle)), vy=float(speed * np.sin(angle)),
                    spin=float(rng.uniform(-0.15, 0.15)),
                ))
            self._sprites.append(sprites)

    # the renderer interface of pipeline.synthetic.encode
    def segment_index(self, n: int) -> int:
        for k, (f0, f1) in enumerate(self.bounds):
            if f0 <= n < f1:
                return k
        raise IndexError(f"frame {n} outside 0..{self.n_frames - 1}")

    def is_static(self, n: int) -> bool:
        return False

    def rgb(self, n: int) -> "np.ndarray":
        import numpy as np

        k = self.segment_index(n)
        for b in self.boundaries:
            if b.kind == "dissolve" and b.first <= n <= b.last:
                new = self.segment_index(b.frame)
                alpha = (n - b.first + 1) / (self.mix_frames + 1)
                mix = self.shot_frame(new - 1, n).astype(np.float32) * (1 - alpha)
                mix += self.shot_frame(new, n).astype(np.float32) * alpha
                return (mix + 0.5).astype(np.uint8)
        return self.shot_frame(k, n)

    def shot_frame(self, k: int, n: int) -> "np.ndarray":
        """Shot ``k`` as it would look at frame ``n`` (also outside the shot: motion continues)."""
        import cv2
        import numpy as np

        spec = self.spec
        f0, f1 = self.bounds[k]
        a = (n - f0) / max(f1 - f0 - 1, 1)  # 0..1 inside the shot, beyond it during a dissolve
        x0, x1, y0, y1, z0, z1 = self._cameras[k]
        a_speed = 0.5 + (a - 0.5) * spec.speed
        x, y, z = x0 + (x1 - x0) * a_speed, y0 + (y1 - y0) * a_speed, z0 + (z1 - z0) * a_speed
        # frame pixel (u, v) shows background pixel (x + u / z, y + v / z), zoomed about the frame centre
        cu, cv = spec.width / 2, spec.height / 2
        m = np.array([[1 / z, 0, x + cu - cu / z], [0, 1 / z, y + cv - cv / z]], np.float64)
        frame = cv2.warpAffine(self._backgrounds[k], m, (spec.width, spec.height),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        step = (n - f0) * spec.speed
        for s in self._sprites[k]:
            sx = _bounce(s.x0 + s.vx * step, spec.width)
            sy = _bounce(s.y0 + s.vy * step, spec.height)
            _draw_sprite(frame, s, sx, sy, s.spin * step)
        return frame


def _even(x: float) -> int:
    return int(round(x / 2)) * 2


def _bounce(p: float, size: int) -> float:
    """Position ``p`` folded back into [0, size] (a shape bouncing off the frame's edges)."""
    period = 2 * size
    q = p % period
    return q if q <= size else period - q


def _draw_sprite(frame, sprite: _Sprite, x: float, y: float, angle: float) -> None:
    import cv2
    import numpy as np

    shift = 4  # sub-pixel positions: coordinates in 1/16 px
    scale = 1 << shift
    outline = tuple(max(0, c - 90) for c in sprite.color)
    r = sprite.radius
    if sprite.kind == "disc":
        centre = (int(x * scale), int(y * scale))
        cv2.circle(frame, centre, int(r * scale), sprite.color, -1, cv2.LINE_AA, shift)
        cv2.circle(frame, centre, int(r * scale), outline, 2, cv2.LINE_AA, shift)
        eye = (int((x + 0.35 * r * np.cos(angle)) * scale), int((y + 0.35 * r * np.sin(angle)) * scale))
        cv2.circle(frame, eye, int(0.2 * r * scale), (250, 250, 250), -1, cv2.LINE_AA, shift)
        return
    n = 4 if sprite.kind == "box" else 10
    radii = np.full(n, r) if sprite.kind == "box" else np.where(np.arange(n) % 2 == 0, r, 0.45 * r)
    angles = angle + np.arange(n) * 2 * np.pi / n
    points = np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], axis=1)
    points = (points * scale).astype(np.int32)[None]
    cv2.fillPoly(frame, points, sprite.color, cv2.LINE_AA, shift)
    cv2.polylines(frame, points, True, outline, 2, cv2.LINE_AA, shift)


# ----------------------------------------------------------------------------- writing


def write_animated_video(out_dir: Path, name: str, spec: AnimatedSpec) -> AnimatedTruth:
    """Render, encode and describe one animated clip; returns its :class:`AnimatedTruth`.

    Writes ``{name}.mp4``, ``{name}.{lang}.vtt``, ``{name}.html`` and ``{name}.truth.json``,
    each atomically.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    renderer = AnimatedRenderer(spec)
    files = animated_files(out_dir, name, spec)
    segments = [_as_segment(s) for s in renderer.shots]  # the subtitle and audio helpers' records
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
    truth = AnimatedTruth(name, out_dir, spec, renderer.shots, renderer.boundaries, renderer.n_frames, files)
    atomic_write_json(files["truth"], truth.to_dict())
    return truth


def _as_segment(shot: Shot) -> Segment:
    return Segment("page", shot.index, shot.t_start, shot.t_end, shot.text, shot.speech_start, shot.speech_end,
                   shot.transition_in, False, shot.words)


def animated_files(out_dir: Path, name: str, spec: AnimatedSpec) -> dict[str, Path]:
    return {"video": out_dir / f"{name}.mp4", "subtitles": out_dir / f"{name}.{spec.language}.vtt",
            "html": out_dir / f"{name}.html", "truth": out_dir / f"{name}.truth.json"}


def load_animated_truth(path: Path) -> AnimatedTruth:
    """Read a ``{name}.truth.json`` written by :func:`write_animated_video`."""
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    spec = AnimatedSpec.from_dict(data["generator"]["spec"])
    renderer = AnimatedRenderer(spec)  # the plan is a pure function of the spec
    return AnimatedTruth(data["key"], path.parent, spec, renderer.shots, renderer.boundaries, data["n_frames"],
                         animated_files(path.parent, data["key"], spec))


SAMPLE_SHOTS = (
    ("Pip the fox ran across the meadow.", "pan", "cut"),
    ("The wind carried a red kite over the hill.", "zoom", "dissolve"),
    ("Down by the river, the frogs were singing.", "pan", "cut"),
    ("Pip jumped from stone to stone.", "pan", "dissolve"),
    ("A heron watched him from the reeds.", "zoom", "cut"),
    ("The sun went down behind the trees.", "pan", "dissolve"),
    ("Pip curled up in his den and slept.", "zoom", "cut"),
)


def sample_animated_spec(seed: int = 0, n_shots: int = 7, **overrides: Any) -> AnimatedSpec:
    """A ready clip: up to seven shots of 2.4-3.4 s (22.4 s), moving all the time, joined by a 0.8 s
    dissolve, a hard cut, a dissolve, a cut ... (seven shots: three of each)."""
    if not 1 <= n_shots <= len(SAMPLE_SHOTS):
        raise ValueError(f"n_shots must be in 1..{len(SAMPLE_SHOTS)}")
    shots = [ShotSpec(text, 2.4 + 0.5 * (i % 3), transition, motion)
             for i, (text, motion, transition) in enumerate(SAMPLE_SHOTS[:n_shots])]
    return AnimatedSpec(shots=shots, seed=seed, **overrides)
