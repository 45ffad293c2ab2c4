"""The develop step's promises: untouched pixels stay bit-identical, the size is kept, VAE noise
is ignored, global edits keep the parent's detail, and the feather leaves no seam."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from editor.develop import DevelopOptions, confine, develop
from editor.images import fit_to_resolution

WORKING = 240
RED = np.array([200, 30, 30])


def textured_parent(width: int = 600, height: int = 400, seed: int = 0) -> np.ndarray:
    """A gradient with strong pixel-level texture, like a sharp photo."""
    rng = np.random.default_rng(seed)
    x = np.linspace(40, 200, width)[None, :, None]
    y = np.linspace(0, 30, height)[:, None, None]
    base = x + y + np.array([0, 10, -10])
    return np.clip(base + rng.integers(-20, 21, (height, width, 3)), 0, 255).astype(np.uint8)


def smooth_parent(width: int = 600, height: int = 400) -> np.ndarray:
    """A plain horizontal grey gradient: any seam shows as a step between neighbours."""
    row = np.linspace(90, 150, width)
    return np.repeat(np.repeat(row[None, :, None], height, 0), 3, 2).round().astype(np.uint8)


def model_run(
    parent: np.ndarray, change: object = None, noise: int = 2, seed: int = 1
) -> tuple[Image.Image, Image.Image, Image.Image]:
    """Parent, model input (fitted) and a fake model output: `change` applied, +-noise levels."""
    image = Image.fromarray(parent)
    fitted = fit_to_resolution(image, WORKING)
    values = np.asarray(fitted).astype(np.float64)
    if callable(change):
        values = change(values)
    rng = np.random.default_rng(seed)
    values = values + rng.integers(-noise, noise + 1, values.shape)
    output = Image.fromarray(np.clip(values.round(), 0, 255).astype(np.uint8))
    return image, fitted, output


def recolour(values: np.ndarray) -> np.ndarray:
    """The rectangle rows 40..100, columns 60..140 at 240x160 (full res: 100..250, 150..350)."""
    values = values.copy()
    values[40:100, 60:140] = RED
    return values


def full_res_rectangle(shape: tuple[int, ...]) -> np.ndarray:
    inside = np.zeros(shape[:2], dtype=bool)
    inside[100:250, 150:350] = True
    return inside


def laplacian_variance(image: np.ndarray) -> float:
    grey = image.astype(np.float64).mean(axis=2)
    laplacian = (
        grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    )
    return float(laplacian.var())


def test_a_local_change_leaves_everything_outside_the_mask_bit_identical() -> None:
    parent = textured_parent()
    developed = develop(*model_run(parent, recolour))
    image, mask = np.asarray(developed.image), np.asarray(developed.mask)
    assert developed.mode == "local"
    untouched = mask == 0
    assert untouched.mean() > 0.75
    assert np.array_equal(image[untouched], parent[untouched])


def test_a_local_change_takes_the_new_colour_and_the_mask_matches_it() -> None:
    parent = textured_parent()
    developed = develop(*model_run(parent, recolour))
    image, mask = np.asarray(developed.image).astype(int), np.asarray(developed.mask)
    rectangle = full_res_rectangle(parent.shape)
    close = np.abs(image - RED).max(axis=2) <= 12
    assert close[rectangle].mean() > 0.9
    assert np.all(mask[rectangle] > 0)
    half = mask >= 128
    iou = (half & rectangle).sum() / (half | rectangle).sum()
    assert iou > 0.8, iou


def test_the_feather_leaves_no_seam() -> None:
    # Everything brightened by 4 levels (under the threshold, so outside the mask it is
    # dropped), plus the recoloured rectangle: across the feather the image must go from
    # parent + 4 to the parent in small steps, never in one jump.
    parent = smooth_parent()
    options = DevelopOptions(feather_radius=12.0)
    developed = develop(
        *model_run(parent, lambda values: recolour(values + 4), noise=0), options=options
    )
    image, mask = np.asarray(developed.image).astype(int), np.asarray(developed.mask)
    assert developed.mode == "local"
    difference = (image - parent.astype(int))[175, :144, 0]  # a row leaving the rectangle leftwards
    feathered = mask[175, :144]
    zone = np.flatnonzero((feathered > 0) & (feathered < 255))
    assert zone.size >= 8  # a real feather, several pixels wide
    profile = difference[zone[0] - 2 : zone[-1] + 1]
    assert profile[0] == 0 and 3 <= profile[-1] <= 5  # +-1: Lanczos down, bicubic up
    assert np.all(np.diff(profile) >= -1)  # monotonic up to that rounding: no overshoot, no ring
    assert np.abs(np.diff(profile)).max() <= 2  # no step: the 4 levels spread over the feather


def test_vae_noise_alone_is_no_change() -> None:
    parent = textured_parent()
    image, fitted, output = model_run(parent, None, noise=2)
    developed = develop(image, fitted, output)
    assert developed.mode == "none"
    assert np.array_equal(np.asarray(developed.image), parent)
    assert developed.mask.size == image.size
    assert not np.asarray(developed.mask).any()


def test_a_global_change_keeps_the_parent_s_detail() -> None:
    parent = textured_parent()
    image, fitted, output = model_run(parent, lambda values: values * 0.5)
    developed = develop(image, fitted, output)
    result = np.asarray(developed.image)
    assert developed.mode == "global"
    assert developed.image.size == image.size
    assert np.asarray(developed.mask).min() == 255
    assert result.mean() == pytest.approx(parent.mean() * 0.5, rel=0.05)
    plain = np.asarray(output.resize(image.size, Image.Resampling.LANCZOS))
    # The darkened parent's texture has a quarter of the parent's Laplacian variance; plain
    # upsampling of the working-resolution result loses most of even that.
    assert laplacian_variance(result) > 0.15 * laplacian_variance(parent)
    assert laplacian_variance(result) > 5 * laplacian_variance(plain)


def test_new_structure_in_a_global_edit_follows_the_model() -> None:
    parent = textured_parent()

    def night_with_moon(values: np.ndarray) -> np.ndarray:
        values = values * 0.4
        values[20:60, 160:200] = 250  # a new bright object the parent has no trace of
        return values

    developed = develop(*model_run(parent, night_with_moon))
    result = np.asarray(developed.image).astype(int)
    assert developed.mode == "global"
    moon = result[60:140, 410:490]  # the object's core at full resolution
    under = parent[60:140, 410:490].astype(float)
    assert abs(moon.mean() - 250) < 3
    # The parent's texture under the new object is mostly gone (a lighting edit keeps it).
    assert np.all(moon.std(axis=(0, 1)) < 0.35 * under.std(axis=(0, 1)))
    assert np.abs(result[300:380, 50:150].mean() - parent[300:380, 50:150].mean() * 0.4) < 6


@pytest.mark.parametrize("size", [(601, 397), (333, 777), (1001, 125), (257, 256), (200, 131)])
@pytest.mark.parametrize("kind", ["local", "global"])
def test_the_parent_s_size_is_kept_for_any_shape(size: tuple[int, int], kind: str) -> None:
    parent = textured_parent(*size)

    def change(values: np.ndarray) -> np.ndarray:
        if kind == "global":
            return values * 0.5
        values = values.copy()
        height, width = values.shape[:2]
        values[height // 3 : height // 2, width // 3 : width // 2] = RED
        return values

    developed = develop(*model_run(parent, change))
    assert developed.mode == kind
    assert developed.image.size == size
    assert developed.mask.size == size
    assert developed.image.mode == "RGB" and developed.mask.mode == "L"


def test_mismatched_or_non_rgb_inputs_are_refused() -> None:
    image, fitted, output = model_run(textured_parent(), recolour)
    with pytest.raises(ValueError, match="model output"):
        develop(image, fitted, output.resize((200, 160)))
    with pytest.raises(ValueError, match="RGB"):
        develop(image.convert("L"), fitted, output)


def test_detail_finer_than_the_working_resolution_survives_a_global_change() -> None:
    # A one-pixel checkerboard averages to flat grey at working resolution: only the prior
    # "no change where the working image shows nothing" can carry it through.
    y, x = np.mgrid[0:400, 0:600]
    checker = np.where((x + y) % 2 == 0, 40, -40)[..., None]
    parent = np.clip(textured_parent() // 2 + 64 + checker, 0, 255).astype(np.uint8)
    image, fitted, output = model_run(parent, lambda values: values * 0.5)
    developed = develop(image, fitted, output)
    assert developed.mode == "global"
    result = np.asarray(developed.image)
    plain = np.asarray(output.resize(image.size, Image.Resampling.LANCZOS))
    assert laplacian_variance(result) > 0.15 * laplacian_variance(parent)
    assert laplacian_variance(result) > 20 * laplacian_variance(plain)


# -- regions: /keep and /only applied to a developed edit ---------------------------------------


def box_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    return mask


def edited_pair() -> tuple[Image.Image, Image.Image]:
    """A textured parent and an edit of it that changes every pixel."""
    parent = textured_parent()
    edited = np.clip(parent.astype(np.int16) + 60, 0, 255).astype(np.uint8)
    return Image.fromarray(parent), Image.fromarray(edited)


def test_confine_keeps_the_keep_region_bit_identical_and_edits_the_rest() -> None:
    parent, edited = edited_pair()
    box = (100, 80, 300, 240)
    result = np.asarray(confine(parent, edited, keep=box_mask(parent.size, box)))
    before, after = np.asarray(parent), np.asarray(edited)
    x0, y0, x1, y1 = box
    assert np.array_equal(result[y0:y1, x0:x1], before[y0:y1, x0:x1])
    far = (slice(0, 40), slice(0, 600))  # well away from the kept box: fully the edit
    assert np.array_equal(result[far], after[far])
    assert result.shape == before.shape


def test_confine_only_leaves_everything_outside_bit_identical() -> None:
    parent, edited = edited_pair()
    box = (200, 100, 500, 380)
    result = np.asarray(confine(parent, edited, only=box_mask(parent.size, box)))
    before, after = np.asarray(parent), np.asarray(edited)
    outside = np.ones(before.shape[:2], dtype=bool)
    outside[100:380, 200:500] = False
    assert np.array_equal(result[outside], before[outside])
    assert np.array_equal(result[140:340, 240:460], after[140:340, 240:460])  # the core: edited


def test_confine_keep_wins_over_only() -> None:
    parent, edited = edited_pair()
    only = box_mask(parent.size, (0, 0, 400, 400))
    keep = box_mask(parent.size, (100, 100, 300, 300))  # entirely inside the only region
    result = np.asarray(confine(parent, edited, keep=keep, only=only))
    before = np.asarray(parent)
    assert np.array_equal(result[100:300, 100:300], before[100:300, 100:300])
    assert np.array_equal(result[:, 400:], before[:, 400:])
    assert not np.array_equal(result[0:60, 0:60], before[0:60, 0:60])


def test_confine_feathers_inside_the_editable_side_without_a_step() -> None:
    """Across a kept edge the result moves from parent to edit over a few pixels, monotonically,
    and the step between neighbours stays well under the full edit (no hard seam)."""
    parent = Image.fromarray(smooth_parent())
    edited = Image.fromarray(
        np.clip(smooth_parent().astype(np.int16) + 80, 0, 255).astype(np.uint8)
    )
    result = np.asarray(confine(parent, edited, keep=box_mask(parent.size, (0, 0, 300, 400))))
    row = result[200, :, 0].astype(int) - np.asarray(parent)[200, :, 0].astype(int)
    assert np.all(row[:300] == 0)  # kept exactly
    ramp = row[300:330]
    assert np.all(np.diff(ramp) >= 0) and ramp[-1] == 80
    assert np.max(np.diff(row)) < 40  # no jump from 0 to the full edit


def test_confine_without_regions_or_with_nothing_editable() -> None:
    parent, edited = edited_pair()
    assert confine(parent, edited) is edited
    everything = box_mask(parent.size, (0, 0, 600, 400))
    assert confine(parent, edited, keep=everything) is parent


def test_confine_refuses_mismatched_sizes() -> None:
    parent, edited = edited_pair()
    with pytest.raises(ValueError, match="mask"):
        confine(parent, edited, keep=Image.new("L", (10, 10), 255))
    with pytest.raises(ValueError, match="edited"):
        confine(parent, edited.resize((300, 200)), keep=box_mask(parent.size, (0, 0, 5, 5)))
