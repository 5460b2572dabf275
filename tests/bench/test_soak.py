"""`cdp bench --soak`: one server under mixed traffic, checked whole afterwards; and the
checks find what they look for.

The soak in the suite lasts 30 s on each database: some thousands of requests, among them
hundreds of redeliveries (some while the first delivery is still being answered) and of
queries, and webhooks of the same chat out of order; long enough to run every path of the
writer, short enough for a suite that runs both databases. A longer one is `cdp bench
--soak 600`.
"""

import json
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select

from cdp.bench.soak import account, digest, rebuild_changes
from cdp.cli import main
from cdp.conversations.tables import chats
from cdp.log import ingest
from cdp.log.store import Receipt
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.projections.runner import Projector
from cdp.settings import Settings
from tests.api.test_whatever_the_log_holds import log_directly
from tests.factories import checked, opened


@pytest.mark.slow
def test_a_soak_loses_nothing_stores_nothing_twice_and_leaves_what_a_rebuild_makes(
    server: str,
) -> None:
    result = CliRunner().invoke(main, ["bench", "--soak", "10", "--database", server])

    assert result.exit_code == 0, result.output
    lines = set(result.output.splitlines())
    assert {"errors: none", "lost: 0", "duplicated: 0", "projections equal a rebuild: yes"} <= lines
    mix = re.search(r"new webhooks ([\d,]+), sent again ([\d,]+), queries ([\d,]+)", result.output)
    assert mix is not None, result.output
    assert all(int(count.replace(",", "")) >= 100 for count in mix.groups()), result.output


def test_a_projection_changed_behind_the_projectors_back_is_found_and_left_alone(
    engine: Engine,
) -> None:
    ingest.record(
        engine, [checked(json.dumps(body)) for body in opened("c")], projectors(), keystore=MAIN
    )
    assert rebuild_changes(engine, projectors(), MAIN) == []
    with engine.begin() as connection:
        connection.execute(chats.update().values(name=b"changed"))

    assert rebuild_changes(engine, projectors(), MAIN) == ["chats"]
    with engine.connect() as connection:
        assert connection.scalar(select(chats.c.name)) == b"changed"


def test_the_accounting_counts_a_webhook_missing_and_each_one_stored_twice(
    engine: Engine,
) -> None:
    first, second = (json.dumps(body).encode() for body in opened("c"))
    ingest.record(engine, [checked(first), checked(second)], projectors(), keystore=MAIN)
    log_directly(engine, {"the first again": first.decode()}, MAIN)  # at 3, around cdp
    answered = {
        digest(first): [Receipt(1, duplicate=False), Receipt(1, duplicate=True)],
        digest(second): [Receipt(2, duplicate=False), Receipt(2, duplicate=False)],  # new twice
        digest(b"{}"): [Receipt(4, duplicate=False)],  # never logged
    }

    assert account(engine, answered, MAIN) == (1, 2)


def projectors() -> list[Projector]:
    return registry.projectors(Settings())
