"""Model loading through the real code path: tiny random models saved to a temp dir, loaded by
path; one load per process; errors that name the model, where it was looked for and the fix."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("open_clip")
pytest.importorskip("transformers")

import torch  # noqa: E402

from pipeline.models import loading as model_loading  # noqa: E402
from pipeline.config import ConfigError, IngestConfig, ModelsConfig  # noqa: E402
from pipeline.errors import ModelLoadError  # noqa: E402
from pipeline.models.loading import get_asr, get_captioner, get_clip, load_enabled_models  # noqa: E402
from tests.model_helpers import CLIP_ARCH, CLIP_CONFIG, write_tiny_models  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Tests never touch the network: the hub counts as unreachable (hub names use the cache only)."""
    monkeypatch.setitem(model_loading._hub_state, "reachable", False)


def models_cfg(tiny, *enabled, **kw) -> ModelsConfig:
    return IngestConfig.from_dict({"models": tiny.models_section(*enabled, **kw)}).models


def test_clip_state_dict_is_loaded_by_path(tiny):
    loaded = get_clip(models_cfg(tiny, "clip"))
    saved = torch.load(tiny.clip_weights, weights_only=True)
    state = loaded.model.state_dict()
    assert set(state) == set(saved)
    for name in ("visual.conv1.weight", "token_embedding.weight", "text_projection", "logit_scale"):
        assert torch.equal(state[name], saved[name]), name
    assert not loaded.model.training
    assert loaded.device == "cpu" and loaded.dtype == torch.float32
    assert loaded.tokenizer(["a fox"]).shape == (1, CLIP_CONFIG["text_cfg"]["context_length"])


def test_clip_from_a_local_folder(tiny, tmp_path):
    folder = tmp_path / "clip-folder"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CONFIG, "preprocess_cfg": {}}))
    (folder / "open_clip_pytorch_model.bin").write_bytes(tiny.clip_weights.read_bytes())
    cfg = IngestConfig.from_dict({"models": {"device": "cpu", "clip": {"enabled": True, "model": str(folder)}}}).models
    loaded = get_clip(cfg)
    saved = torch.load(tiny.clip_weights, weights_only=True)
    assert torch.equal(loaded.model.state_dict()["visual.conv1.weight"], saved["visual.conv1.weight"])
    assert loaded.name == "clip-folder"


def test_whisper_and_captioner_load_from_save_pretrained_folders(tiny):
    from safetensors.torch import load_file

    whisper = get_asr(models_cfg(tiny, "asr"))
    assert type(whisper.model).__name__ == "WhisperForConditionalGeneration"
    assert whisper.processor.tokenizer.convert_tokens_to_ids("<|notimestamps|>") == whisper.model.generation_config.no_timestamps_token_id
    saved = load_file(tiny.whisper / "model.safetensors")
    key = "model.encoder.conv1.weight"
    assert torch.equal(whisper.model.state_dict()[key], saved[key])

    captioner = get_captioner(models_cfg(tiny, "captions"))
    assert type(captioner.model).__name__ == "BlipForConditionalGeneration"
    saved = load_file(tiny.captioner / "model.safetensors")
    key = next(k for k in saved if k.endswith("embeddings.patch_embedding.weight"))
    assert torch.equal(captioner.model.state_dict()[key], saved[key])


def test_each_model_is_loaded_once_per_process(tiny):
    model_loading.clear_cache()
    cfg = models_cfg(tiny, "clip", "asr", "captions")
    names = load_enabled_models(cfg)
    assert len(names) == 3
    first = (get_clip(cfg), get_asr(cfg), get_captioner(cfg))
    load_enabled_models(cfg)
    assert (get_clip(cfg), get_asr(cfg), get_captioner(cfg)) == first  # the very same objects
    assert sorted(key[0] for key in model_loading.load_counts()) == ["asr", "captions", "clip"]
    assert set(model_loading.load_counts().values()) == {1}
    assert load_enabled_models(models_cfg(tiny)) == []  # nothing enabled: nothing loaded


def test_missing_clip_checkpoint_says_where_and_how(tiny, tmp_path):
    missing = tmp_path / "nowhere" / "clip.pt"
    cfg = models_cfg(tiny, "clip", clip={"pretrained": str(missing)})
    with pytest.raises(ModelLoadError) as error:
        load_enabled_models(cfg)
    message = str(error.value)
    assert CLIP_ARCH in message and str(missing) in message
    assert "models.clip.pretrained" in message and "local copy" in message


def test_clip_config_mistakes_are_named(tiny):
    cases = {
        "ViT-Nope-99": ("not known to open_clip", "models.clip.model_config"),
    }
    for model, expected in cases.items():
        cfg = IngestConfig.from_dict({"models": {"clip": {"enabled": True, "model": model}}}).models
        with pytest.raises(ModelLoadError) as error:
            get_clip(cfg)
        assert all(e in str(error.value) for e in expected), str(error.value)
    bad_tag = IngestConfig.from_dict({"models": {"clip": {"enabled": True, "model": "ViT-B-32", "pretrained": "no_such_tag"}}})
    with pytest.raises(ModelLoadError, match="laion2b_s34b_b79k"):  # the known tags are listed
        get_clip(bad_tag.models)
    no_weights = IngestConfig.from_dict({"models": {"clip": {"enabled": True, "model": "ViT-B-32", "pretrained": None}}})
    with pytest.raises(ModelLoadError, match="random weights"):
        get_clip(no_weights.models)
    offline = IngestConfig.from_dict({"models": {"local_files_only": True, "clip": {"enabled": True}}})
    with pytest.raises(ModelLoadError, match="local_files_only"):
        get_clip(offline.models)


def test_missing_transformers_models_say_where_and_how(tiny, tmp_path):
    cfg = IngestConfig.from_dict({"models": {"local_files_only": True, "asr": {"enabled": True, "model": "someone/whisper-gone"}}})
    with pytest.raises(ModelLoadError) as error:
        load_enabled_models(cfg.models)
    message = str(error.value)
    assert "Whisper model 'someone/whisper-gone'" in message
    assert "Hugging Face hub" in message and "no local folder" in message
    assert "models.asr.model: DIR" in message and "huggingface-cli download someone/whisper-gone" in message

    # a folder holding some other model is not a Whisper model
    wrong = IngestConfig.from_dict({"models": {"asr": {"enabled": True, "model": str(tiny.captioner)}}})
    with pytest.raises(ModelLoadError, match=f"from the local folder {tiny.captioner}"):
        get_asr(wrong.models)

    cfg = IngestConfig.from_dict({"models": {"local_files_only": True, "captions": {"enabled": True, "model": str(tmp_path / "blip")}}})
    with pytest.raises(ModelLoadError, match="captioning model .*models.captions.model: DIR"):
        get_captioner(cfg.models)


def test_an_unreachable_hub_fails_at_once_with_the_cache_only(tmp_path):
    cfg = IngestConfig.from_dict({"models": {"cache_dir": str(tmp_path), "asr": {"enabled": True, "model": "someone/whisper-x"}}})
    with pytest.raises(ModelLoadError, match=r"from the cache only \(the hub is unreachable from here\)"):
        get_asr(cfg.models)
    cfg = IngestConfig.from_dict({"models": {"cache_dir": str(tmp_path), "clip": {"enabled": True}}})
    with pytest.raises(ModelLoadError, match="cache only: the hub is unreachable from here"):
        get_clip(cfg.models)


def test_faster_whisper_backend_without_the_package(tiny):
    try:
        import faster_whisper  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("faster-whisper is installed here")
    cfg = IngestConfig.from_dict({"models": {"asr": {"enabled": True, "backend": "faster-whisper", "model": "base"}}})
    with pytest.raises(ModelLoadError, match=r"pip install 'storyloom\[asr\]'"):
        get_asr(cfg.models)


def test_device_and_dtype():
    assert model_loading.resolve_device("auto") in {"cpu", "cuda", "mps"}
    assert model_loading.resolve_device("cpu") == "cpu"
    assert model_loading.resolve_dtype("auto", "cpu") == torch.float32
    assert model_loading.resolve_dtype("auto", "cuda") == torch.float16
    assert model_loading.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            model_loading.resolve_device("cuda:0")


def test_models_config_defaults_validation_and_hash(tiny):
    default = IngestConfig()
    assert not default.models.any_enabled
    assert "models" in default.to_dict() and "models" not in default.output_settings()
    disabled = IngestConfig.from_dict({"models": tiny.models_section()})
    assert disabled.hash() == default.hash()  # configured but disabled: the model-free outputs
    enabled = IngestConfig.from_dict({"models": tiny.models_section("clip")})
    assert enabled.hash() != default.hash()
    assert set(enabled.output_settings()["models"]) == {"clip"}
    # where a model runs and how it batches do not change outputs
    moved = IngestConfig.from_dict({"models": tiny.models_section("clip", device="auto", clip={"batch_size": 64})})
    assert moved.hash() == enabled.hash()
    assert IngestConfig.from_dict(enabled.to_dict()).hash() == enabled.hash()  # config.json round trip
    never = IngestConfig.from_dict({"models": {"asr": {"enabled": True, "mode": "never"}}})
    assert never.hash() == default.hash() and not never.models.asr.active
    for bad, message in [
        ({"asr": {"mode": "sometimes"}}, "models.asr.mode"),
        ({"device": "tpu"}, "models.device"),
        ({"dtype": "int8"}, "models.dtype"),
        ({"clip": {"photo_threshold": 1.5}}, "photo_threshold"),
        ({"clip": {"photo_prompts": []}}, "photo_prompts"),
        ({"max_concurrent": 0}, "max_concurrent"),
        ({"clip": {"colour": 1}}, "models.clip.colour"),
    ]:
        with pytest.raises(ConfigError, match=message):
            IngestConfig.from_dict({"models": bad})
