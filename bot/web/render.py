"""Service replies as JSON for the page, and the HTTP status each refusal deserves."""

from __future__ import annotations

from typing import Any

from bot.service.messages import render
from bot.service.rendering import history_lines
from bot.service.replies import Reply

STATUS_BY_KEY: dict[str, int] = {
    "error.version_not_found": 404,
    "error.version_not_ready": 409,
    "error.no_image": 409,
    "error.nothing_to_undo": 409,
    "error.nothing_to_redo": 409,
    "error.nothing_to_regenerate": 409,
    "error.nothing_to_cancel": 409,
    "error.nothing_to_cancel_running": 409,
    "error.image_too_large": 413,
    "error.image_unreadable": 422,
    "error.image_format": 415,
    "error.image_too_small": 422,
    "error.image_aspect": 422,
    "error.rate_limited": 429,
    "error.quota_exceeded": 429,
    "error.too_many_pending": 429,
    "error.queue_full": 503,
    "web.no_session": 401,
    "web.login_needed": 401,
    "web.wrong_password": 401,
    "web.forbidden": 403,
    "web.bad_host": 400,
    "web.not_found": 404,
}


def status_for(reply: Reply) -> int:
    """200 for answers; a 4xx/5xx that names the kind of refusal (the body says it in words)."""
    if not reply.is_error:
        return 200
    return STATUS_BY_KEY.get(reply.key, 400)


def image_url(version_id: int, kind: str = "image") -> str:
    return f"/api/versions/{version_id}/{kind}"


def reply_json(reply: Reply) -> dict[str, Any]:
    """Everything the page needs to show a reply: its text, image, buttons and payloads."""
    body: dict[str, Any] = {
        "key": reply.key,
        "text": reply.text(),
        "args": {k: v for k, v in reply.args.items() if isinstance(v, str | int | float | None)},
        "version_id": reply.version_id,
        "actions": [action.value for action in reply.actions],
        "is_error": reply.is_error,
        "image": None,
    }
    if reply.show_image and reply.version_id is not None:
        body["image"] = image_url(reply.version_id)
        body["full"] = image_url(reply.version_id, "full")
    if reply.settings is not None:
        body["settings"] = dict(reply.settings)
    if reply.history:
        lines = history_lines(reply)
        body["history"] = [
            {
                "version_id": entry.version_id,
                "instruction": entry.instruction,
                "seed": (entry.params or {}).get("seed"),
                "params": dict(entry.params or {}),
                "status": entry.status,
                "is_head": entry.is_head,
                "text": line,
                "caption": render(
                    "edit.done",
                    {"instruction": entry.instruction, "seed": (entry.params or {}).get("seed")},
                )
                if entry.instruction is not None and entry.status == "done"
                else None,
                "thumbnail": image_url(entry.version_id, "thumbnail")
                if entry.status == "done"
                else None,
                "image": image_url(entry.version_id) if entry.status == "done" else None,
            }
            for entry, line in zip(reply.history, lines, strict=True)
        ]
    return body


def message_json(key: str, **args: Any) -> dict[str, Any]:
    """A reply-shaped body for refusals made by the web layer itself (session, CSRF, size)."""
    return {
        "key": key,
        "text": render(key, args),
        "args": args,
        "version_id": None,
        "actions": [],
        "is_error": True,
        "image": None,
    }
