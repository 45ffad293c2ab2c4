"""Discord API object shapes and checks for the fake in ``tests.fakes.discord_api``.

Pure functions: snowflakes, user/member/role/channel/attachment payloads, Discord's error
bodies, and the validations Discord applies to message bodies and application commands.
"""

from __future__ import annotations

import datetime as dtm
import io
import mimetypes
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

JSONDict = dict[str, Any]

DISCORD_EPOCH_MS = 1_420_070_400_000

# Permission bits (https://discord.com/developers/docs/topics/permissions)
ADMINISTRATOR = 1 << 3
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_APPLICATION_COMMANDS = 1 << 31
ALL_PERMISSIONS = (1 << 51) - 1

DEFAULT_BOT_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | ADD_REACTIONS
    | USE_APPLICATION_COMMANDS
)
USER_PERMISSIONS = DEFAULT_BOT_PERMISSIONS

# Gateway intents
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT

# Message flags
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12

MAX_CONTENT_LENGTH = 2000
MAX_EMBEDS = 10
MAX_ACTION_ROWS = 5
MAX_ROW_BUTTONS = 5
DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024

_COMMAND_NAME = re.compile(r"[-_'\w]{1,32}")
_MENTION = re.compile(r"<@!?(\d+)>")


class DiscordError(Exception):
    """An error answer: HTTP ``status`` with Discord's JSON body ``{"code", "message"[, "errors"]}``."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: JSONDict | None = None,
        body: JSONDict | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self._body = body
        self.headers = headers or {}

    def body(self) -> JSONDict:
        if self._body is not None:
            return self._body
        body: JSONDict = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def unknown_channel() -> DiscordError:
    return DiscordError(404, 10003, "Unknown Channel")


def unknown_message() -> DiscordError:
    return DiscordError(404, 10008, "Unknown Message")


def unknown_webhook() -> DiscordError:
    return DiscordError(404, 10015, "Unknown Webhook")


def unknown_interaction() -> DiscordError:
    return DiscordError(404, 10062, "Unknown interaction")


def missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def invalid_webhook_token() -> DiscordError:
    return DiscordError(401, 50027, "Invalid Webhook Token")


def already_acknowledged() -> DiscordError:
    return DiscordError(400, 40060, "Interaction has already been acknowledged.")


def invalid_form(path: str, code: str, message: str) -> DiscordError:
    """50035 Invalid Form Body with Discord's nested ``errors`` object for ``path`` (a.b.0.c)."""
    errors: JSONDict = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(path.split(".")):
        errors = {part: errors}
    return DiscordError(400, 50035, "Invalid Form Body", errors=errors)


def default_error(status: int, *, retry_after: float = 0.5, is_global: bool = False) -> JSONDict:
    """The body Discord sends for ``status`` when a test does not name one."""
    if status == 429:
        return {
            "message": "You are being rate limited.",
            "retry_after": retry_after,
            "global": is_global,
        }
    return {
        400: {"message": "Invalid Form Body", "code": 50035},
        401: {"message": "401: Unauthorized", "code": 0},
        403: {"message": "Missing Permissions", "code": 50013},
        404: {"message": "Unknown Message", "code": 10008},
        413: {"message": "Request entity too large", "code": 40005},
        500: {"message": "500: Internal Server Error", "code": 0},
        502: {"message": "502: Bad Gateway", "code": 0},
        503: {"message": "503: Service Unavailable", "code": 0},
    }.get(status, {"message": f"{status}: Error", "code": 0})


class Snowflakes:
    """Unique, increasing snowflakes whose timestamp part is now."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            now = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
            self._last = max(self._last + 1, now)
            return self._last


def iso_now() -> str:
    return dtm.datetime.now(dtm.UTC).isoformat()


def user_payload(user_id: int, name: str, *, bot: bool = False) -> JSONDict:
    return {
        "id": str(user_id),
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
        "system": False,
        "public_flags": 0,
        "flags": 0,
        "banner": None,
        "accent_color": None,
        "avatar_decoration_data": None,
    }


def member_payload(user: JSONDict, roles: list[int], *, joined_at: str) -> JSONDict:
    return {
        "user": user,
        "nick": None,
        "avatar": None,
        "roles": [str(role) for role in roles],
        "joined_at": joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }


def role_payload(
    role_id: int, name: str, permissions: int, position: int, *, managed: bool
) -> JSONDict:
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": managed,
        "mentionable": False,
        "flags": 0,
    }


def guess_content_type(filename: str | None) -> str:
    guessed = mimetypes.guess_type(filename or "", strict=False)[0]
    return guessed or "application/octet-stream"


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) when ``data`` is an image Pillow reads, else None."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return None


@dataclass(frozen=True)
class Upload:
    """A file a simulated user attaches (message attachment or slash command option).

    ``size`` may claim more than ``len(data)`` to exercise size checks without a big buffer;
    ``width``/``height`` default to the image's own (read with Pillow) for images.
    """

    filename: str
    data: bytes
    content_type: str | None = None
    width: int | None = None
    height: int | None = None
    size: int | None = None
    description: str | None = None

    @classmethod
    def of(cls, spec: Any) -> Upload:
        """An Upload from an Upload or a ``(filename, bytes[, content_type[, width, height]])`` tuple."""
        if isinstance(spec, Upload):
            return spec
        if isinstance(spec, tuple | list) and 2 <= len(spec) <= 6:
            return cls(*spec)
        raise TypeError(f"not an attachment spec: {spec!r}")


def mentioned_ids(content: str) -> list[int]:
    return [int(found) for found in _MENTION.findall(content or "")]


# ---------------------------------------------------------------------------------------------
# Checks Discord applies to message bodies
# ---------------------------------------------------------------------------------------------


def check_message_body(payload: JSONDict, *, new_files: int, creating: bool) -> None:
    """Raise the error Discord answers for an invalid message create/edit body."""
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        raise invalid_form("content", "BASE_TYPE_STRING", "Must be a string.")
    if content is not None and len(content) > MAX_CONTENT_LENGTH:
        raise invalid_form(
            "content", "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_CONTENT_LENGTH} or fewer in length."
        )
    embeds = payload.get("embeds") or []
    if len(embeds) > MAX_EMBEDS:
        raise invalid_form("embeds", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
    for index, embed in enumerate(embeds):
        _check_embed(index, embed)
    _check_components(payload.get("components") or [])
    if creating and not (
        content
        or embeds
        or new_files
        or payload.get("components")
        or payload.get("sticker_ids")
        or payload.get("poll")
        or payload.get("attachments")
    ):
        raise DiscordError(400, 50006, "Cannot send an empty message")


def _check_embed(index: int, embed: Any) -> None:
    if not isinstance(embed, dict):
        raise invalid_form(f"embeds.{index}", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
    limits = {"title": 256, "description": 4096}
    for key, limit in limits.items():
        value = embed.get(key)
        if value is not None and len(str(value)) > limit:
            raise invalid_form(
                f"embeds.{index}.{key}",
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {limit} or fewer in length.",
            )
    if len(embed.get("fields") or []) > 25:
        raise invalid_form(
            f"embeds.{index}.fields", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
        )


def _check_components(rows: Any) -> None:
    if not isinstance(rows, list):
        raise invalid_form("components", "BASE_TYPE_ARRAY", "Must be an array.")
    if len(rows) > MAX_ACTION_ROWS and all(row.get("type") == 1 for row in rows):
        raise invalid_form("components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    seen: set[str] = set()
    for index, component in enumerate(_walk_components(rows)):
        path = f"components.{index}"
        if component.get("type") == 1:
            children = component.get("components") or []
            buttons = [child for child in children if child.get("type") == 2]
            if len(buttons) > MAX_ROW_BUTTONS:
                raise invalid_form(
                    f"{path}.components", "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length."
                )
            continue
        custom_id = component.get("custom_id")
        if component.get("type") == 2:
            style = component.get("style")
            if style == 5 and not component.get("url"):
                raise invalid_form(f"{path}.url", "BASE_TYPE_REQUIRED", "This field is required")
            if style not in (5, 6) and not custom_id:
                raise invalid_form(
                    f"{path}.custom_id", "BASE_TYPE_REQUIRED", "This field is required"
                )
            if len(component.get("label") or "") > 80:
                raise invalid_form(
                    f"{path}.label", "BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length."
                )
        if custom_id is not None:
            if len(custom_id) > 100:
                raise invalid_form(
                    f"{path}.custom_id", "BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length."
                )
            if custom_id in seen:
                raise invalid_form(
                    f"{path}.custom_id",
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                )
            seen.add(custom_id)


def _walk_components(components: list[JSONDict]) -> list[JSONDict]:
    found: list[JSONDict] = []
    for component in components:
        if not isinstance(component, dict):
            raise invalid_form("components", "MODEL_TYPE_CONVERT", "Only dictionaries may be used")
        found.append(component)
        found.extend(_walk_components(component.get("components") or []))
        accessory = component.get("accessory")
        if isinstance(accessory, dict):
            found.append(accessory)
    return found


def find_component(components: list[JSONDict], custom_id: str) -> JSONDict | None:
    return next(
        (c for c in _walk_components(components) if c.get("custom_id") == custom_id),
        None,
    )


# ---------------------------------------------------------------------------------------------
# Application commands
# ---------------------------------------------------------------------------------------------


def check_commands(commands: Any) -> None:
    """Discord's checks on a bulk-overwrite body (the parts a bot is likely to get wrong)."""
    if not isinstance(commands, list):
        raise invalid_form("_", "BASE_TYPE_ARRAY", "Must be an array.")
    seen: set[tuple[int, str]] = set()
    for index, command in enumerate(commands):
        check_command(command, f"{index}")
        key = (command.get("type", 1), command["name"])
        if key in seen:
            raise invalid_form(
                f"{index}.name",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                f"Application command names must be unique: {command['name']}",
            )
        seen.add(key)


def check_command(command: Any, path: str) -> None:
    if not isinstance(command, dict) or not isinstance(command.get("name"), str):
        raise invalid_form(f"{path}.name", "BASE_TYPE_REQUIRED", "This field is required")
    kind = command.get("type", 1)
    name = command["name"]
    if kind == 1:
        if not _COMMAND_NAME.fullmatch(name) or name != name.lower():
            raise invalid_form(
                f"{path}.name",
                "APPLICATION_COMMAND_INVALID_NAME",
                f"Command name is invalid: {name!r}",
            )
        description = command.get("description") or ""
        if not 1 <= len(description) <= 100:
            raise invalid_form(
                f"{path}.description",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
    elif not 1 <= len(name) <= 32:
        raise invalid_form(
            f"{path}.name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 32 in length."
        )
    _check_options(command.get("options") or [], f"{path}.options")


def _check_options(options: list[JSONDict], path: str) -> None:
    if len(options) > 25:
        raise invalid_form(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    for index, option in enumerate(options):
        name = option.get("name") or ""
        if not _COMMAND_NAME.fullmatch(name) or name != name.lower():
            raise invalid_form(
                f"{path}.{index}.name",
                "APPLICATION_COMMAND_INVALID_NAME",
                f"Option name is invalid: {name!r}",
            )
        if not 1 <= len(option.get("description") or "") <= 100:
            raise invalid_form(
                f"{path}.{index}.description",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            )
        if option.get("type") in (1, 2):
            _check_options(option.get("options") or [], f"{path}.{index}.options")
            continue
        if option.get("required"):
            if seen_optional:
                raise invalid_form(
                    f"{path}.{index}.required",
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(option.get("choices") or []) > 25:
            raise invalid_form(
                f"{path}.{index}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
            )


def normalize_command(
    command: JSONDict, *, command_id: int, application_id: int, guild_id: int | None, version: int
) -> JSONDict:
    """The ApplicationCommand object Discord answers for a command the bot registered."""
    kind = command.get("type", 1)
    stored: JSONDict = {
        "id": str(command_id),
        "application_id": str(application_id),
        "version": str(version),
        "type": kind,
        "name": command["name"],
        "name_localizations": command.get("name_localizations"),
        "description": command.get("description", "") if kind == 1 else "",
        "description_localizations": command.get("description_localizations"),
        "default_member_permissions": command.get("default_member_permissions"),
        "nsfw": bool(command.get("nsfw", False)),
        "integration_types": command.get("integration_types") or [0],
        "contexts": command.get("contexts"),
    }
    if command.get("options"):
        stored["options"] = command["options"]
    if guild_id is not None:
        stored["guild_id"] = str(guild_id)
    else:
        stored["dm_permission"] = command.get("dm_permission", True)
    return stored
