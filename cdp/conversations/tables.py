"""The conversations' read models: chats, their timelines, sessions, handoffs and turns."""

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, table_of


class TimelineRow(Base):
    """One row per logged event that names a chat: what it said, and where it falls."""

    __tablename__ = "timeline"
    __table_args__ = (
        Index("ix_timeline_chat_uuid_order", "chat_uuid", "occurred_at", "rank", "dedupe_key"),
        # A team's messages and replies in a period, an operator's replies (team statistics).
        Index("ix_timeline_team_id_kind", "team_id", "kind", "occurred_at"),
        Index("ix_timeline_operator_uuid", "operator_uuid", "occurred_at"),
    )

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_uuid: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    rank: Mapped[int] = mapped_column(Integer)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(200))
    # What the event says; the customer's values sealed (see SEALED).
    profile_uuid: Mapped[str | None] = mapped_column(String(200))
    platform: Mapped[str | None] = mapped_column(Text)
    name: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone: Mapped[bytes | None] = mapped_column(LargeBinary)
    avatar: Mapped[bytes | None] = mapped_column(LargeBinary)
    event_team_id: Mapped[int | None] = mapped_column(BigInteger)
    event_team_name: Mapped[str | None] = mapped_column(Text)
    title: Mapped[bytes | None] = mapped_column(LargeBinary)
    context: Mapped[bytes | None] = mapped_column(LargeBinary)
    operator_uuid: Mapped[str | None] = mapped_column(String(200))
    operator_name: Mapped[str | None] = mapped_column(Text)
    operator_avatar: Mapped[str | None] = mapped_column(Text)
    message: Mapped[bytes | None] = mapped_column(LargeBinary)  # its JSON text, sealed
    # Where it falls, derived from all of the chat's events.
    kind: Mapped[str] = mapped_column(String(20))
    session_number: Mapped[int | None] = mapped_column(Integer)
    team_id: Mapped[int | None] = mapped_column(BigInteger)
    team_name: Mapped[str | None] = mapped_column(Text)


class SessionRow(Base):
    __tablename__ = "sessions"

    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    opened_at: Mapped[int] = mapped_column(BigInteger)
    last_activity_at: Mapped[int] = mapped_column(BigInteger)
    title: Mapped[bytes | None] = mapped_column(LargeBinary)  # sealed (see SEALED)
    context: Mapped[bytes | None] = mapped_column(LargeBinary)
    teams: Mapped[list[int]] = mapped_column(JSON)
    handoffs: Mapped[int] = mapped_column(Integer)
    messages_in: Mapped[int] = mapped_column(Integer)
    messages_out: Mapped[int] = mapped_column(Integer)


class HandoffRow(Base):
    __tablename__ = "handoffs"
    __table_args__ = (
        Index("ix_handoffs_at", "at", "dedupe_key"),
        # Each in the lists' own order (at, dedupe_key), so that a page is read, not sorted.
        Index("ix_handoffs_chat_uuid_order", "chat_uuid", "at", "dedupe_key"),
        Index("ix_handoffs_from_team_id_order", "from_team_id", "at", "dedupe_key"),
        Index("ix_handoffs_to_team_id_order", "to_team_id", "at", "dedupe_key"),
    )

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_uuid: Mapped[str] = mapped_column(String(200))
    session_number: Mapped[int] = mapped_column(Integer)
    at: Mapped[int] = mapped_column(BigInteger)
    from_team_id: Mapped[int] = mapped_column(BigInteger)
    from_team_name: Mapped[str | None] = mapped_column(Text)
    to_team_id: Mapped[int] = mapped_column(BigInteger)
    to_team_name: Mapped[str | None] = mapped_column(Text)
    # Orders handoffs of the same millisecond as the conversation fold orders their events.
    dedupe_key: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(64), server_default=text("'default'"))


class ChatRow(Base):
    __tablename__ = "chats"
    __table_args__ = (
        # A profile's chats in the order it lists them, a page at a time from either end.
        Index("ix_chats_profile_uuid_order", "profile_uuid", "first_seen_at", "uuid"),
        # The profiles owning chats of a number's digest, in order, each read apart (see
        # queries.profiles_by_phone); the chats of a name's (see cdp.profiles.names).
        Index("ix_chats_phone_digest", "phone_digest", "profile_uuid", "uuid"),
        Index("ix_chats_name_digest", "name_digest", "profile_uuid", "uuid"),
        # A team's chats, most recently active first: read backwards, not sorted.
        Index("ix_chats_team_id_order", "team_id", "last_seen_at", "uuid"),
    )

    uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    profile_uuid: Mapped[str | None] = mapped_column(String(200))
    platform: Mapped[str | None] = mapped_column(Text)
    # The customer's, sealed (see SEALED); the phone also in E.164.
    name: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_e164: Mapped[bytes | None] = mapped_column(LargeBinary)
    avatar: Mapped[bytes | None] = mapped_column(LargeBinary)
    # What searches look a chat up by (see cdp.profiles.phones.digest, cdp.profiles.names.digest).
    phone_digest: Mapped[int | None] = mapped_column(Integer)
    name_digest: Mapped[int | None] = mapped_column(Integer)
    first_seen_at: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[int] = mapped_column(BigInteger)
    team_id: Mapped[int | None] = mapped_column(BigInteger)
    team_name: Mapped[str | None] = mapped_column(Text)
    operator_uuid: Mapped[str | None] = mapped_column(String(200))
    operator_name: Mapped[str | None] = mapped_column(Text)
    operator_avatar: Mapped[str | None] = mapped_column(Text)
    session_number: Mapped[int | None] = mapped_column(Integer)
    # The source its events come from (see OwnerRow).
    source: Mapped[str] = mapped_column(String(64), server_default=text("'default'"))


class WaitRow(Base):
    """A team's turn with a chat: from a session's opening, or from a handoff to the team,
    to the next handoff or the session's end. The customer waits until its first reply."""

    __tablename__ = "waits"
    __table_args__ = (
        # A chat's turns in order: its latest is read back first.
        Index("ix_waits_chat_uuid_order", "chat_uuid", "session_number", "ordinal"),
        # A team's turns of a period, with what its figures count: read from the index alone.
        Index("ix_waits_team_id_started_at", "team_id", "started_at", "started_by", "replied_at"),
        Index("ix_waits_replied_by_started_at", "replied_by", "started_at"),
        Index("ix_waits_last_operator_uuid", "last_operator_uuid", "handed_off_at"),
    )

    # The position of the event that began it: the session's opening, or the handoff.
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_uuid: Mapped[str] = mapped_column(String(200))
    session_number: Mapped[int] = mapped_column(Integer)
    ordinal: Mapped[int] = mapped_column(Integer)  # 1 for the session's first turn, 2 ...
    source: Mapped[str] = mapped_column(String(64))
    team_id: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int] = mapped_column(BigInteger)
    started_by: Mapped[str] = mapped_column(String(20))  # opening, handoff
    # The first operator reply under the team, and who sent it; None while there is none.
    replied_at: Mapped[int | None] = mapped_column(BigInteger)
    replied_by: Mapped[str | None] = mapped_column(String(200))
    # The operator of the latest reply of the turn; when the turn ended by a handoff.
    last_operator_uuid: Mapped[str | None] = mapped_column(String(200))
    handed_off_at: Mapped[int | None] = mapped_column(BigInteger)


timeline = table_of(TimelineRow)


sessions = table_of(SessionRow)


handoffs = table_of(HandoffRow)


chats = table_of(ChatRow)


waits = table_of(WaitRow)


# The read models' columns that hold a customer's values, each sealed under the key of the
# row's chat (see cdp.privacy.personal.Sealer): what an erasure destroys makes them unreadable,
# in the rows and in every copy the database keeps of them (dead rows, its log, backups).
SEALED: Final[dict[Table, tuple[str, ...]]] = {
    timeline: ("name", "phone", "avatar", "title", "context", "message"),
    sessions: ("title", "context"),
    chats: ("name", "phone", "phone_e164", "avatar"),
}
