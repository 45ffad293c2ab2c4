"""The real editor: diffusers' InstructPix2Pix pipeline, one call per micro-batch.

The pipeline is used as diffusers ships it. Loading it (device, dtype, weights, LoRA,
tokenizer) lives in editor/loading.py and the speed options applied after loading (compiled
shapes and their padding) in editor/compiled.py; this module wires the two in `load` and turns
a batch of `EditRequest`s into one pipeline call with one seeded generator per sample.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from diffusers.models.attention_processor import AttnProcessor2_0, FusedAttnProcessor2_0

# From its module, not the package root: there mypy sees diffusers' dummy placeholder class.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_instruct_pix2pix import (
    StableDiffusionInstructPix2PixPipeline,
)
from PIL import Image
from transformers import CLIPTokenizer

from editor.base import EditRequest, ProgressCallback, is_out_of_memory
from editor.compiled import CompiledModules, Shape, apply_speed_options, padded_plan, warm_up
from editor.errors import ModelLoadError
from editor.loading import (
    DTYPES,
    fuse_lora,
    load_pipeline,
    load_preview_decoder,
    load_tokenizer,
    prepare_pipeline,
    resolve_dtype,
    select_device,
)
from editor.preview import PreviewCallback, TinyDecoder
from editor.speed import SpeedOptions, free_memory

log = logging.getLogger(__name__)


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
        self._compiled = CompiledModules()

    # -- Loading and optimisation (once) ----------------------------------------------------------

    def load(self) -> None:
        """Load the pipeline onto the device; any failure becomes a `ModelLoadError`."""
        if self._pipe is not None:
            return
        # 1. Device and dtype
        device = select_device(self.device)
        torch_dtype = resolve_dtype(self.dtype, device)
        # 2. Weights, scheduler, attention, device; LoRA fused into the weights
        pipe = self._prebuilt or load_pipeline(
            self.model, torch_dtype, safety_checker=self.safety_checker
        )
        if self.safety_checker and pipe.safety_checker is None:
            raise ModelLoadError(
                f"The safety checker was requested but {self.model!r} does not ship one; "
                "turn the safety checker off or use a model repo that has one."
            )
        cast_to = (
            torch_dtype
            if self._prebuilt is not None and self._prebuilt.unet.dtype != torch_dtype
            else None
        )
        prepare_pipeline(
            pipe,
            model=self.model,
            device=device,
            torch_dtype=cast_to,
            attention=self.speed.attention,
        )
        if self.lora is not None:
            fuse_lora(pipe, self.lora, self.model)
        # 3. Speed options (after LoRA: they capture the fused weights) and the preview decoder
        self._device_type = torch.device(device).type
        self._compiled = apply_speed_options(pipe, self.speed, self._device_type)
        if self.speed.preview == "taesd":
            decoder = load_preview_decoder(self.speed.preview_model, pipe.device, torch_dtype)
            self._preview = TinyDecoder(decoder)

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
        # 4. Compile every configured shape now, so no user waits for it
        if self._compiled:
            try:
                warm_up(
                    lambda requests, batch_size: self._run(requests, batch_size, compiled=True),
                    self.speed,
                    self._compiled,
                    self._device_type,
                )
            except ModelLoadError:
                self._pipe = None  # not half-loaded: a retry of `load` starts over
                raise

    def unload(self) -> None:
        """Drop the weights (the model pool's LRU, editor/families/pool.py); `load` starts over."""
        self._pipe = None
        self._preview = None
        self._compiled = CompiledModules()
        free_memory(self._device_type)

    def count_tokens(self, instruction: str) -> int:
        """Tokens the text encoder would see, without start/end markers and without truncating.

        Before `load`, only the (small, fast) tokenizer is loaded, so admission checks do not
        have to wait for the model.
        """
        if self._counter is None:
            self._use_tokenizer(load_tokenizer(self.model))
        assert self._counter is not None
        ids = self._counter(instruction, add_special_tokens=False, truncation=False).input_ids
        return len(ids)

    def _use_tokenizer(self, tokenizer: CLIPTokenizer) -> None:
        self._counter = tokenizer
        self.max_instruction_tokens = tokenizer.model_max_length - 2

    # -- What benchmarks and doctor may look at ---------------------------------------------------

    @property
    def pipeline(self) -> StableDiffusionInstructPix2PixPipeline:
        """The loaded diffusers pipeline (after `load`), for measuring it: not for editing.

        Its `unet` and `vae.decoder` are swapped for their compiled versions during a call on
        a compiled shape; hooks that time the UNet belong on `compiled_unet` then.
        """
        if self._pipe is None:
            raise RuntimeError("The pipeline is not loaded yet: call `load` first.")
        return self._pipe

    @property
    def compiled_unet(self) -> torch.nn.Module | None:
        """The torch.compile'd UNet that compiled shapes run, or None without compile.

        Forward hooks go on this wrapper: hooks on the module inside would change what dynamo
        traced and force a recompile.
        """
        return self._compiled.compiled.get("unet")

    @property
    def compiled_shapes(self) -> frozenset[Shape]:
        """(width, height, batch size) shapes compiled and warmed up by `load`."""
        return frozenset(self._compiled.warm)

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
            + (f", {len(self._compiled.warm)} shape(s) compiled" if self._compiled else ""),
        }

    # -- Editing (every call) ---------------------------------------------------------------------

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
        # 0. Check inputs
        check_batch(requests)
        # 1. Load the model (the first time only)
        self.load()
        pipe = self._pipe
        assert pipe is not None
        # 2. Check the image size against the VAE's downscaling
        factor = pipe.vae_scale_factor
        size = requests[0].image.size
        if size[0] % factor or size[1] % factor:
            raise ValueError(f"Image sides must be multiples of {factor}, but got {size}.")
        # 3. Run, in compiled shapes where there are some, halving the batch when out of memory
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
        sizes = self._compiled.batch_sizes(requests[0])
        if not sizes:
            return self._run(requests, len(requests), False, progress, preview, offset)
        results: list[Image.Image] = []
        for real, padded in padded_plan(len(requests), sizes):
            chunk = requests[len(results) : len(results) + real]
            results += self._run(chunk, padded, True, progress, preview, offset + len(results))
        return results

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
        # 1. Pad the batch up to the compiled batch size; the padding's results are dropped
        real = len(requests)
        padded = [*requests, *[requests[-1]] * (batch_size - real)]
        # 2. Swap in the compiled (or the plain) UNet and VAE decoder
        self._compiled.install(pipe, compiled)
        # 3. Define the step callback: progress every step, previews every few
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

        # 4. Define call parameters: shared steps and guidance, one seeded generator per sample
        num_inference_steps, guidance_scale, image_guidance_scale = padded[0].params.batch_key()
        # MPS generators are not reproducible across runs; diffusers recommends CPU ones there.
        generator_device = "cpu" if pipe.device.type == "mps" else pipe.device
        generators = [
            torch.Generator(device=generator_device).manual_seed(request.params.seed)
            for request in padded
        ]
        # 5. Call the pipeline
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
        # 6. Drop the padding's results
        return [image.convert("RGB") for image in images[:real]]


def check_batch(requests: Sequence[EditRequest]) -> None:
    """A concise ValueError unless the requests can share one pipeline call.

    They must be at least one, and share `EditParams.batch_key` (steps and both guidance
    scales) and the image size; seeds and instructions are their own.
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
