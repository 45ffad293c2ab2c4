"""`pix2chat bench variations`: what a set of four costs, how fast it reaches a chat, and
whether it stays fair.

1. Cost: a set of four variations (one micro-batch) against four separate regenerations of
   the same edit, end to end through the service and the embedded scheduler, with the tiny
   random-weight pipeline (or `--model`).
2. Delivery: the time from pressing "Variations" until all four pictures have arrived, through
   the real python-telegram-bot code and the loopback fake Bot API of the test suite (so this
   part runs from a source checkout only).
3. Fairness: user A asks for variations back to back while user B sends single edits one
   after another; B's wait (instruction to result) p50 and max, against the same run without
   A. The model is the NullEditor with a fixed time per batch, as a GPU spends about the same
   time on a batch of four as on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.commands.bench_service import product_photo
from bot.service.conversation import Admission, ConversationService
from bot.service.replies import Reply, ReplyKind
from bot.work.scheduler import EmbeddedScheduler
from editor.base import Editor
from editor.params import EditParams
from editor.testing.doubles import NullEditor
from storage.database import Database
from storage.images import FileImageStore
from storage.limits import LimitPolicy
from storage.migrate import upgrade
from storage.types import Actor

Echo = Callable[[str], None]
PLATFORM = "bench"
ALICE = Actor(PLATFORM, "a", "a")
BOB = Actor(PLATFORM, "b", "b")
UNLIMITED = Admission(max_pending_per_user=3, queue_cap=10**6, rate=LimitPolicy(10**6, 10**6, 0))


@dataclass(frozen=True, slots=True)
class CostResult:
    """Seconds for one set of four variations and for four regenerations, one after another."""

    variations_s: float
    regenerations_s: float

    @property
    def ratio(self) -> float:
        return self.regenerations_s / self.variations_s


@dataclass(frozen=True, slots=True)
class FairnessResult:
    """B's waits (seconds, instruction to result) with and without A's variations, and how
    many batches started after B asked and before B's own (`ahead`, per edit)."""

    alone: list[float]
    beside_variations: list[float]
    batch_s: float
    sets_run: int
    ahead_alone: list[int]
    ahead_beside: list[int]


def _photo_bytes(size: int) -> bytes:
    buffer = io.BytesIO()
    product_photo(size).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


class Results:
    """Collects result replies; `wait` returns the one that names (or contains) a version."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.changed = asyncio.Event()

    async def __call__(self, _actor: Actor, reply: Reply) -> None:
        if reply.kind in (ReplyKind.RESULT, ReplyKind.VARIATIONS, ReplyKind.FAILED):
            self.replies.append(reply)
            self.changed.set()

    async def wait(self, version_id: int, timeout_s: float = 600.0) -> Reply:
        async with asyncio.timeout(timeout_s):
            while True:
                for reply in self.replies:
                    ids = {reply.version_id, *(c.version_id for c in reply.candidates)}
                    if version_id in ids:
                        return reply
                self.changed.clear()
                await self.changed.wait()


@asynccontextmanager
async def _service(
    folder: Path, editor: Editor, params: EditParams, max_batch: int = 4
) -> AsyncIterator[tuple[ConversationService, Results, EmbeddedScheduler]]:
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    async with Database(url) as database:
        images = FileImageStore(folder / "images")
        scheduler = EmbeddedScheduler(database, images, editor, max_batch=max_batch, max_wait_ms=5)
        service = ConversationService(
            database, images, scheduler, editor, defaults=params, admission=UNLIMITED
        )
        results = Results()
        service.subscribe(PLATFORM, results)
        async with scheduler:
            yield service, results, scheduler


async def _queued(reply: Reply) -> int:
    assert not reply.is_error and reply.version_id is not None, reply.text()
    return reply.version_id


async def measure_cost(
    folder: Path, editor: Editor, params: EditParams, runs: int = 2
) -> CostResult:
    """Best of `runs`: one set of four variations, then four regenerations one by one."""
    async with _service(folder, editor, params) as (service, results, _scheduler):
        await service.receive_image(ALICE, _photo_bytes(params.resolution))
        first = await _queued(await service.instruct(ALICE, "make it night"))
        await results.wait(first)  # also the warm-up
        variations, regenerations = [], []
        for _ in range(runs):
            started = time.perf_counter()
            set_id = await _queued(await service.variations(ALICE, first))
            await results.wait(set_id)
            variations.append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in range(4):
                await results.wait(await _queued(await service.regenerate(ALICE, first)))
            regenerations.append(time.perf_counter() - started)
    return CostResult(min(variations), min(regenerations))


async def measure_fairness(
    folder: Path, edits: int = 20, batch_s: float = 0.1, sets_ahead: int = 2
) -> FairnessResult:
    """B's waits alone, then beside A who keeps `sets_ahead` variation sets queued."""
    steps = 10
    params = EditParams(num_inference_steps=steps, resolution=256)
    runs: list[list[float]] = []
    aheads: list[list[int]] = []
    sets_run = 0
    for with_a in (False, True):
        editor = NullEditor(step_delay_s=batch_s / steps)
        run_folder = folder / ("with-a" if with_a else "alone")
        run_folder.mkdir(parents=True, exist_ok=True)
        async with _service(run_folder, editor, params) as (service, results, scheduler):
            batches = scheduler.batch_sizes
            photo = _photo_bytes(128)
            for actor in (ALICE, BOB):
                await service.receive_image(actor, photo)
            await results.wait(await _queued(await service.instruct(ALICE, "make it night")))
            stop = asyncio.Event()
            counter = [0]
            task = (
                asyncio.create_task(
                    _variations_back_to_back(service, results, stop, sets_ahead, counter)
                )
                if with_a
                else None
            )
            if task is not None:
                await asyncio.sleep(batch_s * 2)  # A's sets are queued when B starts
            waits, ahead = [], []
            for _ in range(edits):
                started, before = time.perf_counter(), len(batches)
                await results.wait(await _queued(await service.instruct(BOB, "add snow")))
                waits.append(time.perf_counter() - started)
                ahead.append(len(batches) - before - 1)  # B's own batch is the last one
            stop.set()
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                sets_run = counter[0]
            runs.append(waits)
            aheads.append(ahead)
    return FairnessResult(runs[0], runs[1], batch_s, sets_run, aheads[0], aheads[1])


async def _variations_back_to_back(
    service: ConversationService,
    results: Results,
    stop: asyncio.Event,
    sets_ahead: int,
    finished: list[int],
) -> None:
    """User A: keeps `sets_ahead` sets of variations queued until `stop`; counts finished sets."""
    waiting: list[int] = []
    while not stop.is_set():
        while len(waiting) < sets_ahead:
            reply = await service.variations(ALICE)
            if reply.is_error:
                break
            waiting.append(await _queued(reply))
        if not waiting:
            await asyncio.sleep(0.01)
            continue
        await results.wait(waiting.pop(0))
        finished[0] += 1


async def measure_telegram(
    folder: Path, model_dir: str, params: EditParams, runs: int
) -> list[float]:
    """Seconds from pressing "Variations" to the fake Bot API holding all four pictures."""
    try:
        from telegram.ext import AIORateLimiter

        from bot.app import build
        from bot.config import Settings
        from bot.telegram.frontend import TelegramFrontend
        from editor.pix2pix import DiffusersEditor
        from tests.fakes.telegram_api import FakeBotAPI
    except ImportError as error:  # an installed pix2chat has no tests/ folder
        raise RuntimeError(f"the Telegram part needs a source checkout ({error})") from error
    token, chat = "123456:BENCH-token", 1001
    async with FakeBotAPI(token=token, bot_username="pix2chat_bot") as api:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            telegram_token=SecretStr(token),
            telegram_api_url=api.base_url,
            telegram_file_url=api.base_file_url,
            telegram_poll_timeout=1,
            data_dir=folder / "telegram",
            default_steps=params.num_inference_steps,
            default_resolution=params.resolution,
            max_wait_ms=5,
            rate_burst=1000,
            rate_per_minute=6000.0,
            daily_quota=0,
            scorer_model="",
        )
        editor = DiffusersEditor(model_dir, device="auto")
        limiter = AIORateLimiter(overall_max_rate=0, group_max_rate=0, max_retries=3)
        stop = asyncio.Event()
        async with build(settings, editor=editor) as components:
            task = asyncio.create_task(TelegramFrontend(settings, limiter).run(components, stop))
            try:
                await api.wait_for("getUpdates", timeout=60)
                since = len(api.calls)
                api.send_photo(chat, chat, _photo_bytes(params.resolution), caption="make it night")
                photo_call = await api.wait_for("sendPhoto", timeout=600, since=since)
                message_id = photo_call.result["message_id"]
                sent = next(m for m in api.sent(chat) if m.message_id == message_id)
                data = _button(sent.reply_markup, "variations")
                times = []
                for _ in range(runs):
                    since = len(api.calls)
                    started = time.perf_counter()
                    api.press_button(chat, chat, message_id, data)
                    await api.wait_for("sendMediaGroup", timeout=600, since=since)
                    times.append(time.perf_counter() - started)
                    await api.wait_for(
                        "sendMessage", lambda p: "Tap Use" in str(p.get("text")), since=since
                    )
            finally:
                stop.set()
                await asyncio.wait_for(task, 60)
    return times


def _button(markup: Any, word: str) -> str:
    for row in (markup or {}).get("inline_keyboard", []):
        for button in row:
            if word.lower() in button["text"].lower():
                return str(button["callback_data"])
    raise RuntimeError(f"no {word!r} button")


def _waits(values: Sequence[float]) -> str:
    return (
        f"p50 {statistics.median(values) * 1000:7.0f} ms   max {max(values) * 1000:7.0f} ms"
        f"   (n={len(values)})"
    )


def _ahead(values: Sequence[int]) -> str:
    return f"batches ahead of B: max {max(values)}, mean {statistics.mean(values):.2f}"


def run_variations_benchmark(
    steps: int = 10,
    size: int = 256,
    model: str | None = None,
    edits: int = 20,
    batch_ms: int = 100,
    telegram_runs: int = 3,
    echo: Echo = print,
) -> tuple[CostResult, list[float], FairnessResult]:
    """All three parts; prints the figures and returns them (for tests)."""
    from editor.pix2pix import DiffusersEditor
    from editor.testing.tiny import build_tiny_pipeline

    params = EditParams(num_inference_steps=steps, resolution=size)
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as tmp:
        folder = Path(tmp)
        model_dir = model or str(build_tiny_pipeline(folder / "tiny"))
        editor = DiffusersEditor(model_dir, device="auto")
        (folder / "cost").mkdir()
        cost = asyncio.run(measure_cost(folder / "cost", editor, params))
        name = model or "tiny random model"
        echo(f"== cost: 4 variations vs 4 regenerations ({name}, {size} px, {steps} steps) ==")
        echo(f"one set of 4 variations   {cost.variations_s:8.3f} s")
        echo(f"4 regenerations           {cost.regenerations_s:8.3f} s")
        echo(f"ratio                     {cost.ratio:8.2f}x")

        echo("== delivery: Variations pressed -> all 4 pictures at the Telegram fake ==")
        try:
            arrivals = asyncio.run(measure_telegram(folder, model_dir, params, telegram_runs))
        except RuntimeError as error:
            arrivals = []
            echo(f"skipped: {error}")
        if arrivals:
            echo(f"all four arrived          {_waits(arrivals)}")

        fairness = asyncio.run(measure_fairness(folder / "fair", edits, batch_ms / 1000))
    echo(
        f"== fairness: B's single edits, with and without A's variations back to back "
        f"(batch {batch_ms} ms, max batch 4) =="
    )
    echo(f"B alone                   {_waits(fairness.alone)}   {_ahead(fairness.ahead_alone)}")
    echo(
        f"B beside A's variations   {_waits(fairness.beside_variations)}   "
        f"{_ahead(fairness.ahead_beside)}"
    )
    echo(f"A's sets finished meanwhile: {fairness.sets_run}")
    return cost, arrivals, fairness
