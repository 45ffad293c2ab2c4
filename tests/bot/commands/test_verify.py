"""`pix2chat verify IMAGE`: finds the manifest and the watermark of a delivered file, says
plainly when there is neither, and names the extra when it is missing."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from bot.cli import app
from bot.commands.verify import NOT_INSTALLED, NOTHING_FOUND
from editor.finishing.provenance import Provenance, Step, embed_watermark


def photo(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (13, 17, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((512, 384), Image.Resampling.BICUBIC)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_verify_reads_a_stamped_file(tmp_path: Path, provenance: Provenance) -> None:
    signed = tmp_path / "signed.png"
    signed.write_bytes(provenance.stamp(png(photo()), [Step("c2pa.edited", "edited")], "x.png"))

    code, output = invoke("verify", str(signed))

    assert code == 0, output
    assert "C2PA manifest: signed by pix2chat signer" in output
    assert "action: c2pa.edited: edited" in output
    assert "untrusted" in output and "self-signed" in output
    assert "Watermark: found" in output


def test_verify_finds_the_watermark_in_a_recompressed_copy(tmp_path: Path) -> None:
    copy = tmp_path / "copy.jpg"
    embed_watermark(photo(1)).save(copy, "JPEG", quality=85)

    code, output = invoke("verify", str(copy))

    assert code == 0, output
    assert "C2PA manifest: none" in output  # metadata does not survive recompression
    assert "Watermark: found" in output


def test_verify_of_a_plain_photo_finds_nothing(tmp_path: Path) -> None:
    plain = tmp_path / "plain.png"
    plain.write_bytes(png(photo(2)))
    code, output = invoke("verify", str(plain))
    assert code == NOTHING_FOUND
    assert "C2PA manifest: none" in output and "Watermark: not found" in output


def test_verify_of_something_else_says_so(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    code, output = invoke("verify", str(text))
    assert code == 2 and "not an image" in output
    code, output = invoke("verify", str(tmp_path / "missing.png"))
    assert code == 2 and "Cannot read" in output


def test_verify_without_the_extra_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = tmp_path / "plain.png"
    plain.write_bytes(png(photo(3)))
    monkeypatch.setitem(sys.modules, "imwatermark", None)
    code, output = invoke("verify", str(plain))
    assert code == NOT_INSTALLED
    assert "pip install 'pix2chat[finishing]'" in output
