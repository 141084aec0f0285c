"""Training checkpoints: StoryGen weights, optimizer, RNG states and the resolved config.

A checkpoint is a directory ``{output_dir}/checkpoints/step-{step:07d}/``:

    storygen.safetensors   the trained weights (self-attention + image cross-attention), fp32
    optimizer.pt           optimizer and learning-rate scheduler state
    rng-{rank}.pt          each process's RNG states (python, numpy, torch, training generator)
    state.json             step, stage, world size and the resolved config; written last

It is written under a temporary name and renamed when complete, so a directory named
``step-*`` with a ``state.json`` is always whole. Resuming takes the highest step by default.
Generation and evaluation accept a run directory (latest checkpoint), a checkpoint directory,
or a weights file with a ``state.json`` beside it. The file names of this layout, the listing of a
run's checkpoints and the weights file itself belong to ``model.weights``.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.config import StoryGenConfig
from model.weights import (
    STATE_NAME,
    WEIGHTS_NAME,
    checkpoints_dir,
    latest_checkpoint,
    list_checkpoints,
    load_storygen_weights,
    save_storygen_weights,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    step: int
    stage: int
    config: StoryGenConfig
    world_size: int

    @property
    def weights(self) -> Path:
        return self.path / WEIGHTS_NAME


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """A run directory (its latest checkpoint), a checkpoint directory, or a weights file in one."""
    path = Path(path)
    if path.is_file():
        path = path.parent
    if not (path / STATE_NAME).is_file():
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no StoryGen checkpoint at {path}: expected a run directory with "
                                    f"checkpoints/step-N/{STATE_NAME}, or a checkpoint directory")
        path = latest
    state = json.loads((path / STATE_NAME).read_text(encoding="utf-8"))
    return CheckpointInfo(path=path, step=int(state["step"]), stage=int(state["stage"]),
                          config=StoryGenConfig.from_dict(state["config"]), world_size=int(state.get("world_size", 1)))


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    import numpy as np

    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
              "generator": generator.get_state(), "generator_device": str(generator.device)}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    import numpy as np

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    generator.set_state(states["generator"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(accelerator, output_dir: str | Path, step: int, cfg: StoryGenConfig, unet, optimizer,
                    lr_scheduler, generator: torch.Generator, keep: int = 0) -> Path:
    """Every process writes its RNG state; the main process writes the rest. Collective call."""
    root = checkpoints_dir(output_dir)
    final = root / f"step-{step:07d}"
    tmp = root / f".step-{step:07d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    torch.save(rng_states(generator), tmp / f"rng-{accelerator.process_index}.pt")
    if accelerator.is_main_process:
        save_storygen_weights(accelerator.unwrap_model(unet), tmp / WEIGHTS_NAME)
        torch.save({"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict()},
                   tmp / "optimizer.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state = {"step": step, "stage": cfg.train.stage, "world_size": accelerator.num_processes,
                 "config": cfg.to_dict(), "config_hash": cfg.hash()}
        (tmp / STATE_NAME).write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        if keep:
            for old in list_checkpoints(output_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        log.info("saved checkpoint %s", final)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(info: CheckpointInfo, accelerator, unet, optimizer, lr_scheduler,
                    generator: torch.Generator) -> None:
    """Restore weights, optimizer, scheduler and this process's RNG states from ``info``."""
    load_storygen_weights(accelerator.unwrap_model(unet), info.weights)
    opt = torch.load(info.path / "optimizer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(opt["optimizer"])
    lr_scheduler.load_state_dict(opt["lr_scheduler"])
    rng_file = info.path / f"rng-{accelerator.process_index}.pt"
    if rng_file.is_file() and info.world_size == accelerator.num_processes:
        restore_rng_states(torch.load(rng_file, map_location="cpu", weights_only=False), generator)
    else:
        log.warning("checkpoint %s was written by %d process(es), this run has %d: RNG streams start afresh",
                    info.path, info.world_size, accelerator.num_processes)
