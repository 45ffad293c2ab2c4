"""What frontends and GPU workers agree on when they share nothing but PostgreSQL.

Edit jobs are procrastinate jobs (queue `QUEUE`, task `TASK`, args `{"version_id": id}`),
deferred with procrastinate's own SQL function inside the transaction that inserts the version
row, so there is never a version without a job or a job without a version. Job events travel
back on one LISTEN/NOTIFY channel as small JSON payloads; `pg_notify` is transactional, so a
"done" notification leaves exactly when the result is committed.

Ordering and fairness: every job of a user carries the lock `user:<platform>:<id>`, and
procrastinate runs one job per lock at a time, oldest (then highest priority) first, so a
user's edits run one at a time and in order. Priorities approximate the embedded scheduler's
round-robin: a user's k-th pending job gets priority -k (never above the user's older waiting
jobs), so anybody's first job runs before anybody's second, and so on (the rule is
`fairness.queue_priority`; the statements are in bot/work/queue_sql.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from bot.work import queue_sql
from bot.work.fairness import queue_priority
from bot.work.jobs import Job, JobDone, JobEvent, JobFailed, JobPreview, JobProgress, JobStarted

QUEUE = "pix2chat_edits"
TASK = "pix2chat.edit"
EVENTS_CHANNEL = "pix2chat_events"


def is_postgresql(url: str) -> bool:
    return make_url(url).get_backend_name() in ("postgresql", "postgres")


def libpq_url(url: str) -> str:
    """The plain `postgresql://` form psycopg and procrastinate connect with."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def queue_for(model: str) -> str:
    """The queue of a named model (PIX2CHAT_MODELS), so a worker takes only jobs of the
    model it loaded (`pix2chat worker --model`); unnamed (one model) jobs use `QUEUE`.

    The user lock is the same on every queue: fairness stays per user across models.
    """
    return f"{QUEUE}.{model}" if model else QUEUE


def lock_for(user_key: str) -> str:
    return f"user:{user_key}"


def job_args(version_id: int) -> dict[str, Any]:
    return {"version_id": version_id}


async def defer_in(session: AsyncSession, job: Job) -> int:
    """Insert the procrastinate job for `job` in the caller's transaction; its job id.

    The worker is woken by procrastinate's own insert trigger (NOTIFY) once this commits.
    """
    lock = lock_for(job.user_key)
    pending, lowest = (await session.execute(queue_sql.RANK, {"lock": lock})).one()
    priority = queue_priority(int(pending), None if lowest is None else int(lowest))
    job_id = await session.scalar(
        queue_sql.DEFER,
        {
            "queue": queue_for(job.params.model),
            "task": TASK,
            "priority": priority,
            "lock": lock,
            "args": json.dumps(job_args(job.version_id)),
        },
    )
    assert job_id is not None
    return int(job_id)


def encode_event(event: JobEvent) -> str:
    payload: dict[str, Any] = {"v": event.version_id}
    if isinstance(event, JobStarted):
        payload |= {"e": "started", "n": event.batch_size}
    elif isinstance(event, JobProgress):
        payload |= {"e": "progress", "s": event.step, "t": event.total}
    elif isinstance(event, JobDone):
        payload |= {"e": "done", "sec": round(event.seconds, 3)}
    elif isinstance(event, JobPreview):
        raise ValueError("previews do not travel through NOTIFY (8000-byte payload limit)")
    else:
        payload |= {"e": "failed", "k": event.error_key, "r": event.refunded}
    return json.dumps(payload, separators=(",", ":"))


def decode_event(payload: str) -> JobEvent | None:
    """The event a worker sent; None for anything this version does not understand."""
    try:
        data = json.loads(payload)
        version_id = int(data["v"])
        kind = data["e"]
        if kind == "started":
            return JobStarted(version_id, int(data["n"]))
        if kind == "progress":
            return JobProgress(version_id, int(data["s"]), int(data["t"]))
        if kind == "done":
            return JobDone(version_id, float(data["sec"]))
        if kind == "failed":
            return JobFailed(version_id, str(data["k"]), bool(data.get("r", False)))
    except (ValueError, KeyError, TypeError):
        return None
    return None


async def notify(session: AsyncSession, events: Sequence[JobEvent]) -> None:
    """Send events to every listening frontend when (and only if) `session` commits."""
    if events:
        await session.execute(
            queue_sql.NOTIFY,
            {"channel": EVENTS_CHANNEL, "payloads": [encode_event(event) for event in events]},
        )
