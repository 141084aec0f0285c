"""The video stages: fetch -> keyframes -> text -> assemble (align, clean, encode) into one story.

:data:`VIDEO_STAGES` declares what each stage reads and writes; the work directory owner
(:class:`pipeline.workdir.SourceWork`) decides, by the one reuse rule, whether a stored output is
still good. What each stage keeps in the source's work directory:

    fetch.json + video.* (+ subtitles, info.json)   fetch      (:mod:`pipeline.video.fetch`; store/ for an s3:// video)
    keyframes/keyframes.json + NNN.rgbz             keyframes  (lossless raw + zstd, one per page)
    text.json                                       text       (timed sentences, with word timings when the subtitles have them)
    clean.json, frames/NNN.jpg, story.json          assemble   (the finished story, story.json last)

Three layers, each for its callers:

- the *source* functions :func:`fetch`, :func:`keyframes`, :func:`text`, :func:`assemble` take a
  :class:`~pipeline.workdir.SourceRun` (the flow calls them through ``SourceRun.step``), read what
  earlier stages handed on, and fill in the source's row (title, frames, drops, notes);
- the *work* functions :func:`fetch_media`, :func:`extract_keyframes`, :func:`transcribe`,
  :func:`assemble_story` run one stage through the owner (reuse or compute);
- the *compute* functions (:func:`compute_keyframes`, :func:`compute_text`, :func:`compute_story`)
  do the work and write the outputs; :func:`compute_keyframes` is picklable, so it can run in a
  worker process.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline import __version__
from pipeline.config import IngestConfig, KeyframeConfig, ModelsConfig
from pipeline.errors import StageError
from pipeline.frames.encode import RAW_FRAME_SUFFIX, decode_raw, encode_frame, encode_raw
from pipeline.output.contract import (FRAMES_DIR, STORY_FILE, Frame, SourceInfo, Story, image_member, read_story,
                                      write_finished_story)
from pipeline.records import FetchedMedia
from pipeline.sources import SourceDefaults, SourceItem, check_policy
from pipeline.storage import atomic_write_bytes, atomic_write_json, read_json, reset_dir
from pipeline.text.transcript import TextSourceError, Transcript
from pipeline.video.fetch import FETCH_RECORD, STORE_DIR, FetchError, apply_overrides, fetch_local, fetch_video, read_fetched
from pipeline.workdir import SourceRun, SourceWork, Stage, run_inline

log = logging.getLogger(__name__)

KEYFRAMES_DIR = "keyframes"
KEYFRAMES_INDEX = "keyframes.json"
TEXT_INDEX = "text.json"
CLEAN_INDEX = "clean.json"


class NarrationError(StageError):
    """A video without narration to take text from: no subtitles and no audio track (failed), or no
    text at all while ``text.on_missing`` is ``skip`` (skipped)."""


# --------------------------------------------------------------------------- declarations


def _subtitle_choice(cfg: IngestConfig) -> dict[str, Any]:
    f = cfg.fetch
    return {"subtitle_languages": list(f.subtitle_languages), "prefer_manual_subtitles": f.prefer_manual_subtitles,
            "allow_auto_subtitles": f.allow_auto_subtitles}


def _fetch_settings(cfg: IngestConfig, item: SourceItem) -> dict[str, Any]:
    # what decides which files are downloaded; retries and timeouts do not change them
    return {"input": item.identity(), "language": item.language, "subtitles": _subtitle_choice(cfg),
            "max_height": cfg.fetch.max_height, "max_filesize_mb": cfg.fetch.max_filesize_mb}


def _keyframe_settings(cfg: IngestConfig, item: SourceItem) -> dict[str, Any]:
    settings = cfg.keyframes.output_settings()  # in pages mode: no shot field, the key it always had
    settings.pop("decode_threads")  # how fast, not what
    if cfg.keyframes.mode != "pages":  # which detector `auto` resolves to here: TransNetV2 if installed
        from pipeline.video.shots import resolve_shot_detector

        settings["shot_detector"] = resolve_shot_detector(cfg.keyframes.shot_detector)
    return settings


def _text_settings(cfg: IngestConfig, item: SourceItem) -> dict[str, Any]:
    # on_missing only decides what happens to an empty transcript, after the stage
    return {"source": cfg.text.source, "split_sentences": cfg.text.split_sentences, "subtitles": _subtitle_choice(cfg),
            "asr": cfg.models.output_settings().get("asr"), "language": item.language}


def _assemble_settings(cfg: IngestConfig, item: SourceItem) -> dict[str, Any]:
    models = cfg.models.output_settings()
    return {"clean": asdict(cfg.clean), "image_max_side": cfg.shards.image_max_side,
            "jpeg_quality": cfg.shards.jpeg_quality, "clip": models.get("clip"), "captions": models.get("captions"),
            "source": item.overrides()}


FETCH = Stage("fetch", 1, _fetch_settings, outputs=(FETCH_RECORD, "video.*", STORE_DIR))
# 3: each keyframe's pts and the stream's time base (found again exactly by a manifest rebuild)
# 4: keyframes stored raw + zstd (pipeline.frames.encode.encode_raw), not PNG: 15x cheaper to write
# 5: only reference frames decoded by default (keyframes.reference_frames_only)
# 6: the reference rate measured on 16 reference frames, not 48 (the detector's lengths follow it)
KEYFRAMES = Stage("keyframes", 6, _keyframe_settings, outputs=(KEYFRAMES_DIR,), after=("fetch",))
TEXT = Stage("text", 2, _text_settings, outputs=(TEXT_INDEX,), after=("fetch",))
ASSEMBLE = Stage("assemble", 2, _assemble_settings, outputs=(CLEAN_INDEX, FRAMES_DIR, STORY_FILE),
                 after=("keyframes", "text"))
VIDEO_STAGES = (FETCH, KEYFRAMES, TEXT, ASSEMBLE)


def video_work(directory: Path, item: SourceItem, cfg: IngestConfig, defaults: SourceDefaults | None = None) -> SourceWork:
    """The work directory owner of a video source."""
    return SourceWork(directory, VIDEO_STAGES, cfg, item, (defaults or SourceDefaults()).policy())


# --------------------------------------------------------------------------- fetch


def fetch(run: SourceRun, cfg: IngestConfig, archive: Path | None = None,
          defaults: SourceDefaults | None = None) -> FetchedMedia:
    """The fetch stage of a source: the media, with the row's title, licence and language."""
    media = fetch_media(run.work, run.item, cfg, archive, defaults)
    info = media.info
    run.result.title = info.get("title") or run.item.title
    run.result.license = info.get("license") or run.item.license
    run.result.language = info.get("language") or run.item.language
    return media


def fetch_media(work: SourceWork, item: SourceItem, cfg: IngestConfig, archive: Path | None = None,
                defaults: SourceDefaults | None = None) -> FetchedMedia:
    """Download (or take in place) the video and its subtitles, or reuse them; then today's policy.

    The sources file's overrides are laid over the stored metadata, and its licence and duration
    policy is checked again, every time: both may have changed since the download.
    """
    defaults = defaults or SourceDefaults()
    if item.path:
        compute = lambda: fetch_local(item, work.dir, defaults)  # noqa: E731
    else:
        compute = lambda: fetch_video(item, work.dir, cfg.fetch, archive, defaults)  # noqa: E731
    media = apply_overrides(work.run("fetch", compute, lambda: read_fetched(work.dir)), item)
    reported = {"license": media.info.get("license_reported"), "duration": media.info.get("duration_s")}
    reason = check_policy(item, reported, defaults)
    if reason:
        raise FetchError(reason, skipped=True, url=item.url)
    return media


# --------------------------------------------------------------------------- keyframes


@dataclass
class StoredKeyframe:
    """A keyframe as persisted by the keyframe stage (the image is a PNG next to the index)."""

    file: str
    t_start: float
    t_end: float
    frame_time: float
    sharpness: float
    boundary: str
    still_s: float
    flags: list[str] = field(default_factory=list)  # "rectified"
    pts: int | None = None  # the chosen frame's presentation timestamp (stream time base): found again exactly


@dataclass
class KeyframeSet:
    """What the keyframe stage hands on: the pages, and what decoding learnt about the video."""

    keyframes: list[StoredKeyframe]
    duration_s: float | None
    fps: float | None
    frames_decoded: int
    has_audio: bool
    stats: dict[str, float]
    # keyframes.mode shots or auto: what made the keyframes (pipeline.video.shots.ModeChoice.to_dict:
    # mode pages|shots, requested, detector, still_fraction); None in pages mode (left out of the index)
    mode: dict[str, Any] | None = None
    time_base: str | None = None  # the video stream's time base ("1/12800"): what the keyframes' pts count in

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["keyframes"] = [asdict(k) for k in self.keyframes]
        if self.mode is None:
            data.pop("mode")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "KeyframeSet":
        return cls(keyframes=[StoredKeyframe(**k) for k in data["keyframes"]], duration_s=data.get("duration_s"),
                   fps=data.get("fps"), frames_decoded=int(data.get("frames_decoded", 0)),
                   has_audio=bool(data.get("has_audio", True)), stats=dict(data.get("stats") or {}),
                   mode=data.get("mode"), time_base=data.get("time_base"))


def keyframes(run: SourceRun, cfg: IngestConfig, run_in: Callable[..., Any] = run_inline) -> KeyframeSet:
    """The keyframe stage of a source (decoding runs through ``run_in``: a worker process in a flow)."""
    return extract_keyframes(run.work, run.outputs["fetch"], cfg, run_in)


def extract_keyframes(work: SourceWork, media: FetchedMedia, cfg: IngestConfig,
                      run_in: Callable[..., Any] = run_inline) -> KeyframeSet:
    return work.run("keyframes",
                    lambda: run_in(compute_keyframes, media.video_path, work.dir, cfg.keyframes, cfg.models),
                    lambda: load_keyframes(work.dir))


def compute_keyframes(video_path: str, work_dir: Path, cfg: KeyframeConfig,
                      models: ModelsConfig | None = None) -> KeyframeSet:
    """Decode the video and store one lossless keyframe per page (or shot), the index last.

    ``keyframes.mode``: ``pages`` (:mod:`pipeline.video.keyframes`), ``shots``
    (:mod:`pipeline.video.shots`; TransNetV2 runs on ``models.device``), or ``auto``, decided per
    video; outside pages mode the index records the choice (``mode``).
    """
    out_dir = reset_dir(Path(work_dir) / KEYFRAMES_DIR)
    choice = None
    if cfg.mode == "pages":
        from pipeline.video.keyframes import detect_keyframes

        result = detect_keyframes(video_path, cfg)
    else:
        from pipeline.video.shots import detect_with_mode

        result, made = detect_with_mode(video_path, cfg, models)
        choice = made.to_dict()
    stored = []
    for i, key in enumerate(result.keyframes):
        name = f"{i:03d}{RAW_FRAME_SUFFIX}"
        atomic_write_bytes(out_dir / name, encode_raw(key.image))
        stored.append(StoredKeyframe(name, key.t_start, key.t_end, key.frame_time, key.sharpness, key.boundary,
                                     key.still_s, list(key.flags), key.pts))
    found = KeyframeSet(stored, result.duration_s, result.fps, result.frames_decoded, result.has_audio, result.stats,
                        choice, result.time_base)
    atomic_write_json(out_dir / KEYFRAMES_INDEX, found.to_dict())
    log.info("%s: %d %s from %d frames", Path(work_dir).name, len(stored),
             "shots" if choice and choice["mode"] == "shots" else "pages", result.frames_decoded)
    return found


def load_keyframes(work_dir: Path) -> KeyframeSet:
    found = KeyframeSet.from_dict(read_json(Path(work_dir) / KEYFRAMES_DIR / KEYFRAMES_INDEX))
    for key in found.keyframes:
        if not (Path(work_dir) / KEYFRAMES_DIR / key.file).is_file():
            raise FileNotFoundError(f"keyframe {key.file} is gone")
    return found


def read_keyframe(work_dir: Path, key: StoredKeyframe) -> np.ndarray:
    """The RGB pixels of one stored keyframe."""
    return decode_raw((Path(work_dir) / KEYFRAMES_DIR / key.file).read_bytes())


# --------------------------------------------------------------------------- text


def text(run: SourceRun, cfg: IngestConfig) -> Transcript:
    """The text stage of a source: its narration as timed sentences, and whether it has any."""
    transcript = transcribe(run.work, run.outputs["fetch"], cfg)
    if not transcript.segments:
        if not run.outputs["keyframes"].has_audio:
            raise NarrationError("the video has no audio track and no subtitles: there is no narration to take text from")
        if cfg.text.on_missing == "skip":
            raise NarrationError("no subtitles and no transcript for this video (text.on_missing = skip)", skipped=True)
    return transcript


def transcribe(work: SourceWork, media: FetchedMedia, cfg: IngestConfig) -> Transcript:
    return work.run("text", lambda: compute_text(media, work.dir, cfg),
                    lambda: Transcript.from_dict(read_json(Path(work.dir) / TEXT_INDEX)))


def compute_text(media: FetchedMedia, work_dir: Path, cfg: IngestConfig) -> Transcript:
    """Subtitles or ASR as timed sentences (:mod:`pipeline.text.narration`), stored as text.json."""
    from pipeline.text.narration import build_text_sources
    from pipeline.text.subtitles import SubtitleError
    from pipeline.text.transcript import extract_text

    try:
        transcript = extract_text(media, build_text_sources(cfg.text, cfg.fetch, cfg.models))
    except SubtitleError as exc:
        raise TextSourceError(f"subtitles unusable: {exc}") from exc
    data = transcript.to_dict()
    asr = cfg.models.output_settings().get("asr")
    if asr is not None:  # provenance: which model and settings made the text
        data["asr"] = asr
    atomic_write_json(Path(work_dir) / TEXT_INDEX, data)
    return transcript


# --------------------------------------------------------------------------- assemble


def assemble(run: SourceRun, cfg: IngestConfig) -> Story:
    """The assemble stage of a source: its story, and the row's counts and notes."""
    transcript: Transcript = run.outputs["text"]
    story, dropped = assemble_story(run.work, run.item, cfg, run.outputs["fetch"], run.outputs["keyframes"], transcript)
    run.result.story_id = story.story_id
    run.result.frames = len(story.frames)
    run.result.dropped = dropped
    found: KeyframeSet = run.outputs["keyframes"]
    run.result.stats = {"decoded_frames": found.frames_decoded, "keyframes": len(found.keyframes),
                        "sentences": len(transcript.segments)}
    if transcript.origin == "none":  # kept, but say why every text is empty: a note, not a failure
        run.note("no subtitles found: frames kept with empty texts (flag no_text_source)")
    elif not run.outputs["keyframes"].has_audio:
        run.note("the video has no audio track; texts come from its subtitles")
    return story


def assemble_story(work: SourceWork, item: SourceItem, cfg: IngestConfig, media: FetchedMedia, found: KeyframeSet,
                   transcript: Transcript) -> tuple[Story, dict[str, int]]:
    def load() -> tuple[Story, dict[str, int]]:
        return read_story(work.dir), dict(read_json(Path(work.dir) / CLEAN_INDEX)["dropped"])

    return work.run("assemble", lambda: compute_story(media, work.dir, cfg, found, transcript), load)


def compute_story(media: FetchedMedia, work_dir: Path, cfg: IngestConfig, found: KeyframeSet,
                  transcript: Transcript) -> tuple[Story, dict[str, int]]:
    """Align text to keyframes, clean, encode the frames and write the finished story.

    With CLIP enabled, the model-free clean is followed by CLIP's filters, near-duplicates and
    sentence realignment (:func:`pipeline.models.clip.refine_with_clip`); with a captioner, every
    kept frame gets a caption. With both off the story is exactly the model-free one.
    """
    import cv2

    from pipeline.frames.clean import FrameCandidate, clean_frames
    from pipeline.text.align import align_by_time

    cv2.setNumThreads(1)  # a few frame-sized resizes: OpenCV's thread pool doubles their CPU time
    work_dir = Path(work_dir)
    texts = align_by_time(transcript.segments, [(k.t_start, k.t_end) for k in found.keyframes])
    candidates = []
    for key, aligned in zip(found.keyframes, texts):
        image = read_keyframe(work_dir, key)
        flags = list(aligned.flags) + list(key.flags) + (["no_text_source"] if transcript.origin == "none" else [])
        candidates.append(FrameCandidate(image, key.t_start, key.t_end, aligned.text, aligned.score, flags, key.boundary,
                                         text_assignment=aligned.assignment, t_frame=key.frame_time, pts=key.pts))
    cleaned = clean_frames(candidates, cfg.clean)
    if cfg.models.clip.enabled and cleaned.kept:
        from pipeline.models.clip import refine_with_clip

        cleaned = refine_with_clip(cleaned, cfg.models, transcript.segments)
    if cfg.models.captions.enabled and cleaned.kept:
        from pipeline.models.captions import caption_images

        for frame, caption in zip(cleaned.kept, caption_images([f.image for f in cleaned.kept], cfg.models)):
            frame.caption = caption

    frames, media_files = [], {}
    for i, frame in enumerate(cleaned.kept):
        data, width, height = encode_frame(frame.image, cfg.shards)
        media_files[image_member(i)] = data
        frames.append(Frame(
            index=i, image=image_member(i), width=width, height=height, t_start=frame.t_start, t_end=frame.t_end,
            text=frame.text, caption=frame.caption,
            scores={"align": None if frame.align_score is None else round(frame.align_score, 4),
                    "clip": None if frame.clip_score is None else round(frame.clip_score, 4)},
            flags=sorted(set(frame.flags)), text_assignment=frame.text_assignment, t_frame=frame.t_frame, pts=frame.pts,
        ))
    story = Story(story_id=media.source_id, source=video_source_info(media, transcript, found), frames=frames,
                  pipeline={"version": __version__, "config_hash": cfg.hash()})
    atomic_write_json(work_dir / CLEAN_INDEX, {"dropped": cleaned.dropped})
    write_finished_story(work_dir, story, media_files)
    return story, cleaned.dropped


def video_source_info(media: FetchedMedia, transcript: Transcript, found: KeyframeSet) -> SourceInfo:
    info = media.info
    source = SourceInfo(
        kind="video", url=info.get("url"), title=info.get("title"), creator=info.get("creator"),
        license=info.get("license"), language=info.get("language"), duration_s=info.get("duration_s") or found.duration_s,
        extra={"source_id": media.source_id, "text_origin": transcript.origin, "has_audio": found.has_audio,
               # what a shareable manifest needs to find the very same file and frames again
               "video_id": info.get("id"), "extractor": info.get("extractor"),
               "source_sha256": info.get("sha256"), "time_base": found.time_base},
    )
    if transcript.origin.startswith("asr:"):  # the language Whisper heard (or was told)
        source.extra["asr_language"] = transcript.language
        source.language = source.language or transcript.language
    if found.mode:  # keyframes.mode shots or auto: what made the frames (absent in pages mode)
        source.extra["keyframe_mode"] = found.mode["mode"]
        if found.mode.get("detector"):
            source.extra["shot_detector"] = found.mode["detector"]
    return source

