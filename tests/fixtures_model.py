"""Fixtures with the tiny random-weight InstructPix2Pix pipeline, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from editor.pix2pix import DiffusersEditor
from editor.segment import ClipSegSegmenter
from editor.testing.tiny import (
    build_tiny_clip,
    build_tiny_clipseg,
    build_tiny_lora,
    build_tiny_pipeline,
    build_tiny_preview_decoder,
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny pipeline folder, loadable like any local model (PIX2CHAT_MODEL=<path>)."""
    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-pix2pix"))


@pytest.fixture(scope="session")
def tiny_lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random LoRA for the tiny pipeline, in diffusers' LoRA format."""
    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("tiny-lora"))


@pytest.fixture(scope="session")
def tiny_editor(tiny_model_dir: Path) -> DiffusersEditor:
    """The production editor on the CPU, loaded through its own `load()`; share, do not mutate."""
    editor = DiffusersEditor(str(tiny_model_dir), device="cpu")
    editor.load()
    return editor


@pytest.fixture(scope="session")
def tiny_preview_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random TAESD-shaped preview decoder for the tiny pipeline (PIX2CHAT_PREVIEW_MODEL)."""
    return build_tiny_preview_decoder(tmp_path_factory.mktemp("tiny-taesd"))


@pytest.fixture(scope="session")
def tiny_clipseg_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny random CLIPSeg folder, loadable like any local model
    (PIX2CHAT_SEGMENTER_MODEL=<path>)."""
    return build_tiny_clipseg(tmp_path_factory.mktemp("tiny-clipseg"))


@pytest.fixture(scope="session")
def tiny_segmenter(tiny_clipseg_dir: Path) -> ClipSegSegmenter:
    """The production segmenter on the tiny CLIPSeg, not yet loaded (it loads on first use)."""
    return ClipSegSegmenter(str(tiny_clipseg_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight CLIP with its processor, loadable as PIX2CHAT_SCORER_MODEL=<path>."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))
