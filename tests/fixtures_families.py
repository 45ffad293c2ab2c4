"""Tiny SDXL InstructPix2Pix and FLUX.1 Kontext pipelines (and LoRAs), built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from editor.testing.tiny_families import (
    build_tiny_family_lora,
    build_tiny_flux_kontext,
    build_tiny_qwen_image_edit,
    build_tiny_sdxl_pix2pix,
)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sdxl_pix2pix(tmp_path_factory.mktemp("tiny-sdxl-ip2p"))


@pytest.fixture(scope="session")
def tiny_kontext_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_flux_kontext(tmp_path_factory.mktemp("tiny-kontext"))


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_qwen_image_edit(tmp_path_factory.mktemp("tiny-qwen-edit"))


@pytest.fixture(scope="session")
def tiny_family_dirs(
    tiny_sdxl_dir: Path, tiny_kontext_dir: Path, tiny_qwen_dir: Path
) -> dict[str, Path]:
    """Family name -> saved tiny pipeline folder, for tests run once per family."""
    return {
        "sdxl-instruct-pix2pix": tiny_sdxl_dir,
        "flux-kontext": tiny_kontext_dir,
        "qwen-image-edit": tiny_qwen_dir,
    }


@pytest.fixture(scope="session")
def tiny_family_loras(
    tiny_family_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    return {
        name: build_tiny_family_lora(folder, tmp_path_factory.mktemp(f"tiny-lora-{name}"))
        for name, folder in tiny_family_dirs.items()
    }
