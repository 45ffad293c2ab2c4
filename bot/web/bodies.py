"""Reading request bodies safely: size limits before reading, small JSON objects, ids."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.requests import Request

from bot.service.conversation import error_reply
from bot.service.messages import Key
from bot.web.render import message_json, reply_json
from editor.errors import ImageTooLarge

MAX_JSON_BYTES = 16 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class Refused(Exception):
    """A request the web layer refuses before the service sees it."""

    def __init__(self, body: dict[str, Any], status: int) -> None:
        super().__init__(body["key"])
        self.body, self.status = body, status


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be over `limit` (never read whole)."""
    too_large = Refused(reply_json(error_reply(ImageTooLarge(max_mb=megabytes(limit)))), 413)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(message_json(Key.WEB_BAD_REQUEST), 400)
        if int(declared) > limit:
            raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> dict[str, Any]:
    """A small JSON object body ({} when empty); anything else is a 400."""
    raw = await _read_small(request)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise Refused(message_json(Key.WEB_BAD_REQUEST), 400) from error
    if not isinstance(body, dict):
        raise Refused(message_json(Key.WEB_BAD_REQUEST), 400)
    return body


async def _read_small(request: Request) -> bytes:
    """A JSON body is never large: past the cap it is a bad request, not a too-big photo."""
    try:
        return await read_limited(request, MAX_JSON_BYTES)
    except Refused as error:
        if error.status == 413:
            raise Refused(message_json(Key.WEB_BAD_REQUEST), 413) from error
        raise


def optional_id(value: Any) -> int | None:
    """A version id from a JSON body (absent means "the latest"); anything else is a 400."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise Refused(message_json(Key.WEB_BAD_REQUEST), 400)
    return int(value)


def request_key(value: Any) -> str | None:
    """A client-made id per send, so a retried request is recognised as a duplicate."""
    if isinstance(value, str) and _REQUEST_ID.match(value):
        return f"web:{value}"
    return None


def megabytes(limit: int) -> int | float:
    """A byte limit as the catalogue shows it ("20 MB", or "0.06 MB" for small test limits)."""
    size = limit / 2**20
    return round(size) if size >= 1 else round(size, 2)
