"""Clean: drop frames that are not story pages, and count every drop by reason.

Runs after text alignment, so that it can use speech: an intro or outro card is a frame at the
very start or end of a video that no narration overlaps. Reasons:

- ``blank``: near-uniform (black, white, one colour): grey std below ``blank_std``.
- ``blurred``: variance of the Laplacian at 256 px wide below ``blur_min_sharpness``.
- ``intro`` / ``outro``: the leading / trailing frames without speech inside ``edge_window_s``,
  only when the video has speech at all (without text we cannot tell a card from a page).
- ``near_duplicate``: perceptual hash within ``phash_max_distance`` bits of the previous kept
  frame. The duplicate's time span and text move into the kept frame, so no narration is lost.
  Exception (:func:`keeps_look_alike`): a page turned by hand in a filmed book keeps its frame when
  both pages are narrated (the open book dominates both pictures); and when a fade through black
  separates the two and both are narrated, the video
  turned the page on purpose (a title page that reuses the first illustration is common);
  both are kept and the second is flagged ``repeated_image``.

Text of a blank or blurred frame moves to the previous kept frame (or the next one when it is
the first), for the same reason.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import CleanConfig

log = logging.getLogger(__name__)

ANALYSIS_WIDTH = 256


@dataclass
class FrameCandidate:
    """A frame on its way into a story: picture, time span, aligned text."""

    image: np.ndarray  # RGB uint8
    t_start: float | None
    t_end: float | None
    text: str = ""
    align_score: float | None = None
    flags: list[str] = field(default_factory=list)
    boundary: str = "change"  # how this page began (keyframes.BOUNDARY_*)
    page: int | None = None
    clip_score: float | None = None  # image-text cosine (pipeline.models.clip); None without CLIP
    caption: str | None = None  # visual description (pipeline.models.captions); None without a captioner
    text_assignment: str | None = None  # how the text was aligned (pipeline.text.align.ASSIGNMENTS); None without text
    t_frame: float | None = None  # seconds: when the chosen video frame shows (None for books)
    pts: int | None = None  # that frame's presentation timestamp in the video stream's time base


@dataclass
class CleanResult:
    kept: list[FrameCandidate]
    dropped: dict[str, int]  # reason -> count


def _grey(image: np.ndarray) -> np.ndarray:
    import cv2

    h, w = image.shape[:2]
    height = max(1, round(h * ANALYSIS_WIDTH / w))
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (ANALYSIS_WIDTH, height), interpolation=cv2.INTER_AREA)


def sharpness(grey: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def phash(grey: np.ndarray) -> int:
    """64-bit DCT perceptual hash (the classic pHash: 32x32 DCT, 8x8 low frequencies vs median)."""
    import cv2

    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].flatten()
    bits = low > np.median(low[1:])  # the DC term would dominate the median
    return int("".join("1" if b else "0" for b in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _merge_into(target: FrameCandidate, other: FrameCandidate, after: bool) -> None:
    """Move ``other``'s text and time span into ``target`` (``after``: other comes later)."""
    texts = [target.text, other.text] if after else [other.text, target.text]
    target.text = " ".join(t for t in texts if t)
    if target.text and "no_speech" in target.flags:
        target.flags.remove("no_speech")
    if other.text:  # the merged text is as sure as the less sure of the two
        if target.align_score is None or other.align_score is not None and other.align_score < target.align_score:
            target.align_score = other.align_score
        target.text_assignment = _less_sure(target.text_assignment, other.text_assignment)
    if other.t_start is not None and target.t_start is not None:
        target.t_start = min(target.t_start, other.t_start)
        target.t_end = max(target.t_end, other.t_end)


def _less_sure(a: str | None, b: str | None) -> str | None:
    """The less sure of two text assignments (pipeline.text.align.ASSIGNMENTS order; None: no text)."""
    from pipeline.text.align import ASSIGNMENTS

    known = [x for x in (a, b) if x in ASSIGNMENTS]
    return max(known, key=ASSIGNMENTS.index) if known else (a or b)


class FrameKeeper:
    """Keeps frames in order; a dropped frame's text and time span move to a kept neighbour.

    The previous kept frame takes them; frames dropped before any is kept hand them to the first
    frame kept after them, in their order. Shared by every filter that drops frames: this clean,
    the CLIP filters (:mod:`pipeline.models.clip`) and the book clean (:mod:`pipeline.book.stages`).
    """

    def __init__(self, dropped: dict[str, int] | None = None):
        self.kept: list[FrameCandidate] = []
        self.dropped: Counter[str] = Counter(dropped or {})
        self._orphans: list[FrameCandidate] = []

    def drop(self, frame: FrameCandidate, reason: str) -> None:
        self.dropped[reason] += 1
        if self.kept:
            _merge_into(self.kept[-1], frame, after=True)
        elif frame.text:
            self._orphans.append(frame)

    def keep(self, frame: FrameCandidate) -> None:
        for orphan in reversed(self._orphans):  # each goes in front: the earliest must end up first
            _merge_into(frame, orphan, after=False)
        self._orphans = []
        self.kept.append(frame)

    def result(self, who: str) -> "CleanResult":
        if self._orphans:
            log.warning("%s dropped every frame; %d frame(s) of narration are lost with them", who, len(self._orphans))
        return CleanResult(kept=self.kept, dropped=dict(sorted(self.dropped.items())))


def keeps_look_alike(frame: FrameCandidate, previous: FrameCandidate) -> bool:
    """Whether ``frame`` stays although it looks like ``previous``: the video turned the page on
    purpose and both pages are narrated. After a fade through black the picture really repeats
    (flagged ``repeated_image``); after a page turned by hand (a filmed book) the two pages only
    look alike to a whole-frame hash, the open book and the table filling most of both frames."""
    if not (frame.text and previous.text and frame.boundary in ("fade", "turn")):
        return False
    if frame.boundary == "fade" and "repeated_image" not in frame.flags:
        frame.flags.append("repeated_image")
    return True


def _edge_cards(frames: list[FrameCandidate], cfg: CleanConfig) -> dict[int, str]:
    """Indices of intro/outro cards: frames without speech at the very start or end."""
    if not cfg.drop_intro_outro or not any(f.text for f in frames):
        return {}
    if frames[0].t_start is None:  # book pages have no timing: front matter is another stage's job
        return {}
    end = max(f.t_end for f in frames)
    cards: dict[int, str] = {}
    for i, frame in enumerate(frames):
        if frame.text or frame.t_end > cfg.edge_window_s:
            break
        cards[i] = "intro"
    for i in range(len(frames) - 1, -1, -1):
        frame = frames[i]
        if frame.text or frame.t_start < end - cfg.edge_window_s or i in cards:
            break
        cards[i] = "outro"
    return cards


def clean_frames(frames: list[FrameCandidate], cfg: CleanConfig) -> CleanResult:
    """Drop non-story frames; return the kept ones in order and the drop counts by reason."""
    keeper = FrameKeeper()
    cards = _edge_cards(frames, cfg)
    kept_hashes: list[int] = []

    for i, frame in enumerate(frames):
        if i in cards:  # no speech by definition: counted, nothing to hand on
            keeper.dropped[cards[i]] += 1
            continue
        grey = _grey(frame.image)
        if cfg.drop_blank and float(grey.std()) < cfg.blank_std:
            keeper.drop(frame, "blank")
            continue
        if cfg.drop_blurred and sharpness(grey) < cfg.blur_min_sharpness:
            keeper.drop(frame, "blurred")
            continue
        digest = phash(grey)
        if cfg.drop_duplicates and keeper.kept and hamming(digest, kept_hashes[-1]) <= cfg.phash_max_distance:
            if not keeps_look_alike(frame, keeper.kept[-1]):
                keeper.drop(frame, "near_duplicate")
                continue
        keeper.keep(frame)
        kept_hashes.append(digest)
    return keeper.result("clean")
