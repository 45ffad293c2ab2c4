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
    TypeHandler,
    filters,
)

from bot.app import Components, FrontendError
from bot.config import Settings
from bot.service import catalogues
from bot.service.messages import SOURCE_LOCALE, Key, render
from bot.telegram import admin, handlers, recipes
from bot.telegram.delivery import PLATFORM, Delivery
from bot.telegram.handlers import BOT_API_DOWNLOAD_LIMIT, TelegramContext

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.telegram.org/bot"

COMMANDS: tuple[tuple[str, Key], ...] = (
    ("start", Key.COMMAND_START),
    ("help", Key.COMMAND_HELP),
    ("undo", Key.COMMAND_UNDO),
    ("redo", Key.COMMAND_REDO),
    ("regenerate", Key.COMMAND_REGENERATE),
    ("variations", Key.COMMAND_VARIATIONS),
    ("stronger", Key.COMMAND_STRONGER),
    ("subtler", Key.COMMAND_SUBTLER),
    ("history", Key.COMMAND_HISTORY),
    ("reset", Key.COMMAND_RESET),
    ("settings", Key.COMMAND_SETTINGS),
    ("model", Key.COMMAND_MODEL),
    ("cancel", Key.COMMAND_CANCEL),
    ("status", Key.COMMAND_STATUS),
    ("forget", Key.COMMAND_FORGET),
    ("language", Key.COMMAND_LANGUAGE),
    ("keep", Key.COMMAND_KEEP),
    ("only", Key.COMMAND_ONLY),
    ("regions", Key.COMMAND_REGIONS),
    ("upscale", Key.COMMAND_UPSCALE),
    ("cutout", Key.COMMAND_CUTOUT),
    ("white", Key.COMMAND_WHITE),
    ("recipe", Key.COMMAND_RECIPE),
    ("recipes", Key.COMMAND_RECIPES),
)
"""The command menu: each command's description is a catalogue text, so it is translated."""

COMMAND_HANDLERS = {
    "start": handlers.start,
    "help": handlers.help_command,
    "undo": handlers.undo,
    "redo": handlers.redo,
    "regenerate": handlers.regenerate,
    "variations": handlers.variations,
    "stronger": handlers.stronger,
    "subtler": handlers.subtler,
    "history": handlers.history,
    "reset": handlers.reset,
    "settings": handlers.settings,
    "model": handlers.model,
    "cancel": handlers.cancel,
    "status": handlers.status,
    "forget": handlers.forget,
    "language": handlers.language,
    "keep": handlers.keep,
    "only": handlers.only,
    "regions": handlers.regions,
    "upscale": handlers.upscale,
    "cutout": handlers.cutout,
    "white": handlers.white,
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
    localized = handlers.localized
    # Access control first: a refused user's update stops before any handler (issue 16).
    application.add_handler(TypeHandler(Update, admin.gate), group=-1)
    for name, callback in COMMAND_HANDLERS.items():
        application.add_handler(CommandHandler(name, localized(callback)))
    for name, callback in admin.ADMIN_COMMANDS.items():
        application.add_handler(CommandHandler(name, localized(callback)))
    # Recipes (issue 17): album items are collected first, /recipe captions applied, recipe
    # files imported; everything else reaches the handlers below as before.
    images = filters.PHOTO | filters.Document.IMAGE
    application.add_handler(
        MessageHandler(images & recipes.IN_ALBUM, localized(recipes.album_item))
    )
    application.add_handler(
        MessageHandler(images & recipes.CAPTIONED, localized(recipes.captioned))
    )
    application.add_handler(MessageHandler(recipes.RECIPE_FILE, localized(recipes.recipe_file)))
    application.add_handler(MessageHandler(filters.PHOTO, localized(handlers.photo)))
    application.add_handler(
        MessageHandler(
            filters.Sticker.ALL
            | filters.ANIMATION
            | filters.VIDEO
            | filters.VIDEO_NOTE
            | filters.VOICE
            | filters.AUDIO,
            localized(handlers.unsupported_media),
        )
    )
    # After the media filter: Telegram also attaches GIFs as documents.
    application.add_handler(MessageHandler(filters.Document.ALL, localized(handlers.document)))
    application.add_handler(
        MessageHandler(filters.TEXT & ~filters.COMMAND, localized(handlers.text))
    )
    application.add_handler(CallbackQueryHandler(localized(handlers.button)))
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
            await register_commands(application.bot)
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


async def register_commands(bot: Bot) -> None:
    """The command menu in every catalogue language, English for everyone else.

    Telegram shows a user the list set for their app's language_code, else the default one.
    """
    await bot.set_my_commands([BotCommand(n, render(k, locale=SOURCE_LOCALE)) for n, k in COMMANDS])
    for locale in catalogues.available():
        if locale != SOURCE_LOCALE:
            menu = [BotCommand(name, render(key, locale=locale)) for name, key in COMMANDS]
            await bot.set_my_commands(menu, language_code=locale)


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
