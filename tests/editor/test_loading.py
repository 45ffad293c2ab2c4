"""Loading the pipeline: failures name the thing and the editor option that chose it.

The bot turns `ModelLoadError.option` into its setting's name (tests/bot/test_app_editor.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from editor.errors import ModelLoadError
from editor.loading import select_device
from editor.pix2pix import DiffusersEditor


def test_missing_local_folder_names_the_setting(tmp_path: Path) -> None:
    editor = DiffusersEditor(str(tmp_path / "no-such-model"), device="cpu")

    with pytest.raises(ModelLoadError, match="no-such-model") as caught:
        editor.load()

    assert caught.value.option == "model"
    assert caught.value.value == str(tmp_path / "no-such-model")


def test_folder_without_a_pipeline_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model_index\.json") as caught:
        DiffusersEditor(str(tmp_path), device="cpu").load()

    assert caught.value.__cause__ is not None
    assert caught.value.option == "model"


def test_uncached_hub_id_offline_fails_fast_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    editor = DiffusersEditor("pix2chat-tests/no-such-model", device="cpu")
    started = time.monotonic()

    with pytest.raises(ModelLoadError) as caught:
        editor.load()

    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "pix2chat-tests/no-such-model" in message
    assert caught.value.option == "model"
    assert "HF_HUB_OFFLINE" in message


def test_missing_lora_names_the_setting(tiny_model_dir: Path, tmp_path: Path) -> None:
    editor = DiffusersEditor(str(tiny_model_dir), lora=str(tmp_path / "no-lora"), device="cpu")

    with pytest.raises(ModelLoadError, match="no-lora") as caught:
        editor.load()

    assert caught.value.option == "lora"


def test_safety_checker_requested_but_absent(tiny_model_dir: Path) -> None:
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu", safety_checker=True)

    with pytest.raises(ModelLoadError, match="safety checker"):
        editor.load()


def test_unknown_dtype_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="dtype"):
        DiffusersEditor("any", dtype="float8")


@pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(),
    reason="needs a CPU-only machine",
)
def test_select_device_on_a_cpu_only_machine() -> None:
    assert select_device("auto") == "cpu"
    assert select_device("cpu") == "cpu"
    with pytest.raises(ModelLoadError, match="'cuda'") as caught:
        select_device("cuda")
    assert (caught.value.option, caught.value.value) == ("device", "cuda")
    assert caught.value.suggestion == "auto"
    with pytest.raises(ModelLoadError, match="'tpu'") as caught:
        select_device("tpu")
    assert (caught.value.option, caught.value.value) == ("device", "tpu")
