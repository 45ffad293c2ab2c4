"""Service replies as JSON for the page, and the HTTP status each refusal deserves."""

from __future__ import annotations

import base64
from typing import Any

from bot.service.messages import Key, render
from bot.service.rendering import history_lines
from bot.service.replies import Reply, ReplyKind

STATUS_BY_KEY: dict[str, int] = {
    Key.ERROR_VERSION_NOT_FOUND: 404,
    Key.ERROR_VERSION_NOT_READY: 409,
    Key.ERROR_NO_IMAGE: 409,
    Key.ERROR_NOTHING_TO_UNDO: 409,
    Key.ERROR_NOTHING_TO_REDO: 409,
    Key.ERROR_NOTHING_TO_REGENERATE: 409,
    Key.ERROR_NOTHING_TO_CANCEL: 409,
    Key.ERROR_NOTHING_TO_CANCEL_RUNNING: 409,
    Key.ERROR_IMAGE_TOO_LARGE: 413,
    Key.ERROR_IMAGE_UNREADABLE: 422,
    Key.ERROR_IMAGE_FORMAT: 415,
    Key.ERROR_IMAGE_TOO_SMALL: 422,
    Key.ERROR_IMAGE_ASPECT: 422,
    Key.ERROR_RATE_LIMITED: 429,
    Key.ERROR_QUOTA_EXCEEDED: 429,
    Key.ERROR_TOO_MANY_PENDING: 429,
    Key.ERROR_QUEUE_FULL: 503,
    Key.ERROR_UPSCALE_AT_CAP: 409,
    Key.ERROR_QUOTA_TOO_SMALL: 429,
    Key.ERROR_SET_NOT_CURRENT: 409,
    Key.ERROR_NOT_A_CANDIDATE: 409,
    Key.ERROR_AT_STRONGEST: 409,
    Key.ERROR_AT_SUBTLEST: 409,
    Key.ERROR_NOTHING_TO_VARY: 409,
    Key.WEB_NO_SESSION: 401,
    Key.WEB_LOGIN_NEEDED: 401,
    Key.WEB_WRONG_PASSWORD: 401,
    Key.WEB_FORBIDDEN: 403,
    Key.WEB_BAD_HOST: 400,
    Key.WEB_NOT_FOUND: 404,
    Key.REGION_NOT_FOUND: 422,
    Key.REGION_EVERYTHING: 422,
    Key.REGION_USAGE: 400,
    Key.REGION_TOO_LONG: 400,
    Key.REGION_UNAVAILABLE: 503,
    Key.ERROR_RECIPE_NOT_FOUND: 404,
    Key.ERROR_RECIPE_TOO_LARGE: 413,
    Key.ERROR_RECIPE_NOTHING_TO_SAVE: 409,
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
        "kind": reply.kind.value,
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
    elif reply.picture is not None:  # a region's mask preview: small, sent inline
        body["image"] = "data:image/jpeg;base64," + base64.b64encode(reply.picture).decode("ascii")
    if reply.settings is not None:
        body["settings"] = dict(reply.settings)
    if reply.candidates:
        body["candidates"] = [
            {
                "version_id": candidate.version_id,
                "number": candidate.number,
                "seed": candidate.seed,
                "score": candidate.score,
                "image": image_url(candidate.version_id),
                "caption": render(
                    Key.VARIATIONS_CANDIDATE, {"number": candidate.number, "seed": candidate.seed}
                ),
                "use": render(Key.BUTTON_USE, {"number": candidate.number}),
            }
            for candidate in reply.candidates
        ]
    if reply.kind in (ReplyKind.BATCH_STATUS, ReplyKind.BATCH_RESULT):
        body["run"] = reply.args.get("run")
        body["versions"] = [
            {
                "version_id": version_id,
                "image": image_url(version_id),
                "thumbnail": image_url(version_id, "thumbnail"),
                "full": image_url(version_id, "full"),
            }
            for version_id in reply.versions
        ]
        if reply.kind is ReplyKind.BATCH_RESULT and reply.versions:
            body["zip"] = f"/api/batches/{reply.args.get('run')}/zip"
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
                "score": entry.score,
                "candidate": entry.candidate,
                "text": line,
                "caption": render(
                    Key.EDIT_DONE,
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


def message_json(key: str, *, locale: str | None = None, **args: Any) -> dict[str, Any]:
    """A reply-shaped body for refusals made by the web layer itself (session, CSRF, size)."""
    return {
        "key": key,
        "kind": ReplyKind.ERROR.value,
        "text": render(key, args, locale),
        "args": args,
        "version_id": None,
        "actions": [],
        "is_error": True,
        "image": None,
    }
