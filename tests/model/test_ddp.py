"""Two CPU processes (gloo) run StoryGen DDP steps through the real training loop."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from model.config import StoryGenConfig
from tests.conftest import free_port

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _worker(rank: int, world: int, port: int, overrides: list[str], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from model.train import train

    result = train(StoryGenConfig.load(None, overrides))
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "world_size": result.world_size, "backend": result.backend, "digest": result.trainable_digest,
        "losses": result.losses, "local_losses": result.local_losses}))


def test_two_gloo_processes_take_the_same_ddp_steps(story_dataset, tiny_sd, tmp_path):
    run = tmp_path / "run"
    overrides = [f"model.pretrained={tiny_sd}", f"data.dataset={story_dataset}", "data.resolution=32",
                 "data.num_workers=0", "data.window_shuffle=4", "train.stage=2", "train.batch_size=2",
                 "train.max_steps=2", "train.lr=1e-3", "train.sample_every=0", f"train.output_dir={run}"]
    mp.start_processes(_worker, args=(2, free_port(), overrides, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2] and ranks[0]["backend"] == "gloo"
    # each rank saw its own shards and noise, yet gradients were averaged: identical weights
    assert ranks[0]["local_losses"] != ranks[1]["local_losses"]
    assert ranks[0]["losses"] == ranks[1]["losses"]  # the logged loss is the mean over both ranks
    for step, mean in ranks[0]["losses"].items():
        assert abs(mean - (ranks[0]["local_losses"][step] + ranks[1]["local_losses"][step]) / 2) < 1e-5
    assert ranks[0]["digest"] == ranks[1]["digest"]
    ckpt = run / "checkpoints" / "step-0000002"
    assert json.loads((ckpt / "state.json").read_text())["world_size"] == 2
    assert {p.name for p in ckpt.glob("rng-*.pt")} == {"rng-0.pt", "rng-1.pt"}
    from safetensors.torch import load_file

    weights = load_file(str(ckpt / "storygen.safetensors"))
    assert any(v.abs().sum() > 0 for k, v in weights.items() if k.endswith("processor.to_out.weight"))
