"""Metrics on known cases, with tiny random CLIP and DINO models loaded by path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.errors import ModelLoadError
from editor.finetune.metrics import (
    ClipScorer,
    DinoScorer,
    clip_i,
    clip_t,
    dino,
    directional_similarity,
    l1_distance,
)


@pytest.fixture(scope="module")
def clip(tiny_clip_dir: Path) -> ClipScorer:
    return ClipScorer(str(tiny_clip_dir))


def _noise(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_l1_of_known_images() -> None:
    black = Image.new("RGB", (8, 8), (0, 0, 0))
    white = Image.new("RGB", (8, 8), (255, 255, 255))
    grey = Image.new("RGB", (8, 8), (51, 51, 51))
    assert l1_distance(black, black) == 0.0
    assert l1_distance(black, white) == pytest.approx(1.0)
    assert l1_distance(black, grey) == pytest.approx(0.2)
    # A ground truth of another size is compared at the output's size.
    assert l1_distance(grey, Image.new("RGB", (16, 16), (51, 51, 51))) == pytest.approx(0.0)


def test_identical_images_have_clip_i_and_dino_1(clip: ClipScorer, tiny_dino_dir: Path) -> None:
    images = [_noise(1), _noise(2)]
    assert clip_i(clip, images, images) == pytest.approx([1.0, 1.0], abs=1e-5)
    scorer = DinoScorer(str(tiny_dino_dir))
    assert dino(scorer, images, images) == pytest.approx([1.0, 1.0], abs=1e-5)
    different = dino(scorer, images, [_noise(3), Image.new("RGB", (48, 40), "red")])
    assert all(value < 0.999 for value in different)
    assert all(value < 0.999 for value in clip_i(clip, images, images[::-1]))


def test_clip_t_is_a_cosine_that_depends_on_the_caption(clip: ClipScorer) -> None:
    image = [_noise(4)]
    first = clip_t(clip, image, ["a red sneaker"])[0]
    second = clip_t(clip, image, ["a photo of a wooden table at night"])[0]
    assert -1.0 <= first <= 1.0 and -1.0 <= second <= 1.0
    assert first != pytest.approx(second)


def test_directional_similarity_sign(clip: ClipScorer) -> None:
    before, after = _noise(5), _noise(6)
    captions = (["a red sneaker"], ["a black sneaker"])
    forward = directional_similarity(clip, [before], [after], *captions)[0]
    backward = directional_similarity(clip, [after], [before], *captions)[0]
    assert forward != pytest.approx(0.0, abs=1e-4)
    # Undoing the edit points the image change the other way round.
    assert backward == pytest.approx(-forward, abs=1e-4)
    # The edit that matches the reversed caption change points the same way as it.
    reversed_text = directional_similarity(clip, [after], [before], *captions[::-1])[0]
    assert reversed_text == pytest.approx(forward, abs=1e-4)
    # No change to the image, no direction.
    assert directional_similarity(clip, [before], [before], *captions)[0] == 0.0


def test_a_model_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="Could not load the CLIP model"):
        ClipScorer(str(tmp_path / "missing"))
