"""Wiring: bind the port, serve the web chat with uvicorn inside the running loop, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Iterator

import uvicorn

from bot.app import Components, FrontendError
from bot.config import Settings
from bot.web.app import WebContext, create_app
from bot.web.delivery import WebDelivery
from bot.web.sessions import PLATFORM, Sessions, is_loopback

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 5

NEEDS_PASSWORD = (
    "PIX2CHAT_WEB_HOST={host} lets other machines reach the web chat, so it needs a password: "
    "set PIX2CHAT_WEB_PASSWORD (everyone who knows it can use the chat, each browser with its "
    "own private history), or keep the default PIX2CHAT_WEB_HOST=127.0.0.1."
)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: `pix2chat run` owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebFrontend:
    """The local web chat: one page and a JSON/SSE API on the shared conversation service."""

    name = "Web chat"

    def __init__(self, settings: Settings, announce: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.announce = announce or (lambda text: print(text, flush=True))
        self._socket: socket.socket | None = None

    @property
    def password(self) -> str | None:
        secret = self.settings.web_password
        return secret.get_secret_value() if secret is not None else None

    async def preflight(self) -> None:
        """Refuse an exposed chat without a password, and take the port before the model loads."""
        host = self.settings.web_host
        if not is_loopback(host) and not self.password:
            raise FrontendError(NEEDS_PASSWORD.format(host=host))
        if self._socket is None:
            self._socket = self._bind()

    def _bind(self) -> socket.socket:
        host, port = self.settings.web_host, self.settings.web_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            listener = socket.create_server((host.strip("[]"), port), family=family)
        except OSError as error:
            raise FrontendError(
                f"The web chat cannot listen on {host}:{port} ({error.strerror or error}). "
                "Set PIX2CHAT_WEB_PORT to a free port (0 picks one)."
            ) from error
        # Accepted connections inherit this: without it, Nagle's algorithm holds a response's
        # body (written after its headers) until the browser's delayed ACK, ~40 ms a request.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return listener

    def url(self) -> str:
        """Where the chat is reachable (after binding: with the real port when 0 was asked)."""
        host, port = self.settings.web_host, self.settings.web_port
        if self._socket is not None:
            port = self._socket.getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{port}"

    async def run(self, components: Components, stop: asyncio.Event) -> None:
        await self.preflight()
        assert self._socket is not None
        delivery = WebDelivery(components.service)
        app = create_app(
            WebContext(
                service=components.service,
                delivery=delivery,
                sessions=Sessions(self.password),
                max_upload_bytes=self.settings.max_upload_bytes,
                loopback_only=is_loopback(self.settings.web_host),
            )
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            proxy_headers=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        server = _Server(config)
        components.service.subscribe(PLATFORM, delivery.on_event)
        serving = asyncio.create_task(server.serve(sockets=[self._socket]), name="web-chat")
        try:
            # uvicorn only has a flag for "started"; it is set within a few loop turns.
            while not server.started and not serving.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            if serving.done():
                serving.result()  # raises what stopped uvicorn from starting
            self._announce_url()
            redelivered = await components.service.redeliver(PLATFORM)
            if redelivered:
                log.info("Web chat: %d result(s) finished while away", redelivered)
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
        finally:
            components.service.unsubscribe(PLATFORM, delivery.on_event)
            await delivery.close()  # ends the open event streams
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            self._socket.close()
            self._socket = None

    def _announce_url(self) -> None:
        url = self.url()
        lines = [f"pix2chat web chat: open {url} in your browser."]
        if self.password:
            lines.append(
                f"It listens on {self.settings.web_host}, so other machines can reach it too; "
                "it asks for PIX2CHAT_WEB_PASSWORD."
            )
        else:
            lines.append("Only this machine can reach it (set PIX2CHAT_WEB_HOST to change that).")
        if not self.settings.has_frontend():
            lines.append(
                "To chat on Telegram or Discord as well, set PIX2CHAT_TELEGRAM_TOKEN or "
                "PIX2CHAT_DISCORD_TOKEN (in the environment or a .env file)."
            )
        self.announce("\n".join(lines))
        log.info("Web chat: serving on %s", url)
