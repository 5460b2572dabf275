"""The projectors that turn the log into read models, and the runner that feeds them.

Each projector's checkpoint is written in the same transaction as its rows.
"""

from collections.abc import Sequence
from typing import Protocol

from sqlalchemy import Connection, Table, select

from cdp import db, log
from cdp.log import Recorded
from cdp.models import checkpoints
from cdp.projectors.chats import ChatsProjector
from cdp.projectors.conversation import Rules
from cdp.projectors.profiles import ProfilesProjector
from cdp.settings import Settings


class Projector(Protocol):
    name: str
    tables: tuple[Table, ...]

    def apply(self, connection: Connection, batch: Sequence[Recorded]) -> None:
        """Project new events, given in log order."""

    def rebuild(self, connection: Connection) -> None:
        """Fill the projector's emptied tables from the whole log."""


def registry(settings: Settings) -> list[Projector]:
    rules = Rules.of(settings.session_idle_timeout, settings.session_open_window)
    return [ChatsProjector(rules, settings.phone_region), ProfilesProjector()]


def positions(connection: Connection) -> dict[str, int]:
    query = select(checkpoints.c.name, checkpoints.c.position)
    return {name: position for name, position in connection.execute(query)}


def project(
    connection: Connection, projectors: Sequence[Projector], new: Sequence[Recorded], head: int
) -> None:
    """Feed events just appended after `head` to every projector, in the append's transaction.

    A projector whose checkpoint is behind `head` (added since, or never rebuilt) first
    gets the events it missed: no projector ever skips part of the log.
    """
    if not new:
        return
    marks = positions(connection)
    for projector in projectors:
        mark = marks.get(projector.name, 0)
        batch = new if mark == head else list(log.replay(connection, after=mark))
        projector.apply(connection, batch)
    _advance(connection, projectors, new[-1].position)


def rebuild(connection: Connection, projectors: Sequence[Projector]) -> int:
    """Empty every projection and refill it from the log; the log head they now stand at."""
    log.lock(connection)
    head = log.head(connection)
    for projector in projectors:
        for table in reversed(projector.tables):
            connection.execute(table.delete())
        projector.rebuild(connection)
    _advance(connection, projectors, head)
    return head


def _advance(connection: Connection, projectors: Sequence[Projector], position: int) -> None:
    rows = [{"name": projector.name, "position": position} for projector in projectors]
    db.upsert(connection, checkpoints, rows, key=["name"])
