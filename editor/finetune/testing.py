"""Tiny random-weight models for the fine-tuning pipeline's tests and benchmarks.

Like editor/testing/tiny.py: the weights are noise, but every model is the real class, saved with
`save_pretrained` and loaded by the same hub-id-or-folder path production uses, so the pair
generator, the CLIP filter and the metrics run their real code in seconds on a CPU.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, DDIMScheduler, EulerAncestralDiscreteScheduler
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image
from transformers import (
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPVisionConfig,
    ViTConfig,
    ViTImageProcessorPil,
    ViTModel,
)

from editor.finetune.data import EditPair
from editor.testing.tiny import build_tiny_pipeline, tiny_components, tiny_text_config
from editor.tokenizer import build_byte_tokenizer

TINY_IMAGE_SIZE = 32


def build_tiny_text_to_image(path: Path, seed: int = 0) -> Path:
    """Save a random Stable Diffusion text-to-image pipeline (4-channel UNet) to `path`.

    It has the tiny InstructPix2Pix pipeline's shapes, so Prompt-to-Prompt runs through the same
    cross-attention layers a real SD 1.5 UNet has, only smaller.
    """
    torch.manual_seed(seed)
    unet, vae, tokenizer, text_encoder = tiny_components(in_channels=4)
    components: dict[str, Any] = {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
        ),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }
    pipe = StableDiffusionPipeline(**components, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def build_tiny_clip(path: Path, seed: int = 0) -> Path:
    """Save a random CLIP model, its byte-level tokenizer and a CLIP image processor to `path`."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = build_byte_tokenizer(Path(folder))
    text = tiny_text_config(tokenizer)
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
    )
    config = CLIPConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16
    )
    CLIPModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    CLIPImageProcessorPil(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    ).save_pretrained(path)
    return path


def build_tiny_dino(path: Path, seed: int = 0) -> Path:
    """Save a random ViT (the architecture of facebook/dino-vits16) and its processor to `path`."""
    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=TINY_IMAGE_SIZE,
        patch_size=8,
    )
    ViTModel(config).save_pretrained(path)
    ViTImageProcessorPil(
        size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    ).save_pretrained(path)
    return path


TOY_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (30, 60, 220),
}


def toy_colour_pairs(
    count: int, size: int = 32, seed: int = 0, colours: tuple[str, ...] = tuple(TOY_COLOURS)
) -> list[EditPair]:
    """A task a tiny model can learn on a CPU: "make it blue" turns any flat colour blue.

    Inputs are solid random colours, targets the named colour, so how close an edit gets to its
    target measures whether training worked.
    """
    rng = random.Random(seed)
    names = sorted(colours)
    pairs = []
    for index in range(count):
        name = names[index % len(names)]
        source = tuple(rng.randrange(256) for _ in range(3))
        pairs.append(
            EditPair(
                original_image=Image.new("RGB", (size, size), source),
                edit_prompt=f"make it {name}",
                edited_image=Image.new("RGB", (size, size), TOY_COLOURS[name]),
                original_prompt="a flat colour",
                edited_prompt=f"a flat {name} colour",
            )
        )
    return pairs


def build_toy_pipeline(path: Path, seed: int = 0) -> Path:
    """The tiny InstructPix2Pix pipeline with a VAE that makes its latents learnable.

    A random VAE's posterior is almost pure noise (log-variance near 0) and its latents are far
    from unit variance, so a denoiser trained on them has little to learn. Here the posterior is
    made deterministic and `scaling_factor` brings the latents to unit variance, as SD's VAE
    does, so a short CPU run can show a LoRA learning an edit.
    """
    build_tiny_pipeline(path, seed=seed)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae")
    channels = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[channels:].zero_()
        vae.quant_conv.bias[channels:].fill_(-30.0)  # log-variance: std ~ 3e-7
        colours = torch.rand(64, 3, 1, 1, generator=torch.Generator().manual_seed(seed))
        images = (colours * 2 - 1).expand(64, 3, TINY_IMAGE_SIZE, TINY_IMAGE_SIZE)
        std = float(vae.encode(images).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=1.0 / std)
    vae.save_pretrained(path / "vae")
    # v-prediction (SD 2's objective): at high noise the target is the clean latent itself, which
    # a LoRA can learn from the instruction in a few dozen steps; epsilon targets are pure noise
    # there, learnable only once the UNet has learnt to see through it.
    scheduler = EulerAncestralDiscreteScheduler.from_pretrained(path, subfolder="scheduler")
    scheduler.register_to_config(prediction_type="v_prediction")
    scheduler.save_pretrained(path / "scheduler")
    return path


def toy_colour_sessions(
    sessions: int,
    turns: int = 2,
    size: int = 32,
    seed: int = 0,
    colours: tuple[str, ...] = ("blue", "red"),
) -> list[EditPair]:
    """Multi-turn toy conversations: each turn recolours the previous turn's (true) result."""
    rng = random.Random(seed)
    pairs = []
    for session in range(sessions):
        current = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        current_name = "flat"
        for turn in range(turns):
            name = colours[(session + turn) % len(colours)]
            edited = Image.new("RGB", (size, size), TOY_COLOURS[name])
            pairs.append(
                EditPair(
                    original_image=current,
                    edit_prompt=f"make it {name}",
                    edited_image=edited,
                    original_prompt=f"a {current_name} colour",
                    edited_prompt=f"a flat {name} colour",
                    session=f"s{session}",
                    turn=turn,
                )
            )
            current, current_name = edited, f"flat {name}"
    return pairs
