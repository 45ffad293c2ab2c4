"""Request checks in front of every route: the host name (DNS rebinding) and CSRF."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.service import catalogues
from bot.service.messages import Key
from bot.web.render import message_json
from bot.web.sessions import is_loopback


class Guard:
    """Refuses requests for other host names (DNS rebinding) and cross-site writes (CSRF).

    Cookies are SameSite=Strict already; on top of that, a state-changing request from a
    browser must say it comes from this origin (`Sec-Fetch-Site`, or else `Origin`).
    """

    def __init__(self, app: ASGIApp, *, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        refusal: tuple[str, int] | None = None
        if self.loopback_only and not is_loopback(urlsplit(f"//{host}").hostname or ""):
            refusal = (Key.WEB_BAD_HOST, 400)
        elif scope["method"] not in ("GET", "HEAD", "OPTIONS") and not _same_origin(headers):
            refusal = (Key.WEB_FORBIDDEN, 403)
        if refusal is not None:
            key, status = refusal
            hint = catalogues.parse_accept_language(headers.get("accept-language"))
            locale = catalogues.negotiate(hint) or catalogues.SOURCE_LOCALE
            await JSONResponse(message_json(key, locale=locale), status)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _same_origin(headers: Headers) -> bool:
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    return origin is None or urlsplit(origin).netloc == headers.get("host", "")
