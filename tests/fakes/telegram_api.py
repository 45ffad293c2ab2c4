"""A fake Telegram Bot API server on 127.0.0.1, for driving the real python-telegram-bot client.

Why a server and not a mocked ``telegram.Bot``: the frontend's bugs live at the protocol edge
(multipart uploads, JSON-encoded form fields, offsets, 400/403/429 answers, file downloads), and
a mock skips exactly that edge. This fake speaks HTTP like api.telegram.org, so the same
``Application`` that runs in production runs in tests, pointed here with
``ApplicationBuilder().base_url(api.base_url).base_file_url(api.base_file_url)``.

It keeps the state Telegram keeps (chats with per-chat message ids, stored files with file_ids,
pending updates) and answers with Telegram's error descriptions where a bot is likely to rely on
them ("message is not modified", "file is too big", "bot was blocked by the user", retry_after).

Typical use::

    async with FakeBotAPI() as api:
        update = api.send_photo(chat_id=42, user_id=42, image_bytes=png, caption="make it snow")
        call = await api.wait_for("sendPhoto", lambda p: p["chat_id"] == 42)
        assert api.sent(42)[-1].photo == call.files["photo"]
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from aiohttp import web

from tests.fakes.telegram_files import DOWNLOAD_LIMIT, FileStore, ImageError, StoredFile
from tests.fakes.telegram_formatting import (
    EntityParseError,
    apply_parse_mode,
    detect_entities,
    strip_text,
    utf16_len,
)

JSONDict = dict[str, Any]
Params = dict[str, Any]

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_PHOTO_SIDES_SUM = 10_000
MAX_PHOTO_RATIO = 20

NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
GET_UPDATES_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# Update types Telegram leaves out unless allowed_updates names them explicitly.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# Form and multipart fields that are plain strings; every other field holds JSON
# (PTB json-encodes ints, bools, lists and objects but sends strings as they are).
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "file_id",
        "inline_message_id",
        "url",
        "action",
        "emoji",
        "title",
        "description",
        "short_description",
        "name",
        "language_code",
        "business_connection_id",
        "message_effect_id",
        "secret_token",
        "ip_address",
        "photo",
        "document",
        "video",
        "animation",
        "sticker",
        "audio",
        "voice",
        "video_note",
        "thumbnail",
    }
)
_INTEGER_FIELDS = frozenset(
    {
        "chat_id",
        "message_id",
        "user_id",
        "from_chat_id",
        "offset",
        "limit",
        "timeout",
        "reply_to_message_id",
        "message_thread_id",
        "cache_time",
    }
)
_INTEGER = re.compile(r"-?\d+")
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_MEDIA_KEYS = ("photo", "document", "video", "animation", "sticker", "audio", "voice")


class ApiError(Exception):
    """A Bot API error answer: HTTP status ``code`` with Telegram's JSON error body."""

    def __init__(self, code: int, description: str, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after

    def body(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def _bad_request(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


@dataclass
class Call:
    """One answered request: method name as sent, decoded params, uploaded files, the answer."""

    method: str
    params: Params
    files: dict[str, bytes] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)
    status: int = 200
    response: JSONDict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def result(self) -> Any:
        """The ``result`` of a successful answer (None for errors)."""
        return self.response.get("result")


@dataclass(frozen=True)
class SentMessage:
    """A snapshot of a message the bot sent, as the chat shows it now (edits applied).

    ``reply_markup`` is the markup the bot last attached, reply keyboards included (Telegram's
    Message objects only echo inline keyboards). ``photo`` holds the bytes of the largest size;
    ``document`` those of a document, video or animation.
    """

    chat_id: int
    message_id: int
    text: str | None
    caption: str | None
    entities: list[JSONDict]
    reply_markup: JSONDict | None
    photo: bytes | None
    document: bytes | None
    file_name: str | None
    media_group_id: str | None
    reply_to_message_id: int | None
    edit_count: int
    deleted: bool
    raw: JSONDict


@dataclass
class _StoredMessage:
    raw: JSONDict
    from_bot: bool
    markup: JSONDict | None = None
    deleted: bool = False
    edit_count: int = 0


@dataclass
class _Chat:
    info: JSONDict
    messages: dict[int, _StoredMessage] = field(default_factory=dict)
    next_message_id: int = 1


@dataclass
class _Pending:
    """A queued update. A redelivered one (re-pushed update_id) survives confirmation once."""

    update: JSONDict
    redelivery: bool = False
    delivered: bool = False


@dataclass
class _Fault:
    error: ApiError
    remaining: int


@dataclass
class _Upload:
    data: bytes
    file_name: str | None


Handler = Callable[[Params, dict[str, bytes], dict[str, str]], Any]


class FakeBotAPI:
    """The fake server. Use as ``async with FakeBotAPI(...) as api:``; see the module docstring.

    Chats must exist before the bot can write to them, as with Telegram ("chat not found"):
    the simulation helpers (``send_text`` and friends) create them, ``register_chat`` does it
    without sending anything.
    """

    def __init__(
        self,
        token: str = "123:TEST",
        bot_username: str = "pix2chat_bot",
        *,
        bot_first_name: str = "pix2chat",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.bot_username = bot_username
        self.calls: list[Call] = []
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        bot_id, _, _ = token.partition(":")
        self._bot_user: JSONDict = {
            "id": int(bot_id) if bot_id.isdigit() else 1,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._files = FileStore()
        self._chats: dict[int, _Chat] = {}
        self._users: dict[int, JSONDict] = {}
        self._blocked: set[int] = set()
        self._faults: dict[str, list[_Fault]] = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._open_queries: set[str] = set()
        self._webhook_url = ""
        # getUpdates state
        self._pending: list[_Pending] = []
        self._issued_update_ids: set[int] = set()
        self._next_update_id = 100_000_001
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._closing = False
        self._updates_event = asyncio.Event()
        self._calls_event = asyncio.Event()
        self._media_group_ids = itertools.count(13_000_000_000_000_001)
        self._query_ids = itertools.count(4_000_000_000_000_000_001)
        self._handlers: dict[str, Handler] = {
            "getme": self._get_me,
            "logout": self._always_true,
            "close": self._always_true,
            "setwebhook": self._set_webhook,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": self._get_webhook_info,
            "setmycommands": self._set_my_commands,
            "getmycommands": self._get_my_commands,
            "deletemycommands": self._delete_my_commands,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "senddocument": self._send_document,
            "sendmediagroup": self._send_media_group,
            "sendchataction": self._send_chat_action,
            "editmessagetext": self._edit_message_text,
            "editmessagecaption": self._edit_message_caption,
            "editmessagemedia": self._edit_message_media,
            "editmessagereplymarkup": self._edit_message_reply_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
        }

    # -----------------------------------------------------------------------------------------
    # Server life cycle and addresses
    # -----------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeBotAPI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on host:port (port 0: a free one, read back through ``base_url``)."""
        app = web.Application(client_max_size=60 * 1024 * 1024)  # uploads go up to 50 MB
        app.router.add_route("*", "/{tail:.*}", self._serve)
        # handler_cancellation: a long poll whose client hung up must stop waiting, or it would
        # hold shutdown up and count as a competing getUpdates.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        """Answer pending long polls with what they have, then close the server."""
        self._closing = True
        self._wake_pollers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)``/``Bot(base_url=...)``: PTB appends the token."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url(...)``: PTB appends the token."""
        return f"{self.url}/file/bot"

    @property
    def bot_user(self) -> JSONDict:
        return copy.deepcopy(self._bot_user)

    # -----------------------------------------------------------------------------------------
    # Simulated users
    # -----------------------------------------------------------------------------------------

    def register_chat(
        self,
        chat_id: int,
        chat_type: str = "private",
        *,
        title: str | None = None,
        username: str | None = None,
    ) -> JSONDict:
        """Make a chat known (the bot may then write to it); returns its Chat object."""
        chat = self._chats.get(chat_id)
        if chat is None:
            if chat_type == "private":
                user = self._user(chat_id, username)
                info = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
                info["username"] = user["username"]
            else:
                info = {"id": chat_id, "type": chat_type, "title": title or f"Chat {chat_id}"}
            chat = self._chats[chat_id] = _Chat(info)
        return copy.deepcopy(chat.info)

    def send_text(
        self,
        chat_id: int,
        user_id: int,
        text: str,
        *,
        chat_type: str = "private",
        reply_to_message_id: int | None = None,
        entities: list[JSONDict] | None = None,
        username: str | None = None,
    ) -> JSONDict:
        """A user writes ``text``; returns the Update. Commands and @mentions get entities."""
        fields: JSONDict = {"text": text}
        found = detect_entities(text) if entities is None else entities
        if found:
            fields["entities"] = found
        return self._user_update(
            chat_id, user_id, fields, chat_type, reply_to_message_id, username=username
        )

    def send_photo(
        self,
        chat_id: int,
        user_id: int,
        image_bytes: bytes,
        *,
        caption: str | None = None,
        chat_type: str = "private",
        media_group_id: str | None = None,
        reply_to_message_id: int | None = None,
    ) -> JSONDict:
        """A user sends a compressed photo; getFile plus download return ``image_bytes``."""
        sizes = self._files.add_photo(image_bytes)
        fields: JSONDict = {"photo": [size.as_photo_size() for size in sizes]}
        if media_group_id is not None:
            fields["media_group_id"] = media_group_id
        fields.update(_user_caption(caption))
        return self._user_update(chat_id, user_id, fields, chat_type, reply_to_message_id)

    def send_document(
        self,
        chat_id: int,
        user_id: int,
        data: bytes,
        *,
        file_name: str,
        mime_type: str,
        caption: str | None = None,
        chat_type: str = "private",
        file_size: int | None = None,
    ) -> JSONDict:
        """A user sends a file. ``file_size`` can claim more than ``len(data)``: over 20 MB,
        getFile answers "file is too big" as Telegram does, without a big buffer in the test."""
        stored = self._files.add(
            "document", data, file_size=file_size, file_name=file_name, mime_type=mime_type
        )
        fields: JSONDict = {"document": stored.as_document(), **_user_caption(caption)}
        return self._user_update(chat_id, user_id, fields, chat_type, None)

    def send_sticker(
        self,
        chat_id: int,
        user_id: int,
        *,
        emoji: str = "🙂",
        chat_type: str = "private",
        data: bytes = b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    ) -> JSONDict:
        """A user sends a (static, 512x512) sticker."""
        stored = self._files.add("sticker", data, width=512, height=512, mime_type="image/webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": stored.file_size,
        }
        return self._user_update(chat_id, user_id, {"sticker": sticker}, chat_type, None)

    def send_animation(
        self,
        chat_id: int,
        user_id: int,
        *,
        caption: str | None = None,
        chat_type: str = "private",
        data: bytes = b"\x00\x00\x00\x18ftypmp42",
    ) -> JSONDict:
        """A user sends a GIF. Like Telegram, the message carries it twice: as ``animation`` and
        as ``document`` (so a handler filtering on documents sees GIFs too)."""
        stored = self._files.add(
            "animation", data, file_name="animation.mp4", mime_type="video/mp4"
        )
        animation = {**stored.as_document(), "width": 320, "height": 240, "duration": 2}
        fields: JSONDict = {"animation": animation, "document": stored.as_document()}
        fields.update(_user_caption(caption))
        return self._user_update(chat_id, user_id, fields, chat_type, None)

    def send_video(
        self,
        chat_id: int,
        user_id: int,
        *,
        caption: str | None = None,
        chat_type: str = "private",
        data: bytes = b"\x00\x00\x00\x18ftypmp42",
    ) -> JSONDict:
        """A user sends a video."""
        stored = self._files.add("video", data, file_name="video.mp4", mime_type="video/mp4")
        video = {**stored.as_document(), "width": 640, "height": 480, "duration": 3}
        fields: JSONDict = {"video": video, **_user_caption(caption)}
        return self._user_update(chat_id, user_id, fields, chat_type, None)

    def press_button(
        self,
        chat_id: int,
        user_id: int,
        message_id: int,
        data: str,
        chat_type: str = "private",
    ) -> JSONDict:
        """A user presses an inline button with callback ``data`` under a bot message."""
        _check_private_chat(chat_id, user_id, chat_type)
        stored = self._find_message(chat_id, message_id)
        if stored is None or not stored.from_bot:
            raise ValueError(f"the bot sent no message {message_id} in chat {chat_id}")
        query_id = str(next(self._query_ids))
        self._open_queries.add(query_id)
        query = {
            "id": query_id,
            "from": self._user(user_id),
            "message": copy.deepcopy(stored.raw),
            "chat_instance": str(abs(chat_id) * 7919 + 1_000_003),
            "data": data,
        }
        return self.push_raw({"callback_query": query})

    def push_raw(self, update: JSONDict) -> JSONDict:
        """Queue any update. Without ``update_id`` one is assigned; an update_id that was
        already issued is a redelivery: it is delivered again even if it was confirmed."""
        update = copy.deepcopy(update)
        update_id = update.get("update_id")
        redelivery = update_id in self._issued_update_ids
        if update_id is None:
            update_id = update["update_id"] = self._next_update_id
        self._issued_update_ids.add(update_id)
        self._next_update_id = max(self._next_update_id, update_id + 1)
        self._pending.append(_Pending(update, redelivery=redelivery))
        self._wake_pollers()
        return copy.deepcopy(update)

    @property
    def pending_updates(self) -> list[JSONDict]:
        """Updates not yet confirmed through a getUpdates offset."""
        return [copy.deepcopy(p.update) for p in self._pending]

    # -----------------------------------------------------------------------------------------
    # Inspection
    # -----------------------------------------------------------------------------------------

    @overload
    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Params], bool] | None = ...,
        timeout: float = ...,  # noqa: ASYNC109 - a per-call deadline reads best in tests
        count: Literal[1] = ...,
        *,
        since: int = ...,
    ) -> Call: ...

    @overload
    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Params], bool] | None = ...,
        timeout: float = ...,  # noqa: ASYNC109 - a per-call deadline reads best in tests
        count: int = ...,
        *,
        since: int = ...,
    ) -> list[Call]: ...

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Params], bool] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 - a per-call deadline reads best in tests
        count: int = 1,
        *,
        since: int = 0,
    ) -> Call | list[Call]:
        """Wait until ``count`` answered calls of ``method`` match ``predicate(params)``.

        Returns the first match for ``count=1``, else the first ``count`` matches as a list.
        Failed calls (error answers) match too; check ``call.ok``. ``since`` skips the first
        ``since`` recorded calls: pass ``len(api.calls)`` to wait for a new call only.
        Raises TimeoutError listing the calls seen, which usually explains the failure.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    event = self._calls_event
                    matches = self.calls_to(method, predicate, since=since)
                    if len(matches) >= count:
                        return matches[0] if count == 1 else matches[:count]
                    await event.wait()
        except TimeoutError:
            seen = ", ".join(f"{c.method}({c.status})" for c in self.calls[since:])
            found = len(self.calls_to(method, predicate, since=since))
            raise TimeoutError(
                f"{found} of {count} {method} call(s) after {timeout}s; calls: [{seen}]"
            ) from None

    def calls_to(
        self,
        method: str,
        predicate: Callable[[Params], bool] | None = None,
        *,
        since: int = 0,
    ) -> list[Call]:
        """Recorded calls of ``method`` (case-insensitive, as Telegram) matching predicate."""
        name = method.lower()
        return [
            call
            for call in self.calls[since:]
            if call.method.lower() == name and (predicate is None or predicate(call.params))
        ]

    def sent(self, chat_id: int, *, include_deleted: bool = False) -> list[SentMessage]:
        """The messages the bot sent to ``chat_id``, oldest first, as they look now."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        return [
            self._snapshot(chat_id, stored)
            for _, stored in sorted(chat.messages.items())
            if stored.from_bot and (include_deleted or not stored.deleted)
        ]

    def message(self, chat_id: int, message_id: int) -> JSONDict:
        """The current Message object of any message in a chat (user's or bot's)."""
        stored = self._find_message(chat_id, message_id)
        if stored is None:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        return copy.deepcopy(stored.raw)

    def photo_bytes(self, message: SentMessage | Mapping[str, Any] | Any) -> bytes:
        """Bytes of the largest photo size of a SentMessage, a Message dict or a PTB Message."""
        if isinstance(message, SentMessage):
            if message.photo is None:
                raise ValueError(f"message {message.message_id} has no photo")
            return message.photo
        sizes = message.get("photo") if isinstance(message, Mapping) else message.photo
        if not sizes:
            raise ValueError("message has no photo")
        # Largest area wins; on a tie the later entry, as Telegram lists sizes small to large.
        _, largest = max(
            enumerate(sizes),
            key=lambda item: (_field(item[1], "width") * _field(item[1], "height"), item[0]),
        )
        return self.file_bytes(_field(largest, "file_id"))

    def file_bytes(self, file_id: str) -> bytes:
        stored = self._files.get(file_id)
        if stored is None:
            raise KeyError(f"unknown file_id {file_id!r}")
        return stored.data

    def set_language(self, user_id: int, language_code: str | None) -> None:
        """The language of the user's Telegram app, sent as ``from.language_code`` (None: the
        field is absent, as for users who hide it)."""
        user = self._users.setdefault(user_id, self._user(user_id))
        if language_code is None:
            user.pop("language_code", None)
        else:
            user["language_code"] = language_code

    def commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """The command list set through setMyCommands for a scope and language."""
        return copy.deepcopy(self._commands.get(_commands_key(scope, language_code), []))

    # -----------------------------------------------------------------------------------------
    # Fault injection
    # -----------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int = 1,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error instead of running them.

        The default is Telegram's flood-control answer, 429 with ``parameters.retry_after``
        (PTB raises RetryAfter); ``retry_after`` is only sent with 429. ``description``
        defaults to Telegram's wording for the code.
        """
        if description is None:
            description = _default_description(error_code, retry_after)
        error = ApiError(
            error_code, description, retry_after=retry_after if error_code == 429 else None
        )
        self._faults.setdefault(method.lower(), []).append(_Fault(error, times))

    def block_chat(self, chat_id: int) -> None:
        """The user blocks the bot: sends and edits in the chat answer 403 from now on."""
        self._blocked.add(chat_id)

    def unblock_chat(self, chat_id: int) -> None:
        self._blocked.discard(chat_id)

    # -----------------------------------------------------------------------------------------
    # HTTP
    # -----------------------------------------------------------------------------------------

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path.startswith("/file/bot"):
            return self._download(path.removeprefix("/file/bot"))
        if not path.startswith("/bot"):
            return _json(ApiError(404, "Not Found").body(), 404)
        token, _, method = path.removeprefix("/bot").partition("/")
        call = Call(method=method, params={})
        try:
            call.params, call.files, call.file_names = await _read_params(request)
            if token != self.token:
                raise ApiError(401, "Unauthorized")
            result = await self._execute(method, call.params, call.files, call.file_names)
        except ApiError as error:
            call.status, call.response = error.code, error.body()
        except Exception as exc:  # a bug in the fake or a request it cannot read
            # Answer like a broken server (PTB raises NetworkError) but keep the cause visible
            # in the recorded call rather than only in aiohttp's log.
            failure = ApiError(500, f"Internal Server Error: fake Bot API raised {exc!r}")
            call.status, call.response = failure.code, failure.body()
        else:
            call.response = {"ok": True, "result": result}
        self.calls.append(call)
        self._calls_event.set()
        self._calls_event = asyncio.Event()
        return _json(call.response, call.status)

    def _download(self, rest: str) -> web.Response:
        token, _, file_path = rest.partition("/")
        if token != self.token:
            return _json(ApiError(401, "Unauthorized").body(), 401)
        stored = self._files.by_path(file_path)
        if stored is None:
            return _json(ApiError(404, "Not Found").body(), 404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _execute(
        self, method: str, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> Any:
        name = method.lower()
        handler = self._handlers.get(name)
        if handler is None:
            raise ApiError(404, "Not Found: method not found")
        self._raise_injected_fault(name)
        self._raise_if_blocked(name, params)
        result = handler(params, files, names)
        if isinstance(result, Awaitable):
            result = await result
        return result

    def _raise_injected_fault(self, name: str) -> None:
        faults = self._faults.get(name)
        if not faults:
            return
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.pop(0)
        raise fault.error

    def _raise_if_blocked(self, name: str, params: Params) -> None:
        if not name.startswith(("send", "edit", "copy", "forward")):
            return
        chat_id = params.get("chat_id")
        if chat_id not in self._blocked:
            return
        chat_type = self._chats[chat_id].info["type"] if chat_id in self._chats else "private"
        if chat_type == "private":
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        raise ApiError(403, f"Forbidden: bot was kicked from the {chat_type} chat")

    # -----------------------------------------------------------------------------------------
    # Methods: bot and webhook
    # -----------------------------------------------------------------------------------------

    def _get_me(self, params: Params, files: dict[str, bytes], names: dict[str, str]) -> JSONDict:
        return self.bot_user

    def _always_true(self, params: Params, files: dict[str, bytes], names: dict[str, str]) -> bool:
        return True

    def _set_webhook(self, params: Params, files: dict[str, bytes], names: dict[str, str]) -> bool:
        self._webhook_url = str(params.get("url") or "")
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    def _delete_webhook(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> bool:
        self._webhook_url = ""
        if params.get("drop_pending_updates"):
            self._pending.clear()
        return True

    def _get_webhook_info(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }

    def _set_my_commands(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad_request("can't parse commands JSON object")
        for command in commands:
            if not _COMMAND_NAME.fullmatch(str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
        key = _commands_key(params.get("scope"), params.get("language_code") or "")
        self._commands[key] = copy.deepcopy(commands)
        return True

    def _get_my_commands(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> list[JSONDict]:
        return self.commands(params.get("scope"), params.get("language_code") or "")

    def _delete_my_commands(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> bool:
        self._commands.pop(
            _commands_key(params.get("scope"), params.get("language_code") or ""), None
        )
        return True

    # -----------------------------------------------------------------------------------------
    # Methods: getUpdates
    # -----------------------------------------------------------------------------------------

    async def _get_updates(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> list[JSONDict]:
        """Long polling as Telegram does it: confirm by offset, then answer at once when updates
        are pending, or wait up to ``timeout`` seconds for one. A newer getUpdates ends an
        older one with 409 Conflict (two bot instances polling)."""
        if self._webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        if params.get("allowed_updates") is not None:
            self._allowed_updates = list(params["allowed_updates"])
        self._confirm(params.get("offset"))
        limit = min(max(int(params.get("limit") or 100), 1), 100)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake_pollers()  # an older poll still waiting must end with a Conflict
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(float(params.get("timeout") or 0), 0.0)
        while True:
            event = self._updates_event
            if generation != self._poll_generation:
                raise ApiError(409, GET_UPDATES_CONFLICT)
            batch = self._deliverable(limit)
            remaining = deadline - loop.time()
            if batch or remaining <= 0 or self._closing:
                for pending in batch:
                    pending.delivered = True
                return [copy.deepcopy(p.update) for p in batch]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _confirm(self, offset: Any) -> None:
        """Forget confirmed updates: those below a positive offset, or all but the last
        ``-offset`` for a negative one. A redelivered update is only forgotten once it has
        been delivered again, so a re-push is never swallowed by an earlier confirmation."""
        if offset is None:
            return
        offset = int(offset)
        if offset < 0:
            self._pending = self._pending[offset:]
            return
        self._pending = [
            p
            for p in self._pending
            if p.update["update_id"] >= offset or (p.redelivery and not p.delivered)
        ]

    def _deliverable(self, limit: int) -> list[_Pending]:
        allowed = set(self._allowed_updates)
        batch = []
        for pending in self._pending:
            kind = next((key for key in pending.update if key != "update_id"), "")
            if (kind in allowed) if allowed else (kind not in _OPT_IN_UPDATES):
                batch.append(pending)
        return batch[:limit]

    def _wake_pollers(self) -> None:
        self._updates_event.set()
        self._updates_event = asyncio.Event()

    # -----------------------------------------------------------------------------------------
    # Methods: sending
    # -----------------------------------------------------------------------------------------

    def _send_message(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        chat_id = self._target_chat(params)
        text, entities = _formatted(params, "text", "entities")
        if not text:
            raise _bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        fields: JSONDict = {"text": text}
        if entities:
            fields["entities"] = entities
        return self._bot_message(chat_id, fields, params)

    def _send_photo(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        chat_id = self._target_chat(params)
        source = self._input_file(params.get("photo"), "photo", files, names)
        fields: JSONDict = {"photo": self._photo_sizes(source)}
        fields.update(_caption_fields(params))
        return self._bot_message(chat_id, fields, params)

    def _send_document(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        chat_id = self._target_chat(params)
        source = self._input_file(params.get("document"), "document", files, names)
        fields: JSONDict = {"document": self._document(source, "document")}
        fields.update(_caption_fields(params))
        return self._bot_message(chat_id, fields, params)

    def _send_media_group(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> list[JSONDict]:
        chat_id = self._target_chat(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _bad_request("wrong number of messages in the media group, must be 2-10")
        group_id = str(next(self._media_group_ids))
        prepared = [self._media_fields(item, files, names) for item in media]
        shared = {key: value for key, value in params.items() if key != "reply_markup"}
        return [
            self._bot_message(chat_id, {**fields, "media_group_id": group_id}, shared)
            for fields in prepared
        ]

    def _send_chat_action(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> bool:
        self._target_chat(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        return True

    def _target_chat(self, params: Params) -> int:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise _bad_request("chat_id is empty")
        if not isinstance(chat_id, int) or chat_id not in self._chats:
            raise _bad_request("chat not found")
        return chat_id

    def _bot_message(self, chat_id: int, fields: JSONDict, params: Params) -> JSONDict:
        """Store and return a message from the bot, with reply and inline keyboard applied."""
        markup = _checked_markup(params.get("reply_markup"))
        reply_to = self._reply_target(chat_id, params)
        if reply_to is not None:
            fields["reply_to_message"] = reply_to
        if markup is not None and "inline_keyboard" in markup:
            fields["reply_markup"] = markup
        stored = self._store_message(chat_id, self._bot_user, fields, from_bot=True)
        stored.markup = markup
        return copy.deepcopy(stored.raw)

    def _reply_target(self, chat_id: int, params: Params) -> JSONDict | None:
        reply = params.get("reply_parameters") or {}
        message_id = reply.get("message_id", params.get("reply_to_message_id"))
        if message_id is None:
            return None
        stored = self._find_message(int(reply.get("chat_id", chat_id)), int(message_id))
        if stored is not None:
            return _without_reply(stored.raw)
        allowed = reply.get(
            "allow_sending_without_reply", params.get("allow_sending_without_reply")
        )
        if allowed:
            return None
        raise _bad_request("message to be replied not found")

    # -----------------------------------------------------------------------------------------
    # Methods: editing and deleting
    # -----------------------------------------------------------------------------------------

    def _edit_message_text(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        stored = self._editable(params)
        if "text" not in stored.raw:
            raise _bad_request("there is no text in the message to edit")
        text, entities = _formatted(params, "text", "entities")
        if not text:
            raise _bad_request("message text is empty")
        if utf16_len(text) > MAX_TEXT_LENGTH:
            raise _bad_request("message is too long")
        return self._apply_edit(stored, {"text": text, "entities": entities}, params)

    def _edit_message_caption(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        stored = self._editable(params)
        if not any(key in stored.raw for key in _MEDIA_KEYS):
            raise _bad_request("there is no caption in the message to edit")
        caption = _caption_fields(params)
        change = {
            "caption": caption.get("caption"),
            "caption_entities": caption.get("caption_entities", []),
        }
        return self._apply_edit(stored, change, params)

    def _edit_message_media(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        stored = self._editable(params)
        if not any(key in stored.raw for key in _MEDIA_KEYS):
            raise _bad_request("there is no media in the message to edit")
        media = params.get("media")
        if not isinstance(media, dict):
            raise _bad_request("can't parse InputMedia JSON object")
        fields = self._media_fields(media, files, names)
        change: JSONDict = {key: fields.get(key) for key in _MEDIA_KEYS}
        change["caption"] = fields.get("caption")
        change["caption_entities"] = fields.get("caption_entities", [])
        return self._apply_edit(stored, change, params)

    def _edit_message_reply_markup(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> JSONDict:
        return self._apply_edit(self._editable(params), {}, params)

    def _delete_message(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> bool:
        stored = self._find_message(params.get("chat_id"), params.get("message_id"))
        if stored is None or stored.deleted:
            raise _bad_request("message to delete not found")
        stored.deleted = True
        return True

    def _editable(self, params: Params) -> _StoredMessage:
        if params.get("inline_message_id"):
            raise _bad_request("MESSAGE_ID_INVALID")  # the fake keeps no inline messages
        stored = self._find_message(params.get("chat_id"), params.get("message_id"))
        if stored is None or stored.deleted:
            raise _bad_request("message to edit not found")
        if not stored.from_bot:
            raise _bad_request("message can't be edited")
        return stored

    def _apply_edit(self, stored: _StoredMessage, change: JSONDict, params: Params) -> JSONDict:
        """Apply new content plus the edit's reply_markup (absent: keyboard removed, as on
        Telegram), or answer "message is not modified" when nothing would change."""
        markup = _checked_markup(params.get("reply_markup"))
        inline = markup if markup is not None and "inline_keyboard" in markup else None
        change = {**change, "reply_markup": inline}
        updated = copy.deepcopy(stored.raw)
        for key, value in change.items():
            if value in (None, []):
                updated.pop(key, None)
            else:
                updated[key] = value
        if updated == stored.raw:
            raise _bad_request(NOT_MODIFIED.removeprefix("Bad Request: "))
        updated["edit_date"] = int(time.time())
        stored.raw, stored.markup = updated, inline
        stored.edit_count += 1
        return copy.deepcopy(updated)

    # -----------------------------------------------------------------------------------------
    # Methods: callbacks and files
    # -----------------------------------------------------------------------------------------

    def _answer_callback_query(
        self, params: Params, files: dict[str, bytes], names: dict[str, str]
    ) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        if query_id not in self._open_queries:
            raise _bad_request(
                "query is too old and response timeout expired or query ID is invalid"
            )
        self._open_queries.discard(query_id)
        return True

    def _get_file(self, params: Params, files: dict[str, bytes], names: dict[str, str]) -> JSONDict:
        stored = self._files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise _bad_request("invalid file_id")
        if stored.file_size > DOWNLOAD_LIMIT:
            raise _bad_request("file is too big")
        return stored.as_file()

    # -----------------------------------------------------------------------------------------
    # Files in requests
    # -----------------------------------------------------------------------------------------

    def _input_file(
        self, value: Any, field_name: str, files: dict[str, bytes], names: dict[str, str]
    ) -> _Upload | StoredFile:
        """An upload (a multipart part, directly or through attach://) or a known file_id."""
        if value is None and field_name in files:
            return _Upload(files[field_name], names.get(field_name))
        if isinstance(value, str) and value.startswith("attach://"):
            part = value.removeprefix("attach://")
            if part not in files:
                raise _bad_request(f"file {part!r} not found in the request")
            return _Upload(files[part], names.get(part))
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            raise _bad_request("failed to get HTTP URL content")  # the fake fetches nothing
        if isinstance(value, str) and value:
            stored = self._files.get(value)
            if stored is None:
                raise _bad_request("wrong file identifier/HTTP URL specified")
            return stored
        raise _bad_request(f"there is no {field_name} in the request")

    def _photo_sizes(self, source: _Upload | StoredFile) -> list[JSONDict]:
        if isinstance(source, StoredFile):
            sizes = self._files.photo_set(source.file_id)
            if sizes is None:
                raise _bad_request(f"can't use file of type {source.kind.title()} as Photo")
        else:
            try:
                sizes = self._files.add_photo(source.data)
            except ImageError as exc:
                raise _bad_request("IMAGE_PROCESS_FAILED") from exc
            _check_photo_dimensions(sizes[-1])
        return [size.as_photo_size() for size in sizes]

    def _document(self, source: _Upload | StoredFile, kind: str) -> JSONDict:
        if isinstance(source, StoredFile):
            if source.kind != kind and not (kind == "document" and source.kind == "animation"):
                raise _bad_request(
                    f"can't use file of type {source.kind.title()} as {kind.title()}"
                )
            return source.as_document()
        file_name = source.file_name
        mime_type = _guess_mime_type(file_name)
        return self._files.add(
            kind, source.data, file_name=file_name, mime_type=mime_type
        ).as_document()

    def _media_fields(self, item: Any, files: dict[str, bytes], names: dict[str, str]) -> JSONDict:
        """Message fields for one InputMedia object (sendMediaGroup, editMessageMedia)."""
        if not isinstance(item, dict) or item.get("type") not in ("photo", "video", "document"):
            raise _bad_request("can't parse InputMedia JSON object")
        kind = item["type"]
        source = self._input_file(item.get("media"), "media", files, names)
        fields: JSONDict = {}
        if kind == "photo":
            fields["photo"] = self._photo_sizes(source)
        else:
            fields[kind] = self._document(source, kind)
        fields.update(_caption_fields(item))
        return fields

    # -----------------------------------------------------------------------------------------
    # Chats, users, messages
    # -----------------------------------------------------------------------------------------

    def _user(self, user_id: int, username: str | None = None) -> JSONDict:
        """The User object for ``user_id``; a given ``username`` replaces the earlier one."""
        user = self._users.setdefault(
            user_id,
            {
                "id": user_id,
                "is_bot": False,
                "first_name": f"User{user_id}",
                "username": f"user{user_id}",
                "language_code": "en",
            },
        )
        if username is not None:
            user["username"] = username
        return copy.deepcopy(user)

    def _user_update(
        self,
        chat_id: int,
        user_id: int,
        fields: JSONDict,
        chat_type: str,
        reply_to_message_id: int | None,
        *,
        username: str | None = None,
    ) -> JSONDict:
        """Store a user's message and queue the Update carrying it."""
        _check_private_chat(chat_id, user_id, chat_type)
        sender = self._user(user_id, username)
        self.register_chat(chat_id, chat_type, username=username)
        if reply_to_message_id is not None:
            target = self._find_message(chat_id, reply_to_message_id)
            if target is None:
                raise ValueError(f"no message {reply_to_message_id} in chat {chat_id}")
            fields = {**fields, "reply_to_message": _without_reply(target.raw)}
        stored = self._store_message(chat_id, sender, fields, from_bot=False)
        return self.push_raw({"message": copy.deepcopy(stored.raw)})

    def _store_message(
        self, chat_id: int, sender: JSONDict, fields: JSONDict, *, from_bot: bool
    ) -> _StoredMessage:
        chat = self._chats[chat_id]
        message_id = chat.next_message_id
        chat.next_message_id += 1
        raw = {
            "message_id": message_id,
            "from": copy.deepcopy(sender),
            "chat": copy.deepcopy(chat.info),
            "date": int(time.time()),
            **fields,
        }
        stored = chat.messages[message_id] = _StoredMessage(raw, from_bot)
        return stored

    def _find_message(self, chat_id: Any, message_id: Any) -> _StoredMessage | None:
        chat = self._chats.get(chat_id) if isinstance(chat_id, int) else None
        if chat is None or not isinstance(message_id, int):
            return None
        return chat.messages.get(message_id)

    def _snapshot(self, chat_id: int, stored: _StoredMessage) -> SentMessage:
        raw = copy.deepcopy(stored.raw)
        photo = self.photo_bytes(raw) if raw.get("photo") else None
        attachment = raw.get("document") or raw.get("video") or raw.get("animation")
        reply = raw.get("reply_to_message")
        return SentMessage(
            chat_id=chat_id,
            message_id=raw["message_id"],
            text=raw.get("text"),
            caption=raw.get("caption"),
            entities=raw.get("entities") or raw.get("caption_entities") or [],
            reply_markup=copy.deepcopy(stored.markup),
            photo=photo,
            document=self.file_bytes(attachment["file_id"]) if attachment else None,
            file_name=attachment.get("file_name") if attachment else None,
            media_group_id=raw.get("media_group_id"),
            reply_to_message_id=reply["message_id"] if reply else None,
            edit_count=stored.edit_count,
            deleted=stored.deleted,
            raw=raw,
        )


# ---------------------------------------------------------------------------------------------
# Request decoding
# ---------------------------------------------------------------------------------------------


async def _read_params(request: web.Request) -> tuple[Params, dict[str, bytes], dict[str, str]]:
    """Params from the query string and a JSON, urlencoded or multipart body, plus uploads."""
    params: Params = {key: _decode_field(key, value) for key, value in request.query.items()}
    files: dict[str, bytes] = {}
    names: dict[str, str] = {}
    if request.can_read_body and request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise _bad_request("can't parse JSON object") from exc
        if isinstance(body, dict):
            params.update(body)
    elif request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
                names[key] = value.filename
            else:
                params[key] = _decode_field(key, str(value))
    return _normalize_integers(params), files, names


def _decode_field(name: str, raw: str) -> Any:
    """Form fields are strings; all but the plain-string ones carry JSON values."""
    if name in _STRING_FIELDS:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _normalize_integers(params: Params) -> Params:
    """Telegram accepts numeric ids as strings too ("42"); store them as ints."""
    for key in _INTEGER_FIELDS & params.keys():
        value = params[key]
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            params[key] = int(value)
    return params


def _json(body: JSONDict, status: int) -> web.Response:
    return web.json_response(body, status=status)


# ---------------------------------------------------------------------------------------------
# Message content helpers
# ---------------------------------------------------------------------------------------------


def _formatted(params: Params, text_key: str, entities_key: str) -> tuple[str, list[JSONDict]]:
    """Text and entities after the parse mode (or explicit entities), trimmed like Telegram."""
    raw = params.get(text_key)
    if raw is None:
        return "", []
    explicit = params.get(entities_key)
    if explicit:
        return strip_text(str(raw), list(explicit))
    try:
        text, entities = apply_parse_mode(str(raw), params.get("parse_mode"))
    except EntityParseError as exc:
        raise _bad_request(f"can't parse entities: {exc}") from exc
    return strip_text(text, entities)


def _caption_fields(params: Params) -> JSONDict:
    caption, entities = _formatted(params, "caption", "caption_entities")
    if utf16_len(caption) > MAX_CAPTION_LENGTH:
        raise _bad_request("message caption is too long")
    fields: JSONDict = {}
    if caption:
        fields["caption"] = caption
        if entities:
            fields["caption_entities"] = entities
    return fields


def _user_caption(caption: str | None) -> JSONDict:
    if not caption:
        return {}
    entities = detect_entities(caption)
    return {"caption": caption, **({"caption_entities": entities} if entities else {})}


def _checked_markup(markup: Any) -> JSONDict | None:
    """The reply_markup object, refused the way Telegram refuses broken inline keyboards."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request(
            'can\'t parse inline keyboard button: field "inline_keyboard" must be an Array of Arrays'
        )
    for button in itertools.chain.from_iterable(rows):
        _check_inline_button(button)
    return markup


def _check_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not button.get("text"):
        raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
    if not set(button) - {"text"}:
        raise _bad_request(
            "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
        )
    data = button.get("callback_data")
    if data is not None and not 1 <= len(str(data).encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
        raise _bad_request("BUTTON_DATA_INVALID")


def _check_photo_dimensions(size: StoredFile) -> None:
    width, height = size.width or 0, size.height or 0
    ratio = max(width, height) / max(min(width, height), 1)
    if width + height > MAX_PHOTO_SIDES_SUM or ratio > MAX_PHOTO_RATIO:
        raise _bad_request("PHOTO_INVALID_DIMENSIONS")


def _check_private_chat(chat_id: int, user_id: int, chat_type: str) -> None:
    """Catch a test mistake early: a private chat's id is its user's id on Telegram."""
    if chat_type == "private" and chat_id != user_id:
        raise ValueError(f"private chat {chat_id} must have chat_id == user_id ({user_id})")


def _without_reply(raw: JSONDict) -> JSONDict:
    """A message as embedded in reply_to_message: Telegram nests only one level."""
    return {key: copy.deepcopy(value) for key, value in raw.items() if key != "reply_to_message"}


def _guess_mime_type(file_name: str | None) -> str:
    guessed = mimetypes.guess_type(file_name or "", strict=False)[0]
    return guessed or "application/octet-stream"


def _commands_key(scope: Any, language_code: str) -> tuple[str, str]:
    scope = scope or {"type": "default"}
    return json.dumps(scope, sort_keys=True), language_code


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` for Bot API dicts, ``obj.name`` for PTB objects."""
    return obj[name] if isinstance(obj, Mapping) else getattr(obj, name)


def _default_description(error_code: int, retry_after: int) -> str:
    return {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: f"Too Many Requests: retry after {retry_after}",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(error_code, "Error")
