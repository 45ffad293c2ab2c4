"""The version tree on SQLite and PostgreSQL: edit, undo, redo, regenerate, branch, reset, forget.

Each step runs in its own transaction, as the conversation service and the scheduler run them,
so every test also checks that the state is in the database rather than in a session.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from editor.params import EditParams
from storage import history
from storage.database import Database
from storage.errors import NothingToRedo, NothingToUndo, VersionNotFound
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


# -- steps, one transaction each ------------------------------------------------------------


async def upload(db: Database, actor: Actor, label: str = "photo", **kwargs: object) -> int:
    async with db.write() as session:
        conversation = await history.get_or_create_conversation(session, actor)
        root = await history.add_root(session, conversation, sha(label), SIZE, **kwargs)  # type: ignore[arg-type]
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
        conversation = await history.get_or_create_conversation(session, actor)
        if parent_id is None:
            parent = await history.head(session, conversation)
            assert parent is not None
        else:
            parent = await history.get_version(session, conversation, parent_id)
        version = await history.add_edit(
            session, conversation, parent, instruction, EditParams(seed=seed), request_key
        )
        return version.id


async def run(db: Database, version_id: int) -> None:
    async with db.write() as session:
        assert await history.mark_running(session, [version_id]) == [version_id]


async def finish(db: Database, version_id: int) -> None:
    """The scheduler's two steps: claim the job, then record its result."""
    await run(db, version_id)
    async with db.write() as session:
        done = await history.mark_done(session, version_id, sha(f"result-{version_id}"), SIZE)
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
        conversation = await history.find_conversation(session, actor)
        assert conversation is not None
        current = await history.head(session, conversation)
        assert current is not None and current.parent_id is not None and current.instruction
        parent_id, instruction = current.parent_id, current.instruction
        assert current.edit_params().seed != seed
    return await edit(db, actor, parent_id, instruction, seed)


async def undo(db: Database, actor: Actor) -> int:
    async with db.write() as session:
        conversation = await history.get_or_create_conversation(session, actor)
        return (await history.undo(session, conversation)).id


async def redo(db: Database, actor: Actor) -> int:
    async with db.write() as session:
        conversation = await history.get_or_create_conversation(session, actor)
        return (await history.redo(session, conversation)).id


async def state(db: Database, actor: Actor) -> tuple[int | None, list[int]]:
    """(head id, ids on the path root -> head), read back from the database."""
    async with db.read() as session:
        conversation = await history.find_conversation(session, actor)
        if conversation is None or conversation.head_id is None:
            return None, []
        path = await history.path_to(session, conversation.head_id)
        return conversation.head_id, [v.id for v in path]


async def path_ids(db: Database, version_id: int) -> list[int]:
    async with db.read() as session:
        return [v.id for v in await history.path_to(session, version_id)]


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


# -- edit, undo, redo ------------------------------------------------------------------------


async def test_upload_is_a_done_root_and_the_head(database: Database) -> None:
    root = await upload(database, ALICE)

    assert await state(database, ALICE) == (root, [root])
    version = await load(database, root)
    assert version.is_root
    assert version.status is VersionStatus.DONE
    assert version.image_sha == sha("photo")
    assert (version.width, version.height) == SIZE
    assert version.delivered is True
    assert version.params is None and version.instruction is None
    assert await count_versions(database) == 1


async def test_edit_becomes_head_only_when_done(database: Database) -> None:
    root = await upload(database, ALICE)
    edit_id = await queue(database, ALICE, instruction="add a hat", seed=42)

    queued = await load(database, edit_id)
    assert queued.status is VersionStatus.QUEUED
    assert queued.parent_id == root
    assert queued.instruction == "add a hat"
    assert queued.edit_params() == EditParams(seed=42)
    assert queued.image_sha is None
    assert queued.attempts == 0
    assert await state(database, ALICE) == (root, [root])

    await run(database, edit_id)
    running = await load(database, edit_id)
    assert running.status is VersionStatus.RUNNING
    assert running.attempts == 1
    assert running.started_at is not None
    assert await state(database, ALICE) == (root, [root])

    async with database.write() as session:
        done = await history.mark_done(session, edit_id, sha("hat"), (640, 480))
    assert done is not None
    assert await state(database, ALICE) == (edit_id, [root, edit_id])
    stored = await load(database, edit_id)
    assert stored.status is VersionStatus.DONE
    assert stored.image_sha == sha("hat")
    assert (stored.width, stored.height) == (640, 480)
    assert stored.finished_at is not None
    assert (await load(database, root)).redo_child_id == edit_id


async def test_mark_done_ignores_versions_that_are_not_running(database: Database) -> None:
    root = await upload(database, ALICE)
    queued = await queue(database, ALICE)

    async with database.write() as session:
        assert await history.mark_done(session, queued, sha("x"), SIZE) is None
        assert await history.mark_done(session, 10_000_000, sha("x"), SIZE) is None

    assert (await load(database, queued)).status is VersionStatus.QUEUED
    assert await state(database, ALICE) == (root, [root])


async def test_undo_and_redo_walk_the_chain_without_deleting(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await edit(database, ALICE, instruction="a")
    b = await edit(database, ALICE, instruction="b")
    c = await edit(database, ALICE, instruction="c")
    assert await state(database, ALICE) == (c, [root, a, b, c])
    assert await count_versions(database) == 4

    assert await undo(database, ALICE) == b
    assert await state(database, ALICE) == (b, [root, a, b])
    assert await undo(database, ALICE) == a
    assert await state(database, ALICE) == (a, [root, a])
    assert await redo(database, ALICE) == b
    assert await state(database, ALICE) == (b, [root, a, b])
    assert await redo(database, ALICE) == c
    assert await state(database, ALICE) == (c, [root, a, b, c])
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)
    assert await state(database, ALICE) == (c, [root, a, b, c])

    for expected in (b, a, root):
        assert await undo(database, ALICE) == expected
    with pytest.raises(NothingToUndo):
        await undo(database, ALICE)
    assert await state(database, ALICE) == (root, [root])
    assert await count_versions(database) == 4
    for version_id, expected_path in ((c, [root, a, b, c]), (b, [root, a, b])):
        assert await path_ids(database, version_id) == expected_path
        assert (await load(database, version_id)).status is VersionStatus.DONE

    for expected in (a, b, c):
        assert await redo(database, ALICE) == expected
    assert await state(database, ALICE) == (c, [root, a, b, c])
    assert await count_versions(database) == 4


async def test_undo_and_redo_without_a_photo(database: Database) -> None:
    with pytest.raises(NothingToUndo):
        await undo(database, ALICE)
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)
    assert await state(database, ALICE) == (None, [])


async def test_redo_at_a_fresh_edit_has_nothing_to_redo(database: Database) -> None:
    root = await upload(database, ALICE)
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)
    a = await edit(database, ALICE)
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)
    assert await state(database, ALICE) == (a, [root, a])


async def test_pending_edit_is_not_a_redo_target(database: Database) -> None:
    root = await upload(database, ALICE)
    queued = await queue(database, ALICE)
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)
    await run(database, queued)
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)
    assert await state(database, ALICE) == (root, [root])


# -- regenerate, branch, reset ----------------------------------------------------------------


async def test_regenerate_keeps_the_old_sibling_reachable(database: Database) -> None:
    root = await upload(database, ALICE)
    first = await edit(database, ALICE, instruction="make it autumn", seed=1)
    second = await regenerate(database, ALICE, seed=2)

    assert await state(database, ALICE) == (second, [root, second])
    again = await load(database, second)
    assert again.parent_id == root
    assert again.instruction == "make it autumn"
    assert again.edit_params() == EditParams(seed=2)

    assert await path_ids(database, first) == [root, first]
    async with database.read() as session:
        conversation = await history.find_conversation(session, ALICE)
        assert conversation is not None
        old = await history.get_version(session, conversation, first)
        assert old.status is VersionStatus.DONE
        assert old.image_sha == sha(f"result-{first}")
    assert await count_versions(database) == 3

    assert await undo(database, ALICE) == root
    assert await redo(database, ALICE) == second  # the most recent result, not the first

    third = await regenerate(database, ALICE, seed=3)
    assert await state(database, ALICE) == (third, [root, third])
    assert [await path_ids(database, v) for v in (first, second)] == [
        [root, first],
        [root, second],
    ]
    assert await count_versions(database) == 4


async def test_branch_from_an_older_version(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await edit(database, ALICE, instruction="a")
    b = await edit(database, ALICE, instruction="b")

    c = await edit(database, ALICE, parent_id=a, instruction="c")  # reply to an older result
    assert await state(database, ALICE) == (c, [root, a, c])
    assert await path_ids(database, b) == [root, a, b]

    assert await undo(database, ALICE) == a
    assert await redo(database, ALICE) == c  # most recently visited child, not b

    d = await edit(database, ALICE, parent_id=root, instruction="d")
    assert await state(database, ALICE) == (d, [root, d])
    assert await undo(database, ALICE) == root
    assert await redo(database, ALICE) == d
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)
    assert await count_versions(database) == 5


async def test_undo_then_redo_returns_to_where_undo_started(database: Database) -> None:
    """Redo goes back down the way undo came up, even through a branch made from an old result.

    root -> first, then regenerate (root -> second), then a reply to `first` (first -> child):
    the head's path is root, first, child; undoing twice and redoing twice must retrace it.
    """
    root = await upload(database, ALICE)
    first = await edit(database, ALICE, instruction="autumn", seed=1)
    second = await regenerate(database, ALICE, seed=2)
    child = await edit(database, ALICE, parent_id=first, instruction="add leaves")
    assert await state(database, ALICE) == (child, [root, first, child])

    assert await undo(database, ALICE) == first
    assert await undo(database, ALICE) == root
    assert await redo(database, ALICE) == first
    assert await redo(database, ALICE) == child
    assert await state(database, ALICE) == (child, [root, first, child])
    assert await path_ids(database, second) == [root, second]


async def test_reset_starts_a_new_root_with_the_same_photo(database: Database) -> None:
    root = await upload(database, ALICE, label="beach")
    a = await edit(database, ALICE)
    b = await edit(database, ALICE)

    async with database.write() as session:
        conversation = await history.get_or_create_conversation(session, ALICE)
        old_root = await history.get_version(session, conversation, root)
        assert old_root.image_sha is not None
        reset = await history.add_root(
            session, conversation, old_root.image_sha, (old_root.width or 0, old_root.height or 0)
        )
        new_root = reset.id

    assert new_root not in (root, a, b)
    assert await state(database, ALICE) == (new_root, [new_root])
    fresh = await load(database, new_root)
    assert fresh.is_root
    assert fresh.image_sha == sha("beach")
    with pytest.raises(NothingToUndo):
        await undo(database, ALICE)
    with pytest.raises(NothingToRedo):
        await redo(database, ALICE)

    assert await count_versions(database) == 4
    assert await path_ids(database, b) == [root, a, b]
    c = await edit(database, ALICE, parent_id=b)  # the old tree can still be branched from
    assert await state(database, ALICE) == (c, [root, a, b, c])


async def test_new_photo_and_edits_on_it(database: Database) -> None:
    first_root = await upload(database, ALICE, label="cat")
    a = await edit(database, ALICE)
    second_root = await upload(database, ALICE, label="dog")
    b = await edit(database, ALICE)
    assert await state(database, ALICE) == (b, [second_root, b])
    assert await undo(database, ALICE) == second_root
    with pytest.raises(NothingToUndo):
        await undo(database, ALICE)
    assert await path_ids(database, a) == [first_root, a]
    assert await count_conversations(database) == 1


# -- isolation --------------------------------------------------------------------------------


async def test_versions_are_private_to_their_actor_in_a_group_chat(database: Database) -> None:
    alice_root = await upload(database, ALICE)
    alice_edit = await edit(database, ALICE)

    async with database.write() as session:
        bob = await history.get_or_create_conversation(session, BOB)
        for version_id in (alice_root, alice_edit):
            with pytest.raises(VersionNotFound) as raised:
                await history.get_version(session, bob, version_id)
            assert raised.value.args_for_message == {"version_id": version_id}
        with pytest.raises(NothingToUndo):
            await history.undo(session, bob)
        with pytest.raises(NothingToRedo):
            await history.redo(session, bob)

    bob_root = await upload(database, BOB)
    assert await undo(database, ALICE) == alice_root
    assert await state(database, BOB) == (bob_root, [bob_root])
    with pytest.raises(NothingToUndo):
        await undo(database, BOB)
    assert await redo(database, ALICE) == alice_edit

    async with database.read() as session:
        alice = await history.find_conversation(session, ALICE)
        bob = await history.find_conversation(session, BOB)
        assert alice is not None and bob is not None and alice.id != bob.id
        with pytest.raises(VersionNotFound):
            await history.get_version(session, alice, bob_root)
        with pytest.raises(VersionNotFound):
            await history.get_version(session, bob, 10_000_000)
        assert (await history.get_version(session, bob, bob_root)).id == bob_root

    # Alice's private chat is a conversation of its own, too.
    async with database.write() as session:
        private = await history.get_or_create_conversation(session, ALICE_PRIVATE)
        with pytest.raises(VersionNotFound):
            await history.get_version(session, private, alice_edit)
    with pytest.raises(VersionNotFound):  # branching needs the version to be one's own
        await queue(database, BOB, parent_id=alice_edit)
    assert await state(database, ALICE) == (alice_edit, [alice_root, alice_edit])


async def test_get_or_create_conversation_is_one_per_actor(database: Database) -> None:
    async with database.write() as session:
        first = await history.get_or_create_conversation(session, ALICE)
        again = await history.get_or_create_conversation(session, ALICE)
        other = await history.get_or_create_conversation(session, BOB)
        assert first.id == again.id
        assert first.id != other.id
        assert first.head_id is None
        assert (first.platform, first.chat_id, first.user_id) == (TG, "group-1", "alice")
    async with database.write() as session:
        later = await history.get_or_create_conversation(session, ALICE)
        assert later.id == first.id
    assert await count_conversations(database) == 2


# -- forget -----------------------------------------------------------------------------------


async def test_forget_deletes_only_that_user_and_returns_unshared_digests(
    database: Database,
) -> None:
    # Alice: a group chat (her photo is also Bob's photo) and a private chat.
    alice_root = await upload(database, ALICE, label="shared-photo")
    alice_edit = await edit(database, ALICE)
    alice_pending = await queue(database, ALICE)
    alice_dm_root = await upload(database, ALICE_PRIVATE, label="alice-only")
    alice_dm_edit = await edit(database, ALICE_PRIVATE)
    # Bob in the same group, with the same photo; Alice on another platform.
    bob_root = await upload(database, BOB, label="shared-photo")
    bob_edit = await edit(database, BOB)
    discord_root = await upload(database, ALICE_DISCORD, label="discord-photo")
    # A second photo in her private chat: the one she also sent on Discord.
    alice_dm_second_root = await upload(database, ALICE_PRIVATE, label="discord-photo")
    assert await count_versions(database) == 9

    async with database.write() as session:
        orphaned = await history.forget(session, TG, "alice")

    assert orphaned == {
        sha(f"result-{alice_edit}"),
        sha("alice-only"),
        sha(f"result-{alice_dm_edit}"),
    }
    assert sha("shared-photo") not in orphaned  # Bob's root still uses it
    assert sha("discord-photo") not in orphaned  # Alice on Discord still uses it
    async with database.read() as session:
        assert await history.find_conversation(session, ALICE) is None
        assert await history.find_conversation(session, ALICE_PRIVATE) is None
        remaining = set((await session.scalars(select(Version.id))).all())
    assert remaining == {bob_root, bob_edit, discord_root}
    assert alice_dm_second_root not in remaining
    assert await state(database, BOB) == (bob_edit, [bob_root, bob_edit])
    assert await state(database, ALICE_DISCORD) == (discord_root, [discord_root])
    assert await count_conversations(database) == 2

    # The scheduler may still hold her queued edit: it must drop out quietly.
    async with database.write() as session:
        assert await history.mark_running(session, [alice_pending]) == []
        assert await history.mark_done(session, alice_pending, sha("late"), SIZE) is None
        assert await history.mark_failed(session, alice_pending, "error.edit_failed") == []

    async with database.write() as session:
        assert await history.forget(session, TG, "alice") == set()
    assert await count_versions(database) == 3

    # A forgotten user starts from scratch.
    fresh_root = await upload(database, ALICE)
    assert fresh_root not in (alice_root, alice_dm_root)
    assert await state(database, ALICE) == (fresh_root, [fresh_root])


async def test_forget_returns_digest_shared_between_own_chats_once(database: Database) -> None:
    await upload(database, ALICE, label="same")
    await upload(database, ALICE_PRIVATE, label="same")
    await upload(database, BOB, label="bob")
    async with database.write() as session:
        assert await history.forget(session, TG, "alice") == {sha("same")}
    async with database.write() as session:
        assert await history.forget(session, TG, "nobody") == set()
    assert await count_versions(database) == 1


# -- failures, cancellation, crashes ---------------------------------------------------------


async def test_mark_failed_cascades_to_queued_descendants_only(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root, instruction="a")
    b = await queue(database, ALICE, parent_id=a, instruction="b")
    c = await queue(database, ALICE, parent_id=b, instruction="c")
    sibling = await queue(database, ALICE, parent_id=root, instruction="sibling")
    await run(database, a)

    async with database.write() as session:
        failed = await history.mark_failed(session, a, "error.edit_failed", "CUDA out of memory")
        assert [v.id for v in failed] == [a, b, c]

    first = await load(database, a)
    assert first.status is VersionStatus.FAILED
    assert first.error_key == "error.edit_failed"
    assert first.error_detail == "CUDA out of memory"
    assert first.finished_at is not None
    for version_id in (b, c):
        child = await load(database, version_id)
        assert child.status is VersionStatus.FAILED
        assert child.error_key == "error.parent_failed"
        assert child.error_detail is None
    assert (await load(database, sibling)).status is VersionStatus.QUEUED
    assert await state(database, ALICE) == (root, [root])
    assert await count_versions(database) == 5

    async with database.write() as session:  # failing twice, or failing a done one, is a no-op
        assert await history.mark_failed(session, a, "error.other") == []
        assert await history.mark_failed(session, root, "error.other") == []
        assert await history.mark_failed(session, 10_000_000, "error.other") == []
    assert (await load(database, a)).error_key == "error.edit_failed"
    assert (await load(database, root)).status is VersionStatus.DONE


async def test_mark_failed_leaves_running_and_done_descendants(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root)
    b = await queue(database, ALICE, parent_id=a)
    await run(database, b)  # claimed out of order: running, so not the cascade's to fail
    async with database.write() as session:
        failed = await history.mark_failed(session, a, "error.edit_failed")
    assert [v.id for v in failed] == [a]
    assert (await load(database, b)).status is VersionStatus.RUNNING


async def test_cancel_latest_cancels_the_newest_queued_edit(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await queue(database, ALICE, parent_id=root, instruction="a")
    b = await queue(database, ALICE, parent_id=a, instruction="b")
    c = await queue(database, ALICE, parent_id=root, instruction="c")
    bob_root = await upload(database, BOB)
    bob_queued = await queue(database, BOB, parent_id=bob_root)  # newer, but Bob's
    await run(database, a)

    async with database.write() as session:
        conversation = await history.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await history.cancel_latest(session, conversation)] == [c]
    cancelled = await load(database, c)
    assert cancelled.status is VersionStatus.CANCELLED
    assert cancelled.delivered is True
    assert cancelled.finished_at is not None
    assert (await load(database, b)).status is VersionStatus.QUEUED

    async with database.write() as session:
        conversation = await history.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await history.cancel_latest(session, conversation)] == [b]
        # `a` is running: there is nothing queued left to cancel.
        assert await history.cancel_latest(session, conversation) == []

    assert (await load(database, a)).status is VersionStatus.RUNNING
    assert (await load(database, bob_queued)).status is VersionStatus.QUEUED
    async with database.write() as session:  # a cancelled edit cannot be claimed any more
        assert await history.mark_running(session, [b, c]) == []
    assert await state(database, ALICE) == (root, [root])
    assert await count_versions(database) == 6


async def test_requeue_interrupted_moves_running_back_to_queued(database: Database) -> None:
    await upload(database, ALICE)
    running = await queue(database, ALICE)
    queued = await queue(database, ALICE)
    done = await edit(database, ALICE)
    await upload(database, BOB)
    bob_running = await queue(database, BOB)
    await run(database, running)
    await run(database, bob_running)

    async with database.write() as session:
        assert await history.requeue_interrupted(session) == 2

    for version_id in (running, bob_running):
        version = await load(database, version_id)
        assert version.status is VersionStatus.QUEUED
        assert version.started_at is None
        assert version.attempts == 1  # the attempt still counts
    assert (await load(database, queued)).status is VersionStatus.QUEUED
    assert (await load(database, done)).status is VersionStatus.DONE

    async with database.read() as session:
        jobs = await history.queued_jobs(session)
    assert [(v.id, c.user_id) for v, c in jobs] == [
        (running, "alice"),
        (queued, "alice"),
        (bob_running, "bob"),
    ]

    await run(database, running)
    assert (await load(database, running)).attempts == 2
    async with database.write() as session:
        assert await history.requeue_interrupted(session) == 1
        assert await history.requeue_interrupted(session) == 0


# -- request keys, delivery, pending ---------------------------------------------------------


async def test_request_key_is_unique_per_conversation(database: Database) -> None:
    root = await upload(database, ALICE, request_key="photo-1")
    first = await queue(database, ALICE, request_key="update-7")
    bob_root = await upload(database, BOB)
    bobs = await queue(database, BOB, parent_id=bob_root, request_key="update-7")
    await queue(database, ALICE)  # no key: any number of these
    await queue(database, ALICE)

    async with database.read() as session:
        alice = await history.find_conversation(session, ALICE)
        bob = await history.find_conversation(session, BOB)
        assert alice is not None and bob is not None
        found = await history.find_by_request_key(session, alice, "update-7")
        assert found is not None and found.id == first
        found_root = await history.find_by_request_key(session, alice, "photo-1")
        assert found_root is not None and found_root.id == root
        found_bob = await history.find_by_request_key(session, bob, "update-7")
        assert found_bob is not None and found_bob.id == bobs
        assert await history.find_by_request_key(session, alice, "update-8") is None
        assert await history.find_by_request_key(session, bob, "photo-1") is None

    before = await count_versions(database)
    with pytest.raises(IntegrityError):
        await queue(database, ALICE, request_key="update-7")
    with pytest.raises(IntegrityError):
        await upload(database, ALICE, label="again", request_key="photo-1")
    assert await count_versions(database) == before
    assert await state(database, ALICE) == (root, [root])


async def test_undelivered_lists_finished_and_failed_until_delivered(database: Database) -> None:
    await upload(database, ALICE)
    done = await edit(database, ALICE)
    failed = await queue(database, ALICE)
    await run(database, failed)
    async with database.write() as session:
        await history.mark_failed(session, failed, "error.edit_failed")
    await queue(database, ALICE)  # queued: nothing to deliver yet
    running = await queue(database, ALICE)
    await run(database, running)
    cancelled = await queue(database, ALICE)
    async with database.write() as session:
        conversation = await history.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await history.cancel_latest(session, conversation)] == [cancelled]
    await upload(database, ALICE_DISCORD)
    discord_done = await edit(database, ALICE_DISCORD)

    async with database.read() as session:
        rows = await history.undelivered(session, TG)
        assert [(v.id, c.user_id) for v, c in rows] == [(done, "alice"), (failed, "alice")]
        assert [v.id for v, _ in await history.undelivered(session, "discord")] == [discord_done]

    async with database.write() as session:
        await history.mark_delivered(session, done)
    async with database.read() as session:
        assert [v.id for v, _ in await history.undelivered(session, TG)] == [failed]
    async with database.write() as session:
        await history.mark_delivered(session, failed)
    async with database.read() as session:
        assert await history.undelivered(session, TG) == []
    assert (await load(database, done)).delivered is True


async def test_latest_pending_is_the_newest_queued_or_running(database: Database) -> None:
    root = await upload(database, ALICE)

    async def latest() -> int | None:
        async with database.read() as session:
            conversation = await history.find_conversation(session, ALICE)
            assert conversation is not None
            version = await history.latest_pending(session, conversation)
            return None if version is None else version.id

    async def pending() -> list[int]:
        async with database.read() as session:
            conversation = await history.find_conversation(session, ALICE)
            assert conversation is not None
            return [v.id for v in await history.pending(session, conversation)]

    assert await latest() is None
    a = await queue(database, ALICE, parent_id=root)
    b = await queue(database, ALICE, parent_id=a)  # chained instruction builds on a
    await upload(database, BOB)
    await queue(database, BOB)  # newer, but someone else's
    assert await latest() == b
    assert await pending() == [a, b]

    await run(database, b)
    assert await latest() == b
    async with database.write() as session:
        assert await history.mark_done(session, b, sha("b"), SIZE) is not None
    assert await latest() == a
    assert await pending() == [a]
    async with database.write() as session:
        conversation = await history.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await history.cancel_latest(session, conversation)] == [a]
    assert await latest() is None
    assert await pending() == []


async def test_count_pending_for_user_spans_chats_not_users_or_platforms(
    database: Database,
) -> None:
    await upload(database, ALICE)
    await queue(database, ALICE)
    await queue(database, ALICE)
    await run(database, await queue(database, ALICE))
    await edit(database, ALICE)  # done: not pending
    await upload(database, ALICE_PRIVATE)
    await queue(database, ALICE_PRIVATE)
    failed = await queue(database, ALICE_PRIVATE)
    async with database.write() as session:
        await history.mark_failed(session, failed, "error.edit_failed")
    await upload(database, BOB)
    await queue(database, BOB)
    await upload(database, ALICE_DISCORD)
    await queue(database, ALICE_DISCORD)

    async with database.read() as session:
        assert await history.count_pending_for_user(session, TG, "alice") == 4
        assert await history.count_pending_for_user(session, TG, "bob") == 1
        assert await history.count_pending_for_user(session, "discord", "alice") == 1
        assert await history.count_pending_for_user(session, TG, "carol") == 0
        assert await history.count_queued(session) == 6


# -- restart ----------------------------------------------------------------------------------


async def test_history_survives_a_restart(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await edit(database, ALICE, instruction="a")
    b = await edit(database, ALICE, instruction="b")
    assert await undo(database, ALICE) == a
    queued = await queue(database, ALICE, instruction="c")
    async with database.write() as session:
        conversation = await history.get_or_create_conversation(session, ALICE)
        await history.update_settings(session, conversation, {"num_inference_steps": 30})
    await database.close()

    async with Database(database.url) as reopened:
        assert await state(reopened, ALICE) == (a, [root, a])
        async with reopened.read() as session:
            conversation = await history.find_conversation(session, ALICE)
            assert conversation is not None
            assert conversation.settings == {"num_inference_steps": 30}
            assert [v.id for v, _ in await history.queued_jobs(session)] == [queued]
            stored = await history.get_version(session, conversation, queued)
            assert stored.edit_params() == EditParams()
            assert stored.instruction == "c"
        assert await redo(reopened, ALICE) == b
        assert await count_versions(reopened) == 4
