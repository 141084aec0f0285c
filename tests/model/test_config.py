"""StoryGen config: defaults, YAML files, --set overrides, validation messages."""

from __future__ import annotations

import pytest

from model.config import SD15, ConfigError, StoryGenConfig, parse_overrides, read_config_file


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


def test_text_fields_take_the_value_as_typed():
    """--set train.mixed_precision=no (the documented value) was refused as the boolean False."""
    cfg = StoryGenConfig.load(None, ["train.mixed_precision=no", "model.weights=123", "evaluate.context=true",
                                     "train.resume=null", "train.output_dir=runs/on"])
    assert cfg.train.mixed_precision == "no"
    assert cfg.model.weights == "123" and isinstance(cfg.model.weights, str)
    assert cfg.evaluate.context == "true"  # a text field: the word, not the boolean
    assert cfg.train.resume == "null"  # not optional: null is text here
    assert cfg.train.output_dir == "runs/on"
    assert StoryGenConfig().with_overrides(["train.mixed_precision=no"]).train.mixed_precision == "no"


@pytest.mark.parametrize("text", ["null", "~", "NULL"])
def test_optional_text_fields_take_null(text):
    cfg = StoryGenConfig.load(None, ["model.weights=runs/stage1", f"model.variant={text}"])
    assert cfg.model.weights == "runs/stage1" and cfg.model.variant is None
    assert StoryGenConfig.load(None, [f"model.weights={text}"]).model.weights is None


def test_overrides_keep_the_text_exactly():
    cfg = StoryGenConfig.load(None, ["model.weights='quoted'", "model.pretrained=a: b #c", "model.variant="])
    assert (cfg.model.weights, cfg.model.pretrained, cfg.model.variant) == ("'quoted'", "a: b #c", "")


@pytest.mark.parametrize("text, value", [
    ("true", True), ("false", False), ("True", True), ("FALSE", False),
    ("yes", True), ("no", False), ("on", True), ("off", False), ("Yes", True), ("OFF", False),
])
def test_bool_overrides(text, value):
    cfg = StoryGenConfig.load(None, [f"train.gradient_checkpointing={text}", f"train.allow_tf32={text}"])
    assert cfg.train.gradient_checkpointing is value and cfg.train.allow_tf32 is value


def test_number_and_list_overrides():
    cfg = StoryGenConfig.load(None, ["train.lr=1e-4", "train.adam_eps=1.0e-6", "train.max_grad_norm=2",
                                     "data.max_context=5", "sample.max_context=null", "sample.resolution=256",
                                     "data.shards=[a.tar, b.tar]", "sample.prompts=[no, yes, on]"])
    assert cfg.train.lr == pytest.approx(1e-4) and isinstance(cfg.train.lr, float)
    assert cfg.train.adam_eps == pytest.approx(1e-6)
    assert cfg.train.max_grad_norm == 2.0 and isinstance(cfg.train.max_grad_norm, float)
    assert cfg.data.max_context == 5 and cfg.sample.max_context is None and cfg.sample.resolution == 256
    assert cfg.data.shards == ("a.tar", "b.tar")
    assert cfg.sample.prompts == ("no", "yes", "on")
    assert StoryGenConfig.load(None, ["data.shards=one.tar"]).data.shards == ("one.tar",)


def test_parse_overrides_types_by_field():
    assert parse_overrides(["train.mixed_precision=no", "model.weights=123", "train.stage=2", "train.lr=1e-4",
                            "train.allow_tf32=off", "model.variant=~"]) == {
        "train": {"mixed_precision": "no", "stage": 2, "lr": "1e-4", "allow_tf32": "off"},
        "model": {"weights": "123", "variant": None},
    }


def test_config_file_reads_yaml_1_2(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("train:\n  mixed_precision: no\n  gradient_checkpointing: yes\n  allow_tf32: off\n"
                    "model:\n  local_files_only: True\n  weights: null\n"
                    "sample:\n  prompts: [yes, no]\n")
    cfg = StoryGenConfig.load(path)
    assert cfg.train.mixed_precision == "no"
    assert (cfg.train.gradient_checkpointing, cfg.train.allow_tf32, cfg.model.local_files_only) == (True, False, True)
    assert cfg.model.weights is None and cfg.sample.prompts == ("yes", "no")
    assert read_config_file(path)["train"] == {"mixed_precision": "no", "gradient_checkpointing": "yes",
                                               "allow_tf32": "off"}
    # the file first, then --set overrides, each read as its field's type
    again = StoryGenConfig.load(path, ["train.mixed_precision=bf16", "train.allow_tf32=true"])
    assert (again.train.mixed_precision, again.train.allow_tf32) == ("bf16", True)


@pytest.mark.parametrize("override, message", [
    ("train.gradient_checkpointing=maybe", "train.gradient_checkpointing must be true or false, got 'maybe'"),
    ("train.gradient_checkpointing=1", "train.gradient_checkpointing must be true or false, got 1"),
    ("train.stage=two", "train.stage must be an integer, got 'two'"),
    ("train.stage=null", "train.stage must not be null"),
    ("train.mixed_precision=No", "train.mixed_precision must be one of no, fp16, bf16; got 'No'"),
    ("train.mixed_precision=null", "train.mixed_precision must be one of no, fp16, bf16; got 'null'"),
    ("data.shards={a: b}", "data.shards must be a list of strings"),
    ("train.lr=[1", "override 'train.lr=[1': value is not valid YAML"),
    ("train.mixed_precisionn=no", "unknown config key(s) train.mixed_precisionn"),
    ("trian.lr=1", "unknown config key(s) trian"),
])
def test_bad_typed_overrides_are_clear(override, message):
    with pytest.raises(ConfigError) as err:
        StoryGenConfig.load(None, [override])
    assert message in str(err.value)


def test_text_field_in_a_file_must_be_text(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("model:\n  weights: 123\n")
    with pytest.raises(ConfigError, match=r"model.weights must be a string, got 123 \(quote it"):
        StoryGenConfig.load(path)


@pytest.mark.parametrize("body, message", [
    ("train: [\n", "is not valid YAML"),
    ("- train\n", "must hold a mapping of sections"),
])
def test_bad_config_files(tmp_path, body, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=message):
        StoryGenConfig.load(path)
    with pytest.raises(ConfigError, match="cannot read config file"):
        StoryGenConfig.load(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert StoryGenConfig.load(tmp_path / "empty.yaml") == StoryGenConfig()


def test_hash_of_the_default_config_is_unchanged():
    # saved inside every checkpoint; this refactor of the YAML reading must not change it
    assert StoryGenConfig().hash() == "4da7aeda21e14c32"
    assert StoryGenConfig.load(None, ["train.lr=1e-4", "data.shards=[a.tar, b.tar]", "train.gradient_checkpointing=true",
                                      "sample.resolution=256"]).hash() == "e64bbe37a7943f34"


def test_cli_set_reads_values_as_their_fields(tmp_path):
    """`storyloom train --config FILE --set train.mixed_precision=no`: the CLI's config assembly."""
    import argparse

    from model.cli import add_commands, build_config

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    path = tmp_path / "stage1.yaml"
    path.write_text("train: {mixed_precision: fp16, gradient_checkpointing: no}\nmodel: {local_files_only: yes}\n")
    args = parser.parse_args(["train", "--config", str(path), "--out", "runs/x", "--set", "train.mixed_precision=no",
                              "--set", "model.weights=123", "--set", "train.allow_tf32=off", "--set", "train.lr=1e-4"])
    cfg = build_config(args, {"train": {"output_dir": args.out}})
    assert (cfg.train.mixed_precision, cfg.model.weights, cfg.train.output_dir) == ("no", "123", "runs/x")
    assert (cfg.train.gradient_checkpointing, cfg.model.local_files_only, cfg.train.allow_tf32) == (False, True, False)
    assert cfg.train.lr == pytest.approx(1e-4)
