"""Every table: the event log, the projections' read models and their checkpoints.

Code outside this module uses the tables (`events`, `chats`, ...); the classes, named
*Row, only declare them.

Times are integer milliseconds since the Unix epoch (UTC), the unit of the
webhooks' own `timestamp`: exact, and the same arithmetic on every database.
"""

from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite autoincrements only an INTEGER PRIMARY KEY, PostgreSQL wants a BIGINT.
Position = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[int]: JSON, list[str]: JSON}


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
    # The whole body sealed under the key `key_id` (see cdp.personal); `body` then holds
    # only its fields that are no personal data. Both None for an event that names no
    # chat and no profile: its body is kept whole, in the clear.
    key_id: Mapped[str | None] = mapped_column(String(32))
    sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    # SHA-256 over the row before's hash and this row's columns (see cdp.chain). Every
    # append writes it (SQLite's guard refuses a row without it); nullable only because
    # SQLite cannot add a NOT NULL column without a default to a table that has rows.
    hash: Mapped[str | None] = mapped_column(String(64))


class SourceRow(Base):
    """A sender of webhooks (a Fasttrack project), and what proves a delivery is its own.

    Secrets are kept as SHA-256 digests; a rotated one stays valid until `previous_until`.
    Signing keys (Standard Webhooks) are kept as given: checking an HMAC needs the key.
    """

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_digest: Mapped[str] = mapped_column(String(64))
    previous_digest: Mapped[str | None] = mapped_column(String(64))
    previous_until: Mapped[int | None] = mapped_column(BigInteger)
    signing_key: Mapped[str | None] = mapped_column(Text)
    previous_signing_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[int] = mapped_column(BigInteger)


class TokenRow(Base):
    """A bearer token of the query API: `read` or `admin`, kept as a SHA-256 digest."""

    __tablename__ = "tokens"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(10))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


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
    # Sealed under a key of its own (see cdp.rejected), `key_id`; as it came if that is NULL
    # (kept before 0017: forgotten within CDP_REJECTED_RETENTION).
    body: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str | None] = mapped_column(String(32))


class OwnerRow(Base):
    """The source each chat and profile belongs to: the one that first delivered an event
    naming it (subject "chat:<uuid>" or "profile:<uuid>"). Another source's events naming
    it are refused, so a source cannot write into another's customers."""

    __tablename__ = "owners"

    subject: Mapped[str] = mapped_column(String(210), primary_key=True)
    source: Mapped[str] = mapped_column(String(64))


class KeyRow(Base):
    """The live key of each subject (a chat, or a profile): destroyed by erasure.

    Kept in the keystore, CDP_KEYSTORE_URL, which may be a database of its own; its
    material wrapped under the key-encryption key of its bucket (see cdp.keyfile).
    """

    __tablename__ = "keys"
    # The keys of a bucket still wrapped under an earlier generation than its own.
    __table_args__ = (Index("ix_keys_bucket_generation", "bucket", "generation"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(210), unique=True)
    material: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[int] = mapped_column(BigInteger)
    bucket: Mapped[int] = mapped_column(Integer)
    # The generation of the bucket's key-encryption key the material is wrapped under.
    generation: Mapped[int] = mapped_column(BigInteger)


class KeyBucketRow(Base):
    """Each bucket's key-encryption key (see cdp.keyfile): the generation that new keys are
    wrapped under; the one every key of it is wrapped under at least (`wrapped`: the key
    file may be brought to it, no further); and whether an erasure destroyed a key of it
    since its generation began (`stale`): then the generation moves on, every key is
    wrapped anew under it, a step at a time, and only then is the last one overwritten."""

    __tablename__ = "key_buckets"

    bucket: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    generation: Mapped[int] = mapped_column(BigInteger)
    wrapped: Mapped[int] = mapped_column(BigInteger)
    stale: Mapped[bool] = mapped_column(Boolean)


class ErasedSubjectRow(Base):
    """A subject whose keys were destroyed, when, at whose request; kept in the keystore,
    so that an erasure outlives a restored backup of the database, and the other way round."""

    __tablename__ = "erased_subjects"

    subject: Mapped[str] = mapped_column(String(210), primary_key=True)
    profile_uuid: Mapped[str] = mapped_column(String(200))
    erased_at: Mapped[int] = mapped_column(BigInteger)
    suppressed: Mapped[bool] = mapped_column(Boolean)


class ErasureRow(Base):
    """A profile erased on request: its chats, and how many webhooks were refused since."""

    __tablename__ = "erasures"

    profile_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    erased_at: Mapped[int] = mapped_column(BigInteger)
    suppressed: Mapped[bool] = mapped_column(Boolean)
    chats: Mapped[list[str]] = mapped_column(JSON)
    refused: Mapped[int] = mapped_column(BigInteger)


class PendingErasureRow(Base):
    """A chat that an erasure begun has still to reach: its keys destroyed and its rows
    folded again, a few chats a transaction (see cdp.erasure). While a profile has any,
    it is being erased."""

    __tablename__ = "pending_erasures"

    profile_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)


class CheckpointRow(Base):
    """How far into the log each projector has got, written with the projector's rows;
    and what built its tables: the projector's version and the settings that shape it
    (None: built before versions were recorded)."""

    __tablename__ = "projection_checkpoints"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    version: Mapped[int | None] = mapped_column(Integer)
    shape: Mapped[str | None] = mapped_column(Text)
    built_at: Mapped[int | None] = mapped_column(BigInteger)


class BuildRow(Base):
    """The latest build of each projection beside the live one (see cdp.builds): who runs
    it, how far it got, and how it ended. `heartbeat_at` moves with every batch: a build
    whose heartbeat stopped was interrupted."""

    __tablename__ = "projection_builds"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    state: Mapped[str] = mapped_column(String(20))  # running, done, failed
    owner: Mapped[str] = mapped_column(String(200))  # host and process id
    started_at: Mapped[int] = mapped_column(BigInteger)
    heartbeat_at: Mapped[int] = mapped_column(BigInteger)
    done: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    finished_at: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)


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
        # queries.profiles_by_phone); the chats of a name's (see cdp.names).
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
    # What searches look a chat up by (see cdp.phones.digest, cdp.names.digest).
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


class ProfileChatRow(Base):
    """Every (profile, chat) pair the events named, and when."""

    __tablename__ = "profile_chats"
    __table_args__ = (
        # When a profile was first and last named, and on which chat last: each read from
        # one end of an index, however many chats it was named on.
        Index("ix_profile_chats_first_seen_at", "profile_uuid", "first_seen_at"),
        Index("ix_profile_chats_last_seen_at", "profile_uuid", "last_seen_at", "chat_uuid"),
        # A chat's pairs: what an erasure deletes, a few chats at a time, to fold them again.
        Index("ix_profile_chats_chat_uuid", "chat_uuid"),
    )

    profile_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_seen_at: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[int] = mapped_column(BigInteger)


class TeamRow(Base):
    """Every team the events named, in each source, with its latest name: the one the
    latest event naming it carried, in the fold's order (named_at, named_rank, named_key)."""

    __tablename__ = "teams"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(Text)
    named_at: Mapped[int] = mapped_column(BigInteger)
    named_rank: Mapped[int] = mapped_column(Integer)
    named_key: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[int] = mapped_column(BigInteger)


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


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


events = _table(EventRow)
checkpoints = _table(CheckpointRow)
projection_builds = _table(BuildRow)
timeline = _table(TimelineRow)
sessions = _table(SessionRow)
handoffs = _table(HandoffRow)
chats = _table(ChatRow)
profile_chats = _table(ProfileChatRow)
teams = _table(TeamRow)
waits = _table(WaitRow)
sources = _table(SourceRow)
tokens = _table(TokenRow)
rejected = _table(RejectedRow)
owners = _table(OwnerRow)
keys = _table(KeyRow)
key_buckets = _table(KeyBucketRow)
erased_subjects = _table(ErasedSubjectRow)
erasures = _table(ErasureRow)
pending_erasures = _table(PendingErasureRow)

# The read models' columns that hold a customer's values, each sealed under the key of the
# row's chat (see cdp.personal.Sealer): what an erasure destroys makes them unreadable,
# in the rows and in every copy the database keeps of them (dead rows, its log, backups).
SEALED: Final[dict[Table, tuple[str, ...]]] = {
    timeline: ("name", "phone", "avatar", "title", "context", "message"),
    sessions: ("title", "context"),
    chats: ("name", "phone", "phone_e164", "avatar"),
}
