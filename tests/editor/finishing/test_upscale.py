"""Upscaling through spandrel: sizes, seamless tiles, the pixel cap, bad weights files."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.finishing.errors import FinishingNotInstalled, UpscalerUnavailable
from editor.finishing.upscale import Upscaler, can_grow, target_size, upscale_tiled


def textured(size: tuple[int, int]) -> Image.Image:
    """Smooth colour blobs plus noise: something for the model's convolutions to see."""
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), dtype=float)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def upscaler_4x(tiny_esrgan_4x: Path) -> Upscaler:
    upscaler = Upscaler(str(tiny_esrgan_4x))
    upscaler.load()
    return upscaler


def test_spandrel_detects_the_saved_esrgan_weights(
    upscaler_4x: Upscaler, tiny_esrgan_2x: Path
) -> None:
    assert upscaler_4x.scale == 4
    assert upscaler_4x._descriptor.architecture.name == "ESRGAN"
    two = Upscaler(str(tiny_esrgan_2x))  # .safetensors, detected the same way
    assert two.scale == 2


@pytest.mark.parametrize("scale", [2, 4])
def test_output_is_the_asked_size(upscaler_4x: Upscaler, scale: int) -> None:
    result = upscaler_4x.upscale(textured((40, 30)), scale, max_pixels=10_000_000)

    assert result.image.size == (40 * scale, 30 * scale)
    assert result.image.mode == "RGB"
    assert not result.capped


def test_the_2x_model_makes_2x(tiny_esrgan_2x: Path) -> None:
    result = Upscaler(str(tiny_esrgan_2x)).upscale(textured((33, 21)), 2, 10_000_000)
    assert result.image.size == (66, 42)


def test_tiles_meet_without_seams(upscaler_4x: Upscaler) -> None:
    image = textured((48, 40))
    size = (48 * 4, 40 * 4)

    whole = upscale_tiled(upscaler_4x.run_tile, 4, image, size, tile=64)
    tiled = upscale_tiled(upscaler_4x.run_tile, 4, image, size, tile=16, pad=16)

    difference = np.abs(np.asarray(whole, dtype=int) - np.asarray(tiled, dtype=int))
    assert difference.max() <= 2, difference.max()
    # And the model did something: not just a resize of the input.
    resized = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=int)
    assert np.abs(np.asarray(whole, dtype=int) - resized).mean() > 1


def test_tiles_without_context_would_show_seams(upscaler_4x: Upscaler) -> None:
    """The margin is what hides the seams: without it the same tiles differ visibly."""
    image = textured((48, 40))
    size = (48 * 4, 40 * 4)
    whole = np.asarray(upscale_tiled(upscaler_4x.run_tile, 4, image, size, tile=64), dtype=int)
    bare = np.asarray(
        upscale_tiled(upscaler_4x.run_tile, 4, image, size, tile=16, pad=0), dtype=int
    )
    assert np.abs(whole - bare).max() > 2


def test_alpha_survives_an_upscale(upscaler_4x: Upscaler) -> None:
    image = textured((20, 16)).convert("RGBA")
    image.putalpha(Image.new("L", (20, 16), 0))
    result = upscaler_4x.upscale(image, 2, 10_000_000).image
    assert result.mode == "RGBA"
    assert result.getchannel("A").getextrema() == (0, 0)


def test_the_pixel_cap_holds_the_result(upscaler_4x: Upscaler) -> None:
    result = upscaler_4x.upscale(textured((40, 30)), 4, max_pixels=4_800)

    assert result.capped
    width, height = result.image.size
    assert width * height <= 4_800
    assert abs(width / height - 40 / 30) < 0.05
    assert width > 40


def test_an_image_at_the_cap_cannot_grow() -> None:
    assert not can_grow((4000, 3000), 12_000_000)
    assert can_grow((2000, 1500), 12_000_000)
    assert target_size((100, 50), 2, 1_000_000) == ((200, 100), False)


def test_a_missing_weights_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(UpscalerUnavailable) as raised:
        Upscaler(str(tmp_path / "nowhere.pth")).load()
    assert "nowhere.pth" in raised.value.args_for_message["source"]


def test_a_corrupt_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UpscalerUnavailable) as raised:
        Upscaler(str(corrupt)).load()
    assert raised.value.key == "error.upscaler_unavailable"


def test_unknown_weights_are_refused(tmp_path: Path) -> None:
    import torch

    odd = tmp_path / "odd.pth"
    torch.save({"some.weight": torch.zeros(3, 3)}, odd)
    with pytest.raises(UpscalerUnavailable):
        Upscaler(str(odd)).load()


def test_without_the_extra_it_says_so(
    monkeypatch: pytest.MonkeyPatch, tiny_esrgan_4x: Path
) -> None:
    monkeypatch.setitem(sys.modules, "spandrel", None)  # import spandrel -> ImportError
    with pytest.raises(FinishingNotInstalled):
        Upscaler(str(tiny_esrgan_4x)).load()
