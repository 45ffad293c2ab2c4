"""procrastinate's tables are named in one module of queries, and those queries run.

The guard keeps it that way: a statement on procrastinate's tables written anywhere else in
the application fails here (migrations, which create the tables, are the exception).
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from bot.work import pgqueue, queue_sql
from storage.database import Database

REPO_ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("bot", "editor", "storage")
ALLOWED = {Path("bot/work/queue_sql.py")}


def test_only_queue_sql_names_procrastinate_tables() -> None:
    offenders = [
        path.relative_to(REPO_ROOT)
        for package in PACKAGES
        for path in sorted((REPO_ROOT / package).rglob("*.py"))
        if "procrastinate_" in path.read_text(encoding="utf-8")
        and path.relative_to(REPO_ROOT) not in ALLOWED
        and "migrations" not in path.relative_to(REPO_ROOT).parts
    ]
    assert offenders == []


async def test_the_monitoring_queries_run_on_an_empty_queue(pg: Database) -> None:
    async with pg.read() as session:
        state = (
            await session.execute(queue_sql.QUEUE_STATE, {"queue": pgqueue.QUEUE, "timeout": 30.0})
        ).one()
        live = await session.scalar(text(queue_sql.LIVE_WORKERS))
        rank = (await session.execute(queue_sql.RANK, {"lock": "user:telegram:nobody"})).one()
    assert tuple(state) == (0, 0, 0, 0)
    assert live == 0
    assert tuple(rank) == (0, None)
