"""The full-size random-weight architecture is the published one, and it really runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.models.unets.unet_2d_condition import UNet2DConditionModel
from PIL import Image
from transformers import CLIPTextConfig, CLIPTextModel

from bot.commands.bench_model_timing import unet_flops_per_sample
from editor.architecture import (
    CLIP_VIT_L14_TEXT_CONFIG,
    SD15_UNET_CONFIG,
    SD15_VAE_CONFIG,
    TEXT_ENCODER_PARAMETERS,
    UNET_PARAMETERS,
    VAE_PARAMETERS,
    build_full_size_pipeline,
    parameter_count,
)
from editor.base import EditRequest
from editor.memory import _peak_bytes, estimate_memory
from editor.params import EditParams
from editor.pix2pix import DiffusersEditor
from editor.speed import SpeedOptions


def test_parameter_counts_are_sd15_instruct_pix2pix() -> None:
    with torch.device("meta"):  # shapes only: instant, no memory
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_VIT_L14_TEXT_CONFIG))

    assert parameter_count(unet) == UNET_PARAMETERS == 859_532_484
    assert round(UNET_PARAMETERS / 1e6, 1) == 859.5  # the figure
    assert unet.conv_in.in_channels == 8  # noisy latents + encoded input image
    assert parameter_count(vae) == VAE_PARAMETERS
    assert parameter_count(text_encoder) == TEXT_ENCODER_PARAMETERS


def test_unet_flops_match_the_published_estimate() -> None:
    """~0.80 TFLOP per 512x512 sample; attention makes 768 px more than 2.25x that."""
    at_512 = unet_flops_per_sample(SD15_UNET_CONFIG, 512)
    at_768 = unet_flops_per_sample(SD15_UNET_CONFIG, 768)

    assert 0.78e12 < at_512 < 0.82e12
    assert at_768 > 2.25 * at_512


@pytest.mark.slow
def test_full_size_pipeline_edits_and_fused_options_agree() -> None:
    """Built in seconds (no default init), 64x64 so each UNet call is cheap on a CPU."""
    pipeline = build_full_size_pipeline("cpu", torch.float32)
    assert parameter_count(pipeline.unet) == UNET_PARAMETERS
    assert pipeline.text_encoder.get_input_embeddings().weight.shape == (49408, 768)
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    request = EditRequest(
        Image.fromarray(pixels, "RGB"), "make it night", EditParams(num_inference_steps=2, seed=3)
    )

    [plain] = DiffusersEditor("sd15-random", device="cpu", pipeline=pipeline).edit_batch([request])
    fused = DiffusersEditor(
        "sd15-random",
        device="cpu",
        pipeline=pipeline,
        speed=SpeedOptions(fuse_qkv=True, channels_last=True),
    )
    [optimised] = fused.edit_batch([request])

    values = np.asarray(plain).astype(np.int16)
    assert values.std() > 1  # the random network produces a picture, not a constant
    assert np.abs(values - np.asarray(optimised).astype(np.int16)).max() <= 4
    assert "FusedAttnProcessor2_0" in fused.describe()["attention"]


def test_live_bytes_follow_tensors_as_they_are_freed() -> None:
    """Two 1 MiB tensors alive at once, then one at a time: the peak is 2 MiB, not 3."""

    def work() -> torch.Tensor:
        first = torch.ones(256, 1024, device="meta")  # 1 MiB of float32
        second = first * 2  # 1 MiB more; 2 MiB live
        view = second[:128]  # a view: no new memory
        del first
        third = view + 1  # 0.5 MiB; 1.5 MiB live
        del second, view
        return third

    assert _peak_bytes(work) == 2 * 2**20


def test_memory_estimate_fits_a_512_batch_of_4_in_8_gb_at_fp16() -> None:
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD15_UNET_CONFIG)
        vae = AutoencoderKL(**SD15_VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_VIT_L14_TEXT_CONFIG))
    for module in (unet, vae, text_encoder):
        torch.nn.Module.to(module, torch.float16)

    one = estimate_memory(unet, vae, text_encoder, 512, 512, 1, torch.float16)
    four = estimate_memory(unet, vae, text_encoder, 512, 512, 4, torch.float16)

    assert (
        one.weights
        == four.weights
        == 2 * (UNET_PARAMETERS + VAE_PARAMETERS + TEXT_ENCODER_PARAMETERS)
    )
    assert four.vae_decode == pytest.approx(4 * one.vae_decode, rel=0.05)  # linear in batch
    assert one.total < 4 * 2**30  # the VRAM target at batch 1
    assert four.total < 8 * 10**9 * 0.85  # room for the CUDA context and fragmentation
