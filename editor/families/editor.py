"""One `Editor` for every non-IP2P family: device, dtype, LoRA, sizes; the adapter does the call.

InstructPix2Pix (SD 1.5) keeps its own, tuned editor (editor/pix2pix.py, with compiled shapes
and previews); `open_editor` picks the right one from the model folder's family. Every family
here works on the request's image snapped down to the family's multiple and hands back
results re-aligned to the request's own size, so the develop step and everything after it
sees what it sees with IP2P.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
from PIL import Image
from transformers import AutoTokenizer

from editor.base import Editor, EditRequest, PreviewCallback, ProgressCallback
from editor.errors import ModelLoadError
from editor.families.adapter import FamilyAdapter
from editor.families.flux_kontext import FluxKontextAdapter
from editor.families.qwen_image_edit import QwenImageEditAdapter
from editor.families.registry import (
    FLUX_KONTEXT,
    INSTRUCT_PIX2PIX,
    QWEN_IMAGE_EDIT,
    SDXL_INSTRUCT_PIX2PIX,
    Family,
    family_of,
    read_model_index,
)
from editor.families.sdxl_pix2pix import SdxlPix2PixAdapter
from editor.loading import DTYPES, fuse_lora, offline_hint, resolve_dtype, select_device
from editor.speed import free_memory

log = logging.getLogger(__name__)


def adapter_for(family: Family) -> FamilyAdapter:
    """The adapter of a family `FamilyEditor` serves."""
    if family == SDXL_INSTRUCT_PIX2PIX:
        return SdxlPix2PixAdapter()
    if family == FLUX_KONTEXT:
        return FluxKontextAdapter()
    if family == QWEN_IMAGE_EDIT:
        return QwenImageEditAdapter()
    raise ValueError(f"{family.name} has its own editor")


class FamilyEditor:
    """Edits with the pipeline of `adapter.family`; construction is cheap, `load` is not.

    Args:
        model: hub id or folder saved by `save_pretrained`.
        adapter: the family's adapter (`adapter_for(read_family(model))`).
        lora: optional LoRA adapter (hub id or folder), fused into the weights at load.
        device: "auto", "cuda", "mps" or "cpu".
        dtype: "auto" (float16 on CUDA, float32 elsewhere), "float16", "bfloat16", "float32".
        offload: diffusers' model CPU offload: only the running component sits on the GPU.
    """

    def __init__(
        self,
        model: str,
        adapter: FamilyAdapter,
        *,
        lora: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        offload: bool = False,
    ) -> None:
        if dtype != "auto" and dtype not in DTYPES:
            raise ValueError(
                f"`dtype` must be 'auto' or one of {', '.join(DTYPES)}, not {dtype!r}."
            )
        self.model = model
        self.adapter = adapter
        self.family = adapter.family
        self.lora = lora
        self.device = device
        self.dtype = dtype
        self.offload = offload
        self.max_instruction_tokens = 75
        self._pipe: Any = None
        self._counter: Any = None
        self._torch_dtype: torch.dtype | None = None
        self._device_type = "cpu"

    def load(self) -> None:
        """Load the pipeline onto the device; any failure becomes a `ModelLoadError`."""
        if self._pipe is not None:
            return
        device = select_device(self.device)
        torch_dtype = resolve_dtype(self.dtype, device)
        try:
            pipe = self.adapter.load(self.model, torch_dtype)
        except Exception as exc:
            raise ModelLoadError(
                f"Could not load the {self.family.name} model {self.model!r}: {exc}"
                + offline_hint(),
                option="model",
                value=self.model,
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        if self.lora is not None:
            fuse_lora(cast(Any, pipe), self.lora, self.model)
        try:
            if self.offload and device != "cpu":
                pipe.enable_model_cpu_offload(device=device)
            else:
                pipe.to(device)
        except Exception as exc:
            raise ModelLoadError(
                f"Could not move {self.model!r} to {device}: {exc}", option="device", value=device
            ) from exc
        self._pipe = pipe
        self._torch_dtype = torch_dtype
        self._device_type = torch.device(device).type
        log.info("model %s (%s) on %s", self.model, self.family.name, device)

    def unload(self) -> None:
        """Drop the weights (the model pool's LRU); the next edit loads them again."""
        self._pipe = None
        free_memory(self._device_type)

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline, for benchmarks."""
        if self._pipe is None:
            raise RuntimeError("The pipeline is not loaded yet: call `load` first.")
        return self._pipe

    def count_tokens(self, instruction: str) -> int:
        """Tokens the family's main text encoder reads (its own tokenizer, loaded alone)."""
        if self._counter is None:
            subfolder = self.adapter.tokenizer_subfolder
            try:
                self._counter = AutoTokenizer.from_pretrained(self.model, subfolder=subfolder)
            except Exception as exc:
                raise ModelLoadError(
                    f"Could not load the tokenizer of {self.model!r}: {exc}" + offline_hint(),
                    option="model",
                    value=self.model,
                ) from exc
            limit = int(self._counter.model_max_length)
            self.max_instruction_tokens = self.adapter.instruction_limit(limit)
        ids = self._counter(instruction, add_special_tokens=False, truncation=False).input_ids
        return len(ids)

    def describe(self) -> dict[str, str]:
        return {
            "model": self.model,
            "family": self.family.name,
            "lora": self.lora or "none",
            "device": str(self._pipe.device)
            if self._pipe is not None
            else f"{self.device} (not loaded)",
            "dtype": str(self._torch_dtype).removeprefix("torch.")
            if self._torch_dtype is not None
            else f"{self.dtype} (not loaded)",
            "offload": "model CPU offload" if self.offload else "off",
        }

    def edit_batch(
        self,
        requests: Sequence[EditRequest],
        progress: ProgressCallback | None = None,
        preview: PreviewCallback | None = None,
    ) -> list[Image.Image]:
        """One pipeline call at the family's working size; results at each request's size.

        No previews: this editor has no preview decoder, so `preview` is never called.
        """
        from editor.pix2pix import check_batch

        check_batch(requests)
        self.load()
        pipe = self._pipe
        own_size = requests[0].image.size
        size = working_size(own_size, self.adapter.multiple(pipe))
        fitted = [
            EditRequest(
                image=_resized(request.image.convert("RGB"), size),
                instruction=request.instruction,
                params=request.params,
            )
            for request in requests
        ]
        generator_device = "cpu" if pipe.device.type == "mps" else pipe.device
        generators = [
            torch.Generator(device=generator_device).manual_seed(request.params.seed)
            for request in requests
        ]

        def on_step(step: int, total: int) -> None:
            if progress is not None:
                progress(step, total)

        with torch.inference_mode():
            images = self.adapter.run(pipe, fitted, size, generators, on_step)
        return [_resized(image.convert("RGB"), own_size) for image in images]


def working_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """`size` with both sides rounded down to `multiple` (at least one `multiple`)."""
    return (
        max(multiple, size[0] // multiple * multiple),
        max(multiple, size[1] // multiple * multiple),
    )


def _resized(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def open_editor(
    model: str,
    *,
    pix2pix: Callable[[], Editor],
    lora: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    offload: bool = False,
) -> Editor:
    """The editor for `model`'s family (read from its model_index.json).

    `pix2pix` builds the InstructPix2Pix editor (the caller's speed options live there); it
    also gets a model whose index cannot be read yet (an uncached hub id offline), so that
    its `load` reports the problem where it always has. The other families get a
    `FamilyEditor`.

    Raises:
        ModelLoadError: a readable model of a family pix2chat does not serve (the message
            lists the ones it does).
    """
    try:
        index = read_model_index(model)
    except ModelLoadError:
        return pix2pix()
    family = family_of(model, index)
    if family == INSTRUCT_PIX2PIX:
        return pix2pix()
    return FamilyEditor(
        model, adapter_for(family), lora=lora, device=device, dtype=dtype, offload=offload
    )
