"""Wiring: log in, connect to the gateway, serve until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import discord

from bot.app import Components, FrontendError
from bot.config import Settings
from bot.discord.client import Pix2ChatClient
from bot.discord.delivery import PLATFORM

log = logging.getLogger(__name__)

REFUSED = (
    "Discord refused PIX2CHAT_DISCORD_TOKEN. Copy the bot token again from the developer "
    "portal (Applications -> your app -> Bot -> Reset Token)."
)


class DiscordFrontend:
    """One discord.py client on the shared conversation service."""

    name = "Discord"

    def __init__(self, settings: Settings, client_options: dict[str, Any] | None = None) -> None:
        self.settings = settings
        self.client_options = client_options or {}

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
        client = Pix2ChatClient(self.settings, components.service, **self.client_options)
        if not await self._login(client, stop):
            return
        components.service.subscribe(PLATFORM, client.delivery.on_event)
        connection = asyncio.create_task(client.connect(reconnect=True), name="discord-gateway")
        stopped = asyncio.create_task(stop.wait())
        try:
            ready = asyncio.create_task(client.wait_until_ready())
            await asyncio.wait({ready, connection, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if ready.done() and not stopped.done():
                log.info("Discord: serving as %s", client.user)
                redelivered = await components.service.redeliver(PLATFORM)
                if redelivered:
                    log.info(
                        "Discord: delivered %d result(s) that finished while away", redelivered
                    )
                await asyncio.wait({connection, stopped}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
        finally:
            stopped.cancel()
            components.service.unsubscribe(PLATFORM, client.delivery.on_event)
            await client.delivery.close()
            await client.close()
            with contextlib.suppress(asyncio.CancelledError, discord.ConnectionClosed):
                await connection

    async def _login(self, client: Pix2ChatClient, stop: asyncio.Event) -> bool:
        """Log in, retrying while Discord cannot be reached; False if stopped first."""
        delay = 1.0
        while not stop.is_set():
            try:
                await client.login(self._token())
                return True
            except discord.LoginFailure as error:
                raise FrontendError(REFUSED) from error
            except (discord.HTTPException, OSError) as error:
                log.warning("Discord: cannot log in (%s); retrying in %.0f s", error, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 60.0)
        return False
