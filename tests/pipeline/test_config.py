"""Ingest config: the YAML 1.2 loader every storyloom YAML input shares, the typed builder, and
the config hash that goes into every story (which this module's refactors must not move)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

import pipeline.config
from pipeline.config import (
    ConfigError, FetchConfig, IngestConfig, ModelsConfig, Yaml12Loader, build_dataclass, field_text_value, load_yaml,
    read_yaml_mapping, to_jsonable,
)

# Every section, non-default values, YAML 1.1 boolean words (yes/no/on/off) for the booleans: a
# config file as written before the YAML 1.2 loader; it must keep its config and its hash.
EVERY_SECTION = """
fetch:
  max_height: 720
  subtitle_languages: [en, fr]
  prefer_manual_subtitles: no
  allow_auto_subtitles: yes
  retries: 5
  backoff_s: 1
  socket_timeout_s: 10
  max_filesize_mb: 500
  ffmpeg: /usr/bin/ffmpeg
  cookies_file: null
  cache_dir: ~
keyframes:
  analysis_width: 96
  still_threshold: 0.25
  still_cap: 1.2
  baseline_window_s: 3
  page_change_threshold: 2.5
  blank_std: 5
  min_page_s: 0.5
  settle_margin_s: 0.1
  max_candidates: 4
  decode_threads: 2
text:
  source: subtitles
  on_missing: skip
  split_sentences: off
clean:
  drop_blank: on
  blank_std: 7.5
  drop_blurred: off
  blur_min_sharpness: 12
  drop_duplicates: true
  phash_max_distance: 5
  drop_intro_outro: False
  edge_window_s: 10
shards:
  max_stories_per_shard: 50
  max_shard_bytes: 1000000
  test_fraction: 0.1
  image_max_side: 512
  jpeg_quality: 85
ebook:
  max_download_mb: 100
  max_pages: 500
  cover_frame: yes
  running_band: 0.08
run:
  download_workers: 2
  decode_workers: 1
  task_retries: 1
  progress: no
models:
  device: cpu
  dtype: float32
  local_files_only: yes
  max_concurrent: 2
  clip:
    enabled: yes
    model: ViT-B-16
    pretrained: openai
    dedup: no
    photo_prompts: [a photo, a webcam photo]
    align_weight: 0.5
  asr:
    enabled: on
    mode: always
    language: en
    batch_size: 2
  captions:
    enabled: TRUE
    model: Salesforce/blip-image-captioning-large
    max_new_tokens: 20
"""


# ----------------------------------------------------------------------------- the loader


@pytest.mark.parametrize("text, value", [
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False), ("FALSE", False),
    ("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("n", "n"),
    ("Yes", "Yes"), ("NO", "NO"), ("Off", "Off"),
    ("null", None), ("~", None), ("", None), ("3", 3), ("1.5", 1.5), ("'no'", "no"), ("!!bool yes", True),
])
def test_yaml_1_2_booleans(text, value):
    loaded = load_yaml(text)
    assert loaded == value and type(loaded) is type(value)
    assert yaml.load(text, Loader=Yaml12Loader) == value


def test_loader_leaves_safe_loader_alone():
    assert issubclass(Yaml12Loader, yaml.SafeLoader) and Yaml12Loader is pipeline.config.Yaml12Loader
    assert Yaml12Loader.yaml_implicit_resolvers is not yaml.SafeLoader.yaml_implicit_resolvers
    assert yaml.safe_load("[yes, no, on, off]") == [True, False, True, False]  # PyYAML's own loader: as before
    assert load_yaml("{language: no, on: off, list: [yes, true]}") == {"language": "no", "on": "off",
                                                                       "list": ["yes", True]}


def test_read_yaml_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("a: {b: no}\n")
    assert read_yaml_mapping(path) == {"a": {"b": "no"}}
    path.write_text("")
    assert read_yaml_mapping(path) == {}
    with pytest.raises(ValueError) as err:
        read_yaml_mapping(path, what="thing", not_mapping="must be a mapping", allow_empty=False, error=ValueError)
    assert type(err.value) is ValueError and str(err.value) == f"thing {path} must be a mapping"
    path.write_text("[a, b]\n")
    with pytest.raises(ConfigError) as err:
        read_yaml_mapping(path)
    assert str(err.value) == f"config file {path} must hold a mapping of sections"
    path.write_text("a: [\n")
    with pytest.raises(ConfigError, match=r"config file .*c\.yaml is not valid YAML"):
        read_yaml_mapping(path)
    path.write_bytes(b"a: \xff\n")
    with pytest.raises(ConfigError, match=r"cannot read config file .*c\.yaml"):
        read_yaml_mapping(path)
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.yaml"):
        read_yaml_mapping(tmp_path / "missing.yaml")


# ----------------------------------------------------------------------------- the builder


def test_bool_fields_take_yes_no_on_off(tmp_path):
    path = tmp_path / "ingest.yaml"
    path.write_text("models:\n  clip: {enabled: yes, dedup: No}\n  asr: {enabled: ON}\n"
                    "clean:\n  drop_blank: off\n  drop_blurred: false\n  drop_duplicates: True\nrun: {progress: no}\n")
    cfg = IngestConfig.load(path)
    assert (cfg.models.clip.enabled, cfg.models.clip.dedup, cfg.models.asr.enabled) == (True, False, True)
    assert (cfg.clean.drop_blank, cfg.clean.drop_blurred, cfg.clean.drop_duplicates) == (False, False, True)
    assert cfg.run.progress is False


def test_text_fields_take_yes_no_as_text(tmp_path):
    path = tmp_path / "ingest.yaml"
    path.write_text("models:\n  asr: {language: no}\nfetch: {subtitle_languages: [no, en], ffmpeg: yes}\n")
    cfg = IngestConfig.load(path)
    assert cfg.models.asr.language == "no"
    assert cfg.fetch.subtitle_languages == ("no", "en") and cfg.fetch.ffmpeg == "yes"


@pytest.mark.parametrize("data, message", [
    ({"run": {"progress": "maybe"}}, "run.progress must be true or false, got 'maybe'"),
    ({"run": {"progress": 1}}, "run.progress must be true or false, got 1"),
    ({"run": {"progress": None}}, "run.progress must not be null"),
    ({"fetch": {"retries": "3"}}, "fetch.retries must be an integer, got '3'"),
    ({"fetch": {"retries": True}}, "fetch.retries must be an integer, got True"),
    ({"fetch": {"backoff_s": "slow"}}, "fetch.backoff_s must be a number, got 'slow'"),
    ({"fetch": {"ffmpeg": 3}}, "fetch.ffmpeg must be a string, got 3 (quote it in YAML to keep it as text)"),
    ({"models": {"asr": {"language": False}}}, "models.asr.language must be a string, got False (quote it"),
    ({"fetch": {"subtitle_languages": ["en", True]}}, "fetch.subtitle_languages must be a list of strings"),
    ({"fetch": {"max_heigth": 1}}, "unknown config key(s) fetch.max_heigth; known: "),
    ({"fetch": 3}, "fetch must be a mapping, got int"),
    ({1: 2, "x": 3}, "unknown config key(s) 1, x"),
])
def test_bad_values_are_clear(data, message):
    with pytest.raises(ConfigError) as err:
        IngestConfig.from_dict(data)
    assert message in str(err.value)


def test_build_dataclass_and_to_jsonable():
    fetch = build_dataclass(FetchConfig, {"backoff_s": "1e-1", "subtitle_languages": "en", "allow_auto_subtitles": "Off"})
    assert fetch == FetchConfig(backoff_s=0.1, subtitle_languages=("en",), allow_auto_subtitles=False)
    with pytest.raises(ConfigError, match="unknown config key.s. models.clip.x"):
        build_dataclass(ModelsConfig, {"clip": {"x": 1}}, "models.")
    assert to_jsonable({"a": (1, (2, 3)), "b": [{"c": ()}]}) == {"a": [1, [2, 3]], "b": [{"c": []}]}
    assert IngestConfig().to_dict() == to_jsonable(dataclasses.asdict(IngestConfig()))


@pytest.mark.parametrize("keys, text, value", [
    (["models", "asr", "language"], "no", "no"),  # str | None: the text as typed
    (["models", "asr", "language"], "null", None),
    (["models", "asr", "language"], "~", None),
    (["models", "asr", "model"], "null", "null"),  # str: null is text too
    (["models", "asr", "model"], "123", "123"),
    (["models", "clip", "enabled"], "no", "no"),  # bool: YAML 1.2, then the builder's words
    (["models", "clip", "enabled"], "true", True),
    (["models", "clip", "batch_size"], "8", 8),
    (["models", "clip", "photo_prompts"], "[a, b]", ["a", "b"]),
    (["fetch", "nope"], "3", 3),  # no such field: YAML, for the builder to refuse
    (["nope", "x"], "no", "no"),
    (["fetch", "retries"], "", ""),
])
def test_field_text_value(keys, text, value):
    got = field_text_value(IngestConfig, keys, text)
    assert got == value and type(got) is type(value)


# ----------------------------------------------------------------------------- the hash


def test_default_hash_is_unchanged():
    # the hash goes into every story: a refactor of the YAML reading must not move it
    assert IngestConfig().hash() == "9e5a5d50a3f5bb97"
    assert IngestConfig.load(None).hash() == IngestConfig.from_dict({}).hash() == "9e5a5d50a3f5bb97"
    assert IngestConfig.from_dict({"models": {"clip": {"enabled": True}}}).hash() == "9539ae1e33ba0de8"


def test_config_file_with_every_section_keeps_its_hash(tmp_path):
    path = tmp_path / "every.yaml"
    path.write_text(EVERY_SECTION)
    cfg = IngestConfig.load(path)
    assert {f.name for f in dataclasses.fields(IngestConfig)} <= set(yaml.safe_load(EVERY_SECTION))
    # the same config (and hash) as PyYAML's YAML 1.1 reading of the same file gave before
    assert cfg == IngestConfig.from_dict(yaml.safe_load(EVERY_SECTION))
    assert cfg.hash() == "0c66ab30300787c0"
    assert cfg.models.clip.enabled and cfg.models.asr.active and cfg.models.captions.enabled
    assert (cfg.fetch.prefer_manual_subtitles, cfg.text.split_sentences, cfg.ebook.cover_frame) == (False, False, True)


def test_defaults_written_out_keep_the_default_hash(tmp_path):
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump(IngestConfig().to_dict()))
    assert IngestConfig.load(path) == IngestConfig()
    assert IngestConfig.load(path).hash() == IngestConfig().hash()


# ----------------------------------------------------------------------------- run.executor (Dask)


def test_run_settings_change_neither_the_hash_nor_any_stage_key(tmp_path):
    from pipeline.book.stages import book_work
    from pipeline.sources import SourceDefaults, SourceItem
    from pipeline.video.stages import video_work

    local = IngestConfig()
    dask = IngestConfig.from_dict({"run": {"executor": "dask", "dask_address": "tcp://scheduler.example:8786",
                                           "dask_workers": 8, "decode_workers": 6, "download_workers": 1}})
    assert dask.run.executor == "dask" and dask.run.dask_address == "tcp://scheduler.example:8786"
    assert dask.hash() == local.hash() == "9e5a5d50a3f5bb97"
    assert local.with_run(executor="dask", dask_workers=3, dask_address=None).run == dataclasses.replace(
        local.run, executor="dask", dask_workers=3)
    for kind, make in (("video", video_work), ("ebook", book_work)):
        item = SourceItem(source_id="s1", input="https://example.org/a", kind=kind, url="https://example.org/a")
        works = [make(tmp_path / kind, item, cfg, SourceDefaults()) for cfg in (local, dask)]
        assert works[0].source_key == works[1].source_key
        assert {s: works[0].key(s) for s in works[0].stages} == {s: works[1].key(s) for s in works[1].stages}


@pytest.mark.parametrize("run, message", [
    ({"executor": "spark"}, "run.executor must be one of local, dask, got 'spark'"),
    ({"dask_address": "tcp://127.0.0.1:8786"}, "run.dask_address is set ('tcp://127.0.0.1:8786') but run.executor is 'local'"),
    ({"executor": "dask", "dask_address": "127.0.0.1"}, "run.dask_address must be a Dask scheduler address"),
    ({"executor": "dask", "dask_address": "http://host:8786"}, "run.dask_address must be a Dask scheduler address"),
    ({"executor": "dask", "dask_address": "tcp://host:99999"}, "run.dask_address must be a Dask scheduler address"),
    ({"executor": "dask", "dask_workers": -1}, "run.dask_workers must be >= 0"),
])
def test_bad_executor_settings_are_config_errors(run, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        IngestConfig.from_dict({"run": run})


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "scheduler.example:8786", "tls://sched-1.lan:8786",
                                     "tcp://[::1]:8786"])
def test_dask_addresses_that_are_accepted(address):
    assert IngestConfig.from_dict({"run": {"executor": "dask", "dask_address": address}}).run.dask_address == address
