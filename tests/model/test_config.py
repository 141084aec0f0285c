"""StoryGen config: defaults, YAML files, --set overrides, validation messages."""

from __future__ import annotations

import pytest

from model.config import SD15, ConfigError, StoryGenConfig, parse_overrides


def test_defaults_are_storygen_on_sd15():
    cfg = StoryGenConfig().validate()
    assert cfg.model.pretrained == SD15
    assert (cfg.train.text_dropout, cfg.train.context_dropout) == (0.05, 0.10)
    assert (cfg.train.min_context_frames, cfg.data.max_context) == (1, 3)
    assert cfg.data.prompt == "caption_or_text"
    assert cfg.train.resume == "latest"


def test_overrides_are_typed_from_yaml():
    cfg = StoryGenConfig.load(None, ["train.lr=1e-4", "train.stage=2", "train.gradient_checkpointing=true",
                                     "data.shards=[a.tar, b.tar]", "model.weights=null", "sample.resolution=256"])
    assert cfg.train.lr == pytest.approx(1e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.stage == 2 and cfg.train.gradient_checkpointing is True
    assert cfg.data.shards == ("a.tar", "b.tar")
    assert cfg.model.weights is None and cfg.sample.resolution == 256


def test_file_then_overrides(tmp_path):
    path = tmp_path / "stage2.yaml"
    path.write_text("train: {stage: 2, lr: 0.0001, batch_size: 8}\ndata: {resolution: 256}\n")
    cfg = StoryGenConfig.load(path, ["train.batch_size=2"])
    assert (cfg.train.stage, cfg.train.batch_size, cfg.data.resolution) == (2, 2, 256)


def test_round_trip_through_dict_and_hash():
    cfg = StoryGenConfig.load(None, ["data.shards=x-{000..003}.tar", "train.seed=7"])
    again = StoryGenConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.hash() == cfg.hash()
    assert cfg.with_overrides(["train.seed=8"]).hash() != cfg.hash()


@pytest.mark.parametrize("override, message", [
    ("train.lrr=1", "unknown config key(s) train.lrr"),
    ("train.stage=3", "train.stage must be 1 or 2"),
    ("train.lr=fast", "train.lr must be a number"),
    ("train.batch_size=2.5", "train.batch_size must be an integer"),
    ("data.resolution=500", "multiple of 8"),
    ("data.prompt=title", "data.prompt must be one of caption_or_text, text, caption"),
    ("train.mixed_precision=fp8", "train.mixed_precision must be one of"),
    ("lr=1", "must look like section.key=value"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StoryGenConfig.load(None, [override])


def test_stage2_needs_context_frames():
    with pytest.raises(ConfigError, match="min_context_frames"):
        StoryGenConfig.load(None, ["train.stage=2", "data.max_context=0"])
    assert StoryGenConfig.load(None, ["train.stage=1", "data.max_context=0"]).data.max_context == 0


def test_parse_overrides_nests():
    assert parse_overrides(["a.b.c=1", "a.d=x"]) == {"a": {"b": {"c": 1}, "d": "x"}}
