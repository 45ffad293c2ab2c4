"""DiffusersEditor end to end with the tiny random-weight pipeline on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.base import EditRequest
from editor.params import EditParams
from editor.pix2pix import DiffusersEditor


def _photo(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """Noise rather than a flat colour, so the VAE has something to encode."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def _request(
    instruction: str = "make it night",
    seed: int = 1,
    size: tuple[int, int] = (64, 64),
    steps: int = 2,
    guidance_scale: float = 7.5,
) -> EditRequest:
    params = EditParams(num_inference_steps=steps, guidance_scale=guidance_scale, seed=seed)
    return EditRequest(image=_photo(size), instruction=instruction, params=params)


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_loads_local_folder_offline(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu")

    editor.load()

    facts = editor.describe()
    assert facts["model"] == str(tiny_model_dir)
    assert facts["lora"] == "none"
    assert facts["device"] == "cpu"
    assert facts["dtype"] == "float32"
    assert facts["scheduler"] == "EulerAncestralDiscreteScheduler"
    assert facts["attention"] == "AttnProcessor2_0 (PyTorch SDPA)"
    assert editor.max_instruction_tokens == 75


def test_describe_before_load_says_so(tiny_model_dir: Path) -> None:
    facts = DiffusersEditor(str(tiny_model_dir), device="cpu").describe()

    assert facts["device"] == "cpu (not loaded)"
    assert facts["scheduler"] == "not loaded"


def test_edit_batch_loads_on_first_use(tiny_model_dir: Path) -> None:
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu")

    [result] = editor.edit_batch([_request()])

    assert result.size == (64, 64)
    assert editor.describe()["device"] == "cpu"


def test_batch_of_two_gives_two_different_rgb_images(tiny_editor: DiffusersEditor) -> None:
    requests = [
        _request("make it night", seed=1, size=(96, 64)),
        _request("add snow on the roof", seed=2, size=(96, 64)),
    ]

    results = tiny_editor.edit_batch(requests)

    assert len(results) == 2
    assert all(image.mode == "RGB" and image.size == (96, 64) for image in results)
    assert np.abs(_pixels(results[0]) - _pixels(results[1])).mean() > 1.0


def test_same_request_twice_gives_identical_pixels(tiny_editor: DiffusersEditor) -> None:
    [first] = tiny_editor.edit_batch([_request(seed=7)])
    [second] = tiny_editor.edit_batch([_request(seed=7)])

    assert first.tobytes() == second.tobytes()


def test_batching_does_not_change_a_result_beyond_rounding(tiny_editor: DiffusersEditor) -> None:
    """Per-sample generators make a result independent of its batch-mates and position.

    Batched matmuls sum in a different order, so a channel may round to the neighbouring
    value: at most 1/255, on a tiny fraction of pixels (measured: mean difference ~1e-4).
    """
    alone = _pixels(tiny_editor.edit_batch([_request(seed=3)])[0])
    other = _request("add a hat", seed=4)

    first = _pixels(tiny_editor.edit_batch([_request(seed=3), other])[0])
    second = _pixels(tiny_editor.edit_batch([other, _request(seed=3)])[1])

    for batched in (first, second):
        difference = np.abs(alone - batched)
        assert difference.max() <= 1
        assert difference.mean() < 0.01


def test_seed_changes_the_result(tiny_editor: DiffusersEditor) -> None:
    [one] = tiny_editor.edit_batch([_request(seed=1)])
    [two] = tiny_editor.edit_batch([_request(seed=2)])

    assert np.abs(_pixels(one) - _pixels(two)).mean() > 1.0


def test_progress_reports_every_step_in_order(tiny_editor: DiffusersEditor) -> None:
    calls: list[tuple[int, int]] = []

    tiny_editor.edit_batch(
        [_request(steps=3)], progress=lambda step, total: calls.append((step, total))
    )

    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_count_tokens_without_markers(tiny_editor: DiffusersEditor) -> None:
    # The tiny tokenizer has one token per byte, the last of each word marked "</w>".
    assert tiny_editor.count_tokens("make it night") == 11
    assert tiny_editor.count_tokens("Make it NIGHT") == 11
    assert tiny_editor.count_tokens("") == 0
    assert tiny_editor.count_tokens("a " * 100) == 100  # not truncated at 75


def test_count_tokens_before_load_loads_only_the_tokenizer(tiny_model_dir: Path) -> None:
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu")

    assert editor.count_tokens("make it night") == 11
    assert editor.max_instruction_tokens == 75
    assert editor.describe()["scheduler"] == "not loaded"


def test_empty_batch_is_rejected(tiny_editor: DiffusersEditor) -> None:
    with pytest.raises(ValueError, match="at least one request"):
        tiny_editor.edit_batch([])


def test_batch_with_different_settings_is_rejected(tiny_editor: DiffusersEditor) -> None:
    with pytest.raises(ValueError, match="must share"):
        tiny_editor.edit_batch([_request(steps=2), _request(steps=3)])
    with pytest.raises(ValueError, match="must share"):
        tiny_editor.edit_batch([_request(guidance_scale=7.5), _request(guidance_scale=5.0)])


def test_batch_with_different_sizes_is_rejected(tiny_editor: DiffusersEditor) -> None:
    with pytest.raises(ValueError, match="same size"):
        tiny_editor.edit_batch([_request(size=(64, 64)), _request(size=(96, 64))])


def test_size_not_a_multiple_of_8_is_rejected(tiny_editor: DiffusersEditor) -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        tiny_editor.edit_batch([_request(size=(60, 64))])


def test_lora_changes_the_result(
    tiny_editor: DiffusersEditor, tiny_model_dir: Path, tiny_lora_dir: Path
) -> None:
    with_lora = DiffusersEditor(str(tiny_model_dir), lora=str(tiny_lora_dir), device="cpu")

    [plain] = tiny_editor.edit_batch([_request(seed=5)])
    [adapted] = with_lora.edit_batch([_request(seed=5)])

    assert with_lora.describe()["lora"] == str(tiny_lora_dir)
    assert np.abs(_pixels(plain) - _pixels(adapted)).mean() > 1.0
