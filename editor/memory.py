"""How much GPU memory an edit needs, worked out on the `meta` device (no GPU, no weights).

The UNet, VAE and text encoder run on shapes-only tensors while a dispatch mode adds up the
bytes of every tensor alive at each moment, as PyTorch's allocator would see them in eager
inference. Attention is modelled as the fused kernels CUDA runs (flash / memory-efficient
SDPA: only the output is stored, never the sequence x sequence score matrix), since on `meta`
PyTorch would otherwise decompose it into the classic materialised form.

What this leaves out: the CUDA context (~0.3-0.5 GiB, outside `max_memory_allocated`),
allocator rounding and fragmentation (typically 5-15 %), cuDNN/cuBLAS workspaces, and compiled
graphs' own buffers. `pix2chat bench model --device cuda` measures the real peak.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

TEXT_TOKENS = 77


class _FusedAttention(TorchFunctionMode):
    """SDPA as CUDA's fused kernels allocate it: the output and nothing quadratic."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func is F.scaled_dot_product_attention:
            query, _key, value = args[:3]
            return query.new_empty((*query.shape[:-1], value.shape[-1]))
        return func(*args, **(kwargs or {}))


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of tensors created inside the mode and still referenced."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._holders: dict[int, set[int]] = {}  # storage -> ids of tensors viewing it

    def __torch_dispatch__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._track(tensor)
        return out

    def _track(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        holders = self._holders.get(key)
        if holders is None:
            holders = self._holders[key] = set()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        if id(tensor) in holders:
            return
        holders.add(id(tensor))
        weakref.finalize(tensor, self._release, key, id(tensor), storage.nbytes())

    def _release(self, key: int, tensor_id: int, nbytes: int) -> None:
        holders = self._holders.get(key)
        if holders is None:
            return
        holders.discard(tensor_id)
        if not holders:
            del self._holders[key]
            self.live -= nbytes


def _peak_bytes(work: Callable[[], Any]) -> int:
    tracker = _LiveBytes()
    with torch.no_grad(), _FusedAttention(), tracker:
        result = work()
        del result
    return tracker.peak


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Bytes one edit batch needs on the GPU, by part; `total` is what must fit."""

    weights: int
    unet_step: int
    vae_encode: int
    vae_decode: int
    text_encoder: int

    @property
    def total(self) -> int:
        # The parts run one after another; each starts with little but the weights resident.
        return self.weights + max(
            self.unet_step, self.vae_encode, self.vae_decode, self.text_encoder
        )


def estimate_memory(
    unet: Any,
    vae: Any,
    text_encoder: torch.nn.Module,
    width: int,
    height: int,
    batch_size: int,
    dtype: torch.dtype,
) -> MemoryEstimate:
    """Peak memory of an InstructPix2Pix batch with these modules built on `meta` in `dtype`.

    The modules must live on the meta device (see `editor.architecture`); their parameters'
    bytes are the weights. The UNet step runs 3 x batch samples (text, image and
    unconditional guidance), with the latents, image latents and prompt embeddings it keeps.
    """
    weights = sum(
        p.numel() * p.element_size()
        for module in (unet, vae, text_encoder)
        for p in module.parameters()
    )
    latent_h, latent_w = height // 8, width // 8
    samples = 3 * batch_size
    cross = int(unet.config.cross_attention_dim)

    def empty(*shape: int) -> torch.Tensor:
        return torch.empty(shape, device="meta", dtype=dtype)

    def unet_step() -> Any:
        # What the denoising loop keeps across the call: latents, image latents, embeddings.
        latents = empty(batch_size, 4, latent_h, latent_w)
        image_latents = empty(samples, 4, latent_h, latent_w)
        context = empty(samples, TEXT_TOKENS, cross)
        model_input = torch.cat([torch.cat([latents] * 3), image_latents], dim=1)
        return unet(model_input, torch.tensor(500.0, device="meta"), context, return_dict=False)

    def vae_encode() -> Any:
        pixels = empty(batch_size, 3, height, width)
        return vae.encode(pixels).latent_dist.mode()

    def vae_decode() -> Any:
        latents = empty(batch_size, 4, latent_h, latent_w)
        return vae.decode(latents, return_dict=False)

    def text() -> Any:
        ids = torch.zeros(batch_size * 2, TEXT_TOKENS, dtype=torch.long, device="meta")
        return text_encoder(ids)

    return MemoryEstimate(
        weights=weights,
        unet_step=_peak_bytes(unet_step),
        vae_encode=_peak_bytes(vae_encode),
        vae_decode=_peak_bytes(vae_decode),
        text_encoder=_peak_bytes(text),
    )
