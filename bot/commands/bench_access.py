"""`pix2chat bench access`: what running a public bot costs per request and per look.

The access gate's one read per update (open and allow-list mode, with many rules), `/stats`
on a busy day, and one scrape of `/metrics`. SQLite in a temporary folder; no model.
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, update

from bot.service.access import AccessControl, AccessMode, AccessPolicy
from bot.service.admin import Admin
from bot.work.metrics import Metrics, MetricsServer
from storage import lifecycle
from storage.access import USER, Subject
from storage.database import Database
from storage.migrate import upgrade
from storage.models import AccessRule, Conversation, Version
from storage.types import Actor

Echo = Callable[[str], None]


async def _timed(call: Callable[[], Awaitable[object]], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return times


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:7.2f} ms   p99 {p99 * 1000:7.2f} ms"


async def _fill(database: Database, rules: int, edits: int, users: int) -> None:
    """`rules` allowed users, and `edits` finished edits today by `users` users (in batches of 4)."""
    now = datetime.now(UTC)
    async with database.write() as session:
        await session.execute(
            insert(AccessRule),
            [
                {
                    "platform": "telegram",
                    "scope": USER,
                    "subject_id": str(i),
                    "allowed": True,
                    "banned": False,
                    "updated_at": now,
                }
                for i in range(rules)
            ],
        )
        await session.execute(
            insert(Conversation),
            [
                {
                    "id": u + 1,
                    "platform": "telegram",
                    "chat_id": str(u),
                    "user_id": str(u),
                    "settings": {},
                    "created_at": now,
                }
                for u in range(users)
            ],
        )
        day_before = now - timedelta(days=1)
        roots = [
            {"id": u + 1, "conversation_id": u + 1, "created_at": day_before}
            | lifecycle.new_root(day_before)
            for u in range(users)
        ]
        await session.execute(insert(Version), roots)
        edit_rows = [
            {
                "id": users + i + 1,
                "conversation_id": i % users + 1,
                "parent_id": i % users + 1,
                "instruction": "x",
                "params": {},
                "created_at": now - timedelta(hours=1),
            }
            | lifecycle.new_edit()
            for i in range(edits)
        ]
        await session.execute(insert(Version), edit_rows)
    ids = [users + i + 1 for i in range(edits)]
    for chunk in range(0, len(ids), 1000):  # through the one lifecycle, as the workers do
        part = ids[chunk : chunk + 1000]
        async with database.write() as session:
            await lifecycle.claim_many(session, part)
            await lifecycle.mark_done_many(
                session, [lifecycle.Result(i, "0" * 64, (512, 512)) for i in part]
            )
    times: list[dict[str, object]] = []
    for index, version_id in enumerate(ids):
        batch = index // 4  # four edits per pipeline call: started and finished together
        finished = now - timedelta(seconds=0.5 * (edits // 4 - batch))
        started = finished - timedelta(seconds=1 + batch % 5)
        times.append({"id": version_id, "started_at": started, "finished_at": finished})
    async with database.write() as session:
        await session.execute(update(Version), times)


async def _bench(folder: Path, rules: int, edits: int, runs: int, echo: Echo) -> None:
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    metrics = Metrics()
    async with Database(url) as database:
        await _fill(database, rules, edits, users=max(1, edits // 20))
        stranger, member = Actor("telegram", "-1", "999999999"), Actor("telegram", "1", "1")
        group = (Subject("telegram", "chat", "-1"),)
        echo(f"access gate, one read per update ({rules:,} allow-list rules, SQLite):")
        modes: tuple[AccessMode, ...] = ("open", "allowlist")
        for mode in modes:
            control = AccessControl(database, AccessPolicy(mode, silence_s=0), metrics)
            allowed = await _timed(functools.partial(control.check, member, group), runs)
            refused = await _timed(functools.partial(control.check, stranger, group), runs)
            echo(f"  {mode:<9} allowed user  {_ms(allowed)}")
            echo(f"  {mode:<9} stranger      {_ms(refused)}")
        admin_actor = Actor("telegram", "7", "7")
        policy = AccessPolicy(admins=frozenset({"telegram:7"}))
        admin = Admin(database, AccessControl(database, policy, metrics))
        stats = await _timed(lambda: admin.stats(admin_actor), max(3, runs // 50))
        echo(f"/stats with {edits:,} edits today           {_ms(stats)}")
    for outcome in ("done", "failed"):
        metrics.edits.labels(outcome=outcome).inc(edits)
    server = MetricsServer(metrics, "127.0.0.1", 0)
    port = server.start()
    try:
        scrape = await _timed(
            lambda: asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read()
            ),
            runs // 5 or 1,
        )
    finally:
        server.stop()
    echo(f"one /metrics scrape                        {_ms(scrape)}")


def access_benchmark_command(rules: int, edits: int, runs: int, echo: Echo) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(_bench(Path(folder), rules, edits, runs, echo))
