"""Random-weight Stable Diffusion parts, for tests (tiny) and benchmarks (SD-1.5 sized).

:func:`write_random_sd` saves a complete diffusers-layout directory (unet/, vae/, text_encoder/,
tokenizer/, scheduler/) with ``save_pretrained``, so that tests load it through the same
``from_pretrained`` code as the real model. :func:`write_random_clip` does the same for the
CLIP model used by evaluation. Nothing here touches the network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.storygen import Components, ensure_imports

# SD-1.5's shapes (runwayml/stable-diffusion-v1-5 configs), and a tiny version with the same
# structure: cross-attention blocks at every level but the last, a mid block, a KL VAE.
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {
        "unet": dict(block_out_channels=(32, 64), layers_per_block=1, cross_attention_dim=32,
                     attention_head_dim=8, norm_num_groups=8,
                     down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                     up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
        "vae": dict(block_out_channels=(16, 32), norm_num_groups=8, layers_per_block=1,
                    down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2),
        "text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     projection_dim=32),
    },
    "sd15": {
        "unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, cross_attention_dim=768,
                     attention_head_dim=8, norm_num_groups=32,
                     down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                     up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
        "vae": dict(block_out_channels=(128, 256, 512, 512), norm_num_groups=32, layers_per_block=2,
                    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4),
        "text": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     projection_dim=768),
    },
}


def tiny_tokenizer():
    """A character-level CLIP tokenizer (byte alphabet, no merges): real class, tiny vocabulary."""
    ensure_imports()
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    chars = list(bytes_to_unicode().values())
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def random_components(size: str = "tiny", seed: int = 0) -> Components:
    """Randomly initialised SD parts in memory."""
    ensure_imports()
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    spec = SIZES[size]
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    sample = 64 if size == "sd15" else 16
    unet = UNet2DConditionModel(sample_size=sample, in_channels=4, out_channels=4, **spec["unet"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=sample * 8, **spec["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=49408 if size == "sd15" else len(tokenizer),
                                                max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                                                pad_token_id=1, **spec["text"]))
    scheduler = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, clip_sample=False, steps_offset=1)
    return Components(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, noise_scheduler=scheduler)


def write_random_sd(out_dir: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Save random SD parts as a diffusers directory; returns it (use as model.pretrained)."""
    out = Path(out_dir)
    parts = random_components(size, seed)
    parts.unet.save_pretrained(out / "unet")
    parts.vae.save_pretrained(out / "vae")
    parts.text_encoder.save_pretrained(out / "text_encoder")
    parts.tokenizer.save_pretrained(out / "tokenizer")
    parts.noise_scheduler.save_pretrained(out / "scheduler")
    return out


def write_random_clip(out_dir: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A tiny random CLIP (vision + text) with tokenizer and image processor, saved for from_pretrained."""
    ensure_imports()
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=image_size, patch_size=8),
        projection_dim=32,
    )
    out = Path(out_dir)
    CLIPModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}).save_pretrained(out)
    return out
