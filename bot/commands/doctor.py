"""`pix2chat doctor`: what an operator needs to know before users arrive."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import typer

from bot.config import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def run_doctor(settings: Settings, only: Collection[str] | None = None) -> int:
    """Print one `ok`/`FAIL` line per check; the exit status (1 if any failed)."""
    # The database check opens a SQLite file inside the data folder: on a fresh install that
    # folder must exist for it to say "run `pix2chat migrate`" rather than "unable to open".
    # A folder that cannot be created is what the data check reports, so go on without it.
    with contextlib.suppress(OSError):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    checks = run_checks(settings, only)
    for check in checks:
        mark = typer.style("ok  ", fg="green") if check.ok else typer.style("FAIL", fg="red")
        typer.echo(f"{mark} {check.name:<10} {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


def run_checks(settings: Settings, only: Collection[str] | None = None) -> list[Check]:
    """Each check runs on its own; one failing does not hide the others.

    `only` names the checks to run (container health checks run just `database` or `queue`).
    """
    checks: list[Callable[[Settings], Check]] = [
        check_device,
        check_model,
        check_lora,
        check_models,
        check_database,
        check_data_dir,
        check_frontends,
        check_queue,
    ]
    if only:
        checks = [check for check in checks if check.__name__.removeprefix("check_") in only]
    results = []
    for check in checks:
        try:
            results.append(check(settings))
        except Exception as error:  # a doctor reports, it does not crash
            results.append(Check(check.__name__.removeprefix("check_"), False, f"{error}"))
    return results


def check_device(settings: Settings) -> Check:
    import torch

    from bot.app import with_setting_hint
    from editor.errors import ModelLoadError
    from editor.loading import select_device

    try:
        device = select_device(settings.device)
    except ModelLoadError as error:
        return Check("device", False, with_setting_hint(error, separator=" "))
    detail = f"{device} (torch {torch.__version__}, Python {platform.python_version()})"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        detail += f", {props.name}, {props.total_memory / 2**30:.0f} GiB"
    elif device == "cpu":
        detail += ": no GPU found, edits will be slow (minutes each at 512 px)"
    return Check("device", True, detail)


def _model_check(name: str, reference: str, required_file: str) -> Check:
    """A folder must hold `required_file`; a hub id is either cached or downloaded on start."""
    path = Path(reference).expanduser()
    if path.exists():
        if (path / required_file).exists() or any(path.glob(required_file)):
            return Check(name, True, f"{reference} (local folder)")
        return Check(name, False, f"{reference} has no {required_file}")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(reference, required_file)
    if isinstance(cached, str):
        return Check(name, True, f"{reference} (in the local hub cache)")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return Check(name, False, f"{reference} is not cached and HF_HUB_OFFLINE is set")
    return Check(name, True, f"{reference} (not cached yet: downloaded on first start)")


def check_model(settings: Settings) -> Check:
    """Where the model is; and while `pix2chat run` is up, whether it is loading or ready."""
    from bot.work.warmup import read_state

    check = _model_check("model", settings.model, "model_index.json")
    running = read_state(settings.data_dir)
    if running is None:
        return check
    detail = f"{check.detail}; pix2chat run (pid {running['pid']}): {running['detail']}"
    return Check(check.name, check.ok and running.get("state") != "failed", detail)


def check_models(settings: Settings) -> Check:
    """Each configured model's family and the GPU memory its weights need (issue 19).

    Fails when a model is of a family pix2chat does not serve, or when the largest one alone
    does not fit the GPU (PIX2CHAT_GPU_MEMORY_GB, else the CUDA device's memory); several
    that do not fit together are fine, the model pool unloads the least recently used.
    """
    from editor.errors import ModelLoadError
    from editor.families.memory import FULL_SIZE_PARAMETERS, GB, estimate_bytes, option_of
    from editor.families.registry import read_family
    from editor.loading import select_device

    choices = settings.model_choices() or {"default": settings.model}
    try:
        device = select_device(settings.device)
    except ModelLoadError:
        device = "cpu"
    option = option_of(settings.dtype, device, settings.offload)
    needs: dict[str, float] = {}
    parts = []
    for name, model in choices.items():
        try:
            family = read_family(model).name
        except ModelLoadError as error:
            if "Supported families" in str(error):
                return Check("models", False, str(error))
            parts.append(f"{name}: family unknown until {model} is downloaded")
            continue
        needs[name] = estimate_bytes(FULL_SIZE_PARAMETERS[family], option) / GB
        parts.append(f"{name}: {family}, ~{needs[name]:.1f} GB ({option})")
    budget = settings.gpu_memory_gb
    if budget is None and device == "cuda":
        import torch

        budget = torch.cuda.get_device_properties(0).total_memory / GB
    detail = "; ".join(parts)
    if budget is None or not needs:
        return Check("models", True, detail + "; no GPU memory to check against")
    largest = max(needs, key=lambda name: needs[name])
    if needs[largest] > budget:
        return Check(
            "models",
            False,
            f"{detail}; {largest} needs ~{needs[largest]:.1f} GB of {budget:.0f} GB: set "
            "PIX2CHAT_OFFLOAD=true or PIX2CHAT_DTYPE=bfloat16, or serve it on a bigger GPU "
            "(`pix2chat worker --model`)",
        )
    together = "all fit at once" if sum(needs.values()) <= budget else "LRU swaps them"
    return Check("models", True, f"{detail}; {budget:.0f} GB: {together}")


def check_lora(settings: Settings) -> Check:
    if not settings.lora:
        return Check("lora", True, "none")
    return _model_check("lora", settings.lora, "*.safetensors")


def check_database(settings: Settings) -> Check:
    from sqlalchemy.engine import make_url

    from storage.connect import DatabaseUnavailable, probe
    from storage.migrate import SchemaTooNew, current, is_current, too_old_message

    url = settings.resolved_database_url()
    try:
        probe(url)
    except DatabaseUnavailable as error:
        return Check("database", False, str(error))
    revision = current(url)
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        up_to_date = is_current(revision)
    except SchemaTooNew as error:
        return Check("database", False, f"{shown}: {error}")
    if not up_to_date:
        return Check("database", False, f"{shown}: {too_old_message(revision)}")
    depth = asyncio.run(_queue_depth(url))
    return Check(
        "database", True, f"{shown} (revision {revision}, {depth} edit(s) queued or running)"
    )


async def _queue_depth(url: str) -> int:
    from storage import tree
    from storage.database import Database

    async with Database(url) as database, database.read() as session:
        return await tree.count_queued(session)


def check_data_dir(settings: Settings) -> Check:
    from storage.images import FileImageStore

    folder = settings.data_dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        return Check("data", False, f"{folder} is not writable")
    free = shutil.disk_usage(folder).free / 2**30
    files, size = FileImageStore(folder / "images").count()
    detail = f"{folder} ({files} images, {size / 2**20:.1f} MiB; {free:.1f} GiB free)"
    return Check("data", free > 1.0, detail + ("" if free > 1.0 else ": less than 1 GiB free"))


def check_frontends(settings: Settings) -> Check:
    from bot.frontends import FRONTENDS

    enabled = [
        f"{spec.name} ({spec.summary(settings)})" for spec in FRONTENDS if spec.enabled(settings)
    ]
    if not enabled:
        return Check(
            "frontends", False, "no token set (PIX2CHAT_TELEGRAM_TOKEN or PIX2CHAT_DISCORD_TOKEN)"
        )
    from bot.web.sessions import is_loopback

    exposed = not is_loopback(settings.web_host) and settings.web_password is None
    if any(spec.name == "Web chat" for spec in FRONTENDS if spec.enabled(settings)) and exposed:
        detail = f"PIX2CHAT_WEB_HOST={settings.web_host} needs PIX2CHAT_WEB_PASSWORD"
        return Check("frontends", False, detail)
    return Check("frontends", True, ", ".join(enabled))


@dataclass(frozen=True, slots=True)
class QueueState:
    """The shared job queue as `pix2chat doctor` reports it."""

    waiting: int
    running: int
    workers_alive: int
    stalled: int


def check_queue(settings: Settings) -> Check:
    """Scaled out: jobs waiting, workers alive (fresh heartbeat), jobs of dead workers."""
    from bot.work.pgqueue import is_postgresql

    url = settings.resolved_database_url()
    if not is_postgresql(url):
        if settings.worker == "remote":
            return Check("queue", False, "PIX2CHAT_WORKER=remote needs a PostgreSQL database")
        return Check("queue", True, "embedded worker (SQLite: no shared queue)")
    state = asyncio.run(queue_state(url, settings.stalled_timeout_s))
    detail = (
        f"{state.waiting} waiting, {state.running} running, "
        f"{state.workers_alive} worker(s) alive, {state.stalled} stalled"
    )
    if settings.worker != "remote":
        return Check("queue", True, f"embedded worker; shared queue: {detail}")
    if state.workers_alive == 0:
        return Check("queue", False, f"{detail}: no worker is running, start `pix2chat worker`")
    if state.stalled:
        detail += " (a live worker hands them back within a heartbeat)"
    return Check("queue", True, detail)


async def queue_state(url: str, stalled_timeout_s: float) -> QueueState:
    from bot.work import queue_sql
    from bot.work.pgqueue import QUEUE
    from storage.database import Database

    async with Database(url) as database, database.read() as session:
        row = (
            await session.execute(
                queue_sql.QUEUE_STATE, {"queue": QUEUE, "timeout": stalled_timeout_s}
            )
        ).one()
    return QueueState(*(int(value) for value in row))
