"""Benchmarks behind `pix2chat bench`: figures printed, recorded in docs/BENCHMARKS.md.

Service benchmarks use a null editor so they time pix2chat's own overhead (database, image
store, scheduler, events), not the model.
"""

from __future__ import annotations

import asyncio
import io
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter
from sqlalchemy import text

from bot.service.conversation import Admission, ConversationService
from bot.service.replies import Reply, ReplyKind
from bot.work.fairness import FairLine
from bot.work.jobs import Job
from bot.work.scheduler import EmbeddedScheduler
from editor.base import EditRequest
from editor.images import encode_png, encode_preview_jpeg
from editor.params import EditParams
from editor.testing.doubles import NullEditor, TimedNullEditor
from storage.database import Database
from storage.images import FileImageStore
from storage.limits import LimitPolicy
from storage.migrate import upgrade
from storage.types import Actor

Echo = Callable[[str], None]
UNLIMITED = Admission(
    max_pending_per_user=10**6, queue_cap=10**7, rate=LimitPolicy(10**6, 10**6, 0)
)


def _ms(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
    return f"p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   (n={len(values)})"


def product_photo(size: int = 512, seed: int = 0) -> Image.Image:
    """A synthetic product shot: soft studio gradient, an object with a shadow, sensor noise."""
    rng = random.Random(seed)
    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    image = Image.blend(image, Image.new("RGB", (size, size), (235, 230, 220)), 0.7)
    draw = ImageDraw.Draw(image)
    draw.ellipse((size * 0.2, size * 0.75, size * 0.8, size * 0.85), fill=(150, 145, 140))
    colour = (rng.randrange(40, 220), rng.randrange(40, 220), rng.randrange(40, 220))
    draw.rounded_rectangle((size * 0.25, size * 0.3, size * 0.75, size * 0.8), 40, fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1.5))
    noise = Image.effect_noise((size, size), 6).convert("RGB")
    return Image.blend(image, noise, 0.06)


async def _edit_overhead(folder: Path, edits: int, echo: Echo) -> None:
    url = f"sqlite:///{folder / 'overhead.db'}"
    upgrade(url)
    photo = io.BytesIO()
    product_photo().save(photo, "JPEG", quality=92)
    async with Database(url) as database:
        editor = TimedNullEditor()
        store = FileImageStore(folder / "images")
        scheduler = EmbeddedScheduler(database, store, editor, max_batch=1, max_wait_ms=0)
        service = ConversationService(
            database,
            store,
            scheduler,
            editor,
            defaults=EditParams(num_inference_steps=1),
            admission=UNLIMITED,
        )
        done: asyncio.Queue[float] = asyncio.Queue()

        async def on_update(_actor: Actor, reply: Reply) -> None:
            if reply.kind is ReplyKind.RESULT:
                done.put_nowait(time.perf_counter() - editor.finished_at)

        service.subscribe("bench", on_update)
        actors = [Actor("bench", str(i), str(i)) for i in range(50)]
        async with scheduler:
            for actor in actors:
                await service.receive_image(actor, photo.getvalue())
            queued, delivered = [], []
            for i in range(edits):
                started = time.perf_counter()
                reply = await service.instruct(actors[i % len(actors)], "make it night")
                queued.append(time.perf_counter() - started)
                assert not reply.is_error, reply
                delivered.append(await asyncio.wait_for(done.get(), 10))
    echo(f"request -> job queued     {_ms(queued)}")
    echo(f"result  -> reply ready    {_ms(delivered)}   (PNG encode + store + commit + event)")


async def _dispatch_rate(folder: Path, jobs: int, echo: Echo) -> None:
    """Jobs/s through the scheduler: in-memory ordering alone, then with database and images."""
    line = FairLine()
    params = EditParams(num_inference_steps=1, resolution=256)
    for i in range(jobs):
        line.enqueue(Job(i + 1, f"u{i % 100}", 0, (256, 256), "x", params))
    started = time.perf_counter()
    count = 0
    while batch := line.next_batch(8):
        line.take(batch)
        line.finish(batch)
        count += len(batch)
    rate = count / (time.perf_counter() - started)
    echo(
        f"scheduler dispatch        {rate:10,.0f} jobs/s   (ordering + batching, 100 users, batch 8)"
    )

    url = f"sqlite:///{folder / 'dispatch.db'}"
    upgrade(url)
    total = min(jobs, 5000)
    async with Database(url) as database:
        editor = NullEditor()
        store = FileImageStore(folder / "dispatch-images")
        scheduler = EmbeddedScheduler(database, store, editor, max_batch=8, max_wait_ms=0)
        service = ConversationService(
            database, store, scheduler, editor, defaults=params, admission=UNLIMITED
        )
        finished = asyncio.Event()
        seen = 0

        async def on_update(_actor: Actor, reply: Reply) -> None:
            nonlocal seen
            if reply.kind is ReplyKind.RESULT:
                seen += 1
                if seen == total:
                    finished.set()

        service.subscribe("bench", on_update)
        small = io.BytesIO()
        product_photo(64).save(small, "PNG")
        actors = [Actor("bench", str(i), str(i)) for i in range(100)]
        for actor in actors:
            await service.receive_image(actor, small.getvalue())
        for i in range(total):  # queued before the worker starts, so the timing is the drain
            reply = await service.instruct(actors[i % 100], "x", base_version_id=(i % 100) + 1)
            assert not reply.is_error, reply
        started = time.perf_counter()
        async with scheduler:
            await asyncio.wait_for(finished.wait(), 600)
        elapsed = time.perf_counter() - started
    own = elapsed - scheduler.model_thread_s
    echo(
        f"durable dispatch          {total / own:10,.0f} jobs/s   (claim + record result + events, "
        f"{own / total * 1000:.2f} ms/job, excluding the model thread)"
    )
    echo(
        f"durable drain, null model {total / elapsed:10,.0f} jobs/s   (the above plus 256 px "
        f"PNG decode/resize/encode + fsync in the model thread, "
        f"{scheduler.model_thread_s / total * 1000:.2f} ms/job)"
    )


async def _history_latency(folder: Path, conversations: int, versions: int, echo: Echo) -> None:
    url = f"sqlite:///{folder / 'history.db'}"
    upgrade(url)
    started = time.perf_counter()
    async with Database(url) as database:
        await _bulk_history(database, conversations, versions)
        filled = time.perf_counter() - started
        service = ConversationService(
            database,
            FileImageStore(folder / "h-images"),
            EmbeddedScheduler(database, FileImageStore(folder), NullEditor()),
            NullEditor(),
        )
        rng = random.Random(1)
        timings: dict[str, list[float]] = {"undo": [], "redo": [], "history": []}
        for _ in range(1000):
            actor = Actor("bench", str(rng.randrange(conversations)), "u")
            for name, call in (
                ("undo", service.undo),
                ("redo", service.redo),
                ("history", service.history),
            ):
                begun = time.perf_counter()
                reply = await call(actor)
                timings[name].append(time.perf_counter() - begun)
                assert not reply.is_error, reply
    rows = conversations * versions
    echo(
        f"history table             {rows:,} versions in {conversations:,} conversations (filled in {filled:.0f} s)"
    )
    for name, values in timings.items():
        echo(f"{name:<25} {_ms(values)}")


async def _bulk_history(database: Database, conversations: int, versions: int) -> None:
    """Linear chains of done versions, head at the newest, written with plain executemany."""
    async with database.write() as session:
        connection = await session.connection()
        now = "2026-01-01 00:00:00"
        await connection.execute(
            text(
                "INSERT INTO conversations (id, platform, chat_id, user_id, settings, created_at) VALUES (:id, 'bench', :chat, 'u', '{}', :now)"
            ),
            [{"id": c + 1, "chat": str(c), "now": now} for c in range(conversations)],
        )
        params = '{"num_inference_steps": 20, "guidance_scale": 7.5, "image_guidance_scale": 1.5, "seed": 1, "resolution": 512}'
        for start in range(0, conversations, 500):
            rows = []
            for c in range(start, min(conversations, start + 500)):
                base = c * versions
                for v in range(versions):
                    rows.append(
                        {
                            "id": base + v + 1,
                            "conv": c + 1,
                            "parent": base + v if v else None,
                            "instruction": None if v == 0 else f"edit {v}",
                            "params": None if v == 0 else params,
                            "sha": f"{base + v:064x}",
                            "now": now,
                        }
                    )
            await connection.execute(
                text(
                    "INSERT INTO versions (id, conversation_id, parent_id, instruction, params, status, image_sha, width, height, attempts, delivered, created_at) VALUES (:id, :conv, :parent, :instruction, :params, 'done', :sha, 512, 512, 1, 1, :now)"
                ),
                rows,
            )
        await connection.execute(text(f"UPDATE conversations SET head_id = id * {versions}"))


def _bytes_per_edit(echo: Echo) -> None:
    image = product_photo(512)
    encode_times = []
    for _ in range(20):
        started = time.perf_counter()
        png = len(encode_png(image))
        encode_times.append(time.perf_counter() - started)
    jpeg = len(encode_preview_jpeg(image))
    echo(
        f"bytes per 512x512 edit    {png / 1024:,.0f} KiB lossless PNG stored (+ ~0.3 KiB row); {jpeg / 1024:,.0f} KiB JPEG sent to chat"
    )
    echo(f"PNG encode, 512x512 photo {_ms(encode_times)}   (part of result -> reply ready)")


async def run_service_benchmark(
    conversations: int, versions: int, edits: int, jobs: int, echo: Echo = print
) -> None:
    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as tmp:
        folder = Path(tmp)
        echo("== service overhead (null editor, SQLite) ==")
        await _edit_overhead(folder, edits, echo)
        await _dispatch_rate(folder, jobs, echo)
        await _history_latency(folder, conversations, versions, echo)
        _bytes_per_edit(echo)


def service_benchmark_command(
    conversations: int, versions: int, edits: int, jobs: int, echo: Echo = print
) -> None:
    """`pix2chat bench service`: the benchmark, then its total wall time."""
    started = time.perf_counter()
    asyncio.run(run_service_benchmark(conversations, versions, edits, jobs, echo=echo))
    echo(f"(total {time.perf_counter() - started:.0f} s)")


def run_batch_benchmark(
    size: int, steps: int, batch: int, model: str | None, echo: Echo = print
) -> None:
    """Edits/s of one batched call against the same edits one at a time (tiny model by default)."""
    from editor.pix2pix import DiffusersEditor
    from editor.testing.tiny import build_tiny_pipeline

    with tempfile.TemporaryDirectory(prefix="pix2chat-bench-") as tmp:
        editor = DiffusersEditor(
            model or str(build_tiny_pipeline(Path(tmp) / "tiny")), device="auto"
        )
        editor.load()
        image = product_photo(size)
        requests = [
            EditRequest(
                image,
                "make it night",
                EditParams(num_inference_steps=steps, seed=i, resolution=size),
            )
            for i in range(batch)
        ]
        editor.edit_batch(requests[:1])  # warm-up
        singles = _best_of(3, lambda: [editor.edit_batch([r]) for r in requests])
        batched = _best_of(3, lambda: editor.edit_batch(requests))
        echo(
            f"== batch of {batch} vs {batch} single calls ({model or 'tiny random model'}, {size}x{size}, {steps} steps, {editor.describe()['device']}) =="
        )
        echo(f"single calls  {singles:7.3f} s   {batch / singles:6.2f} edits/s")
        echo(f"one batch     {batched:7.3f} s   {batch / batched:6.2f} edits/s")
        echo(f"ratio         {singles / batched:7.2f}x")


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best
