"""The log's hash chain: `cdp verify` finds the first row edited, deleted or slipped in
with the guard triggers off, on both databases."""

import json
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from click.testing import CliRunner
from litestar.testing import TestClient
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError

from cdp.cli import main
from cdp.http.app import create_app
from cdp.log import chain, ingest
from cdp.log.tables import events
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.settings import Settings
from tests.factories import PAST, checked, webhook

EVENTS = 6


@pytest.fixture
def logged(engine: Engine, settings: Settings) -> Engine:
    bodies = [
        webhook("message_created", chat=f"c{n % 2}", at=PAST + n, message=f"m{n}")
        for n in range(EVENTS)
    ]
    for body in bodies:  # one transaction each: the chain crosses commits
        ingest.record(
            engine, [checked(json.dumps(body))], registry.projectors(settings), keystore=MAIN
        )
    return engine


@contextmanager
def tampering(engine: Engine) -> Iterator[Connection]:
    """A transaction with the log's guard triggers off, as its owner could do."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            connection.execute(text("DROP TRIGGER events_refuse_update"))
            connection.execute(text("DROP TRIGGER events_refuse_delete"))
        yield connection


def verify(engine: Engine, anchor: tuple[int, str] | None = None) -> chain.Verdict:
    with engine.connect() as connection:
        return chain.verify(connection, anchor=anchor)


def test_an_untouched_log_holds_and_its_head_is_the_last_row_s_hash(logged: Engine) -> None:
    verdict = verify(logged)
    with logged.connect() as connection:
        last = connection.execute(
            select(events.c.position, events.c.hash).order_by(events.c.position.desc())
        ).first()
    assert last is not None
    assert (verdict.broken_at, verdict.rows, verdict.position, verdict.hash) == (
        None,
        EVENTS,
        *last,
    )


def test_an_edited_row_breaks_the_chain_at_that_row(logged: Engine) -> None:
    with tampering(logged) as connection:
        connection.execute(
            text("UPDATE events SET occurred_at = occurred_at + 1 WHERE position = 3")
        )
    assert verify(logged).broken_at == 3


def test_an_edited_sealed_body_breaks_the_chain_at_that_row(logged: Engine) -> None:
    with tampering(logged) as connection:
        sealed = connection.scalar(select(events.c.sealed).where(events.c.position == 4))
        assert sealed is not None
        forged = sealed[:-1] + bytes([sealed[-1] ^ 1])
        connection.execute(events.update().where(events.c.position == 4).values(sealed=forged))
    assert verify(logged).broken_at == 4


def test_a_deleted_row_breaks_the_chain_at_the_row_after_it(logged: Engine) -> None:
    with tampering(logged) as connection:
        connection.execute(text("DELETE FROM events WHERE position = 2"))
    assert verify(logged).broken_at == 3


def test_a_row_put_in_another_s_place_breaks_the_chain_after_it(logged: Engine) -> None:
    """A forger who chains the new row to the one before it still breaks the next one."""
    with tampering(logged) as connection:
        row = dict(connection.execute(select(events).where(events.c.position == 2)).one()._mapping)
        before = connection.scalar(select(events.c.hash).where(events.c.position == 1))
        assert before is not None
        connection.execute(text("DELETE FROM events WHERE position = 2"))
        row["event_type"] = "message_updated"
        row["hash"] = chain.link(before, row)
        connection.execute(events.insert().values(row))
    assert verify(logged).broken_at == 3


def test_a_row_appended_around_cdp_breaks_the_chain_at_it(logged: Engine) -> None:
    with logged.begin() as connection:  # inserting needs no trigger off: the log takes rows
        row = dict(
            connection.execute(select(events).where(events.c.position == EVENTS)).one()._mapping
        )
        row.update(position=EVENTS + 1, dedupe_key="f" * 64, hash="0" * 64)
        connection.execute(events.insert().values(row))
    assert verify(logged).broken_at == EVENTS + 1


def test_a_log_rewritten_whole_holds_but_no_longer_meets_the_head_an_auditor_kept(
    logged: Engine,
) -> None:
    kept = verify(logged)
    with tampering(logged) as connection:
        connection.execute(
            text("UPDATE events SET occurred_at = occurred_at + 1 WHERE position = 2")
        )
        previous = chain.GENESIS
        for row in connection.execute(select(events).order_by(events.c.position)).all():
            previous = chain.link(previous, row._mapping)
            connection.execute(
                events.update().where(events.c.position == row.position).values(hash=previous)
            )
    rewritten = verify(logged, anchor=(kept.position, kept.hash))
    assert rewritten.broken_at is None
    assert not rewritten.anchored
    assert verify(logged, anchor=(kept.position, rewritten.hash)).anchored


def test_the_hash_covers_every_column_of_the_log() -> None:
    assert set(chain.COLUMNS) == {column.name for column in events.c} - {"hash"}


def test_cdp_verify_prints_the_head_to_keep_and_exits_1_where_the_chain_breaks(
    logged: Engine, settings: Settings
) -> None:
    env = {"CDP_DATABASE_URL": settings.database_url}
    held = CliRunner().invoke(main, ["verify"], env=env)
    head = verify(logged)
    assert held.exit_code == 0, held.output
    assert f"head: {head.position}:{head.hash}" in held.output
    anchored = CliRunner().invoke(
        main, ["verify", "--expect", f"{head.position}:{head.hash}"], env=env
    )
    assert anchored.exit_code == 0, anchored.output
    with tampering(logged) as connection:
        connection.execute(text("UPDATE events SET body = '{}' WHERE position = 5"))
    broken = CliRunner().invoke(main, ["verify"], env=env)
    assert broken.exit_code == 1
    assert "breaks at position 5" in broken.output
    wrong = CliRunner().invoke(main, ["verify", "--expect", "12:nothex"], env=env)
    assert wrong.exit_code == 2
    assert "POSITION:HASH" in wrong.output


def test_each_event_shows_its_hash(logged: Engine, settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        shown = client.get("/events/3").json()["hash"]
    with logged.connect() as connection:
        assert shown == connection.scalar(select(events.c.hash).where(events.c.position == 3))


def test_a_row_without_a_hash_is_refused(logged: Engine) -> None:
    with logged.connect() as connection:
        row = dict(connection.execute(select(events).where(events.c.position == 1)).one()._mapping)
    row.update(position=EVENTS + 1, dedupe_key="e" * 64, hash=None)
    with pytest.raises(IntegrityError), logged.begin() as connection:
        connection.execute(events.insert().values(row))
