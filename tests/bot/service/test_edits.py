"""Photos and instructions: new trees, queued edits, chains, branches, regenerate, group chats
and updates delivered twice."""

from __future__ import annotations

import asyncio

import pytest

from bot.service.replies import Action, HistoryEntry
from editor.images import fit_to_resolution
from storage.errors import VersionNotFound
from tests.bot.service.harness import (
    ALICE,
    ALICE_DM,
    BOB,
    Harness,
    open_image,
    photo,
)


async def test_photo_without_caption_becomes_the_head(h: Harness) -> None:
    reply = await h.service.receive_image(ALICE, photo())

    assert reply.key == "photo.received"
    assert not reply.is_error
    (entry,) = await h.history(ALICE)
    assert entry == HistoryEntry(reply.version_id or 0, None, None, "done", True)


async def test_photo_with_caption_queues_the_first_edit(h: Harness) -> None:
    reply = await h.service.receive_image(ALICE, photo(), caption="make it night")

    assert reply.key == "edit.queued_next"
    assert reply.args["instruction"] == "make it night"
    assert reply.actions == (Action.CANCEL,)
    assert "make it night" in reply.text()
    assert reply.version_id is not None
    done = await h.recorder.done(reply.version_id)
    root, edit = await h.history(ALICE)
    assert (root.instruction, edit.instruction) == (None, "make it night")
    assert edit.is_head and not root.is_head
    assert edit.params is not None
    assert done.args["seed"] == edit.params["seed"]
    assert done.show_image
    assert str(edit.params["seed"]) in done.text()
    assert (await h.version(edit.version_id)).parent_id == root.version_id


async def test_chained_instructions_build_on_the_pending_edit(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    h.editor.gate.clear()
    first = await h.queue(ALICE, "make it night")
    second = await h.queue(ALICE, "  add   snow \n")

    assert (await h.version(second)).parent_id == first
    assert (await h.version(second)).instruction == "add snow"
    pending = await h.history(ALICE)
    assert [e.version_id for e in pending] == [root, first, second]
    assert pending[0].is_head
    assert {e.status for e in pending[1:]} <= {"queued", "running"}

    h.editor.gate.set()
    await h.recorder.done(first)
    await h.recorder.done(second)
    entries = await h.history(ALICE)
    assert [e.version_id for e in entries] == [root, first, second]
    assert [e.instruction for e in entries] == [None, "make it night", "add snow"]
    assert [e.is_head for e in entries] == [False, False, True]
    # The second edit ran on the first one's result (fitted to the working size, as every
    # parent is), not on the photo.
    (_first_call,), (second_call,) = h.editor.calls
    first_png = await h.service.image(ALICE, first, full=True)
    first_fitted = fit_to_resolution(
        open_image(first_png).convert("RGB"), second_call.params.resolution
    )
    assert second_call.image.tobytes() == first_fitted.tobytes()


async def test_regenerate_makes_a_sibling_with_a_new_seed(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")

    reply = await h.service.regenerate(ALICE)
    assert reply.key in ("edit.queued", "edit.queued_next")
    assert reply.version_id is not None
    again = reply.version_id
    await h.recorder.done(again)

    old, new = await h.version(first), await h.version(again)
    assert new.parent_id == root
    assert new.instruction == "make it night"
    assert old.params is not None and new.params is not None
    assert new.params["seed"] != old.params["seed"]
    assert {**new.params, "seed": 0} == {**old.params, "seed": 0}
    assert await h.path(ALICE) == [root, again]
    # The old result stays reachable, and differs (the NullEditor tints by seed).
    old_png = await h.service.image(ALICE, first, full=True)
    assert old_png != await h.service.image(ALICE, again, full=True)

    explicit = await h.service.regenerate(ALICE, first)
    assert explicit.version_id is not None
    await h.recorder.done(explicit.version_id)
    assert (await h.version(explicit.version_id)).parent_id == root


async def test_instruct_on_an_older_version_branches(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")
    second = await h.edit(ALICE, "add snow")

    branch = await h.edit(ALICE, "add a hat", base_version_id=first)

    assert (await h.version(branch)).parent_id == first
    assert await h.path(ALICE) == [root, first, branch]
    assert await h.service.image(ALICE, second)  # the other branch is kept


async def test_users_in_one_group_chat_have_separate_conversations(h: Harness) -> None:
    alice_root = (await h.upload(ALICE, photo(shade=10))).version_id
    bob_root = (await h.upload(BOB, photo(shade=20))).version_id
    alice_edit = await h.edit(ALICE, "make it night")
    bob_edit = await h.edit(BOB, "add snow")

    assert await h.path(ALICE) == [alice_root, alice_edit]
    assert await h.path(BOB) == [bob_root, bob_edit]
    assert (await h.service.history(ALICE_DM)).key == "history.empty"

    assert (await h.service.undo(BOB)).version_id == bob_root
    assert await h.path(ALICE) == [alice_root, alice_edit]

    with pytest.raises(VersionNotFound):
        await h.service.image(BOB, alice_edit)
    refused = await h.service.regenerate(BOB, alice_edit)
    assert refused.key == "error.version_not_found"
    refused = await h.service.instruct(BOB, "add a hat", base_version_id=alice_edit)
    assert refused.key == "error.version_not_found"
    assert await h.path(ALICE) == [alice_root, alice_edit]
    # Bob's next edit builds on his own head, not on Alice's.
    bob_next = await h.edit(BOB, "add a hat")
    assert (await h.version(bob_next)).parent_id == bob_root
    assert [actor for actor, r in h.recorder.results(bob_next)] == [BOB]


async def test_the_same_update_delivered_twice_makes_one_version(h: Harness) -> None:
    first = await h.service.receive_image(ALICE, photo(), request_key="update-1")
    again = await h.service.receive_image(ALICE, photo(), request_key="update-1")
    assert first.key == "photo.received"
    assert (again.key, again.version_id, again.is_error) == (
        "edit.duplicate",
        first.version_id,
        False,
    )

    edit = await h.service.instruct(ALICE, "make it night", request_key="update-2")
    edit_again = await h.service.instruct(ALICE, "make it night", request_key="update-2")
    assert edit_again.key == "edit.duplicate"
    assert edit_again.version_id == edit.version_id
    assert edit.version_id is not None
    await h.recorder.done(edit.version_id)
    assert await h.count_versions() == 2

    # Keys are per conversation: another user's update with the same key is new.
    assert (await h.service.receive_image(BOB, photo(), request_key="update-1")).key == (
        "photo.received"
    )


async def test_the_same_update_delivered_twice_at_once_makes_one_version(h: Harness) -> None:
    await h.upload(ALICE)
    replies = await asyncio.gather(
        h.service.receive_image(ALICE, photo(shade=5), request_key="u"),
        h.service.receive_image(ALICE, photo(shade=5), request_key="u"),
    )
    assert sorted(r.key for r in replies) == ["edit.duplicate", "photo.received"]
    assert replies[0].version_id == replies[1].version_id
    assert await h.count_versions() == 2
