"""What a synthetic video is and what is known about it: the specs and the ground truth.

:class:`VideoSpec` (with its :class:`PageSpec` pages) describes a video to render and checks
itself on construction; :class:`Segment` and :class:`Truth` describe what was rendered, in the
``truth.json`` format of the real samples, and :func:`load_truth` reads such a file back.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

GENERATOR_VERSION = "1"  # bump when the rendering changes, so cached examples are rebuilt
STYLES = ("cut", "crossfade", "fade", "kenburns", "mixed")
SPEECH_LEAD_S = 0.3  # default speech start after the page appears
SPEECH_TAIL_S = 0.5  # default speech end before the page goes


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
    return Truth(name, path.parent, spec, segments, data["n_frames"], output_files(path.parent, name, spec))


def output_files(out_dir: Path, name: str, spec: VideoSpec) -> dict[str, Path]:
    """The files a generated video comes with: video, subtitles, HTML page and truth."""
    return {"video": out_dir / f"{name}.mp4", "subtitles": out_dir / f"{name}.{spec.language}.vtt",
            "html": out_dir / f"{name}.html", "truth": out_dir / f"{name}.truth.json"}
