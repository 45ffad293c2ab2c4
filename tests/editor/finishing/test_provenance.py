"""Provenance: a signed C2PA manifest and a watermark that survives JPEG recompression."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from editor.finishing.provenance import (
    Credentials,
    Provenance,
    Step,
    embed_watermark,
    ensure_credentials,
    has_watermark,
    verify,
)

STEPS = [Step("c2pa.edited", "edited by instruction"), Step("c2pa.resized", "upscaled 2x")]


def photo(size: tuple[int, int] = (512, 384), seed: int = 0, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 32 + 1, size[0] // 32 + 1, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC), dtype=float)
    noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(noisy).convert(mode)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_a_stamped_file_carries_manifest_and_watermark(provenance: Provenance) -> None:
    signed = provenance.stamp(png(photo()), STEPS, "pix2chat-7.png")

    findings = verify(signed)
    assert findings.manifest is not None
    assert findings.signer == "pix2chat signer"
    assert findings.actions[0].startswith("c2pa.created")
    assert "c2pa.edited: edited by instruction" in findings.actions
    assert "c2pa.resized: upscaled 2x" in findings.actions
    assert "signingCredential.untrusted" in findings.validation  # self-signed, said plainly
    assert findings.watermark


def test_the_stamped_file_is_still_the_picture(provenance: Provenance) -> None:
    original = photo()
    with Image.open(io.BytesIO(provenance.stamp(png(original), STEPS, "x.png"))) as signed:
        assert signed.format == "PNG"
        difference = np.asarray(signed, dtype=float) - np.asarray(original, dtype=float)
    psnr = 10 * np.log10(255**2 / float((difference**2).mean()))
    assert psnr > 32, psnr  # a few levels in the luma (imwatermark's fixed strength)


def test_a_cutout_keeps_its_transparency(provenance: Provenance) -> None:
    image = photo(mode="RGBA")
    image.putalpha(Image.new("L", image.size, 0))
    with Image.open(io.BytesIO(provenance.stamp(png(image), STEPS, "x.png"))) as signed:
        assert signed.mode == "RGBA"
        assert signed.getchannel("A").getextrema() == (0, 0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_watermark_survives_jpeg_85(seed: int) -> None:
    marked = embed_watermark(photo(seed=seed))
    buffer = io.BytesIO()
    marked.save(buffer, "JPEG", quality=85)
    with Image.open(io.BytesIO(buffer.getvalue())) as recompressed:
        assert has_watermark(recompressed)


def test_an_unmarked_photo_has_neither() -> None:
    findings = verify(png(photo(seed=5)))
    assert findings.manifest is None
    assert not findings.watermark


def test_credentials_are_made_once_and_reused(tmp_path: Path) -> None:
    cert, key = tmp_path / "p" / "cert.pem", tmp_path / "p" / "key.pem"
    made = ensure_credentials(cert, key)
    again = ensure_credentials(cert, key)

    assert made.self_signed and not again.self_signed
    assert (made.chain, made.key) == (again.chain, again.key)
    assert made.chain.count(b"BEGIN CERTIFICATE") == 2  # signer and its local CA
    assert key.stat().st_mode & 0o077 == 0


def test_a_certificate_without_its_key_is_refused(tmp_path: Path, credentials: Credentials) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_bytes(credentials.chain)
    with pytest.raises(FileNotFoundError):
        ensure_credentials(cert, tmp_path / "key.pem")
