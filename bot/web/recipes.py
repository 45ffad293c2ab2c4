"""The web chat's recipe routes: the picker's list, `/recipe ...` commands, export and import
of recipe files, applying a recipe to several photos at once, and a batch's zip.

Several photos travel in one JSON body (base64), since the page has no multipart parser to
rely on; the body is capped at what the batch may hold before it is read.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.service.batches import Photo
from bot.service.conversation import ConversationService, error_reply
from bot.service.messages import Key
from bot.service.replies import Reply, ReplyKind
from bot.web.bodies import Refused, read_json, read_limited
from bot.web.render import message_json, reply_json, status_for
from editor.errors import UserError
from storage.recipe_format import MAX_RECIPE_BYTES, RecipeTooLarge
from storage.types import Actor

ActorOf = Callable[[Request], Actor]
JSON_OVERHEAD = 64 * 1024


def recipe_routes(
    service: ConversationService, actor_of: ActorOf, max_upload_bytes: int
) -> list[Route]:
    """The routes, bound to the service and the page's session lookup."""

    async def listing(request: Request) -> Response:
        """The user's recipes for the picker."""
        reply = await service.recipe(actor_of(request), ["list"])
        recipes = [
            {"name": note.args["name"], "steps": note.args["count"]}
            for note in reply.notes
            if note.key == Key.RECIPE_LIST_LINE
        ]
        return JSONResponse(
            {"recipes": recipes, "max_photos": service.batches.max_photos, "text": reply.text()}
        )

    async def command(request: Request) -> Response:
        """`/recipe WORDS` typed in the chat (save, show, delete, export, list)."""
        body = await read_json(request)
        words = str(body.get("words") or "").split()
        return _reply(await service.recipe(actor_of(request), words))

    async def export(request: Request) -> Response:
        """A recipe file to download."""
        reply = await service.recipe(actor_of(request), ["export", request.path_params["name"]])
        if reply.attachment is None:
            return _reply(reply)
        disposition = f'attachment; filename="{reply.attachment.filename}"'
        return Response(
            reply.attachment.data,
            media_type="application/json",
            headers={"Content-Disposition": disposition, "X-Content-Type-Options": "nosniff"},
        )

    async def import_file(request: Request) -> Response:
        """A recipe file as the raw body (validated by the service)."""
        actor = actor_of(request)
        try:
            data = await read_limited(request, MAX_RECIPE_BYTES)
        except Refused as error:
            if error.status != 413:
                raise
            return _reply(error_reply(RecipeTooLarge(max_kb=MAX_RECIPE_BYTES // 1024)))
        return _reply(await service.import_recipe(actor, data))

    async def apply(request: Request) -> Response:
        """{"name": NAME, "photos": [{"name": FILE, "data": BASE64}, ...]}."""
        actor = actor_of(request)
        limit = service.batches.max_photos * (max_upload_bytes * 4 // 3 + 4) + JSON_OVERHEAD
        raw = await read_limited(request, limit)
        try:
            body = json.loads(raw)
            name = str(body["name"])
            photos = [
                Photo(str(item.get("name") or f"photo {number}"), _decode(item.get("data")))
                for number, item in enumerate(body["photos"], start=1)
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise Refused(message_json(Key.WEB_BAD_REQUEST), 400) from error
        return _reply(await service.apply_recipe(actor, name, photos))

    async def batch_zip(request: Request) -> Response:
        """A finished batch's full-resolution PNGs (its owner only)."""
        try:
            name, data = await service.batch_zip(actor_of(request), request.path_params["run"])
        except UserError as error:
            return JSONResponse(message_json(error.key, **error.args_for_message), 404)
        return Response(
            data,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    post = ["POST"]
    return [
        Route("/api/recipes", listing),
        Route("/api/recipe", command, methods=post),
        Route("/api/recipes/import", import_file, methods=post),
        Route("/api/recipes/apply", apply, methods=post),
        Route("/api/recipes/{name:str}/export", export),
        Route("/api/batches/{run:int}/zip", batch_zip),
    ]


def _decode(data: object) -> bytes:
    """A photo's bytes; what is not base64 becomes empty bytes, which the service names as a
    photo it cannot read."""
    if not isinstance(data, str):
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _reply(reply: Reply) -> Response:
    body = reply_json(reply)
    if reply.kind is ReplyKind.DOCUMENT:
        body["download"] = f"/api/recipes/{reply.args['name']}/export"
    return JSONResponse(body, status_for(reply))
