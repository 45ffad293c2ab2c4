"""`pix2chat run` and `pix2chat web`: every configured frontend plus the embedded GPU worker."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

import typer

from bot.config import Settings
from bot.work.warmup import ModelState, StateFile

if TYPE_CHECKING:
    from bot.app import Components
    from editor.base import Editor


def run_frontends(settings: Settings) -> int:
    """Serve until SIGINT/SIGTERM; the exit status (messages for the operator on stderr).

    Call `missing_frontends` first: it must refuse before logging is configured.
    """
    from bot.app import ConfigurationError, FrontendError, with_setting_hint
    from bot.commands.database import ready_database, report
    from editor.errors import ModelLoadError
    from storage.connect import DatabaseUnavailable
    from storage.migrate import SchemaMismatch

    status = ready_database(settings)
    if status:
        return status
    try:
        asyncio.run(_serve(settings))
    except ModelLoadError as error:
        typer.secho(with_setting_hint(error), fg="red", err=True)
        return 1
    except (DatabaseUnavailable, SchemaMismatch) as error:  # it changed since ready_database
        return report(error)
    except (FrontendError, ConfigurationError) as error:
        typer.secho(str(error), fg="red", err=True)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def missing_frontends(settings: Settings) -> int:
    """0, or 2 after saying which configured frontend this version does not include."""
    from bot.frontends import configured

    specs = configured(settings)  # never empty: without a token, the web chat
    missing = [spec for spec in specs if spec.factory is None]
    if not missing:
        return 0
    names = ", ".join(f"{s.name} ({s.token_setting})" for s in missing)
    typer.secho(
        f"This version of pix2chat does not include the {names} frontend yet; "
        "unset that token or upgrade pix2chat.",
        fg="red",
        err=True,
    )
    return 2


async def _serve(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await serve(settings, stop)


async def serve(settings: Settings, stop: asyncio.Event, editor: Editor | None = None) -> None:
    """Check the tokens, then serve every frontend at once while the model loads, until
    `stop`; a model that fails to load is raised (after telling the users who wait)."""
    from bot.app import build
    from bot.frontends import configured

    frontends = [spec.factory(settings) for spec in configured(settings) if spec.factory]
    for frontend in frontends:
        await frontend.preflight()
    async with build(settings, editor, warm_start=True) as components:
        logging.getLogger("pix2chat").info(
            "serving %s; model %s", ", ".join(f.name for f in frontends), settings.model
        )
        running = [asyncio.create_task(f.run(components, stop)) for f in frontends]
        watcher = asyncio.create_task(watch_model(components, stop))
        try:
            await asyncio.gather(*running)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        warmup = components.warmup
        if warmup is not None and warmup.error is not None:
            raise warmup.error


async def watch_model(components: Components, stop: asyncio.Event) -> None:
    """While the frontends already serve, follow the model's load (for `pix2chat doctor`).

    A load that fails is told to every user with an edit waiting, then everything stops and
    `pix2chat run` exits with the load error's message.
    """
    warmup = components.warmup
    if warmup is None:
        return
    state_file = StateFile(components.settings.data_dir, components.settings.model)
    try:
        await state_file.keep_writing(warmup)
        if warmup.state is not ModelState.FAILED:
            await stop.wait()
            return
        told = await components.service.model_failed()
        logging.getLogger("pix2chat").error(
            "the model failed to load; told %d waiting user(s); stopping", told
        )
        stop.set()  # the frontends deliver what is queued for them, then stop
    finally:
        state_file.remove()
