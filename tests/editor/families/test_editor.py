"""Every family's tiny pipeline, loaded through the production loader, edits like IP2P does.

Size and aspect kept (the result is re-aligned to the request), pix2chat's parameters mapped
onto the family's (each one changes the pixels where the family has it), LoRA fused, seeds
reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.base import EditRequest
from editor.families.editor import FamilyEditor, adapter_for, open_editor, working_size
from editor.families.registry import read_family
from editor.params import EditParams
from editor.pix2pix import DiffusersEditor

FAMILIES = ["sdxl-instruct-pix2pix", "flux-kontext", "qwen-image-edit"]
PARAMS = EditParams(num_inference_steps=2, guidance_scale=3.0, image_guidance_scale=1.5, seed=7)


def _photo(size: tuple[int, int] = (58, 42)) -> Image.Image:
    ramp = np.linspace(0, 255, size[0] * size[1] * 3).reshape(size[1], size[0], 3)
    return Image.fromarray(ramp.astype(np.uint8))


def _editor(folder: Path, lora: Path | None = None) -> FamilyEditor:
    editor = open_editor(
        str(folder), lora=str(lora) if lora else None, device="cpu", pix2pix=_no_ip2p
    )
    assert isinstance(editor, FamilyEditor)
    return editor


def _no_ip2p() -> DiffusersEditor:
    raise AssertionError("not an InstructPix2Pix folder")


def _edit(
    editor: FamilyEditor, params: EditParams = PARAMS, text: str = "make it red"
) -> Image.Image:
    (result,) = editor.edit_batch([EditRequest(_photo(), text, params)])
    return result


def _differ(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b, dtype=float)).mean())


@pytest.fixture(scope="module")
def editors(tiny_family_dirs: dict[str, Path]) -> dict[str, FamilyEditor]:
    loaded = {name: _editor(folder) for name, folder in tiny_family_dirs.items()}
    for editor in loaded.values():
        editor.load()
    return loaded


@pytest.mark.parametrize("family", FAMILIES)
def test_an_edit_keeps_the_size_reports_steps_and_repeats_with_its_seed(
    editors: dict[str, FamilyEditor], family: str
) -> None:
    editor = editors[family]
    steps: list[tuple[int, int]] = []
    requests = [
        EditRequest(_photo(), "make it red", PARAMS),
        EditRequest(_photo(), "make it blue", EditParams(**{**PARAMS.to_dict(), "seed": 8})),
    ]

    first, second = editor.edit_batch(requests, progress=lambda s, t: steps.append((s, t)))

    assert first.size == second.size == (58, 42)  # not a multiple of 16: re-aligned
    assert steps == [(1, 2), (2, 2)]
    assert _differ(first, second) > 0
    assert _differ(first, _edit(editor)) < 1.0  # same seed, same result (batch or alone)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_guidance_reaches_the_pipeline(editors: dict[str, FamilyEditor], family: str) -> None:
    editor = editors[family]
    stronger = EditParams(**{**PARAMS.to_dict(), "guidance_scale": 9.0})

    assert _differ(_edit(editor), _edit(editor, stronger)) > 0


def test_image_guidance_reaches_sdxl_and_kontext_and_qwen_have_none(
    editors: dict[str, FamilyEditor],
) -> None:
    other = EditParams(**{**PARAMS.to_dict(), "image_guidance_scale": 4.0})

    assert (
        _differ(
            _edit(editors["sdxl-instruct-pix2pix"]), _edit(editors["sdxl-instruct-pix2pix"], other)
        )
        > 0
    )
    assert editors["sdxl-instruct-pix2pix"].family.image_guidance
    for family in ("flux-kontext", "qwen-image-edit"):
        assert not editors[family].family.image_guidance
    assert _differ(_edit(editors["flux-kontext"]), _edit(editors["flux-kontext"], other)) == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_a_lora_is_fused_into_every_family(
    editors: dict[str, FamilyEditor],
    tiny_family_dirs: dict[str, Path],
    tiny_family_loras: dict[str, Path],
    family: str,
) -> None:
    with_lora = _editor(tiny_family_dirs[family], tiny_family_loras[family])

    assert _differ(_edit(editors[family]), _edit(with_lora)) > 0
    assert with_lora.describe()["lora"] == str(tiny_family_loras[family])


@pytest.mark.parametrize("family", FAMILIES)
def test_tokens_are_counted_with_the_familys_own_tokenizer(
    tiny_family_dirs: dict[str, Path], family: str
) -> None:
    editor = _editor(tiny_family_dirs[family])  # not loaded: the tokenizer alone

    assert editor.count_tokens("make it red") > 0
    # T5: 64 - end marker; Qwen: 512 (its pipeline's limit); CLIP: 77 - start/end markers
    expected = {"flux-kontext": 63, "qwen-image-edit": 512}.get(family, 75)
    assert editor.max_instruction_tokens == expected
    assert editor.describe()["device"] == "cpu (not loaded)"


def test_cosxl_edit_is_read_from_the_model_index(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "cosxl-copy"
    copy.mkdir()
    for item in tiny_sdxl_dir.iterdir():
        (copy / item.name).symlink_to(item)
    (copy / "model_index.json").unlink()
    index = json.loads((tiny_sdxl_dir / "model_index.json").read_text())
    (copy / "model_index.json").write_text(json.dumps({**index, "is_cosxl_edit": True}))

    plain, cos = _editor(tiny_sdxl_dir), _editor(copy)
    plain.load()
    cos.load()

    assert cos.pipeline.is_cosxl_edit and not plain.pipeline.is_cosxl_edit
    assert _differ(_edit(plain), _edit(cos)) > 0


def test_the_ip2p_family_and_unreadable_models_get_the_ip2p_editor(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    made: list[str] = []

    def pix2pix() -> DiffusersEditor:
        made.append("ip2p")
        return DiffusersEditor(str(tiny_model_dir), device="cpu")

    assert isinstance(open_editor(str(tiny_model_dir), pix2pix=pix2pix), DiffusersEditor)
    assert isinstance(open_editor("pix2chat-tests/not-cached", pix2pix=pix2pix), DiffusersEditor)
    assert made == ["ip2p", "ip2p"]
    assert read_family(str(tiny_model_dir)).name == "instruct-pix2pix"
    with pytest.raises(ValueError, match="own editor"):
        adapter_for(read_family(str(tiny_model_dir)))


def test_working_sizes_are_multiples_and_never_empty() -> None:
    assert working_size((1000, 750), 16) == (992, 736)
    assert working_size((10, 40), 16) == (16, 32)
