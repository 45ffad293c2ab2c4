"""Typed SQLAlchemy models: conversations, their version trees, and per-user limits."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from editor.finishing.spec import Finish, finish_from_params
from editor.params import EditParams


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: DateTime(timezone=True)}  # noqa: RUF012


class VersionStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


PENDING_STATUSES = (VersionStatus.QUEUED, VersionStatus.RUNNING)


class CandidateOrigin(enum.StrEnum):
    """Edits asked for by a button rather than typed (stored in `Version.origin`)."""

    VARIATIONS = "variations"
    """One of several candidates the user picks from."""
    BEST_OF = "best_of"
    """One of the candidates of best-of-N; the best-scored is shown."""
    STRONGER = "stronger"
    SUBTLER = "subtler"


class Conversation(Base):
    """One actor's editing session: (platform, chat, user), a head pointer and settings."""

    __tablename__ = "conversations"
    __table_args__ = (UniqueConstraint("platform", "chat_id", "user_id", name="uq_actor"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    chat_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    head_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, name="fk_conversation_head", ondelete="SET NULL")
    )
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Version(Base):
    """A node of the tree: an uploaded photo (root) or one instruction applied to its parent.

    Holds every generation parameter and the seed so a result can be reproduced exactly, and
    doubles as the durable job record (status, attempts) for the scheduler.
    """

    __tablename__ = "versions"
    __table_args__ = (
        Index("ix_versions_conversation", "conversation_id", "id"),
        Index("ix_versions_status", "status", "id"),
        Index("ix_versions_created_at", "created_at"),  # /stats: today's edits (0007)
        Index("ix_versions_finished_at", "finished_at"),
        UniqueConstraint("conversation_id", "request_key", name="uq_version_request"),
        Index("ix_versions_set", "set_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), index=True
    )
    redo_child_id: Mapped[int | None] = mapped_column(
        ForeignKey("versions.id", use_alter=True, name="fk_version_redo", ondelete="SET NULL")
    )
    instruction: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[VersionStatus] = mapped_column(
        Enum(
            VersionStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    error_key: Mapped[str | None] = mapped_column(String(64))
    error_detail: Mapped[str | None] = mapped_column(Text)
    image_sha: Mapped[str | None] = mapped_column(String(64), index=True)
    raw_image_sha: Mapped[str | None] = mapped_column(String(64), index=True)
    """The model's own output at the working size, before it was developed onto the parent
    (None for photos, for edits made with develop off, and for edits older than it)."""
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    request_key: Mapped[str | None] = mapped_column(String(128))
    origin: Mapped[str | None] = mapped_column(String(16))
    """How the edit was asked for beyond a plain instruction (`CandidateOrigin`), else None."""
    set_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    """Candidates of one set (variations, best-of-N) share it: the first candidate's id."""
    set_index: Mapped[int | None] = mapped_column(Integer)
    """1..N within its candidate set."""
    score: Mapped[float | None] = mapped_column(Float)
    """The candidate scorer's verdict (higher is better), when ranking ran."""
    picked: Mapped[bool] = mapped_column(Boolean, default=False)
    """The user chose this candidate of its set ("Use n")."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

    @property
    def is_root(self) -> bool:
        return self.parent_id is None

    @property
    def is_pending(self) -> bool:
        """Queued or running (storage.lifecycle changes the status; these only read it)."""
        return self.status in PENDING_STATUSES

    @property
    def is_queued(self) -> bool:
        return self.status == VersionStatus.QUEUED

    @property
    def is_done(self) -> bool:
        return self.status == VersionStatus.DONE

    def edit_params(self) -> EditParams:
        """The stored parameters (roots have none: they are photos, not edits)."""
        if self.params is None:
            raise ValueError(f"version {self.id} is a photo, not an edit")
        return EditParams.from_dict(self.params)

    def finishing(self) -> Finish | None:
        """The finishing operation (upscale, cut-out, white) this version runs, None for an
        instruction edit or a photo."""
        return finish_from_params(self.params)


class ConversationRegion(Base):
    """A region set by `/keep` or `/only`: it applies to every following edit of the
    conversation until cleared (`/keep off`, `/only off`). One of each kind at most."""

    __tablename__ = "conversation_regions"

    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VersionRegion(Base):
    """The region an edit was made with (kind, text) and the mask it used, so the result can be
    reproduced: `mask_sha` is a binary PNG in the image store at the parent's size, recorded
    when the edit is done (None while it is queued, and for a region that matched nothing or
    everything on that parent, which was therefore not applied)."""

    __tablename__ = "version_regions"

    version_id: Mapped[int] = mapped_column(
        ForeignKey("versions.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    mask_sha: Mapped[str | None] = mapped_column(String(64), index=True)


class UserLimit(Base):
    """Token bucket and daily quota per (platform, user), persisted so restarts don't reset them."""

    __tablename__ = "user_limits"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    refilled_at: Mapped[float] = mapped_column(Float)
    quota_day: Mapped[str] = mapped_column(String(10))
    quota_used: Mapped[int] = mapped_column(Integer, default=0)


class StoredImage(Base):
    """Image bytes by sha256, for deployments where every process must read every image."""

    __tablename__ = "images"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UserLanguage(Base):
    """The language a user reads, per (platform, user), in every chat of that platform.

    `chosen` is what /language set (None: follow the app); `detected` is the last language
    the platform reported (Telegram's language_code, Discord's locale, Accept-Language), kept
    so that results finishing later, even after a restart, are worded in it.
    """

    __tablename__ = "user_languages"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    chosen: Mapped[str | None] = mapped_column(String(16))
    detected: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AccessRule(Base):
    """An operator's decision about one user, Telegram group chat or Discord server.

    `scope` is "user", "chat" (a Telegram group) or "server" (a Discord guild). Allowed and
    banned are separate facts (a ban wins); `daily_quota` overrides PIX2CHAT_DAILY_QUOTA for
    a user (0: no daily limit). Kept in the database so every process sees the same lists.
    """

    __tablename__ = "access_rules"

    platform: Mapped[str] = mapped_column(String(32), primary_key=True)
    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    allowed: Mapped[bool] = mapped_column(Boolean, default=False)
    banned: Mapped[bool] = mapped_column(Boolean, default=False)
    daily_quota: Mapped[int | None] = mapped_column(Integer)
    updated_by: Mapped[str | None] = mapped_column(String(100))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# ----- recipes (issue 17) ----------------------------------------------------------------------


class SavedRecipe(Base):
    """A user's named recipe on one platform (every chat shares it); `document` is the JSON of
    storage.recipe_format.Recipe."""

    __tablename__ = "recipes"
    __table_args__ = (UniqueConstraint("platform", "user_id", "name", name="uq_recipe_name"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RecipeRun(Base):
    """One application of a recipe to a batch of photos in a conversation.

    `items` lists the photos in order: {"photo": label, "root": id, "versions": [step ids]}
    (or {"photo": label, "error": key} for a photo that was refused). Each version's own status
    says how far the photo got; `finished_at` is set once the batch's results were published.
    """

    __tablename__ = "recipe_runs"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    recipe_name: Mapped[str] = mapped_column(String(64))
    items: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(index=True)
