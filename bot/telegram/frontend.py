"""Wiring: the python-telegram-bot Application, its handlers, and the serve loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from urllib.parse import urlsplit

from telegram import Bot, BotCommand, Update
from telegram.error import InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    BaseRateLimiter,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.app import Components, FrontendError
from bot.config import Settings
from bot.telegram import handlers, recipes
from bot.telegram.delivery import PLATFORM, Delivery
from bot.telegram.handlers import BOT_API_DOWNLOAD_LIMIT, TelegramContext

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.telegram.org/bot"

COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "Welcome and examples"),
    ("help", "How to use the bot"),
    ("undo", "Back to the previous version"),
    ("redo", "Forward again after an undo"),
    ("regenerate", "Same instruction, new seed"),
    ("history", "Your chain of edits"),
    ("reset", "Start over from the original photo"),
    ("settings", "Steps, guidance, seed, resolution"),
    ("cancel", "Cancel the queued edit"),
    ("status", "Where your edit is in the queue"),
    ("forget", "Delete all your images and history"),
    ("recipe", "Save, show or apply a recipe of edits"),
    ("recipes", "Your saved recipes"),
)

COMMAND_HANDLERS = {
    "start": handlers.start,
    "help": handlers.help_command,
    "undo": handlers.undo,
    "redo": handlers.redo,
    "regenerate": handlers.regenerate,
    "history": handlers.history,
    "reset": handlers.reset,
    "settings": handlers.settings,
    "cancel": handlers.cancel,
    "status": handlers.status,
    "forget": handlers.forget,
    "recipe": recipes.recipe,
    "recipes": recipes.recipes,
}


def build_application(
    settings: Settings, rate_limiter: BaseRateLimiter | None = None
) -> Application:
    """The PTB application with Telegram's flood limits and every handler registered.

    The default rate limiter keeps under Telegram's limits (30 messages/s overall, 20 a minute
    per group) and retries after a 429 for as long as Telegram asks.
    """
    assert settings.telegram_token is not None
    application = (
        ApplicationBuilder()
        .token(settings.telegram_token.get_secret_value())
        .base_url(settings.telegram_api_url)
        .base_file_url(settings.telegram_file_url)
        .rate_limiter(rate_limiter or AIORateLimiter(max_retries=3))
        .build()
    )
    for name, callback in COMMAND_HANDLERS.items():
        application.add_handler(CommandHandler(name, callback))
    # Recipes (issue 17): album items are collected first, /recipe captions applied, recipe
    # files imported; everything else reaches the handlers below as before.
    images = filters.PHOTO | filters.Document.IMAGE
    application.add_handler(MessageHandler(images & recipes.IN_ALBUM, recipes.album_item))
    application.add_handler(MessageHandler(images & recipes.CAPTIONED, recipes.captioned))
    application.add_handler(MessageHandler(recipes.RECIPE_FILE, recipes.recipe_file))
    application.add_handler(MessageHandler(filters.PHOTO, handlers.photo))
    application.add_handler(
        MessageHandler(
            filters.Sticker.ALL
            | filters.ANIMATION
            | filters.VIDEO
            | filters.VIDEO_NOTE
            | filters.VOICE
            | filters.AUDIO,
            handlers.unsupported_media,
        )
    )
    # After the media filter: Telegram also attaches GIFs as documents.
    application.add_handler(MessageHandler(filters.Document.ALL, handlers.document))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handlers.text))
    application.add_handler(CallbackQueryHandler(handlers.button))
    application.add_error_handler(handlers.on_error)
    return application


class TelegramFrontend:
    """Long-polls the Bot API and serves chats until told to stop."""

    name = "Telegram"

    def __init__(self, settings: Settings, rate_limiter: BaseRateLimiter | None = None) -> None:
        self.settings = settings
        self.rate_limiter = rate_limiter

    async def preflight(self) -> None:
        """Ask Telegram who we are: a refused token fails now, not after loading the model."""
        assert self.settings.telegram_token is not None
        bot = Bot(
            self.settings.telegram_token.get_secret_value(),
            base_url=self.settings.telegram_api_url,
            base_file_url=self.settings.telegram_file_url,
        )
        try:
            async with bot:
                log.info("Telegram: token accepted for @%s", bot.username)
        except InvalidToken as error:
            raise FrontendError(
                "Telegram refused PIX2CHAT_TELEGRAM_TOKEN. Copy the token again from @BotFather "
                f"(it looks like 123456:ABC...) and check PIX2CHAT_TELEGRAM_API_URL ({self.settings.telegram_api_url})."
            ) from error
        except NetworkError as error:
            log.warning(
                "Telegram: cannot reach %s yet (%s); will keep trying",
                self.settings.telegram_api_url,
                error,
            )

    async def run(self, components: Components, stop: asyncio.Event) -> None:
        settings = self.settings
        application = build_application(settings, self.rate_limiter)
        delivery = Delivery(application.bot, components.service)
        local_server = settings.telegram_api_url != DEFAULT_API_URL
        application.bot_data["pix2chat"] = TelegramContext(
            service=components.service,
            delivery=delivery,
            download_limit=settings.max_upload_bytes
            if local_server
            else min(settings.max_upload_bytes, BOT_API_DOWNLOAD_LIMIT),
        )
        if not await _initialize(application, stop):
            return
        components.service.subscribe(PLATFORM, delivery.on_event)
        try:
            await self._serve(application, components, stop, delivery)
        finally:
            components.service.unsubscribe(PLATFORM, delivery.on_event)

    async def _serve(
        self,
        application: Application,
        components: Components,
        stop: asyncio.Event,
        delivery: Delivery,
    ) -> None:
        settings = self.settings
        async with application:
            await application.bot.set_my_commands([BotCommand(n, d) for n, d in COMMANDS])
            await application.start()
            assert application.updater is not None
            if settings.telegram_webhook_url:
                await application.updater.start_webhook(
                    listen=settings.telegram_webhook_listen,
                    port=settings.telegram_webhook_port,
                    url_path=urlsplit(settings.telegram_webhook_url).path.lstrip("/"),
                    webhook_url=settings.telegram_webhook_url,
                    secret_token=_webhook_secret(settings),
                    allowed_updates=Update.ALL_TYPES,
                )
                log.info(
                    "Telegram: webhook %s, listening on %s:%d",
                    settings.telegram_webhook_url,
                    settings.telegram_webhook_listen,
                    settings.telegram_webhook_port,
                )
            else:
                await application.updater.start_polling(
                    timeout=settings.telegram_poll_timeout,
                    allowed_updates=Update.ALL_TYPES,
                )
            log.info("Telegram: serving as @%s", application.bot.username)
            redelivered = await components.service.redeliver(PLATFORM)
            if redelivered:
                log.info("Telegram: delivered %d result(s) that finished while away", redelivered)
            await stop.wait()
            await application.updater.stop()
            await delivery.close()
            await application.stop()


async def _initialize(application: Application, stop: asyncio.Event) -> bool:
    """Connect, retrying while the network is down; False if stopped before connecting."""
    delay = 1.0
    while not stop.is_set():
        try:
            await application.initialize()
            return True
        except InvalidToken as error:
            raise FrontendError("Telegram refused PIX2CHAT_TELEGRAM_TOKEN.") from error
        except NetworkError as error:
            log.warning("Telegram: cannot connect (%s); retrying in %.0f s", error, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 60.0)
    return False


def _webhook_secret(settings: Settings) -> str:
    """Telegram sends it back with every update, so strangers cannot post fake ones."""
    if settings.telegram_webhook_secret is not None:
        return settings.telegram_webhook_secret.get_secret_value()
    return secrets.token_urlsafe(32)
