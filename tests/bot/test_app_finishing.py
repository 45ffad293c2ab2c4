"""Wiring of the finishing tools from the settings: PIX2CHAT_PROVENANCE, the signing
certificate made once, a half-configured certificate refused, the extra missing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bot.app import ConfigurationError, make_finisher, make_provenance
from bot.config import Settings


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", **values)  # type: ignore[call-arg]


def test_provenance_off_signs_nothing(tmp_path: Path) -> None:
    assert make_provenance(settings(tmp_path, provenance="off")) is None
    assert not (tmp_path / "data" / "provenance").exists()


def test_provenance_on_makes_a_certificate_once(tmp_path: Path) -> None:
    first = make_provenance(settings(tmp_path))
    second = make_provenance(settings(tmp_path))
    assert first is not None and second is not None
    assert first.credentials.self_signed and not second.credentials.self_signed
    assert first.credentials.chain == second.credentials.chain
    assert (tmp_path / "data" / "provenance" / "c2pa-cert.pem").exists()


def test_a_certificate_without_its_key_is_a_configuration_error(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError, match="PIX2CHAT_C2PA_KEY"):
        make_provenance(settings(tmp_path, c2pa_cert=cert, c2pa_key=tmp_path / "key.pem"))


def test_without_the_extra_files_go_out_unsigned_and_the_log_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "c2pa", None)
    assert make_provenance(settings(tmp_path)) is None
    assert "pix2chat[finishing]" in caplog.text


def test_the_finisher_takes_the_model_settings(tmp_path: Path) -> None:
    finisher = make_finisher(
        settings(tmp_path, upscaler_model="weights/x4.pth", matting_model="u2net", device="cpu")
    )
    assert finisher.upscaler.source == "weights/x4.pth"
    assert finisher.matting.source == "u2net"
