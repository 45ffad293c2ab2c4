"""The full-size architectures of the other families, on PyTorch's meta device.

Shapes without memory: parameter counts per component and FLOPs per denoising step
(`torch.utils.flop_counter` on meta tensors) for `pix2chat bench model --family`, from the
published configs of SDXL InstructPix2Pix (diffusers/sdxl-instructpix2pix-768) and FLUX.1
Kontext [dev]. Nothing is allocated or downloaded, so this runs on any machine in seconds.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.autoencoders.autoencoder_kl_qwenimage import AutoencoderKLQwenImage
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformer2DModel
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    T5Config,
    T5EncoderModel,
)

from editor.architecture import SD15_UNET_CONFIG, SD15_VAE_CONFIG

SDXL_IP2P_UNET: dict[str, Any] = {
    "sample_size": 128,
    "in_channels": 8,  # 4 noisy latent + 4 encoded input image channels
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SD_VAE: dict[str, Any] = {
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
}
FLUX_VAE: dict[str, Any] = {**SD_VAE, "latent_channels": 16, "use_quant_conv": False}
CLIP_L: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "vocab_size": 49408,
    "max_position_embeddings": 77,
}
CLIP_BIG_G: dict[str, Any] = {
    **CLIP_L,
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "projection_dim": 1280,
}
T5_XXL: dict[str, Any] = {
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
}

QWEN25_VL_7B: dict[str, Any] = {
    "text_config": {
        "hidden_size": 3584,
        "intermediate_size": 18944,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 3584,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
    },
}
"""Qwen2.5-VL-7B-Instruct, Qwen-Image-Edit's text encoder."""

DENOISER = {
    "qwen-image-edit": "transformer",
    "instruct-pix2pix": "unet",
    "sdxl-instruct-pix2pix": "unet",
    "flux-kontext": "transformer",
}


def components(family: str) -> dict[str, torch.nn.Module]:
    """The family's modules at full size on the meta device (no memory)."""
    with torch.device("meta"):
        if family == "instruct-pix2pix":
            return {
                "unet": UNet2DConditionModel(**SD15_UNET_CONFIG),
                "vae": AutoencoderKL(**SD15_VAE_CONFIG),
                "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L)),
            }
        if family == "sdxl-instruct-pix2pix":
            return {
                "unet": UNet2DConditionModel(**SDXL_IP2P_UNET),
                "vae": AutoencoderKL(**SD_VAE),
                "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G)),
            }
        if family == "flux-kontext":
            return {
                "transformer": FluxTransformer2DModel(guidance_embeds=True),
                "vae": AutoencoderKL(**FLUX_VAE),
                "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                "text_encoder_2": T5EncoderModel(T5Config(**T5_XXL)),
            }
        if family == "qwen-image-edit":
            return {
                "transformer": QwenImageTransformer2DModel(),
                "vae": AutoencoderKLQwenImage(),
                "text_encoder": Qwen2_5_VLForConditionalGeneration(
                    Qwen2_5_VLConfig(**QWEN25_VL_7B)
                ),
            }
    raise ValueError(f"no full-size architecture for {family!r}")


def parameter_counts(modules: dict[str, torch.nn.Module]) -> dict[str, int]:
    return {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}


def flops_per_step(family: str, denoiser: torch.nn.Module, side: int = 1024) -> int:
    """FLOPs of one denoising step for one image of side x side pixels.

    Both InstructPix2Pix families run their UNet on three branches (text+image, image, neither) each
    step; Kontext is guidance-distilled (one pass) over the noisy and the input image tokens;
    Qwen-Image-Edit makes two passes (true CFG), counted as a batch of two.
    """
    latent = side // 8
    with torch.device("meta"):
        if family == "instruct-pix2pix":
            inputs: dict[str, Any] = {
                "sample": torch.empty(3, 8, latent, latent),
                "timestep": torch.ones(1),
                "encoder_hidden_states": torch.empty(3, 77, 768),
            }
        elif family == "sdxl-instruct-pix2pix":
            batch = 3
            inputs = {
                "sample": torch.empty(batch, 8, latent, latent),
                "timestep": torch.ones(1),
                "encoder_hidden_states": torch.empty(batch, 77, 2048),
                "added_cond_kwargs": {
                    "text_embeds": torch.empty(batch, 1280),
                    "time_ids": torch.empty(batch, 6),
                },
            }
        elif family == "qwen-image-edit":
            side_tokens = latent // 2
            inputs = {
                "hidden_states": torch.empty(2, side_tokens**2 * 2, 64),
                "encoder_hidden_states": torch.empty(2, 512, 3584),
                "encoder_hidden_states_mask": torch.ones(2, 512, dtype=torch.long),
                "timestep": torch.ones(2),
                "img_shapes": [[(1, side_tokens, side_tokens)] * 2] * 2,
            }
        else:
            tokens = (latent // 2) ** 2 * 2  # 2x2 patches of the noisy and the input latents
            inputs = {
                "hidden_states": torch.empty(1, tokens, 64),
                "encoder_hidden_states": torch.empty(1, 512, 4096),
                "pooled_projections": torch.empty(1, 768),
                "timestep": torch.ones(1),
                "guidance": torch.ones(1),
                "img_ids": torch.zeros(tokens, 3),
                "txt_ids": torch.zeros(512, 3),
            }
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        denoiser(**inputs)
    return int(counter.get_total_flops())
