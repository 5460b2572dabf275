"""The log's tables: every accepted webhook, and the deliveries rejected."""

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, Position, table_of


class EventRow(Base):
    """The log: every accepted webhook, exactly as it arrived. The database refuses changes."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_chat_uuid_position", "chat_uuid", "position"),
        Index("ix_events_profile_uuid_position", "profile_uuid", "position"),
        Index("ix_events_event_type_position", "event_type", "position"),
        # The log filtered by chat or profile and by type at once (GET /events).
        Index("ix_events_chat_uuid_event_type", "chat_uuid", "event_type", "position"),
        Index("ix_events_profile_uuid_event_type", "profile_uuid", "event_type", "position"),
        Index("ix_events_source_position", "source", "position"),
        {"sqlite_autoincrement": True},
    )

    position: Mapped[int] = mapped_column(Position, primary_key=True, autoincrement=True)
    event_type: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    received_at: Mapped[int] = mapped_column(BigInteger)
    chat_uuid: Mapped[str | None] = mapped_column(String(200))
    profile_uuid: Mapped[str | None] = mapped_column(String(200))
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    body: Mapped[str] = mapped_column(Text)
    # The source that delivered it (see SourceRow); events logged before sources: "default".
    source: Mapped[str] = mapped_column(String(64), server_default=text("'default'"))
    # The whole body sealed under the key `key_id` (see cdp.privacy.personal); `body` then holds
    # only its fields that are no personal data. Both None for an event that names no
    # chat and no profile: its body is kept whole, in the clear.
    key_id: Mapped[str | None] = mapped_column(String(32))
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # SHA-256 over the row before's hash and this row's columns (see cdp.log.chain). Every
    # append writes it (SQLite's guard refuses a row without it); nullable only because
    # SQLite cannot add a NOT NULL column without a default to a table that has rows.
    hash: Mapped[str | None] = mapped_column(String(64))


class RejectedRow(Base):
    """A delivery refused as bad input (400, 413, 415, 422): kept a while, never logged.

    `body` is what was read of it (up to CDP_MAX_BODY_SIZE), `size` how large it was or
    said it was, `headers` those that tell where it came from (never credentials).
    """

    __tablename__ = "rejected"
    __table_args__ = (Index("ix_rejected_received_at", "received_at"),)

    id: Mapped[int] = mapped_column(Position, primary_key=True, autoincrement=True)
    received_at: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Sealed under a key of its own (see cdp.log.rejected), `key_id`; as it came if that is NULL
    # (kept before 0017: forgotten within CDP_REJECTED_RETENTION).
    body: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str | None] = mapped_column(String(32))


events = table_of(EventRow)


rejected = table_of(RejectedRow)
