"""Candidate sets as replies: a finished set of variations (pictures to pick from), or the
best of N candidates (one result), built from their stored versions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bot.service.messages import Key
from bot.service.replies import Action, Candidate, Note, Reply, ReplyKind
from editor.finishing.spec import Finish
from storage.models import CandidateOrigin, Version

RESULT_ACTIONS = (
    Action.UNDO,
    Action.REGENERATE,
    Action.FULL_RESOLUTION,
    Action.VARIATIONS,
    Action.STRONGER,
    Action.SUBTLER,
    Action.UPSCALE,
)
"""What a finished edit offers: the result buttons of every frontend."""
TUNED = (CandidateOrigin.STRONGER.value, CandidateOrigin.SUBTLER.value)


def leader_of(done: Sequence[Version]) -> Version:
    """The candidate the conversation shows until the user picks: the picked one, else the
    best-scored, else the first (`storage.lifecycle.set_leader`, on loaded rows)."""
    picked = [v for v in done if v.picked]
    if picked:
        return picked[0]
    return min(done, key=lambda v: (-(v.score or 0.0), v.set_index or 0, v.id))


def format_score(score: float | None) -> str:
    return "–" if score is None else f"{score:.3f}"


FINISH_DONE_KEYS = {
    "upscale": Key.FINISH_DONE_UPSCALE,
    "cutout": Key.FINISH_DONE_CUTOUT,
    "white": Key.FINISH_DONE_WHITE,
}


def done_reply(
    version_id: int,
    instruction: str,
    seed: int | None,
    tuned: tuple[float, float] | None = None,
    finish: Finish | None = None,
) -> Reply:
    """A finished edit; a stronger or subtler one says the guidance it used; a finishing
    operation has its own reply (`finish_reply`)."""
    if finish is not None:
        return finish_reply(version_id, finish)
    args: dict[str, object] = {"instruction": instruction, "seed": seed}
    if tuned is not None:
        args |= {"guidance_scale": tuned[0], "image_guidance_scale": tuned[1]}
    return Reply(
        key=Key.EDIT_DONE if tuned is None else Key.EDIT_DONE_TUNED,
        args=args,
        version_id=version_id,
        kind=ReplyKind.RESULT,
        actions=RESULT_ACTIONS,
    )


def finish_reply(version_id: int, finish: Finish) -> Reply:
    """A finished upscale, cut-out or white background; a cut-out goes out as its PNG file
    (a chat photo would lose the transparency)."""
    actions: tuple[Action, ...] = (Action.UNDO, Action.FULL_RESOLUTION)
    if finish.operation != "upscale":
        actions = (*actions, Action.UPSCALE)
    return Reply(
        key=FINISH_DONE_KEYS[finish.operation],
        args={"scale": finish.scale, "operation": finish.label()},
        version_id=version_id,
        kind=ReplyKind.RESULT,
        actions=actions,
        document=finish.operation == "cutout",
    )


def tuning_of(version: Version) -> tuple[float, float] | None:
    """The guidance a stronger or subtler edit used (for its caption), else None."""
    if version.origin not in TUNED or version.params is None:
        return None
    params = version.params
    return float(params["guidance_scale"]), float(params["image_guidance_scale"])


def set_reply(candidates: Sequence[Version]) -> Reply | None:
    """The reply for a finished candidate set, or None while a candidate is still pending.

    Variations: every picture with a Use button (`ReplyKind.VARIATIONS`), named by the set id.
    Best-of-N: the leader's result, saying it was the best of N. All failed: candidate 1's
    failure.
    """
    if not candidates or any(v.is_pending for v in candidates):
        return None
    first = candidates[0]
    done = [v for v in candidates if v.is_done]
    instruction = first.instruction or ""
    if not done:
        return Reply(
            key=first.error_key or Key.ERROR_EDIT_FAILED,
            args={"instruction": instruction},
            version_id=first.set_id or first.id,
            kind=ReplyKind.FAILED,
            actions=(Action.REGENERATE,),
        )
    leader = leader_of(done)
    failed = len(candidates) - len(done)
    if first.origin == CandidateOrigin.BEST_OF.value:
        reply = done_reply(leader.id, instruction, (leader.params or {}).get("seed"))
        note = Note(
            Key.BEST_OF_DONE, {"count": len(candidates), "score": format_score(leader.score)}
        )
        return dataclasses.replace(reply, notes=(note,), candidates=_pictures(done))
    notes = (Note(Key.VARIATIONS_SOME_FAILED, {"failed": failed}),) if failed else ()
    return Reply(
        key=Key.VARIATIONS_DONE,
        args={"instruction": instruction, "count": len(done), "leader": leader.set_index},
        version_id=first.set_id or first.id,
        kind=ReplyKind.VARIATIONS,
        actions=(Action.USE,),
        notes=notes,
        candidates=_pictures(done),
    )


def _pictures(done: Sequence[Version]) -> tuple[Candidate, ...]:
    return tuple(
        Candidate(
            version_id=v.id,
            number=v.set_index or 0,
            seed=(v.params or {}).get("seed"),
            score=v.score,
        )
        for v in done
    )
