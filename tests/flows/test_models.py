"""The model stages through the real flow (`storyloom ingest` under a Prefect API, yt-dlp over
loopback), with tiny random models loaded from a temp dir:

- models configured but disabled reproduce the model-free run byte for byte;
- with Whisper, CLIP and a captioner enabled, a video without subtitles gets its narration from
  ASR (timestamped segments, language recorded), a subtitled one keeps its truth texts (timing
  wins over a random CLIP), frames carry scores.clip, scores.align and captions, every model is
  loaded once, and model tasks never run more at once than ``models.max_concurrent``;
- a model that cannot be loaded fails the run before any source is touched.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("open_clip")
pytest.importorskip("transformers")

from flows.cli import main as storyloom  # noqa: E402
from pipeline.models import loading as model_loading  # noqa: E402
from pipeline.synthetic import PageSpec, VideoSpec, write_story_video  # noqa: E402
from tests.conftest import StaticServer, dataset_files  # noqa: E402
from tests.model_helpers import WHISPER_LANGUAGES, write_tiny_models  # noqa: E402
from tests.flows.test_video import STORY, page_html, read_stories  # noqa: E402



@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    server = StaticServer(root)
    pages = lambda n: [PageSpec(text, 2.4 + 0.2 * (i % 3)) for i, text in enumerate(STORY[:n])]  # noqa: E731
    truths = {
        "story": write_story_video(root, "story", VideoSpec(pages=pages(4), style="cut", line_art=True, intro=True, seed=21)),
        "spoken": write_story_video(root, "spoken", VideoSpec(pages=pages(3), seed=22)),
        "story2": write_story_video(root, "story2", VideoSpec(pages=pages(3), style="crossfade", seed=23)),
    }
    (root / "spoken.html").write_text(page_html("Spoken", "spoken.mp4"))  # no subtitle track
    write_story_video(root, "mute", VideoSpec(pages=pages(2), seed=24, audio=False))
    (root / "mute.html").write_text(page_html("Mute", "mute.mp4"))
    entries = "".join(f"  - url: {server.url(name + '.html')}\n" for name in ("story", "spoken", "story2", "mute"))
    sources = root.parent / "sources.yaml"
    sources.write_text("defaults:\n  language: en\n  license: CC0\nsources:\n" + entries)
    yield sources, truths
    server.close()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny-models"))


def write_config(path: Path, models: dict) -> str:
    path.write_text(yaml.safe_dump({"models": models}))
    return str(path)


def run(sources: Path, out: Path, config: str | None = None) -> int:
    args = ["ingest", str(sources), "--out", str(out)] + (["--config", config] if config else [])
    return storyloom(args)


@pytest.fixture(scope="module")
def model_free(site, prefect_harness, tmp_path_factory):
    sources, _ = site
    out = tmp_path_factory.mktemp("model-free") / "out"  # the card is titled after the folder: same name in every run
    assert run(sources, out) == 0
    return out


def test_disabled_models_reproduce_the_model_free_output_exactly(site, tiny, model_free, tmp_path):
    sources, _ = site
    out = tmp_path / "out"
    config = write_config(tmp_path / "config.yaml", tiny.models_section(asr={"mode": "always"}))
    assert run(sources, out, config) == 0
    assert json.loads((out / "config.json").read_text())["config"]["models"]["asr"]["model"] == str(tiny.whisper)
    expected, got = dataset_files(model_free), dataset_files(out)
    assert any(name.startswith("shards/") for name in expected)
    assert got.keys() == expected.keys()
    for name in expected:
        assert got[name] == expected[name], name


class ConcurrencyProbe:
    """Wraps model calls to record how many run at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.calls: list[str] = []

    def wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            with self.lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
                self.calls.append(name)
            try:
                time.sleep(0.2)  # widen the window in which another model task could overlap
                return fn(*args, **kwargs)
            finally:
                with self.lock:
                    self.running -= 1
        return wrapped


@pytest.fixture(scope="module")
def with_models(site, tiny, model_free, prefect_harness, tmp_path_factory):
    import pipeline.text.asr
    import pipeline.models.captions
    import pipeline.models.clip

    sources, _ = site
    out = tmp_path_factory.mktemp("with-models")
    section = tiny.models_section(
        "clip", "asr", "captions", max_concurrent=1,
        # random CLIP weights would drop frames at random: the filters are tested on planted frames
        clip={"filter_photos": False, "filter_text_cards": False, "dedup": False},
    )
    config = write_config(out.parent / f"{out.name}-config.yaml", section)
    probe = ConcurrencyProbe()
    patch = pytest.MonkeyPatch()
    patch.setattr(pipeline.text.asr.AsrTextSource, "transcribe", probe.wrap("asr", pipeline.text.asr.AsrTextSource.transcribe))
    patch.setattr(pipeline.models.clip, "refine_with_clip", probe.wrap("clip", pipeline.models.clip.refine_with_clip))
    patch.setattr(pipeline.models.captions, "caption_images", probe.wrap("captions", pipeline.models.captions.caption_images))
    model_loading.clear_cache()
    try:
        assert run(sources, out, config) == 0
    finally:
        patch.undo()
    return out, probe, dict(model_loading.load_counts())


def test_asr_gives_a_video_without_subtitles_its_narration(site, with_models):
    out, _, _ = with_models
    _, truths = site
    stories = read_stories(out)
    story, images = stories["spoken"]
    assert story["source"]["text_origin"] == f"asr:{Path(story['source']['text_origin'][4:]).name}" == "asr:whisper"
    assert story["source"]["asr_language"] in WHISPER_LANGUAGES
    assert any(f["text"] for f in story["frames"]), "ASR text reaches the frames"
    assert all("no_text_source" not in f["flags"] for f in story["frames"])
    transcript = json.loads((out / "work" / story["story_id"] / "text.json").read_text())
    duration = truths["spoken"].duration_s + 0.05  # the AAC track runs a few ms past the last video frame
    assert transcript["origin"] == "asr:whisper" and transcript["segments"]
    assert all(0 <= s["start"] <= s["end"] <= duration and s["text"].strip() for s in transcript["segments"])
    assert transcript["asr"]["model"].endswith("whisper")
    rows = {Path(r["input"]).stem: r for r in pq.read_table(out / "sources.parquet").to_pylist()}
    assert rows["spoken"]["status"] == "ok"
    assert rows["mute"]["status"] == "failed" and "no audio track and no subtitles" in rows["mute"]["error"]


def test_clip_and_captions_fill_their_fields_and_keep_the_truth(site, with_models, model_free):
    out, _, _ = with_models
    _, truths = site
    stories = read_stories(out)
    for name in ("story", "story2"):
        story, _ = stories[name]
        pages = truths[name].pages()
        assert [f["text"] for f in story["frames"]] == [p.text for p in pages], name  # timing wins
        for frame in story["frames"]:
            assert -1.0 <= frame["scores"]["clip"] <= 1.0
            assert 0.0 < frame["scores"]["align"] <= 1.0
            assert isinstance(frame["caption"], str) and frame["caption"]
        assert story["source"]["text_origin"] == "subtitles:manual"  # prefer-subtitles
    free = read_stories(model_free)
    assert stories["story"][0]["pipeline"]["config_hash"] != free["story"][0]["pipeline"]["config_hash"]
    assert free["story"][0]["frames"][0]["scores"]["clip"] is None and free["story"][0]["frames"][0]["caption"] is None
    catalog = pq.read_table(out / "catalog.parquet").to_pylist()
    assert all(row["caption"] for row in catalog)
    assert "`models`" in (out / "card.md").read_text()


def test_models_load_once_and_model_tasks_are_bounded(with_models):
    _, probe, loads = with_models
    assert sorted(key[0] for key in loads) == ["asr", "captions", "clip"]
    assert set(loads.values()) == {1}  # four sources, one load each
    assert probe.calls.count("clip") == 3 and probe.calls.count("captions") == 3
    assert probe.calls.count("asr") == 2  # only the two videos without subtitles (the mute one has nothing to hear)
    assert probe.peak == 1  # models.max_concurrent


def test_a_model_that_cannot_be_loaded_fails_the_run_at_start(site, tiny, prefect_harness, tmp_path, capsys):
    from flows.ingest import ingest
    from pipeline.models.loading import ModelLoadError

    sources, _ = site
    missing = tmp_path / "models" / "whisper-small"
    config = write_config(tmp_path / "config.yaml", tiny.models_section("asr", asr={"model": str(missing)}))
    out = tmp_path / "out"
    assert run(sources, out, config) == 2
    message = capsys.readouterr().err
    assert "Whisper model 'models/whisper-small'" in message or "whisper-small" in message
    assert str(missing) in message and "models.asr.model: DIR" in message
    assert not (out / "work").exists() or not any((out / "work").iterdir())
    # the flow itself checks too, before its first source
    with pytest.raises(ModelLoadError, match="whisper-small"):
        ingest(str(sources), str(out), config)
    assert not any(p.is_dir() for p in (out / "work").iterdir())
