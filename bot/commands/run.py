"""`pix2chat run` and `pix2chat web`: every configured frontend plus the embedded GPU worker."""

from __future__ import annotations

import asyncio
import logging
import signal

import typer

from bot.config import Settings


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
    from bot.app import build
    from bot.frontends import configured

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    frontends = [spec.factory(settings) for spec in configured(settings) if spec.factory]
    for frontend in frontends:
        await frontend.preflight()
    async with build(settings) as components:
        logging.getLogger("pix2chat").info(
            "serving %s; model %s", ", ".join(f.name for f in frontends), settings.model
        )
        await asyncio.gather(*(frontend.run(components, stop) for frontend in frontends))
