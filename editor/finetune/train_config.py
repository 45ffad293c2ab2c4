"""The options of a training run, checked before anything heavy loads, and what a run did.

Apart from the trainer so the CLI can build and validate a run, and name its errors, without
importing diffusers or peft.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

MIXED_PRECISION: dict[str, torch.dtype | None] = {
    "no": None,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


class TrainingError(Exception):
    """The training run cannot start as configured (bad option, unusable dataset)."""


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """One training run; names follow diffusers' train_instruct_pix2pix options.

    Args:
        model: InstructPix2Pix hub id or folder to fine-tune.
        dataset: pair folder from `pix2chat dataset images`, or a hub dataset with
            original_image / edit_prompt / edited_image columns.
        output_dir: where the adapter, checkpoints, validation images and the log go.
        full_finetune: train every UNet weight instead of a LoRA (needs a large GPU).
        lora_rank, lora_alpha: LoRA size and scale (alpha defaults to the rank).
        conditioning_dropout_prob: share of samples that lose the text, the image, or both.
        mixed_precision: "no", "fp16" (CUDA) or "bf16".
        checkpointing_steps: save a resumable checkpoint every this many optimizer steps.
        validation_steps: edit the validation pairs every this many steps (0: never).
    """

    model: str
    dataset: str
    output_dir: Path
    resolution: int = 256
    train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_train_steps: int = 1000
    learning_rate: float = 1e-4
    lr_warmup_steps: int = 0
    adam_weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    full_finetune: bool = False
    lora_rank: int = 16
    lora_alpha: int | None = None
    conditioning_dropout_prob: float = 0.05
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    validation_steps: int = 0
    num_validation_images: int = 4
    validation_inference_steps: int = 20
    random_flip: bool = True
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.mixed_precision not in MIXED_PRECISION:
            raise TrainingError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, "
                f"not {self.mixed_precision!r}."
            )
        for name in ("train_batch_size", "gradient_accumulation_steps", "max_train_steps"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, not {getattr(self, name)}.")
        if self.resolution % 8:
            raise TrainingError(f"resolution must be a multiple of 8, not {self.resolution}.")
        if not 0 <= self.conditioning_dropout_prob <= 1 / 3:
            raise TrainingError("conditioning_dropout_prob must be between 0 and 1/3.")
        if not self.full_finetune and self.lora_rank < 1:
            raise TrainingError(f"lora_rank must be at least 1, not {self.lora_rank}.")

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data


@dataclass(slots=True)
class TrainResult:
    """What a run did: the step it reached and where its output is."""

    step: int
    output_dir: Path
    losses: list[float] = field(default_factory=list)
    resumed_from: int = 0
