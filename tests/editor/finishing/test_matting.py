"""Cut-outs and white backgrounds through rembg with a tiny exported ONNX model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.finishing.errors import FinishingNotInstalled, MattingUnavailable, NoSubjectFound
from editor.finishing.matting import Matting, cutout, existing_alpha, on_white


def product(size: tuple[int, int] = (200, 150)) -> Image.Image:
    """A red product on a green ground (the tiny model's idea of a subject)."""
    image = Image.new("RGB", size, (20, 190, 40))
    image.paste((220, 30, 30), (60, 40, 140, 110))
    return image


@pytest.fixture(scope="module")
def matting(tiny_matting: Path) -> Matting:
    model = Matting(str(tiny_matting))
    model.load()
    return model


def test_the_local_onnx_file_loads_without_touching_rembgs_home(
    tiny_matting: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "elsewhere"))
    model = Matting(str(tiny_matting))
    model.load()
    assert model.mask(product()).size == (200, 150)
    assert not (tmp_path / "elsewhere").exists()


def test_cutout_is_rgba_with_a_transparent_border(matting: Matting) -> None:
    image = product()
    result = cutout(image, matting.mask(image))

    assert result.mode == "RGBA"
    alpha = np.asarray(result.getchannel("A"))
    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    assert border.max() == 0
    assert alpha[75, 100] >= 250  # the product is opaque
    assert result.getpixel((100, 75))[:3] == (220, 30, 30)


def test_cutout_edges_are_anti_aliased(matting: Matting) -> None:
    image = Image.new("RGB", (203, 151), (20, 190, 40))
    image.paste((220, 30, 30), (61, 41, 139, 109))  # edges off the 320 px grid
    alpha = np.asarray(cutout(image, matting.mask(image)).getchannel("A"))
    partial = ((alpha > 10) & (alpha < 245)).sum()
    assert partial > 0, "a hard mask: no partly transparent edge pixels"


def test_white_puts_the_subject_on_pure_white_with_a_margin(matting: Matting) -> None:
    image = product()
    result = on_white(image, matting.mask(image), square=False)

    assert result.mode == "RGB"
    pixels = np.asarray(result)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    assert (border == 255).all()
    assert result.width < image.width  # cropped to the subject plus its margin
    centre = result.getpixel((result.width // 2, result.height // 2))
    assert max(abs(a - b) for a, b in zip(centre, (220, 30, 30), strict=True)) <= 2


def test_white_square_is_one_to_one(matting: Matting) -> None:
    image = product()
    result = on_white(image, matting.mask(image), square=True)
    assert result.width == result.height
    pixels = np.asarray(result)
    assert (pixels[0] == 255).all() and (pixels[:, 0] == 255).all()


def test_no_subject_is_said_not_guessed(matting: Matting) -> None:
    plain = Image.new("RGB", (120, 90), (128, 128, 128))
    with pytest.raises(NoSubjectFound):
        cutout(plain, matting.mask(plain))
    with pytest.raises(NoSubjectFound):
        on_white(plain, matting.mask(plain), square=True)


def test_an_existing_cutout_keeps_its_own_transparency(matting: Matting) -> None:
    cut = cutout(product(), matting.mask(product()))
    assert existing_alpha(cut) is not None
    assert existing_alpha(product()) is None
    again = on_white(cut, matting.mask(cut), square=False)
    assert np.asarray(again)[0, 0].tolist() == [255, 255, 255]
    assert np.array_equal(np.asarray(matting.mask(cut)), np.asarray(cut.getchannel("A")))


def test_a_missing_model_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(MattingUnavailable) as raised:
        Matting(str(tmp_path / "missing.onnx")).load()
    assert raised.value.key == "error.matting_unavailable"


def test_a_corrupt_model_file_is_a_clear_error(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model")
    with pytest.raises(MattingUnavailable):
        Matting(str(corrupt)).load()


def test_without_the_extra_it_says_so(monkeypatch: pytest.MonkeyPatch, tiny_matting: Path) -> None:
    monkeypatch.setitem(sys.modules, "rembg", None)
    with pytest.raises(FinishingNotInstalled):
        Matting(str(tiny_matting)).load()
