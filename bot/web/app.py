"""The web chat's HTTP routes: one page, a JSON API on the conversation service, and SSE.

Every route is a thin adapter: find the browser's actor from its cookie, make one service
call, render the reply as JSON. The service decides everything else (ownership of versions,
limits, validation), exactly as for the chat platforms.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from bot.service import catalogues
from bot.service.conversation import MAX_INSTRUCTION_CHARS, ConversationService, error_reply
from bot.service.languages import choices
from bot.service.messages import Key, render, use_locale
from bot.service.replies import Reply
from bot.web.bodies import Refused, megabytes, optional_id, read_json, read_limited, request_key
from bot.web.delivery import WebDelivery
from bot.web.guard import Guard
from bot.web.recipes import recipe_routes
from bot.web.render import message_json, reply_json, status_for
from bot.web.sessions import COOKIE, COOKIE_MAX_AGE_S, Sessions
from editor.errors import ImageTooLarge, UserError
from editor.params import RESOLUTIONS
from storage.errors import NoImageYet, VersionNotFound
from storage.types import Actor

STATIC = Path(__file__).parent / "static"
HEARTBEAT_S = 15.0
LOGIN_FAILURE_DELAY_S = 0.5

PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
PAGE_MESSAGES = (
    Key.WEB_WELCOME,
    Key.WEB_YOUR_PHOTO,
    Key.WEB_BRANCH,
    Key.WEB_BRANCHED,
    Key.WEB_OFFLINE,
    Key.WEB_RECONNECTING,
    Key.FORGET_CONFIRM,
    Key.ERROR_GENERIC,
    Key.BUTTON_UNDO,
    Key.BUTTON_REDO,
    Key.BUTTON_REGENERATE,
    Key.BUTTON_FULL,
    Key.BUTTON_CANCEL,
    Key.PAGE_BRANCH_HINT,
    Key.BUTTON_UPSCALE,
    Key.BUTTON_VARIATIONS,
    Key.BUTTON_STRONGER,
    Key.BUTTON_SUBTLER,
    Key.BUTTON_USE,
)
"""Catalogue texts the page shows on its own (everything else comes with the replies)."""
PAGE_TEXTS = (
    Key.PAGE_SETTINGS,
    Key.PAGE_HISTORY,
    Key.PAGE_CONVERSATION,
    Key.PAGE_PASSWORD,
    Key.PAGE_LOG_IN,
    Key.PAGE_PHOTO_TO_SEND,
    Key.PAGE_REMOVE_PHOTO,
    Key.PAGE_EDIT_LATEST,
    Key.PAGE_ADD_PHOTO_HINT,
    Key.PAGE_ADD_PHOTO,
    Key.PAGE_SAY_WHAT,
    Key.PAGE_INSTRUCTION,
    Key.PAGE_SEND,
    Key.PAGE_SETTINGS_HINT,
    Key.PAGE_STEPS,
    Key.PAGE_STEPS_HINT,
    Key.PAGE_TEXT_GUIDANCE,
    Key.PAGE_TEXT_GUIDANCE_HINT,
    Key.PAGE_IMAGE_GUIDANCE,
    Key.PAGE_IMAGE_GUIDANCE_HINT,
    Key.PAGE_SEED,
    Key.PAGE_RANDOM,
    Key.PAGE_FIXED,
    Key.PAGE_FIXED_SEED,
    Key.PAGE_RESOLUTION,
    Key.PAGE_RESOLUTION_HINT,
    Key.PAGE_RESET_DEFAULTS,
    Key.PAGE_CLOSE,
    Key.PAGE_DELETE_ALL,
    Key.PAGE_DROP,
)
"""Catalogue texts written into index.html itself ({{page.settings}} and so on)."""
LANGUAGE_COMMAND = "/language"
"""Typed in the composer, as in the chat apps: `/language es` chooses, `/language` lists."""
IMAGE_CACHE = "private, max-age=31536000, immutable"
"""A version id's pixels never change; only its owner's browser may keep a copy."""
PREVIEW_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
"""A running edit's preview changes every few steps and is gone once the result is in."""


@dataclass(frozen=True, slots=True)
class WebContext:
    """What the routes share.

    Attributes:
        service: the conversation service every frontend uses.
        delivery: the SSE fan-out of job events.
        sessions: cookie issuing and checking (and the password, if any).
        max_upload_bytes: uploads above this are refused before they are read in full.
        loopback_only: answer only requests addressed to a loopback host name (guards
            against DNS rebinding when no password protects the chat).
        heartbeat_s: idle seconds between SSE keep-alive comments.
    """

    service: ConversationService
    delivery: WebDelivery
    sessions: Sessions
    max_upload_bytes: int
    loopback_only: bool = True
    heartbeat_s: float = HEARTBEAT_S


def create_app(ctx: WebContext) -> ASGIApp:
    """The ASGI app: the page, its static files, the JSON API and the event stream."""

    def _actor(request: Request) -> Actor:
        actor = ctx.sessions.actor(request.cookies.get(COOKIE))
        if actor is None:
            raise Refused(message_json(Key.WEB_NO_SESSION), 401)
        return actor

    async def _locale(request: Request) -> str:
        """The browser's /language choice, else its Accept-Language, else English."""
        hint = catalogues.parse_accept_language(request.headers.get("accept-language"))
        actor = ctx.sessions.actor(request.cookies.get(COOKIE))
        if actor is None:
            return catalogues.negotiate(hint) or catalogues.SOURCE_LOCALE
        return await ctx.service.locale(actor, hint)

    def localized(endpoint: Endpoint) -> Endpoint:
        """Answer in the browser's language (the JSON is rendered within the block)."""

        @functools.wraps(endpoint)
        async def in_browsers_language(request: Request) -> Response:
            with use_locale(await _locale(request)):
                return await endpoint(request)

        return in_browsers_language

    async def page(request: Request) -> Response:
        """The chat page in the browser's language, right to left where it is written so; it
        asks for a session itself (cookies stay SameSite=Strict)."""
        return HTMLResponse(page_html(await _locale(request)), headers=PAGE_HEADERS)

    async def session(request: Request) -> Response:
        """Start or resume this browser's session; in password mode, say a login is needed."""
        if ctx.sessions.actor(request.cookies.get(COOKIE)) is not None:
            return JSONResponse({"ok": True, "login": False})
        if ctx.sessions.needs_login:
            return JSONResponse({**message_json(Key.WEB_LOGIN_NEEDED), "login": True}, 401)
        response = JSONResponse({"ok": True, "login": False})
        _set_cookie(request, response, ctx.sessions.issue())
        return response

    async def login(request: Request) -> Response:
        """Check the password and hand out a signed session cookie."""
        body = await read_json(request)
        if not ctx.sessions.check_password(str(body.get("password", ""))):
            await asyncio.sleep(LOGIN_FAILURE_DELAY_S)  # slows guessing down
            return JSONResponse({**message_json(Key.WEB_WRONG_PASSWORD), "login": True}, 401)
        response = JSONResponse({"ok": True, "login": False})
        _set_cookie(request, response, ctx.sessions.issue(request.cookies.get(COOKIE)))
        return response

    async def state(request: Request) -> Response:
        """Everything the page shows on load: history, settings, queue status, limits."""
        actor = _actor(request)
        locale = await _locale(request)
        history = await ctx.service.history(actor)
        settings = await ctx.service.settings(actor)
        status = await ctx.service.status(actor)
        return JSONResponse(
            {
                "history": reply_json(history),
                "settings": reply_json(settings),
                "status": reply_json(status),
                "limits": {
                    "max_upload_bytes": ctx.max_upload_bytes,
                    "too_large": error_reply(
                        ImageTooLarge(max_mb=megabytes(ctx.max_upload_bytes))
                    ).text(),
                    "max_instruction_chars": MAX_INSTRUCTION_CHARS,
                },
                "messages": {key: render(key) for key in PAGE_MESSAGES},
                "locale": {"code": locale, "choices": choices()},
                "choices": {"resolutions": list(RESOLUTIONS)},
            }
        )

    async def photo(request: Request) -> Response:
        """A photo as the raw request body; an optional `X-Caption` is its first instruction."""
        actor = _actor(request)
        data = await read_limited(request, ctx.max_upload_bytes)
        caption = unquote(request.headers.get("x-caption", "")) or None
        reply = await ctx.service.receive_image(
            actor,
            data,
            caption=caption,
            request_key=request_key(request.headers.get("x-request-id")),
        )
        return _reply(reply)

    async def instruct(request: Request) -> Response:
        """An instruction; `base_version_id` branches from an earlier version."""
        actor = _actor(request)
        body = await read_json(request)
        command, _, code = str(body.get("text") or "").strip().partition(" ")
        if command.lower() == LANGUAGE_COMMAND:
            hint = catalogues.parse_accept_language(request.headers.get("accept-language"))
            chosen = await ctx.service.choose_language(actor, code, hint)
            return JSONResponse(
                {**reply_json(chosen), "reload": chosen.locale is not None}, status_for(chosen)
            )
        finishing = await ctx.service.finishing_command(
            actor, str(body.get("text") or ""), optional_id(body.get("base_version_id"))
        )
        if finishing is not None:
            return _reply(finishing)
        reply = await ctx.service.instruct(
            actor,
            str(body.get("text") or ""),
            base_version_id=optional_id(body.get("base_version_id")),
            request_key=request_key(body.get("request_id")),
        )
        return _reply(reply)

    async def regions(request: Request) -> Response:
        """GET: the regions set; POST {kind: "keep"|"only", text}: set one ("off" clears it)."""
        actor = _actor(request)
        if request.method == "GET":
            return _reply(await ctx.service.show_regions(actor))
        body = await read_json(request)
        kind, text = str(body.get("kind") or ""), str(body.get("text") or "")
        if kind == "keep":
            return _reply(await ctx.service.keep(actor, text))
        if kind == "only":
            return _reply(await ctx.service.only(actor, text))
        raise Refused(message_json(Key.WEB_BAD_REQUEST), 400)

    async def undo(request: Request) -> Response:
        """Back one step (from `version_id` when an older result's button was used)."""
        body = await read_json(request)
        version = optional_id(body.get("version_id"))
        return _reply(await ctx.service.undo(_actor(request), version))

    async def redo(request: Request) -> Response:
        """Forward again to the version undo left."""
        return _reply(await ctx.service.redo(_actor(request)))

    async def regenerate(request: Request) -> Response:
        """The same instruction on the same parent with a new seed."""
        body = await read_json(request)
        version = optional_id(body.get("version_id"))
        return _reply(await ctx.service.regenerate(_actor(request), version))

    async def upscale(request: Request) -> Response:
        """The Upscale button: 2x (or `scale`) super-resolution of `version_id`."""
        body = await read_json(request)
        scale = body.get("scale")
        version = optional_id(body.get("version_id"))
        reply = await ctx.service.upscale(_actor(request), str(scale) if scale else None, version)
        return _reply(reply)

    async def variations(request: Request) -> Response:
        """Four candidates of the version's instruction (the newest edit's by default)."""
        body = await read_json(request)
        version = optional_id(body.get("version_id"))
        return _reply(await ctx.service.variations(_actor(request), version))

    async def stronger(request: Request) -> Response:
        """The version's instruction again, one step stronger."""
        body = await read_json(request)
        version = optional_id(body.get("version_id"))
        return _reply(await ctx.service.stronger(_actor(request), version))

    async def subtler(request: Request) -> Response:
        """The version's instruction again, one step subtler."""
        body = await read_json(request)
        version = optional_id(body.get("version_id"))
        return _reply(await ctx.service.subtler(_actor(request), version))

    async def pick(request: Request) -> Response:
        """ "Use n": that candidate of a set becomes the current version."""
        body = await read_json(request)
        version = optional_id(body.get("version_id"))
        if version is None:
            raise Refused(message_json(Key.WEB_BAD_REQUEST), 400)
        return _reply(await ctx.service.pick(_actor(request), version))

    async def reset(request: Request) -> Response:
        """Start over from the original photo."""
        return _reply(await ctx.service.reset(_actor(request)))

    async def cancel(request: Request) -> Response:
        """Cancel the newest queued edit."""
        return _reply(await ctx.service.cancel(_actor(request)))

    async def forget(request: Request) -> Response:
        """Delete this browser's images and history (the page asks first)."""
        return _reply(await ctx.service.forget(_actor(request)))

    async def history(request: Request) -> Response:
        """The path root -> head plus pending edits, with thumbnail URLs."""
        return _reply(await ctx.service.history(_actor(request)))

    async def status(request: Request) -> Response:
        """Where this browser's edits stand in the queue."""
        return _reply(await ctx.service.status(_actor(request)))

    async def settings(request: Request) -> Response:
        """GET: the five generation settings; POST {name, value}: change one."""
        actor = _actor(request)
        if request.method == "GET":
            return _reply(await ctx.service.settings(actor))
        body = await read_json(request)
        name, value = str(body.get("name", "")), body.get("value")
        return _reply(await ctx.service.update_setting(actor, name, value))

    async def settings_reset(request: Request) -> Response:
        """Every setting back to the server defaults."""
        return _reply(await ctx.service.reset_settings(_actor(request)))

    async def version_image(request: Request) -> Response:
        """A version's picture for its owner: chat JPEG, PNG download, thumbnail or live preview."""
        actor = _actor(request)
        version_id: int = request.path_params["version_id"]
        kind: str = request.path_params["kind"]
        try:
            if kind == "preview":
                data = await ctx.service.preview(actor, version_id)
                return Response(data, media_type="image/jpeg", headers=PREVIEW_HEADERS)
            if kind == "thumbnail":
                data = await ctx.service.thumbnail(actor, version_id)
            else:
                data = await ctx.service.image(actor, version_id, full=kind == "full")
        except NoImageYet:  # a browser without any photo asking for someone's version id
            return _reply(error_reply(VersionNotFound(version_id=version_id)))
        except UserError as error:
            return _reply(error_reply(error))
        headers = {"Cache-Control": IMAGE_CACHE, "X-Content-Type-Options": "nosniff"}
        if kind == "full":
            headers["Content-Disposition"] = f'attachment; filename="pix2chat-{version_id}.png"'
            return Response(data, media_type="image/png", headers=headers)
        return Response(data, media_type="image/jpeg", headers=headers)

    async def events(request: Request) -> Response:
        """This browser's progress, results and failures as server-sent events."""
        actor = _actor(request)
        return StreamingResponse(
            _event_stream(ctx, actor),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, Refused)
        return JSONResponse(error.body, error.status)

    async def not_found(request: Request, error: Exception) -> Response:
        hint = catalogues.parse_accept_language(request.headers.get("accept-language"))
        locale = catalogues.negotiate(hint) or catalogues.SOURCE_LOCALE
        return JSONResponse(message_json(Key.WEB_NOT_FOUND, locale=locale), 404)

    post = ["POST"]
    routes = [
        Route("/", page),
        Route("/api/session", localized(session), methods=post),
        Route("/api/login", localized(login), methods=post),
        Route("/api/state", localized(state)),
        Route("/api/photo", localized(photo), methods=post),
        Route("/api/instruct", localized(instruct), methods=post),
        Route("/api/regions", localized(regions), methods=["GET", "POST"]),
        Route("/api/undo", localized(undo), methods=post),
        Route("/api/redo", localized(redo), methods=post),
        Route("/api/regenerate", localized(regenerate), methods=post),
        Route("/api/upscale", localized(upscale), methods=post),
        Route("/api/variations", localized(variations), methods=post),
        Route("/api/stronger", localized(stronger), methods=post),
        Route("/api/subtler", localized(subtler), methods=post),
        Route("/api/pick", localized(pick), methods=post),
        Route("/api/reset", localized(reset), methods=post),
        Route("/api/cancel", localized(cancel), methods=post),
        Route("/api/forget", localized(forget), methods=post),
        Route("/api/history", localized(history)),
        Route("/api/status", localized(status)),
        Route("/api/settings", localized(settings), methods=["GET", "POST"]),
        Route("/api/settings/reset", localized(settings_reset), methods=post),
        Route("/api/versions/{version_id:int}/{kind:str}", localized(version_image)),
        Route("/api/events", localized(events)),
        *(
            Route(route.path, localized(route.endpoint), methods=route.methods)
            for route in recipe_routes(ctx.service, _actor, ctx.max_upload_bytes)
        ),
        Mount("/static", StaticFiles(directory=STATIC)),
    ]
    app = Starlette(routes=routes, exception_handlers={Refused: refused, 404: not_found})
    return Guard(app, loopback_only=ctx.loopback_only)


async def _event_stream(ctx: WebContext, actor: Actor) -> AsyncIterator[str]:
    async with ctx.delivery.stream(actor) as queue:
        yield "retry: 2000\nevent: ready\ndata: {}\n\n"
        while not ctx.delivery.closing.is_set():
            try:
                event = await asyncio.wait_for(queue.get(), ctx.heartbeat_s)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if event is None:
                return
            yield f"event: {event.name}\ndata: {json.dumps(event.data)}\n\n"


Endpoint = Callable[[Request], Awaitable[Response]]


@functools.cache
def page_html(locale: str) -> str:
    """index.html worded in `locale`, with its language and writing direction on <html>."""
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace("{{lang}}", locale)
    page = page.replace("{{dir}}", "rtl" if catalogues.is_right_to_left(locale) else "ltr")
    for key in PAGE_TEXTS:
        page = page.replace("{{" + key.value + "}}", html.escape(render(key, locale=locale)))
    return page


def _reply(reply: Reply) -> Response:
    return JSONResponse(reply_json(reply), status_for(reply))


def _set_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=COOKIE_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
