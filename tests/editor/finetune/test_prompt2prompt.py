"""Prompt-to-Prompt on a tiny random Stable Diffusion pipeline: shared seed, controlled maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from PIL import Image
from transformers import CLIPTokenizer

from editor.finetune.prompt2prompt import (
    AttentionControl,
    PairSettings,
    TokenAlignment,
    align_tokens,
    generate,
    generate_pair,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SOURCE, TARGET = "a red sneaker", "a blue sneaker"
SETTINGS = PairSettings(num_inference_steps=6, height=32, width=32)


@pytest.fixture(scope="module")
def pipe(tiny_sd_dir: Path) -> StableDiffusionPipeline:
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_sd_dir, safety_checker=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_alignment_swaps_equal_length_words_and_keeps_new_words_own_maps(
    pipe: StableDiffusionPipeline,
) -> None:
    tokenizer: CLIPTokenizer = pipe.tokenizer  # one token per byte
    swap = align_tokens(tokenizer, "a red cap", "a tan cap")
    assert swap.mapper[:12].tolist() == list(range(12))
    assert swap.alphas.tolist() == [1.0] * tokenizer.model_max_length

    added = align_tokens(tokenizer, "a cap", "a cap on ice")
    length = len(tokenizer("a cap").input_ids)
    new = len(tokenizer("a cap on ice").input_ids) - length  # the tokens of " on ice"
    # Shared characters map onto themselves; " on ice" keeps its own maps (alpha 0)...
    assert added.mapper[: length - 1].tolist() == list(range(length - 1))
    assert added.alphas[length - 1 : length - 1 + new].tolist() == [0.0] * new
    # ...and the end token and padding line up with the source's.
    assert added.mapper[length - 1 + new].item() == length - 1
    assert added.alphas[length - 1 + new :].eq(1.0).all()


def test_the_input_image_is_plain_generation_with_the_shared_seed(
    pipe: StableDiffusionPipeline,
) -> None:
    original, edited = generate_pair(pipe, SOURCE, TARGET, SETTINGS)
    plain_source, _ = generate(pipe, [SOURCE, TARGET], SETTINGS)
    # The source branch is never controlled, so it is exactly text-to-image with the seed.
    assert np.array_equal(_pixels(original), _pixels(plain_source))
    assert original.size == edited.size == (32, 32)
    # Another seed gives another input image.
    other, _ = generate_pair(pipe, SOURCE, TARGET, PairSettings(**{**_settings(), "seed": 1}))
    assert not np.array_equal(_pixels(other), _pixels(original))


def _settings() -> dict[str, object]:
    return {
        "num_inference_steps": SETTINGS.num_inference_steps,
        "height": SETTINGS.height,
        "width": SETTINGS.width,
    }


def test_the_attention_control_is_what_changes_the_edited_image(
    pipe: StableDiffusionPipeline,
) -> None:
    _, plain_target = generate(pipe, [SOURCE, TARGET], SETTINGS)
    _, controlled = generate_pair(pipe, SOURCE, TARGET, SETTINGS)
    off = PairSettings(**_settings(), cross_replace_steps=0.0, self_replace_steps=0.0)
    _, uncontrolled = generate_pair(pipe, SOURCE, TARGET, off)
    # With no step shared, the pair is plain generation; with shared maps it is not.
    assert np.array_equal(_pixels(uncontrolled), _pixels(plain_target))
    assert np.abs(_pixels(controlled) - _pixels(plain_target)).mean() > 0.05
    # Identical captions: sharing maps changes nothing, the two images are the same.
    same = generate_pair(pipe, SOURCE, SOURCE, SETTINGS)
    assert np.array_equal(_pixels(same[0]), _pixels(same[1]))


def test_maps_are_replaced_for_the_requested_share_of_steps(
    pipe: StableDiffusionPipeline,
) -> None:
    alignment = align_tokens(pipe.tokenizer, SOURCE, TARGET)
    layers = sum(1 for name in pipe.unet.attn_processors if name.endswith("attn2.processor"))
    control = AttentionControl(alignment, 6, cross_replace_steps=0.5, self_replace_steps=1 / 3)
    generate(pipe, [SOURCE, TARGET], SETTINGS, control)
    # 3 of 6 steps share cross-attention and 2 of 6 self-attention, in every attention layer.
    assert control.replaced == 3 * layers + 2 * layers
    # Self-attention over more pixels than the limit is left alone (the tiny UNet attends
    # over 2x2 latent pixels in every attention layer of a 32x32 image).
    for limit, expected in ((4, 6 * layers), (3, 0)):
        control = AttentionControl(
            alignment,
            6,
            cross_replace_steps=0.0,
            self_replace_steps=1.0,
            self_replace_max_pixels=limit,
        )
        generate(pipe, [SOURCE, TARGET], SETTINGS, control)
        assert control.replaced == expected


def test_cross_attention_of_the_target_takes_the_source_maps() -> None:
    alignment = TokenAlignment(torch.tensor([0, 1, 1, 3]), torch.tensor([1.0, 1.0, 1.0, 0.0]))
    control = AttentionControl(alignment, 10, cross_replace_steps=1.0)
    heads, pixels, tokens = 2, 3, 4
    probs = torch.rand(4 * heads, pixels, tokens)  # uncond src, uncond tgt, cond src, cond tgt
    edited = control.edit(probs.clone(), heads, is_cross=True).reshape(4, heads, pixels, tokens)
    original = probs.reshape(4, heads, pixels, tokens)
    torch.testing.assert_close(edited[:3], original[:3])  # only the conditional target changes
    # Token 0..2 take the source's maps (token 2 from source token 1), token 3 keeps its own.
    torch.testing.assert_close(edited[3][..., :2], original[2][..., :2])
    torch.testing.assert_close(edited[3][..., 2], original[2][..., 1])
    torch.testing.assert_close(edited[3][..., 3], original[3][..., 3])
