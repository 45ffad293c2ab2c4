"""The family of a model folder comes from its model_index.json, and unknown ones say what is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from editor.errors import ModelLoadError
from editor.families.registry import (
    FLUX_KONTEXT,
    INSTRUCT_PIX2PIX,
    QWEN_IMAGE_EDIT,
    SDXL_INSTRUCT_PIX2PIX,
    family_by_name,
    read_family,
)


def test_each_tiny_folder_is_read_as_its_family(
    tiny_model_dir: Path, tiny_sdxl_dir: Path, tiny_kontext_dir: Path, tiny_qwen_dir: Path
) -> None:
    assert read_family(str(tiny_qwen_dir)) == QWEN_IMAGE_EDIT
    assert read_family(str(tiny_model_dir)) == INSTRUCT_PIX2PIX
    assert read_family(str(tiny_sdxl_dir)) == SDXL_INSTRUCT_PIX2PIX
    assert read_family(str(tiny_kontext_dir)) == FLUX_KONTEXT


def test_an_unsupported_pipeline_names_the_supported_families(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "QwenImageEditPlusPipeline"})
    )

    with pytest.raises(ModelLoadError) as caught:
        read_family(str(tmp_path))

    message = str(caught.value)
    assert "QwenImageEditPlusPipeline" in message
    for name in ("instruct-pix2pix", "sdxl-instruct-pix2pix", "flux-kontext", "qwen-image-edit"):
        assert name in message
    assert caught.value.option == "model"


def test_a_folder_without_an_index_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        read_family(str(tmp_path))


def test_families_are_found_by_name_and_a_wrong_name_lists_them() -> None:
    assert family_by_name("flux-kontext") == FLUX_KONTEXT
    with pytest.raises(ModelLoadError, match="sdxl-instruct-pix2pix"):
        family_by_name("hidream-e1")
