"""Checkpoint files of a run: written whole or not at all, found again for an exact resume.

The trainer decides what a checkpoint holds (weights, optimizer, RNG, step); this module owns the
layout on disk (`checkpoints/step-NNNNNN/`), the atomic write, the pruning of old ones, the check
that a checkpoint fits the run before anything is loaded, and the adapter in diffusers' LoRA format
that `DiffusersEditor(model, lora=folder)` fuses at load.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from diffusers.utils import convert_state_dict_to_diffusers
from peft.utils import get_peft_model_state_dict

from editor.finetune.train_config import TrainingError

STATE_FILE = "training_state.pt"
LORA_FILE = "pytorch_lora_weights.safetensors"


def write_checkpoint(
    output_dir: Path,
    step: int,
    state: dict[str, Any],
    save_adapter: Callable[[Path], None] | None,
    keep: int | None,
) -> Path:
    """Save `state` (and, given `save_adapter`, a servable adapter) as the checkpoint of `step`.

    Only the newest `keep` checkpoints stay (all of them when `keep` is None).
    """
    folder = output_dir / "checkpoints" / f"step-{step:06d}"
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    torch.save(state, partial / STATE_FILE)
    if save_adapter is not None:
        save_adapter(partial)
    # Renamed only once complete, so a crash mid-save never leaves a checkpoint to resume.
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    if keep is not None:
        for old in _checkpoints(output_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return folder


def read_checkpoint(folder: Path, current: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The state saved in `folder`, refused unless its trained weights match `current`'s."""
    state: dict[str, Any] = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    saved = state["trainable"]
    if set(current) != set(saved) or any(
        saved[name].shape != value.shape for name, value in current.items()
    ):
        raise TrainingError(
            f"The checkpoint {folder} does not match this run (LoRA rank or full fine-tune "
            "changed?): train into another --output-dir, or pass --no-resume."
        )
    return state


def save_lora(unet: Any, folder: Path) -> None:
    """The UNet's LoRA in diffusers' format (`folder/LORA_FILE`)."""
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionInstructPix2PixPipeline.save_lora_weights(folder, unet_lora_layers=layers)


def _checkpoints(output_dir: Path) -> list[Path]:
    folder = output_dir / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.endswith(".partial") and (p / STATE_FILE).is_file()
    )


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run, if any."""
    found = _checkpoints(output_dir)
    return found[-1] if found else None
