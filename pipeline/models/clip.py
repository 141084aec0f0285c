"""CLIP in the clean and align stages: embeddings, zero-shot filters, near-duplicates, scores.

After the model-free clean (blank, blurred, pHash duplicates, intro/outro), :func:`refine_with_clip`
embeds the kept frames in batches and

1. drops frames that zero-shot classification calls a **photo** (a reader on camera, hands holding
   a book, a room) or a **text card** (titles, credits, "subscribe"), counting each by reason;
   classes are prompt ensembles (mean of the prompts' unit embeddings), and a frame goes when its
   class probability (softmax at the model's logit scale over illustration / photo / text card)
   reaches the configured threshold;
2. drops **near-duplicates** whose image embedding has cosine >= ``dedup_threshold`` with the
   previous kept frame (zooms, pans, a pointer or a hand over the same page, which pHash misses),
   except after a deliberate page turn when both frames are narrated, as in the pHash rule
   (:func:`pipeline.frames.clean.keeps_look_alike`);
3. for videos, realigns the narration: sentences to the kept frames by monotonic DTW over the
   time prior and CLIP text-image similarity (:mod:`pipeline.text.clip_align`), setting ``scores.align``;
4. sets ``scores.clip``: the cosine similarity of each frame's image and its text.

Text of a dropped frame moves to the previous kept frame (the next one when none is kept yet), as
in :mod:`pipeline.frames.clean`, so no narration is lost. Videos go through all of this (the
video assemble stage). Books get :func:`clip_scores` only (``scores.clip`` per frame): their
frames are illustrations already paired by the book's own structure, and a picture book may
well illustrate with photographs or lettering, which the photo and text-card filters would drop.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from pipeline.frames.clean import CleanResult, FrameCandidate, FrameKeeper, keeps_look_alike
from pipeline.config import ClipConfig, ModelsConfig
from pipeline.text.subtitles import Cue

log = logging.getLogger(__name__)

FRAME_CLASSES = ("illustration", "photo", "text_card")


class ClipEncoder:
    """Batched, unit-normalised CLIP image and text embeddings from a loaded open_clip model."""

    def __init__(self, loaded, batch_size: int = 32) -> None:
        self.loaded = loaded
        self.batch_size = batch_size

    @property
    def logit_scale(self) -> float:
        return float(self.loaded.model.logit_scale.exp().item())

    def encode_images(self, images: Sequence) -> np.ndarray:
        """(N, D) float32 embeddings of RGB images (uint8 arrays or PIL images).

        On an accelerator the next batch is prepared in a helper thread while the model runs on
        the current one; on the CPU, where the model already keeps every core busy, inline.
        """
        import torch

        batches = [images[i:i + self.batch_size] for i in range(0, len(images), self.batch_size)]
        if not batches:
            return np.zeros((0, self._dim()), np.float32)
        out = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            prepare = self.pixels if self.loaded.device == "cpu" else lambda batch: pool.submit(self.pixels, batch)
            pending = prepare(batches[0])
            for k in range(len(batches)):
                pixels = pending if isinstance(pending, torch.Tensor) else pending.result()  # (B, 3, S, S)
                if k + 1 < len(batches):
                    pending = prepare(batches[k + 1])
                with torch.inference_mode():
                    features = self.loaded.model.encode_image(pixels.to(self.loaded.dtype))
                out.append(_unit(features))
        return np.concatenate(out)

    def pixels(self, batch: Sequence):
        """A batch of images as the model's input, (B, 3, S, S) on its device.

        open_clip's usual eval transform (resize the short side to S, bicubic or bilinear; centre
        crop; normalise) runs as tensor ops on the model's device, so a GPU does not wait for a
        CPU resizing pictures one by one, and a CPU resizes uint8 pixels several times faster than
        PIL (embeddings match open_clip's PIL transform to a cosine of 0.999+). Any other transform
        runs as open_clip gives it.
        """
        import torch

        cfg = self._tensor_preprocess_cfg()
        if cfg is None:
            from PIL import Image

            return torch.stack([
                self.loaded.preprocess(img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img)))
                for img in batch
            ]).to(self.loaded.device)
        size, mode, mean, std = cfg
        on_cpu = self.loaded.device == "cpu"
        out = []
        with torch.inference_mode():
            for img in batch:
                x = torch.from_numpy(_rgb_array(img)).to(self.loaded.device).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8
                h, w = x.shape[-2:]
                short, long = min(h, w), max(h, w)
                new_long = int(size * long / short)  # torchvision's rounding for Resize(int)
                new = (size, new_long) if h <= w else (new_long, size)
                if on_cpu:  # torch resamples uint8 on the CPU as PIL does (within 2 grey levels), several times faster
                    x = torch.nn.functional.interpolate(x, size=new, mode=mode, antialias=True, align_corners=False).float()
                else:
                    x = torch.nn.functional.interpolate(x.float(), size=new, mode=mode, antialias=True, align_corners=False)
                    x = x.round_().clamp_(0, 255)  # PIL resizes to uint8
                top, left = int(round((new[0] - size) / 2.0)), int(round((new[1] - size) / 2.0))
                out.append(x[:, :, top:top + size, left:left + size])
            x = torch.cat(out) / 255.0
            return (x - mean) / std

    def _tensor_preprocess_cfg(self):
        """(size, mode, mean, std) when the model uses open_clip's standard eval transform, else None."""
        cached = getattr(self.loaded, "_tensor_preprocess", False)
        if cached is not False:
            return cached
        import torch

        cfg = getattr(self.loaded.model.visual, "preprocess_cfg", None) or {}
        size = cfg.get("size")
        size = size[0] if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] == size[1] else size
        ok = (
            isinstance(size, int)
            and cfg.get("resize_mode", "shortest") == "shortest"
            and cfg.get("interpolation") in ("bicubic", "bilinear")
            and cfg.get("mode", "RGB") == "RGB"
            and [type(t).__name__ for t in getattr(self.loaded.preprocess, "transforms", [])][:2] == ["Resize", "CenterCrop"]
        )
        result = None
        if ok:
            mean = torch.tensor(cfg["mean"], device=self.loaded.device).view(1, 3, 1, 1)
            std = torch.tensor(cfg["std"], device=self.loaded.device).view(1, 3, 1, 1)
            result = (size, cfg["interpolation"], mean, std)
        self.loaded._tensor_preprocess = result
        return result

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 embeddings of texts (cut at the model's context length)."""
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.loaded.tokenizer(list(texts[start:start + self.batch_size])).to(self.loaded.device)
            with torch.inference_mode():
                out.append(_unit(_encode_tokens(self.loaded.model, tokens)))
        return np.concatenate(out) if out else np.zeros((0, self._dim()), np.float32)

    def _dim(self) -> int:
        return int(self.loaded.model.visual.output_dim)


def _rgb_array(image) -> np.ndarray:
    """An (H, W, 3) uint8 array from an RGB, grey or RGBA array or a PIL image."""
    array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    array = np.ascontiguousarray(array[:, :, :3], dtype=np.uint8)
    return array if array.flags.writeable else array.copy()  # torch.from_numpy wants a writable array


def _unit(features) -> np.ndarray:
    features = features.float()
    return (features / features.norm(dim=-1, keepdim=True).clamp_min(1e-12)).cpu().numpy()


def _encode_tokens(model, tokens):
    """``model.encode_text(tokens)``, run on the padded length actually used.

    Sentences are much shorter than CLIP's 77-token context. With a causal mask and the usual
    end-of-text pooling, positions after the last real token change nothing, so the standard
    open_clip text tower is run on ``tokens[:, :L]`` (L = longest sentence): the same result for
    a fraction of the work. Other text towers go through ``encode_text`` unchanged.
    """
    import open_clip
    import torch
    from open_clip.transformer import text_global_pool

    fast = (
        type(model) is open_clip.CLIP
        and model.text_pool_type == "argmax"
        and model.attn_mask is not None
        and tokens.shape[1] == model.positional_embedding.shape[0]
    )
    if not fast:
        return model.encode_text(tokens)
    length = int((tokens != 0).sum(dim=1).max().item())  # pad id 0; the end-of-text token is the largest id
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])  # (B, L, W)
    x = model.ln_final(x)
    x = text_global_pool(x, tokens, model.text_pool_type)  # (B, W)
    if model.text_projection is None:
        return x
    if isinstance(model.text_projection, torch.nn.Linear):
        return model.text_projection(x)
    return x @ model.text_projection


@dataclass
class FrameClasses:
    """Zero-shot classes of frames: one unit embedding per class (a prompt ensemble)."""

    names: tuple[str, ...]
    embeddings: np.ndarray  # (C, D)
    logit_scale: float

    def probabilities(self, image_embeddings: np.ndarray) -> np.ndarray:
        """(N, C) softmax over the classes of each image."""
        logits = self.logit_scale * (image_embeddings @ self.embeddings.T)
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights / weights.sum(axis=1, keepdims=True)


def frame_classes(encoder: ClipEncoder, cfg: ClipConfig) -> FrameClasses:
    """The illustration / photo / text-card classes from the configured prompts (kept with the model)."""
    prompts = (cfg.illustration_prompts, cfg.photo_prompts, cfg.text_card_prompts)
    cache = encoder.loaded.__dict__.setdefault("_frame_classes", {})  # lives and dies with the loaded model
    classes = cache.get(prompts)
    if classes is None:
        rows = []
        for group in prompts:
            mean = encoder.encode_texts(list(group)).mean(axis=0)
            rows.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
        classes = FrameClasses(FRAME_CLASSES, np.stack(rows).astype(np.float32), encoder.logit_scale)
        cache[prompts] = classes
    return classes


def encoder_for(models: ModelsConfig) -> ClipEncoder:
    from pipeline.models.loading import get_clip

    return ClipEncoder(get_clip(models), models.clip.batch_size)


def refine_with_clip(
    cleaned: CleanResult,
    models: ModelsConfig,
    sentences: Sequence[Cue] | None = None,
    encoder: ClipEncoder | None = None,
    classes: FrameClasses | None = None,
) -> CleanResult:
    """Filter, de-duplicate, (with ``sentences``) realign and score the kept frames with CLIP.

    ``sentences`` are the narration in spoken order with times (videos); books pass None and
    keep their pairing. ``encoder`` and ``classes`` default to the configured model and prompts.
    """
    cfg = models.clip
    frames = list(cleaned.kept)
    if not frames:
        return cleaned
    encoder = encoder or encoder_for(models)
    images = encoder.encode_images([f.image for f in frames])  # (N, D)
    probabilities = None
    if cfg.filter_photos or cfg.filter_text_cards:
        classes = classes or frame_classes(encoder, cfg)
        probabilities = classes.probabilities(images)  # (N, C)
        photo, card = classes.names.index("photo"), classes.names.index("text_card")

    keeper = FrameKeeper(cleaned.dropped)
    kept = keeper.kept
    kept_rows: list[int] = []
    for i, frame in enumerate(frames):
        reason = None
        if probabilities is not None:
            if cfg.filter_photos and probabilities[i, photo] >= cfg.photo_threshold:
                reason = "photo"
            elif cfg.filter_text_cards and probabilities[i, card] >= cfg.text_card_threshold:
                reason = "text_card"
        if reason is None and cfg.dedup and kept and float(images[i] @ images[kept_rows[-1]]) >= cfg.dedup_threshold:
            if not keeps_look_alike(frame, kept[-1]):
                reason = "clip_duplicate"
        if reason is not None:
            keeper.drop(frame, reason)
            continue
        keeper.keep(frame)
        kept_rows.append(i)
    images = images[kept_rows]

    timed = all(f.t_start is not None and f.t_end is not None for f in kept)
    known: dict[str, np.ndarray] = {}  # text -> embedding already computed
    if kept and sentences and cfg.align and timed:
        sentence_embeddings = encoder.encode_texts([s.text for s in sentences])
        known = {s.text.strip(): e for s, e in zip(sentences, sentence_embeddings)}
        _realign(kept, sentences, sentence_embeddings @ images.T, encoder.logit_scale, cfg)
    _set_clip_scores(kept, images, encoder, known)
    return keeper.result("CLIP")


def _realign(frames: list[FrameCandidate], sentences: Sequence[Cue], similarity: np.ndarray, logit_scale: float,
             cfg: ClipConfig) -> None:
    from pipeline.text.clip_align import align_sentences

    spans = [(f.t_start, f.t_end) for f in frames]
    aligned = align_sentences(sentences, spans, similarity, logit_scale, cfg.align_weight, cfg.align_time_scale_s)
    moved = 0
    for frame, text in zip(frames, aligned):
        moved += frame.text != text.text
        frame.text = text.text
        frame.align_score = text.score
        frame.text_assignment = text.assignment
        frame.flags = [f for f in frame.flags if f != "no_speech"] + list(text.flags)
    if moved:
        log.debug("CLIP alignment changed the text of %d of %d frame(s)", moved, len(frames))


def _set_clip_scores(frames: list[FrameCandidate], images: np.ndarray, encoder: ClipEncoder,
                     known: dict[str, np.ndarray]) -> None:
    """scores.clip of every narrated frame; a frame holding one sentence reuses that sentence's embedding."""
    missing = sorted({f.text for f in frames if f.text and f.text not in known})
    known = {**known, **dict(zip(missing, encoder.encode_texts(missing)))} if missing else known
    for frame, image in zip(frames, images):
        if frame.text:
            frame.clip_score = float(known[frame.text] @ image)


def clip_scores(images: Sequence, texts: Sequence[str | None], models: ModelsConfig) -> list[float | None]:
    """Cosine similarity of each RGB image with its text (None where the text is empty)."""
    if len(images) != len(texts):
        raise ValueError(f"{len(images)} images but {len(texts)} texts")
    encoder = encoder_for(models)
    embeddings = encoder.encode_images(list(images))
    rows = [i for i, t in enumerate(texts) if t]
    scores: list[float | None] = [None] * len(images)
    if rows:
        text_embeddings = encoder.encode_texts([texts[i] for i in rows])
        for k, i in enumerate(rows):
            scores[i] = float(text_embeddings[k] @ embeddings[i])
    return scores
