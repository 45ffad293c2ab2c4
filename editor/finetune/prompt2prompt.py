"""Prompt-to-Prompt: an edited image from the output caption that keeps the input's layout.

Both captions are denoised in one batch from the same starting noise. For the first part of the
schedule the target caption's attention maps are replaced by the source's: cross-attention maps
(which pixels attend to which word) through a token alignment, so "red" -> "black" reuses the
map of "red" for "black" (word swap) and words only the target has keep their own (refinement);
self-attention maps (which pixels look alike) directly. The rest of the schedule runs free so
the new words can change what they describe. This is how the InstructPix2Pix paper makes its
training pairs (Hertz et al., "Prompt-to-Prompt Image Editing with Cross Attention Control").

The processors work on diffusers' `Attention` modules of any Stable Diffusion UNet and are
removed again after each pair.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image
from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True, slots=True)
class TokenAlignment:
    """For each target token position: the source position whose map it takes, and how much.

    `alphas[t]` is 1 where the target token takes the source map (shared and swapped words, the
    start and padding tokens) and 0 for words only the target has.
    """

    mapper: torch.Tensor
    alphas: torch.Tensor


def align_tokens(tokenizer: PreTrainedTokenizerBase, source: str, target: str) -> TokenAlignment:
    """Align two captions token by token (shared words, same-length swaps, insertions)."""
    length = tokenizer.model_max_length
    src = tokenizer(source, truncation=True, max_length=length).input_ids
    tgt = tokenizer(target, truncation=True, max_length=length).input_ids
    mapper = list(range(length))
    alphas = [1.0] * length
    matcher = difflib.SequenceMatcher(a=src, b=tgt, autojunk=False)
    for op, s0, s1, t0, t1 in matcher.get_opcodes():
        if op == "equal" or (op == "replace" and s1 - s0 == t1 - t0):
            for offset in range(t1 - t0):
                mapper[t0 + offset] = s0 + offset
        else:  # words only the target has ("on a beach"): their own maps
            for position in range(t0, t1):
                mapper[position] = min(position, length - 1)
                alphas[position] = 0.0
    # Padding after the end token: line the two paddings up from each one's end token.
    for position in range(len(tgt), length):
        mapper[position] = min(len(src) + position - len(tgt), length - 1)
    return TokenAlignment(torch.tensor(mapper), torch.tensor(alphas))


class AttentionControl:
    """Which steps share which maps; the processors ask it, the step callback advances it.

    The batch holds the source caption first and one or more targets after it (several for a
    multi-turn session, each aligned to the source).

    Args:
        alignment: target-to-source token alignment, or one per target.
        num_inference_steps: steps of the run.
        cross_replace_steps: fraction of the steps (from the start) whose cross-attention maps
            the target takes from the source.
        self_replace_steps: the same for self-attention maps.
        self_replace_max_pixels: self-attention is shared only in layers with at most this many
            pixels (16x16 in a 512-pixel SD 1.5 image); larger maps carry fine detail that the
            new caption should be free to change.
    """

    def __init__(
        self,
        alignment: TokenAlignment | Sequence[TokenAlignment],
        num_inference_steps: int,
        *,
        cross_replace_steps: float = 0.8,
        self_replace_steps: float = 0.4,
        self_replace_max_pixels: int = 16 * 16,
    ) -> None:
        self.alignments = [alignment] if isinstance(alignment, TokenAlignment) else list(alignment)
        self.cross_until = round(cross_replace_steps * num_inference_steps)
        self.self_until = round(self_replace_steps * num_inference_steps)
        self.self_replace_max_pixels = self_replace_max_pixels
        self.step = 0
        self.replaced = 0  # attention calls whose maps were changed (for tests and logs)

    def edit(self, probs: torch.Tensor, heads: int, is_cross: bool) -> torch.Tensor:
        """Attention probabilities (batch*heads, pixels, keys) with the target's maps replaced."""
        batch = probs.shape[0] // heads
        prompts = len(self.alignments) + 1
        if batch not in (prompts, 2 * prompts):
            return probs
        pixels = probs.shape[1]
        if is_cross and self.step >= self.cross_until:
            return probs
        if not is_cross and (self.step >= self.self_until or pixels > self.self_replace_max_pixels):
            return probs
        maps = probs.reshape(batch, heads, *probs.shape[1:]).clone()
        # The batch is (source, target, ...); with classifier-free guidance it is the
        # unconditional copies first, then the conditional ones, and only the conditional
        # half is controlled, as in the paper.
        first = prompts if batch == 2 * prompts else 0
        source = maps[first]
        for offset, alignment in enumerate(self.alignments, 1):
            target = maps[first + offset]
            if is_cross:
                mapper = alignment.mapper.to(probs.device)
                alphas = alignment.alphas.to(probs.device, probs.dtype)
                maps[first + offset] = source[..., mapper] * alphas + target * (1 - alphas)
            else:
                maps[first + offset] = source
        self.replaced += 1
        return maps.reshape(probs.shape)


class ControlledAttnProcessor:
    """diffusers' classic attention, with the maps passed through an `AttentionControl`."""

    def __init__(self, control: AttentionControl) -> None:
        self.control = control

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        is_cross = encoder_hidden_states is not None
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch_size, sequence_length, _ = context.shape
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(
                attention_mask, sequence_length, batch_size
            )
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        elif not is_cross:
            context = hidden_states
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(attn.head_to_batch_dim(query), key, attention_mask)
        probs = self.control.edit(probs, attn.heads, is_cross)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(
                batch_size, channel, height, width
            )
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


@dataclass(frozen=True, slots=True)
class PairSettings:
    """How one pair is generated; `guidance_scale` and steps use diffusers' names."""

    seed: int = 0
    num_inference_steps: int = 50
    guidance_scale: float = 7.5
    cross_replace_steps: float = 0.8
    self_replace_steps: float = 0.4
    height: int = 512
    width: int = 512


def generate(
    pipe: StableDiffusionPipeline,
    prompts: Sequence[str],
    settings: PairSettings,
    control: AttentionControl | None = None,
) -> list[Image.Image]:
    """Images for `prompts`, all from the same starting noise (the seed's), optionally controlled.

    Without `control` this is plain text-to-image generation with a shared seed, the baseline a
    controlled pair is compared against.
    """
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, settings.height // factor, settings.width // factor)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(settings.seed))
    latents = noise.repeat(len(prompts), 1, 1, 1).to(pipe.device, pipe.unet.dtype)
    previous = pipe.unet.attn_processors
    if control is not None:
        pipe.unet.set_attn_processor(ControlledAttnProcessor(control))
    else:
        pipe.unet.set_attn_processor(AttnProcessor2_0())

    def on_step_end(
        pipeline: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        if control is not None:
            control.step = step + 1
        return callback_kwargs

    try:
        with torch.inference_mode():
            images, _ = pipe(
                prompt=list(prompts),
                latents=latents,
                height=settings.height,
                width=settings.width,
                num_inference_steps=settings.num_inference_steps,
                guidance_scale=settings.guidance_scale,
                generator=[
                    torch.Generator().manual_seed(settings.seed) for _ in range(len(prompts))
                ],
                callback_on_step_end=on_step_end,
                output_type="pil",
                return_dict=False,
            )
    finally:
        pipe.unet.set_attn_processor(previous)
    return list(images)


def generate_session(
    pipe: StableDiffusionPipeline, captions: Sequence[str], settings: PairSettings
) -> list[Image.Image]:
    """One image per caption, every later one sharing seed and maps with the first.

    For a multi-turn session (caption 0, then each turn's output caption) image k is the
    input of turn k + 1 and image k + 1 its edited result.
    """
    if len(captions) < 2:
        raise ValueError("A session needs a source caption and at least one target.")
    control = AttentionControl(
        [align_tokens(pipe.tokenizer, captions[0], target) for target in captions[1:]],
        settings.num_inference_steps,
        cross_replace_steps=settings.cross_replace_steps,
        self_replace_steps=settings.self_replace_steps,
    )
    return generate(pipe, captions, settings, control)


def generate_pair(
    pipe: StableDiffusionPipeline, source: str, target: str, settings: PairSettings
) -> tuple[Image.Image, Image.Image]:
    """(input image, edited image) for a caption pair, sharing seed and attention maps."""
    original, edited = generate_session(pipe, [source, target], settings)
    return original, edited
