"""The session rules of the conversation fold, on facts built by hand."""

import random
from itertools import count
from typing import Any

from cdp.projectors.conversation import Fact, Rules, fold

RULES = Rules(idle_timeout_ms=24 * 3600 * 1000, open_window_ms=5000)
SECOND, HOUR = 1000, 3600 * 1000
_positions = count(1)


def fact(event_type: str, at: int, **fields: Any) -> Fact:
    position = next(_positions)
    return Fact(
        position=position,
        occurred_at=at,
        rank=0 if event_type == "session_updated" else 1,
        dedupe_key=f"{position:064d}",
        event_type=event_type,
        **fields,
    )


def session_updated(at: int, team: int, **fields: Any) -> Fact:
    return fact("session_updated", at, event_team_id=team, event_team_name=f"T{team}", **fields)


def message(at: int, **fields: Any) -> Fact:
    return fact("message_created", at, **fields)


def reply(at: int, operator: str) -> Fact:
    return fact("operator_replied", at, operator_uuid=operator, operator_name=operator.title())


def kinds(facts: list[Fact]) -> list[tuple[str, int | None]]:
    conversation = fold("c", facts, RULES)
    ordered = sorted(facts, key=lambda f: f.order)
    return [
        (
            conversation.placements[f.position].kind,
            conversation.placements[f.position].session_number,
        )
        for f in ordered
    ]


def test_the_first_session_updated_of_a_chat_opens_session_one() -> None:
    assert kinds([session_updated(0, team=1)]) == [("session_opened", 1)]


def test_events_before_the_first_session_belong_to_no_session() -> None:
    assert kinds([message(0), session_updated(HOUR, team=1)]) == [
        ("message_in", None),
        ("session_opened", 1),
    ]


def test_a_session_updated_with_another_team_inside_a_session_is_a_handoff() -> None:
    facts = [session_updated(0, team=1), message(100), session_updated(HOUR, team=2)]
    conversation = fold("c", facts, RULES)
    assert kinds(facts)[-1] == ("handoff", 1)
    (handoff,) = conversation.handoffs
    assert (handoff.from_team_id, handoff.to_team_id, handoff.at) == (1, 2, HOUR)
    assert conversation.sessions[0].teams == [1, 2]


def test_a_session_updated_with_the_same_team_is_an_update() -> None:
    facts = [
        session_updated(0, team=1),
        message(100),
        session_updated(HOUR, team=1, title="Refund"),
    ]
    conversation = fold("c", facts, RULES)
    assert kinds(facts)[-1] == ("session_updated", 1)
    assert conversation.handoffs == []
    assert conversation.sessions[0].title == "Refund"


def test_the_opening_pair_opens_a_new_session_even_inside_an_active_one() -> None:
    facts = [
        session_updated(0, team=1),
        message(100),
        session_updated(HOUR, team=2),
        message(HOUR + 3 * SECOND),
    ]
    assert kinds(facts)[2:] == [("session_opened", 2), ("message_in", 2)]
    assert fold("c", facts, RULES).handoffs == []


def test_a_message_outside_the_open_window_does_not_make_an_opening_pair() -> None:
    facts = [
        session_updated(0, team=1),
        message(100),
        session_updated(HOUR, team=2),
        message(HOUR + 6 * SECOND),
    ]
    assert kinds(facts)[2:] == [("handoff", 1), ("message_in", 1)]


def test_another_session_updated_between_breaks_the_opening_pair() -> None:
    facts = [
        session_updated(0, team=1),
        message(100),
        session_updated(HOUR, team=2),
        session_updated(HOUR + SECOND, team=3),
        message(HOUR + 2 * SECOND),
    ]
    assert [kind for kind, _ in kinds(facts)[2:]] == ["handoff", "session_opened", "message_in"]


def test_a_session_updated_after_the_idle_timeout_opens_a_new_session() -> None:
    facts = [session_updated(0, team=1), message(100), session_updated(100 + 24 * HOUR, team=1)]
    assert kinds(facts)[-1] == ("session_opened", 2)


def test_a_session_updated_just_before_the_idle_timeout_continues_the_session() -> None:
    facts = [session_updated(0, team=1), message(100), session_updated(99 + 24 * HOUR, team=1)]
    assert kinds(facts)[-1] == ("session_updated", 1)


def test_a_message_after_a_long_silence_still_belongs_to_the_latest_session() -> None:
    facts = [session_updated(0, team=1), message(48 * HOUR)]
    assert kinds(facts)[-1] == ("message_in", 1)


def test_the_operator_is_the_last_replier_after_the_last_handoff() -> None:
    base = [session_updated(0, team=1), message(100), reply(200, "anna")]
    assert fold("c", base, RULES).session.operator.uuid == "anna"  # type: ignore[union-attr]
    handed = [*base, session_updated(HOUR, team=2)]
    assert fold("c", handed, RULES).session.operator is None  # type: ignore[union-attr]
    replied = [*handed, reply(HOUR + 100, "boris")]
    assert fold("c", replied, RULES).session.operator.uuid == "boris"  # type: ignore[union-attr]


def test_a_same_team_update_keeps_the_operator() -> None:
    facts = [
        session_updated(0, team=1),
        message(100),
        reply(200, "anna"),
        session_updated(HOUR, team=1),
    ]
    assert fold("c", facts, RULES).session.operator.uuid == "anna"  # type: ignore[union-attr]


def test_sessions_count_messages_in_and_out() -> None:
    facts = [
        session_updated(0, team=1),
        message(100),
        reply(200, "anna"),
        message(300),
        reply(400, "anna"),
    ]
    session = fold("c", facts, RULES).sessions[0]
    assert (session.messages_in, session.messages_out, session.last_activity_at) == (2, 2, 400)


def test_chat_attributes_are_the_latest_non_null_values_in_time_order() -> None:
    facts = [
        message(300, phone=None, name="Ann"),
        message(100, phone="+79990000001", name="Anna", profile_uuid="p1"),
        message(200, phone="+79990000002", platform="WhatsApp", profile_uuid="p2"),
    ]
    chat = fold("c", facts, RULES).chat
    assert chat is not None
    assert (chat.phone, chat.name, chat.platform, chat.profile_uuid) == (
        "+79990000002",
        "Ann",
        "WhatsApp",
        "p2",
    )
    assert (chat.first_seen_at, chat.last_seen_at) == (100, 300)


def test_events_of_an_unknown_type_neither_count_as_activity_nor_open_sessions() -> None:
    facts = [
        session_updated(0, team=1),
        fact("chat_rated", 23 * HOUR),
        session_updated(25 * HOUR, team=1),
    ]
    conversation = fold("c", facts, RULES)
    assert kinds(facts) == [("session_opened", 1), ("other", 1), ("session_opened", 2)]
    assert conversation.sessions[0].last_activity_at == 0
    assert conversation.chat is not None
    assert conversation.chat.last_seen_at == 25 * HOUR


def test_a_chat_named_only_by_unknown_events_has_no_state() -> None:
    assert fold("c", [fact("chat_rated", 0)], RULES).chat is None


def test_an_opening_pair_sharing_a_millisecond_opens_whatever_the_delivery_order() -> None:
    pair = [message(HOUR), session_updated(HOUR, team=2)]
    facts = [session_updated(0, team=1), message(100), *pair]
    assert kinds(facts)[2:] == [("session_opened", 2), ("message_in", 2)]


def test_the_fold_does_not_depend_on_the_order_of_its_input() -> None:
    facts = [
        session_updated(0, team=1),
        message(50),
        reply(1000, "anna"),
        session_updated(HOUR, team=2),
        message(HOUR),
        session_updated(HOUR, team=3),
        reply(2 * HOUR, "boris"),
        fact("message_updated", 2 * HOUR),
        session_updated(30 * HOUR, team=3),
        message(30 * HOUR + 4999),
    ]
    expected = fold("c", facts, RULES)
    shuffler = random.Random(7)
    for _ in range(20):
        shuffled = facts[:]
        shuffler.shuffle(shuffled)
        assert fold("c", shuffled, RULES) == expected


def test_a_timeline_row_is_a_fact_where_it_falls_and_its_chat_nothing_more_or_less() -> None:
    from cdp.models import timeline
    from cdp.projectors.conversation import FACT_FIELDS, Placement

    written = {*FACT_FIELDS, *Placement.__dataclass_fields__, "chat_uuid"}
    assert written == {column.name for column in timeline.columns}
