"""The `pix2chat` command as an operator meets it: exit codes, messages, files written.

Most cases run the installed console script in a subprocess with a controlled environment (no
tokens, a temporary data folder, no .env, hub offline), so the entry point, the settings and
the process exit code are all the real ones. Refusals that stop before any model work run
in-process through typer's runner instead: the same code paths, without paying for a torch
import per case. A traceback reaching the user counts as a failure everywhere.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Protocol

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner, Result

from bot.cli import app

TOKEN = "123456:SECRET-token-value-never-printed"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SUBPROCESS_TIMEOUT_S = 120


# -- helpers -----------------------------------------------------------------------------------


def _command() -> list[str]:
    """The installed console script next to this interpreter, else the module itself."""
    script = shutil.which("pix2chat", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "bot.cli"]


def base_env(tmp_path: Path) -> dict[str, str]:
    """This environment minus every PIX2CHAT_ setting, plus a temporary data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIX2CHAT_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PIX2CHAT_DATA_DIR=str(tmp_path / "data"),
    )
    return env


def pix2chat(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `pix2chat ARGS` in `tmp_path` (so no .env is read) with PIX2CHAT_<NAME> settings."""
    env = base_env(tmp_path) | {f"PIX2CHAT_{k.upper()}": v for k, v in settings.items()}
    completed = subprocess.run(
        [*_command(), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert "Traceback" not in completed.stdout + completed.stderr, completed.stderr
    return completed


class Invoke(Protocol):
    def __call__(self, *args: str, **settings: str) -> Result: ...


@pytest.fixture
def invoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Invoke:
    """Run the CLI in-process with the same environment rules as `pix2chat`."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("PIX2CHAT_")]:
        monkeypatch.delenv(name)

    def run(*args: str, **settings: str) -> Result:
        env = {
            "PIX2CHAT_DATA_DIR": str(tmp_path / "data"),
            **{f"PIX2CHAT_{k.upper()}": v for k, v in settings.items()},
        }
        result = CliRunner().invoke(app, list(args), env=env)
        # Anything but a deliberate exit (typer.Exit / a usage error) escaped the command.
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception
        )
        return result

    return run


def write_photo(path: Path, size: tuple[int, int] = (320, 240)) -> Path:
    gradient = Image.linear_gradient("L").resize(size)
    mirrored = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    Image.merge("RGB", (gradient, mirrored, gradient.rotate(90).resize(size))).save(
        path, format="JPEG", quality=90
    )
    return path


def doctor_lines(output: str) -> dict[str, tuple[str, str]]:
    """{check name: (mark, detail)} from doctor's `MARK NAME DETAIL` lines."""
    lines = {}
    for line in output.splitlines():
        match = re.match(r"^(ok|FAIL)\s+(\S+)\s+(.*)$", line)
        if match:
            lines[match.group(2)] = (match.group(1), match.group(3))
    return lines


# -- run ---------------------------------------------------------------------------------------


def test_run_without_a_token_starts_the_web_chat(tmp_path: Path, tiny_model_dir: Path) -> None:
    """No bot token: `pix2chat run` serves the local web chat, prints its URL, stops on SIGINT."""
    env = base_env(tmp_path) | {
        "PIX2CHAT_MODEL": str(tiny_model_dir),
        "PIX2CHAT_DEVICE": "cpu",
        "PIX2CHAT_WEB_PORT": "0",
    }
    process = subprocess.Popen(
        [*_command(), "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, seen = _wait_for_url(process)
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"/static/app.js" in page.read()
        session = urllib.request.Request(f"{url}/api/session", method="POST", data=b"")
        with urllib.request.urlopen(session, timeout=10) as answer:
            assert json.loads(answer.read())["ok"] is True
            assert "HttpOnly" in answer.headers["Set-Cookie"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=SUBPROCESS_TIMEOUT_S)
    assert process.stdout is not None
    output = seen + process.stdout.read()  # read() includes what readline() buffered
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    assert "Only this machine can reach it" in output
    assert "PIX2CHAT_TELEGRAM_TOKEN" in output and "PIX2CHAT_DISCORD_TOKEN" in output


def _wait_for_url(process: subprocess.Popen[str]) -> tuple[str, str]:
    """The web chat URL `pix2chat run` prints once it is listening, and the output so far."""
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if not line and process.poll() is not None:
            raise AssertionError(f"pix2chat run exited:\n{seen}")
        match = re.search(r"open (http://127\.0\.0\.1:\d+) in your browser", line)
        if match:
            return match.group(1), seen
    raise AssertionError("pix2chat run never printed the web chat URL")


def test_web_on_an_exposed_address_needs_a_password(tmp_path: Path) -> None:
    completed = pix2chat(tmp_path, "web", web_host="0.0.0.0", model=str(tmp_path / "no-model-here"))

    assert completed.returncode == 1
    assert "PIX2CHAT_WEB_PASSWORD" in completed.stderr
    assert "no-model-here" not in completed.stderr  # refused before the model loads


class _RefusingBotAPI(BaseHTTPRequestHandler):
    """Answers every Bot API call the way Telegram answers a revoked token."""

    def do_POST(self) -> None:
        body = json.dumps({"ok": False, "error_code": 401, "description": "Unauthorized"})
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def refusing_bot_api() -> Iterator[str]:
    """A Bot API base URL on loopback that refuses every token."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingBotAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/bot"
    server.shutdown()
    server.server_close()


def test_run_with_a_refused_token_says_so_before_loading_the_model(
    tmp_path: Path, refusing_bot_api: str
) -> None:
    completed = pix2chat(
        tmp_path,
        "run",
        telegram_token=TOKEN,
        telegram_api_url=refusing_bot_api,
        model=str(tmp_path / "no-model-here"),  # never loaded: the token check comes first
    )

    assert completed.returncode == 1
    assert "Telegram refused PIX2CHAT_TELEGRAM_TOKEN" in completed.stderr
    assert "no-model-here" not in completed.stderr
    assert TOKEN not in completed.stdout + completed.stderr
    assert TOKEN.split(":")[1] not in completed.stdout + completed.stderr


# -- configuration -----------------------------------------------------------------------------


def test_invalid_setting_is_reported_by_name_without_the_token(tmp_path: Path) -> None:
    completed = pix2chat(tmp_path, "migrate", default_steps="abc", telegram_token=TOKEN)

    assert completed.returncode == 2
    assert "Invalid configuration" in completed.stderr
    assert "default_steps" in completed.stderr
    assert TOKEN not in completed.stdout + completed.stderr
    assert not (tmp_path / "data").exists()  # refused before touching anything


# -- migrate -----------------------------------------------------------------------------------


def test_migrate_creates_the_database_and_is_idempotent(tmp_path: Path) -> None:
    first = pix2chat(tmp_path, "migrate")
    database = tmp_path / "data" / "pix2chat.db"
    created = database.stat().st_size if database.exists() else 0
    second = pix2chat(tmp_path, "migrate")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    match = re.search(r"Database is at revision (\w+)\.", first.stdout)
    assert match is not None, first.stdout
    assert match.group(1) != "None"
    assert match.group(0) in second.stdout
    assert created > 0
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        [(revision,)] = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"conversations", "versions", "user_limits"} <= tables
    assert revision == match.group(1)


# -- doctor ------------------------------------------------------------------------------------


def test_doctor_reports_every_check_and_counts_the_web_chat(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    assert pix2chat(tmp_path, "migrate").returncode == 0

    completed = pix2chat(tmp_path, "doctor", model=str(tiny_model_dir), device="cpu")

    assert completed.returncode == 0, completed.stdout + completed.stderr
    checks = doctor_lines(completed.stdout)
    assert set(checks) == {
        *("device", "model", "lora", "models", "database", "data", "frontends", "queue")
    }
    assert checks["queue"] == ("ok", "embedded worker (SQLite: no shared queue)")
    for name in checks:
        assert checks[name][0] == "ok", (name, checks[name])
    assert checks["device"][1].startswith("cpu")
    assert str(tiny_model_dir) in checks["model"][1]
    assert "revision" in checks["database"][1]
    assert checks["frontends"][1] == "Web chat (http://127.0.0.1:8000)"


def test_doctor_on_a_fresh_install_says_to_migrate(invoke: Invoke, tiny_model_dir: Path) -> None:
    result = invoke("doctor", model=str(tiny_model_dir), device="cpu")

    assert result.exit_code == 1
    checks = doctor_lines(result.stdout)
    assert checks["database"][0] == "FAIL"
    assert "run `pix2chat migrate`" in checks["database"][1]
    assert checks["data"][0] == "ok"


def test_doctor_fails_an_exposed_web_chat_without_a_password(
    invoke: Invoke, tiny_model_dir: Path
) -> None:
    result = invoke("doctor", model=str(tiny_model_dir), device="cpu", web_host="0.0.0.0")

    assert result.exit_code == 1
    checks = doctor_lines(result.stdout)
    assert checks["frontends"] == ("FAIL", "PIX2CHAT_WEB_HOST=0.0.0.0 needs PIX2CHAT_WEB_PASSWORD")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_doctor_names_a_missing_cuda_device(invoke: Invoke, tiny_model_dir: Path) -> None:
    result = invoke("doctor", model=str(tiny_model_dir), device="cuda", telegram_token=TOKEN)

    assert result.exit_code == 1
    checks = doctor_lines(result.stdout)
    assert checks["device"][0] == "FAIL"
    assert "PIX2CHAT_DEVICE='cuda'" in checks["device"][1]
    assert "cannot see that device" in checks["device"][1]
    assert checks["model"][0] == "ok"
    assert checks["frontends"] == ("ok", "Telegram (token set)")
    assert TOKEN not in result.output


# -- edit --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_edit_writes_a_png_and_the_same_seed_gives_the_same_bytes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    photo = write_photo(tmp_path / "photo.jpg")
    args = ["edit", str(photo), "make it night", "--steps", "2", "--resolution", "256"]
    settings = {"model": str(tiny_model_dir), "device": "cpu"}

    first = pix2chat(tmp_path, *args, "-o", "out.png", "--seed", "7", **settings)
    second = pix2chat(tmp_path, *args, "-o", "again.png", "--seed", "7", **settings)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    data = (tmp_path / "out.png").read_bytes()
    assert data.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        assert image.mode == "RGB"
        width, height = image.size
    assert max(width, height) == 256
    assert width % 8 == 0 and height % 8 == 0
    assert abs(width / height - 320 / 240) < 0.05
    assert f"({width}x{height}, seed 7," in first.stdout
    assert "2/2" in first.stderr  # progress
    assert (tmp_path / "again.png").read_bytes() == data


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["missing.jpg", "make it night"], "No such file", id="missing-file"),
        pytest.param(["folder", "make it night"], "Is a directory", id="a-folder"),
        pytest.param(["notes.txt", "make it night"], "isn't a photo", id="not-an-image"),
        pytest.param(["photo.jpg", "   "], "Tell me what to change", id="empty-instruction"),
        pytest.param(["photo.jpg", "a" * 200], "too long", id="instruction-too-long"),
        pytest.param(["photo.jpg", "x", "--steps", "0"], "--steps", id="steps-out-of-range"),
        pytest.param(
            ["photo.jpg", "x", "--resolution", "8"], "--resolution", id="resolution-too-small"
        ),
    ],
)
def test_edit_refuses_bad_input_with_a_friendly_message(
    invoke: Invoke, tmp_path: Path, tiny_model_dir: Path, args: list[str], expected: str
) -> None:
    write_photo(tmp_path / "photo.jpg")
    (tmp_path / "notes.txt").write_text("not a photo\n")
    (tmp_path / "folder").mkdir()

    result = invoke("edit", *args, "-o", "out.png", model=str(tiny_model_dir), device="cpu")

    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_edit_with_a_bad_model_path_names_the_setting(invoke: Invoke, tmp_path: Path) -> None:
    write_photo(tmp_path / "photo.jpg")

    result = invoke(
        "edit", "photo.jpg", "make it night", model=str(tmp_path / "no-such-model"), device="cpu"
    )

    assert result.exit_code == 1, result.output
    assert "PIX2CHAT_MODEL" in result.stderr
    assert "no-such-model" in result.stderr
    assert not (tmp_path / "photo-edited.png").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "develop", "--megapixels", "1,x"],
        ["bench", "queue", "--workers", "0"],
        ["bench", "model", "--resolutions", "0,512"],
    ],
    ids=["develop", "queue", "model"],
)
def test_a_bad_benchmark_list_is_one_line_and_status_2(invoke: Invoke, args: list[str]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "expected positive comma-separated integers" in result.output
    assert "Traceback" not in result.output
