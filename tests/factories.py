"""Webhook bodies shaped like Fasttrack's, with only what a test cares about to fill in."""

import json
import time
from pathlib import Path
from typing import Any

from cdp.log.webhook import Incoming, latest_timestamp, parse
from cdp.settings import Settings

SAMPLES = Path(__file__).parents[1] / "cdp" / "samples"
# What every sender of webhooks sends with them (a webhook without it is 415).
JSON_TYPE = {"Content-Type": "application/json"}
# A fixed moment far enough in the past that every session is idle now.
PAST = 1_777_000_000_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def webhook(
    event_type: str,
    *,
    chat: str = "chat-1",
    at: int = PAST,
    profile: str | None = "profile-1",
    team: int | str | None = None,
    team_name: str | None = None,
    operator: str | None = None,
    message: str | None = None,
    title: str | None = None,
    phone: str | None = None,
    name: str | None = None,
    platform: str | None = "Telegram",
    avatar: str | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "chat": {"uuid": chat, "avatar": avatar, "platform": platform, "phone": phone, "name": name}
    }
    if profile is not None:
        payload["profile"] = {"uuid": profile}
    if message is not None:
        payload["message"] = {"uuid": f"m-{message}", "type": "text", "text": message}
    if team is not None or operator is not None or title is not None:
        session: dict[str, Any] = {"title": title, "context": None}
        if team is not None:
            session["team"] = {"id": team, "name": team_name or f"Team {team}"}
        if operator is not None:
            session["operator"] = {"uuid": operator, "name": f"Operator {operator}", "avatar": None}
            session["integration"] = None
        payload["session"] = session
    return {"event_type": event_type, "payload": payload, "timestamp": at}


def opened(
    chat: str = "chat-1", at: int = PAST, team: int = 1, **fields: Any
) -> list[dict[str, Any]]:
    """The documented opening pair: session_updated, then message_created 50 ms later."""
    return [
        webhook("session_updated", chat=chat, at=at, team=team, **fields),
        webhook(
            "message_created",
            chat=chat,
            at=at + 50,
            message=f"hello at {at}",
            **{k: v for k, v in fields.items() if k in ("profile", "phone", "name")},
        ),
    ]


def handoff(chat: str = "chat-1", at: int = PAST, team: int = 2, **fields: Any) -> dict[str, Any]:
    return webhook("session_updated", chat=chat, at=at, team=team, **fields)


def reply(
    chat: str = "chat-1", at: int = PAST, operator: str = "op-1", team: int = 1
) -> dict[str, Any]:
    return webhook(
        "operator_replied", chat=chat, at=at, operator=operator, team=team, message=f"reply {at}"
    )


def line(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def samples() -> list[bytes]:
    return [path.read_bytes() for path in sorted(SAMPLES.glob("*.json"))]


def checked(raw: bytes | str) -> Incoming:
    """A body checked as POST /webhooks/fasttrack checks it, with the default clock skew."""
    return parse(raw, latest=latest_timestamp(Settings().max_clock_skew))
