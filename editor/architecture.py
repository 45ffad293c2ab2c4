"""The full-size InstructPix2Pix architecture with random weights, for honest speed figures.

Speed does not depend on weight values, so the benchmark builds the exact Stable Diffusion 1.5
InstructPix2Pix shapes (UNet with 8 input channels, the SD VAE, CLIP ViT-L/14's text encoder)
from their published configs and fills them with noise: every matmul and convolution the
production model runs, at production size, without downloading 2 GB of weights.

Building through the usual constructors would run PyTorch's default initialisation on 1.07
billion parameters, which takes minutes on a small CPU; the modules are therefore created on
the `meta` device (shapes only) and each parameter is then allocated once and filled with
scaled normal noise (std 1/sqrt(fan_in), norms at 1, biases at 0), which keeps activations in
range through the network so fp16 runs do not overflow.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from torch import nn
from transformers import CLIPTextConfig, CLIPTextModel

from editor.tokenizer import build_byte_tokenizer

SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 8,  # InstructPix2Pix: 4 noisy latent channels + 4 of the encoded input image
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": (
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ),
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
"""Stable Diffusion 1.5's UNet (the config timbrooks/instruct-pix2pix ships, 8 input channels)."""

SD15_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "act_fn": "silu",
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
"""The Stable Diffusion VAE (AutoencoderKL, 8x downscale, 4 latent channels)."""

CLIP_VIT_L14_TEXT_CONFIG: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
}
"""The text half of openai/clip-vit-large-patch14, Stable Diffusion 1.5's text encoder."""

SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "prediction_type": "epsilon",
}

UNET_PARAMETERS = 859_532_484
"""Parameters of the SD 1.5 UNet with 8 input channels: the 4-channel original's 859,520,964
plus 4 x 320 x 3 x 3 = 11,520 input-convolution weights for the image latents."""
VAE_PARAMETERS = 83_653_863
TEXT_ENCODER_PARAMETERS = 123_060_480


def parameter_count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


def build_full_size_pipeline(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> StableDiffusionInstructPix2PixPipeline:
    """The full-size random-weight pipeline, built directly on `device` in `dtype`.

    The tokenizer is the byte-level one of the tiny test model (its ids all fall inside
    CLIP's 49,408-token vocabulary); prompts tokenize to different ids than with CLIP's BPE, but
    the text encoder always sees 77 positions, so its cost is the same.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = build_byte_tokenizer(Path(folder))
    text_config = CLIPTextConfig(
        **CLIP_VIT_L14_TEXT_CONFIG,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.device("meta"):
        text_encoder = CLIPTextModel(text_config)
    modules: tuple[nn.Module, ...] = (unet, vae, cast(nn.Module, text_encoder))
    for module in modules:
        materialize_random(module, device, dtype, generator)
    _restore_clip_buffers(text_encoder, device)
    components: dict[str, Any] = {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": EulerAncestralDiscreteScheduler(**SD15_SCHEDULER_CONFIG),
        "safety_checker": None,
        "feature_extractor": None,
    }
    return StableDiffusionInstructPix2PixPipeline(**components, requires_safety_checker=False)


def materialize_random(
    module: nn.Module, device: str | torch.device, dtype: torch.dtype, generator: torch.Generator
) -> None:
    """Give every meta parameter real storage on `device`, filled with fan-in-scaled noise.

    Noise is drawn on the CPU with `generator` (reproducible on any device) in chunks, then
    copied, so building on a GPU needs no extra host memory beyond one tensor.
    """
    for submodule in module.modules():
        for name, parameter in list(submodule._parameters.items()):
            if parameter is None or not parameter.is_meta:
                continue
            value = torch.empty(parameter.shape, device=device, dtype=dtype)
            if parameter.dim() >= 2:
                fan_in = math.prod(parameter.shape[1:])
                noise = torch.randn(parameter.shape, generator=generator) / math.sqrt(fan_in)
                value.copy_(noise)
            elif name == "weight":
                value.fill_(1.0)  # norm scales
            else:
                value.zero_()
            submodule._parameters[name] = nn.Parameter(value, requires_grad=False)
        for name, buffer in list(submodule._buffers.items()):
            if buffer is not None and buffer.is_meta:
                kind = dtype if buffer.is_floating_point() else buffer.dtype
                submodule._buffers[name] = torch.zeros(buffer.shape, device=device, dtype=kind)


def _restore_clip_buffers(text_encoder: CLIPTextModel, device: str | torch.device) -> None:
    """CLIP's position-id buffer holds 0..76; `materialize_random` only zeroed it."""
    # transformers 5 flattened CLIPTextModel; 4.x kept the layers under `text_model`.
    model = getattr(text_encoder, "text_model", text_encoder)
    embeddings = model.embeddings
    positions = torch.arange(embeddings.position_embedding.num_embeddings, device=device)
    embeddings.position_ids = positions.expand((1, -1))
