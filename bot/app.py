"""Builds the object graph once from Settings: database, image store, editor, scheduler, service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.config import Settings
from bot.conversation import Admission, ConversationService
from editor.base import Editor
from editor.images import ImageLimits
from editor.scheduler import EmbeddedScheduler
from storage.database import Database
from storage.images import FileImageStore
from storage.limits import LimitPolicy
from storage.migrate import upgrade


@dataclass(frozen=True, slots=True)
class Components:
    """Everything a frontend needs; built by `build` and valid inside its context."""

    settings: Settings
    database: Database
    images: FileImageStore
    editor: Editor
    scheduler: EmbeddedScheduler
    service: ConversationService


def make_editor(settings: Settings) -> Editor:
    """The diffusers editor as configured (imported here: torch is slow to import)."""
    from editor.pix2pix import DiffusersEditor, ModelLoadError
    from editor.speed import SpeedOptions, parse_ints, parse_sizes

    try:
        speed = SpeedOptions(
            attention=settings.attention,
            channels_last=settings.channels_last,
            fuse_qkv=settings.fuse_qkv,
            compile=settings.compile,
            compile_mode=settings.compile_mode,
            cuda_graphs=settings.cuda_graphs,
            compile_sizes=parse_sizes(settings.compile_sizes),
            compile_batch_sizes=parse_ints(settings.compile_batch_sizes),
            preview=settings.preview,
            preview_model=settings.preview_model,
            preview_every=settings.preview_every,
        )
    except ValueError as error:
        raise ModelLoadError(f"Invalid speed settings: {error}") from error
    if speed.compile != "off" and settings.max_batch > max(speed.compile_batch_sizes):
        logging.getLogger(__name__).warning(
            "PIX2CHAT_MAX_BATCH=%d is above the largest compiled batch size (%d): "
            "such batches run split into compiled ones",
            settings.max_batch,
            max(speed.compile_batch_sizes),
        )
    return DiffusersEditor(
        settings.model,
        lora=settings.lora,
        device=settings.device,
        safety_checker=settings.safety_checker,
        dtype=settings.dtype,
        speed=speed,
    )


@asynccontextmanager
async def build(settings: Settings, editor: Editor | None = None) -> AsyncIterator[Components]:
    """Migrate, load the model, resume queued jobs, and yield the running service."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    await asyncio.to_thread(upgrade, url)
    editor = editor or make_editor(settings)
    images = FileImageStore(settings.data_dir / "images")
    async with Database(url) as database:
        scheduler = EmbeddedScheduler(
            database,
            images,
            editor,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            max_attempts=settings.max_attempts,
        )
        service = ConversationService(
            database,
            images,
            scheduler,
            editor,
            defaults=settings.default_params(),
            admission=Admission(
                max_pending_per_user=settings.max_pending_per_user,
                queue_cap=settings.queue_cap,
                rate=LimitPolicy(
                    burst=settings.rate_burst,
                    per_minute=settings.rate_per_minute,
                    daily_quota=settings.daily_quota,
                ),
            ),
            image_limits=ImageLimits(
                max_bytes=settings.max_upload_bytes, max_pixels=settings.max_image_pixels
            ),
        )
        async with scheduler:
            yield Components(settings, database, images, editor, scheduler, service)
