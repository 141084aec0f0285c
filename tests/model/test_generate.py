"""`storyloom generate` and `storyloom evaluate` on a checkpoint trained from the real shards."""

from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image

from flows.cli import main as storyloom
from model.config import StoryGenConfig

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def run(story_dataset, tiny_sd, tmp_path_factory):
    run = tmp_path_factory.mktemp("gen") / "stage2"
    sets = {"model.pretrained": tiny_sd, "data.resolution": 32, "data.num_workers": 0, "train.batch_size": 2,
            "train.max_steps": 1, "train.sample_every": 0, "sample.steps": 2}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    assert storyloom(["train", "--dataset", str(story_dataset), "--out", str(run), "--stage", "2", *args]) == 0
    return run


def test_generate_writes_one_image_per_prompt(run, tmp_path):
    out = tmp_path / "story"
    prompts = tmp_path / "story.txt"
    prompts.write_text("Mia climbs into the moon boat.\n\nThey sail past the stars.\n")
    code = storyloom(["generate", "--checkpoint", str(run), "--prompt", "Mia cannot sleep.", "--prompts", str(prompts),
                      "--out", str(out), "--set", "sample.resolution=48", "--set", "sample.steps=2"])
    assert code == 0
    frames = sorted(out.glob("frame-*.png"))
    assert [f.name for f in frames] == ["frame-000.png", "frame-001.png", "frame-002.png"]
    assert all(Image.open(f).size == (48, 48) and Image.open(f).mode == "RGB" for f in frames)
    sheet = Image.open(out / "contact-sheet.png")
    assert sheet.width == 3 * 48 and sheet.height > 48
    story = json.loads((out / "story.json").read_text())
    assert [f["prompt"] for f in story["frames"]] == ["Mia cannot sleep.", "Mia climbs into the moon boat.",
                                                      "They sail past the stars."]
    assert story["weights"].endswith("step-0000001")


def test_generate_without_prompts_is_a_usage_error(run, tmp_path, capsys):
    assert storyloom(["generate", "--checkpoint", str(run), "--out", str(tmp_path)]) == 2
    assert "--prompt" in capsys.readouterr().err


def test_three_way_guidance_uses_the_image_scale_only_with_context(run):
    from model.checkpoint import read_checkpoint
    from model.generate import generator_for, load_for_inference

    info = read_checkpoint(run)
    cfg = info.config.with_overrides([f"model.weights={info.path}", "sample.steps=2"])
    model = load_for_inference(cfg, "cpu")
    torch.manual_seed(0)
    for proc in model.image_attention.values():  # a strongly trained context branch
        torch.nn.init.normal_(proc.to_out.weight, std=0.5)

    def story(image_scale):
        return generator_for(model, cfg.with_overrides([f"sample.image_scale={image_scale}"])).story(
            ["a fox", "the fox runs"], seed=3)

    weak, strong = story(0.0), story(6.0)
    assert torch.equal(weak[0], strong[0])  # the first frame has no context: text guidance only
    assert not torch.allclose(weak[1], strong[1], atol=1e-3)


@pytest.fixture(scope="module")
def metric_models(tmp_path_factory):
    from model.testing import write_random_clip
    from model.storygen import ensure_imports

    root = tmp_path_factory.mktemp("metric_models")
    clip = write_random_clip(root / "clip")
    ensure_imports()
    from torchvision.models import Inception3

    torch.manual_seed(0)
    inception = root / "inception_v3.pth"
    torch.save(Inception3(aux_logits=True, init_weights=False).state_dict(), inception)
    return clip, inception


@pytest.mark.parametrize("features, frames", [("inception", 1), ("clip", 2)])
def test_evaluate_reports_clip_t_clip_i_and_fid(features, frames, run, story_dataset, metric_models, tmp_path):
    clip, inception = metric_models
    out = tmp_path / "eval"
    code = storyloom(["evaluate", "--checkpoint", str(run), "--dataset", str(story_dataset), "--split", "train",
                      "--out", str(out), "--set", f"evaluate.clip_model={clip}",
                      "--set", f"evaluate.inception_weights={inception}", "--set", f"evaluate.fid_features={features}",
                      "--set", f"evaluate.max_frames={frames}", "--set", "sample.steps=2"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["stories"], metrics["frames"], metrics["fid_features"]) == (3, 3 * frames, features)
    assert -1 <= metrics["clip_t"] <= 1 and -1 <= metrics["clip_i"] <= 1
    assert math.isfinite(metrics["fid"]) and metrics["fid"] >= -1e-6
    assert len(list((out / "stories").rglob("frame-*.png"))) == 3 * frames


def test_evaluate_names_a_missing_metric_model(run, story_dataset, tmp_path, capsys):
    code = storyloom(["evaluate", "--checkpoint", str(run), "--dataset", str(story_dataset), "--split", "train",
                      "--out", str(tmp_path), "--set", f"evaluate.clip_model={tmp_path / 'no-clip'}",
                      "--set", "evaluate.max_stories=1", "--set", "evaluate.max_frames=1", "--set", "sample.steps=1",
                      "--set", "model.local_files_only=true"])
    err = capsys.readouterr().err
    assert code == 2 and "CLIP model for evaluation" in err and "evaluate.clip_model=DIR" in err


def test_frechet_distance():
    from model.evaluate import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 4, generator=g)
    assert abs(frechet_distance(a, a)) < 1e-6
    shifted = frechet_distance(a, a + torch.tensor([3.0, 0, 0, 0]))
    assert shifted == pytest.approx(9.0, rel=1e-3)
    b = torch.randn(2000, 4, generator=g) * 2  # variance 4: per dim 1 + 4 - 2*2 = 1
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.1)


def test_config_of_the_checkpoint_is_the_run_config(run, tiny_sd):
    from model.checkpoint import read_checkpoint

    info = read_checkpoint(run)
    assert isinstance(info.config, StoryGenConfig) and info.config.model.pretrained == str(tiny_sd)
    assert info.stage == 2 and info.step == 1
