"""Text renderings shared by every frontend (so chat platforms read the same)."""

from __future__ import annotations

from bot.service.messages import Key, render
from bot.service.replies import Reply


def history_lines(reply: Reply) -> list[str]:
    """One line per version of a history reply: the photo, done edits with their seeds, pending
    edits with their status, and a marker on the current one."""
    lines = []
    for number, entry in enumerate(reply.history, start=1):
        params = entry.params or {}
        score = (
            render(Key.HISTORY_SCORE, {"score": f"{entry.score:.3f}"})
            if entry.score is not None
            else ""
        )
        if entry.candidate is not None:  # another candidate of a set on the path
            lines.append(
                render(
                    Key.HISTORY_LINE_CANDIDATE,
                    {"index": entry.candidate, "seed": params.get("seed"), "score": score},
                )
            )
            continue
        if entry.instruction is None:
            line = render(Key.HISTORY_LINE_PHOTO, {"number": number})
        elif entry.status == "done":
            line = render(
                Key.HISTORY_LINE_EDIT,
                {"number": number, "instruction": entry.instruction, "seed": params.get("seed")},
            )
        else:
            line = render(
                Key.HISTORY_LINE_PENDING,
                {"number": number, "instruction": entry.instruction, "status": entry.status},
            )
        lines.append(line + score + (render(Key.HISTORY_HEAD) if entry.is_head else ""))
    return lines
