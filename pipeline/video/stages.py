"""The video path after fetching: keyframes, text, then one story (align, clean, encode).

Each stage persists its result inside the source's work directory, written atomically with the
JSON index last, so a killed run resumes at the first stage whose index is missing:

    work/{source_id}/keyframes/keyframes.json + NNN.png   (run_keyframe_stage)
    work/{source_id}/text.json                            (run_text_stage)
    work/{source_id}/story.json + frames/NNN.jpg          (assemble_video_story)
"""

from __future__ import annotations

import io
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from pipeline import __version__
from pipeline.config import IngestConfig, ShardConfig
from pipeline.records import FetchedMedia, Frame, SourceInfo, Story
from pipeline.storage import atomic_write_bytes, atomic_write_json, read_json, reset_dir

log = logging.getLogger(__name__)

KEYFRAMES_DIR = "keyframes"
KEYFRAMES_INDEX = "keyframes.json"
TEXT_INDEX = "text.json"
STORY_FILE = "story.json"
FRAMES_DIR = "frames"


class NoTextError(Exception):
    """The video has neither subtitles nor a transcript, and the config says to skip such stories."""


class NoNarrationError(Exception):
    """The video has no subtitles and no audio track: there is no narration to take text from."""


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


def run_keyframe_stage(media: FetchedMedia, work_dir: Path, cfg: IngestConfig) -> list[StoredKeyframe]:
    """Decode the video once and store one lossless keyframe per page (reused when present)."""
    from PIL import Image

    from pipeline.video.keyframes import detect_keyframes

    out_dir = Path(work_dir) / KEYFRAMES_DIR
    index = out_dir / KEYFRAMES_INDEX
    if index.exists():
        return [StoredKeyframe(**k) for k in read_json(index)["keyframes"]]
    reset_dir(out_dir)
    result = detect_keyframes(media.video_path, cfg.keyframes)
    stored = []
    for i, key in enumerate(result.keyframes):
        buffer = io.BytesIO()
        Image.fromarray(key.image).save(buffer, format="PNG", compress_level=1)
        name = f"{i:03d}.png"
        atomic_write_bytes(out_dir / name, buffer.getvalue())
        stored.append(
            StoredKeyframe(name, key.t_start, key.t_end, key.frame_time, key.sharpness, key.boundary, key.still_s)
        )
    atomic_write_json(
        index,
        {
            "keyframes": [asdict(k) for k in stored],
            "duration_s": result.duration_s,
            "fps": result.fps,
            "frames_decoded": result.frames_decoded,
            "has_audio": result.has_audio,
            "stats": result.stats,
        },
    )
    log.info("%s: %d pages from %d frames", media.source_id, len(stored), result.frames_decoded)
    return stored


def run_text_stage(media: FetchedMedia, work_dir: Path, cfg: IngestConfig):
    """Subtitles or ASR as timed sentences; stored as text.json and reused when present.

    A stored transcript is reused only if it was made with the same ASR settings (none, when
    ASR is off), so turning ASR on or changing its model redoes the text of unfinished sources.
    """
    from pipeline.text.transcript import Transcript, build_text_sources, extract_text

    index = Path(work_dir) / TEXT_INDEX
    asr = cfg.models.output_settings().get("asr")  # None without ASR
    if index.exists():
        stored = read_json(index)
        if stored.get("asr") == asr:
            return Transcript.from_dict(stored)
    transcript = extract_text(media, build_text_sources(cfg.text, cfg.fetch, cfg.models))
    data = transcript.to_dict()
    if asr is not None:
        data["asr"] = asr
    atomic_write_json(index, data)
    return transcript


def encode_frame(image: np.ndarray, cfg: ShardConfig) -> tuple[bytes, int, int]:
    """RGB array -> JPEG bytes with the long side at most ``image_max_side`` (deterministic)."""
    from PIL import Image

    picture = Image.fromarray(image)
    scale = cfg.image_max_side / max(picture.size)
    if scale < 1:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=cfg.jpeg_quality, optimize=False)
    return buffer.getvalue(), picture.width, picture.height


def video_source_info(media: FetchedMedia, text_origin: str, duration_s: float | None, has_audio: bool) -> SourceInfo:
    info = media.info
    return SourceInfo(
        kind="video",
        url=info.get("url"),
        title=info.get("title"),
        creator=info.get("creator"),
        license=info.get("license"),
        language=info.get("language"),
        duration_s=info.get("duration_s") or duration_s,
        extra={"source_id": media.source_id, "text_origin": text_origin, "has_audio": has_audio},
    )


def assemble_video_story(
    media: FetchedMedia, work_dir: Path, cfg: IngestConfig, keyframes: list[StoredKeyframe], transcript
) -> tuple[Story, dict[str, int]]:
    """Align text to keyframes, clean, encode the frames and write story.json + frames/.

    With CLIP enabled, the model-free clean is followed by CLIP's filters, near-duplicates and
    sentence realignment (:func:`pipeline.models.clip.refine_with_clip`); with a captioner, every
    kept frame gets a caption. With both off the story is exactly the model-free one.
    """
    from PIL import Image

    from pipeline.text.align import align_by_time
    from pipeline.frames.clean import FrameCandidate, clean_frames

    work_dir = Path(work_dir)
    video_index = read_json(work_dir / KEYFRAMES_DIR / KEYFRAMES_INDEX)
    if not transcript.segments:
        if not video_index.get("has_audio", True):
            raise NoNarrationError("the video has no audio track and no subtitles: there is no narration to take text from")
        if cfg.text.on_missing == "skip":
            raise NoTextError("no subtitles and no transcript for this video (text.on_missing = skip)")
    spans = [(k.t_start, k.t_end) for k in keyframes]
    texts = align_by_time(transcript.segments, spans)
    candidates = []
    for key, text in zip(keyframes, texts):
        with Image.open(work_dir / KEYFRAMES_DIR / key.file) as picture:
            image = np.asarray(picture.convert("RGB"))
        flags = list(text.flags)
        if transcript.origin == "none":
            flags.append("no_text_source")
        candidates.append(
            FrameCandidate(image, key.t_start, key.t_end, text.text, text.score, flags, key.boundary)
        )
    cleaned = clean_frames(candidates, cfg.clean)
    if cfg.models.clip.enabled and cleaned.kept:
        from pipeline.models.clip import refine_with_clip

        cleaned = refine_with_clip(cleaned, cfg.models, transcript.segments)
    if cfg.models.captions.enabled and cleaned.kept:
        from pipeline.models.captions import caption_images

        for frame, caption in zip(cleaned.kept, caption_images([f.image for f in cleaned.kept], cfg.models)):
            frame.caption = caption

    frames_dir = reset_dir(work_dir / FRAMES_DIR)
    frames = []
    for i, frame in enumerate(cleaned.kept):
        data, width, height = encode_frame(frame.image, cfg.shards)
        atomic_write_bytes(frames_dir / f"{i:03d}.jpg", data)
        frames.append(
            Frame(
                index=i,
                image=f"{i:03d}.jpg",
                width=width,
                height=height,
                t_start=frame.t_start,
                t_end=frame.t_end,
                text=frame.text,
                caption=frame.caption,
                scores={
                    "align": None if frame.align_score is None else round(frame.align_score, 4),
                    "clip": None if frame.clip_score is None else round(frame.clip_score, 4),
                },
                flags=sorted(set(frame.flags)),
            )
        )
    duration = video_index.get("duration_s")
    source = video_source_info(media, transcript.origin, duration, bool(video_index.get("has_audio", True)))
    if transcript.origin.startswith("asr:"):  # the language Whisper heard (or was told)
        source.extra["asr_language"] = transcript.language
        source.language = source.language or transcript.language
    story = Story(
        story_id=media.source_id,
        source=source,
        frames=frames,
        pipeline={"version": __version__, "config_hash": cfg.hash()},
    )
    atomic_write_bytes(work_dir / STORY_FILE, story.to_json().encode("utf-8"))
    return story, cleaned.dropped


def clear_stage_outputs(work_dir: Path) -> None:
    """Forget every stage output of a source (used when its inputs or config changed)."""
    for name in (KEYFRAMES_DIR, FRAMES_DIR):
        shutil.rmtree(Path(work_dir) / name, ignore_errors=True)
    for name in (TEXT_INDEX, STORY_FILE):
        (Path(work_dir) / name).unlink(missing_ok=True)
