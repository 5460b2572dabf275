"""The reports' tables: what the reports projector keeps of the conversations, and the
settings an admin gives them (working hours, holidays, each team's reply targets)."""

from sqlalchemy import JSON, BigInteger, Index, Integer, LargeBinary, String, Text, literal_column
from sqlalchemy.orm import Mapped, mapped_column

from cdp.tables import Base, table_of

# A scope (`team:12/operator:<uuid>`) compared byte for byte on every database: a team's
# operators are read as the range of keys that begin with its prefix, which a linguistic
# collation (PostgreSQL's default in most locales) would order otherwise.
SCOPE = String(400).with_variant(String(400, collation="C"), "postgresql")

# -- kept by the reports projector, from the conversations' tables ---------------------


class ReportEventRow(Base):
    """Where each event of a chat fell, as the reports last counted it: its kind, session
    and team (and the team in charge before it), with what it is counted under."""

    __tablename__ = "report_events"
    __table_args__ = (
        Index("ix_report_events_chat_order", "chat_uuid", "occurred_at", "rank", "dedupe_key"),
        # A chat's replies, openings and messages in order: where a wait begins and ends.
        Index(
            "ix_report_events_chat_kind_order",
            "chat_uuid",
            "kind",
            "occurred_at",
            "rank",
            "dedupe_key",
        ),
        # Each operator's first reply in a session while a team was in charge (the
        # leaderboard's sessions, see report_operator_sessions).
        Index(
            "ix_report_events_replies",
            "chat_uuid",
            "session_number",
            "team_id",
            "operator_uuid",
            "occurred_at",
            sqlite_where=literal_column("kind") == "operator_reply",
            postgresql_where=literal_column("kind") == "operator_reply",
        ),
    )

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_uuid: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[int] = mapped_column(BigInteger)
    rank: Mapped[int] = mapped_column(Integer)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    session_number: Mapped[int | None] = mapped_column(Integer)
    team_id: Mapped[int | None] = mapped_column(BigInteger)
    # The team in charge just before it in its session: a handoff's team handed out of.
    before_team_id: Mapped[int | None] = mapped_column(BigInteger)
    operator_uuid: Mapped[str | None] = mapped_column(String(200))
    platform: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(64))


class ReportCountRow(Base):
    """How many events of a metric happened in a local hour (its first instant), counted
    under one scope (see cdp.reports.scopes)."""

    __tablename__ = "report_counts"

    scope: Mapped[str] = mapped_column(SCOPE, primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)


class ReportReplyRow(Base):
    """A customer's wait for a reply: from a customer message that opens a session's
    conversation or follows an operator reply, to the next operator reply in the session;
    `replied_at` None while none came."""

    __tablename__ = "report_replies"
    __table_args__ = (
        Index("ix_report_replies_chat_order", "chat_uuid", "occurred_at", "rank", "dedupe_key"),
        Index("ix_report_replies_started_at", "occurred_at"),
        Index("ix_report_replies_team_id", "team_id", "occurred_at"),
        Index("ix_report_replies_replied_by", "replied_by", "occurred_at"),
        # A session's wait with no reply: its last, if any (see closed_at).
        Index(
            "ix_report_replies_unanswered",
            "chat_uuid",
            "session_number",
            sqlite_where=literal_column("replied_at").is_(None),
            postgresql_where=literal_column("replied_at").is_(None),
        ),
    )

    # The position of the customer message that began it.
    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_uuid: Mapped[str] = mapped_column(String(200))
    occurred_at: Mapped[int] = mapped_column(BigInteger)  # when the wait began
    rank: Mapped[int] = mapped_column(Integer)
    dedupe_key: Mapped[str] = mapped_column(String(64))
    session_number: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[int | None] = mapped_column(BigInteger)  # in charge when it began
    platform: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(64))
    # Did an operator reply come before it in the session (a next reply), or does it open
    # the session's conversation (its first)?
    follows_reply: Mapped[bool] = mapped_column()
    replied_at: Mapped[int | None] = mapped_column(BigInteger)
    replied_by: Mapped[str | None] = mapped_column(String(200))
    # For one with no reply: when its session last saw an event (it ends when that
    # session does).
    closed_at: Mapped[int | None] = mapped_column(BigInteger)


class ReportTurnRow(Base):
    """A team's turn as the reports last counted it (the chats projector's `waits`, with
    the messenger its first event names): a first-response wait."""

    __tablename__ = "report_turns"
    __table_args__ = (Index("ix_report_turns_chat_session", "chat_uuid", "session_number"),)

    position: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    chat_uuid: Mapped[str] = mapped_column(String(200))
    session_number: Mapped[int] = mapped_column(Integer)
    team_id: Mapped[int] = mapped_column(BigInteger)
    started_at: Mapped[int] = mapped_column(BigInteger)
    replied_at: Mapped[int | None] = mapped_column(BigInteger)
    replied_by: Mapped[str | None] = mapped_column(String(200))
    handed_off_at: Mapped[int | None] = mapped_column(BigInteger)
    # For one with no reply that was not handed on: when its session last saw an event.
    closed_at: Mapped[int | None] = mapped_column(BigInteger)
    platform: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(64))


class ReportSessionRow(Base):
    """A session as the reports last counted it: its opening, its last event, the team and
    messenger its opening names."""

    __tablename__ = "report_sessions"
    __table_args__ = (
        # The sessions still open at a moment: their lengths are not counted yet.
        Index("ix_report_sessions_last_activity_at", "last_activity_at"),
    )

    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    opened_at: Mapped[int] = mapped_column(BigInteger)
    last_activity_at: Mapped[int] = mapped_column(BigInteger)
    team_id: Mapped[int | None] = mapped_column(BigInteger)
    platform: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(64))


class ReportTimesRow(Base):
    """The waits or sessions of a metric begun in a local hour, under a scope: one record
    of four little-endian 64-bit integers each (see cdp.reports.records), in order. What
    a percentile, a target's outcome or working time over any units is worked out from,
    without the rows."""

    __tablename__ = "report_times"

    scope: Mapped[str] = mapped_column(SCOPE, primary_key=True)
    metric: Mapped[str] = mapped_column(String(32), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # Stored apart and not compressed on PostgreSQL: rewritten by every webhook that adds
    # a record and read a month at a time, and what compression saves is read back slower.
    records: Mapped[bytes] = mapped_column(LargeBinary, info={"postgresql_storage": "EXTERNAL"})
    # A digest of the records: what a report that keeps what it worked out of an hour
    # checks, without reading the records again (see cdp.reports.outcomes).
    version: Mapped[int] = mapped_column(BigInteger)


class OperatorSessionRow(Base):
    """An operator's first reply in a session while a team was in charge: a session of
    theirs in the team's leaderboard, counted in the local hour of that reply."""

    __tablename__ = "report_operator_sessions"

    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    session_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    team_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    operator_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_at: Mapped[int] = mapped_column(BigInteger)


class WaitingRow(Base):
    """A chat whose customer waits for a reply: its latest session's latest wait has no
    operator reply (yet). It waits only while that session is open, which the time of
    asking decides (`last_activity_at`)."""

    __tablename__ = "report_waiting"
    __table_args__ = (Index("ix_report_waiting_last_activity_at", "last_activity_at"),)

    chat_uuid: Mapped[str] = mapped_column(String(200), primary_key=True)
    session_number: Mapped[int] = mapped_column(Integer)
    position: Mapped[int] = mapped_column(BigInteger)  # the wait's first message
    since: Mapped[int] = mapped_column(BigInteger)  # when it was written
    follows_reply: Mapped[bool] = mapped_column()
    last_activity_at: Mapped[int] = mapped_column(BigInteger)  # of the session
    # The team now in charge, and its turn: since when, and whether it has replied.
    team_id: Mapped[int | None] = mapped_column(BigInteger)
    turn_started_at: Mapped[int | None] = mapped_column(BigInteger)
    turn_answered: Mapped[bool] = mapped_column()
    source: Mapped[str] = mapped_column(String(64))
    platform: Mapped[str | None] = mapped_column(String(100))


report_events = table_of(ReportEventRow)
report_turns = table_of(ReportTurnRow)
report_sessions = table_of(ReportSessionRow)
report_times = table_of(ReportTimesRow)
report_operator_sessions = table_of(OperatorSessionRow)
report_waiting = table_of(WaitingRow)
report_counts = table_of(ReportCountRow)
report_replies = table_of(ReportReplyRow)


# -- set by an admin -------------------------------------------------------------------


class WorkingIntervalRow(Base):
    """A working interval of a weekday (0 Monday ... 6 Sunday), in minutes after local
    midnight: the weekly schedule business hours count."""

    __tablename__ = "working_hours"

    weekday: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    starts: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ends: Mapped[int] = mapped_column(Integer)


class HolidayRow(Base):
    """A local day with no working time, whatever the schedule says."""

    __tablename__ = "holidays"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    name: Mapped[str | None] = mapped_column(Text)


class TargetRow(Base):
    """A team's reply targets: the first reply of each turn, and each next reply, within
    so many milliseconds (of working time, when a schedule is set)."""

    __tablename__ = "reply_targets"

    team_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_reply_ms: Mapped[int | None] = mapped_column(BigInteger)
    next_reply_ms: Mapped[int | None] = mapped_column(BigInteger)


class SettingChangeRow(Base):
    """Who changed which report setting when, and from what to what."""

    __tablename__ = "report_setting_changes"
    __table_args__ = (Index("ix_report_setting_changes_at", "at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(200))
    setting: Mapped[str] = mapped_column(String(64))  # working_hours, holidays, targets
    before: Mapped[object] = mapped_column(JSON)
    after: Mapped[object] = mapped_column(JSON)


working_hours = table_of(WorkingIntervalRow)
holidays = table_of(HolidayRow)
reply_targets = table_of(TargetRow)
setting_changes = table_of(SettingChangeRow)
