"""`pix2chat bench finetune`: figures for the fine-tuning pipeline (docs/FINETUNING.md).

Two kinds of figure, kept apart because they mean different things:

- measured here: caption synthesis, and each GPU stage's code path with the tiny random models
  on this machine's device (the pipeline's own overhead, not a real model's speed);
- counted exactly: parameters of the SD 1.5-sized InstructPix2Pix UNet, with and without LoRA,
  built on PyTorch's meta device (no memory, no download), and the bytes of weights, gradients
  and Adam state they imply. Activations are not counted; the guide says how that is estimated.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

Echo = Callable[[str], None]

SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 8,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
}
GIB = 1024**3


def parameter_counts(lora_rank: int = 16) -> tuple[int, int]:
    """(UNet parameters, LoRA parameters) of an SD 1.5-sized InstructPix2Pix UNet."""
    from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
    from peft import LoraConfig

    from editor.lora import LORA_TARGET_MODULES

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET)
    total = sum(p.numel() for p in unet.parameters())
    unet.requires_grad_(False)
    unet.add_adapter(
        LoraConfig(r=lora_rank, lora_alpha=lora_rank, target_modules=LORA_TARGET_MODULES)
    )
    lora = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    return total, lora


def run_finetune_benchmark(echo: Echo, toy_steps: int = 100) -> None:
    """Print every figure; takes about a minute on a CPU."""
    from editor.finetune.captions import SynthesisConfig, synthesize

    started = time.perf_counter()
    rows = synthesize(SynthesisConfig())
    echo(f"captions: {len(rows)} triples (default config) in {time.perf_counter() - started:.2f} s")

    total, lora = parameter_counts()
    echo(f"SD 1.5-sized InstructPix2Pix UNet: {total / 1e6:.1f} M parameters")
    echo(f"LoRA rank 16 on to_q/to_k/to_v/to_out.0: {lora / 1e6:.2f} M parameters")
    # fp16 frozen weights; trained weights, gradients and Adam's two moments in fp32.
    echo(
        f"LoRA training state (frozen UNet in fp16 + adapter weights, grads, Adam in fp32): "
        f"{(2 * total + 16 * lora) / GIB:.2f} GiB"
    )
    echo(f"full fine-tune state (fp32 UNet weights, grads, Adam): {16 * total / GIB:.2f} GiB")

    with tempfile.TemporaryDirectory() as folder:
        _tiny_stages(Path(folder), echo, toy_steps)


def _tiny_stages(folder: Path, echo: Echo, toy_steps: int) -> None:
    from editor.finetune.pairs import load_text_to_image
    from editor.finetune.prompt2prompt import PairSettings, generate_pair
    from editor.finetune.testing import (
        build_tiny_text_to_image,
        build_toy_pipeline,
        toy_colour_pairs,
    )
    from editor.finetune.train_config import TrainConfig
    from editor.finetune.training import Trainer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    echo(
        f"tiny random models on {device}, torch {torch.__version__}, {torch.get_num_threads()} threads:"
    )
    pipe = load_text_to_image(str(build_tiny_text_to_image(folder / "sd")), device)
    settings = PairSettings(num_inference_steps=20, height=64, width=64)
    generate_pair(pipe, "a red sneaker", "a blue sneaker", settings)  # warm-up
    started = time.perf_counter()
    for seed in range(5):
        settings = PairSettings(seed=seed, num_inference_steps=20, height=64, width=64)
        generate_pair(pipe, "a red sneaker", "a blue sneaker on a beach", settings)
    echo(f"  Prompt-to-Prompt pair, 64x64, 20 steps: {(time.perf_counter() - started) / 5:.3f} s")

    model = build_toy_pipeline(folder / "ip2p")
    config = TrainConfig(
        model=str(model),
        dataset="toy",
        output_dir=folder / "lora",
        resolution=32,
        train_batch_size=8,
        max_train_steps=toy_steps,
        learning_rate=1e-2,
        checkpointing_steps=0,
        random_flip=False,
        device=device,
    )
    trainer = Trainer(config, toy_colour_pairs(24, colours=("blue", "red")), progress=False)
    started = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - started
    echo(
        f"  LoRA training, 32x32, batch 8: {toy_steps / seconds:.1f} steps/s "
        f"(loss {sum(result.losses[:10]) / 10:.3f} -> {sum(result.losses[-10:]) / 10:.3f})"
    )
