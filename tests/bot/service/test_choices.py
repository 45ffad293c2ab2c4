"""Choice in every turn: variations (one batch, one reply, picking), Stronger / Subtler within
the allowed ranges, best-of-N with a scorer, and their costs and refusals."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from bot.service.admission import Admission
from bot.service.choices import IMAGE_GUIDANCE_STEP, TEXT_GUIDANCE_STEP, stronger, subtler
from bot.service.rendering import history_lines
from bot.service.replies import Action, Reply, ReplyKind
from editor.clip_scorer import ClipScorer
from editor.params import GUIDANCE_RANGE, IMAGE_GUIDANCE_RANGE, EditParams
from storage.limits import LimitPolicy
from tests.bot.service.harness import ALICE, BOB, Harness, assert_friendly, running_service


async def variations_of(h: Harness, text: str = "make it night") -> tuple[int, Reply]:
    """Upload, edit, ask for variations and wait for their one reply; (edit id, that reply)."""
    await h.upload(ALICE)
    edit = await h.edit(ALICE, text)
    queued = await h.service.variations(ALICE)
    assert queued.kind is ReplyKind.QUEUED, queued
    assert queued.version_id is not None
    return edit, await h.recorder.result(queued.version_id)


async def test_variations_run_as_one_batch_and_come_back_together(h: Harness) -> None:
    edit, reply = await variations_of(h)

    assert reply.kind is ReplyKind.VARIATIONS
    assert [c.number for c in reply.candidates] == [1, 2, 3, 4]
    assert len({c.seed for c in reply.candidates}) == 4
    assert reply.actions == (Action.USE,)
    assert "4 variations" in reply.text() and "candidate 1" in reply.text()
    assert [len(call) for call in h.editor.calls] == [1, 4]  # the edit, then one batch of four
    parents = {(await h.version(c.version_id)).parent_id for c in reply.candidates}
    assert parents == {(await h.version(edit)).parent_id}
    # Until a pick, the conversation shows candidate 1; the others are siblings in /history.
    assert await h.head(ALICE) == reply.candidates[0].version_id
    history = await h.service.history(ALICE)
    others = [e for e in history.history if e.candidate is not None]
    assert [e.candidate for e in others] == [2, 3, 4]
    assert any("also candidate 3" in line for line in history_lines(history))
    # Only one reply for the whole set, however many candidates finished.
    told = [r for _, r in h.recorder.replies if r.kind is ReplyKind.VARIATIONS]
    assert len(told) == 1


async def test_next_instruction_edits_candidate_one_until_a_pick(h: Harness) -> None:
    _edit, reply = await variations_of(h)
    first, third = reply.candidates[0], reply.candidates[2]

    chained = await h.service.instruct(ALICE, "add snow")
    assert "edits candidate 1" in chained.text()
    assert chained.version_id is not None
    await h.recorder.done(chained.version_id)
    assert (await h.version(chained.version_id)).parent_id == first.version_id

    picked = await h.service.pick(ALICE, third.version_id)
    assert picked.kind is ReplyKind.VERSION and "candidate 3" in picked.text()
    assert await h.head(ALICE) == third.version_id
    after = await h.service.instruct(ALICE, "add fog")
    assert "candidate" not in after.text()
    assert after.version_id is not None
    assert (await h.version(after.version_id)).parent_id == third.version_id


async def test_a_pick_on_an_undone_set_or_someone_elses_is_refused(h: Harness) -> None:
    _edit, reply = await variations_of(h)
    second = reply.candidates[1].version_id

    assert_friendly(not_yours := await h.service.pick(BOB, second))
    assert not_yours.key == "error.version_not_found"
    assert (await h.service.variations(BOB)).is_error  # Bob has no edit of his own

    await h.service.undo(ALICE)  # back to the parent of the set
    refused = await h.service.pick(ALICE, second)
    assert refused.key == "error.set_not_current"
    assert_friendly(refused)
    # The conversation is still usable: redo brings candidate 1 back, and then picking works.
    await h.service.redo(ALICE)
    assert not (await h.service.pick(ALICE, second)).is_error
    assert await h.head(ALICE) == second


async def test_a_pick_on_a_forgotten_set_says_the_picture_is_gone(h: Harness) -> None:
    _edit, reply = await variations_of(h)
    await h.service.forget(ALICE)

    gone = await h.service.pick(ALICE, reply.candidates[1].version_id)
    assert gone.key == "error.version_not_found"
    assert_friendly(gone)


async def test_buttons_of_a_set_still_work_after_a_restart(sqlite_url: str, tmp_path: Path) -> None:
    async with running_service(sqlite_url, tmp_path / "images") as h:
        _edit, reply = await variations_of(h)
    async with running_service(sqlite_url, tmp_path / "images") as again:
        picked = await again.service.pick(ALICE, reply.candidates[3].version_id)
        assert not picked.is_error, picked
        assert await again.head(ALICE) == reply.candidates[3].version_id


async def test_a_set_queued_before_a_restart_runs_as_one_batch_after_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_service(sqlite_url, tmp_path / "images") as h:
        await h.upload(ALICE)
        await h.edit(ALICE, "make it night")
    async with running_service(sqlite_url, tmp_path / "images", start=False) as h:
        queued = await h.service.variations(ALICE)
        assert queued.version_id is not None
    async with running_service(sqlite_url, tmp_path / "images") as h:
        reply = await h.recorder.result(queued.version_id)
        assert reply.kind is ReplyKind.VARIATIONS
        assert [len(call) for call in h.editor.calls] == [4]


async def test_cancel_drops_the_whole_set(h: Harness) -> None:
    await h.upload(ALICE)
    await h.edit(ALICE, "make it night")
    await h.upload(BOB)
    h.editor.gate.clear()
    bob = await h.queue(BOB, "make it day")  # runs, and holds the model while Alice's set waits
    await h.wait_status(bob, "running")
    queued = await h.service.variations(ALICE)
    assert queued.version_id is not None

    cancelled = await h.service.cancel(ALICE)
    h.editor.gate.set()
    assert cancelled.args["count"] == 4, cancelled
    for number in range(4):
        assert (await h.version(queued.version_id + number)).status == "cancelled"
    await h.recorder.done(bob)


async def test_stronger_and_subtler_step_within_the_ranges(h: Harness) -> None:
    await h.upload(ALICE)
    edit = await h.edit(ALICE, "make it night")
    before = (await h.version(edit)).edit_params()

    queued = await h.service.stronger(ALICE)
    assert queued.kind is ReplyKind.QUEUED, queued
    assert queued.version_id is not None
    done = await h.recorder.result(queued.version_id)
    assert done.kind is ReplyKind.RESULT and done.show_image
    after = (await h.version(queued.version_id)).edit_params()
    assert after.guidance_scale == before.guidance_scale + TEXT_GUIDANCE_STEP
    assert after.image_guidance_scale == before.image_guidance_scale - IMAGE_GUIDANCE_STEP
    assert after.seed == before.seed
    assert f"text guidance {after.guidance_scale}" in done.text()
    assert f"image guidance {after.image_guidance_scale}" in done.text()
    assert (await h.version(queued.version_id)).parent_id == (await h.version(edit)).parent_id

    softer = await h.service.subtler(ALICE)
    assert softer.version_id is not None
    await h.recorder.result(softer.version_id)
    back = (await h.version(softer.version_id)).edit_params()
    assert (back.guidance_scale, back.image_guidance_scale) == (
        before.guidance_scale,
        before.image_guidance_scale,
    )


async def test_stronger_at_the_top_of_the_range_says_so(sqlite_url: str, tmp_path: Path) -> None:
    strongest = EditParams(
        num_inference_steps=3,
        resolution=256,
        guidance_scale=GUIDANCE_RANGE[1],
        image_guidance_scale=IMAGE_GUIDANCE_RANGE[0],
    )
    async with running_service(sqlite_url, tmp_path / "images", defaults=strongest) as h:
        await h.upload(ALICE)
        await h.edit(ALICE, "make it night")
        versions = await h.count_versions()

        refused = await h.service.stronger(ALICE)
        assert refused.key == "error.at_strongest"
        assert "already at the strongest setting" in assert_friendly(refused).lower()
        assert await h.count_versions() == versions
        assert not (await h.service.subtler(ALICE)).is_error  # the other way still works


def test_the_steps_stop_at_the_edges_of_the_ranges() -> None:
    params = EditParams(guidance_scale=19.0, image_guidance_scale=1.1)
    once = stronger(params)
    assert once is not None
    assert (once.guidance_scale, once.image_guidance_scale) == (20.0, 1.0)
    assert stronger(once) is None
    bottom = EditParams(guidance_scale=1.0, image_guidance_scale=5.0)
    assert subtler(bottom) is None
    half = subtler(EditParams(guidance_scale=1.0, image_guidance_scale=4.0))
    assert half is not None and half.image_guidance_scale == 4.25


async def test_variations_cost_four_edits_of_the_quota_and_one_of_the_rate(
    sqlite_url: str, tmp_path: Path
) -> None:
    tight = Admission(rate=LimitPolicy(burst=3, per_minute=0.0, daily_quota=6))
    async with running_service(sqlite_url, tmp_path / "images", admission=tight) as h:
        await h.upload(ALICE)
        await h.edit(ALICE, "make it night")  # 1 of 6 used, 2 rate tokens left
        queued = await h.service.variations(ALICE)  # 5 of 6 used, 1 token left
        assert queued.version_id is not None
        await h.recorder.result(queued.version_id)

        refused = await h.service.variations(ALICE)
        assert refused.key == "error.quota_too_small"
        text = assert_friendly(refused)
        assert "1 left" in text and "4 edits" in text
        assert not (await h.service.regenerate(ALICE)).is_error  # one edit still fits


async def test_a_set_counts_once_against_the_pending_cap(h: Harness) -> None:
    await h.upload(ALICE)
    await h.edit(ALICE, "make it night")
    h.editor.gate.clear()
    first = await h.service.variations(ALICE)
    second = await h.service.instruct(ALICE, "add snow")
    assert not first.is_error and not second.is_error, (first, second)
    h.editor.gate.set()
    assert second.version_id is not None
    await h.recorder.done(second.version_id)


async def set_result(h: Harness, set_id: int) -> Reply:
    """The one reply of a best-of set (named by its best candidate, whichever that is)."""
    async with asyncio.timeout(10):
        while True:
            for _, reply in h.recorder.replies:
                if reply.kind is ReplyKind.RESULT and set_id in {
                    c.version_id for c in reply.candidates
                }:
                    return reply
            await asyncio.sleep(0.02)


class PrefersSeed:
    """A scorer double: the candidate whose result is reddest wins (a fixed, checkable rule)."""

    def __init__(self) -> None:
        self.calls = 0

    def score(
        self, parent: Image.Image, candidates: Sequence[Image.Image], text: str
    ) -> list[float]:
        self.calls += 1
        return [
            float(image.convert("RGB").resize((1, 1)).getpixel((0, 0))[0]) for image in candidates
        ]  # type: ignore[index]


async def test_best_of_n_keeps_the_best_scored_and_shows_scores(
    sqlite_url: str, tmp_path: Path
) -> None:
    scorer = PrefersSeed()
    async with running_service(sqlite_url, tmp_path / "images", scorer=scorer) as h:
        await h.upload(ALICE)
        assert not (await h.service.update_setting(ALICE, "candidates", "3")).is_error
        settings = await h.service.settings(ALICE)
        assert "Best of 3" in settings.text()
        queued = await h.service.instruct(ALICE, "make it night")
        assert "best of 3" in queued.text()
        assert queued.version_id is not None

        reply = await set_result(h, queued.version_id)
        assert reply.kind is ReplyKind.RESULT and reply.show_image
        assert "Best of 3 candidates" in reply.text()
        assert scorer.calls == 1 and [len(call) for call in h.editor.calls] == [3]
        candidates = [await h.version(queued.version_id + i) for i in range(3)]
        scores = [c.score for c in candidates]
        assert None not in scores
        best = max(candidates, key=lambda c: c.score or 0.0)
        assert reply.version_id == best.id
        assert await h.head(ALICE) == best.id
        lines = history_lines(await h.service.history(ALICE))
        assert sum("score" in line for line in lines) == 3


async def test_variations_while_over_quota_say_how_many_are_left(
    sqlite_url: str, tmp_path: Path
) -> None:
    tight = Admission(rate=LimitPolicy(burst=10, per_minute=60.0, daily_quota=3))
    async with running_service(sqlite_url, tmp_path / "images", admission=tight) as h:
        await h.upload(ALICE)
        await h.edit(ALICE, "make it night")
        refused = await h.service.variations(ALICE)
        assert refused.key == "error.quota_too_small"
        assert "2 left" in assert_friendly(refused)


async def test_variations_are_ranked_by_the_tiny_clip_loaded_in_the_model_thread(
    sqlite_url: str, tmp_path: Path, tiny_clip_dir: Path
) -> None:
    scorer = ClipScorer(str(tiny_clip_dir))
    async with running_service(sqlite_url, tmp_path / "images", scorer=scorer) as h:
        assert not scorer.loaded  # not at start-up: on first use
        _edit, reply = await variations_of(h)

        assert scorer.loaded and (scorer.loaded_in or "").startswith("pix2chat-model")
        scores = [c.score for c in reply.candidates]
        assert None not in scores
        best = max(reply.candidates, key=lambda c: c.score or 0.0)
        assert f"candidate {best.number}" in reply.text()  # the next edit's base, said
        assert await h.head(ALICE) == best.version_id
        chained = await h.service.instruct(ALICE, "add snow")
        assert f"edits candidate {best.number}" in chained.text()


async def test_a_set_finished_while_nobody_listened_is_redelivered_once(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_service(sqlite_url, tmp_path / "images") as h:
        edit, reply = await variations_of(h)
    async with running_service(sqlite_url, tmp_path / "images") as again:
        assert await again.service.redeliver("telegram") == 5  # the edit and four candidates
        (resent,) = [r for _, r in again.recorder.replies if r.kind is ReplyKind.VARIATIONS]
        assert resent.version_id == reply.version_id
        assert [c.version_id for c in resent.candidates] == [c.version_id for c in reply.candidates]
        await again.service.mark_delivered(edit)
        await again.service.mark_delivered(resent.version_id or 0)
        assert await again.service.redeliver("telegram") == 0  # the whole set is marked


async def test_a_set_reports_progress_once_under_its_first_candidate(h: Harness) -> None:
    _edit, reply = await variations_of(h)
    ids = [c.version_id for c in reply.candidates]

    assert h.recorder.progress(ids[0])  # the set's status line moves
    assert not any(h.recorder.progress(other) for other in ids[1:])
