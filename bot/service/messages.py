"""Every text pix2chat says, in one catalogue (English now; add a locale dict to translate)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

EXAMPLES = '"make it night", "add snow", "put the sneaker on a beach"'


class Key(enum.StrEnum):
    """Every catalogue key, named, so a misspelt key fails at import rather than in a chat."""

    PHOTO_RECEIVED = "photo.received"
    PHOTO_DOWNSCALED = "photo.downscaled"
    EDIT_QUEUED = "edit.queued"
    EDIT_QUEUED_NEXT = "edit.queued_next"
    EDIT_DUPLICATE = "edit.duplicate"
    EDIT_PROGRESS = "edit.progress"
    EDIT_PREVIEW = "edit.preview"
    EDIT_DONE = "edit.done"
    UNDO_DONE = "undo.done"
    REDO_DONE = "redo.done"
    REDO_DONE_PHOTO = "redo.done_photo"
    RESET_DONE = "reset.done"
    HISTORY_EMPTY = "history.empty"
    HISTORY_SHOW = "history.show"
    SETTINGS_SHOW = "settings.show"
    SETTINGS_UPDATED = "settings.updated"
    SETTINGS_RESET = "settings.reset"
    CANCEL_DONE = "cancel.done"
    STATUS_IDLE = "status.idle"
    STATUS_PENDING = "status.pending"
    STATUS_RUNNING = "status.running"
    FORGET_CONFIRM = "forget.confirm"
    FORGET_DONE = "forget.done"
    FORGET_NOTHING = "forget.nothing"
    HELP = "help"
    WELCOME = "welcome"
    HISTORY_LINE_PHOTO = "history.line_photo"
    HISTORY_LINE_EDIT = "history.line_edit"
    HISTORY_LINE_PENDING = "history.line_pending"
    HISTORY_HEAD = "history.head"
    SETTINGS_CHOOSE = "settings.choose"
    ALBUM_FIRST = "album.first"
    MEDIA_UNSUPPORTED = "media.unsupported"
    BUTTON_NOT_YOURS = "button.not_yours"
    BUTTON_EXPIRED = "button.expired"
    FULL_CAPTION = "full.caption"
    FULL_AS_DOCUMENT = "full.as_document"
    FULL_CAPTION_PLAIN = "full.caption_plain"
    FULL_TOO_BIG = "full.too_big"
    UPLOAD_TOO_BIG = "upload.too_big"
    BUTTON_UNDO = "button.undo"
    BUTTON_REDO = "button.redo"
    BUTTON_REGENERATE = "button.regenerate"
    BUTTON_FULL = "button.full"
    BUTTON_CANCEL = "button.cancel"
    BUTTON_FORGET_YES = "button.forget_yes"
    BUTTON_FORGET_NO = "button.forget_no"
    BUTTON_FORGET_CONFIRM = "button.forget_confirm"
    BUTTON_DEFAULTS = "button.defaults"
    FORGET_KEPT = "forget.kept"
    WEB_NO_SESSION = "web.no_session"
    WEB_LOGIN_NEEDED = "web.login_needed"
    WEB_WRONG_PASSWORD = "web.wrong_password"
    WEB_FORBIDDEN = "web.forbidden"
    WEB_BAD_REQUEST = "web.bad_request"
    WEB_NOT_FOUND = "web.not_found"
    WEB_BAD_HOST = "web.bad_host"
    WEB_WELCOME = "web.welcome"
    WEB_YOUR_PHOTO = "web.your_photo"
    WEB_BRANCH = "web.branch"
    WEB_BRANCHED = "web.branched"
    WEB_OFFLINE = "web.offline"
    WEB_RECONNECTING = "web.reconnecting"
    ERROR_GENERIC = "error.generic"
    ERROR_NO_IMAGE = "error.no_image"
    ERROR_EMPTY_INSTRUCTION = "error.empty_instruction"
    ERROR_INSTRUCTION_TOO_LONG = "error.instruction_too_long"
    ERROR_IMAGE_UNREADABLE = "error.image_unreadable"
    ERROR_IMAGE_FORMAT = "error.image_format"
    ERROR_IMAGE_TOO_LARGE = "error.image_too_large"
    ERROR_IMAGE_TOO_SMALL = "error.image_too_small"
    ERROR_IMAGE_ASPECT = "error.image_aspect"
    ERROR_NOTHING_TO_UNDO = "error.nothing_to_undo"
    ERROR_NOTHING_TO_REDO = "error.nothing_to_redo"
    ERROR_NOTHING_TO_REGENERATE = "error.nothing_to_regenerate"
    ERROR_NOTHING_TO_CANCEL = "error.nothing_to_cancel"
    ERROR_NOTHING_TO_CANCEL_RUNNING = "error.nothing_to_cancel_running"
    ERROR_VERSION_NOT_FOUND = "error.version_not_found"
    ERROR_VERSION_NOT_READY = "error.version_not_ready"
    ERROR_INVALID_SETTING = "error.invalid_setting"
    ERROR_UNKNOWN_SETTING = "error.unknown_setting"
    ERROR_RATE_LIMITED = "error.rate_limited"
    ERROR_QUOTA_EXCEEDED = "error.quota_exceeded"
    ERROR_TOO_MANY_PENDING = "error.too_many_pending"
    ERROR_QUEUE_FULL = "error.queue_full"
    ERROR_EDIT_FAILED = "error.edit_failed"
    ERROR_OUT_OF_MEMORY = "error.out_of_memory"
    ERROR_PARENT_FAILED = "error.parent_failed"
    ERROR_UNAVAILABLE = "error.unavailable"
    ERROR_STORAGE_FULL = "error.storage_full"
    # Recipes (issue 17)
    RECIPE_SAVED = "recipe.saved"
    RECIPE_REPLACED = "recipe.replaced"
    RECIPE_LIST = "recipe.list"
    RECIPE_LIST_EMPTY = "recipe.list_empty"
    RECIPE_LIST_LINE = "recipe.list_line"
    RECIPE_SHOW = "recipe.show"
    RECIPE_STEP_LINE = "recipe.step_line"
    RECIPE_STEP_SEED = "recipe.step_seed"
    RECIPE_STEP_REGION = "recipe.step_region"
    RECIPE_DELETED = "recipe.deleted"
    RECIPE_EXPORTED = "recipe.exported"
    RECIPE_IMPORTED = "recipe.imported"
    RECIPE_USAGE = "recipe.usage"
    RECIPE_NEEDS_PHOTOS = "recipe.needs_photos"
    RECIPE_STARTED = "recipe.started"
    RECIPE_PROGRESS = "recipe.progress"
    RECIPE_FINISHED = "recipe.finished"
    RECIPE_QUOTA_FITS = "recipe.quota_fits"
    RECIPE_QUOTA_SHORT = "recipe.quota_short"
    RECIPE_TOO_MANY = "recipe.too_many"
    RECIPE_NOT_IMAGE = "recipe.not_image"
    RECIPE_PHOTO_FAILED = "recipe.photo_failed"
    RECIPE_PHOTO_CANCELLED = "recipe.photo_cancelled"
    RECIPE_CANCELLED = "recipe.cancelled"
    RECIPE_ZIP_CAPTION = "recipe.zip_caption"
    RECIPE_ZIP_TOO_BIG = "recipe.zip_too_big"
    ERROR_RECIPE_NOT_FOUND = "error.recipe_not_found"
    ERROR_RECIPE_EMPTY = "error.recipe_empty"
    ERROR_RECIPE_NOTHING_TO_SAVE = "error.recipe_nothing_to_save"
    ERROR_RECIPE_INVALID = "error.recipe_invalid"
    ERROR_RECIPE_TOO_LARGE = "error.recipe_too_large"
    ERROR_RECIPE_NAME = "error.recipe_name"
    ERROR_RECIPE_NO_PHOTOS = "error.recipe_no_photos"


ENGLISH: dict[str, str] = {
    # Conversation
    Key.PHOTO_RECEIVED: "Got your photo. Now tell me what to change, for example " + EXAMPLES + ".",
    Key.PHOTO_DOWNSCALED: (
        "Your photo was larger than {max_mp} MP, so I keep it at {width}x{height}."
    ),
    Key.EDIT_QUEUED: "On it: “{instruction}”. You are #{position} in line.",
    Key.EDIT_QUEUED_NEXT: "On it: “{instruction}”. You are next.",
    Key.EDIT_DUPLICATE: "I'm already working on that one.",
    Key.EDIT_PROGRESS: "Editing… {step}/{total}",
    Key.EDIT_PREVIEW: "Preview after step {step}/{total}",
    Key.EDIT_DONE: "“{instruction}” (seed {seed})",
    Key.UNDO_DONE: "Back to the previous version.",
    Key.REDO_DONE: "Forward again: “{instruction}”.",
    Key.REDO_DONE_PHOTO: "Forward again.",
    Key.RESET_DONE: "Starting over from your original photo.",
    Key.HISTORY_EMPTY: "No history yet: send a photo to begin.",
    Key.HISTORY_SHOW: "Your edits so far ({count} steps):",
    Key.SETTINGS_SHOW: (
        "Settings: steps {num_inference_steps}, text guidance {guidance_scale}, "
        "image guidance {image_guidance_scale}, seed {seed_text}, resolution {resolution} px."
    ),
    Key.SETTINGS_UPDATED: "Updated: {name} is now {value}.",
    Key.SETTINGS_RESET: "Settings are back to the defaults.",
    Key.CANCEL_DONE: "Cancelled {count} queued edit(s).",
    Key.STATUS_IDLE: "Nothing in progress. Send an instruction to edit your photo.",
    Key.STATUS_PENDING: "{count} edit(s) in progress; the next one is #{position} in line.",
    Key.STATUS_RUNNING: "{count} edit(s) in progress; one is being edited right now.",
    Key.FORGET_CONFIRM: "This deletes all your photos and history here. Are you sure?",
    Key.FORGET_DONE: "Done: I deleted {count} image(s) and all your history.",
    Key.FORGET_NOTHING: "There was nothing to delete.",
    Key.HELP: (
        "Send me a photo, then tell me what to change, for example " + EXAMPLES + ". "
        "Each instruction edits the latest result. Commands: /undo, /redo, /regenerate, "
        "/history, /reset, /settings, /cancel, /status, /forget."
    ),
    Key.WELCOME: (
        "Hi! I edit photos by instruction. Send me a photo, then tell me what to change, "
        "for example " + EXAMPLES + ". Each instruction edits the latest result; reply to an "
        "older result to branch from it."
    ),
    Key.HISTORY_LINE_PHOTO: "{number}. Your photo",
    Key.HISTORY_LINE_EDIT: "{number}. “{instruction}” (seed {seed})",
    Key.HISTORY_LINE_PENDING: "{number}. “{instruction}” ({status})",
    Key.HISTORY_HEAD: "  ← now",
    Key.SETTINGS_CHOOSE: "Tap a value to change it.",
    Key.ALBUM_FIRST: "You sent an album: I'm using its first photo.",
    Key.MEDIA_UNSUPPORTED: "I can only edit photos. Please send a JPEG, PNG, WebP or HEIC image.",
    Key.BUTTON_NOT_YOURS: "Only the person who made this edit can use its buttons.",
    Key.BUTTON_EXPIRED: "That button no longer works. Send a new instruction instead.",
    Key.FULL_CAPTION: "Full resolution, lossless ({width}x{height}).",
    Key.FULL_AS_DOCUMENT: "The result is too large for a photo, so here it is as a file.",
    Key.FULL_CAPTION_PLAIN: "Full resolution, lossless.",
    Key.FULL_TOO_BIG: "The lossless file is over this channel's upload limit, so here is the compressed copy.",
    Key.UPLOAD_TOO_BIG: "The picture is over this channel's upload limit, so I can't show it here.",
    # Button labels
    Key.BUTTON_UNDO: "↩ Undo",
    Key.BUTTON_REDO: "↪ Redo",
    Key.BUTTON_REGENERATE: "🎲 Regenerate",
    Key.BUTTON_FULL: "⬇ Full resolution",
    Key.BUTTON_CANCEL: "✖ Cancel",
    Key.BUTTON_FORGET_YES: "Yes, delete everything",
    Key.BUTTON_FORGET_NO: "No, keep it",
    Key.BUTTON_FORGET_CONFIRM: "Yes, delete everything",
    Key.BUTTON_DEFAULTS: "Defaults",
    Key.FORGET_KEPT: "Nothing was deleted.",
    # Web chat
    Key.WEB_NO_SESSION: "Your browser session has expired. Reload the page to start a new one.",
    Key.WEB_LOGIN_NEEDED: "This pix2chat is protected: enter its password to continue.",
    Key.WEB_WRONG_PASSWORD: "That password is not right.",
    Key.WEB_FORBIDDEN: "That request came from another website, so it was refused.",
    Key.WEB_BAD_REQUEST: "The page sent something I could not understand. Reload it and try again.",
    Key.WEB_NOT_FOUND: "There is nothing here.",
    Key.WEB_BAD_HOST: "This web chat only answers on its own address.",
    Key.WEB_WELCOME: (
        "Hi! I edit photos by instruction. Add a photo (the + button, or drop or paste one), "
        "then tell me what to change, for example " + EXAMPLES + ". Each instruction edits the "
        "latest result; click an earlier result to branch from it."
    ),
    Key.WEB_YOUR_PHOTO: "Your photo",
    Key.WEB_BRANCH: "Your next instruction edits this earlier version.",
    Key.WEB_BRANCHED: "(edits an earlier version)",
    Key.WEB_OFFLINE: "I can't reach pix2chat right now. Is it still running?",
    Key.WEB_RECONNECTING: "Reconnecting…",
    # Errors
    Key.ERROR_GENERIC: "Something went wrong. Please try again.",
    Key.ERROR_NO_IMAGE: "Send me a photo first, then tell me what to change.",
    Key.ERROR_EMPTY_INSTRUCTION: "Tell me what to change, for example " + EXAMPLES + ".",
    Key.ERROR_INSTRUCTION_TOO_LONG: (
        "That instruction is too long ({tokens} words and symbols; I read at most {max_tokens}). "
        "Please shorten it."
    ),
    Key.ERROR_IMAGE_UNREADABLE: "I couldn't read that image. Please send a JPEG, PNG, WebP or HEIC photo.",
    Key.ERROR_IMAGE_FORMAT: "That file isn't a photo I can edit. Please send a JPEG, PNG, WebP or HEIC image.",
    Key.ERROR_IMAGE_TOO_LARGE: "That image is too large. Please send a smaller one (at most {limit}).",
    Key.ERROR_IMAGE_TOO_SMALL: "That image is too small to edit (at least {min_side} px per side).",
    Key.ERROR_IMAGE_ASPECT: "That image is too long and thin to edit (at most {max_ratio}:1).",
    Key.ERROR_NOTHING_TO_UNDO: "Nothing to undo: this is your original photo.",
    Key.ERROR_NOTHING_TO_REDO: "Nothing to redo.",
    Key.ERROR_NOTHING_TO_REGENERATE: "There is no edit to regenerate yet: send an instruction first.",
    Key.ERROR_NOTHING_TO_CANCEL: "There is no queued edit to cancel.",
    Key.ERROR_NOTHING_TO_CANCEL_RUNNING: "Your edit is already running and will be ready in a moment.",
    Key.ERROR_VERSION_NOT_FOUND: "I can't find that image. It may have been deleted.",
    Key.ERROR_VERSION_NOT_READY: "That version has no image yet.",
    Key.ERROR_INVALID_SETTING: "{name} must be {allowed}.",
    Key.ERROR_UNKNOWN_SETTING: "There is no setting called “{name}”. Settings: {names}.",
    Key.ERROR_RATE_LIMITED: "You're going fast! Please wait {wait} before the next edit.",
    Key.ERROR_QUOTA_EXCEEDED: "You've used today's {quota} edits. They refill in {wait}.",
    Key.ERROR_TOO_MANY_PENDING: "You already have {count} edits waiting. Please wait for one to finish.",
    Key.ERROR_QUEUE_FULL: "I'm very busy right now. Please try again in a minute.",
    Key.ERROR_EDIT_FAILED: "Sorry, that edit failed. Try again, or rephrase the instruction.",
    Key.ERROR_OUT_OF_MEMORY: "Sorry, that edit ran out of memory. Try a lower resolution in /settings.",
    Key.ERROR_PARENT_FAILED: "Skipped “{instruction}”: the edit before it failed.",
    Key.ERROR_UNAVAILABLE: "The service is briefly unavailable; please try again in a moment.",
    Key.ERROR_STORAGE_FULL: "I can't save anything right now (my storage is full). Please try again later.",
    # Recipes (issue 17)
    Key.RECIPE_SAVED: "Saved recipe “{name}” ({count} steps{exact}). Apply it: send photos with the caption /recipe {name}.",
    Key.RECIPE_REPLACED: "Replaced your earlier recipe “{name}” ({count} steps{exact}).",
    Key.RECIPE_LIST: "Your recipes:",
    Key.RECIPE_LIST_EMPTY: "You have no recipes yet. Edit a photo, then /recipe save NAME.",
    Key.RECIPE_LIST_LINE: "• {name}: {count} steps{exact}",
    Key.RECIPE_SHOW: "Recipe “{name}” ({count} steps{exact}):",
    Key.RECIPE_STEP_LINE: (
        "{number}. “{instruction}” (steps {num_inference_steps}, text guidance "
        "{guidance_scale}, image guidance {image_guidance_scale}, {resolution} px{extra})"
    ),
    Key.RECIPE_STEP_SEED: ", seed {seed}",
    Key.RECIPE_STEP_REGION: ", {kind} “{text}”",
    Key.RECIPE_DELETED: "Deleted recipe “{name}”.",
    Key.RECIPE_EXPORTED: "Recipe “{name}”. Send this file back to me (or to another pix2chat) to import it.",
    Key.RECIPE_IMPORTED: "Imported recipe “{name}” ({count} steps).",
    Key.RECIPE_USAGE: (
        "Recipes replay your edits on other photos. /recipe save NAME [exact] saves the edits "
        "that led to your current result (exact: with their seeds); /recipes lists them; "
        "/recipe show|delete|export NAME. Apply one: send photos (an album too) with the "
        "caption /recipe NAME, or reply to a photo with /recipe NAME."
    ),
    Key.RECIPE_NEEDS_PHOTOS: "Send photos with the caption /recipe {name}, or reply to a photo with /recipe {name}.",
    Key.RECIPE_STARTED: (
        "Applying “{name}” to {photos} photo(s), {steps} step(s) each ({edits} edits). "
        "{done} of {photos} photos done."
    ),
    Key.RECIPE_PROGRESS: "Recipe “{name}”: {done} of {photos} photos done.",
    Key.RECIPE_FINISHED: "Recipe “{name}” finished: {succeeded} of {photos} photos done.",
    Key.RECIPE_QUOTA_FITS: "Each photo takes {steps} edit(s) of your daily quota; {left} left, enough for {fit} photo(s).",
    Key.RECIPE_QUOTA_SHORT: "Today's quota is enough for {fit} photo(s), so I'm taking the first {fit}.",
    Key.RECIPE_TOO_MANY: "A recipe takes at most {max} photos at once, so I'm taking the first {max}.",
    Key.RECIPE_NOT_IMAGE: "Skipped {photo}: {reason}",
    Key.RECIPE_PHOTO_FAILED: "{photo}: step {step} (“{instruction}”) failed: {reason}",
    Key.RECIPE_PHOTO_CANCELLED: "{photo}: cancelled at step {step}.",
    Key.RECIPE_CANCELLED: "Stopped recipe “{name}”: {count} remaining step(s) cancelled.",
    Key.RECIPE_ZIP_CAPTION: "All {count} results of “{name}” at full resolution.",
    Key.RECIPE_ZIP_TOO_BIG: "The zip of full-resolution results is over this channel's upload limit.",
    Key.ERROR_RECIPE_NOT_FOUND: "You have no recipe called “{name}”. /recipes lists yours.",
    Key.ERROR_RECIPE_EMPTY: "Recipe “{name}” has no steps, so there is nothing to replay.",
    Key.ERROR_RECIPE_NOTHING_TO_SAVE: "Nothing to save yet: edit a photo first, then /recipe save NAME.",
    Key.ERROR_RECIPE_INVALID: "That is not a recipe I can use ({reason}).",
    Key.ERROR_RECIPE_TOO_LARGE: "That recipe file is too large (at most {max_kb} kB).",
    Key.ERROR_RECIPE_NAME: "Recipe names are one word of letters, digits, “_”, “-” or “.” (at most {max_chars} characters).",
    Key.ERROR_RECIPE_NO_PHOTOS: "There is no photo I can use to apply the recipe to.",
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
        CATALOGUES.get(locale, ENGLISH).get(key) or ENGLISH.get(key) or ENGLISH[Key.ERROR_GENERIC]
    )
    try:
        return template.format_map(dict(args or {}))
    except (KeyError, IndexError, ValueError):
        return template
