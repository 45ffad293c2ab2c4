"""`make_editor` and `with_setting_hint`: settings reach the editor, and its errors name them.

The model layer names its own arguments (`ModelLoadError.option`); these check that the bot
turns each into the PIX2CHAT_ setting that chose it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.app import make_editor, with_setting_hint
from bot.config import Settings
from editor.errors import ModelLoadError, OptionError
from editor.loading import select_device
from editor.pix2pix import DiffusersEditor
from editor.speed import SpeedOptions


def test_settings_reach_the_editor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIX2CHAT_DTYPE", "bfloat16")
    monkeypatch.setenv("PIX2CHAT_CHANNELS_LAST", "true")
    monkeypatch.setenv("PIX2CHAT_COMPILE", "unet+vae")
    monkeypatch.setenv("PIX2CHAT_CUDA_GRAPHS", "1")
    monkeypatch.setenv("PIX2CHAT_COMPILE_SIZES", "512x512, 768x512")
    monkeypatch.setenv("PIX2CHAT_COMPILE_BATCH_SIZES", "1,4")
    monkeypatch.setenv("PIX2CHAT_PREVIEW", "taesd")

    editor = make_editor(Settings(_env_file=None))  # type: ignore[call-arg]

    assert isinstance(editor, DiffusersEditor)
    assert editor.dtype == "bfloat16"
    assert editor.speed == SpeedOptions(
        channels_last=True,
        compile="unet+vae",
        cuda_graphs=True,
        compile_sizes=((512, 512), (768, 512)),
        compile_batch_sizes=(1, 4),
        preview="taesd",
    )


def test_a_max_batch_above_the_compiled_sizes_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PIX2CHAT_COMPILE", "unet")
    monkeypatch.setenv("PIX2CHAT_MAX_BATCH", "8")
    monkeypatch.setenv("PIX2CHAT_COMPILE_BATCH_SIZES", "1,2,4")

    with caplog.at_level(logging.WARNING, logger="bot.app"):
        make_editor(Settings(_env_file=None))  # type: ignore[call-arg]

    assert "PIX2CHAT_MAX_BATCH=8 is above the largest compiled batch size (4)" in caplog.text


def test_default_settings_are_the_plain_fast_path() -> None:
    editor = make_editor(Settings(_env_file=None))  # type: ignore[call-arg]

    assert isinstance(editor, DiffusersEditor)
    assert editor.dtype == "auto" and editor.speed == SpeedOptions()


def test_bad_speed_settings_are_a_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIX2CHAT_COMPILE_SIZES", "512")

    with pytest.raises(ModelLoadError, match="WIDTHxHEIGHT"):
        make_editor(Settings(_env_file=None))  # type: ignore[call-arg]

    monkeypatch.setenv("PIX2CHAT_COMPILE_SIZES", "512x512")
    monkeypatch.setenv("PIX2CHAT_CUDA_GRAPHS", "true")
    with pytest.raises(ModelLoadError, match="PIX2CHAT_COMPILE=unet"):
        make_editor(Settings(_env_file=None))  # type: ignore[call-arg]


@pytest.mark.parametrize("option", ["model", "lora", "device", "preview_model", "compile"])
def test_every_option_the_editor_names_is_a_setting(option: str) -> None:
    assert option in Settings.model_fields


def test_a_missing_model_folder_names_the_setting(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, model=str(tmp_path / "no-such-model"), device="cpu")  # type: ignore[call-arg]

    with pytest.raises(ModelLoadError) as caught:
        make_editor(settings).load()

    message = with_setting_hint(caught.value)
    assert "no-such-model" in message
    assert f"PIX2CHAT_MODEL={str(tmp_path / 'no-such-model')!r}" in message


def test_an_uncached_hub_id_offline_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(ModelLoadError) as caught:
        DiffusersEditor("pix2chat-tests/no-such-model", device="cpu").load()

    message = with_setting_hint(caught.value)
    assert "pix2chat-tests/no-such-model" in message
    assert "PIX2CHAT_MODEL" in message
    assert "HF_HUB_OFFLINE" in message


def test_a_missing_lora_names_the_setting(tiny_model_dir: Path, tmp_path: Path) -> None:
    editor = DiffusersEditor(str(tiny_model_dir), lora=str(tmp_path / "no-lora"), device="cpu")

    with pytest.raises(ModelLoadError) as caught:
        editor.load()

    assert "PIX2CHAT_LORA" in with_setting_hint(caught.value)


def test_a_missing_preview_model_names_the_setting(tiny_model_dir: Path, tmp_path: Path) -> None:
    speed = SpeedOptions(preview="taesd", preview_model=str(tmp_path / "no-taesd"))

    with pytest.raises(ModelLoadError) as caught:
        DiffusersEditor(str(tiny_model_dir), device="cpu", speed=speed).load()

    assert "PIX2CHAT_PREVIEW_MODEL" in with_setting_hint(caught.value)


def test_an_unknown_device_names_the_setting() -> None:
    with pytest.raises(ModelLoadError) as caught:
        select_device("tpu")

    assert "PIX2CHAT_DEVICE='tpu'" in with_setting_hint(caught.value)


def test_the_hint_says_what_to_set_when_the_editor_knows() -> None:
    error = ModelLoadError("torch.compile failed", option="compile", value="unet", suggestion="off")

    assert with_setting_hint(error) == (
        "torch.compile failed\nCheck PIX2CHAT_COMPILE='unet', or set PIX2CHAT_COMPILE=off."
    )
    assert with_setting_hint(error, separator=" ").count("\n") == 0
    with pytest.raises(OptionError) as caught:
        SpeedOptions(cuda_graphs=True)
    assert "PIX2CHAT_COMPILE" in with_setting_hint(caught.value)


def test_an_error_without_an_option_is_left_as_it_is() -> None:
    assert with_setting_hint(ModelLoadError("no safety checker")) == "no safety checker"
