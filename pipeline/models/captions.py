"""Visual captions: a short description of each frame by a transformers image-to-text model.

Any model that ``AutoModelForImageTextToText`` loads and that captions from pixels alone works
(BLIP, GIT, VisionEncoderDecoder such as ViT-GPT2). Decoding is greedy unless ``num_beams`` > 1,
so a frame always gets the same caption. Videos call :func:`caption_images` on their kept
keyframes in the assemble stage; books call it on their illustrations:

    from pipeline.models.captions import caption_images
    captions = caption_images(rgb_images, cfg.models)   # [str] or [None] * n when captions are off
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from pipeline.config import CaptionConfig, ModelsConfig

log = logging.getLogger(__name__)


class Captioner:
    """Batched captions from a loaded image-to-text model."""

    def __init__(self, loaded, cfg: CaptionConfig) -> None:
        self.loaded = loaded
        self.cfg = cfg

    def caption(self, images: Sequence) -> list[str]:
        """One caption per RGB image (uint8 array or PIL image), in order."""
        import torch
        from PIL import Image

        captions: list[str] = []
        for start in range(0, len(images), self.cfg.batch_size):
            batch = [img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img)) for img in images[start:start + self.cfg.batch_size]]
            batch = [img.convert("RGB") for img in batch]
            pixels = self.loaded.image_processor(images=batch, return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                ids = self.loaded.model.generate(
                    pixel_values=pixels.to(self.loaded.device, self.loaded.dtype),
                    max_new_tokens=self.cfg.max_new_tokens, num_beams=self.cfg.num_beams, do_sample=False,
                )
            captions.extend(" ".join(text.split()) for text in self.loaded.tokenizer.batch_decode(ids, skip_special_tokens=True))
        return captions


def captioner_for(models: ModelsConfig) -> Captioner:
    from pipeline.models.loading import get_captioner

    return Captioner(get_captioner(models), models.captions)


def caption_images(images: Sequence, models: ModelsConfig) -> list[str | None]:
    """Captions of RGB images with the configured model; ``[None] * len(images)`` when captions are off.

    An empty caption (a model that produced only special tokens) is None: not computed, not invented.
    """
    if not models.captions.enabled or not len(images):
        return [None] * len(images)
    return [text or None for text in captioner_for(models).caption(images)]
