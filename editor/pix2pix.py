"""The real editor: diffusers' InstructPix2Pix pipeline, one call per micro-batch.

The pipeline is used as diffusers ships it; this module only decides how it is loaded (device,
dtype, scheduler, attention, LoRA, safety checker) and turns a batch of `EditRequest`s into one
pipeline call with one seeded generator per sample.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.models.attention_processor import AttnProcessor2_0

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from PIL import Image
from transformers import CLIPTokenizer

from editor.base import EditRequest, ProgressCallback

DEVICES = ("auto", "cuda", "mps", "cpu")
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}


class ModelLoadError(Exception):
    """The model could not be loaded (wrong id/path, offline, missing files)."""


def select_device(preference: str) -> str:
    """Resolve `PIX2CHAT_DEVICE`: "auto" takes the fastest device present, else exactly the one asked.

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
            f"PIX2CHAT_DEVICE={preference!r} but PyTorch cannot see that device "
            f"(torch {torch.__version__}). Check the driver and the torch build, "
            "or set PIX2CHAT_DEVICE=auto."
        )
    raise ModelLoadError(
        f"PIX2CHAT_DEVICE must be one of {', '.join(DEVICES)}, not {preference!r}."
    )


class DiffusersEditor:
    """Edits photos with `StableDiffusionInstructPix2PixPipeline`.

    Construction is cheap; `load` does the slow work and is called once from the model thread
    (or on the first `edit_batch`).

    Args:
        model: hub id (e.g. "timbrooks/instruct-pix2pix") or a folder saved by `save_pretrained`.
        lora: optional LoRA adapter (hub id or folder), fused into the UNet at load.
        device: "auto", "cuda", "mps" or "cpu".
        safety_checker: run the model repo's own NSFW checker (it blacks out flagged results).
        dtype: "auto" (float16 on CUDA, float32 elsewhere), "float16", "bfloat16" or "float32".
    """

    def __init__(
        self,
        model: str,
        *,
        lora: str | None = None,
        device: str = "auto",
        safety_checker: bool = False,
        dtype: str = "auto",
    ) -> None:
        if dtype != "auto" and dtype not in DTYPES:
            raise ValueError(
                f"`dtype` must be 'auto' or one of {', '.join(DTYPES)}, not {dtype!r}."
            )
        self.model = model
        self.lora = lora
        self.device = device
        self.safety_checker = safety_checker
        self.dtype = dtype
        self.max_instruction_tokens = 75  # CLIP's 77 positions minus start and end markers
        self._pipe: StableDiffusionInstructPix2PixPipeline | None = None
        self._torch_dtype: torch.dtype | None = None
        # A tokenizer of our own: count_tokens runs on the event loop while the pipeline's
        # tokenizer runs in the model thread, and a Rust tokenizer must not be shared that way.
        self._counter: CLIPTokenizer | None = None

    def load(self) -> None:
        """Load the pipeline onto the device; any failure becomes a `ModelLoadError`."""
        if self._pipe is not None:
            return
        device = select_device(self.device)
        torch_dtype = self._resolve_dtype(device)
        self._check_local_path(self.model, "PIX2CHAT_MODEL")
        safety: dict[str, Any] = (
            {}
            if self.safety_checker
            else {"safety_checker": None, "requires_safety_checker": False}
        )
        try:
            pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
                self.model, dtype=torch_dtype, **safety
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load the InstructPix2Pix model {self.model!r}: {exc}\n"
                "Check PIX2CHAT_MODEL: a Hugging Face hub id or a folder written by "
                "save_pretrained (with model_index.json)." + self._offline_hint()
            ) from exc
        if self.safety_checker and pipe.safety_checker is None:
            raise ModelLoadError(
                f"The safety checker was requested but {self.model!r} does not ship one; "
                "turn the safety checker off or use a model repo that has one."
            )

        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        # PyTorch's fused scaled-dot-product attention. It is diffusers' default on torch 2, but
        # `set_default_attn_processor` would switch to the slow classic one, so name it here.
        pipe.unet.set_attn_processor(AttnProcessor2_0())
        pipe.vae.set_attn_processor(AttnProcessor2_0())
        pipe.set_progress_bar_config(disable=True)
        try:
            pipe.to(device)
        except Exception as exc:
            raise ModelLoadError(f"Could not move {self.model!r} to {device}: {exc}") from exc
        if self.lora is not None:
            self._fuse_lora(pipe, self.lora)

        self._pipe = pipe
        self._torch_dtype = torch_dtype
        self._use_tokenizer(copy.deepcopy(pipe.tokenizer))

    def count_tokens(self, instruction: str) -> int:
        """Tokens the text encoder would see, without start/end markers and without truncating.

        Before `load`, only the (small, fast) tokenizer is loaded, so admission checks do not
        have to wait for the model.
        """
        if self._counter is None:
            self._use_tokenizer(self._load_tokenizer())
        assert self._counter is not None
        ids = self._counter(instruction, add_special_tokens=False, truncation=False).input_ids
        return len(ids)

    def edit_batch(
        self, requests: Sequence[EditRequest], progress: ProgressCallback | None = None
    ) -> list[Image.Image]:
        """Run every request in one pipeline call, each with its own seed; results in order.

        Raises:
            ValueError: the batch is empty, or its requests differ in steps, guidance or size.
        """
        if not requests:
            raise ValueError("`requests` must contain at least one request.")
        key = requests[0].params.batch_key()
        size = requests[0].image.size
        for request in requests[1:]:
            if request.params.batch_key() != key:
                raise ValueError(
                    "All requests of a batch must share `num_inference_steps`, `guidance_scale` and "
                    f"`image_guidance_scale`, but got {key} and {request.params.batch_key()}."
                )
            if request.image.size != size:
                raise ValueError(
                    f"All images of a batch must have the same size, but got {size} "
                    f"and {request.image.size}."
                )
        self.load()
        pipe = self._pipe
        assert pipe is not None
        factor = pipe.vae_scale_factor
        if size[0] % factor or size[1] % factor:
            raise ValueError(f"Image sides must be multiples of {factor}, but got {size}.")

        def on_step_end(
            pipeline: StableDiffusionInstructPix2PixPipeline,
            step_index: int,
            timestep: torch.Tensor,
            callback_kwargs: dict[str, Any],
        ) -> dict[str, Any]:
            if progress is not None:
                progress(step_index + 1, pipeline.num_timesteps)
            return callback_kwargs

        num_inference_steps, guidance_scale, image_guidance_scale = key
        # MPS generators are not reproducible across runs; diffusers recommends CPU ones there.
        generator_device = "cpu" if pipe.device.type == "mps" else pipe.device
        generators = [
            torch.Generator(device=generator_device).manual_seed(request.params.seed)
            for request in requests
        ]
        with torch.inference_mode():
            images, _nsfw = pipe(
                prompt=[request.instruction for request in requests],
                image=[request.image.convert("RGB") for request in requests],
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                image_guidance_scale=image_guidance_scale,
                generator=generators,
                # diffusers annotates this as Callable[[int, int], None]; it takes these four.
                callback_on_step_end=on_step_end,  # type: ignore[arg-type]
                output_type="pil",
                return_dict=False,
            )
        return [image.convert("RGB") for image in images]

    def describe(self) -> dict[str, str]:
        """Facts for `pix2chat doctor`; before `load`, what was asked for."""
        facts = {"model": self.model, "lora": self.lora or "none"}
        if self._pipe is None:
            return facts | {
                "device": f"{self.device} (not loaded)",
                "dtype": f"{self.dtype} (not loaded)",
                "scheduler": "not loaded",
                "attention": "not loaded",
            }
        processors = sorted({type(p).__name__ for p in self._pipe.unet.attn_processors.values()})
        sdpa = processors == [AttnProcessor2_0.__name__]
        return facts | {
            "device": str(self._pipe.device),
            "dtype": str(self._torch_dtype).removeprefix("torch."),
            "scheduler": type(self._pipe.scheduler).__name__,
            "attention": ", ".join(processors) + (" (PyTorch SDPA)" if sdpa else ""),
        }

    def _resolve_dtype(self, device: str) -> torch.dtype:
        """float16 halves memory and time on CUDA; elsewhere it is slow or unsupported."""
        if self.dtype == "auto":
            return torch.float16 if device == "cuda" else torch.float32
        return DTYPES[self.dtype]

    def _fuse_lora(self, pipe: StableDiffusionInstructPix2PixPipeline, lora: str) -> None:
        """Merge the adapter into the base weights, so inference costs what it costs without it."""
        self._check_local_path(lora, "PIX2CHAT_LORA")
        try:
            pipe.load_lora_weights(lora)
            pipe.fuse_lora()
            pipe.unload_lora_weights()  # drops the adapter layers; the fused weights stay
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load the LoRA adapter {lora!r} into {self.model!r}: {exc}\n"
                "Check PIX2CHAT_LORA: a hub id or a folder with pytorch_lora_weights.safetensors "
                "trained for this base model." + self._offline_hint()
            ) from exc

    def _load_tokenizer(self) -> CLIPTokenizer:
        try:
            tokenizer: CLIPTokenizer = CLIPTokenizer.from_pretrained(
                self.model, subfolder="tokenizer"
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load the tokenizer of {self.model!r}: {exc}\n"
                "Check PIX2CHAT_MODEL." + self._offline_hint()
            ) from exc
        return tokenizer

    def _use_tokenizer(self, tokenizer: CLIPTokenizer) -> None:
        self._counter = tokenizer
        self.max_instruction_tokens = tokenizer.model_max_length - 2

    @staticmethod
    def _check_local_path(name: str, setting: str) -> None:
        """Fail with a plain message when a path-looking setting names no folder.

        diffusers would otherwise try it as a hub id and report something less direct.
        """
        looks_like_path = name.startswith((".", "~")) or Path(name).is_absolute()
        if looks_like_path and not Path(name).expanduser().exists():
            raise ModelLoadError(
                f"{setting}={name!r} looks like a path, but there is nothing there."
            )

    @staticmethod
    def _offline_hint() -> str:
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
            return (
                "\nHF_HUB_OFFLINE is set, so hub ids must already be in the local cache "
                "(download them once with network access, or unset HF_HUB_OFFLINE)."
            )
        return "\nIf it is a hub id, check the network and HF_TOKEN for gated or private repos."
