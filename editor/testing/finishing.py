"""Tiny random-weight finishing models for tests and benchmarks (never for production).

An ESRGAN-architecture (RRDBNet) state dict that spandrel's detection recognises, and a tiny
ONNX matting model with the input/output layout rembg's custom session expects
(1x3x320x320 in, 1x1x320x320 out). Both are saved to files and loaded by the production
loaders, as real weights are.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def save_tiny_esrgan(path: Path, *, scale: int = 4, filters: int = 8, blocks: int = 1) -> Path:
    """A random-weight RRDBNet (new-arch key names) saved as .pth or .safetensors."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(0)
    model = ESRGAN(num_filters=filters, num_blocks=blocks, scale=scale)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


class _RedSubject(nn.Module):
    """Foreground = red minus green: a red object on a green ground is the subject."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([4.0, -4.0, 0.0]).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(image))


def export_tiny_matting(path: Path) -> Path:
    """A tiny matting network exported to ONNX in rembg's u2net layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _RedSubject().eval(),
            (torch.zeros(1, 3, 320, 320),),
            str(path),
            input_names=["input.1"],
            output_names=["mask"],
            dynamo=False,
        )
    return path
