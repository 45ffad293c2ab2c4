"""Job events to the chats they concern: progress, previews, results and failures as replies.

The scheduler reports by version id; the relay remembers who queued each version (or looks it
up after a restart), turns the event into a `Reply` and publishes it to the platform's
listeners. Results nobody delivered are sent again by `redeliver`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.service.media import Previews
from bot.service.messages import Key
from bot.service.replies import Action, Reply, ReplyKind, UpdateListener
from bot.service.sets import done_reply, set_reply, tuning_of
from bot.work.jobs import JobDone, JobEvent, JobFailed, JobPreview, JobProgress, JobStarted
from editor.finishing.spec import Finish
from storage import lifecycle, limits, tree
from storage.database import Database
from storage.models import Conversation, Version
from storage.types import Actor

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Owner:
    """What the relay remembers about a queued version to report on it without a query.

    `set_id` names the candidate set it belongs to (its results go out together); `tuned` the
    guidance of a stronger or subtler edit (its caption shows them).
    """

    actor: Actor
    instruction: str
    seed: int | None
    finish: Finish | None = None
    set_id: int | None = None
    tuned: tuple[float, float] | None = None


def result_reply(version: Version) -> Reply:
    """The reply for a finished version: its result, or why it failed."""
    if version.is_done:
        seed = (version.params or {}).get("seed")
        return done_reply(
            version.id,
            version.instruction or "",
            seed,
            tuning_of(version),
            version.finishing(),
        )
    return Reply(
        key=version.error_key or Key.ERROR_EDIT_FAILED,
        args={"instruction": version.instruction or ""},
        version_id=version.id,
        kind=ReplyKind.FAILED,
        actions=(Action.REGENERATE,),
    )


class Relay:
    """Publishes job events to the listeners of the platform whose chat queued the edit."""

    def __init__(self, database: Database, previews: Previews) -> None:
        self.database = database
        self.previews = previews
        self._listeners: dict[str, list[UpdateListener]] = {}
        self._owners: dict[int, Owner] = {}
        self._sets_told: set[int] = set()
        self.interceptors: list[Callable[[JobEvent], Awaitable[bool]]] = []
        """Asked first about every event; one that returns True has handled it (recipe
        batches report as one, not per step)."""

    def subscribe(self, platform: str, listener: UpdateListener) -> None:
        self._listeners.setdefault(platform, []).append(listener)

    def unsubscribe(self, platform: str, listener: UpdateListener) -> None:
        listeners = self._listeners.get(platform, [])
        if listener in listeners:
            listeners.remove(listener)

    def expect(self, version_id: int, owner: Owner) -> None:
        """Remember who queued a version, so its events need no query."""
        self._owners[version_id] = owner

    async def redeliver(self, platform: str) -> int:
        async with self.database.read() as session:
            rows = await lifecycle.undelivered(session, platform)
        sets: set[int] = set()
        for version, conversation in rows:
            actor = Actor(conversation.platform, conversation.chat_id, conversation.user_id)
            if version.set_id is None:
                await self.publish(actor, result_reply(version))
            elif version.set_id not in sets:  # a set goes out as one reply, once
                sets.add(version.set_id)
                await self._tell_set(actor, version.set_id, again=True)
        return len(rows)

    async def mark_delivered(self, version_id: int) -> None:
        async with self.database.write() as session:
            await lifecycle.mark_delivered(session, version_id)

    async def on_job_event(self, event: JobEvent) -> None:
        """The scheduler's listener: one event in, at most one reply out."""
        if isinstance(event, JobStarted):
            return
        for intercept in self.interceptors:
            if await intercept(event):
                return
        owner = await self._owner(event.version_id)
        if owner is None:
            return
        if isinstance(event, JobProgress | JobPreview) and owner.set_id not in (
            None,
            event.version_id,
        ):
            return  # a set reports once, under its first candidate (they run together)
        if isinstance(event, JobProgress):
            await self.publish(owner.actor, _step_reply(event, owner, ReplyKind.PROGRESS))
            return
        if isinstance(event, JobPreview):
            if event.version_id not in self._owners:
                return  # it finished while its owner was looked up
            self.previews.keep(event)
            await self.publish(owner.actor, _step_reply(event, owner, ReplyKind.PREVIEW))
            return
        self._owners.pop(event.version_id, None)
        self.previews.drop((event.version_id,))
        if owner.set_id is not None:
            if isinstance(event, JobFailed) and not event.refunded:
                async with self.database.write() as session:
                    await limits.refund(session, owner.actor.platform, owner.actor.user_id)
            await self._tell_set(owner.actor, owner.set_id)
            return
        if isinstance(event, JobDone):
            # Everything the reply needs is known since submit: no query on the result path.
            reply = done_reply(
                event.version_id, owner.instruction, owner.seed, owner.tuned, owner.finish
            )
            await self.publish(owner.actor, reply)
            return
        async with self.database.write() as session:
            version = await session.get(Version, event.version_id)
            if version is None:
                return
            if not event.refunded:
                await limits.refund(session, owner.actor.platform, owner.actor.user_id)
        await self.publish(owner.actor, result_reply(version))

    async def _owner(self, version_id: int) -> Owner | None:
        """Who to tell about a version: cached since submit, else (after a restart) loaded."""
        cached = self._owners.get(version_id)
        if cached is not None:
            return cached
        async with self.database.read() as session:
            version = await session.get(Version, version_id)
            if version is None:
                return None
            conversation = await session.get(Conversation, version.conversation_id)
        assert conversation is not None
        owner = Owner(
            Actor(conversation.platform, conversation.chat_id, conversation.user_id),
            version.instruction or "",
            (version.params or {}).get("seed"),
            version.finishing(),
            version.set_id,
            tuning_of(version),
        )
        self._owners[version_id] = owner
        return owner

    async def tell_waiting(self, reply: Reply) -> int:
        """Send `reply` once to every user with an edit waiting (the model failed to load)."""
        async with self.database.read() as session:
            rows = await lifecycle.queued_jobs(session)
        actors = {Actor(c.platform, c.chat_id, c.user_id) for _, c in rows}
        for actor in sorted(actors, key=str):
            await self.publish(actor, reply)
        return len(actors)

    async def _tell_set(self, actor: Actor, set_id: int, *, again: bool = False) -> None:
        """Once every candidate of a set has finished, its one reply (variations or best-of).

        Candidates finishing in one batch each report; only the first report after the last
        one finished publishes (`again`: the start-up sweep, after a restart, may repeat it).
        """
        if set_id in self._sets_told and not again:
            return
        async with self.database.read() as session:
            reply = set_reply(await tree.candidates_of(session, set_id))
        if reply is None or (set_id in self._sets_told and not again):
            return
        self._sets_told.add(set_id)
        await self.publish(actor, reply)

    async def publish(self, actor: Actor, reply: Reply) -> None:
        """Tell every listener of the actor's platform; one failing listener stops no other."""
        for listener in self._listeners.get(actor.platform, []):
            try:
                await listener(actor, reply)
            except Exception:
                log.exception("listener for %s failed on %s", actor.platform, reply.key)


def _step_reply(event: JobProgress | JobPreview, owner: Owner, kind: ReplyKind) -> Reply:
    """Progress or preview of a running edit: step n of N of the owner's instruction."""
    return Reply(
        key=Key.EDIT_PROGRESS if kind is ReplyKind.PROGRESS else Key.EDIT_PREVIEW,
        args={"step": event.step, "total": event.total, "instruction": owner.instruction},
        version_id=event.version_id,
        kind=kind,
    )
