"""A fake Discord (REST API + gateway) on 127.0.0.1, for driving a real ``discord.Client``.

Why a server and not mocks: the Discord frontend's bugs live at the protocol edge (interaction
acknowledgement rules, multipart uploads with ``payload_json``, 429 retries, reconnects), and a
mock skips exactly that edge. This fake speaks HTTP and the gateway websocket like Discord, so the
same ``discord.Client``/``app_commands.CommandTree``/``ui.View`` code that runs in production runs
in tests.

Pointing discord.py at it (``FakeDiscord.patch_discord``, applied by ``async with`` unless
``autopatch=False``): discord.py has no base-URL option, it builds every REST URL, the interaction
webhooks' included, from the class attribute ``discord.http.Route.BASE`` and (for a plain
``Client``) connects to the class attribute ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``
without asking ``GET /gateway``; later reconnects go to READY's ``resume_gateway_url``, which the
fake also points at itself. Both attributes are restored on exit.

Typical use::

    async with FakeDiscord(guilds=[GuildSpec(GUILD, channels=[CHANNEL])], users={USER: "ann"}) as fake:
        client = discord.Client(intents=intents, guild_ready_timeout=0.05)
        async with fake.running(client):
            fake.send_message(CHANNEL, USER, "hello", attachments=[("a.png", png)])
            request = await fake.wait_for("POST", rf"/channels/{CHANNEL}/messages")
            assert fake.messages(CHANNEL)[-1].content == "hi"

Simulation helpers (``send_message``, ``slash``, ``press``) are synchronous: they store what
Discord stores and queue the gateway event; the client sees it once the event loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import secrets
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from aiohttp import WSMsgType, web

from tests.fakes.discord_payloads import (
    ADMINISTRATOR,
    ALL_PERMISSIONS,
    ATTACH_FILES,
    DEFAULT_ATTACHMENT_SIZE_LIMIT,
    DEFAULT_BOT_PERMISSIONS,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    FLAG_SUPPRESS_EMBEDS,
    FLAG_SUPPRESS_NOTIFICATIONS,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
    MANAGE_MESSAGES,
    PRIVILEGED_INTENTS,
    SEND_MESSAGES,
    USER_PERMISSIONS,
    VIEW_CHANNEL,
    DiscordError,
    JSONDict,
    Snowflakes,
    Upload,
    already_acknowledged,
    check_command,
    check_commands,
    check_message_body,
    default_error,
    find_component,
    guess_content_type,
    image_size,
    invalid_form,
    invalid_webhook_token,
    iso_now,
    member_payload,
    mentioned_ids,
    missing_permissions,
    normalize_command,
    role_payload,
    unknown_channel,
    unknown_interaction,
    unknown_message,
    unknown_webhook,
    user_payload,
)

__all__ = [
    "DEFAULT_BOT_PERMISSIONS",
    "FakeAttachment",
    "FakeDiscord",
    "FakeInteraction",
    "FakeMessage",
    "GuildSpec",
    "Request",
    "Upload",
]

API_PREFIX = re.compile(r"^/api/v(?:9|10)(?=/)")
GATEWAY_PATH = "/gateway-ws/"
OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE_STATE = 0, 1, 2, 3, 4
OP_RESUME, OP_RECONNECT, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO = 6, 7, 8, 9, 10
OP_HEARTBEAT_ACK = 11

# Option types for application commands
OPT_SUB_COMMAND, OPT_SUB_COMMAND_GROUP, OPT_STRING, OPT_INTEGER, OPT_BOOLEAN = 1, 2, 3, 4, 5
OPT_USER, OPT_CHANNEL, OPT_ROLE, OPT_MENTIONABLE, OPT_NUMBER, OPT_ATTACHMENT = 6, 7, 8, 9, 10, 11

# Interaction callback types
CB_MESSAGE, CB_DEFERRED_MESSAGE, CB_DEFERRED_UPDATE, CB_UPDATE = 4, 5, 6, 7
CB_AUTOCOMPLETE, CB_MODAL = 8, 9


# ---------------------------------------------------------------------------------------------
# Public records
# ---------------------------------------------------------------------------------------------


@dataclass
class GuildSpec:
    """A guild the bot is in. ``channels``: text channel ids (or id -> name).

    ``bot_permissions`` is what the bot's role grants guild-wide; ``channel_bot_permissions``
    replaces it in single channels (sent as a member overwrite, and enforced by the fake for
    sending, attaching files and deleting others' messages).
    """

    id: int
    channels: Mapping[int, str] | Sequence[int] = ()
    name: str | None = None
    bot_permissions: int = DEFAULT_BOT_PERMISSIONS
    channel_bot_permissions: Mapping[int, int] = field(default_factory=dict)


@dataclass
class Request:
    """One HTTP request the fake answered (faults included)."""

    method: str
    path: str  # relative to the API base ("/channels/1/messages"); attachments: "/attachments/..."
    query: dict[str, str]
    json: Any  # the JSON body, or the decoded ``payload_json`` of a multipart body
    files: dict[str, bytes]  # uploaded file name -> bytes
    file_fields: dict[str, str]  # multipart field ("files[0]") -> file name
    headers: dict[str, str]
    status: int = 0
    response: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class FakeAttachment:
    id: int
    filename: str
    content_type: str
    size: int
    data: bytes
    width: int | None
    height: int | None
    url: str
    description: str | None


@dataclass(frozen=True)
class FakeMessage:
    """A message as the channel shows it now (edits applied)."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str
    embeds: list[JSONDict]
    components: list[JSONDict]
    attachments: list[FakeAttachment]
    reference_message_id: int | None
    interaction: JSONDict | None  # ``interaction_metadata`` for interaction responses/follow-ups
    flags: int
    edit_count: int
    deleted: bool
    raw: JSONDict

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response still showing "thinking"."""
        return bool(self.flags & FLAG_LOADING)


@dataclass
class FakeInteraction:
    """An interaction the fake dispatched; updated live as the bot answers it."""

    id: int
    token: str
    type: int  # 2 application command, 3 component, 5 modal submit
    channel_id: int
    guild_id: int | None
    user_id: int
    payload: JSONDict
    created: float
    response_type: int | None = None  # callback type once the bot answered
    response_data: JSONDict | None = None
    original_message_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    source_message_id: int | None = None  # the message a component sits on
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None


# ---------------------------------------------------------------------------------------------
# Internal state
# ---------------------------------------------------------------------------------------------


@dataclass
class _Channel:
    id: int
    guild_id: int | None
    name: str
    recipient_id: int | None = None  # DMs
    messages: dict[int, _Message] = field(default_factory=dict)


@dataclass
class _Message:
    raw: JSONDict
    channel_id: int
    guild_id: int | None
    blobs: dict[int, bytes]  # attachment id -> bytes
    interaction_id: int | None = None
    edit_count: int = 0
    deleted: bool = False

    @property
    def author_id(self) -> int:
        return int(self.raw["author"]["id"])


@dataclass
class _Blob:
    data: bytes
    content_type: str
    filename: str


@dataclass
class _Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    body: JSONDict
    headers: dict[str, str]
    remaining: int


@dataclass(frozen=True)
class _Close:
    code: int


class _Connection:
    """One gateway websocket: an ordered outbox drained by a writer task, optional zlib-stream."""

    def __init__(self, ws: web.WebSocketResponse, compress: str | None) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[JSONDict | _Close] = asyncio.Queue()
        self.compressor = zlib.compressobj() if compress == "zlib-stream" else None
        self.zstd: Any = None
        if compress == "zstd-stream":  # only when discord.py found zstandard (then we have it)
            import zstandard  # type: ignore[import-not-found]

            self.zstd = zstandard.ZstdCompressor().compressobj()
        self.writer: asyncio.Task[None] | None = None
        self.closed = False

    def send(self, payload: JSONDict) -> None:
        if not self.closed:
            self.queue.put_nowait(payload)

    def close(self, code: int) -> None:
        if not self.closed:
            self.queue.put_nowait(_Close(code))

    async def write_loop(self) -> None:
        while True:
            item = await self.queue.get()
            if isinstance(item, _Close):
                self.closed = True
                await self.ws.close(code=item.code)
                return
            text = json.dumps(item, separators=(",", ":"))
            if self.compressor is not None:
                data = self.compressor.compress(text.encode()) + self.compressor.flush(
                    zlib.Z_SYNC_FLUSH
                )
                await self.ws.send_bytes(data)
            elif self.zstd is not None:
                import zstandard

                data = self.zstd.compress(text.encode()) + self.zstd.flush(
                    zstandard.COMPRESSOBJ_FLUSH_BLOCK
                )
                await self.ws.send_bytes(data)
            else:
                await self.ws.send_str(text)


@dataclass
class _Session:
    id: str
    intents: int
    conn: _Connection | None
    seq: int = 0
    log: list[JSONDict] = field(default_factory=list)
    invalidated: bool = False


Route = Callable[..., Any]


class FakeDiscord:
    """The fake: ``async with FakeDiscord(...) as fake:``; see the module docstring.

    Every configured user is a member of every guild. DM channels are made on demand
    (``dm_channel`` or the bot's ``POST /users/@me/channels``).
    """

    def __init__(
        self,
        token: str = "fake-bot-token",
        *,
        bot_id: int = 900_000_000_000_000_001,
        bot_name: str = "pix2chat",
        application_id: int | None = None,
        guilds: Iterable[GuildSpec] = (),
        users: Mapping[int, str] | None = None,
        heartbeat_interval_ms: int = 41_250,
        allowed_intents: int | None = None,
        callback_deadline: float | None = None,
        attachment_size_limit: int = DEFAULT_ATTACHMENT_SIZE_LIMIT,
        echo_bot_messages: bool = True,
        autopatch: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``allowed_intents``: privileged intents the app may use (None: all; IDENTIFY with
        others is closed with 4014 as Discord does). ``callback_deadline``: seconds after which
        an unanswered interaction is "Unknown interaction" (Discord: 3; None: never).
        ``echo_bot_messages``: dispatch MESSAGE_CREATE/UPDATE/DELETE for the bot's own
        messages, as Discord does."""
        self.token = token
        self.bot_id = bot_id
        self.bot_name = bot_name
        self.application_id = application_id if application_id is not None else bot_id
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allowed_intents = PRIVILEGED_INTENTS if allowed_intents is None else allowed_intents
        self.callback_deadline = callback_deadline
        self.attachment_size_limit = attachment_size_limit
        self.echo_bot_messages = echo_bot_messages
        self.autopatch = autopatch
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._ids = Snowflakes()
        self._joined_at = iso_now()

        self.requests: list[Request] = []
        self.gateway_received: list[JSONDict] = []  # payloads the client sent on the gateway
        self.gateway_connections: list[dict[str, str]] = []  # query of each websocket connect
        self.dropped_events: list[tuple[str, JSONDict]] = []  # dispatched with no session
        self.identify_count = 0
        self.resume_count = 0
        self._changed = asyncio.Event()

        self._users: dict[int, str] = {bot_id: bot_name, **(users or {})}
        self._guilds: dict[int, GuildSpec] = {}
        self._bot_role: dict[int, int] = {}
        self._channels: dict[int, _Channel] = {}
        self._dm_by_user: dict[int, int] = {}
        self._dm_blocked: set[int] = set()
        for spec in guilds:
            self.add_guild(spec)

        self._commands: dict[int | None, dict[int, JSONDict]] = {}  # guild id (None: global)
        self._command_ids: dict[tuple[int | None, int, str], int] = {}
        self._interactions: dict[int, FakeInteraction] = {}
        self._by_token: dict[str, FakeInteraction] = {}
        self._blobs: dict[int, _Blob] = {}
        self._faults: list[_Fault] = []
        self._session: _Session | None = None
        self._connections: list[_Connection] = []
        self._patch: contextlib.ExitStack | None = None
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        self._add_routes()

    # -----------------------------------------------------------------------------------------
    # Life cycle, addresses, pointing discord.py here
    # -----------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        if self.autopatch:
            self._patch = contextlib.ExitStack()
            self._patch.enter_context(self.patch_discord())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._patch is not None:
            self._patch.close()
            self._patch = None
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=100 * 1024 * 1024)
        app.router.add_route("GET", GATEWAY_PATH, self._gateway)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for conn in list(self._connections):
            conn.close(1001)
        writers = {conn.writer for conn in self._connections if conn.writer is not None}
        if writers:
            await asyncio.wait(writers, timeout=1.0)
        for writer in writers:
            writer.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def api_base(self) -> str:
        """The value for ``discord.http.Route.BASE``."""
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        """The value for ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (as a yarl.URL)."""
        return f"ws://{self._host}:{self._port}{GATEWAY_PATH}"

    @contextlib.contextmanager
    def patch_discord(self) -> Iterator[None]:
        """Point discord.py (REST, interaction webhooks, gateway) here; undo on exit."""
        import yarl
        from discord.gateway import DiscordWebSocket
        from discord.http import Route as DiscordRoute

        old_base, old_gateway = DiscordRoute.BASE, DiscordWebSocket.DEFAULT_GATEWAY
        DiscordRoute.BASE = self.api_base
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)
        try:
            yield
        finally:
            DiscordRoute.BASE, DiscordWebSocket.DEFAULT_GATEWAY = old_base, old_gateway

    @contextlib.asynccontextmanager
    async def running(
        self,
        client: Any,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - a per-call deadline reads best in tests
    ) -> AsyncIterator[Any]:
        """Log ``client`` in, connect it, wait for ``on_ready``; close it on exit.

        Build the client with a small ``guild_ready_timeout`` (e.g. 0.05): discord.py holds
        ``on_ready`` back that long after the last GUILD_CREATE (2 s by default). For tests
        that re-IDENTIFY (``disconnect(resumable=False)``), override the client's
        ``before_identify_hook``: discord.py's default sleeps 5 s before every re-IDENTIFY.
        """
        await client.login(self.token)
        task = asyncio.create_task(client.connect(reconnect=True))
        ready = asyncio.create_task(client.wait_until_ready())
        try:
            done, _ = await asyncio.wait(
                {task, ready}, timeout=timeout, return_when="FIRST_COMPLETED"
            )
            if task in done:
                task.result()  # raises what connect raised
                raise RuntimeError("client.connect() returned before on_ready")
            if ready not in done:
                raise TimeoutError(f"client not ready after {timeout}s")
            yield client
        finally:
            ready.cancel()
            await client.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 5.0)

    # -----------------------------------------------------------------------------------------
    # Configuration
    # -----------------------------------------------------------------------------------------

    def add_guild(self, spec: GuildSpec) -> None:
        """Add a guild (before the client connects: it arrives in GUILD_CREATE on IDENTIFY)."""
        self._guilds[spec.id] = spec
        self._bot_role[spec.id] = self._ids.next()
        channels = (
            dict(spec.channels)
            if isinstance(spec.channels, Mapping)
            else {cid: f"channel-{i}" for i, cid in enumerate(spec.channels)}
        )
        for channel_id, name in channels.items():
            self._channels[channel_id] = _Channel(channel_id, spec.id, name)

    def add_user(self, user_id: int, name: str | None = None) -> None:
        self._users[user_id] = name or self._users.get(user_id) or f"user{user_id}"

    def dm_channel(self, user_id: int) -> int:
        """The id of the bot's DM channel with ``user_id`` (made on first use)."""
        self.add_user(user_id, self._users.get(user_id))
        channel_id = self._dm_by_user.get(user_id)
        if channel_id is None:
            channel_id = self._ids.next()
            self._dm_by_user[user_id] = channel_id
            self._channels[channel_id] = _Channel(channel_id, None, "", recipient_id=user_id)
        return channel_id

    def block_dms(self, user_id: int) -> None:
        """The user closed DMs: the bot's DMs to them fail with 403 50007."""
        self._dm_blocked.add(user_id)

    def set_bot_permissions(
        self, guild_id: int, permissions: int, *, channel_id: int | None = None
    ) -> None:
        """Change what the bot may do (enforced at once; the client's cache sees it on the
        next GUILD_CREATE, i.e. after a fresh IDENTIFY)."""
        spec = self._guilds[guild_id]
        if channel_id is None:
            spec.bot_permissions = permissions
        else:
            spec.channel_bot_permissions = {**spec.channel_bot_permissions, channel_id: permissions}

    # -----------------------------------------------------------------------------------------
    # Simulated users
    # -----------------------------------------------------------------------------------------

    def send_message(
        self,
        channel_id: int,
        user_id: int,
        content: str = "",
        *,
        attachments: Sequence[Upload | tuple[Any, ...]] = (),
        reference_message_id: int | None = None,
        guild_id: int | None = None,
    ) -> FakeMessage:
        """A user posts in a channel (MESSAGE_CREATE). Attachment URLs serve the bytes here."""
        channel = self._channel(channel_id)
        if guild_id is not None and guild_id != channel.guild_id:
            raise ValueError(f"channel {channel_id} is not in guild {guild_id}")
        if channel.recipient_id is not None and channel.recipient_id != user_id:
            raise ValueError(f"DM channel {channel_id} belongs to user {channel.recipient_id}")
        self.add_user(user_id, self._users.get(user_id))
        blobs: dict[int, bytes] = {}
        objects = []
        for spec in attachments:
            attachment, data = self._user_attachment(channel_id, Upload.of(spec))
            objects.append(attachment)
            blobs[int(attachment["id"])] = data
        stored = self._store_message(
            channel,
            user_id,
            {"content": content, "attachments": objects},
            blobs=blobs,
            reference=self._reference(channel, reference_message_id),
        )
        self._dispatch_message("MESSAGE_CREATE", stored)
        return self._snapshot(stored)

    def seed_message(
        self,
        channel_id: int,
        content: str = "",
        *,
        components: list[JSONDict] | None = None,
        embeds: list[JSONDict] | None = None,
    ) -> FakeMessage:
        """A bot message from before the test (e.g. one a persistent view sits on); no event."""
        channel = self._channel(channel_id)
        fields = {"content": content, "components": components or [], "embeds": embeds or []}
        return self._snapshot(self._store_message(channel, self.bot_id, fields, blobs={}))

    def slash(
        self,
        name: str,
        user_id: int,
        channel_id: int,
        options: Mapping[str, Any] | None = None,
        *,
        attachments: Mapping[str, Upload | tuple[Any, ...]] | None = None,
        guild_id: int | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A user runs a chat-input command the bot registered (INTERACTION_CREATE type 2).

        ``name`` may name a subcommand ("edit photo"). ``options`` maps option names to values
        (ids for user/channel/role options; an ``Upload``/tuple for attachment options, or pass
        those in ``attachments``). Options are checked against the registered command, so a
        test cannot send what Discord's client would refuse to.
        """
        channel = self._channel(channel_id)
        guild_id = channel.guild_id if guild_id is None else guild_id
        root, *path = name.split()
        command = self._find_command(root, guild_id)
        contexts = command.get("contexts")
        context = 0 if guild_id is not None else 1
        if contexts is not None and context not in contexts:
            raise ValueError(f"command {root!r} is not available in this context ({context})")
        given = {**(options or {}), **(attachments or {})}
        resolved: JSONDict = {}
        schema: list[JSONDict] = command.get("options") or []
        built = self._command_options(schema, path, given, resolved, channel, guild_id)
        data: JSONDict = {"id": command["id"], "name": root, "type": 1}
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return self._interaction(2, data, user_id, channel, locale=locale)

    def press(
        self,
        custom_id: str,
        user_id: int,
        message_id: int,
        channel_id: int | None = None,
        *,
        guild_id: int | None = None,
        values: Sequence[str] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A user clicks a button (or picks ``values`` in a select) on a message
        (INTERACTION_CREATE type 3). The component must be on the message and enabled."""
        stored = self._find_message(message_id, channel_id)
        if stored is None:
            raise ValueError(f"no message {message_id}")
        channel = self._channel(stored.channel_id)
        if guild_id is not None and guild_id != channel.guild_id:
            raise ValueError(f"message {message_id} is not in guild {guild_id}")
        component = find_component(stored.raw.get("components") or [], custom_id)
        if component is None:
            raise ValueError(f"message {message_id} has no component {custom_id!r}")
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: JSONDict = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = list(values or [])
        elif values is not None:
            raise ValueError("buttons take no values")
        message = self._gateway_message(stored)
        return self._interaction(
            3, data, user_id, channel, locale=locale, message=message, source=stored
        )

    def submit_modal(
        self,
        custom_id: str,
        user_id: int,
        channel_id: int,
        values: Mapping[str, str],
        *,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """A user submits a modal (INTERACTION_CREATE type 5); ``values``: text input custom_id
        -> value, sent as action rows of text inputs."""
        channel = self._channel(channel_id)
        rows = [
            {"type": 1, "components": [{"type": 4, "custom_id": key, "value": value}]}
            for key, value in values.items()
        ]
        data = {"custom_id": custom_id, "components": rows}
        return self._interaction(5, data, user_id, channel, locale=locale)

    def expire_interaction(self, interaction: FakeInteraction | str) -> None:
        """From now on the interaction's token is dead, as 15 minutes after it was created:
        callbacks answer 404 10062, webhook calls 401 50027 Invalid Webhook Token."""
        token = interaction if isinstance(interaction, str) else interaction.token
        self._by_token[token].expired = True

    def interaction(self, token_or_id: str | int) -> FakeInteraction:
        if isinstance(token_or_id, str):
            return self._by_token[token_or_id]
        return self._interactions[token_or_id]

    # -----------------------------------------------------------------------------------------
    # Gateway control
    # -----------------------------------------------------------------------------------------

    async def disconnect(self, *, code: int = 4000, resumable: bool = True) -> None:
        """Close the gateway socket (discord.py reconnects). Events dispatched meanwhile are
        buffered and replayed on RESUME. ``resumable=False`` invalidates the session: RESUME
        gets op 9 and the client IDENTIFYs again (a second on_ready)."""
        session = self._session
        if session is None or session.conn is None:
            raise RuntimeError("no gateway connection to close")
        conn, session.conn = session.conn, None
        if not resumable:
            session.invalidated = True
        conn.close(code)
        if conn.writer is not None:
            await asyncio.wait({conn.writer}, timeout=5.0)

    def request_reconnect(self) -> None:
        """Send op 7 RECONNECT: the client closes and RESUMEs."""
        session = self._session
        if session is not None and session.conn is not None:
            session.conn.send({"op": OP_RECONNECT, "d": None})

    def dispatch(self, event: str, data: JSONDict) -> None:
        """Dispatch any gateway event as is (for events the helpers do not cover)."""
        self._dispatch(event, data)

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.conn is not None

    # -----------------------------------------------------------------------------------------
    # Inspection
    # -----------------------------------------------------------------------------------------

    def messages(
        self, channel_id: int, *, include_users: bool = False, include_deleted: bool = False
    ) -> list[FakeMessage]:
        """The channel's messages in order, by default only the bot's (interaction responses,
        ephemeral ones included) and only those not deleted."""
        channel = self._channel(channel_id)
        return [
            self._snapshot(stored)
            for stored in channel.messages.values()
            if (include_users or stored.author_id == self.bot_id)
            and (include_deleted or not stored.deleted)
        ]

    def message(self, message_id: int) -> FakeMessage:
        stored = self._find_message(message_id, None)
        if stored is None:
            raise KeyError(message_id)
        return self._snapshot(stored)

    def commands(self, guild_id: int | None = None) -> list[JSONDict]:
        """The application commands registered globally (None) or for a guild."""
        return copy.deepcopy(list(self._commands.get(guild_id, {}).values()))

    def find(
        self, method: str, path: str | Callable[[Request], bool], since: int = 0
    ) -> list[Request]:
        """Recorded requests matching ``method`` and ``path`` (a regex matched against the
        whole path, or a predicate), from index ``since`` on."""
        match = _matcher(path)
        return [r for r in self.requests[since:] if r.method == method.upper() and match(r)]

    def mark(self) -> int:
        """The index for ``since=``: only requests after this call."""
        return len(self.requests)

    async def wait_for(
        self,
        method: str,
        path: str | Callable[[Request], bool],
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - a per-call deadline reads best in tests
        count: int = 1,
        since: int = 0,
    ) -> Request:
        """The ``count``-th matching request (see ``find``), once it has been answered."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            found = [r for r in self.find(method, path, since) if r.status]
            if len(found) >= count:
                return found[count - 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                recent = "\n".join(
                    f"  {r.method} {r.path} -> {r.status}" for r in self.requests[-15:]
                )
                raise TimeoutError(
                    f"no {count}x {method} {path!r} within {timeout}s; recent requests:\n{recent}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    async def wait_for_gateway(
        self,
        op: int,
        *,
        timeout: float = 10.0,  # noqa: ASYNC109 - a per-call deadline reads best in tests
        count: int = 1,
    ) -> JSONDict:
        """The ``count``-th gateway payload with opcode ``op`` the client sent."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            found = [p for p in self.gateway_received if p.get("op") == op]
            if len(found) >= count:
                return found[count - 1]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {count}x gateway op {op} within {timeout}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)

    # -----------------------------------------------------------------------------------------
    # Fault injection
    # -----------------------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        path_regex: str,
        status: int = 429,
        *,
        retry_after: float = 0.5,
        times: int = 1,
        code: int | None = None,
        message: str | None = None,
        is_global: bool = False,
        body: JSONDict | None = None,
    ) -> None:
        """The next ``times`` requests matching (method, regex fully matching the path) get
        ``status``: 429 with Discord's rate-limit body and headers (discord.py retries), 403
        50013 Missing Permissions, 404 10008 Unknown Message, ... or ``code``/``message``/``body``.
        """
        if body is None:
            body = default_error(status, retry_after=retry_after, is_global=is_global)
            if code is not None:
                body["code"] = code
            if message is not None:
                body["message"] = message
        headers: dict[str, str] = {}
        if status == 429:
            headers = {
                "Retry-After": str(max(1, int(retry_after + 0.999))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                "X-RateLimit-Bucket": "fakebucket" + secrets.token_hex(4),
                "X-RateLimit-Scope": "global" if is_global else "user",
            }
            if is_global:
                headers["X-RateLimit-Global"] = "true"
        self._faults.append(
            _Fault(method.upper(), re.compile(path_regex), status, body, headers, times)
        )

    # -----------------------------------------------------------------------------------------
    # HTTP plumbing
    # -----------------------------------------------------------------------------------------

    def _add_routes(self) -> None:
        app = r"/applications/(?P<app_id>\d+)"
        guild_cmds = app + r"/guilds/(?P<guild_id>\d+)/commands"
        hook = r"/webhooks/(?P<app_id>\d+)/(?P<token>[^/]+)"
        chan = r"/channels/(?P<channel_id>\d+)"
        msg = chan + r"/messages/(?P<message_id>\d+)"
        table: list[tuple[str, str, Route]] = [
            ("GET", r"/users/@me", self._get_me),
            ("GET", r"/users/(?P<user_id>\d+)", self._get_user),
            ("POST", r"/users/@me/channels", self._create_dm),
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway_bot),
            ("GET", r"/oauth2/applications/@me", self._get_application),
            ("GET", r"/applications/@me", self._get_application),
            ("GET", app + r"/commands", self._get_commands),
            ("PUT", app + r"/commands", self._put_commands),
            ("POST", app + r"/commands", self._post_command),
            ("GET", app + r"/commands/(?P<command_id>\d+)", self._get_command),
            ("DELETE", app + r"/commands/(?P<command_id>\d+)", self._delete_command),
            ("GET", guild_cmds, self._get_commands),
            ("PUT", guild_cmds, self._put_commands),
            ("POST", guild_cmds, self._post_command),
            ("GET", guild_cmds + r"/(?P<command_id>\d+)", self._get_command),
            ("DELETE", guild_cmds + r"/(?P<command_id>\d+)", self._delete_command),
            ("GET", guild_cmds + r"/permissions", self._empty_list),
            (
                "POST",
                r"/interactions/(?P<interaction_id>\d+)/(?P<token>[^/]+)/callback",
                self._callback,
            ),
            ("POST", hook, self._followup),
            ("GET", hook + r"/messages/(?P<message_id>@original|\d+)", self._get_webhook_message),
            (
                "PATCH",
                hook + r"/messages/(?P<message_id>@original|\d+)",
                self._edit_webhook_message,
            ),
            (
                "DELETE",
                hook + r"/messages/(?P<message_id>@original|\d+)",
                self._delete_webhook_message,
            ),
            ("GET", chan, self._get_channel),
            ("GET", chan + r"/messages", self._get_history),
            ("POST", chan + r"/messages", self._create_message),
            ("GET", msg, self._get_message),
            ("PATCH", msg, self._edit_message),
            ("DELETE", msg, self._delete_message),
            ("POST", chan + r"/typing", self._typing),
            ("PUT", msg + r"/reactions/(?P<emoji>[^/]+)/@me", self._no_content),
            ("DELETE", msg + r"/reactions/(?P<emoji>[^/]+)/@me", self._no_content),
            ("GET", r"/guilds/(?P<guild_id>\d+)/members/(?P<user_id>\d+)", self._get_member),
            (
                "GET",
                r"/attachments/(?P<channel_id>\d+)/(?P<attachment_id>\d+)/(?P<name>[^/]+)",
                self._download,
            ),
        ]
        self._routes = [(m, re.compile(p), h) for m, p, h in table]

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        path = API_PREFIX.sub("", request.path, count=1)
        is_api = path != request.path
        record = Request(
            method=request.method,
            path=path,
            query=dict(request.query),
            json=None,
            files={},
            file_fields={},
            headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
        )
        self.requests.append(record)
        try:
            uploads = await _read_body(request, record)
            response = self._injected_fault(record)
            if response is None:
                if is_api and not self._authorized(request, path):
                    raise DiscordError(401, 0, "401: Unauthorized")
                response = await self._route(record, uploads, is_api)
        except DiscordError as error:
            response = _json_response(error.status, error.body(), error.headers)
        record.status = response.status
        if isinstance(response, web.Response) and response.content_type == "application/json":
            record.response = json.loads(response.body) if response.body else None  # type: ignore[arg-type]
        self._notify()
        return response

    def _authorized(self, request: web.Request, path: str) -> bool:
        if path.startswith(("/webhooks/", "/interactions/")):
            return True  # authorized by the token in the path
        return request.headers.get("Authorization") == f"Bot {self.token}"

    def _injected_fault(self, record: Request) -> web.Response | None:
        for fault in self._faults:
            if fault.method == record.method and fault.pattern.fullmatch(record.path):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return _json_response(fault.status, copy.deepcopy(fault.body), fault.headers)
        return None

    async def _route(
        self, record: Request, uploads: list[tuple[str, str, bytes]], is_api: bool
    ) -> web.Response:
        allowed = []
        for method, pattern, handler in self._routes:
            found = pattern.fullmatch(record.path)
            serves_files = pattern.pattern.startswith("/attachments/")
            if found is None or serves_files == is_api:  # files live outside /api/v10
                continue
            if method != record.method:
                allowed.append(method)
                continue
            result = handler(record, uploads, **found.groupdict())
            if asyncio.iscoroutine(result):
                result = await result
            if isinstance(result, web.Response):
                return result
            if result is None:
                return web.Response(status=204, headers={"Via": "1.1 google"})
            return _json_response(200, result)
        if allowed:
            raise DiscordError(405, 0, "405: Method Not Allowed")
        raise DiscordError(404, 0, "404: Not Found")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -----------------------------------------------------------------------------------------
    # REST: users, gateway, application, guilds
    # -----------------------------------------------------------------------------------------

    def _get_me(self, record: Request, uploads: Any) -> JSONDict:
        return {**self._user(self.bot_id), "verified": True, "mfa_enabled": False, "email": None}

    def _get_user(self, record: Request, uploads: Any, user_id: str) -> JSONDict:
        if int(user_id) not in self._users:
            raise DiscordError(404, 10013, "Unknown User")
        return self._user(int(user_id))

    def _get_gateway(self, record: Request, uploads: Any) -> JSONDict:
        return {"url": self.gateway_url}

    def _get_gateway_bot(self, record: Request, uploads: Any) -> JSONDict:
        return {
            "url": self.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 14_400_000,
                "max_concurrency": 1,
            },
        }

    def _get_application(self, record: Request, uploads: Any) -> JSONDict:
        return {
            "id": str(self.application_id),
            "name": self.bot_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot": self._user(self.bot_id),
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": user_payload(1, "owner"),
            "team": None,
            "flags": 1 << 19,  # GATEWAY_MESSAGE_CONTENT_LIMITED
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "tags": [],
            "integration_types_config": {"0": {}},
        }

    def _get_member(self, record: Request, uploads: Any, guild_id: str, user_id: str) -> JSONDict:
        if int(guild_id) not in self._guilds:
            raise DiscordError(404, 10004, "Unknown Guild")
        if int(user_id) not in self._users:
            raise DiscordError(404, 10007, "Unknown Member")
        return self._member(int(guild_id), int(user_id))

    def _create_dm(self, record: Request, uploads: Any) -> JSONDict:
        body = record.json or {}
        try:
            user_id = int(body["recipient_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise invalid_form(
                "recipient_id", "BASE_TYPE_REQUIRED", "This field is required"
            ) from exc
        if user_id not in self._users:
            raise DiscordError(400, 50033, "Invalid Recipient(s)")
        return self._channel_payload(self._channel(self.dm_channel(user_id)))

    def _empty_list(self, record: Request, uploads: Any, **_: str) -> list[Any]:
        return []

    def _no_content(self, record: Request, uploads: Any, channel_id: str, **_: str) -> None:
        self._channel(int(channel_id))

    # -----------------------------------------------------------------------------------------
    # REST: application commands
    # -----------------------------------------------------------------------------------------

    def _command_scope(self, app_id: str, guild_id: str | None) -> int | None:
        if int(app_id) != self.application_id:
            raise DiscordError(
                403, 20012, "You are not authorized to perform this action on this application"
            )
        if guild_id is not None and int(guild_id) not in self._guilds:
            raise DiscordError(403, 50001, "Missing Access")
        return None if guild_id is None else int(guild_id)

    def _get_commands(
        self, record: Request, uploads: Any, app_id: str, guild_id: str | None = None
    ) -> list[JSONDict]:
        return self.commands(self._command_scope(app_id, guild_id))

    def _put_commands(
        self, record: Request, uploads: Any, app_id: str, guild_id: str | None = None
    ) -> list[JSONDict]:
        scope = self._command_scope(app_id, guild_id)
        check_commands(record.json)
        self._commands[scope] = {}
        for command in record.json:
            stored = self._store_command(scope, command)
            self._commands[scope][int(stored["id"])] = stored
        return self.commands(scope)

    def _post_command(
        self, record: Request, uploads: Any, app_id: str, guild_id: str | None = None
    ) -> JSONDict:
        scope = self._command_scope(app_id, guild_id)
        check_command(record.json, "_")
        stored = self._store_command(scope, record.json)
        self._commands.setdefault(scope, {})[int(stored["id"])] = stored
        return copy.deepcopy(stored)

    def _get_command(
        self,
        record: Request,
        uploads: Any,
        app_id: str,
        command_id: str,
        guild_id: str | None = None,
    ) -> JSONDict:
        scope = self._command_scope(app_id, guild_id)
        stored = self._commands.get(scope, {}).get(int(command_id))
        if stored is None:
            raise DiscordError(404, 10063, "Unknown application command")
        return copy.deepcopy(stored)

    def _delete_command(
        self,
        record: Request,
        uploads: Any,
        app_id: str,
        command_id: str,
        guild_id: str | None = None,
    ) -> None:
        scope = self._command_scope(app_id, guild_id)
        if self._commands.get(scope, {}).pop(int(command_id), None) is None:
            raise DiscordError(404, 10063, "Unknown application command")

    def _store_command(self, scope: int | None, command: JSONDict) -> JSONDict:
        key = (scope, command.get("type", 1), command["name"])
        command_id = self._command_ids.setdefault(key, self._ids.next())
        return normalize_command(
            command,
            command_id=command_id,
            application_id=self.application_id,
            guild_id=scope,
            version=self._ids.next(),
        )

    def _find_command(self, name: str, guild_id: int | None) -> JSONDict:
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for command in self._commands.get(scope, {}).values():
                if command["name"] == name and command["type"] == 1:
                    return command
        known = sorted(
            f"{c['name']}({'global' if s is None else s})"
            for s, commands in self._commands.items()
            for c in commands.values()
        )
        raise ValueError(f"no command {name!r} registered for guild {guild_id}; known: {known}")

    def _command_options(
        self,
        schema: list[JSONDict],
        path: list[str],
        given: dict[str, Any],
        resolved: JSONDict,
        channel: _Channel,
        guild_id: int | None,
    ) -> list[JSONDict]:
        if path:
            sub = next((o for o in schema if o["name"] == path[0] and o["type"] in (1, 2)), None)
            if sub is None:
                raise ValueError(f"no subcommand {path[0]!r}")
            inner = self._command_options(
                sub.get("options") or [], path[1:], given, resolved, channel, guild_id
            )
            return [{"name": sub["name"], "type": sub["type"], "options": inner}]
        if any(o["type"] in (1, 2) for o in schema):
            raise ValueError("this command needs a subcommand: slash('command sub', ...)")
        by_name = {o["name"]: o for o in schema}
        unknown = set(given) - set(by_name)
        if unknown:
            raise ValueError(
                f"unknown options {sorted(unknown)}; the command has {sorted(by_name)}"
            )
        missing = [o["name"] for o in schema if o.get("required") and o["name"] not in given]
        if missing:
            raise ValueError(f"required options missing: {missing}")
        built = []
        for option in schema:
            if option["name"] in given:
                value = self._option_value(
                    option, given[option["name"]], resolved, channel, guild_id
                )
                built.append({"name": option["name"], "type": option["type"], "value": value})
        return built

    def _option_value(
        self,
        option: JSONDict,
        value: Any,
        resolved: JSONDict,
        channel: _Channel,
        guild_id: int | None,
    ) -> Any:
        kind = option["type"]
        choices = option.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise ValueError(f"{value!r} is not a choice of option {option['name']!r}")
        if kind == OPT_STRING:
            if not isinstance(value, str):
                raise ValueError(f"option {option['name']!r} takes a string")
            return value
        if kind == OPT_INTEGER:
            return int(value)
        if kind == OPT_NUMBER:
            return float(value)
        if kind == OPT_BOOLEAN:
            return bool(value)
        if kind in (OPT_USER, OPT_MENTIONABLE):
            user_id = int(value)
            self.add_user(user_id, self._users.get(user_id))
            resolved.setdefault("users", {})[str(user_id)] = self._user(user_id)
            if guild_id is not None:
                member = self._member(guild_id, user_id)
                member.pop("user")
                member["permissions"] = str(USER_PERMISSIONS)
                resolved.setdefault("members", {})[str(user_id)] = member
            return str(user_id)
        if kind == OPT_CHANNEL:
            target = self._channel(int(value))
            payload = self._channel_payload(target)
            payload["permissions"] = str(USER_PERMISSIONS)
            resolved.setdefault("channels", {})[str(target.id)] = payload
            return str(target.id)
        if kind == OPT_ROLE:
            role_id = int(value)
            roles = {int(r["id"]): r for r in self._roles(guild_id)} if guild_id else {}
            if role_id not in roles:
                raise ValueError(f"no role {role_id} in guild {guild_id}")
            resolved.setdefault("roles", {})[str(role_id)] = roles[role_id]
            return str(role_id)
        if kind == OPT_ATTACHMENT:
            attachment, _ = self._user_attachment(channel.id, Upload.of(value), ephemeral=True)
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
            return attachment["id"]
        raise ValueError(f"option type {kind} not supported by the fake")

    # -----------------------------------------------------------------------------------------
    # REST: channels and messages
    # -----------------------------------------------------------------------------------------

    def _get_channel(self, record: Request, uploads: Any, channel_id: str) -> JSONDict:
        return self._channel_payload(self._rest_channel(channel_id))

    def _get_history(self, record: Request, uploads: Any, channel_id: str) -> list[JSONDict]:
        channel = self._rest_channel(channel_id)
        limit = min(int(record.query.get("limit", 50)), 100)
        before = int(record.query.get("before", 1 << 63))
        after = int(record.query.get("after", 0))
        found = [m for mid, m in channel.messages.items() if not m.deleted and after < mid < before]
        found.sort(key=lambda m: int(m.raw["id"]), reverse="after" not in record.query)
        return [copy.deepcopy(m.raw) for m in found[:limit]]

    def _create_message(
        self, record: Request, uploads: list[tuple[str, str, bytes]], channel_id: str
    ) -> JSONDict:
        channel = self._rest_channel(channel_id)
        payload = _body(record)
        self._check_can_send(channel, uploads)
        check_message_body(payload, new_files=len(uploads), creating=True)
        attachments, blobs = self._bot_attachments(channel, payload, uploads, existing=[])
        reference = None
        ref = payload.get("message_reference")
        if ref:
            reference = self._reference(
                channel, int(ref["message_id"]), fail=ref.get("fail_if_not_exists", True)
            )
        fields = _message_fields(payload)
        fields["attachments"] = attachments
        flags = int(payload.get("flags") or 0) & (
            FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS
        )
        stored = self._store_message(
            channel, self.bot_id, fields, blobs=blobs, reference=reference, flags=flags
        )
        if payload.get("nonce") is not None:
            stored.raw["nonce"] = payload["nonce"]
        if self.echo_bot_messages:
            self._dispatch_message("MESSAGE_CREATE", stored)
        return copy.deepcopy(stored.raw)

    def _get_message(
        self, record: Request, uploads: Any, channel_id: str, message_id: str
    ) -> JSONDict:
        return copy.deepcopy(self._rest_message(channel_id, message_id).raw)

    def _edit_message(
        self,
        record: Request,
        uploads: list[tuple[str, str, bytes]],
        channel_id: str,
        message_id: str,
    ) -> JSONDict:
        stored = self._rest_message(channel_id, message_id)
        if stored.author_id != self.bot_id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        return self._apply_edit(stored, _body(record), uploads)

    def _delete_message(
        self, record: Request, uploads: Any, channel_id: str, message_id: str
    ) -> None:
        stored = self._rest_message(channel_id, message_id)
        channel = self._channel(stored.channel_id)
        if stored.author_id != self.bot_id:
            if channel.guild_id is None:
                raise DiscordError(403, 50003, "Cannot execute action on a DM channel")
            if not self._bot_perms(channel) & MANAGE_MESSAGES:
                raise missing_permissions()
        self._delete(stored)

    def _typing(self, record: Request, uploads: Any, channel_id: str) -> None:
        self._check_can_send(self._rest_channel(channel_id), [])

    def _download(
        self, record: Request, uploads: Any, channel_id: str, attachment_id: str, name: str
    ) -> web.Response:
        blob = self._blobs.get(int(attachment_id))
        if blob is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=blob.data, content_type=blob.content_type)

    # -----------------------------------------------------------------------------------------
    # REST: interactions
    # -----------------------------------------------------------------------------------------

    def _callback(
        self,
        record: Request,
        uploads: list[tuple[str, str, bytes]],
        interaction_id: str,
        token: str,
    ) -> Any:
        inter = self._by_token.get(token)
        if inter is None or inter.id != int(interaction_id) or inter.expired:
            raise unknown_interaction()
        if inter.acknowledged:
            raise already_acknowledged()
        if (
            self.callback_deadline is not None
            and time.monotonic() - inter.created > self.callback_deadline
        ):
            raise unknown_interaction()
        body = _body(record)
        kind = body.get("type")
        data = body.get("data") or {}
        channel = self._channel(inter.channel_id)
        resource: JSONDict | None = None
        if kind in (CB_MESSAGE, CB_DEFERRED_MESSAGE):
            if inter.type not in (2, 3, 5):
                raise invalid_form(
                    "type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
                )
            flags = int(data.get("flags") or 0) & (
                FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS
            )
            if kind == CB_MESSAGE:
                check_message_body(data, new_files=len(uploads), creating=True)
                attachments, blobs = self._bot_attachments(channel, data, uploads, existing=[])
                fields = {**_message_fields(data), "attachments": attachments}
            else:
                flags |= FLAG_LOADING
                fields, blobs = {"content": ""}, {}
            stored = self._store_message(
                channel, self.bot_id, fields, blobs=blobs, flags=flags, interaction=inter
            )
            inter.original_message_id = int(stored.raw["id"])
            if self.echo_bot_messages and not flags & FLAG_EPHEMERAL:
                self._dispatch_message("MESSAGE_CREATE", stored)
            resource = {"type": kind, "message": copy.deepcopy(stored.raw)}
        elif kind in (CB_DEFERRED_UPDATE, CB_UPDATE):
            if inter.type != 3 or inter.source_message_id is None:
                raise invalid_form(
                    "type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
                )
            source = self._find_message(inter.source_message_id, inter.channel_id)
            if source is None or source.deleted:
                raise unknown_message()
            inter.original_message_id = int(source.raw["id"])
            if kind == CB_UPDATE:
                self._apply_edit(source, data, uploads)
                resource = {"type": kind, "message": copy.deepcopy(source.raw)}
        elif kind == CB_AUTOCOMPLETE:
            if inter.type != 4:
                raise invalid_form(
                    "type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
                )
        elif kind == CB_MODAL:
            if inter.type not in (2, 3):
                raise invalid_form(
                    "type", "INTERACTION_RESPONSE_TYPE_INVALID", "Invalid interaction response type"
                )
            if not data.get("custom_id") or not data.get("title"):
                raise invalid_form("data.custom_id", "BASE_TYPE_REQUIRED", "This field is required")
        else:
            raise invalid_form(
                "type",
                "BASE_TYPE_CHOICES",
                f"Value must be one of (1, 4, 5, 6, 7, 8, 9, 10, 12): {kind!r}",
            )
        inter.response_type, inter.response_data = kind, copy.deepcopy(data)
        if record.query.get("with_response") not in ("1", "true", "True"):
            return None
        answer: JSONDict = {
            "interaction": {
                "id": str(inter.id),
                "type": inter.type,
                "response_message_loading": kind == CB_DEFERRED_MESSAGE,
                "response_message_ephemeral": bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL),
            }
        }
        if inter.original_message_id is not None and kind in (4, 5, 7):
            answer["interaction"]["response_message_id"] = str(inter.original_message_id)
        if resource is not None:
            answer["resource"] = resource
        return answer

    def _webhook_interaction(self, app_id: str, token: str) -> FakeInteraction:
        if int(app_id) != self.application_id:
            raise unknown_webhook()
        inter = self._by_token.get(token)
        if inter is None or inter.expired:
            raise invalid_webhook_token()
        return inter

    def _webhook_message(self, inter: FakeInteraction, message_id: str) -> _Message:
        if message_id == "@original":
            if inter.original_message_id is None:
                raise unknown_message()
            mid = inter.original_message_id
        else:
            mid = int(message_id)
            if mid != inter.original_message_id and mid not in inter.followup_ids:
                raise unknown_message()
        stored = self._find_message(mid, None)
        if stored is None or stored.deleted:
            raise unknown_message()
        return stored

    def _followup(
        self, record: Request, uploads: list[tuple[str, str, bytes]], app_id: str, token: str
    ) -> Any:
        inter = self._webhook_interaction(app_id, token)
        if not inter.acknowledged or inter.response_type in (CB_MODAL, CB_AUTOCOMPLETE):
            raise unknown_webhook()
        payload = _body(record)
        check_message_body(payload, new_files=len(uploads), creating=True)
        original = self._find_message(inter.original_message_id or 0, None)
        if original is not None and original.raw["flags"] & FLAG_LOADING and not original.deleted:
            # Discord: the first follow-up after a "thinking" defer replaces the loading message.
            stored = original
            self._apply_edit(stored, payload, uploads, keep_ephemeral=True)
        else:
            channel = self._channel(inter.channel_id)
            attachments, blobs = self._bot_attachments(channel, payload, uploads, existing=[])
            fields = {**_message_fields(payload), "attachments": attachments}
            flags = int(payload.get("flags") or 0) & (
                FLAG_EPHEMERAL | FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS
            )
            stored = self._store_message(
                channel, self.bot_id, fields, blobs=blobs, flags=flags, interaction=inter
            )
            inter.followup_ids.append(int(stored.raw["id"]))
            if self.echo_bot_messages and not flags & FLAG_EPHEMERAL:
                self._dispatch_message("MESSAGE_CREATE", stored)
        if record.query.get("wait") in ("true", "True", "1"):
            return copy.deepcopy(stored.raw)
        return None

    def _get_webhook_message(
        self, record: Request, uploads: Any, app_id: str, token: str, message_id: str
    ) -> JSONDict:
        inter = self._webhook_interaction(app_id, token)
        return copy.deepcopy(self._webhook_message(inter, message_id).raw)

    def _edit_webhook_message(
        self,
        record: Request,
        uploads: list[tuple[str, str, bytes]],
        app_id: str,
        token: str,
        message_id: str,
    ) -> JSONDict:
        inter = self._webhook_interaction(app_id, token)
        stored = self._webhook_message(inter, message_id)
        return self._apply_edit(stored, _body(record), uploads, keep_ephemeral=True)

    def _delete_webhook_message(
        self, record: Request, uploads: Any, app_id: str, token: str, message_id: str
    ) -> None:
        inter = self._webhook_interaction(app_id, token)
        self._delete(self._webhook_message(inter, message_id))

    # -----------------------------------------------------------------------------------------
    # Messages: storage, edits, attachments
    # -----------------------------------------------------------------------------------------

    def _store_message(
        self,
        channel: _Channel,
        author_id: int,
        fields: JSONDict,
        *,
        blobs: dict[int, bytes],
        reference: _Message | None = None,
        flags: int = 0,
        interaction: FakeInteraction | None = None,
    ) -> _Message:
        message_id = self._ids.next()
        content = fields.get("content") or ""
        raw: JSONDict = {
            "id": str(message_id),
            "channel_id": str(channel.id),
            "author": self._user(author_id),
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self._user(uid) for uid in mentioned_ids(content) if uid in self._users],
            "mention_roles": [],
            "attachments": fields.get("attachments") or [],
            "embeds": fields.get("embeds") or [],
            "components": fields.get("components") or [],
            "pinned": False,
            "type": 19 if reference is not None else 0,
            "flags": flags,
        }
        if reference is not None:
            raw["message_reference"] = {
                "type": 0,
                "message_id": reference.raw["id"],
                "channel_id": str(reference.channel_id),
                **({"guild_id": str(channel.guild_id)} if channel.guild_id else {}),
            }
            referenced = copy.deepcopy(reference.raw)
            referenced.pop("referenced_message", None)
            raw["referenced_message"] = referenced
        if interaction is not None:
            raw["webhook_id"] = str(self.application_id)
            raw["application_id"] = str(self.application_id)
            user = self._user(interaction.user_id)
            metadata: JSONDict = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": user,
                "authorizing_integration_owners": _owners(interaction),
            }
            if interaction.type == 2:
                raw["type"] = 20  # CHAT_INPUT_COMMAND
                metadata["name"] = interaction.payload["data"]["name"]
                raw["interaction"] = {
                    "id": str(interaction.id),
                    "type": 2,
                    "name": interaction.payload["data"]["name"],
                    "user": user,
                }
            if interaction.original_message_id is not None:
                metadata["original_response_message_id"] = str(interaction.original_message_id)
            if interaction.source_message_id is not None:
                metadata["interacted_message_id"] = str(interaction.source_message_id)
            raw["interaction_metadata"] = metadata
        stored = _Message(
            raw,
            channel.id,
            channel.guild_id,
            blobs,
            interaction_id=interaction.id if interaction else None,
        )
        channel.messages[message_id] = stored
        return stored

    def _apply_edit(
        self,
        stored: _Message,
        payload: JSONDict,
        uploads: list[tuple[str, str, bytes]],
        *,
        keep_ephemeral: bool = False,
    ) -> JSONDict:
        if stored.deleted:
            raise unknown_message()
        check_message_body(payload, new_files=len(uploads), creating=False)
        channel = self._channel(stored.channel_id)
        if uploads:
            self._check_can_send(channel, uploads, attach_only=True)
        raw = stored.raw
        if "content" in payload:
            raw["content"] = payload["content"] or ""
            raw["mentions"] = [
                self._user(uid) for uid in mentioned_ids(raw["content"]) if uid in self._users
            ]
        for key in ("embeds", "components"):
            if key in payload:
                raw[key] = payload[key] or []
        if "attachments" in payload or uploads:
            existing = raw["attachments"] if "attachments" not in payload else []
            keep = {str(a["id"]): a for a in raw["attachments"]}
            attachments, blobs = self._bot_attachments(
                channel, payload, uploads, existing=existing, keep=keep, old_blobs=stored.blobs
            )
            raw["attachments"], stored.blobs = attachments, blobs
        flags = raw["flags"]
        if "flags" in payload and payload["flags"] is not None:
            flags = (flags & ~FLAG_SUPPRESS_EMBEDS) | (int(payload["flags"]) & FLAG_SUPPRESS_EMBEDS)
        was_loading = bool(flags & FLAG_LOADING)
        flags &= ~FLAG_LOADING
        if not keep_ephemeral:
            flags &= ~FLAG_EPHEMERAL
        raw["flags"] = flags
        if (
            not raw["content"]
            and not raw["embeds"]
            and not raw["attachments"]
            and not raw["components"]
        ):
            raise DiscordError(400, 50006, "Cannot send an empty message")
        if not was_loading:
            raw["edited_timestamp"] = iso_now()
        stored.edit_count += 1
        if self.echo_bot_messages and not flags & FLAG_EPHEMERAL:
            self._dispatch_message("MESSAGE_UPDATE", stored)
        return copy.deepcopy(raw)

    def _delete(self, stored: _Message) -> None:
        if stored.deleted:
            raise unknown_message()
        stored.deleted = True
        if self.echo_bot_messages or stored.author_id != self.bot_id:
            channel = self._channel(stored.channel_id)
            data: JSONDict = {"id": stored.raw["id"], "channel_id": str(channel.id)}
            if channel.guild_id is not None:
                data["guild_id"] = str(channel.guild_id)
            if not stored.raw["flags"] & FLAG_EPHEMERAL:
                self._dispatch("MESSAGE_DELETE", data, intent=self._message_intent(channel))

    def _bot_attachments(
        self,
        channel: _Channel,
        payload: JSONDict,
        uploads: list[tuple[str, str, bytes]],
        *,
        existing: list[JSONDict],
        keep: dict[str, JSONDict] | None = None,
        old_blobs: dict[int, bytes] | None = None,
    ) -> tuple[list[JSONDict], dict[int, bytes]]:
        """Attachments after a create/edit: ``payload["attachments"]`` lists kept ones by id and
        new ones by upload index (``files[n]``); uploads not listed are appended."""
        keep = keep or {}
        old_blobs = old_blobs or {}
        total = sum(len(data) for _, _, data in uploads)
        if total > self.attachment_size_limit:
            raise DiscordError(413, 40005, "Request entity too large")
        by_index: dict[str, tuple[str, bytes]] = {}
        for field_name, filename, data in uploads:
            found = re.fullmatch(r"files\[(\d+)\]|file(\d*)", field_name)
            index = (found.group(1) or found.group(2) or "0") if found else field_name
            by_index[index] = (filename, data)
        result: list[JSONDict] = [copy.deepcopy(a) for a in existing]
        blobs: dict[int, bytes] = {int(a["id"]): old_blobs.get(int(a["id"]), b"") for a in existing}
        used: set[str] = set()
        for position, entry in enumerate(payload.get("attachments") or []):
            ref = str(entry.get("id"))
            if ref in keep:
                kept = copy.deepcopy(keep[ref])
                if entry.get("description") is not None:
                    kept["description"] = entry["description"]
                result.append(kept)
                blobs[int(ref)] = old_blobs.get(int(ref), b"")
            elif ref in by_index:
                filename, data = by_index[ref]
                used.add(ref)
                attachment = self._new_attachment(
                    channel.id, entry.get("filename") or filename, data, entry.get("description")
                )
                result.append(attachment)
                blobs[int(attachment["id"])] = data
            else:
                raise invalid_form(
                    f"attachments.{position}.id",
                    "ATTACHMENT_NOT_FOUND",
                    f"Unknown attachment or upload {ref!r}",
                )
        for index, (filename, data) in by_index.items():
            if index not in used:
                attachment = self._new_attachment(channel.id, filename, data, None)
                result.append(attachment)
                blobs[int(attachment["id"])] = data
        if len(result) > 10:
            raise invalid_form(
                "attachments", "BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length."
            )
        return result, blobs

    def _new_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        description: str | None,
        *,
        content_type: str | None = None,
        size: int | None = None,
        dimensions: tuple[int | None, int | None] | None = None,
        ephemeral: bool = False,
    ) -> JSONDict:
        attachment_id = self._ids.next()
        content_type = content_type or guess_content_type(filename)
        self._blobs[attachment_id] = _Blob(data, content_type, filename)
        url = f"{self.url}/attachments/{channel_id}/{attachment_id}/{quote(filename)}"
        attachment: JSONDict = {
            "id": str(attachment_id),
            "filename": filename,
            "size": len(data) if size is None else size,
            "url": f"{url}?ex=0&is=0&hm=fake",
            "proxy_url": f"{url}?ex=0&is=0&hm=fake&proxy=1",
            "content_type": content_type,
        }
        if dimensions is None and content_type.startswith("image/"):
            dimensions = image_size(data)
        if dimensions is not None and dimensions[0] is not None:
            attachment["width"], attachment["height"] = dimensions
        if description is not None:
            attachment["description"] = description
        if ephemeral:
            attachment["ephemeral"] = True
        return attachment

    def _user_attachment(
        self, channel_id: int, upload: Upload, *, ephemeral: bool = False
    ) -> tuple[JSONDict, bytes]:
        dimensions = None
        if upload.width is not None or upload.height is not None:
            dimensions = (upload.width, upload.height)
        attachment = self._new_attachment(
            channel_id,
            upload.filename,
            upload.data,
            upload.description,
            content_type=upload.content_type,
            size=upload.size,
            dimensions=dimensions,
            ephemeral=ephemeral,
        )
        return attachment, upload.data

    def _reference(
        self, channel: _Channel, message_id: int | None, *, fail: bool = True
    ) -> _Message | None:
        if message_id is None:
            return None
        stored = channel.messages.get(message_id)
        if stored is None or stored.deleted:
            if not fail:
                return None
            if self._find_message(message_id, None) is None:
                raise invalid_form(
                    "message_reference",
                    "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                    "Unknown message",
                )
            raise invalid_form(
                "message_reference",
                "MESSAGE_REFERENCE_INVALID_CHANNEL",
                "Cannot reply to a message in another channel",
            )
        return stored

    def _check_can_send(
        self, channel: _Channel, uploads: list[Any], *, attach_only: bool = False
    ) -> None:
        if channel.recipient_id is not None:
            if channel.recipient_id in self._dm_blocked:
                raise DiscordError(403, 50007, "Cannot send messages to this user")
            return
        perms = self._bot_perms(channel)
        if not perms & VIEW_CHANNEL:
            raise DiscordError(403, 50001, "Missing Access")
        if not attach_only and not perms & SEND_MESSAGES:
            raise missing_permissions()
        if uploads and not perms & ATTACH_FILES:
            raise missing_permissions()

    def _bot_perms(self, channel: _Channel) -> int:
        if channel.guild_id is None:
            return ALL_PERMISSIONS
        spec = self._guilds[channel.guild_id]
        perms = spec.channel_bot_permissions.get(channel.id, spec.bot_permissions)
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    # -----------------------------------------------------------------------------------------
    # Payloads and lookups
    # -----------------------------------------------------------------------------------------

    def _user(self, user_id: int) -> JSONDict:
        return user_payload(
            user_id, self._users.get(user_id, f"user{user_id}"), bot=user_id == self.bot_id
        )

    def _member(self, guild_id: int, user_id: int) -> JSONDict:
        roles = [self._bot_role[guild_id]] if user_id == self.bot_id else []
        return member_payload(self._user(user_id), roles, joined_at=self._joined_at)

    def _roles(self, guild_id: int) -> list[JSONDict]:
        spec = self._guilds[guild_id]
        return [
            role_payload(guild_id, "@everyone", USER_PERMISSIONS, 0, managed=False),
            role_payload(
                self._bot_role[guild_id], self.bot_name, spec.bot_permissions, 1, managed=True
            ),
        ]

    def _channel_payload(self, channel: _Channel) -> JSONDict:
        last = next(reversed(channel.messages), None)
        if channel.recipient_id is not None:
            return {
                "id": str(channel.id),
                "type": 1,
                "last_message_id": str(last) if last else None,
                "recipients": [self._user(channel.recipient_id)],
                "flags": 0,
            }
        spec = self._guilds[channel.guild_id or 0]
        overwrites = []
        if channel.id in spec.channel_bot_permissions:
            wanted = spec.channel_bot_permissions[channel.id]
            overwrites.append(
                {
                    "id": str(self.bot_id),
                    "type": 1,
                    "allow": str(wanted & ~spec.bot_permissions),
                    "deny": str(spec.bot_permissions & ~wanted),
                }
            )
        position = list(self._guild_channels(spec.id)).index(channel)
        return {
            "id": str(channel.id),
            "type": 0,
            "guild_id": str(channel.guild_id),
            "name": channel.name,
            "position": position,
            "permission_overwrites": overwrites,
            "nsfw": False,
            "topic": None,
            "last_message_id": str(last) if last else None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }

    def _guild_channels(self, guild_id: int) -> list[_Channel]:
        return [c for c in self._channels.values() if c.guild_id == guild_id]

    def _guild_payload(self, guild_id: int) -> JSONDict:
        spec = self._guilds[guild_id]
        members = [self._member(guild_id, uid) for uid in self._users]
        return {
            "id": str(guild_id),
            "name": spec.name or f"Guild {guild_id}",
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(next((u for u in self._users if u != self.bot_id), 1)),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": self._roles(guild_id),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "safety_alerts_channel_id": None,
            "vanity_url_code": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "premium_progress_bar_enabled": False,
            "max_members": 500_000,
            "joined_at": self._joined_at,
            "large": False,
            "unavailable": False,
            "lazy": True,
            "member_count": len(members),
            "members": members,
            "channels": [self._channel_payload(c) for c in self._guild_channels(guild_id)],
            "threads": [],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def _channel(self, channel_id: int) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            raise ValueError(
                f"unknown channel {channel_id}: configure it in a GuildSpec or use dm_channel()"
            )
        return channel

    def _rest_channel(self, channel_id: str) -> _Channel:
        channel = self._channels.get(int(channel_id))
        if channel is None:
            raise unknown_channel()
        return channel

    def _rest_message(self, channel_id: str, message_id: str) -> _Message:
        stored = self._rest_channel(channel_id).messages.get(int(message_id))
        if stored is None or stored.deleted:
            raise unknown_message()
        return stored

    def _find_message(self, message_id: int, channel_id: int | None) -> _Message | None:
        channels = (
            [self._channel(channel_id)] if channel_id is not None else self._channels.values()
        )
        for channel in channels:
            if message_id in channel.messages:
                return channel.messages[message_id]
        return None

    def _snapshot(self, stored: _Message) -> FakeMessage:
        raw = copy.deepcopy(stored.raw)
        attachments = [
            FakeAttachment(
                id=int(a["id"]),
                filename=a["filename"],
                content_type=a.get("content_type", ""),
                size=a["size"],
                data=stored.blobs.get(int(a["id"]), b""),
                width=a.get("width"),
                height=a.get("height"),
                url=a["url"],
                description=a.get("description"),
            )
            for a in raw["attachments"]
        ]
        reference = raw.get("message_reference")
        return FakeMessage(
            id=int(raw["id"]),
            channel_id=stored.channel_id,
            guild_id=stored.guild_id,
            author_id=stored.author_id,
            content=raw["content"],
            embeds=raw["embeds"],
            components=raw["components"],
            attachments=attachments,
            reference_message_id=int(reference["message_id"]) if reference else None,
            interaction=raw.get("interaction_metadata"),
            flags=raw["flags"],
            edit_count=stored.edit_count,
            deleted=stored.deleted,
            raw=raw,
        )

    def _gateway_message(self, stored: _Message) -> JSONDict:
        data = copy.deepcopy(stored.raw)
        if stored.guild_id is not None:
            data["guild_id"] = str(stored.guild_id)
            member = self._member(stored.guild_id, stored.author_id)
            member.pop("user")
            data["member"] = member
        return data

    # -----------------------------------------------------------------------------------------
    # Interactions
    # -----------------------------------------------------------------------------------------

    def _interaction(
        self,
        kind: int,
        data: JSONDict,
        user_id: int,
        channel: _Channel,
        *,
        locale: str,
        message: JSONDict | None = None,
        source: _Message | None = None,
    ) -> FakeInteraction:
        self.add_user(user_id, self._users.get(user_id))
        if channel.recipient_id is not None and channel.recipient_id != user_id:
            raise ValueError(f"DM channel {channel.id} belongs to user {channel.recipient_id}")
        interaction_id = self._ids.next()
        token = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
        payload: JSONDict = {
            "id": str(interaction_id),
            "application_id": str(self.application_id),
            "type": kind,
            "data": data,
            "channel_id": str(channel.id),
            "channel": self._channel_payload(channel),
            "token": token,
            "version": 1,
            "locale": locale,
            "app_permissions": str(self._bot_perms(channel)),
            "entitlements": [],
            "attachment_size_limit": self.attachment_size_limit,
        }
        if channel.guild_id is not None:
            member = self._member(channel.guild_id, user_id)
            member["permissions"] = str(USER_PERMISSIONS)
            payload.update(
                guild_id=str(channel.guild_id),
                guild={"id": str(channel.guild_id), "locale": "en-US", "features": []},
                guild_locale="en-US",
                member=member,
                context=0,
                authorizing_integration_owners={"0": str(channel.guild_id)},
            )
        else:
            payload.update(
                user=self._user(user_id),
                context=1,
                authorizing_integration_owners={"0": str(user_id)},
            )
        if message is not None:
            payload["message"] = message
        inter = FakeInteraction(
            id=interaction_id,
            token=token,
            type=kind,
            channel_id=channel.id,
            guild_id=channel.guild_id,
            user_id=user_id,
            payload=payload,
            created=time.monotonic(),
            source_message_id=int(source.raw["id"]) if source is not None else None,
        )
        self._interactions[interaction_id] = inter
        self._by_token[token] = inter
        self._dispatch("INTERACTION_CREATE", copy.deepcopy(payload))
        return inter

    # -----------------------------------------------------------------------------------------
    # Gateway
    # -----------------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0, autoping=True)
        await ws.prepare(request)
        self.gateway_connections.append(dict(request.query))
        conn = _Connection(ws, request.query.get("compress"))
        self._connections.append(conn)
        conn.writer = asyncio.create_task(conn.write_loop())
        if request.query.get("encoding", "json") != "json":
            conn.close(4002)  # the fake speaks JSON only (discord.py always asks for it)
        else:
            conn.send(
                {
                    "op": OP_HELLO,
                    "d": {
                        "heartbeat_interval": self.heartbeat_interval_ms,
                        "_trace": ["fake-gateway"],
                    },
                    "s": None,
                    "t": None,
                }
            )
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    try:
                        payload = json.loads(message.data)
                    except ValueError:
                        conn.close(4002)
                        continue
                    self.gateway_received.append(payload)
                    self._notify()
                    self._on_gateway(conn, payload)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            conn.closed = True
            if self._session is not None and self._session.conn is conn:
                self._session.conn = None
            if conn.writer is not None and not conn.writer.done():
                conn.writer.cancel()
            self._connections.remove(conn)
            self._notify()
        return ws

    def _on_gateway(self, conn: _Connection, payload: JSONDict) -> None:
        op, data = payload.get("op"), payload.get("d")
        if op == OP_HEARTBEAT:
            conn.send({"op": OP_HEARTBEAT_ACK, "d": None})
        elif op == OP_IDENTIFY:
            self._identify(conn, data or {})
        elif op == OP_RESUME:
            self._resume(conn, data or {})
        elif op == OP_REQUEST_MEMBERS:
            guild_id = int((data or {}).get("guild_id", 0))
            if guild_id in self._guilds:
                self._dispatch(
                    "GUILD_MEMBERS_CHUNK",
                    {
                        "guild_id": str(guild_id),
                        "members": [self._member(guild_id, u) for u in self._users],
                        "chunk_index": 0,
                        "chunk_count": 1,
                        "not_found": [],
                        "nonce": (data or {}).get("nonce"),
                    },
                )
        elif op in (OP_PRESENCE, OP_VOICE_STATE):
            pass
        else:
            conn.close(4001)  # Unknown opcode

    def _identify(self, conn: _Connection, data: JSONDict) -> None:
        if data.get("token") != self.token:
            conn.close(4004)  # Authentication failed
            return
        intents = int(data.get("intents") or 0)
        if intents & PRIVILEGED_INTENTS & ~self.allowed_intents:
            conn.close(4014)  # Disallowed intent(s)
            return
        self.identify_count += 1
        if self._session is not None and self._session.conn not in (None, conn):
            self._session.conn.close(4009)
        session = self._session = _Session(secrets.token_hex(16), intents, conn)
        self._dispatch(
            "READY",
            {
                "v": 10,
                "user": self._get_me(None, None),  # type: ignore[arg-type]
                "guilds": [{"id": str(g), "unavailable": True} for g in self._guilds],
                "session_id": session.id,
                "session_type": "normal",
                "resume_gateway_url": self.gateway_url,
                "shard": [0, 1],
                "application": {"id": str(self.application_id), "flags": 1 << 19},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "user_settings": {},
                "_trace": ["fake-gateway"],
            },
        )
        for guild_id in self._guilds:
            self._dispatch("GUILD_CREATE", self._guild_payload(guild_id))

    def _resume(self, conn: _Connection, data: JSONDict) -> None:
        session = self._session
        if (
            session is None
            or session.invalidated
            or data.get("session_id") != session.id
            or data.get("token") != self.token
        ):
            conn.send({"op": OP_INVALID_SESSION, "d": False})
            return
        self.resume_count += 1
        if session.conn is not None and session.conn is not conn:
            session.conn.close(4009)
        session.conn = conn
        seq = int(data.get("seq") or 0)
        for frame in session.log:
            if frame["s"] > seq:
                conn.send(frame)
        self._dispatch("RESUMED", {"_trace": ["fake-gateway"]})

    def _dispatch(self, event: str, data: JSONDict, *, intent: int | None = None) -> None:
        session = self._session
        if session is None or session.invalidated:
            self.dropped_events.append((event, data))
            return
        if intent is not None and not session.intents & intent:
            return
        session.seq += 1
        frame = {"op": OP_DISPATCH, "t": event, "s": session.seq, "d": data}
        session.log.append(frame)
        if session.conn is not None:
            session.conn.send(frame)

    def _message_intent(self, channel: _Channel) -> int:
        return INTENT_GUILD_MESSAGES if channel.guild_id is not None else INTENT_DIRECT_MESSAGES

    def _dispatch_message(self, event: str, stored: _Message) -> None:
        """MESSAGE_CREATE/UPDATE as the session may see it: without the MESSAGE_CONTENT intent,
        guild messages not by the bot and not mentioning it arrive without content,
        attachments, embeds or components (as on Discord)."""
        channel = self._channel(stored.channel_id)
        data = self._gateway_message(stored)
        session = self._session
        if (
            session is not None
            and not session.intents & INTENT_MESSAGE_CONTENT
            and channel.guild_id is not None
            and stored.author_id != self.bot_id
            and self.bot_id not in mentioned_ids(data["content"])
        ):
            data.update(content="", attachments=[], embeds=[], components=[])
        self._dispatch(event, data, intent=self._message_intent(channel))


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


async def _read_body(request: web.Request, record: Request) -> list[tuple[str, str, bytes]]:
    """Fill ``record.json``/``files``; return the uploads as (field, filename, bytes)."""
    uploads: list[tuple[str, str, bytes]] = []
    if not request.can_read_body:
        return uploads
    if request.content_type == "application/json":
        try:
            record.json = await request.json()
        except ValueError as exc:
            raise DiscordError(400, 50109, "The request body contains invalid JSON.") from exc
    elif request.content_type.startswith("multipart/"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                data = value.file.read()
                uploads.append((key, value.filename, data))
                record.files[value.filename] = data
                record.file_fields[key] = value.filename
            elif key == "payload_json":
                try:
                    record.json = json.loads(str(value))
                except ValueError as exc:
                    raise DiscordError(
                        400, 50109, "The request body contains invalid JSON."
                    ) from exc
    else:
        await request.read()
    return uploads


def _body(record: Request) -> JSONDict:
    if not isinstance(record.json, dict):
        raise DiscordError(400, 50109, "The request body contains invalid JSON.")
    return record.json


def _message_fields(payload: JSONDict) -> JSONDict:
    return {
        "content": payload.get("content") or "",
        "embeds": payload.get("embeds") or [],
        "components": payload.get("components") or [],
    }


def _owners(inter: FakeInteraction) -> JSONDict:
    return {"0": str(inter.guild_id if inter.guild_id is not None else inter.user_id)}


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    # Discord answers through Google's front end; discord.py only retries a 429 carrying "Via"
    # (without it, it assumes a Cloudflare ban and raises).
    # discord.py decodes JSON only when Content-Type is exactly "application/json" (aiohttp's
    # json_response adds "; charset=utf-8", which discord.py would hand back as a str).
    return web.Response(
        body=json.dumps(body).encode(),
        status=status,
        headers={"Content-Type": "application/json", "Via": "1.1 google", **(headers or {})},
    )


def _matcher(path: str | Callable[[Request], bool]) -> Callable[[Request], bool]:
    if callable(path):
        return path
    pattern = re.compile(path)
    return lambda request: pattern.fullmatch(request.path) is not None
