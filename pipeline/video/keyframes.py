"""Keyframes: exactly one representative frame per story page (or shot) of a video.

Read-aloud videos are mostly still pages joined by hard cuts, cross-fades, fades through black
or a slow Ken Burns zoom/pan; filmed books are a printed book on a table whose pages a hand turns,
under a camera that drifts or shakes, with exposure flicker and sensor noise, and hands that rest
on the page. PySceneDetect's detectors score each cut against one global threshold, and no single
threshold gets all of these right: cuts between line-art pages on a light background score about
as low as one step of a cross-fade. This detector works the other way round. It looks for *still
runs* (frames that barely change from the one before) and then decides which neighbouring runs
show different pages:

1. One decoding pass with PyAV (single-threaded by default: cheapest in CPU time), of the
   reference frames only where that leaves at least ``MIN_ANALYSIS_FPS`` of them a second
   (``reference_frames_only``, the default: H.264, HEVC and AV1 encoders leave about half of the
   frames unreferenced, and skipping them halves the decoding; every length below is counted at
   the rate of the frames decoded, as in a video of that frame rate). Each frame's
   luma plane becomes a small grey signature (``analysis_width`` wide: every few rows, whole
   rows area-averaged). Its change ``d`` from the frame before is the mean absolute difference
   less the exposure offset. When that is not small, the two signatures are smoothed and one
   least-squares step takes out an exposure gain (a few percent) and a camera shift (up to
   ``MAX_SHIFT`` cells); if that explains at least ``_EXPLAINED`` of the change (a drifting or
   shaking camera, flicker), what is left is the change. Per frame we keep its standard
   deviation and ``d``; signatures only where still runs start and end, and briefly in gaps.
2. A frame is still when ``d`` is under an adaptive threshold: ``still_threshold``, raised to
   twice the median change of the last few seconds of the current shot (a change above the cap
   starts a new shot) so that a slow Ken Burns drift or sensor noise still counts as still, and
   capped so that no transition can. A few soft changes (under the cap, at most ``_BLIP_S``)
   that come back to the same picture do not end a run.
3. The frames between two still runs are a *gap*. For each we keep how much every signature cell
   moved (the summed residual change) and whether the gap is a *blend*: every frame in it close
   to a mix of the frames on either side (a cut, a cross-fade, an exposure step) rather than
   motion (a hand, a turning leaf, a push or wipe).
4. During a still run we keep a bounded set of candidate frames (stride doubles as the run
   grows). When the gap after it ends, its representative is chosen among the candidates away
   from both ends (a tenth of the run, ``settle_margin_s``, and ``_SETTLE_S`` next to a page
   turn) that are close to the run's median look: the sharpest (variance of the Laplacian of the
   half-size luma), with its smoothed signature and its skin-coloured cells. Runs shorter than
   half of ``min_page_s`` get none. Memory stays at one frame per run plus the current run's
   candidates; only chosen frames are converted to RGB.
5. After the pass: runs that are blank (near-uniform, e.g. black) or shorter than ``min_page_s``
   are transition debris. Neighbouring runs are different pages when

   - a blank stretch (a fade through black) separates them: an editorial page turn even when
     both sides show the same picture (boundary ``fade``);
   - the gap is a *page turn*: motion (not a blend) that sweeps at least ``turn_min_area`` of the
     frame, as a leaf turning over the spine does, and leaves the page changed, if only a little;
     the page after a turn is a new page even when its picture is the same (boundary ``turn``);
   - the gap is a blend and the signatures across it differ by ``page_change_threshold``, by
     more than exposure and camera drift explain (boundary ``change``: a cut or a cross-fade).

   Any other gap is the same page: a hand coming to rest on it, pointing, or going; the camera
   drifting or shaking; the exposure changing. A debris run with a representative offers it to
   the page no boundary separates it from (a page's last moments after a hand has gone). A
   "page" between two turns that lies still for less than two ``min_page_s`` is the leaf pausing
   mid-turn: dropped. Each page spans from the middle of the transition before it to the middle
   of the one after it, which is what subtitle alignment needs.
6. The frame chosen for a page is, among its runs' representatives away from its turns, the
   least occluded and then the sharpest: first the least skin colour that not every frame of the
   page shows (a hand; a wooden table or the picture's own colours are in all of them), then the
   closest to the page's consensus (the median signature, weighted by run length) and its usual
   exposure. With ``rectify``, the chosen frame is searched for the book's paper quadrilateral,
   which is warped flat (the table cropped, a blank facing page dropped) and flagged
   ``rectified``; without a clean quadrilateral the frame stays as it is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pipeline.config import KeyframeConfig
from pipeline.errors import StageError
from pipeline.video.rectify import FLAG_RECTIFIED, rectify_page
from pipeline.video.signals import (
    MAX_SHIFT,
    PAIR_GAIN,
    Signature,
    distance,
    explained,
    is_blend,
    luma,
    residual,
    sharpness,
    skin_cells,
    smooth,
)

log = logging.getLogger(__name__)

BOUNDARY_START = "start"  # the first page
BOUNDARY_CHANGE = "change"  # a cut or cross-fade to a different picture
BOUNDARY_FADE = "fade"  # a fade through black / a blank stretch
BOUNDARY_TURN = "turn"  # a page turned by hand (a filmed book)


_MAX_GAIN = 0.04  # exposure gain a frame may change by and still be still (a fade step is more)
_EXPLAINED = 0.4  # a frame's change this much explained by exposure and camera shift is judged by what is left
_DRIFTED = 0.4  # two still runs this much alike once exposure and camera drift are taken out are one page
_SKIN_TOLERANCE = 0.01  # runs whose extra skin is within this fraction of the frame of the least count as unoccluded
_SETTLE_S = 0.3  # after a page turn, frames this close to it are never chosen
_BLIP_S = 0.24  # a still run survives this long a stretch of soft changes that come back to its picture
_GAP_FRAMES = 48  # signatures kept per gap for the blend test (stride doubles beyond)
_MOVED = 24.0  # summed residual change (grey levels) that marks a signature cell as moved


class KeyframeError(StageError):
    """The video cannot be decoded into pages (corrupt, truncated, no video stream...)."""


@dataclass
class Keyframe:
    """One page of a video and the frame chosen to show it."""

    t_start: float  # seconds: the page's span, transition midpoints included
    t_end: float
    frame_time: float  # time of the chosen frame
    image: np.ndarray  # RGB uint8, full decoded resolution (or the rectified page)
    sharpness: float  # variance of the Laplacian of the chosen frame's luma
    boundary: str  # how this page began: start / change / fade / turn
    still_s: float  # seconds of still frames that make up the page
    flags: list[str] = field(default_factory=list)  # "rectified"
    pts: int | None = None  # the chosen frame's presentation timestamp, in the stream's time base: exactly it


@dataclass
class KeyframeResult:
    keyframes: list[Keyframe]
    duration_s: float
    fps: float
    frames_decoded: int
    width: int
    height: int
    has_audio: bool = False
    stats: dict[str, float] = field(default_factory=dict)
    time_base: str | None = None  # the video stream's time base ("1/12800"): what ``pts`` counts in


class VideoStream(NamedTuple):
    """A video's first video stream, set up for decoding, and what the detectors read from it first."""

    stream: Any  # av.VideoStream
    has_audio: bool
    fps: float
    expected_s: float | None  # duration from the stream or container header, when it has one
    width: int
    height: int
    time_base: str | None  # stream_time_base(stream)


@contextlib.contextmanager
def open_video(video_path: str | Path, decode_threads: int | None,
               error: type[StageError] = KeyframeError) -> Iterator[tuple[Any, VideoStream]]:
    """``(container, VideoStream)`` for decoding; ``error`` (the caller's stage's) when the file
    cannot be opened or has no video stream. ``decode_threads`` None leaves PyAV's threading as it
    is. The container is closed on leaving."""
    import av

    name = Path(video_path).name
    try:
        container = av.open(str(video_path))
    except (av.error.FFmpegError, OSError) as exc:
        raise error(f"cannot open video {name}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise error(f"{name} has no video stream")
        stream = container.streams.video[0]
        if decode_threads is not None:
            stream.codec_context.thread_count = decode_threads
            if decode_threads != 1:
                stream.thread_type = "AUTO"
        yield container, VideoStream(
            stream=stream, has_audio=bool(container.streams.audio),
            fps=float(stream.average_rate or stream.guessed_rate or 25.0),
            expected_s=_expected_duration(container, stream),
            width=stream.codec_context.width, height=stream.codec_context.height,
            time_base=stream_time_base(stream))


def stream_time_base(stream) -> str | None:
    """A PyAV stream's time base as ``"num/den"`` (None when the container has none)."""
    base = stream.time_base
    return None if base is None else f"{base.numerator}/{base.denominator}"


@dataclass
class _Gap:
    """The frames between two still runs: how much each signature cell moved, and whether it is a blend."""

    moved: np.ndarray  # (ah, aw) float16: summed residual change per cell
    blend: bool
    frames: int


@dataclass
class _Run:
    """A maximal stretch of still frames [start, end] (frame indices, inclusive)."""

    start: int
    end: int
    start_signature: np.ndarray | None = None
    end_signature: np.ndarray | None = None
    candidates: list[tuple[int, object, np.ndarray]] = field(default_factory=list)  # (index, av.VideoFrame, signature)
    stride: int = 1
    gap: _Gap | None = None  # the gap just before this run (None for the first)
    best_index: int = -1
    best_frame: object = None  # av.VideoFrame, converted to RGB only if it is chosen
    best_signature: np.ndarray | None = None
    best_raw: np.ndarray | None = None  # the representative's signature as it was (uint8)
    grid: object = None  # the Signature that made it (for the skin map, computed only when needed)
    best_sharpness: float = -1.0


class _RunTracker:
    """Builds still runs while frames stream by, holding only a bounded number of frames.

    A run that stops is finished only when the gap after it ends (the next still frame), so that
    its frame is chosen knowing both neighbours: frames close to a page turn are never chosen.
    """

    def __init__(self, cfg: KeyframeConfig, fps: float, signature: Signature):
        self.cfg = cfg
        self.signature = signature  # the skin maps use the signatures' cells
        self.margin = max(1, int(round(cfg.settle_margin_s * fps)))
        self.min_gap = max(1, int(round(fps / 4)))  # sample candidates at most 4 times a second
        self.page_len = max(1, int(round(cfg.min_page_s * fps)))  # a page lies still this long at least
        self.min_len = max(1, self.page_len // 2)  # shorter runs get no representative
        self.max_blip = max(1, int(round(_BLIP_S * fps)))
        self.settle = max(1, int(round(_SETTLE_S * fps)))
        self.runs: list[_Run] = []
        self.current: _Run | None = None
        self.ending: _Run | None = None  # stopped, waiting for the gap after it to end
        self.blip_from: int | None = None  # the first moving frame after the current run, while it may be a blip

    def add(self, index: int, frame, signature: np.ndarray, still: bool, gap: _Gap | None, soft: bool) -> None:
        """One frame: ``still`` or not; ``gap``: the gap that ends here; ``soft``: a small change (under the cap)."""
        if not still:
            if self.current is not None:
                if self.blip_from is None:
                    self.blip_from = index
                if not soft or index - self.blip_from + 1 > self.max_blip:
                    self.ending, self.current, self.blip_from = self.current, None, None
            return
        if self.current is not None and self.blip_from is not None:
            # a few soft frames (an exposure step, a compression pulse) that come back to the same
            # picture do not end a still run
            if distance(self.current.end_signature, signature) < 0.5 * self.cfg.page_change_threshold:
                self.blip_from, gap = None, None
            else:
                self.ending, self.current, self.blip_from = self.current, None, None
        if self.ending is not None:
            self._finish(self.ending, gap)
            self.ending = None
        if self.current is None:
            self.current = _Run(index, index, start_signature=signature, stride=self.min_gap, gap=gap)
        run = self.current
        run.end = index
        run.end_signature = signature
        if (index - run.start) % run.stride == 0:
            run.candidates.append((index, frame, signature))
            if len(run.candidates) > 2 * self.cfg.max_candidates:
                # keep every other candidate and sample half as often from now on
                run.candidates = run.candidates[::2]
                run.stride *= 2

    def _turn(self, gap: _Gap | None) -> bool:
        return gap is not None and not gap.blend and _swept(gap.moved) >= self.cfg.turn_min_area

    def _finish(self, run: _Run, after: _Gap | None) -> None:
        """Choose the run's representative (``after``: the gap that follows it, None at the end)."""
        candidates, run.candidates = run.candidates, []
        self.runs.append(run)
        if run.end - run.start + 1 < self.min_len:
            return  # transition debris: never a page's frame, no representative needed
        # away from both ends: a long run's first and last tenth may be settling or starting to move;
        # next to a page turn, the leaf may still be settling or the hand already reaching for it
        margin = max(self.margin, (run.end - run.start + 1) // 10)
        first = max(margin, self.settle) if self._turn(run.gap) else margin
        last = max(margin, self.settle) if self._turn(after) else margin
        interior = [c for c in candidates if run.start + first <= c[0] <= run.end - last]
        if not interior:  # a short run: its middle candidate is the best we have, unless it cannot be a page
            if run.end - run.start + 1 < self.page_len:
                return
            interior = [candidates[len(candidates) // 2]]
        if len(interior) > self.cfg.max_candidates:  # evenly spread, both ends included
            picks = np.linspace(0, len(interior) - 1, self.cfg.max_candidates).round().astype(int)
            interior = [interior[i] for i in picks]
        smoothed = [smooth(sig) for _, _, sig in interior]
        if len(interior) > 2:  # the run's settled look: frames far from its median move, or flicker
            median = np.median(np.stack(smoothed), axis=0)
            away = [float(np.abs(s - median).mean()) for s in smoothed]
        else:
            away = [0.0] * len(interior)
        floor = min(away)
        for (index, frame, signature), sig, off in zip(interior, smoothed, away):
            if off > 1.25 * floor + 0.3:
                continue
            score = sharpness(luma(frame))
            if score > run.best_sharpness:
                run.best_sharpness, run.best_index, run.best_frame, run.best_signature = score, index, frame, sig
                run.best_raw = signature
        run.grid = self.signature

    def finish(self) -> list[_Run]:
        if self.ending is not None:
            self._finish(self.ending, None)
        if self.current is not None:
            self._finish(self.current, None)
        self.ending = self.current = None
        return self.runs


class _GapTracker:
    """Collects what happens between still runs: where the picture moved, and the frames to test for a blend."""

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self.moved: np.ndarray | None = None
        self.before: np.ndarray | None = None
        self.frames: list[np.ndarray] = []
        self.count = 0
        self.stride = 1

    @property
    def open(self) -> bool:
        return self.moved is not None

    def moving(self, before: np.ndarray | None, smooth: np.ndarray, residual: np.ndarray) -> None:
        if self.moved is None:
            self.moved = np.zeros(self.shape, np.float32)
            self.before, self.frames, self.count, self.stride = before, [], 0, 1
        self.moved += np.abs(residual)
        if self.count % self.stride == 0:
            self.frames.append(smooth)
            if len(self.frames) > _GAP_FRAMES:
                self.frames = self.frames[::2]
                self.stride *= 2
        self.count += 1

    def still(self, smooth: np.ndarray) -> _Gap:
        """The gap that just ended at a still frame."""
        gap = _Gap(self.moved.astype(np.float16), is_blend(self.before, self.frames, smooth), self.count)
        self.moved, self.before, self.frames = None, None, []
        return gap


def _swept(moved: np.ndarray) -> float:
    """The fraction of the frame a gap moved (signature cells whose summed change reached ``_MOVED``)."""
    return float((moved >= _MOVED).mean())


def _still_threshold(history: np.ndarray, cfg: KeyframeConfig) -> float:
    """Twice the recent median change (a Ken Burns drift), never below the floor or above the cap."""
    if history.size == 0:
        return cfg.still_threshold
    # the median, by partition (np.median costs more than the rest of a frame's analysis)
    n, k = history.size, history.size // 2
    part = np.partition(history, [k - 1, k] if n > 1 else [0])
    baseline = float(part[k]) if n % 2 else (float(part[k - 1]) + float(part[k])) / 2
    return min(max(cfg.still_threshold, 2.0 * baseline), cfg.still_cap)


class _Changes:
    """The change of each frame from the one before, and the residual map when it was looked at.

    First the plain mean absolute difference of the signatures less the exposure offset; when
    that is not small, the smoothed signatures' difference less exposure gain and camera shift,
    which stands for the change when it explains at least ``_EXPLAINED`` of it (a drifting or
    shaking camera, flicker), else the plain change stands (a cut, a fade step, a cross-fade of
    fine line art, a hand).
    """

    def __init__(self):
        self.prev: np.ndarray | None = None  # uint8 signatures and their mean grey levels
        self.prev_mean = 0.0
        self.prev_smooth: np.ndarray | None = None
        self.cur: np.ndarray | None = None
        self.cur_mean = 0.0
        self.cur_smooth: np.ndarray | None = None
        self.residual: np.ndarray | None = None

    def next(self, sig: np.ndarray, mean: float) -> float:
        """The plain change of signature ``sig`` (mean grey level ``mean``) from the one before."""
        import cv2

        self.prev, self.prev_mean, self.prev_smooth = self.cur, self.cur_mean, self.cur_smooth
        self.cur, self.cur_mean, self.cur_smooth, self.residual = sig, mean, None, None
        if self.prev is None:
            return 0.0
        # sig - prev less the exposure offset (the difference of the means), in one pass
        diff = cv2.addWeighted(sig, 1.0, self.prev, -1.0, self.prev_mean - mean, dtype=cv2.CV_32F)
        return cv2.norm(diff, cv2.NORM_L1) / diff.size

    def smooth(self) -> np.ndarray:
        if self.cur_smooth is None:
            self.cur_smooth = smooth(self.cur)
        return self.cur_smooth

    def before(self) -> np.ndarray | None:
        if self.prev is not None and self.prev_smooth is None:
            self.prev_smooth = smooth(self.prev)
        return self.prev_smooth

    def explain(self, change: float) -> float:
        """The change once exposure and camera shift are taken out (sets ``residual``)."""
        import cv2

        self.residual, raw = residual(self.before(), self.smooth(), _MAX_GAIN, MAX_SHIFT)
        left = float(cv2.norm(self.residual, cv2.NORM_L1)) / self.residual.size
        return left if left <= (1 - _EXPLAINED) * raw else change


def detect_keyframes(video_path: str | Path, cfg: KeyframeConfig) -> KeyframeResult:
    """Decode ``video_path`` once and return one keyframe per page, in order."""
    import av
    import cv2

    cv2.setNumThreads(1)  # tiny images: threads cost more CPU than they save
    with open_video(video_path, cfg.decode_threads) as (container, (stream, has_audio, stream_fps, expected_s, width,
                                                                    height, time_base)):
        reference_fps = reference_frame_rate(video_path, stream_fps) if cfg.reference_frames_only else None
        if reference_fps:
            stream.codec_context.skip_frame = "NONREF"
        fps = reference_fps or stream_fps  # frames a second the detector sees: its lengths count decoded frames
        signature = Signature(width, height, cfg.analysis_width)
        window = max(3, int(round(cfg.baseline_window_s * fps)))
        refresh = max(1, int(round(fps / 5)))  # the adaptive threshold moves slowly: update 5x a second
        threshold = cfg.still_threshold

        tracker = _RunTracker(cfg, fps, signature)
        gaps = _GapTracker((signature.ah, signature.aw))
        measure = _Changes()
        stds: list[float] = []
        changes: list[float] = []
        shot_changes: list[float] = []  # changes since the last cut: the adaptive baseline
        times: list[float] = []
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                sig = signature(luma(frame))
                mean, std = cv2.meanStdDev(sig)
                change = measure.next(sig, float(mean[0, 0]))
                if change >= threshold:  # exposure gain and camera shift may explain it
                    change = measure.explain(change)
                if change > cfg.still_cap:
                    # a cut or a strong transition: the next shot sets its own baseline (a Ken
                    # Burns page after a static intro must not be judged by the intro's stillness)
                    shot_changes.clear()
                else:
                    shot_changes.append(change)
                    if len(shot_changes) > 2 * window:
                        del shot_changes[:-window]
                    if len(shot_changes) < refresh or index % refresh == 0:
                        threshold = _still_threshold(np.asarray(shot_changes[-window:]), cfg)
                still = change < threshold
                gap = None
                if still:
                    if gaps.open:
                        gap = gaps.still(measure.smooth())
                elif measure.prev is not None:
                    if measure.residual is None:
                        measure.explain(change)
                    gaps.moving(measure.before(), measure.smooth(), measure.residual)
                stds.append(float(std[0, 0]))
                changes.append(change)
                times.append(float(frame.time) if frame.time is not None else index / fps)
                tracker.add(index, frame, sig, still, gap, change <= cfg.still_cap)
        except av.error.FFmpegError as exc:
            raise KeyframeError(
                f"video {Path(video_path).name} is corrupt or truncated: decoding failed after "
                f"{index + 1} frames ({exc})"
            ) from exc
        runs = tracker.finish()

        if not times:
            raise KeyframeError(f"no frames could be decoded from {Path(video_path).name}")
        duration = times[-1] + 1.0 / stream_fps
        if expected_s and duration < 0.9 * expected_s - 1.0:
            raise KeyframeError(
                f"video {Path(video_path).name} is truncated: frames stop at {duration:.1f} s "
                f"of {expected_s:.1f} s"
            )
        keyframes = _pages_from_runs(
            runs, np.asarray(stds), np.asarray(changes), np.asarray(times), duration, fps, cfg
        )
    rectified = sum(FLAG_RECTIFIED in k.flags for k in keyframes)
    return KeyframeResult(
        keyframes=keyframes,
        duration_s=duration,
        fps=stream_fps,
        frames_decoded=len(times),
        width=width,
        height=height,
        has_audio=has_audio,
        time_base=time_base,
        stats={"runs": float(len(runs)), "still_fraction": float(sum(r.end - r.start + 1 for r in runs) / len(times)),
               "turns": float(sum(k.boundary == BOUNDARY_TURN for k in keyframes)),
               **({"reference_fps": round(reference_fps, 3)} if reference_fps else {}),
               **({"rectified": float(rectified)} if cfg.rectify else {})},
    )


MIN_ANALYSIS_FPS = 12.0  # the page detector is checked down to 12 decoded frames a second


def reference_frame_rate(video_path: str | Path, fps: float, probe_frames: int = 16) -> float | None:
    """Reference frames a second in ``video_path`` (measured on its first ``probe_frames`` of them), or
    None when decoding only those would not pay or would leave the detector too few: a stream
    without non-reference frames (no B-frames: nothing skipped), or fewer than
    :data:`MIN_ANALYSIS_FPS` (x264 without B-pyramids keeps one frame in four).

    16 frames: about a second of video, and the mini-GOP's steady rate (12.5 fps on all 8 real
    read-aloud samples; 48 frames gave 12.5-12.9, an early scene-cut I-frame counted in) for a
    third of the decoding (48 frames cost ~6% of the keyframe stage on a 40 s video)."""
    import av

    times: list[float] = []
    try:
        with open_video(video_path, 1) as (container, video):
            video.stream.codec_context.skip_frame = "NONREF"
            for frame in container.decode(video.stream):
                if frame.time is not None:
                    times.append(float(frame.time))
                if len(times) >= probe_frames:
                    break
    except (av.error.FFmpegError, KeyframeError):
        return None  # the full decode says what is wrong with the file
    if len(times) < 8 or times[-1] <= times[0]:
        return None
    rate = (len(times) - 1) / (times[-1] - times[0])
    if rate >= 0.9 * fps or rate < MIN_ANALYSIS_FPS:
        return None
    return rate


def _expected_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


def _boundary(before: _Run, between: list[_Run], after: _Run, blank: np.ndarray, cfg: KeyframeConfig) -> str | None:
    """How the page changes between two kept runs (``between``: the debris runs in the gap), or None."""
    if blank[before.end + 1 : after.start].any():
        return BOUNDARY_FADE
    gaps = [r.gap for r in between + [after] if r.gap is not None]
    if not gaps:
        return None
    if all(g.blend for g in gaps):
        # a cut or a cross-fade: the signatures differ across the gap, by more than exposure and a
        # drifting camera explain (a page lying still for long drifts apart from itself)
        if distance(before.end_signature, after.start_signature) < cfg.page_change_threshold:
            return None
        left, share = explained(before.end_signature, after.start_signature)
        if share < _DRIFTED or left >= 0.5 * cfg.page_change_threshold:
            return BOUNDARY_CHANGE
        return None
    moved = np.sum([g.moved.astype(np.float32) for g in gaps], axis=0)
    if _swept(moved) >= cfg.turn_min_area:
        # a sweeping motion that leaves the page exactly as it was (a hand waved over it) turned nothing
        left, _ = explained(before.end_signature, after.start_signature)
        return BOUNDARY_TURN if left >= 0.25 * cfg.page_change_threshold else None
    return None


def _pick(group: list[_Run], fps: float) -> _Run:
    """The page's frame: among its least occluded runs' representatives, the sharpest.

    First the least skin: cells skin-coloured in a run but not in every run of the page (a hand;
    the page's own colours and a wooden table are skin-coloured in all of them). Then the least
    different from the page's consensus (the median signature of those runs, weighted by length:
    a lifted leaf, a shadow) and from its usual exposure.
    """
    if len(group) == 1:
        return group[0]
    skins = [skin_cells(r.best_frame, r.grid, r.best_raw) for r in group]
    if all(s is not None for s in skins):
        everywhere = np.logical_and.reduce(skins)
        excess = [float((s & ~everywhere).mean()) for s in skins]
        floor = min(excess)
        group = [r for r, e in zip(group, excess) if e <= floor + _SKIN_TOLERANCE]
        if len(group) == 1:
            return group[0]
    weights = [max(1, min(8, round((r.end - r.start + 1) / max(1.0, fps / 2)))) for r in group]
    consensus = np.median(np.stack([r.best_signature for r, w in zip(group, weights) for _ in range(w)]), axis=0)
    scores = []
    for run in group:
        res, _ = residual(consensus, run.best_signature, PAIR_GAIN, MAX_SHIFT)
        # what differs (a lifted leaf, a shadow), and half of any exposure difference
        scores.append(float(np.abs(res).mean()) + 0.5 * abs(float(run.best_signature.mean()) - float(consensus.mean())))
    floor = min(scores)
    near = [r for r, s in zip(group, scores) if s <= 1.25 * floor + 0.5]
    return max(near, key=lambda r: r.best_sharpness)


def _pages_from_runs(
    runs: list[_Run],
    stds: np.ndarray,  # (N,)
    changes: np.ndarray,  # (N,) change from the previous frame
    times: np.ndarray,  # (N,)
    duration: float,
    fps: float,
    cfg: KeyframeConfig,
) -> list[Keyframe]:
    min_len = max(1, int(round(cfg.min_page_s * fps)))
    blank = stds < cfg.blank_std
    keep = [r.end - r.start + 1 >= min_len and r.best_frame is not None and not blank[r.start : r.end + 1].all()
            for r in runs]

    # group neighbouring runs into pages; short runs with a representative (a page's last moments
    # after a hand has gone, say) may offer their frame to the page they belong to
    usable = [r.best_frame is not None and not blank[r.start : r.end + 1].all() for r in runs]
    pages: list[list[_Run]] = []
    extras: list[list[_Run]] = []
    boundaries: list[str] = []
    between: list[int] = []  # indices of the debris runs since the last kept run

    def joins(before: _Run | None, debris: list[int], after: _Run | None) -> list[_Run]:
        """The usable debris runs that no boundary separates from ``before`` (or ``after``)."""
        found = []
        for k, i in enumerate(debris):
            if not usable[i]:
                continue
            with_before = before is not None and _boundary(before, [runs[j] for j in debris[:k]], runs[i], blank, cfg) is None
            if with_before or (after is not None and
                               _boundary(runs[i], [runs[j] for j in debris[k + 1:]], after, blank, cfg) is None):
                found.append(runs[i])
        return found

    for i, (run, kept) in enumerate(zip(runs, keep)):
        if not kept:
            between.append(i)
            continue
        if not pages:
            pages.append([run])
            extras.append(joins(None, between, run))
            boundaries.append(BOUNDARY_START)
        else:
            boundary = _boundary(pages[-1][-1], [runs[j] for j in between], run, blank, cfg)
            if boundary is None:
                extras[-1].extend(runs[j] for j in between if usable[j])
                pages[-1].append(run)
            else:
                before = joins(pages[-1][-1], between, None)
                extras[-1].extend(before)
                pages.append([run])
                extras.append([r for r in joins(None, between, run) if r not in before])
                boundaries.append(boundary)
        between = []
    if pages:
        extras[-1].extend(joins(pages[-1][-1], between, None))
    # a "page" between two turns that lies still for less than two minimum pages is the leaf
    # pausing mid-turn (or a page flipped past unread): not a page
    for number in range(len(pages) - 2, 0, -1):
        between_turns = boundaries[number] == BOUNDARY_TURN and boundaries[number + 1] == BOUNDARY_TURN
        if between_turns and sum(r.end - r.start + 1 for r in pages[number]) < 2 * min_len:
            del pages[number], extras[number], boundaries[number + 1]

    def transition_time(a: int, b: int) -> float:
        """When the page turns between frame a (last still of a page) and b (first of the next).

        The turn is the middle of the frames that carry the transition: the blank stretch of a
        fade through black, else the frames whose change is at least half the largest (one
        frame for a cut, the whole ramp for a cross-fade), so slow drift around it is ignored.
        """
        gap = np.arange(a + 1, b + 1)
        blank_gap = gap[stds[gap] < cfg.blank_std]
        if blank_gap.size:
            first, last = blank_gap[0], blank_gap[-1]
        else:
            strong = gap[changes[gap] >= 0.5 * changes[gap].max()]
            first, last = strong[0], strong[-1]
        # frame `first` is the first one changed, so the turn starts half a frame before it
        return float((times[first - 1] + times[last]) / 2.0 + 0.5 / fps)

    keyframes: list[Keyframe] = []
    for number, (group, extra, boundary) in enumerate(zip(pages, extras, boundaries)):
        first, last = group[0], group[-1]
        t_start = 0.0 if number == 0 else transition_time(pages[number - 1][-1].end, first.start)
        t_end = duration if number == len(pages) - 1 else transition_time(last.end, pages[number + 1][0].start)
        pool = sorted(group + extra, key=lambda r: r.start)
        # a page turn may come in pieces (a pause in the leaf's motion): whatever the gaps, no frame
        # within the settling time of a page's turns
        settle = max(1, int(round(_SETTLE_S * fps)))
        lo = pool[0].start + settle if boundary == BOUNDARY_TURN else -1
        hi = pool[-1].end - settle if number + 1 < len(pages) and boundaries[number + 1] == BOUNDARY_TURN else len(times)
        pool = [r for r in pool if lo <= r.best_index <= hi] or pool
        best = _pick(pool, fps)
        image = best.best_frame.to_ndarray(format="rgb24")
        flags = []
        if cfg.rectify:
            flat = rectify_page(image)
            if flat is not None:
                image, flags = flat, [FLAG_RECTIFIED]
        keyframes.append(
            Keyframe(
                t_start=round(t_start, 3),
                t_end=round(t_end, 3),
                frame_time=round(float(times[best.best_index]), 3),
                image=image,
                sharpness=best.best_sharpness,
                boundary=boundary,
                still_s=round(sum(r.end - r.start + 1 for r in group) / fps, 3),
                flags=flags,
                pts=best.best_frame.pts,
            )
        )
    return keyframes
