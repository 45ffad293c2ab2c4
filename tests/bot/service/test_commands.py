"""The commands: undo, redo, reset, history, settings, cancel, status and forget, also across
a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.service.replies import Action
from editor.params import EditParams
from tests.bot.service.harness import (
    ALICE,
    ALICE_DM,
    BOB,
    Harness,
    assert_friendly,
    open_image,
    photo,
    running_service,
)


async def test_undo_and_redo_walk_the_chain_without_deleting(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")
    second = await h.edit(ALICE, "add snow")

    back = await h.service.undo(ALICE)
    assert (back.key, back.version_id, back.show_image) == ("undo.done", first, True)
    assert await h.path(ALICE) == [root, first]
    back = await h.service.undo(ALICE)
    assert (back.key, back.version_id) == ("undo.done", root)
    assert back.actions == (Action.REDO,)
    assert (await h.service.undo(ALICE)).key == "error.nothing_to_undo"

    forward = await h.service.redo(ALICE)
    assert (forward.key, forward.version_id) == ("redo.done", first)
    assert "make it night" in forward.text()
    forward = await h.service.redo(ALICE)
    assert (forward.key, forward.version_id) == ("redo.done", second)
    assert (await h.service.redo(ALICE)).key == "error.nothing_to_redo"
    assert await h.path(ALICE) == [root, first, second]


async def test_redo_follows_the_most_recently_visited_child(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    first = await h.edit(ALICE, "make it night")
    await h.edit(ALICE, "add snow")
    await h.service.undo(ALICE)

    other = await h.edit(ALICE, "add a moon")  # built on the head after undo: a branch
    assert (await h.version(other)).parent_id == first
    await h.service.undo(ALICE)

    assert (await h.service.redo(ALICE)).version_id == other
    assert await h.path(ALICE) == [root, first, other]


async def test_reset_starts_a_new_root_from_the_original_photo(h: Harness) -> None:
    root = (await h.upload(ALICE)).version_id
    assert root is not None
    first = await h.edit(ALICE, "make it night")

    reply = await h.service.reset(ALICE)

    assert reply.key == "reset.done"
    assert reply.version_id not in (None, root, first)
    assert reply.version_id is not None
    new_root = reply.version_id
    assert await h.path(ALICE) == [new_root]
    original = await h.service.image(ALICE, root, full=True)
    assert await h.service.image(ALICE, new_root, full=True) == original
    assert await h.service.image(ALICE, first)
    after = await h.edit(ALICE, "add snow")
    assert (await h.version(after)).parent_id == new_root


async def test_settings_change_the_next_edit_and_reset_restores_defaults(h: Harness) -> None:
    await h.upload(ALICE)
    shown = await h.service.settings(ALICE)
    assert shown.key == "settings.show"
    assert shown.settings is not None and shown.settings["num_inference_steps"] == 3
    assert "random" in shown.text()

    for name, value in [
        ("steps", 5),
        ("Text Guidance", "9"),
        ("image_guidance", 2),
        ("resolution", "384"),
        ("seed", 1234),
        ("seed_mode", "fixed"),
    ]:
        reply = await h.service.update_setting(ALICE, name, value)
        assert reply.key == "settings.updated", reply
        assert "{" not in reply.text()
    assert "fixed at 1234" in (await h.service.settings(ALICE)).text()

    first = await h.edit(ALICE, "make it night")
    second = await h.edit(ALICE, "add snow")
    expected = {
        "num_inference_steps": 5,
        "guidance_scale": 9.0,
        "image_guidance_scale": 2.0,
        "seed": 1234,
        "resolution": 384,
    }
    assert (await h.version(first)).params == expected
    assert (await h.version(second)).params == expected
    # The model worked at the chosen resolution (its raw output); the result keeps the
    # photo's own size (developed onto it).
    raw_sha = (await h.version(first)).raw_image_sha
    assert raw_sha is not None
    assert max(open_image(h.images.get(raw_sha)).size) == 384
    assert open_image(await h.service.image(ALICE, first, full=True)).size == (64, 48)

    reply = await h.service.reset_settings(ALICE)
    assert reply.key == "settings.reset"
    assert reply.settings == (await h.service.settings(BOB)).settings  # a stranger's defaults
    third = await h.edit(ALICE, "add a moon")
    params = (await h.version(third)).params
    assert params is not None
    assert (params["num_inference_steps"], params["resolution"]) == (3, 256)


async def test_settings_keep_only_choices_so_new_server_defaults_reach_users(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir) as h:
        await h.service.update_setting(ALICE, "steps", 5)
    new_defaults = EditParams(num_inference_steps=4, resolution=384, guidance_scale=6.0)
    async with running_service(sqlite_url, images_dir, defaults=new_defaults) as h:
        settings = (await h.service.settings(ALICE)).settings
    assert settings is not None
    assert settings["num_inference_steps"] == 5  # chosen
    assert (settings["resolution"], settings["guidance_scale"]) == (384, 6.0)  # new defaults


async def test_cancel_and_status(h: Harness) -> None:
    assert (await h.service.status(ALICE)).key == "status.idle"
    await h.upload(ALICE)
    h.editor.gate.clear()
    running = await h.queue(ALICE, "make it night")
    await h.wait_status(running, "running")
    queued = await h.queue(ALICE, "add snow")
    on_top = await h.queue(ALICE, "add a moon")
    assert (await h.service.instruct(ALICE, "one too many")).key == "error.too_many_pending"
    assert (await h.service.status(ALICE)).key in ("status.running", "status.pending")

    cancelled = await h.service.cancel(ALICE)
    assert (cancelled.key, cancelled.args["count"]) == ("cancel.done", 1)
    cancelled = await h.service.cancel(ALICE)
    assert (cancelled.key, cancelled.args["count"]) == ("cancel.done", 1)
    assert (await h.version(on_top)).status == "cancelled"
    assert (await h.version(queued)).status == "cancelled"
    refused = await h.service.cancel(ALICE)
    assert refused.key == "error.nothing_to_cancel_running"
    assert_friendly(refused)

    h.editor.gate.set()
    await h.recorder.done(running)
    assert (await h.service.status(ALICE)).key == "status.idle"
    assert (await h.service.cancel(ALICE)).key == "error.nothing_to_cancel"
    assert await h.path(ALICE) == [(await h.history(ALICE))[0].version_id, running]


async def test_forget_deletes_only_that_users_data(h: Harness) -> None:
    shared = photo(shade=42)  # both upload the very same photo: one stored file
    alice_root = (await h.upload(ALICE, shared)).version_id
    bob_root = (await h.upload(BOB, shared)).version_id
    assert alice_root is not None and bob_root is not None
    alice_edit = await h.edit(ALICE, "make it night")
    bob_edit = await h.edit(BOB, "make it night")
    dm_root = (await h.upload(ALICE_DM, photo(shade=7))).version_id
    assert dm_root is not None
    shared_sha = (await h.version(alice_root)).image_sha
    assert shared_sha is not None and shared_sha == (await h.version(bob_root)).image_sha
    alice_only = [(await h.version(v)).image_sha for v in (alice_edit, dm_root)]
    alice_only.append((await h.version(alice_edit)).raw_image_sha)  # the raw model output
    bob_history = await h.history(BOB)
    bob_photo = await h.service.image(BOB, bob_root, full=True)

    reply = await h.service.forget(ALICE)

    # Alice's result, its raw model output and her DM photo (the shared photo stays for Bob).
    assert (reply.key, reply.args["count"]) == ("forget.done", 3)
    assert (await h.service.history(ALICE)).key == "history.empty"
    assert (await h.service.history(ALICE_DM)).key == "history.empty"
    for sha in alice_only:
        assert sha is not None and not h.images.exists(sha)
    assert h.images.exists(shared_sha)
    assert await h.history(BOB) == bob_history
    assert await h.service.image(BOB, bob_root, full=True) == bob_photo
    assert await h.service.image(BOB, bob_edit, full=True)
    assert (await h.service.forget(ALICE)).key == "forget.nothing"
    # Alice can start again afterwards.
    await h.upload(ALICE)
    await h.edit(ALICE, "add snow")


async def test_forget_drops_pending_edits(h: Harness) -> None:
    await h.upload(ALICE)
    h.editor.gate.clear()
    running = await h.queue(ALICE, "make it night")
    queued = await h.queue(ALICE, "add snow")

    assert (await h.service.forget(ALICE)).key == "forget.done"
    h.editor.gate.set()
    await asyncio.sleep(0.2)

    assert h.recorder.results(running) == [] and h.recorder.results(queued) == []
    assert len(h.editor.calls) <= 1
    assert h.images.count()[0] == 0  # the running edit's result was not kept
    assert await h.count_versions() == 0


async def test_history_and_settings_survive_a_restart(sqlite_url: str, images_dir: Path) -> None:
    async with running_service(sqlite_url, images_dir) as h:
        root = (await h.upload(ALICE)).version_id
        first = await h.edit(ALICE, "make it night")
        second = await h.edit(ALICE, "add snow")
        await h.service.update_setting(ALICE, "steps", 5)
        history = await h.history(ALICE)
        second_png = await h.service.image(ALICE, second, full=True)

    async with running_service(sqlite_url, images_dir) as h:
        assert await h.history(ALICE) == history
        assert [e.version_id for e in history] == [root, first, second]
        settings = (await h.service.settings(ALICE)).settings
        assert settings is not None and settings["num_inference_steps"] == 5
        assert await h.service.image(ALICE, second, full=True) == second_png
        assert (await h.service.undo(ALICE)).version_id == first
        third = await h.edit(ALICE, "add a moon")
        assert (await h.version(third)).parent_id == first
