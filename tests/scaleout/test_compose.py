"""docker-compose.yml, checked against the code it runs (no Docker engine needed).

Every PIX2CHAT_ variable it sets must be a real setting with a valid value, every command a
real `pix2chat` command (and doctor check), and the worker service must be scalable: no fixed
container name, one GPU reserved per replica, time to finish a batch on SIGTERM.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.main import get_command

from bot.cli import app
from bot.commands.doctor import run_checks
from bot.config import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
DEFAULT = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def _resolved(value: str) -> str:
    """A value as compose would interpolate it with nothing set (the default)."""
    return DEFAULT.sub(lambda match: match.group(1), value)


def test_services_volumes_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "telegram", "discord", "worker"} <= set(services)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "pgdata" in compose["volumes"]
    for name in ("postgres", "telegram", "discord", "worker"):
        assert services[name]["healthcheck"]["test"], name
    for name in ("telegram", "discord", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_worker_scales_one_gpu_each(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert worker["command"] == ["pix2chat", "worker"]
    assert worker["stop_grace_period"]


def test_every_setting_and_command_exists(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, service in compose["services"].items():
        environment = {k: _resolved(str(v)) for k, v in service.get("environment", {}).items()}
        for variable in environment:
            if variable.startswith("PIX2CHAT_"):
                field = variable.removeprefix("PIX2CHAT_").lower()
                assert field in Settings.model_fields, (name, variable)
        settings = {
            k.removeprefix("PIX2CHAT_").lower(): v
            for k, v in environment.items()
            if k.startswith("PIX2CHAT_") and v
        }
        parsed = Settings(_env_file=None, data_dir=tmp_path, **settings)  # type: ignore[call-arg]
        if "PIX2CHAT_WORKER" in environment:
            assert parsed.worker == "remote" and parsed.image_store == "database", name
        command = service.get("command")
        if command:
            assert command[0] == "pix2chat" and command[1] in commands, (name, command)
        check = service.get("healthcheck", {}).get("test", [])
        if check[:3] == ["CMD", "pix2chat", "doctor"]:
            only = check[check.index("--only") + 1 :]
            assert len(run_checks_names(only)) == len(only), (name, only)


def run_checks_names(only: list[str]) -> list[str]:
    """The doctor checks `--only` would select (the check functions' names)."""
    import bot.commands.doctor as doctor

    return [name for name in only if callable(getattr(doctor, f"check_{name}", None))]


def test_run_checks_honours_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    assert [check.name for check in run_checks(settings, ["queue"])] == ["queue"]
