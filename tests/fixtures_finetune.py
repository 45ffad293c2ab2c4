"""Tiny random CLIP, DINO and text-to-image models for the fine-tuning tests, built once.

Shared by tests/editor/finetune and the fine-tuning commands' tests in tests/bot/commands.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from editor.finetune.testing import (
    build_tiny_clip,
    build_tiny_dino,
    build_tiny_text_to_image,
    build_toy_pipeline,
)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny CLIP (model, tokenizer, image processor), loadable by path."""
    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_dino_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny ViT with its image processor, the shape of facebook/dino-vits16."""
    return build_tiny_dino(tmp_path_factory.mktemp("tiny-dino"))


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Stable Diffusion text-to-image pipeline."""
    return build_tiny_text_to_image(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def toy_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny InstructPix2Pix pipeline with learnable latents (see build_toy_pipeline)."""
    return build_toy_pipeline(tmp_path_factory.mktemp("toy-pix2pix"))


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Torch on one thread: on a shared 2-core machine two threads mostly wait for each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
