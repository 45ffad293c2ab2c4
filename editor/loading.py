"""Loading the InstructPix2Pix pipeline: device, dtype, weights, LoRA, tokenizer, preview decoder.

Everything slow or fallible that happens once, before the first edit. Each failure becomes a
`ModelLoadError` that names the thing that could not be loaded and the editor argument that
chose it (`ModelLoadError.option`); callers add where that argument came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from transformers import CLIPTokenizer

from editor.errors import ModelLoadError
from editor.speed import Attention

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}


def select_device(preference: str) -> str:
    """ "auto" takes the fastest device present, else exactly the one asked.

    An explicit device that is missing is an error rather than a silent fallback to the CPU,
    which would make every edit a hundred times slower without saying why.
    """
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if preference == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if preference == "cpu" or (preference == "cuda" and cuda) or (preference == "mps" and mps):
        return preference
    if preference in DEVICES:
        raise ModelLoadError(
            f"The device {preference!r} was asked for but PyTorch cannot see that device "
            f"(torch {torch.__version__}). Check the driver and the torch build, "
            "or use the device 'auto'.",
            option="device",
            value=preference,
            suggestion="auto",
        )
    raise ModelLoadError(
        f"The device must be one of {', '.join(DEVICES)}, not {preference!r}.",
        option="device",
        value=preference,
    )


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """ "auto" is float16 on CUDA, which halves memory and time there; on other devices float16
    is slow or unsupported, so float32."""
    if dtype == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return DTYPES[dtype]


def load_pipeline(
    model: str, torch_dtype: torch.dtype, *, safety_checker: bool
) -> StableDiffusionInstructPix2PixPipeline:
    """`from_pretrained`, with the repo's NSFW checker only when asked for."""
    check_local_path(model, "model")
    safety: dict[str, Any] = (
        {} if safety_checker else {"safety_checker": None, "requires_safety_checker": False}
    )
    try:
        return StableDiffusionInstructPix2PixPipeline.from_pretrained(
            model, dtype=torch_dtype, **safety
        )
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the InstructPix2Pix model {model!r}: {exc}\n"
            "The model is a Hugging Face hub id or a folder written by save_pretrained "
            "(with model_index.json)." + offline_hint(),
            option="model",
            value=model,
        ) from exc


def prepare_pipeline(
    pipe: StableDiffusionInstructPix2PixPipeline,
    *,
    model: str,
    device: str,
    torch_dtype: torch.dtype | None,
    attention: Attention,
) -> None:
    """Scheduler, attention processors and device; `torch_dtype` also casts the weights.

    Euler ancestral is the scheduler InstructPix2Pix was published with. PyTorch's fused
    scaled-dot-product attention is diffusers' default on torch 2, but
    `set_default_attn_processor` would switch to the slow classic one, so it is named here.
    """
    pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    processor = AttnProcessor2_0 if attention == "sdpa" else AttnProcessor
    pipe.unet.set_attn_processor(processor())
    pipe.vae.set_attn_processor(processor())
    pipe.set_progress_bar_config(disable=True)
    try:
        if torch_dtype is not None:
            pipe.to(device, torch_dtype)
        else:
            pipe.to(device)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not move {model!r} to {device}: {exc}", option="device", value=device
        ) from exc


def fuse_lora(pipe: StableDiffusionInstructPix2PixPipeline, lora: str, model: str) -> None:
    """Merge the adapter into the base weights, so inference costs what it costs without it."""
    check_local_path(lora, "lora")
    try:
        pipe.load_lora_weights(lora)
        pipe.fuse_lora()
        pipe.unload_lora_weights()  # drops the adapter layers; the fused weights stay
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the LoRA adapter {lora!r} into {model!r}: {exc}\n"
            "The adapter is a hub id or a folder with pytorch_lora_weights.safetensors "
            "trained for this base model." + offline_hint(),
            option="lora",
            value=lora,
        ) from exc


def load_tokenizer(model: str) -> CLIPTokenizer:
    """The model's CLIP tokenizer alone: small and fast, for counting tokens before `load`."""
    try:
        tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(model, subfolder="tokenizer")
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the tokenizer of {model!r}: {exc}" + offline_hint(),
            option="model",
            value=model,
        ) from exc
    return tokenizer


def load_preview_decoder(
    name: str, device: torch.device, torch_dtype: torch.dtype
) -> AutoencoderTiny:
    """The TAESD decoder for progress previews, on the pipeline's device and dtype."""
    check_local_path(name, "preview_model")
    try:
        decoder: AutoencoderTiny = AutoencoderTiny.from_pretrained(name, torch_dtype=torch_dtype)
    except Exception as exc:
        raise ModelLoadError(
            f"Could not load the preview decoder {name!r}: {exc}\n"
            "The preview model is a TAESD AutoencoderTiny (e.g. madebyollin/taesd); "
            "or turn previews off." + offline_hint(),
            option="preview_model",
            value=name,
        ) from exc
    cast(Any, decoder).to(device)  # diffusers' decorator hides ModelMixin.to from mypy
    return decoder


def check_local_path(name: str, option: str) -> None:
    """Fail with a plain message when a path-looking model name names no folder.

    diffusers would otherwise try it as a hub id and report something less direct.
    """
    looks_like_path = name.startswith((".", "~")) or Path(name).is_absolute()
    if looks_like_path and not Path(name).expanduser().exists():
        raise ModelLoadError(
            f"The {option.replace('_', ' ')} {name!r} looks like a path, but there is nothing "
            "there.",
            option=option,
            value=name,
        )


def offline_hint() -> str:
    """Why a hub id may have failed: offline mode without a cached copy, or the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return (
            "\nHF_HUB_OFFLINE is set, so hub ids must already be in the local cache "
            "(download them once with network access, or unset HF_HUB_OFFLINE)."
        )
    return "\nIf it is a hub id, check the network and HF_TOKEN for gated or private repos."
