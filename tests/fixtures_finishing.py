"""Session fixtures of the finishing tools: tiny random-weight models saved once, loaded by the
production loaders, and one signing credential."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from editor.finishing.finisher import Finisher
from editor.finishing.matting import Matting
from editor.finishing.provenance import Credentials, Provenance, ensure_credentials
from editor.finishing.upscale import Upscaler
from editor.testing.finishing import export_tiny_matting, save_tiny_esrgan


@pytest.fixture(scope="session")
def finishing_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("finishing")


@pytest.fixture(scope="session")
def tiny_esrgan_4x(finishing_dir: Path) -> Path:
    return save_tiny_esrgan(finishing_dir / "tiny-esrgan-x4.pth", scale=4)


@pytest.fixture(scope="session")
def tiny_esrgan_2x(finishing_dir: Path) -> Path:
    return save_tiny_esrgan(finishing_dir / "tiny-esrgan-x2.safetensors", scale=2)


@pytest.fixture(scope="session")
def tiny_matting(finishing_dir: Path) -> Path:
    path = export_tiny_matting(finishing_dir / "tiny-matting.onnx")
    # rembg imports pymatting, whose numba functions compile on their first import in a new
    # virtualenv (tens of seconds on a busy 2-core machine): paid here, once, rather than
    # inside the first test's wait for a cut-out.
    Matting(str(path)).mask(Image.new("RGB", (32, 32)))
    return path


@pytest.fixture(scope="session")
def credentials(finishing_dir: Path) -> Credentials:
    return ensure_credentials(finishing_dir / "cert.pem", finishing_dir / "key.pem")


@pytest.fixture(scope="session")
def provenance(credentials: Credentials) -> Provenance:
    return Provenance(credentials)


@pytest.fixture(scope="session")
def tiny_finisher(tiny_esrgan_2x: Path, tiny_matting: Path) -> Finisher:
    """The finishing tools on tiny models (2x upscaler: the fastest on a CPU)."""
    return Finisher(Upscaler(str(tiny_esrgan_2x)), Matting(str(tiny_matting)))
