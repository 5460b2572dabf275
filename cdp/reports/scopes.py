"""What each event is counted under: the whole store, a source, a team, an operator, a
messenger (the chat's platform the event names), or an operator within a team (the
leaderboard's). A scope is written `kind:value`, so `team:12`, `platform:Telegram`;
the store is `all`."""

from collections.abc import Iterator, Mapping
from typing import Any, Final, Literal, get_args

ALL: Final = "all"
Kind = Literal["source", "team", "operator", "platform"]
KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

# The counts, by when what they count happened (see docs/reports.md).
Counted = Literal[
    "sessions_opened", "customer_messages", "operator_replies", "handoffs_in", "handoffs_out"
]
COUNTED: Final[tuple[Counted, ...]] = get_args(Counted)
# An operator's sessions in a team (kept under team:T/operator:O alone): counted in the
# hour of their first reply in the session while the team was in charge.
OPERATOR_SESSIONS: Final = "operator_sessions"
# The scopes each count is kept under besides the store, sources and messengers.
BY_OPERATOR: Final = frozenset({"operator_replies"})


def of(kind: Kind, value: object) -> str:
    return f"{kind}:{value}"


IN_TEAM: Final = "/operator:"


def of_operator_in_team(team_id: int, operator_uuid: str) -> str:
    """An operator within a team: the leaderboard's scope, whose counts and records are
    kept by the local day (not the hour)."""
    return f"team:{team_id}{IN_TEAM}{operator_uuid}"


def counted(row: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(metric, scope) for each count a placed event adds one to."""
    kind = row["kind"]
    metric = _METRIC_OF.get(kind)
    if metric is None or row["session_number"] is None:  # before the chat's first session
        return
    shared = [ALL, of("source", row["source"])]
    if row["platform"] is not None:
        shared.append(of("platform", row["platform"]))
    if kind == "handoff":
        for scope in shared:
            yield "handoffs_in", scope
            yield "handoffs_out", scope
        yield "handoffs_in", of("team", row["team_id"])
        if row["before_team_id"] is not None:
            yield "handoffs_out", of("team", row["before_team_id"])
        return
    for scope in shared:
        yield metric, scope
    team, operator = row["team_id"], row["operator_uuid"]
    if team is not None:
        yield metric, of("team", team)
    if metric in BY_OPERATOR and operator is not None:
        yield metric, of("operator", operator)
        if team is not None:
            yield metric, of_operator_in_team(team, operator)


_METRIC_OF: Final = {
    "session_opened": "sessions_opened",
    "message_in": "customer_messages",
    "operator_reply": "operator_replies",
    "handoff": "handoffs_in",
}
