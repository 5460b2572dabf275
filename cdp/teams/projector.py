"""Teams by their latest name, in each source: what the events named them.

A team's name is the one the latest event naming it carried, in the fold's order; rows
are upserted keeping the later name and the wider span of seen times, which commute, so
they never depend on the order events arrive in. Turns, the team statistics' rows, are
the chats projector's (see cdp.conversations.projector).
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table

from cdp import db
from cdp.conversations.fold import fact_of
from cdp.log.store import Recorded
from cdp.settings import Settings
from cdp.teams.tables import teams


def create(settings: Settings) -> "TeamsProjector":
    """The teams projector: no setting shapes it."""
    return TeamsProjector()


class TeamsProjector:
    """Teams by their latest name (see the module)."""

    name = "teams"
    version = 2  # 2: each event's team in its own source; turns moved to the chats projector
    shape = ""  # no setting shapes it
    tables: tuple[Table, ...] = (teams,)
    reads: tuple[str, ...] = ()

    def apply(
        self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool, tables: db.Tables
    ) -> None:
        rows = []
        for recorded in batch:
            if recorded.incoming.webhook.chat_uuid is None:
                continue
            fact = fact_of(recorded)
            if fact.event_team_id is None:
                continue
            rows.append(
                {
                    "source": recorded.incoming.source,
                    "event_team_id": fact.event_team_id,
                    "event_team_name": fact.event_team_name,
                    "occurred_at": fact.occurred_at,
                    "rank": fact.rank,
                    "dedupe_key": fact.dedupe_key,
                }
            )
        _name(connection, rows, tables)

    def forget(self, connection: Connection, chats: Sequence[str], tables: db.Tables) -> None:
        """A team's name is Fasttrack's, of no customer: nothing to forget."""


def _name(connection: Connection, rows: Iterable[Mapping[str, Any]], tables: db.Tables) -> None:
    """Record in `tables` the teams `rows` name, each by the latest name they give it."""
    found: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        if row["event_team_id"] is None:
            continue
        named = {
            "source": row["source"],
            "id": row["event_team_id"],
            "name": row["event_team_name"],
            "named_at": row["occurred_at"],
            "named_rank": row["rank"],
            "named_key": row["dedupe_key"],
            "first_seen_at": row["occurred_at"],
            "last_seen_at": row["occurred_at"],
        }
        before = found.get((named["source"], named["id"]))
        if before is None:
            found[(named["source"], named["id"])] = named
            continue
        if _order(named) > _order(before):
            before |= {k: named[k] for k in ("name", "named_at", "named_rank", "named_key")}
        before["first_seen_at"] = min(before["first_seen_at"], named["first_seen_at"])
        before["last_seen_at"] = max(before["last_seen_at"], named["last_seen_at"])
    db.upsert(
        connection,
        tables[teams],
        list(found.values()),
        key=["source", "id"],
        latest=["named_at", "named_rank", "named_key"],
        least=["first_seen_at"],
        greatest=["last_seen_at"],
    )


def _order(team: Mapping[str, Any]) -> tuple[int, int, str]:
    return (team["named_at"], team["named_rank"], team["named_key"])
