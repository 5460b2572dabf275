"""Seeded, realistic Fasttrack traffic for the benchmark.

Customers (profiles) write from one to three messengers (chats). Each conversation is a
run of sessions: a session opens with the documented pair (session_updated, then the
customer's message_created a moment later), goes on with customer messages and operator
replies (text, image, document), is sometimes handed off between about five teams, and
sometimes has a delivery fail (message_updated): about 45% customer messages, 35% replies,
15% session events and 5% updates. Sessions are a day or more apart (hours in the few long
chats of thousands of events). Texts are Russian; bodies are about 500 bytes.

The same `Traffic` always gives the same webhooks, in time order unless `shuffled`; only a
shuffled one is held in memory whole.
"""

import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

PLATFORMS: Final = ("Telegram", "WhatsApp", "VK", "Viber", "Instagram", "OK", "Widget")
TEAMS: Final = {
    12: "Первая линия",
    14: "Доставка",
    17: "Оплата и счета",
    21: "Возвраты",
    30: "VIP-поддержка",
}
FIRST_NAMES: Final = ("Анна", "Дмитрий", "Елена", "Игорь", "Мария", "Сергей", "Ольга", "Павел")
SURNAMES: Final = ("Иванова", "Смирнов", "Кузнецова", "Попов", "Васильева", "Соколов")
OPERATORS: Final = tuple(
    (f"7a6b5c4d-0000-4000-8000-{n:012x}", name)
    for n, name in enumerate(("Светлана", "Артём", "Наталья", "Кирилл", "Юлия", "Роман"))
)
CUSTOMER_TEXTS: Final = (
    "Здравствуйте! Где мой заказ? Обещали доставить ещё вчера, а статус не меняется.",
    "Подскажите, пожалуйста, можно ли изменить адрес доставки на пункт выдачи рядом с домом?",
    "Оплатил картой, деньги списались, а заказ всё ещё висит как неоплаченный. Что делать?",
    "Хочу вернуть товар, он не подошёл по размеру. Как оформить возврат и сколько это займёт?",
    "Спасибо за помощь! Ещё вопрос: когда придёт чек на почту, которую я указывал при заказе?",
    "Курьер не смог дозвониться, перенесите, пожалуйста, доставку на завтра после шести вечера.",
)
OPERATOR_TEXTS: Final = (
    "Добрый день! Проверяю информацию по вашему заказу, это займёт пару минут.",
    "Заказ передан в службу доставки, курьер свяжется с вами сегодня до конца дня.",
    "Возврат оформлен, деньги поступят на карту в течение пяти рабочих дней.",
    "Адрес доставки изменён, новый пункт выдачи указан в приложении к заказу.",
    "Платёж нашёлся, статус заказа обновлён. Приносим извинения за неудобства.",
)
ATTACHMENTS: Final = (
    ("image", "photo-of-receipt.jpg"),
    ("image", "damaged-box.png"),
    ("document", "invoice-1042.pdf"),
    ("document", "return-form.pdf"),
)
START_MS: Final = 1_748_736_000_000  # 2025-06-01T00:00:00Z
DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
# What follows in a session after its opening pair. Ten events a session on average, so
# that openings and handoffs are about 15% of all events.
NEXT_EVENT: Final = ("message_created", "operator_replied", "message_updated", "handoff", "end")
NEXT_WEIGHT: Final = (0.40, 0.38, 0.06, 0.06, 0.10)


@dataclass(frozen=True)
class Traffic:
    """What to generate: how many webhooks, from which seed, and how they arrive."""

    events: int = 10_000
    seed: int = 1
    redeliveries: float = 0.0  # the share of webhooks delivered a second time
    shuffled: bool = False  # delivered in random order rather than time order
    long_chats: float = 0.05  # the share of events in a few chats of thousands of events
    long_chat_events: int = 1_000


def webhooks(traffic: Traffic) -> Iterator[dict[str, Any]]:
    """The traffic's webhooks as JSON-ready dicts: `traffic.events`, plus redeliveries."""
    original = _in_time_order(traffic, random.Random(traffic.seed))
    # How they arrive has a generator of its own: the same webhooks, however delivered.
    chosen = random.Random(f"{traffic.seed} delivery")
    if traffic.shuffled:
        bodies = list(original)
        bodies += chosen.sample(bodies, round(len(bodies) * traffic.redeliveries))
        chosen.shuffle(bodies)
        yield from bodies
        return
    due: list[tuple[int, int, dict[str, Any]]] = []  # redeliveries: (due after, order, body)
    for index, body in enumerate(original):
        yield body
        if chosen.random() < traffic.redeliveries:  # soon after the original
            heapq.heappush(due, (index + chosen.randint(1, 50), index, body))
        while due and due[0][0] <= index:
            yield heapq.heappop(due)[2]
    while due:
        yield heapq.heappop(due)[2]


def lines(traffic: Traffic) -> Iterator[bytes]:
    """The webhooks as JSON lines, as `cdp import` reads them."""
    for body in webhooks(traffic):
        yield json.dumps(body, ensure_ascii=False).encode() + b"\n"


def _in_time_order(traffic: Traffic, chosen: random.Random) -> Iterator[dict[str, Any]]:
    """Conversations interleaved by time: each one a generator, merged on the clock."""
    long_chats = round(traffic.events * traffic.long_chats / traffic.long_chat_events)
    budgets = [traffic.long_chat_events] * long_chats
    total = sum(budgets)
    while total < traffic.events:
        budgets.append(chosen.randint(4, 60))
        total += budgets[-1]
    budgets.reverse()  # popped from the end: the long chats first
    conversations: list[Iterator[tuple[int, dict[str, Any]]]] = []
    customers = _customers(chosen)
    while budgets:
        customer = next(customers)
        for chat in customer["chats"][: len(budgets)]:
            long = len(conversations) < long_chats
            gap = (2 * HOUR_MS, 12 * HOUR_MS) if long else (DAY_MS, 3 * DAY_MS)
            conversations.append(_conversation(customer, chat, budgets.pop(), gap, chosen))
    merged = heapq.merge(*conversations, key=lambda item: item[0])
    for count, (_, body) in enumerate(merged):
        if count >= traffic.events:
            return
        yield body


def _customers(chosen: random.Random) -> Iterator[dict[str, Any]]:
    number = 0
    while True:
        number += 1
        name = f"{chosen.choice(FIRST_NAMES)} {chosen.choice(SURNAMES)}"
        phone = f"+7999{chosen.randrange(10**7):07d}"
        platforms = chosen.sample(PLATFORMS, chosen.choice((1, 1, 1, 2, 2, 3)))
        yield {
            "profile": _uuid(chosen),
            "chats": [
                {
                    "uuid": _uuid(chosen),
                    "avatar": f"https://cdn.example.com/avatars/{number}-{n}.jpg"
                    if chosen.random() < 0.6
                    else None,
                    "platform": platform,
                    "phone": _spelled(phone, chosen) if chosen.random() < 0.8 else None,
                    "name": name,
                }
                for n, platform in enumerate(platforms)
            ],
        }


def _conversation(
    customer: dict[str, Any],
    chat: dict[str, Any],
    budget: int,
    gap: tuple[int, int],
    chosen: random.Random,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """One chat's webhooks, in time order, until `budget` is spent; `gap` between sessions."""
    at = START_MS + chosen.randrange(30 * DAY_MS)
    left = budget
    while left > 0:
        team = chosen.choice(list(TEAMS))
        title = chosen.choice((None, "Заказ", "Возврат", "Оплата", "Доставка"))
        session = {"title": title, "context": None, "team": _team(team)}
        yield at, _body("session_updated", customer, chat, at, session=session)
        at += chosen.randint(20, 900)
        yield at, _body("message_created", customer, chat, at, message=_text(chosen, True))
        left -= 2
        operator = None
        while left > 0:
            at += chosen.randint(5_000, 600_000)
            kind = chosen.choices(NEXT_EVENT, NEXT_WEIGHT)[0]
            if kind == "end":
                break
            left -= 1
            if kind == "handoff":
                team = chosen.choice([other for other in TEAMS if other != team])
                session = {"title": title, "context": None, "team": _team(team)}
                yield at, _body("session_updated", customer, chat, at, session=session)
                operator = None
            elif kind == "operator_replied":
                operator = operator or chosen.choice(OPERATORS)
                replying = {
                    "title": title,
                    "context": None,
                    "team": _team(team),
                    "operator": {"uuid": operator[0], "name": operator[1], "avatar": None},
                    "integration": None,
                }
                message = _text(chosen, False)
                yield at, _body("operator_replied", customer, chat, at, replying, message)
            elif kind == "message_updated":
                failed = {**_text(chosen, False), "status": "error"}
                failed["error"] = "message was not delivered"
                yield at, _body("message_updated", customer, chat, at, message=failed)
            else:
                yield at, _body("message_created", customer, chat, at, message=_text(chosen, True))
        at += chosen.randint(*gap)


def _body(
    event_type: str,
    customer: dict[str, Any],
    chat: dict[str, Any],
    at: int,
    session: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"chat": chat, "profile": {"uuid": customer["profile"]}}
    if session is not None:
        payload["session"] = session
    if message is not None:
        payload["message"] = message
    return {"event_type": event_type, "payload": payload, "timestamp": at}


def _text(chosen: random.Random, customer: bool) -> dict[str, Any]:
    message: dict[str, Any] = {"uuid": _uuid(chosen), "type": "text"}
    if not customer and chosen.random() < 0.2:
        kind, name = chosen.choice(ATTACHMENTS)
        message.update(type=kind, url=f"https://files.example.com/{name}", name=name)
    else:
        message["text"] = chosen.choice(CUSTOMER_TEXTS if customer else OPERATOR_TEXTS)
    return message


def _team(team: int) -> dict[str, Any]:
    # Fasttrack documents the id as a number and sends it as a string too.
    return {"id": str(team) if team % 2 else team, "name": TEAMS[team]}


def _spelled(phone: str, chosen: random.Random) -> str:
    """The same number the ways people write it: +79991234567, 89991234567, 8 999 123-45-67."""
    digits = phone[2:]
    return chosen.choice(
        (phone, f"8{digits}", f"8 {digits[:3]} {digits[3:6]}-{digits[6:8]}-{digits[8:]}")
    )


def _uuid(chosen: random.Random) -> str:
    value = chosen.getrandbits(128)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:]}"
