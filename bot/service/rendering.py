"""Text renderings shared by every frontend (so chat platforms read the same)."""

from __future__ import annotations

from bot.service.messages import render
from bot.service.replies import Reply


def history_lines(reply: Reply) -> list[str]:
    """One line per version of a history reply: the photo, done edits with their seeds, pending
    edits with their status, and a marker on the current one."""
    lines = []
    for number, entry in enumerate(reply.history, start=1):
        params = entry.params or {}
        if entry.instruction is None:
            line = render("history.line_photo", {"number": number})
        elif entry.status == "done":
            line = render(
                "history.line_edit",
                {"number": number, "instruction": entry.instruction, "seed": params.get("seed")},
            )
        else:
            line = render(
                "history.line_pending",
                {"number": number, "instruction": entry.instruction, "status": entry.status},
            )
        lines.append(line + (render("history.head") if entry.is_head else ""))
    return lines
