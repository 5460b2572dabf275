"""The session rules of the conversation fold, on facts built by hand."""

import random
from itertools import count
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cdp.conversations.fold import Fact, Rules, State, fold, place, summarize

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
    from cdp.conversations.fold import FACT_FIELDS, Placement
    from cdp.conversations.tables import timeline

    written = {*FACT_FIELDS, *Placement.__dataclass_fields__, "chat_uuid"}
    assert written == {column.name for column in timeline.columns}


FOLDED_KINDS = ["session_updated"] * 3 + ["message_created"] * 4 + ["operator_replied"] * 3
MOMENTS_APART = [0, 0, 1, 2 * SECOND, 5 * SECOND, 6 * SECOND, HOUR, 25 * HOUR]


@st.composite
def chats(draw: st.DrawFn) -> list[Fact]:
    facts, at = [], 0
    for _ in range(draw(st.integers(1, 40))):
        at += draw(st.sampled_from(MOMENTS_APART))
        kind = draw(st.sampled_from([*FOLDED_KINDS, "message_updated", "chat_rated"]))
        title = draw(st.sampled_from([None, None, "Order", "Refund"]))
        if kind == "session_updated":
            facts.append(session_updated(at, team=draw(st.sampled_from([1, 2, 3])), title=title))
        elif kind == "operator_replied":
            facts.append(reply(at, draw(st.sampled_from(["anna", "boris"]))))
        else:
            facts.append(fact(kind, at, title=title))
    return sorted(facts, key=lambda f: f.order)


@given(facts=chats(), data=st.data())
def test_placing_on_from_the_state_after_any_fact_places_the_rest_as_the_whole_fold_does(
    facts: list[Fact], data: st.DataObject
) -> None:
    """What the chats projector resumes from: a timeline row's placement, and the time of
    the chat's latest known event up to it, are all the fold carries on."""
    whole = place(facts, RULES)
    cut = data.draw(st.integers(0, len(facts) - 1), label="resumed after")
    known = [f.occurred_at for f in facts[: cut + 1] if f.known]
    after = whole[cut].placement
    state = State(
        after.session_number, after.team_id, after.team_name, known[-1] if known else None
    )
    resumed = place(facts[cut + 1 :], RULES, state)
    assert [step.placement for step in resumed] == [step.placement for step in whole[cut + 1 :]]
    assert all(step.turn in (None, whole[cut + 1 + i].turn) for i, step in enumerate(resumed))


@given(facts=chats(), data=st.data())
def test_a_summary_of_a_run_and_of_the_rest_make_up_the_summary_of_the_whole(
    facts: list[Fact], data: st.DataObject
) -> None:
    """Counts add up and the latest event of each sort is the later part's, if it has one:
    what lets a region's summary be swapped into a stored row."""
    steps = place(facts, RULES)
    cut = data.draw(st.integers(0, len(steps)), label="cut")
    whole, first = summarize(steps), summarize(steps[:cut])
    after = steps[cut - 1].placement if cut else None
    start = State(after.session_number, after.team_id, after.team_name) if after else State()
    rest = summarize(steps[cut:], start)
    for number, session in whole.sessions.items():
        parts = [part.sessions[number] for part in (first, rest) if number in part.sessions]
        assert session.messages_in == sum(part.messages_in for part in parts)
        assert session.messages_out == sum(part.messages_out for part in parts)
        assert session.handed_to == [team for part in parts for team in part.handed_to]
        for sort in ("last_known", "last_titled", "last_context", "last_turn_event"):
            latest = [getattr(part, sort) for part in parts if getattr(part, sort) is not None]
            assert getattr(session, sort) is (latest[-1] if latest else None)
    assert whole.handoffs == first.handoffs + rest.handoffs
