"""The version tree on SQLite and PostgreSQL: edit, undo, redo, regenerate, branch, reset, forget.

Each step runs in its own transaction, as the conversation service and the scheduler run them,
so every test also checks that the state is in the database rather than in a session.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from editor.params import EditParams
from storage import lifecycle, tree
from storage.database import Database
from storage.errors import NothingToRedo, NothingToUndo, VersionNotFound
from storage.models import Version, VersionStatus
from tests.storage.steps import (
    ALICE,
    ALICE_DISCORD,
    ALICE_PRIVATE,
    BOB,
    SIZE,
    TG,
    count_conversations,
    count_versions,
    edit,
    load,
    path_ids,
    queue,
    redo,
    regenerate,
    run,
    sha,
    state,
    undo,
    upload,
)

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
        conversation = await tree.find_conversation(session, ALICE)
        assert conversation is not None
        old = await tree.get_version(session, conversation, first)
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
        conversation = await tree.get_or_create_conversation(session, ALICE)
        old_root = await tree.get_version(session, conversation, root)
        assert old_root.image_sha is not None
        reset = await tree.add_root(
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
        bob = await tree.get_or_create_conversation(session, BOB)
        for version_id in (alice_root, alice_edit):
            with pytest.raises(VersionNotFound) as raised:
                await tree.get_version(session, bob, version_id)
            assert raised.value.args_for_message == {"version_id": version_id}
        with pytest.raises(NothingToUndo):
            await tree.undo(session, bob)
        with pytest.raises(NothingToRedo):
            await tree.redo(session, bob)

    bob_root = await upload(database, BOB)
    assert await undo(database, ALICE) == alice_root
    assert await state(database, BOB) == (bob_root, [bob_root])
    with pytest.raises(NothingToUndo):
        await undo(database, BOB)
    assert await redo(database, ALICE) == alice_edit

    async with database.read() as session:
        alice = await tree.find_conversation(session, ALICE)
        bob = await tree.find_conversation(session, BOB)
        assert alice is not None and bob is not None and alice.id != bob.id
        with pytest.raises(VersionNotFound):
            await tree.get_version(session, alice, bob_root)
        with pytest.raises(VersionNotFound):
            await tree.get_version(session, bob, 10_000_000)
        assert (await tree.get_version(session, bob, bob_root)).id == bob_root

    # Alice's private chat is a conversation of its own, too.
    async with database.write() as session:
        private = await tree.get_or_create_conversation(session, ALICE_PRIVATE)
        with pytest.raises(VersionNotFound):
            await tree.get_version(session, private, alice_edit)
    with pytest.raises(VersionNotFound):  # branching needs the version to be one's own
        await queue(database, BOB, parent_id=alice_edit)
    assert await state(database, ALICE) == (alice_edit, [alice_root, alice_edit])


async def test_get_or_create_conversation_is_one_per_actor(database: Database) -> None:
    async with database.write() as session:
        first = await tree.get_or_create_conversation(session, ALICE)
        again = await tree.get_or_create_conversation(session, ALICE)
        other = await tree.get_or_create_conversation(session, BOB)
        assert first.id == again.id
        assert first.id != other.id
        assert first.head_id is None
        assert (first.platform, first.chat_id, first.user_id) == (TG, "group-1", "alice")
    async with database.write() as session:
        later = await tree.get_or_create_conversation(session, ALICE)
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
        orphaned = await tree.forget(session, TG, "alice")

    assert orphaned == {
        sha(f"result-{alice_edit}"),
        sha("alice-only"),
        sha(f"result-{alice_dm_edit}"),
    }
    assert sha("shared-photo") not in orphaned  # Bob's root still uses it
    assert sha("discord-photo") not in orphaned  # Alice on Discord still uses it
    async with database.read() as session:
        assert await tree.find_conversation(session, ALICE) is None
        assert await tree.find_conversation(session, ALICE_PRIVATE) is None
        remaining = set((await session.scalars(select(Version.id))).all())
    assert remaining == {bob_root, bob_edit, discord_root}
    assert alice_dm_second_root not in remaining
    assert await state(database, BOB) == (bob_edit, [bob_root, bob_edit])
    assert await state(database, ALICE_DISCORD) == (discord_root, [discord_root])
    assert await count_conversations(database) == 2

    # The scheduler may still hold her queued edit: it must drop out quietly.
    async with database.write() as session:
        assert await lifecycle.claim_many(session, [alice_pending]) == []
        assert await lifecycle.mark_done(session, alice_pending, sha("late"), SIZE) is None
        assert await lifecycle.fail(session, alice_pending, "error.edit_failed") == []

    async with database.write() as session:
        assert await tree.forget(session, TG, "alice") == set()
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
        assert await tree.forget(session, TG, "alice") == {sha("same")}
    async with database.write() as session:
        assert await tree.forget(session, TG, "nobody") == set()
    assert await count_versions(database) == 1


async def test_forget_returns_raw_model_outputs_too_and_raw_digests_count_as_in_use(
    database: Database,
) -> None:
    await upload(database, ALICE, label="alice-photo")
    alice_edit = await queue(database, ALICE)
    await upload(database, BOB, label="bob-photo")
    bob_edit = await queue(database, BOB)
    for version_id, label in ((alice_edit, "alice"), (bob_edit, "bob")):
        await run(database, version_id)
        async with database.write() as session:
            result = lifecycle.Result(
                version_id, sha(f"developed-{label}"), (640, 480), sha(f"raw-{label}")
            )
            assert await lifecycle.mark_done_many(session, [result]) == {version_id}
    assert (await load(database, alice_edit)).raw_image_sha == sha("raw-alice")
    async with database.read() as session:
        in_use = await tree.images_in_use(session, [sha("raw-bob"), sha("raw-nobody")])
    assert in_use == {sha("raw-bob")}

    async with database.write() as session:
        orphaned = await tree.forget(session, TG, "alice")

    assert orphaned == {sha("alice-photo"), sha("developed-alice"), sha("raw-alice")}
    assert (await load(database, bob_edit)).raw_image_sha == sha("raw-bob")


# -- request keys, pending ----------------------------------------------------------------------


async def test_request_key_is_unique_per_conversation(database: Database) -> None:
    root = await upload(database, ALICE, request_key="photo-1")
    first = await queue(database, ALICE, request_key="update-7")
    bob_root = await upload(database, BOB)
    bobs = await queue(database, BOB, parent_id=bob_root, request_key="update-7")
    await queue(database, ALICE)  # no key: any number of these
    await queue(database, ALICE)

    async with database.read() as session:
        alice = await tree.find_conversation(session, ALICE)
        bob = await tree.find_conversation(session, BOB)
        assert alice is not None and bob is not None
        found = await tree.find_by_request_key(session, alice, "update-7")
        assert found is not None and found.id == first
        found_root = await tree.find_by_request_key(session, alice, "photo-1")
        assert found_root is not None and found_root.id == root
        found_bob = await tree.find_by_request_key(session, bob, "update-7")
        assert found_bob is not None and found_bob.id == bobs
        assert await tree.find_by_request_key(session, alice, "update-8") is None
        assert await tree.find_by_request_key(session, bob, "photo-1") is None

    before = await count_versions(database)
    with pytest.raises(IntegrityError):
        await queue(database, ALICE, request_key="update-7")
    with pytest.raises(IntegrityError):
        await upload(database, ALICE, label="again", request_key="photo-1")
    assert await count_versions(database) == before
    assert await state(database, ALICE) == (root, [root])


async def test_latest_pending_is_the_newest_queued_or_running(database: Database) -> None:
    root = await upload(database, ALICE)

    async def latest() -> int | None:
        async with database.read() as session:
            conversation = await tree.find_conversation(session, ALICE)
            assert conversation is not None
            version = await tree.latest_pending(session, conversation)
            return None if version is None else version.id

    async def pending() -> list[int]:
        async with database.read() as session:
            conversation = await tree.find_conversation(session, ALICE)
            assert conversation is not None
            return [v.id for v in await tree.pending(session, conversation)]

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
        assert await lifecycle.mark_done(session, b, sha("b"), SIZE) is not None
    assert await latest() == a
    assert await pending() == [a]
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        assert [v.id for v in await lifecycle.cancel_latest(session, conversation)] == [a]
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
        await lifecycle.fail(session, failed, "error.edit_failed")
    await upload(database, BOB)
    await queue(database, BOB)
    await upload(database, ALICE_DISCORD)
    await queue(database, ALICE_DISCORD)

    async with database.read() as session:
        assert await tree.count_pending_for_user(session, TG, "alice") == 4
        assert await tree.count_pending_for_user(session, TG, "bob") == 1
        assert await tree.count_pending_for_user(session, "discord", "alice") == 1
        assert await tree.count_pending_for_user(session, TG, "carol") == 0
        assert await tree.count_queued(session) == 6


# -- restart ----------------------------------------------------------------------------------


async def test_history_survives_a_restart(database: Database) -> None:
    root = await upload(database, ALICE)
    a = await edit(database, ALICE, instruction="a")
    b = await edit(database, ALICE, instruction="b")
    assert await undo(database, ALICE) == a
    queued = await queue(database, ALICE, instruction="c")
    async with database.write() as session:
        conversation = await tree.get_or_create_conversation(session, ALICE)
        await tree.update_settings(session, conversation, {"num_inference_steps": 30})
    await database.close()

    async with Database(database.url) as reopened:
        assert await state(reopened, ALICE) == (a, [root, a])
        async with reopened.read() as session:
            conversation = await tree.find_conversation(session, ALICE)
            assert conversation is not None
            assert conversation.settings == {"num_inference_steps": 30}
            assert [v.id for v, _ in await lifecycle.queued_jobs(session)] == [queued]
            stored = await tree.get_version(session, conversation, queued)
            assert stored.edit_params() == EditParams()
            assert stored.instruction == "c"
        assert await redo(reopened, ALICE) == b
        assert await count_versions(reopened) == 4
