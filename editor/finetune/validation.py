"""Validation edits during training: a few pairs edited by the model as it trains, and scored.

Apart from the loop because it is inference, not training: it runs the pipeline, saves the
edits for a person to look at, and gives one number (mean L1 to the true edit) for the log.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from PIL import Image

from editor.finetune.data import EditPair, to_tensor
from editor.finetune.metrics import l1_distance


def validation_edits(
    pipe: StableDiffusionInstructPix2PixPipeline,
    pairs: Sequence[EditPair],
    folder: Path,
    *,
    resolution: int,
    inference_steps: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> float:
    """Edit `pairs` (seeded by their index), save the results in `folder`, return their mean L1."""
    folder.mkdir(parents=True, exist_ok=True)
    distances = []
    for index, pair in enumerate(pairs):
        image = _square(pair.original_image, resolution)
        with torch.inference_mode(), autocast():
            images, _ = pipe(
                prompt=pair.edit_prompt,
                image=image,
                num_inference_steps=inference_steps,
                generator=torch.Generator().manual_seed(index),
                return_dict=False,
            )
        output: Image.Image = images[0]
        output.save(folder / f"{index:02d}.png")
        distances.append(l1_distance(output, _square(pair.edited_image, resolution)))
    return sum(distances) / len(distances)


def _square(image: Image.Image, resolution: int) -> Image.Image:
    array = ((to_tensor(image, resolution).permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255)
    return Image.fromarray(array.to(torch.uint8).numpy())
