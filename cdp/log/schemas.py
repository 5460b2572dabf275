"""What the API answers about the log and rejected deliveries."""

from pydantic import BaseModel, ConfigDict

from cdp.http.schemas import Instant, RawJSON


class Event(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    position: int
    event_type: str
    occurred_at: Instant
    received_at: Instant
    chat_uuid: str | None
    profile_uuid: str | None
    source: str
    body: RawJSON
    # The body's personal data was erased: `body` holds only its other fields.
    erased: bool
    # Why the body could not be opened, though not erased (then `body` holds only the
    # fields that are no personal data): its key is missing from the keystore (the wrong
    # keystore, or one restored from before the event), or the sealed copy was changed.
    unreadable: str | None = None
    # Chained over the event before it (cdp verify); None only if the row was tampered with.
    hash: str | None


class Refusal(BaseModel):
    """A delivery refused as bad input, without its body."""

    id: int
    received_at: Instant
    source: str
    status: int
    reason: str
    size: int


class Rejected(Refusal):
    """A delivery refused as bad input: `body` is its text if it is UTF-8, else
    `body_base64` its bytes."""

    headers: dict[str, str]
    body: str | None
    body_base64: str | None


class RejectedPage(BaseModel):
    items: list[Rejected]
    next_after: int | None


class EventPage(BaseModel):
    items: list[Event]
    next_after: int | None
