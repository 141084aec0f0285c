"""StoryGen training on shards from the real ingest: the CLI, checkpoints, resume, overfitting."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from flows.cli import main as storyloom
from model.config import StoryGenConfig
from model.data import StoryWindows, collate_windows, resolve_shards

pytestmark = pytest.mark.usefixtures("torch_one_thread")

RES = 32


def common(tiny_sd, **extra) -> list[str]:
    values = {"model.pretrained": str(tiny_sd), "data.resolution": RES, "data.num_workers": 0,
              "data.window_shuffle": 8, "data.story_shuffle": 2, "train.batch_size": 2, "train.lr": 1e-3,
              "train.log_every": 1, "train.sample_every": 0, "sample.steps": 2, **extra}
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def metrics(run: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


@pytest.fixture(scope="module")
def stage1_run(story_dataset, tiny_sd, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "stage1"
    code = storyloom(["train", "--dataset", str(story_dataset), "--out", str(run), "--stage", "1",
                      *common(tiny_sd, **{"train.max_steps": 4, "train.checkpoint_every": 2,
                                          "train.keep_checkpoints": 1, "train.sample_every": 4,
                                          "sample.max_frames": 3, "sample.num_stories": 1})])
    assert code == 0
    return run


def test_a_few_steps_with_finite_loss(stage1_run):
    losses = metrics(stage1_run)
    assert sorted(losses) == [1, 2, 3, 4] and all(math.isfinite(v) and v > 0 for v in losses.values())


def test_checkpoints_hold_weights_optimizer_and_resolved_config(stage1_run, tiny_sd):
    ckpts = sorted((stage1_run / "checkpoints").iterdir())
    assert [c.name for c in ckpts] == ["step-0000004"]  # keep_checkpoints=1 removed step 2
    files = {p.name for p in ckpts[0].iterdir()}
    assert files == {"storygen.safetensors", "optimizer.pt", "rng-0.pt", "state.json"}
    state = json.loads((ckpts[0] / "state.json").read_text())
    cfg = StoryGenConfig.from_dict(state["config"])
    assert (state["step"], state["stage"], cfg.train.stage) == (4, 1, 1)
    assert cfg.model.pretrained == str(tiny_sd) and cfg.data.resolution == RES and cfg.train.lr == 1e-3
    assert cfg.data.dataset and state["config_hash"] == cfg.hash()


def test_tensorboard_logs_and_sample_stories(stage1_run):
    assert list((stage1_run / "logs").rglob("events.out.tfevents.*"))
    story = stage1_run / "samples" / "step-0000004" / "story-0"
    assert sorted(p.name for p in story.glob("*.png")) == ["contact-sheet.png", "frame-000.png", "frame-001.png",
                                                          "frame-002.png"]


def test_stage2_refuses_a_stage1_run_directory(stage1_run, story_dataset, tiny_sd, capsys):
    code = storyloom(["train", "--dataset", str(story_dataset), "--out", str(stage1_run), "--stage", "2",
                      *common(tiny_sd, **{"train.max_steps": 5})])
    assert code == 2 and "model.weights=" in capsys.readouterr().err


def test_resume_gives_the_same_next_step_loss(stage1_run, story_dataset, tiny_sd, tmp_path):
    args = common(tiny_sd, **{"train.max_steps": 3, "train.checkpoint_every": 2, "train.keep_checkpoints": 0,
                              "train.resume_data": "skip", "model.weights": str(stage1_run)})
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert storyloom(["train", "--dataset", str(story_dataset), "--out", str(straight), "--stage", "2", *args]) == 0
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / "step-0000002", resumed / "checkpoints" / "step-0000002")
    assert storyloom(["train", "--dataset", str(story_dataset), "--out", str(resumed), "--stage", "2", *args]) == 0
    first, second = metrics(straight), metrics(resumed)
    assert sorted(second) == [3]  # it went on from step 2
    assert second[3] == pytest.approx(first[3], rel=1e-6, abs=1e-7)
    from safetensors.torch import load_file

    a = load_file(str(straight / "checkpoints" / "step-0000003" / "storygen.safetensors"))
    b = load_file(str(resumed / "checkpoints" / "step-0000003" / "storygen.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


@pytest.mark.parametrize("stage", [1, 2])
def test_loss_falls_when_overfitting_one_batch(stage, story_dataset, tiny_sd):
    from model.storygen import StoryGen, set_trainable

    cfg = StoryGenConfig.load(None, [f"model.pretrained={tiny_sd}", f"train.stage={stage}", "train.text_dropout=0",
                                     "train.context_dropout=0"])
    max_context = 0 if stage == 1 else 3
    ds = StoryWindows(resolve_shards((), str(story_dataset), "train"), resolution=16, max_context=max_context,
                      min_context=min(1, max_context), repeat=False)
    batch = collate_windows([w for _, w in zip(range(2), ds)])
    model = StoryGen.from_config(cfg.model)
    params = [model.unet.get_parameter(n) for n in set_trainable(model.unet, stage)]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0)
    losses = []
    for _ in range(12):
        # the same timesteps and noise every step: the loss is a function of the weights alone
        loss = model.training_loss(model.unet, batch, cfg.train, torch.Generator().manual_seed(0))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0] and losses[-1] == min(losses), losses
