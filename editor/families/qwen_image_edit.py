"""Qwen-Image-Edit: text guidance becomes true classifier-free guidance; no image guidance.

Qwen-Image-Edit has no distilled guidance: pix2chat's text guidance is its `true_cfg_scale`
(4 in Qwen's examples) against a blank negative prompt, two transformer passes a step. The
pipeline encodes the input at about 1 MP whatever the output size (its own rule); the output
is asked for at the working size, whose sides `FamilyEditor` made multiples of 16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit import QwenImageEditPipeline
from PIL import Image

from editor.base import EditRequest
from editor.families.adapter import StepCallback, reporting
from editor.families.registry import QWEN_IMAGE_EDIT

MAX_SEQUENCE_LENGTH = 512
"""Instruction tokens Qwen-Image-Edit reads."""


class QwenImageEditAdapter:
    """`QwenImageEditPipeline`."""

    family = QWEN_IMAGE_EDIT
    tokenizer_subfolder = "tokenizer"

    def load(self, model: str, torch_dtype: torch.dtype) -> Any:
        return QwenImageEditPipeline.from_pretrained(model, dtype=torch_dtype)

    def instruction_limit(self, tokenizer_max: int) -> int:
        return min(tokenizer_max, MAX_SEQUENCE_LENGTH)

    def multiple(self, pipe: Any) -> int:
        return int(pipe.vae_scale_factor) * 2

    def run(
        self,
        pipe: Any,
        requests: Sequence[EditRequest],
        size: tuple[int, int],
        generators: list[torch.Generator],
        on_step: StepCallback,
    ) -> list[Image.Image]:
        params = requests[0].params
        width, height = size

        output = pipe(
            image=[request.image for request in requests],
            prompt=[request.instruction for request in requests],
            negative_prompt=[" "] * len(requests),
            true_cfg_scale=params.guidance_scale,
            height=height,
            width=width,
            num_inference_steps=params.num_inference_steps,
            generator=generators,
            callback_on_step_end=reporting(on_step),
            max_sequence_length=MAX_SEQUENCE_LENGTH,
            output_type="pil",
        )
        return list(output.images)
