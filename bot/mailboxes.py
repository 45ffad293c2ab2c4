"""Per-chat delivery queues, so a slow chat never holds up the model or other chats."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

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
