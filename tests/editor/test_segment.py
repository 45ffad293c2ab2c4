"""The CLIPSeg segmenter through its production loader, on a tiny random CLIPSeg saved with
save_pretrained: lazy loading, masks at the size asked, one batch for several texts, the
coverage rules behind "I couldn't find …", and load errors that name the option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.app import with_setting_hint
from editor.errors import ModelLoadError
from editor.segment import (
    ClipSegSegmenter,
    coverage,
    mask_overlay,
    region_mask,
)
from editor.testing.tiny import TINY_CLIPSEG_SIDE


def picture(size: tuple[int, int] = (200, 150)) -> Image.Image:
    gradient = Image.linear_gradient("L").resize(size)
    return Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_180), gradient))


def test_loads_on_first_use_and_answers_binary_masks_at_the_size_asked(
    tiny_clipseg_dir: Path,
) -> None:
    segmenter = ClipSegSegmenter(str(tiny_clipseg_dir), device="cpu")
    assert not segmenter.loaded  # constructing it loads nothing
    image = picture()
    masks = segmenter.masks(image, ["the logo", "the background"], size=(640, 480))
    assert segmenter.loaded
    assert [mask.size for mask in masks] == [(640, 480)] * 2
    for mask in masks:
        assert mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 255}
    # Deterministic: the same photo and words give the same mask.
    (again,) = segmenter.masks(image, ["the logo"], size=(640, 480))
    assert np.array_equal(np.asarray(again), np.asarray(masks[0]))
    assert segmenter.masks(image, []) == []


def test_probabilities_keep_one_map_per_text_even_for_a_single_text(
    tiny_segmenter: ClipSegSegmenter,
) -> None:
    """CLIPSeg squeezes a batch of one to (H, W); the segmenter restores the batch axis."""
    one = tiny_segmenter.probabilities(picture(), ["the logo"])
    two = tiny_segmenter.probabilities(picture(), ["the logo", "a cat"])
    assert one.shape == (1, TINY_CLIPSEG_SIDE, TINY_CLIPSEG_SIDE)
    assert two.shape == (2, TINY_CLIPSEG_SIDE, TINY_CLIPSEG_SIDE)
    assert np.all((one >= 0) & (one <= 1))
    np.testing.assert_allclose(one[0], two[0], atol=1e-5)  # batching changes nothing


def test_region_mask_thresholds_the_upsampled_map() -> None:
    probability = np.zeros((4, 4), dtype=np.float32)
    probability[:, 2:] = 0.9  # the right half
    mask = np.asarray(region_mask(probability, (80, 40), threshold=0.4))
    assert mask.shape == (40, 80)
    assert not mask[:, :35].any() and mask[:, 45:].all()


def test_coverage_tells_nothing_and_everything_apart() -> None:
    empty = Image.new("L", (100, 100), 0)
    speck = empty.copy()
    speck.paste(255, (0, 0, 1, 1))
    part = empty.copy()
    part.paste(255, (0, 0, 50, 100))
    full = Image.new("L", (100, 100), 255)
    assert coverage(empty).is_nothing and coverage(speck).is_nothing
    assert not coverage(part).is_nothing and not coverage(part).is_everything
    assert coverage(part).share == pytest.approx(0.5)
    assert coverage(full).is_everything


def test_mask_overlay_dims_only_the_outside() -> None:
    image = Image.new("RGB", (20, 10), (200, 100, 50))
    mask = Image.new("L", (20, 10), 0)
    mask.paste(255, (0, 0, 10, 10))
    shown = np.asarray(mask_overlay(image, mask))
    assert (shown[:, :10] == (200, 100, 50)).all()
    assert (shown[:, 10:] == (60, 30, 15)).all()


def test_a_missing_model_is_a_load_error_naming_the_setting(tmp_path: Path) -> None:
    segmenter = ClipSegSegmenter(str(tmp_path / "nowhere"), device="cpu")
    with pytest.raises(ModelLoadError) as caught:
        segmenter.masks(picture(), ["the logo"])
    assert caught.value.option == "segmenter_model"
    assert "PIX2CHAT_SEGMENTER_MODEL" in with_setting_hint(caught.value)
    assert not segmenter.loaded
