"""What `pix2chat worker` runs: pick the GPU, build the editor, serve the shared queue."""

from __future__ import annotations

import asyncio
import logging
import os

import typer

from bot.config import Settings
from editor.base import Editor
from editor.testing.doubles import NullEditor


def run_worker(settings: Settings, *, null_editor: bool = False, step_delay_ms: int = 0) -> int:
    """Serve until SIGTERM/SIGINT; the exit status (messages for the operator on stderr).

    `null_editor` and `step_delay_ms` are hidden options for benchmarks and crash drills: the
    queue without a model, and edits slow enough to kill a worker in the middle of one.
    """
    if settings.worker_gpu is not None:
        # Before torch is imported: the worker then sees exactly one GPU, as cuda:0.
        os.environ["CUDA_VISIBLE_DEVICES"] = settings.worker_gpu
    from bot.app import ConfigurationError, make_editor, serve_worker, with_setting_hint
    from bot.commands.database import ready_database, report
    from bot.work.pgqueue import is_postgresql
    from editor.errors import ModelLoadError
    from storage.connect import DatabaseUnavailable
    from storage.migrate import SchemaMismatch

    if is_postgresql(settings.resolved_database_url()):  # else serve_worker says what to set
        status = ready_database(settings)
        if status:
            return status

    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
    editor: Editor = NullEditor() if null_editor else make_editor(settings)
    if step_delay_ms:
        from editor.testing.doubles import StepDelay

        editor = StepDelay(editor, step_delay_ms / 1000)
    try:
        asyncio.run(serve_worker(settings, editor))
    except ConfigurationError as error:
        typer.secho(str(error), fg="red", err=True)
        return 2
    except ModelLoadError as error:
        typer.secho(with_setting_hint(error), fg="red", err=True)
        return 1
    except (DatabaseUnavailable, SchemaMismatch) as error:  # it changed since ready_database
        return report(error)
    except KeyboardInterrupt:
        pass
    return 0
