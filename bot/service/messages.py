"""Every text pix2chat says: its `Key`, its English source text, and `render` in a locale.

The English texts here are the gettext source (msgctxt = the key, msgid = the English text);
the translations live in Babel catalogues under bot/locale/ (see bot/service/catalogues.py).
After adding or changing a text, run `pix2chat i18n update` to refresh the .pot and .po files.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.service import catalogues

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
    # Regions: /keep, /only, /regions (issue 14)
    REGION_KEEP_SET = "region.keep_set"
    REGION_ONLY_SET = "region.only_set"
    REGION_KEEP_WINS = "region.keep_wins"
    REGION_KEEP_OFF = "region.keep_off"
    REGION_ONLY_OFF = "region.only_off"
    REGION_WAS_OFF = "region.was_off"
    REGION_SHOW = "region.show"
    REGION_LINE_KEEP = "region.line_keep"
    REGION_LINE_ONLY = "region.line_only"
    REGION_NONE = "region.none"
    REGION_USAGE = "region.usage"
    REGION_TOO_LONG = "region.too_long"
    REGION_NOT_FOUND = "region.not_found"
    REGION_EVERYTHING = "region.everything"
    REGION_UNAVAILABLE = "region.unavailable"
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
    # Languages (issue 16): /language, command menus, the web page's own texts
    LANGUAGE_CHOSEN = "language.chosen"
    LANGUAGE_AUTO = "language.auto"
    LANGUAGE_LIST = "language.list"
    LANGUAGE_UNKNOWN = "language.unknown"
    SETTINGS_SEED_RANDOM = "settings.seed_random"
    SETTINGS_SEED_FIXED = "settings.seed_fixed"
    ALLOWED_WHOLE_NUMBER = "allowed.whole_number"
    ALLOWED_NUMBER = "allowed.number"
    ALLOWED_ONE_OF = "allowed.one_of"
    WAIT_SECONDS = "wait.seconds"
    WAIT_MINUTES = "wait.minutes"
    WAIT_HOURS = "wait.hours"
    COMMAND_START = "command.start"
    COMMAND_HELP = "command.help"
    COMMAND_UNDO = "command.undo"
    COMMAND_REDO = "command.redo"
    COMMAND_REGENERATE = "command.regenerate"
    COMMAND_HISTORY = "command.history"
    COMMAND_RESET = "command.reset"
    COMMAND_SETTINGS = "command.settings"
    COMMAND_CANCEL = "command.cancel"
    COMMAND_STATUS = "command.status"
    COMMAND_FORGET = "command.forget"
    COMMAND_LANGUAGE = "command.language"
    COMMAND_EDIT = "command.edit"
    COMMAND_INSTRUCT = "command.instruct"
    COMMAND_KEEP = "command.keep"
    COMMAND_ONLY = "command.only"
    COMMAND_REGIONS = "command.regions"
    COMMAND_UPSCALE = "command.upscale"
    COMMAND_CUTOUT = "command.cutout"
    COMMAND_WHITE = "command.white"
    COMMAND_VARIATIONS = "command.variations"
    COMMAND_STRONGER = "command.stronger"
    COMMAND_SUBTLER = "command.subtler"
    COMMAND_MODEL = "command.model"
    OPTION_MODEL = "option.model"
    COMMAND_RECIPE = "command.recipe"
    COMMAND_RECIPES = "command.recipes"
    RECIPE_EXACT_SEEDS = "recipe.exact_seeds"
    OPTION_RECIPE_COMMAND = "option.recipe_command"
    OPTION_RECIPE_PHOTO = "option.recipe_photo"
    OPTION_RECIPE_FILE = "option.recipe_file"
    OPTION_KEEP_REGION = "option.keep_region"
    OPTION_ONLY_REGION = "option.only_region"
    OPTION_IMAGE = "option.image"
    OPTION_INSTRUCTION = "option.instruction"
    OPTION_TEXT = "option.text"
    OPTION_STEPS = "option.steps"
    OPTION_TEXT_GUIDANCE = "option.text_guidance"
    OPTION_IMAGE_GUIDANCE = "option.image_guidance"
    OPTION_SEED_MODE = "option.seed_mode"
    OPTION_RESOLUTION = "option.resolution"
    OPTION_DEFAULTS = "option.defaults"
    OPTION_CODE = "option.code"
    PAGE_SETTINGS = "page.settings"
    PAGE_HISTORY = "page.history"
    PAGE_CONVERSATION = "page.conversation"
    PAGE_PASSWORD = "page.password"
    PAGE_LOG_IN = "page.log_in"
    PAGE_PHOTO_TO_SEND = "page.photo_to_send"
    PAGE_REMOVE_PHOTO = "page.remove_photo"
    PAGE_EDIT_LATEST = "page.edit_latest"
    PAGE_ADD_PHOTO_HINT = "page.add_photo_hint"
    PAGE_ADD_PHOTO = "page.add_photo"
    PAGE_SAY_WHAT = "page.say_what"
    PAGE_INSTRUCTION = "page.instruction"
    PAGE_SEND = "page.send"
    PAGE_SETTINGS_HINT = "page.settings_hint"
    PAGE_STEPS = "page.steps"
    PAGE_STEPS_HINT = "page.steps_hint"
    PAGE_TEXT_GUIDANCE = "page.text_guidance"
    PAGE_TEXT_GUIDANCE_HINT = "page.text_guidance_hint"
    PAGE_IMAGE_GUIDANCE = "page.image_guidance"
    PAGE_IMAGE_GUIDANCE_HINT = "page.image_guidance_hint"
    PAGE_SEED = "page.seed"
    PAGE_RANDOM = "page.random"
    PAGE_FIXED = "page.fixed"
    PAGE_FIXED_SEED = "page.fixed_seed"
    PAGE_RESOLUTION = "page.resolution"
    PAGE_RESOLUTION_HINT = "page.resolution_hint"
    PAGE_RESET_DEFAULTS = "page.reset_defaults"
    PAGE_CLOSE = "page.close"
    PAGE_DELETE_ALL = "page.delete_all"
    PAGE_DROP = "page.drop"
    PAGE_BRANCH_HINT = "page.branch_hint"
    # Finishing tools (issue 18)
    FINISH_QUEUED = "finish.queued"
    FINISH_QUEUED_NEXT = "finish.queued_next"
    FINISH_CAPPED = "finish.capped"
    FINISH_ALREADY_CUTOUT = "finish.already_cutout"
    FINISH_DONE_UPSCALE = "finish.done_upscale"
    FINISH_DONE_CUTOUT = "finish.done_cutout"
    FINISH_DONE_WHITE = "finish.done_white"
    BUTTON_UPSCALE = "button.upscale"
    ERROR_UPSCALE_SCALE = "error.upscale_scale"
    ERROR_UPSCALE_AT_CAP = "error.upscale_at_cap"
    ERROR_NO_SUBJECT = "error.no_subject"
    ERROR_UPSCALER_UNAVAILABLE = "error.upscaler_unavailable"
    ERROR_MATTING_UNAVAILABLE = "error.matting_unavailable"
    ERROR_FINISHING_NOT_INSTALLED = "error.finishing_not_installed"
    # Running a public bot (issue 16): access control, admin commands, model warm-up
    ACCESS_PRIVATE = "access.private"
    ACCESS_BANNED = "access.banned"
    ADMIN_ONLY = "admin.only"
    ADMIN_USAGE = "admin.usage"
    ADMIN_ALLOWED = "admin.allowed"
    ADMIN_DENIED = "admin.denied"
    ADMIN_BANNED = "admin.banned"
    ADMIN_UNBANNED = "admin.unbanned"
    ADMIN_QUOTA = "admin.quota"
    ADMIN_QUOTA_UNLIMITED = "admin.quota_unlimited"
    ADMIN_QUOTA_DEFAULT = "admin.quota_default"
    ADMIN_STATS = "admin.stats"
    ADMIN_STATS_USER = "admin.stats_user"
    ADMIN_STATS_NOBODY = "admin.stats_nobody"
    MODEL_WARMING = "model.warming"
    MODEL_WARMING_NOTE = "model.warming_note"
    MODEL_FAILED = "model.failed"
    # Choice in every turn: variations, stronger / subtler, best-of-N (issue 15)
    VARIATIONS_QUEUED = "variations.queued"
    VARIATIONS_DONE = "variations.done"
    VARIATIONS_SOME_FAILED = "variations.some_failed"
    VARIATIONS_CANDIDATE = "variations.candidate"
    VARIATIONS_PICKED = "variations.picked"
    VARIATIONS_EDITS_CANDIDATE = "variations.edits_candidate"
    BEST_OF_DONE = "best_of.done"
    BEST_OF_QUEUED = "best_of.queued"
    TUNED_QUEUED = "tuned.queued"
    EDIT_DONE_TUNED = "edit.done_tuned"
    HISTORY_LINE_CANDIDATE = "history.line_candidate"
    HISTORY_SCORE = "history.score"
    SETTINGS_CANDIDATES = "settings.candidates"
    BUTTON_VARIATIONS = "button.variations"
    BUTTON_STRONGER = "button.stronger"
    BUTTON_SUBTLER = "button.subtler"
    BUTTON_USE = "button.use"
    ERROR_QUOTA_TOO_SMALL = "error.quota_too_small"
    ERROR_SET_NOT_CURRENT = "error.set_not_current"
    ERROR_NOT_A_CANDIDATE = "error.not_a_candidate"
    ERROR_AT_STRONGEST = "error.at_strongest"
    ERROR_AT_SUBTLEST = "error.at_subtlest"
    ERROR_NOTHING_TO_VARY = "error.nothing_to_vary"

    # Model families and /model (issue 19)
    MODEL_LIST = "model.list"
    SETTINGS_SHOW_NO_IMAGE_GUIDANCE = "settings.show_no_image_guidance"
    ERROR_ONE_MODEL = "error.one_model"
    ERROR_NO_IMAGE_GUIDANCE = "error.no_image_guidance"
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


@dataclass(frozen=True, slots=True)
class Plural:
    """A text whose wording follows a number (`number` names the argument): gettext's
    ngettext picks the form, so Arabic gets all six of its plural forms."""

    singular: str
    plural: str
    number: str = "count"


@dataclass(frozen=True, slots=True)
class Phrase:
    """A catalogue text used as an argument of another (rendered in the same locale)."""

    key: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return render(self.key, self.args)


ENGLISH: dict[str, str | Plural] = {
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
    Key.HISTORY_SHOW: Plural(
        "Your edits so far ({count} step):", "Your edits so far ({count} steps):"
    ),
    Key.SETTINGS_SHOW: (
        "Settings: steps {num_inference_steps}, text guidance {guidance_scale}, "
        "image guidance {image_guidance_scale}, seed {seed_text}, resolution {resolution} px."
    ),
    Key.SETTINGS_UPDATED: "Updated: {name} is now {value}.",
    Key.SETTINGS_RESET: "Settings are back to the defaults.",
    Key.CANCEL_DONE: Plural("Cancelled {count} queued edit.", "Cancelled {count} queued edits."),
    Key.STATUS_IDLE: "Nothing in progress. Send an instruction to edit your photo.",
    Key.STATUS_PENDING: Plural(
        "{count} edit in progress; it is #{position} in line.",
        "{count} edits in progress; the next one is #{position} in line.",
    ),
    Key.STATUS_RUNNING: Plural(
        "{count} edit in progress; it is being edited right now.",
        "{count} edits in progress; one is being edited right now.",
    ),
    Key.FORGET_CONFIRM: "This deletes all your photos and history here. Are you sure?",
    Key.FORGET_DONE: Plural(
        "Done: I deleted {count} image and all your history.",
        "Done: I deleted {count} images and all your history.",
    ),
    Key.FORGET_NOTHING: "There was nothing to delete.",
    Key.HELP: (
        "Send me a photo, then tell me what to change, for example " + EXAMPLES + ". "
        "Each instruction edits the latest result. Commands: /undo, /redo, /regenerate, "
        "/variations, /stronger, /subtler, /history, /reset, /settings, /model, /cancel, "
        "/status, /forget, /language, and /keep <what>, /only <what>, /regions to protect or "
        "confine a part of the photo. Finishing: /upscale [2x|4x], /cutout, /white [square]. "
        "Recipes: /recipe save <name> records your edits, /recipe <name> with photos replays "
        "them, /recipes lists them."
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
    # Regions: /keep, /only, /regions (issue 14)
    Key.REGION_KEEP_SET: (
        "From now on I keep “{text}” exactly as it is in every edit (highlighted; the dimmed "
        "part may change). /keep off to stop."
    ),
    Key.REGION_ONLY_SET: (
        "From now on I only change “{text}” (highlighted); the dimmed part stays exactly as "
        "it is. /only off to stop."
    ),
    Key.REGION_KEEP_WINS: "Where “{keep}” and “{only}” overlap, keeping wins: it stays as it is.",
    Key.REGION_KEEP_OFF: "I no longer keep “{text}”: edits may change it again.",
    Key.REGION_ONLY_OFF: "I no longer limit edits to “{text}”: edits may change the whole photo.",
    Key.REGION_WAS_OFF: "There was nothing to switch off.",
    Key.REGION_SHOW: "Regions for your next edits:",
    Key.REGION_LINE_KEEP: "• kept as it is: “{text}” (/keep off)",
    Key.REGION_LINE_ONLY: "• only this changes: “{text}” (/only off)",
    Key.REGION_NONE: (
        "No regions are set: edits may change the whole photo. Use /keep <what> to protect "
        "something, or /only <what> to change just that."
    ),
    Key.REGION_USAGE: (
        "Tell me which part, for example /keep the logo or /only the background. "
        "/keep off and /only off clear them; /regions shows what is set."
    ),
    Key.REGION_TOO_LONG: "Please name the region in at most {max_chars} characters.",
    Key.REGION_NOT_FOUND: "I couldn't find “{text}” in this photo, so nothing changed. Try other words.",
    Key.REGION_EVERYTHING: (
        "“{text}” covers the whole photo, so there is nothing to tell apart. Nothing changed; "
        "try naming a smaller part."
    ),
    Key.REGION_UNAVAILABLE: "Regions are not available on this server.",
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
    Key.ERROR_QUOTA_EXCEEDED: Plural(
        "You've used today's {quota} edit. It refills in {wait}.",
        "You've used today's {quota} edits. They refill in {wait}.",
        number="quota",
    ),
    Key.ERROR_TOO_MANY_PENDING: Plural(
        "You already have {count} edit waiting. Please wait for it to finish.",
        "You already have {count} edits waiting. Please wait for one to finish.",
    ),
    Key.ERROR_QUEUE_FULL: "I'm very busy right now. Please try again in a minute.",
    Key.ERROR_EDIT_FAILED: "Sorry, that edit failed. Try again, or rephrase the instruction.",
    Key.ERROR_OUT_OF_MEMORY: "Sorry, that edit ran out of memory. Try a lower resolution in /settings.",
    Key.ERROR_PARENT_FAILED: "Skipped “{instruction}”: the edit before it failed.",
    Key.ERROR_UNAVAILABLE: "The service is briefly unavailable; please try again in a moment.",
    Key.ERROR_STORAGE_FULL: "I can't save anything right now (my storage is full). Please try again later.",
    # Languages (issue 16)
    Key.LANGUAGE_CHOSEN: "From now on I answer you in {language}.",
    Key.LANGUAGE_AUTO: "I follow your app's language again (now {language}).",
    Key.LANGUAGE_LIST: (
        "I answer you in {language}. Languages: {choices}. Choose one with /language and its "
        "code, for example /language es; /language auto follows your app's language again."
    ),
    Key.LANGUAGE_UNKNOWN: (
        "I don't speak “{code}”. Languages: {choices}. For example: /language es"
    ),
    Key.SETTINGS_SEED_RANDOM: "random",
    Key.SETTINGS_SEED_FIXED: "fixed at {seed}",
    Key.ALLOWED_WHOLE_NUMBER: "a whole number from {low} to {high}",
    Key.ALLOWED_NUMBER: "a number from {low} to {high}",
    Key.ALLOWED_ONE_OF: "one of {choices}",
    Key.WAIT_SECONDS: Plural("{count} second", "{count} seconds"),
    Key.WAIT_MINUTES: Plural("{count} minute", "{count} minutes"),
    Key.WAIT_HOURS: Plural("{count} hour", "{count} hours"),
    # Command menus (Telegram's setMyCommands, Discord's slash commands and their options)
    Key.COMMAND_START: "Welcome and examples",
    Key.COMMAND_HELP: "How to use the bot",
    Key.COMMAND_UNDO: "Back to the previous version",
    Key.COMMAND_REDO: "Forward again after an undo",
    Key.COMMAND_REGENERATE: "Same instruction, new seed",
    Key.COMMAND_HISTORY: "Your chain of edits",
    Key.COMMAND_RESET: "Start over from the original photo",
    Key.COMMAND_SETTINGS: "Steps, guidance, seed, resolution",
    Key.COMMAND_CANCEL: "Cancel the queued edit",
    Key.COMMAND_STATUS: "Where your edit is in the queue",
    Key.COMMAND_FORGET: "Delete all your images and history",
    Key.COMMAND_LANGUAGE: "Choose the language I answer in",
    Key.COMMAND_EDIT: "Start from a new photo, optionally with a first instruction",
    Key.COMMAND_INSTRUCT: "Edit the current image",
    Key.COMMAND_KEEP: "Keep a part exactly as it is: /keep the logo",
    Key.COMMAND_ONLY: "Change only a part: /only the background",
    Key.COMMAND_REGIONS: "What /keep and /only have set",
    Key.COMMAND_UPSCALE: "2x or 4x more pixels: /upscale 4x",
    Key.COMMAND_CUTOUT: "The subject on a transparent background",
    Key.COMMAND_WHITE: "The subject on white: /white square for 1:1",
    Key.COMMAND_VARIATIONS: "Four versions of the last edit to pick from",
    Key.COMMAND_STRONGER: "The last edit, applied more strongly",
    Key.COMMAND_SUBTLER: "The last edit, applied more gently",
    Key.COMMAND_MODEL: "List the edit models, or pick one",
    Key.OPTION_MODEL: "The model to edit with (leave empty to list them)",
    Key.COMMAND_RECIPE: "Save, show or apply a recipe of edits",
    Key.COMMAND_RECIPES: "Your saved recipes",
    Key.RECIPE_EXACT_SEEDS: ", exact seeds",
    Key.OPTION_RECIPE_COMMAND: (
        "save NAME [exact] | show NAME | delete NAME | export NAME | list | NAME (apply)"
    ),
    Key.OPTION_RECIPE_PHOTO: "A photo to apply the recipe to (up to ten)",
    Key.OPTION_RECIPE_FILE: "A recipe file to import",
    Key.OPTION_KEEP_REGION: "What to keep, e.g. “the logo”; “off” to stop keeping it",
    Key.OPTION_ONLY_REGION: "What may change, e.g. “the background”; “off” to stop",
    Key.OPTION_IMAGE: "The photo to edit",
    Key.OPTION_INSTRUCTION: "What to change, e.g. “make it night”",
    Key.OPTION_TEXT: "What to change, e.g. “add snow”",
    Key.OPTION_STEPS: "Denoising steps (1-100)",
    Key.OPTION_TEXT_GUIDANCE: "How strongly to apply the instruction (1-20)",
    Key.OPTION_IMAGE_GUIDANCE: "How close to stay to the photo (1-5)",
    Key.OPTION_SEED_MODE: "random or fixed",
    Key.OPTION_RESOLUTION: "Long side in pixels",
    Key.OPTION_DEFAULTS: "Back to the defaults",
    Key.OPTION_CODE: "A language code such as en, es or ar; auto follows your app",
    # The web page's own texts (bot/web/static/index.html)
    Key.PAGE_SETTINGS: "Settings",
    Key.PAGE_HISTORY: "History, from your photo to the current version",
    Key.PAGE_CONVERSATION: "Conversation",
    Key.PAGE_PASSWORD: "Password",
    Key.PAGE_LOG_IN: "Log in",
    Key.PAGE_PHOTO_TO_SEND: "Photo to send",
    Key.PAGE_REMOVE_PHOTO: "Remove the photo",
    Key.PAGE_EDIT_LATEST: "Edit the latest version instead",
    Key.PAGE_ADD_PHOTO_HINT: "Add a photo (or drop or paste one)",
    Key.PAGE_ADD_PHOTO: "Add a photo",
    Key.PAGE_SAY_WHAT: "Say what to change",
    Key.PAGE_INSTRUCTION: "Instruction",
    Key.PAGE_SEND: "Send",
    Key.PAGE_SETTINGS_HINT: "Optional: the defaults work well. Changes apply to your next edit.",
    Key.PAGE_STEPS: "Steps",
    Key.PAGE_STEPS_HINT: "(more is slower, finer)",
    Key.PAGE_TEXT_GUIDANCE: "Text guidance",
    Key.PAGE_TEXT_GUIDANCE_HINT: "(higher follows the words more)",
    Key.PAGE_IMAGE_GUIDANCE: "Image guidance",
    Key.PAGE_IMAGE_GUIDANCE_HINT: "(higher stays closer to the photo)",
    Key.PAGE_SEED: "Seed",
    Key.PAGE_RANDOM: "Random",
    Key.PAGE_FIXED: "Fixed:",
    Key.PAGE_FIXED_SEED: "Fixed seed",
    Key.PAGE_RESOLUTION: "Resolution",
    Key.PAGE_RESOLUTION_HINT: "(long side, pixels)",
    Key.PAGE_RESET_DEFAULTS: "Reset to defaults",
    Key.PAGE_CLOSE: "Close",
    Key.PAGE_DELETE_ALL: "Delete my photos and history",
    Key.PAGE_DROP: "Drop the photo to send it",
    Key.PAGE_BRANCH_HINT: "Click to branch from this version",
    # Finishing tools (issue 18)
    Key.FINISH_QUEUED: "On it: {operation}. You are #{position} in line.",
    Key.FINISH_QUEUED_NEXT: "On it: {operation}. You are next.",
    Key.FINISH_CAPPED: (
        "That would be over the {max_mp} MP limit, so the result is capped at {width}x{height}."
    ),
    Key.FINISH_ALREADY_CUTOUT: "This is already a cut-out, so I use its transparency as it is.",
    Key.FINISH_DONE_UPSCALE: "Upscaled {scale}x.",
    Key.FINISH_DONE_CUTOUT: "Cut out: the subject on a transparent background (PNG file).",
    Key.FINISH_DONE_WHITE: "The subject on a pure white background.",
    Key.BUTTON_UPSCALE: "🔍 Upscale",
    Key.ERROR_UPSCALE_SCALE: "I can upscale by {scales}, for example /upscale 4x.",
    Key.ERROR_UPSCALE_AT_CAP: (
        "This image ({width}x{height}) is already at the {max_mp} MP limit, "
        "so upscaling can't add pixels."
    ),
    Key.ERROR_NO_SUBJECT: (
        "I couldn't find a subject to cut out: the whole picture looks like background. "
        "Try a photo with a clear subject."
    ),
    Key.ERROR_UPSCALER_UNAVAILABLE: (
        "Upscaling is not available right now: its model could not be loaded. "
        "The operator should check PIX2CHAT_UPSCALER_MODEL (a weights file, or owner/repo:file)."
    ),
    Key.ERROR_MATTING_UNAVAILABLE: (
        "Cut-outs are not available right now: the matting model could not be loaded. "
        "The operator should check PIX2CHAT_MATTING_MODEL (a .onnx file or a rembg model name)."
    ),
    Key.ERROR_FINISHING_NOT_INSTALLED: (
        "This server has no finishing tools installed. The operator can add them with "
        "pip install 'pix2chat[finishing]'."
    ),
    # Running a public bot (issue 16): access control, admin commands, model warm-up
    Key.ACCESS_PRIVATE: "This bot is private. Ask its owner to add you; your id is {user_id}.",
    Key.ACCESS_BANNED: "You can't use this bot. If you think this is a mistake, ask its owner; your id is {user_id}.",
    Key.ADMIN_ONLY: "Only the bot's admins can do that.",
    Key.ADMIN_USAGE: "Usage: {usage}",
    Key.ADMIN_ALLOWED: "Allowed {subject}.",
    Key.ADMIN_DENIED: "{subject} is no longer on the allow-list.",
    Key.ADMIN_BANNED: "Banned {subject}.",
    Key.ADMIN_UNBANNED: "Unbanned {subject}.",
    Key.ADMIN_QUOTA: "{subject} may now make {quota} edits a day.",
    Key.ADMIN_QUOTA_UNLIMITED: "{subject} now has no daily limit.",
    Key.ADMIN_QUOTA_DEFAULT: "{subject} is back to the default daily quota.",
    Key.ADMIN_STATS: (
        "Today: {edits} edits by {active_users} active users, {failures} failed. "
        "Now: {waiting} waiting, {running} running. Edit time p50 {p50}, p95 {p95}; "
        "GPU time {gpu}. Busiest users:"
    ),
    Key.ADMIN_STATS_USER: "{rank}. {user}: {count} edits",
    Key.ADMIN_STATS_NOBODY: "(nobody yet)",
    Key.MODEL_WARMING: (
        "On it: “{instruction}”. The model is still warming up ({progress}); your edit "
        "starts as soon as it is ready."
    ),
    Key.MODEL_WARMING_NOTE: "The model is still warming up ({progress}), so the first edit takes a little longer.",
    Key.MODEL_FAILED: (
        "Sorry, the photo editor could not start, so your edits can't run now. Its owner has "
        "been told; they stay queued and run when it is back."
    ),
    # Choice in every turn: variations, stronger / subtler, best-of-N (issue 15)
    Key.VARIATIONS_QUEUED: "Making {count} variations of “{instruction}”. You are #{position} in line.",
    Key.VARIATIONS_DONE: (
        "{count} variations of “{instruction}”. Tap Use 1 to Use {count} to keep one; until then "
        "your next instruction edits candidate {leader}."
    ),
    Key.VARIATIONS_SOME_FAILED: "{failed} of them failed; the others are here.",
    Key.VARIATIONS_CANDIDATE: "{number}. seed {seed}",
    Key.VARIATIONS_PICKED: "Using candidate {number} of “{instruction}” (seed {seed}).",
    Key.VARIATIONS_EDITS_CANDIDATE: (
        "This edits candidate {number} of your variations (tap Use on another to choose it)."
    ),
    Key.BEST_OF_DONE: "Best of {count} candidates (score {score}); the others are in /history.",
    Key.BEST_OF_QUEUED: "On it: “{instruction}”, best of {count}. You are #{position} in line.",
    Key.TUNED_QUEUED: (
        "On it: “{instruction}” {direction}: text guidance {guidance_scale}, image guidance "
        "{image_guidance_scale}. You are #{position} in line."
    ),
    Key.EDIT_DONE_TUNED: (
        "“{instruction}” (seed {seed}; text guidance {guidance_scale}, image guidance "
        "{image_guidance_scale})"
    ),
    Key.HISTORY_LINE_CANDIDATE: "   also candidate {index}: seed {seed}{score}",
    Key.HISTORY_SCORE: ", score {score}",
    Key.SETTINGS_CANDIDATES: (
        "Best of {candidates}: each instruction makes {candidates} candidates and keeps the "
        "best-scored one (it counts as {candidates} edits)."
    ),
    Key.BUTTON_VARIATIONS: "🔀 Variations",
    Key.BUTTON_STRONGER: "➕ Stronger",
    Key.BUTTON_SUBTLER: "➖ Subtler",
    Key.BUTTON_USE: "Use {number}",
    Key.ERROR_QUOTA_TOO_SMALL: (
        "That costs {cost} edits and you have {left} left today. They refill in {wait}."
    ),
    Key.ERROR_SET_NOT_CURRENT: (
        "Those variations were undone or replaced, so I can't use that one. Tap Variations "
        "again, or branch from it by replying to it."
    ),
    Key.ERROR_NOT_A_CANDIDATE: "That picture is not one of a set of variations.",
    Key.ERROR_AT_STRONGEST: (
        "Already at the strongest setting (text guidance {guidance_scale}, image guidance "
        "{image_guidance_scale})."
    ),
    Key.ERROR_AT_SUBTLEST: (
        "Already at the subtlest setting (text guidance {guidance_scale}, image guidance "
        "{image_guidance_scale})."
    ),
    Key.ERROR_NOTHING_TO_VARY: (
        "Variations, Stronger and Subtler rerun an instruction; an upscale or a cut-out has none. "
        "Reply to the edit before it, or send a new instruction."
    ),
    # Model families and /model (issue 19)
    Key.MODEL_LIST: "You edit with {model}. Models here: {models}. Switch with /model <name>.",
    Key.ERROR_ONE_MODEL: "This bot has one model ({model}), so there is no other to pick.",
    Key.SETTINGS_SHOW_NO_IMAGE_GUIDANCE: (
        "Settings: steps {num_inference_steps}, text guidance {guidance_scale}, "
        "seed {seed_text}, resolution {resolution} px."
    ),
    Key.ERROR_NO_IMAGE_GUIDANCE: (
        "Your model ({model}) has no image guidance: it keeps to your photo by itself. "
        "Steps, text guidance and resolution still apply."
    ),
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

SOURCE_LOCALE = catalogues.SOURCE_LOCALE
_current: contextvars.ContextVar[str] = contextvars.ContextVar("pix2chat_locale", default="en")


def current_locale() -> str:
    """The locale `render` uses when none is given: set per event by the frontends."""
    return _current.get()


@contextlib.contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """Render in `locale` within the block (one chat event, one delivery, one request)."""
    token = _current.set(locale)
    try:
        yield
    finally:
        _current.reset(token)


def set_task_locale(locale: str) -> None:
    """Render in `locale` for the rest of the current asyncio task.

    Only for code that runs each event in a task of its own (discord.py does), where there is
    no block to wrap in `use_locale`; the next task starts from its creator's locale again.
    """
    _current.set(locale)


@dataclass(frozen=True, slots=True)
class LanguageName:
    """A language's name in the reader's language ("Spanish", "español", "الإسبانية")."""

    code: str

    def __str__(self) -> str:
        return catalogues.language_name(self.code, _current.get())


def render(key: str, args: Mapping[str, Any] | None = None, locale: str | None = None) -> str:
    """The message for `key` in `locale` (default: the current one), filled with `args`.

    A text missing from the locale's catalogue falls back to English; an unknown key to the
    generic error; a missing argument leaves the template as it is instead of failing.
    """
    locale = locale or _current.get()
    if locale not in catalogues.available():
        locale = SOURCE_LOCALE
    args = dict(args or {})
    if key not in ENGLISH:
        key = Key.ERROR_GENERIC
    source = ENGLISH[key]
    translations = catalogues.translations(locale)
    if isinstance(source, Plural):
        count = args.get(source.number)
        number = count if isinstance(count, int) and not isinstance(count, bool) else 1
        template = translations.npgettext(key, source.singular, source.plural, number)
    else:
        template = translations.pgettext(key, source)
    values = {name: _argument(value, locale) for name, value in args.items()}
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError):
        return template


def render_phrase(phrase: Phrase, locale: str | None = None) -> str:
    return render(phrase.key, phrase.args, locale)


def _argument(value: Any, locale: str) -> Any:
    """Phrases and language names become words in the same locale as the text around them."""
    if isinstance(value, Phrase):
        return render_phrase(value, locale)
    if isinstance(value, LanguageName):
        return catalogues.language_name(value.code, locale)
    return value


def placeholders(template: str) -> set[str]:
    """The `{name}` fields of a template (the catalogue test compares them across languages)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def source_texts(key: str) -> tuple[str, ...]:
    """The English text of `key`: one string, or the singular and plural of a `Plural`."""
    source = ENGLISH[key]
    return (source.singular, source.plural) if isinstance(source, Plural) else (source,)
