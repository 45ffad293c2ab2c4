"""Every text pix2chat says, in one catalogue (English now; add a locale dict to translate)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXAMPLES = '"make it night", "add snow", "put the sneaker on a beach"'

ENGLISH: dict[str, str] = {
    # Conversation
    "photo.received": "Got your photo. Now tell me what to change, for example " + EXAMPLES + ".",
    "edit.queued": "On it: “{instruction}”. You are #{position} in line.",
    "edit.queued_next": "On it: “{instruction}”. You are next.",
    "edit.duplicate": "I'm already working on that one.",
    "edit.started": "Editing “{instruction}”…",
    "edit.progress": "Editing… {step}/{total}",
    "edit.preview": "Preview after step {step}/{total}",
    "edit.done": "“{instruction}” (seed {seed})",
    "undo.done": "Back to the previous version.",
    "redo.done": "Forward again: “{instruction}”.",
    "redo.done_photo": "Forward again.",
    "reset.done": "Starting over from your original photo.",
    "history.empty": "No history yet: send a photo to begin.",
    "history.show": "Your edits so far ({count} steps):",
    "settings.show": (
        "Settings: steps {num_inference_steps}, text guidance {guidance_scale}, "
        "image guidance {image_guidance_scale}, seed {seed_text}, resolution {resolution} px."
    ),
    "settings.updated": "Updated: {name} is now {value}.",
    "settings.reset": "Settings are back to the defaults.",
    "cancel.done": "Cancelled {count} queued edit(s).",
    "status.idle": "Nothing in progress. Send an instruction to edit your photo.",
    "status.pending": "{count} edit(s) in progress; the next one is #{position} in line.",
    "status.running": "{count} edit(s) in progress; one is being edited right now.",
    "forget.confirm": "This deletes all your photos and history here. Are you sure?",
    "forget.done": "Done: I deleted {count} image(s) and all your history.",
    "forget.nothing": "There was nothing to delete.",
    "help": (
        "Send me a photo, then tell me what to change, for example " + EXAMPLES + ". "
        "Each instruction edits the latest result. Commands: /undo, /redo, /regenerate, "
        "/history, /reset, /settings, /cancel, /status, /forget."
    ),
    "welcome": (
        "Hi! I edit photos by instruction. Send me a photo, then tell me what to change, "
        "for example " + EXAMPLES + ". Each instruction edits the latest result; reply to an "
        "older result to branch from it."
    ),
    "history.line_photo": "{number}. Your photo",
    "history.line_edit": "{number}. “{instruction}” (seed {seed})",
    "history.line_pending": "{number}. “{instruction}” ({status})",
    "history.head": "  ← now",
    "settings.choose": "Tap a value to change it.",
    "album.first": "You sent an album: I'm using its first photo.",
    "media.unsupported": "I can only edit photos. Please send a JPEG, PNG, WebP or HEIC image.",
    "button.not_yours": "Only the person who made this edit can use its buttons.",
    "button.expired": "That button no longer works. Send a new instruction instead.",
    "full.caption": "Full resolution, lossless ({width}x{height}).",
    "full.as_document": "The result is too large for a photo, so here it is as a file.",
    "full.caption_plain": "Full resolution, lossless.",
    "full.too_big": "The lossless file is over this channel's upload limit, so here is the compressed copy.",
    "upload.too_big": "The picture is over this channel's upload limit, so I can't show it here.",
    "interaction.not_yours": "Only the person who made this edit can use its buttons.",
    # Button labels
    "button.undo": "↩ Undo",
    "button.redo": "↪ Redo",
    "button.regenerate": "🎲 Regenerate",
    "button.full": "⬇ Full resolution",
    "button.cancel": "✖ Cancel",
    "button.forget_yes": "Yes, delete everything",
    "button.forget_no": "No, keep it",
    "button.forget_confirm": "Yes, delete everything",
    "button.defaults": "Defaults",
    "forget.kept": "Nothing was deleted.",
    # Web chat
    "web.no_session": "Your browser session has expired. Reload the page to start a new one.",
    "web.login_needed": "This pix2chat is protected: enter its password to continue.",
    "web.wrong_password": "That password is not right.",
    "web.forbidden": "That request came from another website, so it was refused.",
    "web.bad_request": "The page sent something I could not understand. Reload it and try again.",
    "web.not_found": "There is nothing here.",
    "web.bad_host": "This web chat only answers on its own address.",
    "web.welcome": (
        "Hi! I edit photos by instruction. Add a photo (the + button, or drop or paste one), "
        "then tell me what to change, for example " + EXAMPLES + ". Each instruction edits the "
        "latest result; click an earlier result to branch from it."
    ),
    "web.your_photo": "Your photo",
    "web.branch": "Your next instruction edits this earlier version.",
    "web.branched": "(edits an earlier version)",
    "web.offline": "I can't reach pix2chat right now. Is it still running?",
    "web.reconnecting": "Reconnecting…",
    # Errors
    "error.generic": "Something went wrong. Please try again.",
    "error.no_image": "Send me a photo first, then tell me what to change.",
    "error.empty_instruction": "Tell me what to change, for example " + EXAMPLES + ".",
    "error.instruction_too_long": (
        "That instruction is too long ({tokens} words and symbols; I read at most {max_tokens}). "
        "Please shorten it."
    ),
    "error.image_unreadable": "I couldn't read that image. Please send a JPEG, PNG, WebP or HEIC photo.",
    "error.image_format": "That file isn't a photo I can edit. Please send a JPEG, PNG, WebP or HEIC image.",
    "error.image_too_large": "That image is too large. Please send a smaller one (at most {limit}).",
    "error.image_too_small": "That image is too small to edit (at least {min_side} px per side).",
    "error.image_aspect": "That image is too long and thin to edit (at most {max_ratio}:1).",
    "error.nothing_to_undo": "Nothing to undo: this is your original photo.",
    "error.nothing_to_redo": "Nothing to redo.",
    "error.nothing_to_regenerate": "There is no edit to regenerate yet: send an instruction first.",
    "error.nothing_to_cancel": "There is no queued edit to cancel.",
    "error.nothing_to_cancel_running": "Your edit is already running and will be ready in a moment.",
    "error.version_not_found": "I can't find that image. It may have been deleted.",
    "error.version_not_ready": "That version has no image yet.",
    "error.invalid_setting": "{name} must be {allowed}.",
    "error.unknown_setting": "There is no setting called “{name}”. Settings: {names}.",
    "error.rate_limited": "You're going fast! Please wait {wait} before the next edit.",
    "error.quota_exceeded": "You've used today's {quota} edits. They refill in {wait}.",
    "error.too_many_pending": "You already have {count} edits waiting. Please wait for one to finish.",
    "error.queue_full": "I'm very busy right now. Please try again in a minute.",
    "error.edit_failed": "Sorry, that edit failed. Try again, or rephrase the instruction.",
    "error.out_of_memory": "Sorry, that edit ran out of memory. Try a lower resolution in /settings.",
    "error.parent_failed": "Skipped “{instruction}”: the edit before it failed.",
}

CATALOGUES: dict[str, dict[str, str]] = {"en": ENGLISH}


def format_wait(seconds: float) -> str:
    """A short human duration: "20 seconds", "3 minutes", "5 hours"."""
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    return f"{round(minutes / 60)} hours"


def render(key: str, args: Mapping[str, Any] | None = None, locale: str = "en") -> str:
    """The message for `key`, filled with `args`; falls back to English, then to a generic text."""
    template = (
        CATALOGUES.get(locale, ENGLISH).get(key) or ENGLISH.get(key) or ENGLISH["error.generic"]
    )
    try:
        return template.format_map(dict(args or {}))
    except (KeyError, IndexError, ValueError):
        return template
