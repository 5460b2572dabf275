"""cdp erase and the importer: an erased profile's data is gone, a suppressed one refused."""

from sqlalchemy import Engine, delete, select

from cdp.log.tables import events
from cdp.privacy.keystore import Keystore
from cdp.privacy.tables import keys as keys_table
from cdp.settings import Settings
from tests.cli.test_commands import cdp, jsonl
from tests.factories import PAST, opened, webhook


def test_cdp_erase_destroys_the_keys_and_status_counts_it(database: str, engine: Engine) -> None:
    bodies = opened("c1", profile="p1", name="Анна", phone="+79991234567")
    assert cdp(database, "import", "-", stdin=jsonl(*bodies)).exit_code == 0
    erased = cdp(database, "erase", "--profile", "p1")
    assert erased.exit_code == 0, erased.output
    assert "erased profile p1: 1 chats, 1 keys destroyed" in erased.output
    shown = cdp(database, "status").output.splitlines()
    assert {"erased profiles: 1", "webhooks refused as suppressed: 0"} <= set(shown)
    rebuilt = cdp(database, "rebuild")
    assert rebuilt.exit_code == 0, rebuilt.output
    with engine.connect() as connection:
        bodies = connection.scalars(select(events.c.body)).all()
    assert len(bodies) == 2
    assert all("Анна" not in body and "+7999" not in body for body in bodies)


def test_cdp_verify_counts_erased_bodies_and_fails_on_those_it_cannot_open(
    database: str, engine: Engine
) -> None:
    bodies = [*opened("c1", profile="p1", name="Анна"), *opened("c2", profile="p2", name="Борис")]
    assert cdp(database, "import", "-", stdin=jsonl(*bodies)).exit_code == 0
    assert cdp(database, "erase", "--profile", "p1").exit_code == 0
    held = cdp(database, "verify")
    assert held.exit_code == 0, held.output
    assert "bodies: 2 open, 2 erased" in held.output
    keystore = Keystore.at(Settings(database_url=database).keystore())
    with engine.begin() as main, keystore.connect(main, write=True) as keys:
        keys.execute(delete(keys_table).where(keys_table.c.subject == "chat:c2"))
    keystore.dispose()
    lost = cdp(database, "verify")
    assert lost.exit_code == 1
    assert "bodies: 0 open, 2 erased" in lost.output
    assert "2 bodies cannot be opened: their keys are not in the keystore" in lost.output


def test_the_importer_refuses_the_lines_of_a_suppressed_profile(database: str) -> None:
    assert cdp(database, "erase", "--profile", "p1", "--suppress").exit_code == 0
    later = webhook("message_created", chat="c2", profile="p1", at=PAST, message="hi")
    other = webhook("message_created", chat="c3", profile="p2", at=PAST, message="hi")
    result = cdp(database, "import", "-", stdin=jsonl(later, other))
    assert result.exit_code == 1
    assert "accepted: 1, duplicates: 0, rejected: 1" in result.output
    assert "line 1: profile p1 was erased" in result.output
    shown = cdp(database, "status").output.splitlines()
    assert "webhooks refused as suppressed: 1" in shown


def test_cdp_erase_needs_a_profile_or_reconcile(database: str) -> None:
    assert cdp(database, "erase").exit_code == 2
    assert cdp(database, "erase", "--profile", "p", "--reconcile").exit_code == 2
    bad = cdp(database, "erase", "--profile", " p")
    assert bad.exit_code == 1
    assert "whitespace" in bad.output
    done = cdp(database, "erase", "--reconcile")
    assert done.exit_code == 0
    assert "agree on every erasure" in done.output
