"""What the browser tests' store holds: the samples (Анна's Telegram chat), and her second
chat, on WhatsApp with her phone spelled another way, long enough to be read page by page,
handed off from the first line to the second."""

import json
from typing import Any, Final

from tests.factories import samples

PROFILE: Final = "5d2c1e0a-7b7f-4c1e-8d5e-2a9b4f6c8e01"
TELEGRAM: Final = "0b6f7a52-3f8e-4d55-9a0e-6f1f3c2b9d10"
WHATSAPP: Final = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d"
START: Final = 1_778_050_800_000  # 2026-05-06 07:00:00 UTC, 10:00 in Moscow
FIRST_LINE: Final = {"id": 12, "name": "Первая линия"}
SECOND_LINE: Final = {"id": 15, "name": "Вторая линия"}
SVETLANA: Final = {
    "uuid": "7a6b5c4d-3e2f-4a1b-9c0d-8e7f6a5b4c3d",
    "name": "Светлана",
    "avatar": None,
}
IGOR: Final = {"uuid": "1f2e3d4c-5b6a-4789-8a9b-0c1d2e3f4a5b", "name": "Игорь", "avatar": None}
# Customer messages and replies after the handoff: more than a page (50) of the timeline.
EXCHANGES: Final = 35


def _body(event_type: str, at: int, **payload: Any) -> bytes:
    chat = {
        "uuid": WHATSAPP,
        "avatar": None,
        "platform": "WhatsApp",
        "phone": "8 (999) 123-45-67",
        "name": "Анна",
    }
    body = {
        "event_type": event_type,
        "payload": {"chat": chat, "profile": {"uuid": PROFILE}, **payload},
        "timestamp": at,
    }
    return json.dumps(body, ensure_ascii=False).encode()


def _session(team: dict[str, Any], operator: dict[str, Any] | None = None) -> dict[str, Any]:
    session: dict[str, Any] = {"title": None, "context": None, "team": team}
    if operator is not None:
        session |= {"operator": operator, "integration": None}
    return session


def _text(uuid: str, text: str) -> dict[str, Any]:
    return {"uuid": uuid, "type": "text", "text": text}


def _whatsapp() -> list[bytes]:
    at = START
    bodies = [
        _body("session_updated", at, session=_session(FIRST_LINE)),
        _body(
            "message_created",
            at + 40,
            message=_text("wa-1", "Добрый день, не пришёл возврат"),
            session=_session(FIRST_LINE),
        ),
        _body(
            "operator_replied",
            at + 95_000,
            message=_text("wa-2", "Здравствуйте! Передаю коллегам из второй линии."),
            session=_session(FIRST_LINE, SVETLANA),
        ),
        _body("session_updated", at + 120_000, session=_session(SECOND_LINE)),
        _body(
            "operator_replied",
            at + 300_000,
            message=_text("wa-3", "Добрый день, я Игорь, разберусь с возвратом."),
            session=_session(SECOND_LINE, IGOR),
        ),
    ]
    for index in range(EXCHANGES):
        moment = at + 360_000 + index * 60_000
        bodies.append(
            _body(
                "message_created",
                moment,
                message=_text(f"wa-c{index}", f"Вопрос номер {index + 1}"),
            )
        )
        bodies.append(
            _body(
                "operator_replied",
                moment + 20_000,
                message=_text(f"wa-r{index}", f"Ответ номер {index + 1}"),
                session=_session(SECOND_LINE, IGOR),
            )
        )
    return bodies


WEBHOOKS: Final = [*samples(), *_whatsapp()]
TIMELINE_ITEMS: Final = 5 + 2 * EXCHANGES  # of the WhatsApp chat
