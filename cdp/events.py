"""The webhook as Fasttrack sends it: parsing, validation and the dedupe key."""

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

SESSION_UPDATED: Final = "session_updated"
MESSAGE_CREATED: Final = "message_created"
OPERATOR_REPLIED: Final = "operator_replied"
MESSAGE_UPDATED: Final = "message_updated"

INT64_MAX: Final = 2**63 - 1
# Up to the end of year 9999, so that every timestamp is also a datetime.
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999


class MalformedBody(ValueError):
    """The body is not a JSON object (HTTP 400)."""


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str


class InvalidWebhook(ValueError):
    """The body is a JSON object but not a valid webhook (HTTP 422)."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("invalid webhook: " + "; ".join(f"{e.path}: {e.message}" for e in errors))


def _team_id(value: object) -> object:
    """Fasttrack documents the id as a number but sends strings of digits too."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"must be an integer or a string of digits, got {value!r}")


TeamId = Annotated[int, BeforeValidator(_team_id), Field(ge=0, le=INT64_MAX)]


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


OptionalText = StrictStr | None
# Identifiers are indexed columns; 200 characters is far above any uuid Fasttrack sends.
Id = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_no_nul)]
OptionalId = Annotated[StrictStr, Field(max_length=200), AfterValidator(_no_nul)] | None


class _Model(BaseModel):
    # Unknown fields are kept: the log stores the body as it came, the models only check it.
    model_config = ConfigDict(extra="allow", frozen=True)


class Chat(_Model):
    uuid: Id
    avatar: OptionalText = None
    platform: OptionalText = None
    phone: OptionalText = None
    name: OptionalText = None


class Profile(_Model):
    uuid: OptionalId = None


class Team(_Model):
    id: TeamId
    name: OptionalText = None


class Operator(_Model):
    uuid: OptionalId = None
    name: OptionalText = None
    avatar: OptionalText = None


class Session(_Model):
    title: OptionalText = None
    context: OptionalText = None
    team: Team | None = None
    operator: Operator | None = None


class SessionWithTeam(Session):
    team: Team


class ChatPayload(_Model):
    """The payload of every known event type."""

    chat: Chat
    profile: Profile | None = None
    session: Session | None = None
    message: dict[str, Any] | None = None


class SessionUpdatedPayload(ChatPayload):
    session: SessionWithTeam


PAYLOADS: Final[dict[str, type[ChatPayload]]] = {
    SESSION_UPDATED: SessionUpdatedPayload,
    MESSAGE_CREATED: ChatPayload,
    OPERATOR_REPLIED: ChatPayload,
    MESSAGE_UPDATED: ChatPayload,
}
KNOWN_TYPES: Final = frozenset(PAYLOADS)


class Envelope(_Model):
    event_type: Id
    payload: dict[str, Any]
    timestamp: Annotated[StrictInt, Field(ge=0, le=MAX_TIMESTAMP_MS)]


@dataclass(frozen=True, slots=True)
class Webhook:
    """A validated webhook. `payload` is typed for known event types, None for others."""

    event_type: str
    timestamp: int
    payload: ChatPayload | None
    chat_uuid: str | None
    profile_uuid: str | None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A webhook body as received, checked, with its dedupe key."""

    body: str
    dedupe_key: str
    webhook: Webhook


def parse(raw: bytes | str) -> Incoming:
    """Check one webhook body; raise MalformedBody or InvalidWebhook naming what is wrong."""
    try:
        body = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as error:
        raise MalformedBody(f"body is not UTF-8: {error}") from None
    try:
        document = json.loads(body, parse_constant=_refuse_constant)
    except ValueError as error:
        raise MalformedBody(f"body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedBody(f"body must be a JSON object, got {_json_type(document)}")
    return Incoming(body=body, dedupe_key=dedupe_key(document), webhook=validate(document))


def reparse(body: str, dedupe_key: str) -> Incoming:
    """A body the log already holds, with the dedupe key it was stored under."""
    return Incoming(body=body, dedupe_key=dedupe_key, webhook=validate(json.loads(body)))


def validate(document: dict[str, Any]) -> Webhook:
    """Check the envelope and, for a known event type, its payload; report every bad field."""
    errors: list[FieldError] = []
    try:
        envelope: Envelope | None = Envelope.model_validate(document)
    except ValidationError as error:
        envelope, errors = None, _field_errors(error)
    event_type, raw_payload = document.get("event_type"), document.get("payload")
    model = PAYLOADS.get(event_type) if isinstance(event_type, str) else None
    payload = None
    if model is not None and isinstance(raw_payload, dict):
        try:
            payload = model.model_validate(raw_payload)
        except ValidationError as error:
            errors += _field_errors(error, prefix="payload")
    if errors or envelope is None:
        raise InvalidWebhook(errors)
    if payload is None:
        return Webhook(
            event_type=envelope.event_type,
            timestamp=envelope.timestamp,
            payload=None,
            chat_uuid=_lenient_uuid(envelope.payload.get("chat")),
            profile_uuid=_lenient_uuid(envelope.payload.get("profile")),
        )
    return Webhook(
        event_type=envelope.event_type,
        timestamp=envelope.timestamp,
        payload=payload,
        chat_uuid=payload.chat.uuid,
        profile_uuid=payload.profile.uuid if payload.profile else None,
    )


def dedupe_key(document: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON: sorted keys, no insignificant whitespace."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _lenient_uuid(value: object) -> str | None:
    """An unknown event type names a chat or profile only if it has a non-empty string uuid."""
    if isinstance(value, dict):
        uuid = value.get("uuid")
        if isinstance(uuid, str) and 0 < len(uuid) <= 200 and "\x00" not in uuid:
            return uuid
    return None


def _field_errors(error: ValidationError, prefix: str | None = None) -> list[FieldError]:
    errors = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in (prefix, *item["loc"]) if part is not None)
        message = item["msg"].removeprefix("Value error, ")
        errors.append(FieldError(path=path or "body", message=message))
    return errors


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _json_type(value: object) -> Literal["array", "string", "number", "boolean", "null"]:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"
