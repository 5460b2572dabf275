"""Which chats each profile was named on, and when: the facts behind GET /profiles.

Kept as (profile, chat, first seen, last seen) with min/max upserts, which commute,
so the rows never depend on the order events arrive in.
"""

from collections.abc import Sequence
from typing import Any, Final

from sqlalchemy import Connection, Table

from cdp import db
from cdp.log.store import Recorded
from cdp.log.webhook import KNOWN_TYPES
from cdp.profiles.tables import profile_chats
from cdp.settings import Settings


def create(settings: Settings) -> "ProfilesProjector":
    """The profiles projector: no setting shapes it."""
    return ProfilesProjector()


class ProfilesProjector:
    name = "profiles"
    version = 1
    shape = ""  # no setting shapes it
    tables: tuple[Table, ...] = (profile_chats,)
    reads: tuple[str, ...] = ()

    def apply(
        self, connection: Connection, batch: Sequence[Recorded], *, fresh: bool, tables: db.Tables
    ) -> None:
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for recorded in batch:
            webhook = recorded.incoming.webhook
            profile, chat = webhook.profile_uuid, webhook.chat_uuid
            if webhook.event_type not in KNOWN_TYPES or profile is None or chat is None:
                continue
            key = (profile, chat)
            row = seen.setdefault(
                key,
                {
                    "profile_uuid": key[0],
                    "chat_uuid": key[1],
                    "first_seen_at": webhook.timestamp,
                    "last_seen_at": webhook.timestamp,
                },
            )
            row["first_seen_at"] = min(row["first_seen_at"], webhook.timestamp)
            row["last_seen_at"] = max(row["last_seen_at"], webhook.timestamp)
        if fresh:  # every pair is whole in this batch, and none is stored yet
            db.insert(connection, tables[profile_chats], list(seen.values()))
            return
        db.upsert(
            connection,
            tables[profile_chats],
            list(seen.values()),
            key=["profile_uuid", "chat_uuid"],
            least=["first_seen_at"],
            greatest=["last_seen_at"],
        )

    def forget(self, connection: Connection, chats: Sequence[str], tables: db.Tables) -> None:
        """A chat's pairs name its profile: they go with it."""
        _FORGET.run(connection, [{"chats": list(chats)}], tables)


_FORGET: Final = db.Prepared(
    profile_chats.delete().where(db.any_of(profile_chats.c.chat_uuid, "chats"))
)
