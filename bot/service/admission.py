"""Admission: what an edit must pass before it is queued (instruction, queue, pending, rate).

Every cap is checked and the version recorded in one write transaction, so two requests at
once cannot both slip under a cap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.work.jobs import Job, JobQueue
from bot.work.metrics import Metrics
from editor.base import Editor
from editor.errors import EmptyInstruction, InstructionTooLong
from editor.finishing.spec import Finish
from editor.params import EditParams
from storage import access, limits, tree
from storage.errors import QueueFull, QuotaExceeded, RateLimited, TooManyPending
from storage.models import Conversation, Version
from storage.types import Actor

MAX_INSTRUCTION_CHARS = 1000
"""Longer instructions are refused before they are tokenised."""
REFUSAL_REASONS: dict[type[Exception], str] = {
    QueueFull: "queue",
    TooManyPending: "pending",
    RateLimited: "rate",
    QuotaExceeded: "quota",
}
"""The `reason` label of pix2chat_refusals for each admission refusal."""


@dataclass(frozen=True, slots=True)
class Admission:
    """Caps checked before an edit is queued."""

    max_pending_per_user: int = 3
    queue_cap: int = 200
    rate: limits.LimitPolicy = dataclasses.field(default_factory=limits.LimitPolicy)


class Gatekeeper:
    """Checks instructions and caps, and records admitted edits with their queue job."""

    def __init__(
        self,
        queue: JobQueue,
        tokens: Editor,
        admission: Admission,
        clock: Callable[[], float],
        metrics: Metrics | None = None,
    ) -> None:
        self.queue = queue
        self.tokens = tokens
        self.admission = admission
        self.clock = clock
        self.metrics = metrics or Metrics()

    def clean_instruction(self, text: str) -> str:
        """The instruction with its whitespace collapsed; refused if empty or too long."""
        instruction = " ".join((text or "").split())
        if not instruction:
            raise EmptyInstruction()
        max_tokens = self.tokens.max_instruction_tokens
        if len(instruction) > MAX_INSTRUCTION_CHARS:
            raise InstructionTooLong(tokens=f"over {max_tokens}", max_tokens=max_tokens)
        count = self.tokens.count_tokens(instruction)
        if count > max_tokens:
            raise InstructionTooLong(tokens=count, max_tokens=max_tokens)
        return instruction

    async def admit(
        self,
        session: AsyncSession,
        actor: Actor,
        conversation: Conversation,
        parent: Version,
        instruction: str,
        params: EditParams,
        request_key: str | None,
        finish: Finish | None = None,
    ) -> Version:
        """Check every cap and record the queued version, all in one write transaction.

        A finishing operation (`finish`) passes the same caps and counts as one edit.
        A user's quota override (`/quota`, storage/access.py) replaces the daily quota.
        """
        try:
            if await self.queue.depth() >= self.admission.queue_cap:  # the queue knows
                raise QueueFull()
            pending = await tree.count_pending_for_user(session, actor.platform, actor.user_id)
            if pending >= self.admission.max_pending_per_user:
                raise TooManyPending(count=pending)
            policy = self.admission.rate
            override = await access.daily_quota(session, actor.platform, actor.user_id)
            if override is not None:
                policy = dataclasses.replace(policy, daily_quota=override)
            await limits.consume(session, actor.platform, actor.user_id, policy, self.clock())
        except (QueueFull, TooManyPending, RateLimited, QuotaExceeded) as refusal:
            self.metrics.refusals.labels(reason=REFUSAL_REASONS[type(refusal)]).inc()
            raise
        version = await tree.add_edit(
            session,
            conversation,
            parent,
            instruction,
            params,
            request_key=request_key,
            finish=finish,
        )
        await self.queue.defer_in(session, job_for(actor, version, parent))
        return version

    async def admit_set(
        self,
        session: AsyncSession,
        actor: Actor,
        conversation: Conversation,
        parent: Version,
        instruction: str,
        params: list[EditParams],
        origin: str,
        request_key: str | None = None,
    ) -> list[Version]:
        """A candidate set, admitted as one request: the queue and pending caps and the rate
        limit count it once; the daily quota counts every candidate."""
        if await self.queue.depth() + len(params) > self.admission.queue_cap:
            raise QueueFull()
        pending = await tree.count_pending_for_user(session, actor.platform, actor.user_id)
        if pending >= self.admission.max_pending_per_user:
            raise TooManyPending(count=pending)
        await limits.consume(
            session,
            actor.platform,
            actor.user_id,
            self.admission.rate,
            self.clock(),
            cost=len(params),
        )
        candidates = await tree.add_candidates(
            session, conversation, parent, instruction, params, origin, request_key
        )
        for version in candidates:
            await self.queue.defer_in(
                session, job_for(actor, version, parent, set_size=len(candidates))
            )
        return candidates


def job_for(actor: Actor, version: Version, parent: Version, set_size: int = 1) -> Job:
    """The scheduler's view of a queued version (the parent size is known once it is done);
    `set_size` counts the candidates of its set."""
    parent_size = (
        (parent.width, parent.height) if parent.is_done and parent.width and parent.height else None
    )
    return Job(
        version_id=version.id,
        user_key=f"{actor.platform}:{actor.user_id}",
        parent_id=parent.id,
        parent_size=parent_size,
        instruction=version.instruction or "",
        params=version.edit_params(),
        finish=version.finishing(),
        set_id=version.set_id,
        scored=version.set_id is not None,
        set_size=set_size,
    )
