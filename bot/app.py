"""Builds the object graph once from Settings: database, image store, editor, scheduler, service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bot.config import Settings
from bot.service.access import AccessPolicy
from bot.service.conversation import Admission, ConversationService
from bot.work.batching import ModelThread
from bot.work.masking import RegionMasker
from bot.work.metrics import Metrics, MetricsServer
from bot.work.pgqueue import is_postgresql
from bot.work.refresh import refresh_queue_counts
from bot.work.scheduler import EmbeddedScheduler
from bot.work.warmup import Warmup
from editor.base import Editor
from editor.errors import ModelLoadError, OptionError
from editor.finishing.finisher import Finisher
from editor.finishing.matting import Matting
from editor.finishing.provenance import Provenance, ensure_credentials
from editor.finishing.upscale import Upscaler
from editor.images import ImageLimits
from editor.segment import Segmenter
from storage.connect import DatabaseUnavailable
from storage.database import Database
from storage.images import DatabaseImageStore, FileImageStore, ImageStore
from storage.limits import LimitPolicy
from storage.startup import prepare_schema

if TYPE_CHECKING:
    from bot.work.remote import RemoteJobQueue
    from bot.work.worker import WorkerOptions
    from editor.scoring import CandidateScorer


class ConfigurationError(Exception):
    """The settings ask for something this deployment cannot do; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Components:
    """Everything a frontend needs; built by `build` and valid inside its context."""

    settings: Settings
    database: Database
    images: ImageStore
    editor: Editor
    scheduler: EmbeddedScheduler | RemoteJobQueue
    service: ConversationService
    metrics: Metrics = field(default_factory=Metrics)
    warmup: Warmup | None = None
    """The model's load in this process (embedded worker); None when workers run it."""
    metrics_port: int | None = None
    """The port /metrics is served on (PIX2CHAT_METRICS_PORT; 0 picks one), None if off."""


class FrontendError(Exception):
    """A frontend cannot start; the message says what to fix (never contains a token)."""


class Frontend(Protocol):
    """A thin adapter: platform events in, service calls out, replies rendered back."""

    name: str

    async def preflight(self) -> None:
        """Check credentials before the slow model load; FrontendError if they are refused."""

    async def run(self, components: Components, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; deliver results that finished while it was away first."""


def make_editor(settings: Settings) -> Editor:
    """The diffusers editor as configured (imported here: torch is slow to import).

    Raises:
        ModelLoadError: the speed settings are invalid (the message names the settings).
    """
    from editor.families.editor import open_editor
    from editor.families.pool import ModelPool
    from editor.pix2pix import DiffusersEditor
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
    except OptionError as error:
        raise ModelLoadError(f"Invalid speed settings: {with_setting_hint(error)}") from error
    except ValueError as error:
        raise ModelLoadError(f"Invalid speed settings: {error}") from error
    if speed.compile != "off" and settings.max_batch > max(speed.compile_batch_sizes):
        logging.getLogger(__name__).warning(
            "PIX2CHAT_MAX_BATCH=%d is above the largest compiled batch size (%d): "
            "such batches run split into compiled ones",
            settings.max_batch,
            max(speed.compile_batch_sizes),
        )

    def pix2pix(model: str, lora: str | None) -> Editor:
        return DiffusersEditor(
            model,
            lora=lora,
            device=settings.device,
            safety_checker=settings.safety_checker,
            dtype=settings.dtype,
            speed=speed,
        )

    def one(model: str, lora: str | None) -> Editor:
        return open_editor(
            model,
            lora=lora,
            device=settings.device,
            dtype=settings.dtype,
            offload=settings.offload,
            pix2pix=lambda: pix2pix(model, lora),
        )

    try:
        choices = settings.model_choices()
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    if settings.worker_model is not None and settings.worker_model not in choices:
        raise ModelLoadError(
            f"No model {settings.worker_model!r} in PIX2CHAT_MODELS; "
            f"models: {', '.join(choices) or 'none (PIX2CHAT_MODELS is unset)'}.",
            option="worker_model",
            value=settings.worker_model,
        )
    if not choices:
        return one(settings.model, settings.lora)
    default = settings.default_model_name()
    if settings.worker_model is not None:  # a worker for one model's queue loads that one
        if settings.worker_model not in choices:
            raise ModelLoadError(
                f"No model {settings.worker_model!r} in PIX2CHAT_MODELS; "
                f"models: {', '.join(choices)}.",
                option="worker_model",
                value=settings.worker_model,
            )
        name = settings.worker_model
        return one(choices[name], settings.lora if name == default else None)
    editors = {
        name: one(model, settings.lora if name == default else None)
        for name, model in choices.items()
    }
    return ModelPool(editors, default, memory_gb=settings.gpu_memory_gb)


def make_segmenter(settings: Settings) -> Segmenter:
    """CLIPSeg as configured (PIX2CHAT_SEGMENTER_MODEL, on PIX2CHAT_DEVICE); nothing is loaded
    here: the model thread loads it on the first /keep, /only or edit that needs it."""
    from editor.segment import ClipSegSegmenter

    return ClipSegSegmenter(settings.segmenter_model, device=settings.device)


def make_finisher(settings: Settings) -> Finisher:
    """The finishing tools as configured; their models load at first use, in the model thread."""
    return Finisher(
        Upscaler(settings.upscaler_model, settings.device),
        Matting(settings.matting_model, settings.device),
    )


def make_provenance(settings: Settings) -> Provenance | None:
    """The signer for Full resolution files (PIX2CHAT_PROVENANCE), None when off.

    Without the finishing extra the files go out unsigned, and the log says what to install:
    a bot that cannot sign must still deliver.

    Raises:
        ConfigurationError: only one of the certificate and its key exists.
    """
    if not settings.provenance:
        return None
    import importlib.util

    missing = [m for m in ("c2pa", "imwatermark") if importlib.util.find_spec(m) is None]
    if missing:
        logging.getLogger(__name__).warning(
            "PIX2CHAT_PROVENANCE=on, but %s is not installed: Full resolution files go out "
            "without provenance. Install it with pip install 'pix2chat[finishing]'",
            " and ".join(missing),
        )
        return None
    cert, key = settings.c2pa_paths()
    try:
        return Provenance(ensure_credentials(cert, key))
    except (OSError, ValueError) as error:
        raise ConfigurationError(
            f"Cannot use the C2PA signing certificate: {error}. Check PIX2CHAT_C2PA_CERT and "
            "PIX2CHAT_C2PA_KEY (or set PIX2CHAT_PROVENANCE=off)"
        ) from error


def with_setting_hint(error: ModelLoadError | OptionError, separator: str = "\n") -> str:
    """The model layer's message plus the setting that chose the failing option.

    The editor names its own argument (`error.option`: "model", "device", "compile"...); each
    is the `Settings` field of the same name, so the hint says which PIX2CHAT_ variable to
    check, and what to set it to when the editor knows a value that avoids the problem.
    """
    if error.option is None:
        return str(error)
    setting = f"{Settings.model_config.get('env_prefix', '')}{error.option.upper()}"
    hint = f"Check {setting}" + (f"={error.value!r}" if error.value is not None else "")
    if error.suggestion is not None:
        hint += f", or set {setting}={error.suggestion}"
    return f"{error}{separator}{hint}."


def prepare_database(
    settings: Settings,
    notify: Callable[[str], None] | None = None,
    *,
    migrate: bool | None = None,
) -> None:
    """Wait for the database (PIX2CHAT_DATABASE_WAIT_S), then upgrade its schema, or with
    PIX2CHAT_MIGRATE_ON_START=false wait as long for `pix2chat migrate` (`migrate` overrides).

    Raises:
        DatabaseUnavailable, SchemaMismatch: one line for the operator (see storage.startup).
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # SQLite lives there by default; images too
        raise DatabaseUnavailable(
            f"Cannot create the data folder {settings.data_dir} ({error.strerror or error}): "
            "check PIX2CHAT_DATA_DIR"
        ) from None
    prepare_schema(
        settings.resolved_database_url(),
        wait_s=settings.database_wait_s,
        migrate=settings.migrate_on_start if migrate is None else migrate,
        notify=notify or logging.getLogger("pix2chat").warning,
    )


def make_images(settings: Settings, url: str) -> ImageStore:
    """Where images live: in the database when every process must read them, else files."""
    choice = settings.image_store
    if choice == "auto":
        choice = "database" if is_postgresql(url) else "files"
    if choice == "database":
        return DatabaseImageStore(url)
    return FileImageStore(settings.data_dir / "images")


def _close_images(images: ImageStore) -> None:
    if isinstance(images, DatabaseImageStore):
        images.close()


@asynccontextmanager
async def build(
    settings: Settings,
    editor: Editor | None = None,
    segmenter: Segmenter | None = None,
    *,
    warm_start: bool = False,
    metrics: Metrics | None = None,
    admission: Admission | None = None,
) -> AsyncIterator[Components]:
    """Wait for the database and migrate, load the model, resume queued jobs, and yield the running service.

    With `PIX2CHAT_WORKER=remote` no model is loaded (only its tokenizer, for admission): edits
    go to the shared queue and `pix2chat worker` processes run them. With `warm_start` the
    model loads in the background (`Components.warmup`): the service answers at once and
    edits wait in line until it is ready. With PIX2CHAT_METRICS_PORT the /metrics endpoint
    serves `metrics` while the block runs.
    """
    metrics = metrics or Metrics()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = settings.resolved_database_url()
    remote = settings.worker == "remote"
    if remote and not is_postgresql(url):
        raise ConfigurationError(
            "PIX2CHAT_WORKER=remote needs a PostgreSQL database shared with the workers: "
            "set PIX2CHAT_DATABASE_URL=postgresql://user:password@host/pix2chat"
        )
    await asyncio.to_thread(prepare_database, settings)
    editor = editor or make_editor(settings)
    segmenter = segmenter or make_segmenter(settings)
    images = make_images(settings, url)
    async with AsyncExitStack() as stack:
        stack.callback(_close_images, images)
        database = await stack.enter_async_context(Database(url))
        scheduler: EmbeddedScheduler | RemoteJobQueue
        if remote:
            scheduler = _remote_queue_class()(database)
            # Edits run on `pix2chat worker`s; region previews need a model thread here.
            masking_thread = ModelThread()
            stack.callback(masking_thread.close)
        else:
            scheduler = EmbeddedScheduler(
                database,
                images,
                editor,
                max_batch=settings.max_batch,
                max_wait_ms=settings.max_wait_ms,
                max_attempts=settings.max_attempts,
                develop=settings.develop,
                segmenter=segmenter,
                finisher=make_finisher(settings),
                metrics=metrics,
                load_in_background=warm_start,
                scorer=make_scorer(settings),
            )
            masking_thread = scheduler.model_thread
        warmup = scheduler.warmup if isinstance(scheduler, EmbeddedScheduler) else None
        service = ConversationService(
            database,
            images,
            scheduler,
            editor,
            defaults=settings.default_params(),
            admission=admission
            or Admission(
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
            max_stored_pixels=settings.max_stored_pixels,
            masker=RegionMasker(segmenter, masking_thread, images),
            provenance=make_provenance(settings),
            access=AccessPolicy.of(settings.access, settings.admins, settings.refusal_silence_s),
            metrics=metrics,
            warmup=warmup if warm_start else None,
            models=tuple(settings.model_choices()),
            no_image_guidance=_without_image_guidance(editor),
            develop=settings.develop,
            max_recipe_photos=settings.max_recipe_photos,
        )
        await stack.enter_async_context(scheduler)
        metrics_port = None
        if settings.metrics_port is not None:
            server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port)
            metrics_port = await asyncio.to_thread(server.start)
            stack.callback(server.stop)
            refresher = asyncio.create_task(
                refresh_queue_counts(database, metrics, settings.metrics_refresh_s),
                name="metrics-refresh",
            )
            stack.push_async_callback(_cancel, refresher)
        yield Components(
            settings, database, images, editor, scheduler, service, metrics, warmup, metrics_port
        )


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def make_scorer(settings: Settings) -> CandidateScorer | None:
    """The candidate scorer (PIX2CHAT_SCORER_MODEL), loaded on first use; None when empty."""
    if not settings.scorer_model.strip():
        return None
    from editor.clip_scorer import ClipScorer

    return ClipScorer(settings.scorer_model.strip(), device=settings.device)


def _without_image_guidance(editor: Editor) -> frozenset[str]:
    """Models ("" for a lone editor) whose family has no image guidance (/settings hides it).

    By attribute, so that doubles and InstructPix2Pix (no `family`: it has image guidance)
    need no import of the model code here.
    """
    editors: dict[str, Editor] = getattr(editor, "editors", None) or {"": editor}
    return frozenset(
        name
        for name, one in editors.items()
        if getattr(getattr(one, "family", None), "image_guidance", True) is False
    )


def worker_options(settings: Settings) -> WorkerOptions:
    from bot.work.worker import WorkerOptions

    return WorkerOptions(
        concurrency=settings.worker_concurrency,
        max_wait_ms=settings.max_wait_ms,
        max_attempts=settings.max_attempts,
        heartbeat_s=settings.worker_heartbeat_s,
        stalled_timeout_s=settings.stalled_timeout_s,
        shutdown_timeout_s=settings.worker_shutdown_timeout_s,
        develop=settings.develop,
        queues=worker_queues(settings),
    )


def worker_queues(settings: Settings) -> tuple[str, ...]:
    """`worker --model`'s queue, else every configured model's, else the one queue."""
    from bot.work.pgqueue import QUEUE, queue_for

    if settings.worker_model is not None:
        return (queue_for(settings.worker_model),)
    return tuple(queue_for(name) for name in settings.model_choices()) or (QUEUE,)


NEEDS_POSTGRES_EXTRA = (
    "Scaling out needs the PostgreSQL extras (psycopg, procrastinate): "
    "pip install 'pix2chat[postgres]'"
)


def _remote_queue_class() -> type[RemoteJobQueue]:
    try:
        from bot.work.remote import RemoteJobQueue
    except ImportError as error:
        raise ConfigurationError(f"{NEEDS_POSTGRES_EXTRA} ({error})") from error
    return RemoteJobQueue


async def serve_worker(
    settings: Settings, editor: Editor | None = None, segmenter: Segmenter | None = None
) -> None:
    """`pix2chat worker`: wait for the database and migrate, load the model once, run edit jobs until SIGTERM/SIGINT."""
    url = settings.resolved_database_url()
    if not is_postgresql(url):
        raise ConfigurationError(
            "`pix2chat worker` serves the shared queue in PostgreSQL, but the database is "
            f"SQLite ({url}). Set PIX2CHAT_DATABASE_URL=postgresql://user:password@host/pix2chat "
            "for the workers and the frontends (PIX2CHAT_WORKER=remote), or just run "
            "`pix2chat run`, whose embedded worker needs no queue."
        )
    try:
        from bot.work.worker import GpuWorker
    except ImportError as error:
        raise ConfigurationError(f"{NEEDS_POSTGRES_EXTRA} ({error})") from error
    await asyncio.to_thread(prepare_database, settings)
    images = make_images(settings, url)
    metrics = Metrics()
    server = None
    if settings.metrics_port is not None:
        server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port)
        await asyncio.to_thread(server.start)
    try:
        async with Database(url) as database:
            worker = GpuWorker(
                database,
                images,
                editor or make_editor(settings),
                worker_options(settings),
                segmenter=segmenter or make_segmenter(settings),
                finisher=make_finisher(settings),
                metrics=metrics,
                scorer=make_scorer(settings),
            )
            await worker.run()
    finally:
        if server is not None:
            server.stop()
        _close_images(images)
