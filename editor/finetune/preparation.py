"""Getting the model ready to train: frozen VAE and text encoder, the trainable UNet, the optimizer.

Which weights train, in which dtype and on which device, is decided here once; the trainer then
only runs the objective and the loop. Frozen parts run in the mixed-precision dtype on CUDA while
the trained weights stay float32, and the LoRA's random start is seeded so two runs with one seed
start alike.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    EulerAncestralDiscreteScheduler,
    UNet2DConditionModel,
)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from peft import LoraConfig
from transformers import CLIPTextModel, CLIPTokenizer

from editor.errors import ModelLoadError
from editor.finetune.train_config import TrainConfig, TrainingError
from editor.lora import LORA_TARGET_MODULES


@dataclass(slots=True)
class TrainingModels:
    """The parts of the InstructPix2Pix pipeline a run needs, ready to train.

    The diffusers parts are typed Any, as in editor.memory: diffusers' lazily imported classes
    are opaque to mypy.
    """

    tokenizer: CLIPTokenizer
    text_encoder: CLIPTextModel
    vae: Any  # AutoencoderKL
    unet: Any  # UNet2DConditionModel
    noise_scheduler: Any  # DDPMScheduler
    frozen_dtype: torch.dtype


def load_models(
    config: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None
) -> TrainingModels:
    """Load `config.model`, freeze all but the UNet (or its LoRA), and move it to `device`."""
    # Frozen parts run in the mixed-precision dtype on CUDA; trained weights stay float32.
    frozen = amp_dtype if device.type == "cuda" and amp_dtype else torch.float32
    try:
        tokenizer = CLIPTokenizer.from_pretrained(config.model, subfolder="tokenizer")
        text_encoder = CLIPTextModel.from_pretrained(config.model, subfolder="text_encoder")
        vae = AutoencoderKL.from_pretrained(config.model, subfolder="vae")
        unet = UNet2DConditionModel.from_pretrained(config.model, subfolder="unet")
        noise_scheduler = DDPMScheduler.from_pretrained(config.model, subfolder="scheduler")
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the InstructPix2Pix model {config.model!r} to train: {exc}"
        ) from exc
    if unet.config.in_channels != 8:
        raise TrainingError(
            f"{config.model!r} has a {unet.config.in_channels}-channel UNet; training "
            "needs an InstructPix2Pix model (8 input channels), e.g. timbrooks/instruct-pix2pix."
        )
    vae.requires_grad_(False).to(device)
    text_encoder.requires_grad_(False)
    text_encoder.to(device)  # type: ignore[arg-type]
    if frozen != torch.float32:
        vae.to(dtype=frozen)
        text_encoder.to(dtype=frozen)  # type: ignore[call-arg]
    unet.requires_grad_(config.full_finetune)
    if not config.full_finetune:
        # LoRA's A matrix starts random: seeded, so two runs with one seed start alike.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            _add_lora(unet, config)
    unet.to(device)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    unet.train()
    return TrainingModels(tokenizer, text_encoder, vae, unet, noise_scheduler, frozen)


def _add_lora(unet: Any, config: TrainConfig) -> None:
    unet.add_adapter(
        LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha or config.lora_rank,
            init_lora_weights="gaussian",
            target_modules=LORA_TARGET_MODULES,
        )
    )


def make_optimizer(
    unet: Any, config: TrainConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable weights, with a linear warm-up to the learning rate."""
    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.adam_weight_decay
    )
    warmup = max(config.lr_warmup_steps, 0)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    return optimizer, lr_scheduler


def autocast(
    device: torch.device, amp_dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """Mixed precision for the UNet's forward pass, or nothing when the run is float32."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def inference_pipeline(models: TrainingModels) -> StableDiffusionInstructPix2PixPipeline:
    """An inference pipeline sharing the weights being trained."""
    components: dict[str, Any] = {
        "vae": models.vae,
        "text_encoder": models.text_encoder,
        "tokenizer": models.tokenizer,
        "unet": models.unet,
        "scheduler": EulerAncestralDiscreteScheduler.from_config(models.noise_scheduler.config),
        "safety_checker": None,
        "feature_extractor": None,
    }
    pipe = StableDiffusionInstructPix2PixPipeline(**components, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
