"""Telegram: the access gate in front of every handler, and the admin commands.

The gate runs first (handler group -1): a refused user's update stops there, before any
download, so nothing of theirs is stored; they get one polite notice, then silence.
"""

from __future__ import annotations

from telegram import Message, Update
from telegram.constants import ChatType
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot.service.conversation import ConversationService
from bot.service.languages import negotiate_hint
from bot.service.messages import SOURCE_LOCALE, use_locale
from bot.service.replies import Reply
from bot.telegram.delivery import PLATFORM, actor_for
from bot.telegram.handlers import _addressed_to_bot, _answer, _ctx, _who
from storage.access import CHAT, Subject


def _place(message: Message) -> Subject | None:
    """The group chat a message was sent in (None in a private chat)."""
    if message.chat.type == ChatType.PRIVATE:
        return None
    return Subject(PLATFORM, CHAT, str(message.chat.id))


async def gate(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Let admins and served users through; stop everyone else's update here."""
    user = update.effective_user
    message = update.effective_message
    if user is None or message is None or user.id == context.bot.id:
        return
    place = _place(message)
    actor = actor_for(message.chat.id, user.id)
    query = update.callback_query
    addressed = (
        query is not None
        or _is_command(message)
        or _addressed_to_bot(message, context, needs_caption=True)
    )
    decision = await _ctx(context).service.access.check(
        actor, (place,) if place else (), addressed=addressed
    )
    if decision.allowed:
        return
    # In the app's language, without storing it: nothing of a refused user is kept.
    with use_locale(negotiate_hint(user.language_code) or SOURCE_LOCALE):
        if query is not None:
            notice = decision.notice.text() if decision.notice is not None else None
            await query.answer(notice, show_alert=notice is not None)
        elif decision.notice is not None:
            await _answer(update, context, decision.notice)
    raise ApplicationHandlerStop()


def _is_command(message: Message) -> bool:
    return bool(message.text and message.text.startswith("/"))


def _replied_user(message: Message, context: ContextTypes.DEFAULT_TYPE) -> str | None:
    """The author of the message an admin replied to (not the bot itself)."""
    replied = message.reply_to_message
    if replied is None or replied.from_user is None or replied.from_user.id == context.bot.id:
        return None
    return str(replied.from_user.id)


def _service(context: ContextTypes.DEFAULT_TYPE) -> ConversationService:
    return _ctx(context).service


async def _run(update: Update, context: ContextTypes.DEFAULT_TYPE, reply: Reply) -> None:
    await _answer(update, context, reply)


async def allow(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/allow <user id> | here: put a user or this group on the allow-list (admins only)."""
    message, user = _who(update)
    reply = await _service(context).admin.allow(
        actor_for(message.chat.id, user.id),
        " ".join(context.args or []),
        _place(message),
        _replied_user(message, context),
    )
    await _run(update, context, reply)


async def deny(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/deny <user id> | here: take a user or this group off the allow-list (admins only)."""
    message, user = _who(update)
    reply = await _service(context).admin.deny(
        actor_for(message.chat.id, user.id),
        " ".join(context.args or []),
        _place(message),
        _replied_user(message, context),
    )
    await _run(update, context, reply)


async def ban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/ban <user id>: refuse a user, in open mode too (admins only)."""
    message, user = _who(update)
    reply = await _service(context).admin.ban(
        actor_for(message.chat.id, user.id),
        " ".join(context.args or []),
        _replied_user(message, context),
    )
    await _run(update, context, reply)


async def unban(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/unban <user id> (admins only)."""
    message, user = _who(update)
    reply = await _service(context).admin.unban(
        actor_for(message.chat.id, user.id),
        " ".join(context.args or []),
        _replied_user(message, context),
    )
    await _run(update, context, reply)


async def quota(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/quota <user id> <edits per day | 0 | default>, or as a reply with just the number."""
    message, user = _who(update)
    args = list(context.args or [])
    replied = _replied_user(message, context)
    if replied is not None and len(args) == 1:  # a reply names the user: just the number
        args = ["", *args]
    target, edits = [*args, "", ""][:2]
    reply = await _service(context).admin.quota(
        actor_for(message.chat.id, user.id), target, edits, replied
    )
    await _run(update, context, reply)


async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """/stats: today's figures (admins only)."""
    message, user = _who(update)
    await _run(
        update, context, await _service(context).admin.stats(actor_for(message.chat.id, user.id))
    )


ADMIN_COMMANDS = {
    "allow": allow,
    "deny": deny,
    "ban": ban,
    "unban": unban,
    "quota": quota,
    "stats": stats,
}
"""Not in the public command menu: only admins can use them."""
