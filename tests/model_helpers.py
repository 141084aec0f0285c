"""Tiny random models written to a folder the way real ones are shipped, for offline tests.

- CLIP: an open_clip architecture JSON (registered through ``models.clip.model_config``) and a
  state dict saved with ``torch.save`` (loaded by path as ``models.clip.pretrained``).
- Whisper: model, generation config, tokenizer and feature extractor saved with
  ``save_pretrained``; the tokenizer is byte-level BPE over the 256 byte symbols (no merges)
  plus Whisper's special and timestamp tokens, built without the hub.
- Captioner: BLIP with a 20-word WordPiece vocabulary, saved with ``save_pretrained``.

All are seeded, so their (meaningless) outputs are the same on every run.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

CLIP_ARCH = "storyloom-tiny-clip"
CLIP_CONFIG = {
    "embed_dim": 32,
    # average-pooled patch tokens: a random tower that still tells pictures apart (cosine 0.5-0.97
    # between different pictures, > 0.9998 for a picture and a noisy copy of it)
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32, "pool_type": "avg"},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
WHISPER_LANGUAGES = ("en", "fr", "de")


@dataclass
class TinyModels:
    clip_config: Path  # the architecture JSON
    clip_weights: Path  # torch.save(state_dict)
    whisper: Path  # save_pretrained folder
    captioner: Path  # save_pretrained folder

    def models_section(self, *enabled: str, **overrides) -> dict:
        """A ``models`` config section naming these models, with those in ``enabled`` switched on.

        ``overrides`` replace top-level keys, or update a model's section when given a dict.
        """
        section = {
            "device": "cpu",
            "local_files_only": True,
            "clip": {"enabled": "clip" in enabled, "model": CLIP_ARCH, "pretrained": str(self.clip_weights),
                     "model_config": str(self.clip_config), "batch_size": 4},
            "asr": {"enabled": "asr" in enabled, "model": str(self.whisper)},
            "captions": {"enabled": "captions" in enabled, "model": str(self.captioner), "max_new_tokens": 6},
        }
        for key, value in overrides.items():
            if isinstance(value, dict):
                section[key].update(value)
            else:
                section[key] = value
        return section


def write_tiny_clip(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    import open_clip
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{CLIP_ARCH}.json"  # open_clip names an architecture after its file
    config.write_text(json.dumps(CLIP_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(CLIP_ARCH)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))  # the temperature trained CLIP models end with
    weights = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), weights)
    return config, weights


def write_tiny_whisper(folder: Path, seed: int = 0, max_target_positions: int = 64) -> Path:
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
        WhisperProcessor, WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}  # 256 byte symbols
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{code}|>" for code in WHISPER_LANGUAGES],
                "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=dict(vocab), merges=[], additional_special_tokens=specials[1:])
    # timestamps follow <|notimestamps|>, every 0.02 s up to 30 s, as in the real vocabulary
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(1501)])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_source_positions=1500, max_target_positions=max_target_positions,
        pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in WHISPER_LANGUAGES},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        is_multilingual=True, max_initial_timestamp_index=50, max_length=64,
        begin_suppress_tokens=[vocab["Ġ"], eot], suppress_tokens=[],
    )
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_captioner(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fox", "in", "the", "forest", "picture", "of",
             "red", "tree", "house", "cat", "dog", "river", "book", "page", "[DEC]"]
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, bos_token="[DEC]")
    text = dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                encoder_hidden_size=32, max_position_embeddings=32, bos_token_id=tokenizer.bos_token_id,
                sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(BlipConfig(vision_config=vision, text_config=text, projection_dim=32))
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def write_tiny_models(root: Path) -> TinyModels:
    root = Path(root)
    clip_config, clip_weights = write_tiny_clip(root / "clip")
    return TinyModels(clip_config, clip_weights, write_tiny_whisper(root / "whisper"), write_tiny_captioner(root / "blip"))
