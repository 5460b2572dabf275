"""Whatever parse accepts, however hostile, the log and every projection take, on both
databases; and a rebuild from the log gives the same answers as the live projections."""

from datetime import timedelta
from functools import partial
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, assume, given
from sqlalchemy import Engine, select

from cdp import db, paging
from cdp.conversations import queries
from cdp.log import ingest
from cdp.log.tables import events
from cdp.log.webhook import Rejection
from cdp.privacy.keystore import MAIN
from cdp.profiles import queries as profiles_queries
from cdp.projections import registry
from cdp.projections.runner import rebuild
from cdp.settings import Settings
from tests.factories import now_ms
from tests.integration.test_projections import every
from tests.unit.test_any_body import ENVELOPE, mutated_samples, parsed, spoilt


def answers(engine: Engine, clock: paging.Clock) -> dict[str, Any]:
    """What the queries answer about every chat and profile the log names."""
    with engine.connect() as connection:
        named = connection.execute(select(events.c.chat_uuid, events.c.profile_uuid)).all()
        chats = sorted({chat for chat, _ in named if chat is not None})
        profiles = sorted({profile for _, profile in named if profile is not None})
        found: dict[str, Any] = {"chats": {}}
        for chat in chats:
            current = queries.chat(connection, chat, clock, keystore=MAIN)
            found["chats"][chat] = {
                "chat": current.model_dump() if current else None,
                "sessions": every(partial(queries.chat_sessions, connection, chat, clock)),
                "handoffs": every(partial(queries.chat_handoffs, connection, chat)),
                "timeline": every(partial(queries.chat_timeline, connection, chat, keystore=MAIN)),
            }
        found["profiles"] = [
            p.model_dump() for p in profiles_queries.profiles(connection, profiles, keystore=MAIN)
        ]
        found["audit"] = every(partial(queries.team_handoffs, connection))
    return found


@pytest.mark.slow
def test_whatever_parse_accepts_is_projected_and_rebuilt_alike(
    settings: Settings, engine: Engine
) -> None:
    projectors = registry.projectors(settings)

    @hypothesis.settings(
        max_examples=60,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(raw=spoilt(ENVELOPE) | mutated_samples())
    def record(raw: bytes) -> None:
        incoming = parsed(raw)
        assume(not isinstance(incoming, Rejection))
        ingest.record(engine, [incoming], projectors, keystore=MAIN)

    record()
    clock = paging.Clock(settings.session_idle_timeout // timedelta(milliseconds=1), now_ms())
    live = answers(engine, clock)
    assert live["chats"], "nothing was accepted: the fuzzing never got past the checks"
    with db.writing(engine) as connection:
        rebuild(connection, projectors, MAIN)
    assert answers(engine, clock) == live
