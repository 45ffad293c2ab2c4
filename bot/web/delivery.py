"""Job events to the browser tabs of the actor they concern (server-sent event streams)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from bot.service.conversation import ConversationService
from bot.service.mailboxes import EventDelivery
from bot.service.messages import use_locale
from bot.service.replies import Reply, ReplyKind
from bot.web.render import image_url, reply_json
from storage.types import Actor

log = logging.getLogger(__name__)

STREAM_BUFFER = 256
"""Events one tab may fall behind by; progress beyond that is dropped (results reload)."""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One server-sent event: `progress`, `preview`, `result`, `failure`, `notice` (about
    the service, not one edit) or `batch` (a recipe batch's status or results), with a JSON
    payload."""

    name: str
    data: Mapping[str, Any]


class WebDelivery(EventDelivery):
    """Fans each actor's events out to every open tab of that browser.

    A result counts as delivered as soon as it is published: every page load (and every
    reconnect of a stream) fetches the conversation from the service, so a result that
    finished with no tab open is shown the next time the page opens, never lost.
    """

    def __init__(self, service: ConversationService) -> None:
        super().__init__(service)
        self._streams: dict[Actor, set[asyncio.Queue[StreamEvent | None]]] = {}
        self.closing = asyncio.Event()

    async def on_event(self, actor: Actor, reply: Reply) -> None:
        """Progress goes straight to the tabs (no I/O to wait for); results via the mailbox.

        Progress is worded in the language last seen for the browser (no storage read on the
        scheduler's path); results in the one storage has.
        """
        if reply.kind is ReplyKind.PROGRESS:
            with use_locale(self.service.languages.peek(actor)):
                self._push(actor, StreamEvent("progress", reply_json(reply)))
            return
        if reply.kind is ReplyKind.PREVIEW and reply.version_id is not None:
            with use_locale(self.service.languages.peek(actor)):
                body = reply_json(reply)
            body["preview"] = f"{image_url(reply.version_id, 'preview')}?step={reply.args['step']}"
            self._push(actor, StreamEvent("preview", body))
            return
        await super().on_event(actor, reply)

    async def show_batch(self, actor: Actor, reply: Reply) -> None:
        """A recipe batch's status ("7 of 12 photos done") or its grid of results."""
        self._push(actor, StreamEvent("batch", reply_json(reply)))

    async def show_progress(self, reply: Reply) -> None:
        """Unused: `on_event` pushes progress to the actor's tabs directly."""

    async def send_result(self, actor: Actor, reply: Reply) -> bool:
        name = "failure" if reply.is_error else "result"
        self._push(actor, StreamEvent(name, reply_json(reply)))
        return True

    async def send_notice(self, actor: Actor, reply: Reply) -> None:
        """A message about the service (the model failed to load) to the actor's open tabs."""
        self._push(actor, StreamEvent("notice", reply_json(reply)))

    @contextlib.asynccontextmanager
    async def stream(self, actor: Actor) -> AsyncIterator[asyncio.Queue[StreamEvent | None]]:
        """A queue of this actor's events for one tab; None in it means the server stops."""
        queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(STREAM_BUFFER)
        self._streams.setdefault(actor, set()).add(queue)
        try:
            yield queue
        finally:
            tabs = self._streams.get(actor, set())
            tabs.discard(queue)
            if not tabs:
                self._streams.pop(actor, None)

    def open_streams(self, actor: Actor) -> int:
        return len(self._streams.get(actor, ()))

    async def close(self) -> None:
        """End every open stream (so the server can stop), then finish queued deliveries."""
        self.closing.set()
        for tabs in self._streams.values():
            for queue in tabs:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(None)
        await super().close()

    def _push(self, actor: Actor, event: StreamEvent) -> None:
        for queue in self._streams.get(actor, ()):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                log.warning("web: a tab fell behind; dropped a %s event", event.name)
