"""Whisper stage real-time factor against the model's own ``generate`` on the same audio.

Usage: python bench/whisper_speed.py [--size tiny|base] [--seconds 45] [--repeat 2] [--threads N] [--device auto]

A Whisper model with the real architecture of the chosen size and the real vocabulary layout
(51,865 tokens: byte-level BPE, special, language and timestamp tokens) but random weights is
saved with ``save_pretrained`` and loaded through the stage's own loading code. The audio is the
synthetic narration of a generated read-aloud video (``--seconds`` long). Measured, best of
``--repeat``, alternating:

- ``generate``: the Hugging Face recipe on the decoded 16 kHz array: feature extractor (long-form:
  no truncation, padded to the longest, attention mask) + ``model.generate(...,
  return_timestamps=True, task="transcribe")``, which detects the language itself;
- ``stage``: :class:`pipeline.text.asr.AsrTextSource` on the video file: PyAV decode and resample,
  features, language detection, the same ``generate``, segment clean-up and sentence split.

A random model decodes until ``max_length`` (448 tokens) in each 30 s window, more than real
speech needs, so absolute RTFs are pessimistic; the ratio is what travels. RTF = processing
seconds / audio seconds (lower is faster); ratio = generate RTF / stage RTF (target >= 0.9), from
wall time and from process CPU time (steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import itertools
import string
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = {  # the published architectures of openai/whisper-{tiny,base}
    "tiny": dict(d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
                 encoder_ffn_dim=1536, decoder_ffn_dim=1536),
    "base": dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8, decoder_attention_heads=8,
                 encoder_ffn_dim=2048, decoder_ffn_dim=2048),
}


def save_random_whisper(folder: Path, size: str) -> None:
    """A random Whisper of the given size with the multilingual vocabulary layout, saved with save_pretrained."""
    import torch
    from tokenizers import AddedToken
    from transformers import (
        GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
        WhisperProcessor, WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = {symbol: i for i, symbol in enumerate(bytes_to_unicode().values())}
    for letters in itertools.product(string.ascii_lowercase, repeat=4):  # stand-ins for the 50,001 BPE merges
        if len(vocab) == 50257:
            break
        vocab["".join(letters)] = len(vocab)
    languages = list(LANGUAGES)[:99]
    specials = ["<|endoftext|>", "<|startoftranscript|>", *[f"<|{code}|>" for code in languages], "<|translate|>",
                "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], additional_special_tokens=specials[1:])
    tokenizer.add_tokens([AddedToken(f"<|{i * 0.02:.2f}|>", normalized=False, special=False) for i in range(1501)])
    assert len(tokenizer) == 51865, len(tokenizer)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in specials}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = WhisperConfig(vocab_size=51865, num_mel_bins=80, max_source_positions=1500, max_target_positions=448,
                           pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot, **SIZES[size])
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"], prev_sot_token_id=ids["<|startofprev|>"],
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in languages},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        is_multilingual=True, max_initial_timestamp_index=50, max_length=448, begin_suppress_tokens=[220, eot],
    )
    model.save_pretrained(folder)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--seconds", type=float, default=45.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args(argv)

    from pipeline.models.torch_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from pipeline.text.asr import SAMPLE_RATE, AsrTextSource, decode_audio, make_transcriber
    from pipeline.config import IngestConfig
    from pipeline.records import FetchedMedia
    from pipeline.synthetic import PageSpec, VideoSpec, write_story_video

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_random_whisper(tmp / "whisper", args.size)
        models = IngestConfig.from_dict({"models": {
            "device": args.device, "local_files_only": True, "asr": {"enabled": True, "model": str(tmp / "whisper")},
        }}).models
        loaded = make_transcriber(models).loaded  # loads through pipeline.models.loading
        pages = max(1, round(args.seconds / 3.0))
        words = "the little fox walked through the snow to find a warmer home".split()
        spec = VideoSpec(pages=[PageSpec(" ".join(words[i % 5:i % 5 + 6]).capitalize() + ".", args.seconds / pages)
                                for i in range(pages)], width=160, height=90, fps=10, seed=1)
        truth = write_story_video(tmp, "narration", spec, save_pictures=False)
        media = FetchedMedia("narration", str(truth.video), {"language": None})
        audio = decode_audio(truth.video)
        seconds = len(audio) / SAMPLE_RATE
        source = AsrTextSource(models)
        processor, model = loaded.processor, loaded.model

        def own_generate():
            inputs = processor(audio, sampling_rate=SAMPLE_RATE, return_tensors="pt", truncation=False,
                               padding="longest", return_attention_mask=True)
            with torch.inference_mode():
                return model.generate(inputs.input_features.to(loaded.device, loaded.dtype),
                                      attention_mask=inputs.attention_mask.to(loaded.device),
                                      return_timestamps=True, task="transcribe")

        runs = {"generate": own_generate, "stage": lambda: source.transcribe(media)}
        for fn in runs.values():
            fn()  # warm
        wall = {name: float("inf") for name in runs}
        cpu = dict(wall)
        for _ in range(args.repeat):
            for name, fn in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                fn()
                wall[name] = min(wall[name], time.perf_counter() - start)
                cpu[name] = min(cpu[name], time.process_time() - start_cpu)
    print(f"Whisper {args.size} (random weights, 51,865-token vocabulary), {seconds:.1f} s of audio, "
          f"device {loaded.device}, {loaded.dtype}, torch threads {torch.get_num_threads()}, best of {args.repeat}")
    print(f"{'path':<10} {'wall s':>7} {'RTF':>6} {'ratio':>6} {'cpu s':>7} {'CPU RTF':>8} {'ratio':>6}")
    for name in runs:
        print(f"{name:<10} {wall[name]:>7.2f} {wall[name] / seconds:>6.3f} {wall['generate'] / wall[name]:>6.3f} "
              f"{cpu[name]:>7.2f} {cpu[name] / seconds:>8.3f} {cpu['generate'] / cpu[name]:>6.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
