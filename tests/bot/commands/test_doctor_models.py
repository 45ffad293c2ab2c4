"""`pix2chat doctor` says each configured model's family and whether it fits the GPU."""

from __future__ import annotations

import json
from pathlib import Path

from bot.commands.doctor import check_models
from bot.config import Settings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, device="cpu", **values)  # type: ignore[call-arg]


def test_models_that_fit_and_one_that_does_not(
    tiny_model_dir: Path, tiny_kontext_dir: Path, tmp_path: Path
) -> None:
    models = f"ip2p={tiny_model_dir},kontext={tiny_kontext_dir}"

    roomy = check_models(_settings(tmp_path, models=models, gpu_memory_gb=80, dtype="bfloat16"))
    assert roomy.ok, roomy.detail
    assert "ip2p: instruct-pix2pix, ~2.0 GB" in roomy.detail
    assert "kontext: flux-kontext, ~31.4 GB" in roomy.detail
    assert "all fit at once" in roomy.detail

    small = check_models(_settings(tmp_path, models=models, gpu_memory_gb=24, dtype="bfloat16"))
    assert not small.ok and "kontext needs ~31.4 GB of 24 GB" in small.detail
    assert "PIX2CHAT_OFFLOAD" in small.detail


def test_one_model_without_a_gpu_is_not_measured(tiny_sdxl_dir: Path, tmp_path: Path) -> None:
    check = check_models(_settings(tmp_path, model=str(tiny_sdxl_dir)))

    assert check.ok
    assert "sdxl-instruct-pix2pix, ~12.9 GB (fp32)" in check.detail
    assert "no GPU memory" in check.detail


def test_an_unsupported_family_fails_naming_the_supported_ones(tmp_path: Path) -> None:
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "model_index.json").write_text(
        json.dumps({"_class_name": "QwenImageEditPlusPipeline"})
    )

    check = check_models(_settings(tmp_path, model=str(folder)))

    assert not check.ok and "flux-kontext" in check.detail
