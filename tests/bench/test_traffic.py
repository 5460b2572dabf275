"""The benchmark's traffic: seeded, realistic, and every webhook of it accepted."""

import json
from collections import Counter, defaultdict

import pytest
from sqlalchemy import Engine

from cdp.bench.traffic import Traffic, lines, webhooks
from cdp.log import ingest, queries
from cdp.privacy.keystore import MAIN
from cdp.projections import registry
from cdp.settings import Settings
from tests.factories import checked


def test_the_same_traffic_gives_the_same_webhooks_and_another_seed_others() -> None:
    first = list(lines(Traffic(events=500, seed=7)))
    assert first == list(lines(Traffic(events=500, seed=7)))
    assert first != list(lines(Traffic(events=500, seed=8)))


def test_the_traffic_has_the_asked_size_and_the_shares_of_real_traffic() -> None:
    bodies = list(webhooks(Traffic(events=20_000, seed=3)))
    assert len(bodies) == 20_000
    shares = Counter(body["event_type"] for body in bodies)
    assert abs(shares["message_created"] / 20_000 - 0.45) < 0.04
    assert abs(shares["operator_replied"] / 20_000 - 0.35) < 0.04
    assert abs(shares["session_updated"] / 20_000 - 0.15) < 0.03
    assert abs(shares["message_updated"] / 20_000 - 0.05) < 0.02
    sizes = [len(json.dumps(body, ensure_ascii=False).encode()) for body in bodies]
    assert 400 <= sum(sizes) / len(sizes) <= 700


def test_customers_write_from_one_to_three_messengers_and_a_few_chats_are_long() -> None:
    bodies = list(webhooks(Traffic(events=20_000, seed=3, long_chats=0.1)))
    platforms = defaultdict(set)
    for body in bodies:
        platforms[body["payload"]["profile"]["uuid"]].add(body["payload"]["chat"]["platform"])
    assert set(Counter(len(found) for found in platforms.values())) == {1, 2, 3}
    chats = Counter(body["payload"]["chat"]["uuid"] for body in bodies)
    longest = [count for _, count in chats.most_common(3)]
    assert longest[0] >= 990
    assert longest[1] >= 990
    assert longest[2] <= 61


def test_in_time_order_unless_shuffled_and_redeliveries_repeat_bodies() -> None:
    ordered = [body["timestamp"] for body in webhooks(Traffic(events=2000, seed=1))]
    assert ordered == sorted(ordered)
    again = list(lines(Traffic(events=2000, seed=1, redeliveries=0.1)))
    assert 150 <= len(again) - len(set(again)) <= 250
    shuffled = list(lines(Traffic(events=2000, seed=1, redeliveries=0.1, shuffled=True)))
    assert set(shuffled) == set(again) == set(lines(Traffic(events=2000, seed=1)))
    assert len(shuffled) - len(set(shuffled)) == 200
    assert shuffled != sorted(shuffled, key=lambda line: json.loads(line)["timestamp"])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_every_webhook_is_accepted_and_makes_sessions_and_handoffs(
    engine: Engine, seed: int
) -> None:
    bodies = [checked(line) for line in lines(Traffic(events=1500, seed=seed))]
    receipts = ingest.record(engine, bodies, registry.projectors(Settings()), keystore=MAIN)
    assert not any(receipt.duplicate for receipt in receipts)
    with engine.connect() as connection:
        counts = queries.counts(connection)
    assert counts["events"] == 1500
    assert counts["sessions"] > 100
    assert counts["handoffs"] > 10
    assert counts["profiles"] < counts["chats"]
