"""Shared steps for the storage tests: one transaction each, as the service and schedulers run.

Each step runs in its own transaction, so every test also checks that the state is in the
database rather than in a session.
"""

from __future__ import annotations

from sqlalchemy import func, select

from editor.params import EditParams
from storage import lifecycle, tree
from storage.database import Database
from storage.images import digest
from storage.models import Conversation, Version, VersionStatus
from storage.types import Actor

TG = "telegram"
ALICE = Actor(TG, "group-1", "alice")
BOB = Actor(TG, "group-1", "bob")  # same group chat as ALICE: a conversation of his own
ALICE_PRIVATE = Actor(TG, "alice-dm", "alice")
ALICE_DISCORD = Actor("discord", "group-1", "alice")  # same ids, another platform
SIZE = (512, 384)


def sha(label: str) -> str:
    return digest(label.encode())


async def upload(db: Database, actor: Actor, label: str = "photo", **kwargs: object) -> int:
    async with db.write() as session:
        conversation = await tree.get_or_create_conversation(session, actor)
        root = await tree.add_root(session, conversation, sha(label), SIZE, **kwargs)  # type: ignore[arg-type]
        return root.id


async def queue(
    db: Database,
    actor: Actor,
    parent_id: int | None = None,
    instruction: str = "make it snow",
    seed: int = 0,
    request_key: str | None = None,
) -> int:
    """A queued edit on `parent_id` (default: the head)."""
    async with db.write() as session:
        conversation = await tree.get_or_create_conversation(session, actor)
        if parent_id is None:
            parent = await tree.head(session, conversation)
            assert parent is not None
        else:
            parent = await tree.get_version(session, conversation, parent_id)
        version = await tree.add_edit(
            session, conversation, parent, instruction, EditParams(seed=seed), request_key
        )
        return version.id


async def run(db: Database, version_id: int) -> None:
    async with db.write() as session:
        assert await lifecycle.claim_many(session, [version_id]) == [version_id]


async def finish(db: Database, version_id: int) -> None:
    """The scheduler's two steps: claim the job, then record its result."""
    await run(db, version_id)
    async with db.write() as session:
        done = await lifecycle.mark_done(session, version_id, sha(f"result-{version_id}"), SIZE)
        assert done is not None
        assert done.status is VersionStatus.DONE


async def edit(
    db: Database,
    actor: Actor,
    parent_id: int | None = None,
    instruction: str = "make it snow",
    seed: int = 0,
) -> int:
    version_id = await queue(db, actor, parent_id, instruction, seed)
    await finish(db, version_id)
    return version_id


async def regenerate(db: Database, actor: Actor, seed: int) -> int:
    """What the service does: same parent, same instruction and parameters, a new seed."""
    async with db.read() as session:
        conversation = await tree.find_conversation(session, actor)
        assert conversation is not None
        current = await tree.head(session, conversation)
        assert current is not None and current.parent_id is not None and current.instruction
        parent_id, instruction = current.parent_id, current.instruction
        assert current.edit_params().seed != seed
    return await edit(db, actor, parent_id, instruction, seed)


async def undo(db: Database, actor: Actor) -> int:
    async with db.write() as session:
        conversation = await tree.get_or_create_conversation(session, actor)
        return (await tree.undo(session, conversation)).id


async def redo(db: Database, actor: Actor) -> int:
    async with db.write() as session:
        conversation = await tree.get_or_create_conversation(session, actor)
        return (await tree.redo(session, conversation)).id


async def state(db: Database, actor: Actor) -> tuple[int | None, list[int]]:
    """(head id, ids on the path root -> head), read back from the database."""
    async with db.read() as session:
        conversation = await tree.find_conversation(session, actor)
        if conversation is None or conversation.head_id is None:
            return None, []
        path = await tree.path_to(session, conversation.head_id)
        return conversation.head_id, [v.id for v in path]


async def path_ids(db: Database, version_id: int) -> list[int]:
    async with db.read() as session:
        return [v.id for v in await tree.path_to(session, version_id)]


async def load(db: Database, version_id: int) -> Version:
    async with db.read() as session:
        version = await session.get(Version, version_id)
        assert version is not None
        return version


async def count_versions(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count(Version.id))) or 0)


async def count_conversations(db: Database) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count(Conversation.id))) or 0)
