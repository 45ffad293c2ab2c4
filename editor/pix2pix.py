"""The real editor: diffusers' InstructPix2Pix pipeline, one call per micro-batch.

The pipeline is used as diffusers ships it; this module only decides how it is loaded (device,
dtype, scheduler, attention, LoRA, safety checker) and turns a batch of `EditRequest`s into one
pipeline call with one seeded generator per sample.
"""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.models.attention_processor import (
    AttnProcessor,
    AttnProcessor2_0,
    FusedAttnProcessor2_0,
)
from diffusers.models.autoencoders.autoencoder_tiny import AutoencoderTiny

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from PIL import Image
from transformers import CLIPTokenizer

from editor.base import EditRequest, ProgressCallback, is_out_of_memory
from editor.params import EditParams
from editor.preview import PreviewCallback, TinyDecoder
from editor.speed import WARM_UP_STEPS, SpeedOptions, free_memory, padded_plan

log = logging.getLogger(__name__)

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


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """`PIX2CHAT_DTYPE`: "auto" is float16 on CUDA, which halves memory and time there; on other
    devices float16 is slow or unsupported, so float32."""
    if dtype == "auto":
        return torch.float16 if device == "cuda" else torch.float32
    return DTYPES[dtype]


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
        speed: attention, memory format, fused projections, torch.compile, CUDA graphs and
            previews (editor/speed.py); the default is SDPA attention and nothing else.
        pipeline: an already-built pipeline to use instead of loading `model` (the benchmark's
            full-size random-weight one); `model` then only names it.

    A batch that runs out of GPU memory is split in halves and retried, down to single
    requests; only a single request that still does not fit raises.
    """

    def __init__(
        self,
        model: str,
        *,
        lora: str | None = None,
        device: str = "auto",
        safety_checker: bool = False,
        dtype: str = "auto",
        speed: SpeedOptions | None = None,
        pipeline: StableDiffusionInstructPix2PixPipeline | None = None,
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
        self.speed = speed or SpeedOptions()
        self.oom_splits = 0  # batches split after running out of memory, for logs and the bench
        self._prebuilt = pipeline
        self.max_instruction_tokens = 75  # CLIP's 77 positions minus start and end markers
        self._pipe: StableDiffusionInstructPix2PixPipeline | None = None
        self._torch_dtype: torch.dtype | None = None
        # A tokenizer of our own: count_tokens runs on the event loop while the pipeline's
        # tokenizer runs in the model thread, and a Rust tokenizer must not be shared that way.
        self._counter: CLIPTokenizer | None = None
        self._device_type = "cpu"
        self._preview: TinyDecoder | None = None
        # torch.compile'd modules next to the plain ones, and the shapes compiled so far:
        # batches of other shapes run the plain modules instead of compiling on a user's time.
        self._plain: dict[str, torch.nn.Module] = {}
        self._compiled: dict[str, torch.nn.Module] = {}
        self._warm: set[tuple[int, int, int]] = set()  # (width, height, batch size)

    def load(self) -> None:
        """Load the pipeline onto the device; any failure becomes a `ModelLoadError`."""
        if self._pipe is not None:
            return
        device = select_device(self.device)
        torch_dtype = self._resolve_dtype(device)
        pipe = self._prebuilt or self._from_pretrained(torch_dtype)
        if self.safety_checker and pipe.safety_checker is None:
            raise ModelLoadError(
                f"The safety checker was requested but {self.model!r} does not ship one; "
                "turn the safety checker off or use a model repo that has one."
            )

        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        # PyTorch's fused scaled-dot-product attention. It is diffusers' default on torch 2, but
        # `set_default_attn_processor` would switch to the slow classic one, so name it here.
        processor = AttnProcessor2_0 if self.speed.attention == "sdpa" else AttnProcessor
        pipe.unet.set_attn_processor(processor())
        pipe.vae.set_attn_processor(processor())
        pipe.set_progress_bar_config(disable=True)
        try:
            if self._prebuilt is not None and self._prebuilt.unet.dtype != torch_dtype:
                pipe.to(device, torch_dtype)
            else:
                pipe.to(device)
        except Exception as exc:
            raise ModelLoadError(f"Could not move {self.model!r} to {device}: {exc}") from exc
        if self.lora is not None:
            self._fuse_lora(pipe, self.lora)
        self._device_type = torch.device(device).type
        self._apply_speed_options(pipe, torch_dtype)

        self._pipe = pipe
        self._torch_dtype = torch_dtype
        self._use_tokenizer(copy.deepcopy(pipe.tokenizer))
        log.info(
            "model %s on %s, %s, %s",
            self.model,
            pipe.device,
            str(torch_dtype).removeprefix("torch."),
            self.speed.summary(self._device_type),
        )
        if self._compiled:
            try:
                self._warm_up()
            except ModelLoadError:
                self._pipe = None  # not half-loaded: a retry of `load` starts over
                raise

    def _apply_speed_options(
        self, pipe: StableDiffusionInstructPix2PixPipeline, torch_dtype: torch.dtype
    ) -> None:
        """Memory format, fused projections, preview decoder and compiled modules (after LoRA).

        Fusing copies the current projection weights, so it must follow LoRA fusing; compiling
        must follow both, since it captures the modules as they are.
        """
        speed = self.speed
        if speed.channels_last:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if speed.fuse_qkv:
            pipe.unet.fuse_qkv_projections()
            pipe.vae.fuse_qkv_projections()
        if speed.preview == "taesd":
            self._preview = TinyDecoder(self._load_preview_decoder(pipe.device, torch_dtype))
        if speed.cuda_graphs and self._device_type != "cuda":
            log.warning("PIX2CHAT_CUDA_GRAPHS is ignored on %s: CUDA graphs need CUDA", pipe.device)
        if speed.compile == "off":
            return
        options: dict[str, Any] = {"dynamic": False, "backend": speed.compile_backend}
        mode = speed.inductor_mode(self._device_type)
        if mode is not None:
            options["mode"] = mode
        self._plain["unet"] = pipe.unet
        self._compiled["unet"] = self._compile(pipe.unet, options)
        if speed.compile == "unet+vae":
            self._plain["decoder"] = pipe.vae.decoder
            self._compiled["decoder"] = self._compile(pipe.vae.decoder, options)
        # One graph per shape; keep them all rather than falling back to eager after eight.
        shapes = len(speed.compile_sizes) * len(set(speed.compile_batch_sizes))
        config = torch._dynamo.config
        name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
        setattr(config, name, max(getattr(config, name), shapes + 2))

    @staticmethod
    def _compile(module: torch.nn.Module, options: dict[str, Any]) -> torch.nn.Module:
        compiled = torch.compile(module, **options)
        assert isinstance(compiled, torch.nn.Module)  # an OptimizedModule wrapping `module`
        return compiled

    def _load_preview_decoder(
        self, device: torch.device, torch_dtype: torch.dtype
    ) -> AutoencoderTiny:
        name = self.speed.preview_model
        self._check_local_path(name, "PIX2CHAT_PREVIEW_MODEL")
        try:
            decoder: AutoencoderTiny = AutoencoderTiny.from_pretrained(
                name, torch_dtype=torch_dtype
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load the preview decoder {name!r}: {exc}\n"
                "Check PIX2CHAT_PREVIEW_MODEL (a TAESD AutoencoderTiny, e.g. madebyollin/taesd), "
                "or set PIX2CHAT_PREVIEW=off." + self._offline_hint()
            ) from exc
        cast(Any, decoder).to(device)  # diffusers' decorator hides ModelMixin.to from mypy
        return decoder

    def _warm_up(self) -> None:
        """Compile every configured (size, batch size) now, so no user pays for it.

        A batch size that does not fit in memory is left out (with a warning) along with the
        larger ones; batches of those sizes are then split into the compiled sizes that fit.
        """
        started = time.perf_counter()
        for width, height in self.speed.compile_sizes:
            image = Image.new("RGB", (width, height), (128, 128, 128))
            for batch_size in sorted(set(self.speed.compile_batch_sizes)):
                requests = [
                    EditRequest(image, "warm up", EditParams(num_inference_steps=WARM_UP_STEPS))
                ] * batch_size
                try:
                    self._run(requests, batch_size, compiled=True)
                except Exception as error:
                    if not is_out_of_memory(error):
                        raise ModelLoadError(
                            f"torch.compile failed while warming up {width}x{height} at batch "
                            f"{batch_size}: {error}\nSet PIX2CHAT_COMPILE=off to run without it."
                        ) from error
                    log.warning(
                        "no memory to compile batch %d at %dx%d; larger batches there will be split",
                        batch_size,
                        width,
                        height,
                    )
                    oom = True
                else:
                    oom = False
                    self._warm.add((width, height, batch_size))
                if oom:
                    free_memory(self._device_type)
                    break
        log.info(
            "compiled %d shape(s) in %.0f s (%s)",
            len(self._warm),
            time.perf_counter() - started,
            self.speed.summary(self._device_type),
        )

    def _from_pretrained(self, torch_dtype: torch.dtype) -> StableDiffusionInstructPix2PixPipeline:
        self._check_local_path(self.model, "PIX2CHAT_MODEL")
        safety: dict[str, Any] = (
            {}
            if self.safety_checker
            else {"safety_checker": None, "requires_safety_checker": False}
        )
        try:
            return StableDiffusionInstructPix2PixPipeline.from_pretrained(
                self.model, dtype=torch_dtype, **safety
            )
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load the InstructPix2Pix model {self.model!r}: {exc}\n"
                "Check PIX2CHAT_MODEL: a Hugging Face hub id or a folder written by "
                "save_pretrained (with model_index.json)." + self._offline_hint()
            ) from exc

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
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        """Run every request in one pipeline call, each with its own seed; results in order.

        With compiled shapes, the batch is padded up to (or split into) compiled batch sizes;
        out of memory, it is split in halves and retried. Either way each request gets the
        result it would get alone, within floating-point tolerance.

        Args:
            requests: same size, steps and guidance scales; own seeds and instructions.
            progress: called after every denoising step (once per chunk if the batch is split).
            preview: called every `SpeedOptions.preview_every` steps with TAESD previews,
                when previews are configured (`SpeedOptions.preview`); otherwise never.

        Raises:
            ValueError: the batch is empty, or its requests differ in steps, guidance or size.
            torch.OutOfMemoryError: a single request does not fit in memory.
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
        return self._edit_splitting_on_oom(list(requests), progress, preview, 0)

    def _edit_splitting_on_oom(
        self,
        requests: list[EditRequest],
        progress: ProgressCallback | None,
        preview: PreviewCallback | None,
        offset: int,
    ) -> list[Image.Image]:
        """Halve the batch until it fits: a slower edit beats a failed one."""
        try:
            return self._edit_in_compiled_shapes(requests, progress, preview, offset)
        except Exception as error:
            if len(requests) == 1 or not is_out_of_memory(error):
                raise
            log.warning(
                "batch of %d at %dx%d ran out of memory; retrying as two halves",
                len(requests),
                *requests[0].image.size,
            )
        # Outside the except block, so the failed attempt's tensors (held by the traceback)
        # are already released when the cache is emptied.
        self.oom_splits += 1
        free_memory(self._device_type)
        half = (len(requests) + 1) // 2
        first = self._edit_splitting_on_oom(requests[:half], progress, preview, offset)
        rest = self._edit_splitting_on_oom(requests[half:], progress, preview, offset + half)
        return first + rest

    def _edit_in_compiled_shapes(
        self,
        requests: list[EditRequest],
        progress: ProgressCallback | None,
        preview: PreviewCallback | None,
        offset: int,
    ) -> list[Image.Image]:
        """Use the compiled graphs when this shape has them (padding the batch), else the plain modules."""
        sizes = self._compiled_batch_sizes(requests[0])
        if not sizes:
            return self._run(requests, len(requests), False, progress, preview, offset)
        results: list[Image.Image] = []
        for real, padded in padded_plan(len(requests), sizes):
            chunk = requests[len(results) : len(results) + real]
            results += self._run(chunk, padded, True, progress, preview, offset + len(results))
        return results

    def _compiled_batch_sizes(self, request: EditRequest) -> list[int]:
        """Batch sizes compiled for this request's shape; none without compile or guidance.

        Without classifier-free guidance (a guidance scale of 1) the UNet sees a third of the
        batch, a shape that was not compiled.
        """
        params = request.params
        if not self._compiled or params.guidance_scale <= 1.0 or params.image_guidance_scale < 1.0:
            return []
        width, height = request.image.size
        return sorted(b for w, h, b in self._warm if (w, h) == (width, height))

    def _run(
        self,
        requests: Sequence[EditRequest],
        batch_size: int,
        compiled: bool,
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
        offset: int = 0,
    ) -> list[Image.Image]:
        """One pipeline call, padded to `batch_size` by repeating the last request."""
        pipe = self._pipe
        assert pipe is not None
        real = len(requests)
        padded = [*requests, *[requests[-1]] * (batch_size - real)]
        modules = self._compiled if compiled else self._plain
        if "unet" in modules:
            pipe.unet = modules["unet"]
        if "decoder" in modules:
            pipe.vae.decoder = modules["decoder"]
        previews = self._preview if preview is not None else None
        every = self.speed.preview_every

        def on_step_end(
            pipeline: StableDiffusionInstructPix2PixPipeline,
            step_index: int,
            timestep: torch.Tensor,
            callback_kwargs: dict[str, Any],
        ) -> dict[str, Any]:
            step, total = step_index + 1, pipeline.num_timesteps
            if progress is not None:
                progress(step, total)
            if previews is not None and preview is not None and step % every == 0 and step < total:
                images = previews.decode(callback_kwargs["latents"][:real])
                preview(step, total, {offset + i: image for i, image in enumerate(images)})
            return callback_kwargs

        num_inference_steps, guidance_scale, image_guidance_scale = padded[0].params.batch_key()
        # MPS generators are not reproducible across runs; diffusers recommends CPU ones there.
        generator_device = "cpu" if pipe.device.type == "mps" else pipe.device
        generators = [
            torch.Generator(device=generator_device).manual_seed(request.params.seed)
            for request in padded
        ]
        with torch.inference_mode():
            images, _nsfw = pipe(
                prompt=[request.instruction for request in padded],
                image=[request.image.convert("RGB") for request in padded],
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                image_guidance_scale=image_guidance_scale,
                generator=generators,
                # diffusers annotates this as Callable[[int, int], None]; it takes these four.
                callback_on_step_end=on_step_end,  # type: ignore[arg-type]
                output_type="pil",
                return_dict=False,
            )
        return [image.convert("RGB") for image in images[:real]]

    def describe(self) -> dict[str, str]:
        """Facts for `pix2chat doctor`; before `load`, what was asked for."""
        facts = {"model": self.model, "lora": self.lora or "none"}
        if self._pipe is None:
            return facts | {
                "device": f"{self.device} (not loaded)",
                "dtype": f"{self.dtype} (not loaded)",
                "scheduler": "not loaded",
                "attention": "not loaded",
                "speed": f"{self.speed.summary()} (not loaded)",
            }
        processors = sorted({type(p).__name__ for p in self._pipe.unet.attn_processors.values()})
        sdpa = processors in ([AttnProcessor2_0.__name__], [FusedAttnProcessor2_0.__name__])
        return facts | {
            "device": str(self._pipe.device),
            "dtype": str(self._torch_dtype).removeprefix("torch."),
            "scheduler": type(self._pipe.scheduler).__name__,
            "attention": ", ".join(processors) + (" (PyTorch SDPA)" if sdpa else ""),
            "speed": self.speed.summary(self._device_type)
            + (f", {len(self._warm)} shape(s) compiled" if self._compiled else ""),
        }

    def _resolve_dtype(self, device: str) -> torch.dtype:
        return resolve_dtype(self.dtype, device)

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
