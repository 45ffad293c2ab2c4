"""The chat frontends `pix2chat run` can start, and which ones the settings enable."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.app import Frontend
from bot.config import Settings


@dataclass(frozen=True, slots=True)
class FrontendSpec:
    name: str
    token_setting: str
    enabled: Callable[[Settings], bool]
    factory: Callable[[Settings], Frontend] | None
    """Builds the frontend; None for a frontend this version does not ship."""
    summary: Callable[[Settings], str] = lambda _settings: "token set"
    """What `pix2chat doctor` says about an enabled frontend."""


def _telegram(settings: Settings) -> Frontend:
    from bot.telegram.frontend import TelegramFrontend  # imports python-telegram-bot

    return TelegramFrontend(settings)


def _discord(settings: Settings) -> Frontend:
    from bot.discord.frontend import DiscordFrontend  # imports discord.py

    return DiscordFrontend(settings)


def _web(settings: Settings) -> Frontend:
    from bot.web.frontend import WebFrontend  # imports starlette and uvicorn

    return WebFrontend(settings)


def _web_enabled(settings: Settings) -> bool:
    """Asked for, or the only way to talk to pix2chat when no bot token is set."""
    return settings.web_enabled or not settings.has_frontend()


def _web_summary(settings: Settings) -> str:
    where = f"http://{settings.web_host}:{settings.web_port}"
    return where + (", password set" if settings.web_password is not None else "")


FRONTENDS: tuple[FrontendSpec, ...] = (
    FrontendSpec(
        "Telegram", "PIX2CHAT_TELEGRAM_TOKEN", lambda s: s.telegram_token is not None, _telegram
    ),
    FrontendSpec(
        "Discord", "PIX2CHAT_DISCORD_TOKEN", lambda s: s.discord_token is not None, _discord
    ),
    FrontendSpec("Web chat", "PIX2CHAT_WEB_ENABLED", _web_enabled, _web, _web_summary),
)


def configured(settings: Settings) -> list[FrontendSpec]:
    """Frontends whose token is set, and the web chat when asked for or when no token is."""
    return [spec for spec in FRONTENDS if spec.enabled(settings)]
