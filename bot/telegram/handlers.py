"""Telegram handlers: each turns one update into one conversation-service call.

No rules live here beyond Telegram's own (which messages a bot should react to in a group,
what a Bot API download may weigh); the service decides, `Delivery` renders.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from telegram import Message, Update, User
from telegram.constants import ChatAction, ChatType
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes

from bot.service.conversation import ConversationService, error_reply
from bot.service.messages import SOURCE_LOCALE, Key, render, use_locale
from bot.service.replies import Action, Reply, ReplyKind
from bot.telegram import keyboards
from bot.telegram.delivery import Delivery, actor_for
from editor.errors import ImageError, ImageTooLarge
from storage.types import Actor

log = logging.getLogger(__name__)

BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""The public Bot API serves files up to 20 MB to bots; a local Bot API server lifts this."""


@dataclass
class TelegramContext:
    """What every handler needs, stored in `application.bot_data`."""

    service: ConversationService
    delivery: Delivery
    download_limit: int
    albums_seen: dict[str, None] = field(default_factory=dict)


Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


def localized(callback: Handler) -> Handler:
    """Run a handler in its user's language: /language's choice, else the app's language_code."""

    @functools.wraps(callback)
    async def in_users_language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        with use_locale(await _locale(update, context)):
            await callback(update, context)

    return in_users_language


async def _locale(update: object, context: ContextTypes.DEFAULT_TYPE) -> str:
    if not isinstance(update, Update):
        return SOURCE_LOCALE
    user, chat = update.effective_user, update.effective_chat
    if user is None or chat is None:
        return SOURCE_LOCALE
    return await _ctx(context).service.locale(actor_for(chat.id, user.id), user.language_code)


def _ctx(context: ContextTypes.DEFAULT_TYPE) -> TelegramContext:
    found: TelegramContext = context.bot_data["pix2chat"]
    return found


def _request_key(message: Message) -> str:
    """Telegram may deliver an update twice after a crash; the message id names it for good."""
    return f"tg:{message.message_id}"


async def _answer(update: Update, context: ContextTypes.DEFAULT_TYPE, reply: Reply) -> None:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    await _ctx(context).delivery.answer(
        message.chat.id,
        message.chat.type,
        message.message_id,
        actor_for(message.chat.id, user.id),
        reply,
    )


def _actor(update: Update) -> Actor:
    """Who is asking, in which chat: in a group, every member has their own conversation."""
    message, user = _who(update)
    return actor_for(message.chat.id, user.id)


def _who(update: Update) -> tuple[Message, User]:
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    return message, user


# ----- commands -----------------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/start: a short welcome with examples and the commands."""
    message, _user = _who(update)
    await _ctx(context).delivery.send_text(
        message.chat.id, f"{render(Key.WELCOME)}\n\n{render(Key.HELP)}", message.message_id
    )


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/help: examples and the command list."""
    message, _user = _who(update)
    await _ctx(context).delivery.send_text(message.chat.id, render(Key.HELP), message.message_id)


async def undo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/undo: back to the previous version."""
    await _answer(update, context, await _ctx(context).service.undo(_actor(update)))


async def redo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/redo: forward again to the version undo left."""
    await _answer(update, context, await _ctx(context).service.redo(_actor(update)))


async def regenerate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/regenerate: the same instruction again with a new seed."""
    await _answer(update, context, await _ctx(context).service.regenerate(_actor(update)))


async def variations(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/variations: four candidates of the last edit, to pick one from."""
    await _answer(update, context, await _ctx(context).service.variations(_actor(update)))


async def stronger(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stronger: the last edit again, applied more strongly."""
    await _answer(update, context, await _ctx(context).service.stronger(_actor(update)))


async def subtler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/subtler: the last edit again, applied more gently."""
    await _answer(update, context, await _ctx(context).service.subtler(_actor(update)))


async def history(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/history: the chain of instructions and the versions as an album."""
    await _answer(update, context, await _ctx(context).service.history(_actor(update)))


async def reset(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/reset: start over from the original photo."""
    await _answer(update, context, await _ctx(context).service.reset(_actor(update)))


async def settings(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/settings [name value]: show the settings with buttons, or set one by typing it."""
    service, actor = _ctx(context).service, _actor(update)
    args = context.args or []
    if len(args) >= 2:
        reply = await service.update_setting(actor, args[0], " ".join(args[1:]))
        if not reply.is_error:
            reply = await service.settings(actor)
    else:
        reply = await service.settings(actor)
    await _answer(update, context, reply)


async def model(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/model [name]: the models to pick from, or switch to one (stored per user)."""
    service, actor = _ctx(context).service, _actor(update)
    args = context.args or []
    if args:
        reply = await service.update_setting(actor, "model", args[0])
    else:
        reply = await service.model_choices(actor)
    await _answer(update, context, reply)


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cancel: drop the newest queued edit."""
    await _answer(update, context, await _ctx(context).service.cancel(_actor(update)))


async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/status: where my edits stand in the queue."""
    await _answer(update, context, await _ctx(context).service.status(_actor(update)))


async def language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/language [code]: list the languages, or choose one ("auto" follows the app again)."""
    _message, user = _who(update)
    code = " ".join(context.args or [])
    reply = await _ctx(context).service.choose_language(_actor(update), code, user.language_code)
    await _answer(update, context, reply)


async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/forget: ask before deleting all of my images and history."""
    message, user = _who(update)
    await _ctx(context).delivery.send_text(
        message.chat.id,
        render(Key.FORGET_CONFIRM),
        message.message_id,
        keyboards.forget_confirmation(str(user.id)),
    )


async def keep(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/keep <what>: protect a named region from following edits; /keep off clears it."""
    text = " ".join(context.args or [])
    await _answer(update, context, await _ctx(context).service.keep(_actor(update), text))


async def only(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/only <what>: confine following edits to a named region; /only off clears it."""
    text = " ".join(context.args or [])
    await _answer(update, context, await _ctx(context).service.only(_actor(update), text))


async def regions(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/regions: what /keep and /only have set."""
    await _answer(update, context, await _ctx(context).service.show_regions(_actor(update)))


async def upscale(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/upscale [2x|4x]: super-resolution of the current version (or the replied-to one)."""
    message, _user = _who(update)
    scale = " ".join(context.args or []) or None
    reply = await _ctx(context).service.upscale(
        _actor(update), scale, _replied_version(message, context)
    )
    await _answer(update, context, reply)


async def cutout(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/cutout: the subject on a transparent background, as a PNG file."""
    message, _user = _who(update)
    reply = await _ctx(context).service.cutout(_actor(update), _replied_version(message, context))
    await _answer(update, context, reply)


async def white(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/white [square]: the subject centred on pure white."""
    message, _user = _who(update)
    square = "square" in [word.lower() for word in context.args or []]
    reply = await _ctx(context).service.white(
        _actor(update), square, _replied_version(message, context)
    )
    await _answer(update, context, reply)


def _replied_version(message: Message, context: ContextTypes.DEFAULT_TYPE) -> int | None:
    """The version of the bot's result this command replies to (a branch), if any."""
    if not _is_reply_to_bot(message, context):
        return None
    return keyboards.version_of(message.reply_to_message)


# ----- photos, files and text ---------------------------------------------------------------


async def photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A compressed photo: its largest size; the caption is the first instruction."""
    message, _user = _who(update)
    if not _addressed_to_bot(message, context, needs_caption=True):
        return
    largest = message.photo[-1]
    await _receive(update, context, largest.file_id, largest.file_size)


async def document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An image sent as a file (full resolution; HEIC, PNG, WebP...); checked by decoding."""
    message, _user = _who(update)
    if not _addressed_to_bot(message, context, needs_caption=True):
        return
    assert message.document is not None
    await _receive(update, context, message.document.file_id, message.document.file_size)


async def unsupported_media(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, animations, videos, voice: say what works instead."""
    message, _user = _who(update)
    if message.chat.type != ChatType.PRIVATE and not _is_reply_to_bot(message, context):
        return
    await _ctx(context).delivery.send_text(
        message.chat.id, render(Key.MEDIA_UNSUPPORTED), message.message_id
    )


async def text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """An instruction; a reply to an older result branches from that version."""
    message, user = _who(update)
    if not _addressed_to_bot(message, context):
        return
    words = _without_mention(message.text or "", context.bot.username)
    base = (
        keyboards.version_of(message.reply_to_message)
        if _is_reply_to_bot(message, context)
        else None
    )
    reply = await _ctx(context).service.instruct(
        actor_for(message.chat.id, user.id),
        words,
        base_version_id=base,
        request_key=_request_key(message),
    )
    await _answer(update, context, reply)


async def _receive(
    update: Update, context: ContextTypes.DEFAULT_TYPE, file_id: str, file_size: int | None
) -> None:
    message, user = _who(update)
    ctx = _ctx(context)
    too_large = error_reply(ImageTooLarge(max_mb=round(ctx.download_limit / 2**20)))
    if file_size is not None and file_size > ctx.download_limit:
        await _answer(update, context, too_large)
        return
    album_note = _album_note(message, ctx)
    if album_note is False:
        return  # a later photo of an album whose first photo was taken
    await ctx.delivery.safely(context.bot.send_chat_action(message.chat.id, ChatAction.TYPING))
    try:
        file = await context.bot.get_file(file_id)
        data = bytes(await file.download_as_bytearray())
    except BadRequest as error:
        log.info("download refused: %s", error)
        refused = too_large if "too big" in str(error).lower() else error_reply(ImageError())
        await _answer(update, context, refused)
        return
    except TelegramError as error:
        log.warning("download failed: %s", error)
        await _answer(update, context, Reply(key=Key.ERROR_GENERIC, kind=ReplyKind.ERROR))
        return
    if album_note:
        await ctx.delivery.send_text(message.chat.id, render(Key.ALBUM_FIRST), message.message_id)
    caption = _without_mention(message.caption or "", context.bot.username) or None
    reply = await ctx.service.receive_image(
        actor_for(message.chat.id, user.id),
        data,
        caption=caption,
        request_key=_request_key(message),
    )
    await _answer(update, context, reply)


def _album_note(message: Message, ctx: TelegramContext) -> bool | None:
    """None: not an album; True: the album's first photo (say so); False: a later one."""
    group = message.media_group_id
    if group is None:
        return None
    if group in ctx.albums_seen:
        return False
    ctx.albums_seen[group] = None
    while len(ctx.albums_seen) > 1000:  # forget old albums, oldest first
        del ctx.albums_seen[next(iter(ctx.albums_seen))]
    return True


def _is_reply_to_bot(message: Message, context: ContextTypes.DEFAULT_TYPE) -> bool:
    replied = message.reply_to_message
    return bool(replied and replied.from_user and replied.from_user.id == context.bot.id)


def _mentions_bot(message: Message, context: ContextTypes.DEFAULT_TYPE) -> bool:
    words = (message.text or message.caption or "").lower()
    return f"@{context.bot.username}".lower() in words


def _addressed_to_bot(
    message: Message, context: ContextTypes.DEFAULT_TYPE, needs_caption: bool = False
) -> bool:
    """Private chats: everything. Groups: replies to the bot, mentions, captioned photos."""
    if message.chat.type == ChatType.PRIVATE:
        return True
    if _is_reply_to_bot(message, context) or _mentions_bot(message, context):
        return True
    return needs_caption and bool(message.caption and message.caption.strip())


def _without_mention(words: str, username: str) -> str:
    mention = f"@{username}"
    index = words.lower().find(mention.lower())
    if index < 0:
        return words
    return (words[:index] + words[index + len(mention) :]).strip()


# ----- buttons ------------------------------------------------------------------------------


async def button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Undo / Regenerate / Full resolution / Cancel / settings / forget buttons."""
    query = update.callback_query
    assert query is not None and query.message is not None
    press = keyboards.decode(query.data if isinstance(query.data, str) else None)
    if press is None:
        await query.answer(render(Key.BUTTON_EXPIRED))
        return
    if press.owner_id != str(query.from_user.id):
        await query.answer(render(Key.BUTTON_NOT_YOURS), show_alert=True)
        return
    await query.answer()
    ctx = _ctx(context)
    chat = query.message.chat
    actor = actor_for(chat.id, query.from_user.id)
    reply_to = query.message.message_id
    if press.action == Action.FULL_RESOLUTION.value:
        await ctx.delivery.send_full_resolution(chat.id, reply_to, actor, press.version_id)
        return
    reply = await _button_reply(ctx, actor, press)
    if reply.settings is not None and not reply.is_error:
        await ctx.delivery.safely(
            context.bot.edit_message_text(
                f"{reply.text()}\n{render(Key.SETTINGS_CHOOSE)}",
                chat.id,
                query.message.message_id,
                reply_markup=keyboards.settings(reply.settings, actor.user_id),
            )
        )
        return
    if press.action in (Action.FORGET_CONFIRM.value, keyboards.FORGET_NO):
        await ctx.delivery.safely(
            context.bot.edit_message_text(reply.text(), chat.id, query.message.message_id)
        )
        return
    await ctx.delivery.answer(chat.id, chat.type, reply_to, actor, reply)


async def _button_reply(ctx: TelegramContext, actor: Actor, press: keyboards.ButtonPress) -> Reply:
    service = ctx.service
    version = press.version_id or None
    match press.action:
        case Action.UNDO.value:
            return await service.undo(actor, version)
        case Action.REDO.value:
            return await service.redo(actor)
        case Action.REGENERATE.value:
            return await service.regenerate(actor, version)
        case Action.CANCEL.value:
            return await service.cancel(actor)
        case Action.UPSCALE.value:
            return await service.upscale(actor, None, version)
        case Action.VARIATIONS.value:
            return await service.variations(actor, version)
        case Action.STRONGER.value:
            return await service.stronger(actor, version)
        case Action.SUBTLER.value:
            return await service.subtler(actor, version)
        case Action.USE.value:
            return await service.pick(actor, press.version_id)
        case Action.FORGET_CONFIRM.value:
            return await service.forget(actor)
        case keyboards.FORGET_NO:
            return Reply(key=Key.FORGET_KEPT)
        case keyboards.DEFAULTS:
            return await service.reset_settings(actor)
        case keyboards.SETTING:
            name, _, value = press.value.partition("=")
            updated = await service.update_setting(actor, name, value)
            return updated if updated.is_error else await service.settings(actor)
    return Reply(key=Key.BUTTON_EXPIRED, kind=ReplyKind.ERROR)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Anything unexpected: log it, and tell the user something went wrong (never a traceback)."""
    log.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        locale = SOURCE_LOCALE
        with contextlib.suppress(Exception):  # storage may be why it failed: then in English
            locale = await _locale(update, context)
        with contextlib.suppress(TelegramError):
            await context.bot.send_message(
                update.effective_chat.id, render(Key.ERROR_GENERIC, locale=locale)
            )
