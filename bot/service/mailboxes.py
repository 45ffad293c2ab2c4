"""Per-chat delivery queues, so a slow chat never holds up the model or other chats."""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Generic, TypeVar

from bot.service.messages import use_locale
from bot.service.replies import Reply, ReplyKind
from storage.database import brief
from storage.types import Actor

if TYPE_CHECKING:
    from bot.service.conversation import ConversationService

log = logging.getLogger(__name__)

Item = TypeVar("Item")


class Mailboxes(Generic[Item]):
    """One ordered worker per key (a chat): `post` returns at once, `handle` runs in order.

    Job events arrive on the scheduler's path; awaiting an upload there would leave the GPU
    idle while a photo travels to a chat platform. Items of one key keep their order (progress
    before the result); different keys proceed independently.
    """

    def __init__(self, handle: Callable[[Item], Awaitable[None]]) -> None:
        self._handle = handle
        self._queues: dict[str, deque[Item]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}

    def post(self, key: str, item: Item) -> None:
        self._queues.setdefault(key, deque()).append(item)
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._drain(key), name=f"mailbox-{key}")

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                item = queue.popleft()
                try:
                    await self._handle(item)
                except Exception:
                    log.exception("delivery to %s failed", key)
        finally:
            self._workers.pop(key, None)
            if not queue:
                self._queues.pop(key, None)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Let queued deliveries finish for a while, then stop; what is left is redelivered."""
        workers = list(self._workers.values())
        if not workers:
            return
        _done, pending = await asyncio.wait(workers, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


MARK_RETRY_S = (0.5, 1.0, 2.0, 4.0)
"""Waits between tries to mark a sent result delivered while storage is away (then 4 s)."""


class EventDelivery(ABC):
    """What the chat frontends share: job events go through per-chat mailboxes, and each
    result is sent once, then marked delivered in storage (or left for the start-up sweep).

    A result sent while storage is away (PostgreSQL restarting) cannot be marked at once: it
    is remembered as sent, so the resync after the outage does not send it again, and marked
    in the background until storage is back.
    """

    def __init__(self, service: ConversationService) -> None:
        self.service = service
        self._delivered: set[int] = set()
        self._unmarked: set[int] = set()
        self._marker: asyncio.Task[None] | None = None
        self._mailboxes: Mailboxes[tuple[Actor, Reply]] = Mailboxes(self._deliver)

    async def on_event(self, actor: Actor, reply: Reply) -> None:
        """Queue a job event for its chat and return at once (the scheduler is waiting).

        Previews are dropped here: chat platforms keep their text progress,
        and a preview must never be taken for (and marked delivered as) the result.
        """
        if reply.kind is ReplyKind.PREVIEW:
            return
        self._mailboxes.post(actor.chat_id, (actor, reply))

    async def close(self) -> None:
        """Finish queued deliveries (briefly); undelivered results wait for the next start."""
        await self._mailboxes.close()
        if self._marker is not None:
            self._marker.cancel()
            await asyncio.gather(self._marker, return_exceptions=True)
            self._marker = None
        await self._mark_unmarked()  # a last try; what fails is sent again at the next start

    @property
    def unmarked(self) -> frozenset[int]:
        """Results sent but not yet marked delivered in storage."""
        return frozenset(self._unmarked)

    def was_delivered(self, version_id: int) -> bool:
        return version_id in self._delivered

    async def _deliver(self, event: tuple[Actor, Reply]) -> None:
        actor, reply = event
        if reply.kind in (ReplyKind.BATCH_STATUS, ReplyKind.BATCH_RESULT):
            await self.show_batch(actor, reply)
            return
        if reply.version_id is None:
            if reply.kind is ReplyKind.ERROR:  # about the service, not one edit
                await self.send_notice(actor, reply)
            return
        with use_locale(await self.service.locale(actor)):  # the owner's language
            await self._deliver_in_locale(actor, reply, reply.version_id)

    async def _deliver_in_locale(self, actor: Actor, reply: Reply, version_id: int) -> None:
        if reply.kind is ReplyKind.PROGRESS:
            await self.show_progress(reply)
            return
        if version_id in self._delivered:
            return  # a live result and the start-up sweep can both name it
        try:
            sent = await self.send_result(actor, reply)
        except Exception:
            self.service.metrics.failed_deliveries.labels(platform=actor.platform).inc()
            raise
        if not sent:
            self.service.metrics.failed_deliveries.labels(platform=actor.platform).inc()
        if sent:
            self._delivered.add(version_id)
            self._unmarked.add(version_id)
            if not await self._mark_unmarked():
                self._keep_marking()

    async def _mark_unmarked(self) -> bool:
        """Mark what was sent; False if storage is away (the rest stays for later)."""
        for version_id in sorted(self._unmarked):
            try:
                await self.service.mark_delivered(version_id)
            except Exception as error:
                log.warning(
                    "result %d sent, not yet marked delivered: %s", version_id, brief(error)
                )
                return False
            self._unmarked.discard(version_id)
        return True

    def _keep_marking(self) -> None:
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._retry_marking(), name="mark-delivered")

    async def _retry_marking(self) -> None:
        tries = 0
        while self._unmarked:
            await asyncio.sleep(MARK_RETRY_S[min(tries, len(MARK_RETRY_S) - 1)])
            tries += 1
            if await self._mark_unmarked():
                log.info("sent results marked delivered after %d retries", tries)

    async def send_notice(self, actor: Actor, reply: Reply) -> None:
        """A message about the service for a user with edits waiting (the model failed to
        load); platforms that can post into the chat override this."""
        log.warning("no way to tell %s: %s", actor, reply.text())

    async def show_batch(self, actor: Actor, reply: Reply) -> None:
        """A recipe batch's status line or grouped results; frontends that apply recipes
        override it (the batch's versions are marked delivered by the service)."""
        log.warning("%s cannot show recipe batch %s", type(self).__name__, reply.args.get("run"))

    @abstractmethod
    async def show_progress(self, reply: Reply) -> None:
        """Update the pending edit's status (throttled by the platform's own limits)."""

    @abstractmethod
    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        """Send a result or failure; False leaves it for the start-up sweep (e.g. offline)."""
