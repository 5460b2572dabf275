"""What the API answers: read models as pydantic schemas, times as UTC datetimes."""

import json
from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, PlainSerializer

from cdp.times import iso

T = TypeVar("T")


SessionState = Literal["open", "idle"]


Kind = Literal[
    "session_opened",
    "handoff",
    "session_updated",
    "message_in",
    "operator_reply",
    "message_updated",
    "other",
]


Instant = Annotated[datetime, PlainSerializer(iso, return_type=str)]


class RawJSON:
    """JSON text answered as it is, never parsed again: a logged body, however deep."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawJSON) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"RawJSON({self.text!r})"

    @classmethod
    def of(cls, text: str) -> "RawJSON":
        """`text`, if it is JSON; text that is not (only ever written around cdp) as a string."""
        try:
            json.loads(text, parse_constant=_not_json)
        except (ValueError, RecursionError):
            return cls(json.dumps(text))
        return cls(text)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class Items(BaseModel, Generic[T]):
    items: list[T]


class Page(BaseModel, Generic[T]):
    """One page of a list; ask again with `after=<next>` until `next` is null."""

    items: list[T]
    next: str | None


class Health(BaseModel):
    status: Literal["ok"]
    database: str
    # Where the keys that seal personal data are: `main` (the main database), or the kind
    # of a database of their own (`sqlite`, `postgresql`).
    keystore: str
    head: int


class FieldError(BaseModel):
    path: str
    message: str


class Problem(BaseModel):
    detail: str
    errors: list[FieldError] | None = None
