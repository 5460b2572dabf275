"""A real `cdp serve` on the test database, for the tests that need one."""

import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cdp.conversations.tables import chats
from cdp.log import rejected
from cdp.log.tables import rejected as rejected_table
from cdp.privacy.keystore import Keystore
from cdp.profiles import names
from cdp.settings import Settings
from tests.conftest import Server


@pytest.fixture
def serve(database: str, serve_on: Callable[..., Server]) -> Callable[..., Server]:
    """Start `cdp serve` on the test database with the settings given (see serve_on)."""
    return partial(serve_on, database)


def rebuilt(client: Any, **options: Any) -> list[dict[str, Any]]:
    """POST /projections/rebuild (with `options`, e.g. headers) once no build runs (the
    server's own, at start), and wait until it is done: the projections' states then."""
    settled(client, **options)
    answer = client.post("/projections/rebuild", **options)
    assert answer.status_code == 202, answer.text
    found = settled(client, **options)
    assert {state["build"]["state"] for state in found} == {"done"}, found
    return found


def settled(client: Any, **options: Any) -> list[dict[str, Any]]:
    """Wait until no build of a projection runs: the projections' states then."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found: list[dict[str, Any]] = client.get("/projections", **options).json()["items"]
        if all(state["status"] != "rebuilding" for state in found):
            return found
        time.sleep(0.02)
    raise AssertionError("a build of a projection did not end within 60 s")


def name_digests(engine: Engine) -> dict[str, int | None]:
    """What searches look each chat up by its name by (see cdp.profiles.names)."""
    with engine.connect() as connection:
        digests = connection.execute(select(chats.c.uuid, chats.c.name_digest))
        return {uuid: digest for uuid, digest in digests}


def name_digest(name: str) -> int | None:
    """The digest of a chat of this name."""
    return names.digest(names.fold_name(name))


def kept_deliveries(engine: Engine, settings: Settings) -> list[dict[str, Any]]:
    """Every kept (rejected) delivery's row, oldest first, its body opened with the store's
    keys (see cdp.log.rejected)."""
    keystore = Keystore.at(settings.keystore(), key_file=settings.key_path())
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(rejected_table).order_by(rejected_table.c.id)).all()
            bodies = rejected.bodies(connection, keystore, rows)
    finally:
        keystore.dispose()
    return [{**row._asdict(), "body": body} for row, body in zip(rows, bodies, strict=True)]
