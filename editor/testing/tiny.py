"""A tiny random-weight InstructPix2Pix pipeline (and a tiny CLIPSeg), so tests and benchmarks
run the real diffusers and transformers code.

The weights are noise, so the pictures are meaningless, but every code path (tokenizer, text
encoder, VAE with the real 8x downscale, UNet with cross-attention, scheduler, LoRA loading) is
the one production uses, and a 20-step edit at 512x384 takes seconds on a CPU.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel

# From their modules, not the package root: there mypy sees diffusers' dummy placeholder classes.
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPSegConfig,
    CLIPSegForImageSegmentation,
    CLIPSegProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    ViTImageProcessor,
)

from editor.lora import LORA_TARGET_MODULES
from editor.tokenizer import MAX_POSITION_EMBEDDINGS, build_byte_tokenizer


def tiny_components(
    in_channels: int,
) -> tuple[UNet2DConditionModel, AutoencoderKL, CLIPTokenizer, CLIPTextModel]:
    """The tiny UNet, VAE, byte-level tokenizer and CLIP text encoder, in a fixed build order.

    `in_channels` is 8 for InstructPix2Pix (4 noisy latent channels + 4 channels of the encoded
    input image) and 4 for text-to-image. Seed torch first: the weights follow from it.
    """
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=in_channels,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = build_byte_tokenizer(Path(folder))
    return unet, vae, tokenizer, CLIPTextModel(tiny_text_config(tokenizer))


def tiny_text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """A two-layer CLIP text encoder config sized for the byte-level tokenizer."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_POSITION_EMBEDDINGS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_pipeline(path: Path, seed: int = 0) -> Path:
    """Save a random-weight InstructPix2Pix pipeline to `path` (about 4 MB) and return `path`.

    Same seed, same weights, so tests can compare pixels across runs.
    """
    torch.manual_seed(seed)
    unet, vae, tokenizer, text_encoder = tiny_components(in_channels=8)
    scheduler = EulerAncestralDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    # A dict because diffusers' annotations reject what its docs allow (None, any scheduler).
    components: dict[str, Any] = {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
    }
    pipe = StableDiffusionInstructPix2PixPipeline(**components, requires_safety_checker=False)
    pipe.save_pretrained(path)
    return path


def build_tiny_lora(pipeline_dir: Path, out_dir: Path, seed: int = 1) -> Path:
    """Save a random LoRA for the tiny UNet's attention projections, in diffusers' LoRA format.

    peft starts LoRA's B matrix at zero (an adapter that changes nothing); `init_lora_weights=False`
    keeps both matrices random so loading the adapter visibly changes the output.
    """
    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(pipeline_dir, subfolder="unet")
    unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=LORA_TARGET_MODULES, init_lora_weights=False)
    )
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionInstructPix2PixPipeline.save_lora_weights(out_dir, unet_lora_layers=layers)
    return out_dir


def build_tiny_preview_decoder(path: Path, seed: int = 2) -> Path:
    """Save a random `AutoencoderTiny` (TAESD's architecture, a few channels wide) to `path`.

    Same 8x upscale and 4 latent channels as TAESD, so it decodes the tiny pipeline's latents.
    """
    torch.manual_seed(seed)
    decoder = AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    decoder.save_pretrained(path)
    return path


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_CLIPSEG_SIDE = 64
"""The tiny CLIPSeg's input and output side (the released checkpoints use 352)."""


def tiny_clipseg_config(tokenizer: CLIPTokenizer) -> CLIPSegConfig:
    """CLIPSeg's real architecture, a few channels wide: 2-layer text and vision encoders
    (64 px images in 16 px patches) and a one-layer decoder fed by vision layer 1."""
    text = tiny_text_config(tokenizer).to_dict()
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": TINY_CLIPSEG_SIDE,
        "patch_size": 16,
    }
    return CLIPSegConfig(
        text_config=text,
        vision_config=vision,
        projection_dim=16,
        extract_layers=[1],
        reduce_dim=16,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )


def build_tiny_clipseg(path: Path, seed: int = 3) -> Path:
    """Save a random-weight CLIPSeg model and its processor to `path` (about 350 kB).

    Loadable like `CIDAS/clipseg-rd64-refined` (CLIPSegProcessor + CLIPSegForImageSegmentation
    `from_pretrained`); the byte-level tokenizer needs no download. Same seed, same weights.
    """
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = build_byte_tokenizer(Path(folder))
    model = CLIPSegForImageSegmentation(tiny_clipseg_config(tokenizer))
    images = ViTImageProcessor(
        do_resize=True,
        size={"height": TINY_CLIPSEG_SIDE, "width": TINY_CLIPSEG_SIDE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    model.save_pretrained(path)
    CLIPSegProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(path)
    return path


def build_tiny_clip(path: Path, seed: int = 3) -> Path:
    """Save a random-weight CLIP (two-layer text and vision towers, 32x32 images) with its
    processor to `path`, loadable like `openai/clip-vit-large-patch14` by the scorer."""
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = build_byte_tokenizer(Path(folder))
    text = tiny_text_config(tokenizer).to_dict()
    vision = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    model.save_pretrained(path)
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(path)
    return path
