"""Wiring: log in, connect to the gateway, serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import discord

from bot.app import Components
from bot.config import Settings
from bot.discord.client import Pix2ChatClient
from bot.discord.delivery import PLATFORM
from bot.frontends import FrontendError

log = logging.getLogger(__name__)

REFUSED = (
    "Discord refused PIX2CHAT_DISCORD_TOKEN. Copy the bot token again from the developer "
    "portal (Applications -> your app -> Bot -> Reset Token)."
)


class DiscordFrontend:
    """One discord.py client on the shared conversation service."""

    name = "Discord"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _token(self) -> str:
        assert self.settings.discord_token is not None
        return self.settings.discord_token.get_secret_value()

    async def preflight(self) -> None:
        """Log in once: a refused token fails before the model loads."""
        client = discord.Client(intents=discord.Intents.none())
        try:
            await client.login(self._token())
            log.info("Discord: token accepted for %s", client.user)
        except discord.LoginFailure as error:
            raise FrontendError(REFUSED) from error
        except (discord.HTTPException, OSError) as error:
            log.warning("Discord: cannot reach Discord yet (%s); will keep trying", error)
        finally:
            await client.close()

    async def run(self, components: Components, stop: asyncio.Event) -> None:
        client = Pix2ChatClient(self.settings, components.service)
        components.service.subscribe(PLATFORM, client.delivery.on_event)
        connection = asyncio.create_task(self._connect(client), name="discord-gateway")
        try:
            await client.wait_until_ready()
            log.info("Discord: serving as %s", client.user)
            redelivered = await components.service.redeliver(PLATFORM)
            if redelivered:
                log.info("Discord: delivered %d result(s) that finished while away", redelivered)
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait({stopped, connection}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
        finally:
            components.service.unsubscribe(PLATFORM, client.delivery.on_event)
            await client.delivery.close()
            await client.close()
            with contextlib.suppress(asyncio.CancelledError):
                await connection
        if connection.done() and not connection.cancelled() and connection.exception():
            raise connection.exception()  # type: ignore[misc]

    async def _connect(self, client: Pix2ChatClient) -> None:
        """Log in and keep the gateway connection (discord.py reconnects by itself)."""
        try:
            await client.start(self._token(), reconnect=True)
        except discord.LoginFailure as error:
            raise FrontendError(REFUSED) from error
