"""The relay of job events: progress, results and failures reach the owner, also after a
restart, and undelivered results are sent again."""

from __future__ import annotations

from pathlib import Path

from bot.service.replies import Action
from editor.testing.doubles import GatedEditor
from tests.bot.service.harness import (
    ALICE,
    PLATFORM,
    Harness,
    assert_friendly,
    running_service,
)


async def test_progress_is_published_for_each_step(h: Harness) -> None:
    await h.upload(ALICE)
    edit = await h.edit(ALICE, "make it night")

    progress = [
        r.args for _, r in h.recorder.replies if r.key == "edit.progress" and r.version_id == edit
    ]
    assert [p["step"] for p in progress] == [1, 2, 3]
    assert all(p["total"] == 3 for p in progress)
    assert all(actor == ALICE for actor, _ in h.recorder.replies)


async def test_a_failed_edit_is_reported_and_skips_edits_built_on_it(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir, editor=GatedEditor(fail_on="explode")) as h:
        root = (await h.upload(ALICE)).version_id
        h.editor.gate.clear()
        doomed = await h.queue(ALICE, "explode it")
        dependent = await h.queue(ALICE, "add snow")
        h.editor.gate.set()

        failed = await h.recorder.result(doomed)
        skipped = await h.recorder.result(dependent)

        assert failed.key == "error.edit_failed"
        assert Action.REGENERATE in failed.actions
        assert skipped.key == "error.parent_failed"
        assert "add snow" in assert_friendly(skipped)
        assert_friendly(failed)
        assert await h.path(ALICE) == [root]
        await h.edit(ALICE, "add a rainbow")


async def test_a_queued_edit_survives_a_restart_and_is_delivered(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir, start=False) as h:
        await h.upload(ALICE)
        queued = await h.queue(ALICE, "make it night")

    async with running_service(sqlite_url, images_dir) as h:
        done = await h.recorder.done(queued)
        assert [actor for actor, _ in h.recorder.results(queued)] == [ALICE]
        assert "make it night" in done.text()
        assert await h.head(ALICE) == queued


async def test_results_nobody_delivered_are_redelivered_until_marked(
    sqlite_url: str, images_dir: Path
) -> None:
    async with running_service(sqlite_url, images_dir) as h:
        await h.upload(ALICE)
        edit = await h.edit(ALICE, "make it night")

    async with running_service(sqlite_url, images_dir) as h:
        assert await h.service.redeliver(PLATFORM) == 1
        assert [r.key for _, r in h.recorder.results(edit)] == ["edit.done"]
        await h.service.mark_delivered(edit)
        assert await h.service.redeliver(PLATFORM) == 0
        assert await h.service.redeliver("discord") == 0
