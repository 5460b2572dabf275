"""cdp migrate over a log written by an older version: the keys come from the keystore,
the projections are rebuilt when the order of events changed, and a migration that cannot
run says why and changes nothing."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from cdp import upgrades
from cdp.conversations.tables import timeline
from cdp.log import store
from cdp.log.tables import events
from cdp.privacy.keystore import Keystore
from cdp.projections.runner import key_lookup
from tests.cli.test_commands import cdp
from tests.conftest import empty
from tests.factories import PAST, opened, reply
from tests.integration.test_chain import tampering
from tests.integration.test_migrations import as_0008_logged_them

BODIES = [
    json.dumps(body, ensure_ascii=False)
    for body in [*opened("c1", profile="p1", name="Анна", phone="+79991234567"), reply("c1")]
]


@pytest.fixture(autouse=True)
def back_at_head(database: str, engine: Engine) -> Iterator[None]:
    """PostgreSQL's database is shared by the whole run: leave it emptied, at the head."""
    yield
    if engine.dialect.name == "postgresql":
        empty(database)
        upgrades.upgrade(engine)


def test_migrate_opens_the_bodies_with_the_keystore_s_keys_and_rebuilds(
    database: str, engine: Engine, tmp_path: Path
) -> None:
    keystore_url = f"sqlite:///{tmp_path / 'keys.db'}"
    as_0008_logged_them(engine, BODIES)
    keystore = Keystore.at(keystore_url)
    with engine.begin() as connection:
        assert keystore.adopt(connection) > 0  # the keys are in the keystore alone now
    result = cdp(database, "migrate", CDP_KEYSTORE_URL=keystore_url)
    assert result.exit_code == 0, result.output
    assert f"rebuilt up to position {len(BODIES)}" in result.output
    with engine.connect() as connection:
        rows = store.read(connection)
        assert [body for body, _ in store.bodies(rows, key_lookup(connection, keystore))] == BODIES
        assert connection.scalar(select(func.count()).select_from(timeline)) == len(BODIES)
    keystore.dispose()


def test_migrate_without_the_keystore_stops_and_changes_nothing(
    database: str, engine: Engine, tmp_path: Path
) -> None:
    as_0008_logged_them(engine, BODIES)
    keystore = Keystore.at(f"sqlite:///{tmp_path / 'keys.db'}")
    with engine.begin() as connection:
        keystore.adopt(connection)
    keystore.dispose()
    with engine.connect() as connection:
        before = connection.execute(select(events)).all()
    result = cdp(database, "migrate")  # the keystore's URL forgotten
    assert result.exit_code == 1
    assert "the schema was not upgraded" in result.output
    assert "CDP_KEYSTORE_URL" in result.output
    assert upgrades.pending(engine)[0] == "0008"
    with engine.connect() as connection:
        assert connection.execute(select(events)).all() == before


def test_migrate_does_not_chain_anew_over_a_log_tampered_with(
    database: str, engine: Engine
) -> None:
    as_0008_logged_them(engine, [*BODIES, json.dumps(reply("c1", at=PAST + 9000))])
    with tampering(engine) as connection:
        connection.execute(events.delete().where(events.c.position == 2))
    result = cdp(database, "migrate")
    assert result.exit_code == 1
    assert "hash chain breaks at position 3" in result.output


def test_a_migration_s_own_refusal_reaches_its_caller_as_schema_refused(engine: Engine) -> None:
    """A migration imports nothing of cdp: it refuses with an exception of its own, which
    migrations/env.py hands on as upgrades.UpgradeRefused, what `cdp migrate` reports."""
    as_0008_logged_them(engine, [*BODIES, json.dumps(reply("c1", at=PAST + 9000))])
    with tampering(engine) as connection:
        connection.execute(events.delete().where(events.c.position == 2))
    with pytest.raises(upgrades.UpgradeRefused, match="hash chain breaks at position 3") as refused:
        upgrades.upgrade(engine)
    assert type(refused.value) is upgrades.UpgradeRefused
    assert getattr(refused.value.__cause__, "migration_refused", None) is True
    assert upgrades.pending(engine)[0] == "0008"
