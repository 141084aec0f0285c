"""Keyframes: exactly one representative frame per story page (or shot) of a video.

Read-aloud videos are mostly still pages joined by hard cuts, cross-fades, fades through black
or a slow Ken Burns zoom/pan. PySceneDetect's detectors score each cut against one global
threshold, and no single threshold gets all of these right: cuts between line-art pages on a
light background score about as low as one step of a cross-fade. This detector works the other
way round. It looks for *still runs* (frames that barely change from the one before) and then
decides which neighbouring runs show different pages:

1. One decoding pass with PyAV (single-threaded by default: cheapest in CPU time). Each frame's
   luma plane is subsampled and area-averaged to a small grey signature (``analysis_width``
   wide); per frame we keep only its standard deviation and the change ``d`` from the frame
   before (mean absolute difference), and signatures only where still runs start and end, so
   memory grows by a few bytes a frame however long the video.
2. A frame is still when ``d`` is under an adaptive threshold: ``still_threshold``, raised to
   twice the median change of the last few seconds of the current shot (a change above the cap
   starts a new shot) so that a slow Ken Burns drift still counts as still, and capped so that
   no transition can.
3. During a still run we keep a bounded set of candidate frames (stride doubles as the run
   grows); when the run ends, the sharpest candidate away from both ends (variance of the
   Laplacian of the full-resolution luma) becomes the run's representative. Memory stays at one
   frame per run plus the current run's candidates.
4. After the pass: runs that are blank (near-uniform, e.g. black) or shorter than ``min_page_s``
   are transition debris. Neighbouring runs are the same page unless their signatures across the
   gap differ by ``page_change_threshold`` or a blank stretch (a fade through black) separates
   them: a fade through black is an editorial page turn even when both sides show the same
   picture. Each page spans from the middle of the transition before it to the middle of the one
   after it, which is what subtitle alignment needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import KeyframeConfig
from pipeline.errors import StageError

log = logging.getLogger(__name__)

BOUNDARY_START = "start"  # the first page
BOUNDARY_CHANGE = "change"  # a cut or cross-fade to a different picture
BOUNDARY_FADE = "fade"  # a fade through black / a blank stretch


class KeyframeError(StageError):
    """The video cannot be decoded into pages (corrupt, truncated, no video stream...)."""


@dataclass
class Keyframe:
    """One page of a video and the frame chosen to show it."""

    t_start: float  # seconds: the page's span, transition midpoints included
    t_end: float
    frame_time: float  # time of the chosen frame
    image: np.ndarray  # RGB uint8, full decoded resolution
    sharpness: float  # variance of the Laplacian of the chosen frame's luma
    boundary: str  # how this page began: start / change / fade
    still_s: float  # seconds of still frames that make up the page


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


@dataclass
class _Run:
    """A maximal stretch of still frames [start, end] (frame indices, inclusive)."""

    start: int
    end: int
    start_signature: np.ndarray | None = None
    end_signature: np.ndarray | None = None
    candidates: list[tuple[int, object]] = field(default_factory=list)  # (index, av.VideoFrame)
    stride: int = 1
    best_index: int = -1
    best_image: np.ndarray | None = None
    best_sharpness: float = -1.0


def _luma(frame) -> np.ndarray:
    """The luma plane of a yuv frame as a (height, width) uint8 view, no conversion."""
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]


def _sharpness(luma: np.ndarray) -> float:
    """Variance of the Laplacian on every other pixel: the same ranking at a quarter of the cost."""
    import cv2

    half = np.ascontiguousarray(luma[::2, ::2])
    _, std = cv2.meanStdDev(cv2.Laplacian(half, cv2.CV_16S))
    return float(std[0, 0] ** 2)


class _Signature:
    """Small grey signature of a frame: centre crop, subsample, then an integer-factor area average.

    An integer factor lets OpenCV's fast area path run (about 30 us a frame at 480p), and the
    4x4 average after the subsampling removes most of the aliasing that would make a slow zoom
    look like change.
    """

    def __init__(self, width: int, height: int, analysis_width: int):
        self.aw = analysis_width
        self.ah = max(8, int(round(analysis_width * height / max(width, 1))))
        self.step = max(1, min(width // (self.aw * 4), height // (self.ah * 4)))
        crop_h = min(height, self.ah * 4 * self.step)
        crop_w = min(width, self.aw * 4 * self.step)
        self.rows = slice((height - crop_h) // 2, (height - crop_h) // 2 + crop_h, self.step)
        self.cols = slice((width - crop_w) // 2, (width - crop_w) // 2 + crop_w, self.step)

    def __call__(self, luma: np.ndarray) -> np.ndarray:
        import cv2

        sampled = np.ascontiguousarray(luma[self.rows, self.cols])
        return cv2.resize(sampled, (self.aw, self.ah), interpolation=cv2.INTER_AREA)


class _RunTracker:
    """Builds still runs while frames stream by, holding only a bounded number of frames."""

    def __init__(self, cfg: KeyframeConfig, fps: float):
        self.cfg = cfg
        self.margin = max(1, int(round(cfg.settle_margin_s * fps)))
        self.min_gap = max(1, int(round(fps / 4)))  # sample candidates at most 4 times a second
        self.runs: list[_Run] = []
        self.current: _Run | None = None

    def add(self, index: int, frame, signature: np.ndarray, still: bool) -> None:
        if not still:
            self._close()
            return
        if self.current is None:
            self.current = _Run(index, index, start_signature=signature, stride=self.min_gap)
        run = self.current
        run.end = index
        run.end_signature = signature
        if (index - run.start) % run.stride == 0:
            run.candidates.append((index, frame))
            if len(run.candidates) > 2 * self.cfg.max_candidates:
                # keep every other candidate and sample half as often from now on
                run.candidates = run.candidates[::2]
                run.stride *= 2

    def _close(self) -> None:
        run, self.current = self.current, None
        if run is None:
            return
        interior = [(i, f) for i, f in run.candidates if run.start + self.margin <= i <= run.end - self.margin]
        if not interior:  # a short run: its middle candidate is the best we have
            interior = [run.candidates[len(run.candidates) // 2]]
        if len(interior) > self.cfg.max_candidates:  # evenly spread, both ends included
            picks = np.linspace(0, len(interior) - 1, self.cfg.max_candidates).round().astype(int)
            interior = [interior[i] for i in picks]
        for index, frame in interior:
            score = _sharpness(_luma(frame))
            if score > run.best_sharpness:
                run.best_sharpness, run.best_index, best_frame = score, index, frame
        run.best_image = best_frame.to_ndarray(format="rgb24")
        run.candidates = []
        self.runs.append(run)

    def finish(self) -> list[_Run]:
        self._close()
        return self.runs


def _still_threshold(history: np.ndarray, cfg: KeyframeConfig) -> float:
    """Twice the recent median change (a Ken Burns drift), never below the floor or above the cap."""
    if history.size == 0:
        return cfg.still_threshold
    baseline = float(np.median(history))
    return min(max(cfg.still_threshold, 2.0 * baseline), cfg.still_cap)


def detect_keyframes(video_path: str | Path, cfg: KeyframeConfig) -> KeyframeResult:
    """Decode ``video_path`` once and return one keyframe per page, in order."""
    import av
    import cv2

    cv2.setNumThreads(1)  # tiny images: threads cost more CPU than they save
    try:
        container = av.open(str(video_path))
    except (av.error.FFmpegError, OSError) as exc:
        raise KeyframeError(f"cannot open video {Path(video_path).name}: {exc}") from exc
    with container:
        if not container.streams.video:
            raise KeyframeError(f"{Path(video_path).name} has no video stream")
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        stream.codec_context.thread_count = cfg.decode_threads
        if cfg.decode_threads != 1:
            stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        expected_s = _expected_duration(container, stream)
        width, height = stream.codec_context.width, stream.codec_context.height
        signature = _Signature(width, height, cfg.analysis_width)
        window = max(3, int(round(cfg.baseline_window_s * fps)))
        refresh = max(1, int(round(fps / 5)))  # the adaptive threshold moves slowly: update 5x a second
        threshold = cfg.still_threshold

        tracker = _RunTracker(cfg, fps)
        stds: list[float] = []
        changes: list[float] = []
        shot_changes: list[float] = []  # changes since the last cut: the adaptive baseline
        times: list[float] = []
        prev = None
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                sig = signature(_luma(frame))
                change = float(cv2.absdiff(sig, prev).mean()) if prev is not None else 0.0
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
                prev = sig
                stds.append(float(cv2.meanStdDev(sig)[1][0, 0]))
                changes.append(change)
                times.append(float(frame.time) if frame.time is not None else index / fps)
                tracker.add(index, frame, sig, change < threshold)
        except av.error.FFmpegError as exc:
            raise KeyframeError(
                f"video {Path(video_path).name} is corrupt or truncated: decoding failed after "
                f"{index + 1} frames ({exc})"
            ) from exc
        runs = tracker.finish()

    if not times:
        raise KeyframeError(f"no frames could be decoded from {Path(video_path).name}")
    duration = times[-1] + 1.0 / fps
    if expected_s and duration < 0.9 * expected_s - 1.0:
        raise KeyframeError(
            f"video {Path(video_path).name} is truncated: frames stop at {duration:.1f} s "
            f"of {expected_s:.1f} s"
        )
    keyframes = _pages_from_runs(
        runs, np.asarray(stds), np.asarray(changes), np.asarray(times), duration, fps, cfg
    )
    return KeyframeResult(
        keyframes=keyframes,
        duration_s=duration,
        fps=fps,
        frames_decoded=len(times),
        width=width,
        height=height,
        has_audio=has_audio,
        stats={"runs": float(len(runs)), "still_fraction": float(sum(r.end - r.start + 1 for r in runs) / len(times))},
    )


def _expected_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return None


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
    kept = [r for r in runs if r.end - r.start + 1 >= min_len and not blank[r.start : r.end + 1].all()]

    # group neighbouring runs into pages
    pages: list[list[_Run]] = []
    boundaries: list[str] = []
    for run in kept:
        if not pages:
            pages.append([run])
            boundaries.append(BOUNDARY_START)
            continue
        last = pages[-1][-1]
        gap = slice(last.end + 1, run.start)
        faded = bool(blank[gap].any())
        distance = float(np.abs(last.end_signature.astype(np.int16) - run.start_signature).mean())
        if faded or distance >= cfg.page_change_threshold:
            pages.append([run])
            boundaries.append(BOUNDARY_FADE if faded else BOUNDARY_CHANGE)
        else:
            pages[-1].append(run)

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
    for number, (group, boundary) in enumerate(zip(pages, boundaries)):
        first, last = group[0], group[-1]
        t_start = 0.0 if number == 0 else transition_time(pages[number - 1][-1].end, first.start)
        t_end = duration if number == len(pages) - 1 else transition_time(last.end, pages[number + 1][0].start)
        best = max(group, key=lambda r: r.best_sharpness)
        keyframes.append(
            Keyframe(
                t_start=round(t_start, 3),
                t_end=round(t_end, 3),
                frame_time=round(float(times[best.best_index]), 3),
                image=best.best_image,
                sharpness=best.best_sharpness,
                boundary=boundary,
                still_s=round(sum(r.end - r.start + 1 for r in group) / fps, 3),
            )
        )
    return keyframes
