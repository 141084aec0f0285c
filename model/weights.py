"""StoryGen's weights: which UNet parameters they are, their file, and where a run keeps them.

StoryGen trains two groups of UNet parameters: the self-attention of every transformer block
(stage 1) and the image cross-attention processors (stage 2). Only those are saved, in fp32, as
one ``storygen.safetensors`` file. A training run keeps one in each checkpoint directory:

    {output_dir}/checkpoints/step-{step:07d}/storygen.safetensors

and a checkpoint is complete once its ``state.json`` exists (``model.checkpoint`` writes it last).
Loading accepts a weights file, a checkpoint directory, or a run directory (its latest checkpoint).

This module is a leaf of ``model/``: ``model.checkpoint`` and ``model.storygen`` import it, and it
imports neither, so the two never import each other.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from pipeline.errors import ModelLoadError

WEIGHTS_NAME = "storygen.safetensors"
STATE_NAME = "state.json"  # a checkpoint's run state, written last: its presence means the checkpoint is whole
STEP_RE = re.compile(r"^step-(\d+)$")


# ----------------------------------------------------------------------------- which parameters


def is_self_attention(name: str) -> bool:
    return ".transformer_blocks." in name and ".attn1." in name


def is_image_attention(name: str) -> bool:
    return ".attn2.processor." in name


def is_storygen_weight(name: str) -> bool:
    """The parameters StoryGen ever trains: self-attention (stage 1) and image attention (stage 2)."""
    return is_self_attention(name) or is_image_attention(name)


# ----------------------------------------------------------------------------- where a run keeps them


def checkpoints_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoints_dir(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        m = STEP_RE.match(child.name)
        if m and (child / STATE_NAME).is_file():
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The run's complete checkpoint with the highest step, or None when it has none."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def resolve_weights_file(path: str | Path) -> Path:
    """A weights file, a checkpoint directory, or a run directory (its latest checkpoint) -> the file."""
    given = path = Path(path)
    if path.is_dir() and not (path / WEIGHTS_NAME).is_file():
        path = latest_checkpoint(path) or path
    if path.is_dir():
        path = path / WEIGHTS_NAME
    if not path.is_file():
        raise ModelLoadError(f"StoryGen weights not found at {given}: give a {WEIGHTS_NAME} file, a checkpoint "
                             "directory (runs/NAME/checkpoints/step-N) or a run directory that holds checkpoints")
    return path


# ----------------------------------------------------------------------------- save and load


def storygen_state_dict(unet) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().cpu().contiguous() for k, v in unet.state_dict().items() if is_storygen_weight(k)}


def save_storygen_weights(unet, path: Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(storygen_state_dict(unet), str(tmp))
    tmp.replace(path)
    return path


def load_storygen_weights(unet, path: str | Path) -> None:
    """Load StoryGen weights: a weights file, a checkpoint directory, or a run directory (its latest
    checkpoint)."""
    from safetensors.torch import load_file

    path = resolve_weights_file(path)
    state = load_file(str(path))
    own = {k for k in unet.state_dict() if is_storygen_weight(k)}
    unexpected, missing = sorted(set(state) - own), sorted(own - set(state))
    if unexpected or missing:
        raise ModelLoadError(f"StoryGen weights {path} do not fit this UNet (made from another base model?): "
                             f"{len(unexpected)} unexpected key(s) {unexpected[:3]}, {len(missing)} missing {missing[:3]}")
    result = unet.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys
