"""The webhook as Fasttrack sends it: parsing, validation and the fingerprint of its body.

What arrives is checked strictly (`parse`); what the log already holds is read leniently
(`logged`), since a logged event is a fact whatever today's checks would say of it.
"""

import hashlib
import json
import math
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Final, Literal, NotRequired

import msgspec
from pydantic import (
    AfterValidator,
    BeforeValidator,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
)
from typing_extensions import TypedDict

from cdp.times import iso, now_ms, utc

SESSION_UPDATED: Final = "session_updated"
MESSAGE_CREATED: Final = "message_created"
OPERATOR_REPLIED: Final = "operator_replied"
MESSAGE_UPDATED: Final = "message_updated"
KNOWN_TYPES: Final = frozenset(
    (SESSION_UPDATED, MESSAGE_CREATED, OPERATOR_REPLIED, MESSAGE_UPDATED)
)

# Where a webhook came from when the store has a single source (and before sources existed).
DEFAULT_SOURCE: Final = "default"
INT64_MAX: Final = 2**63 - 1
# Timestamps are milliseconds; anything before 2000 is a mistake, most often seconds.
EARLIEST_TIMESTAMP_MS: Final = 946_684_800_000
# Far above any real webhook (about 5 levels), far below what parsing recursively risks.
MAX_DEPTH: Final = 64
# How deep a body the log already holds may be and still be read (older logs took any depth).
MAX_LOGGED_DEPTH: Final = 512
MAX_ID_LENGTH: Final = 200
# Far above anything Fasttrack sends: a message text, a name, a link; a body's keys.
MAX_STRING_BYTES: Final = 64 * 1024
MAX_KEYS: Final = 10_000


class Rejection(ValueError):
    """A delivery refused as bad input; `status` is its HTTP answer, `event_type` the type
    its body names (None when it names none, or was not read that far)."""

    status: ClassVar[int]
    event_type: str | None = None


class MalformedBody(Rejection):
    """The body is not a JSON object (HTTP 400)."""

    status = 400


class BodyTooLarge(Rejection):
    """The body is larger than the server takes (HTTP 413); `kept` is what was read of it."""

    status = 413

    def __init__(self, limit: int, kept: bytes = b"") -> None:
        self.limit, self.kept = limit, kept
        super().__init__(f"the body is larger than {limit} bytes (CDP_MAX_BODY_SIZE)")


class NotJSON(Rejection):
    """The request says its body is something other than JSON (HTTP 415)."""

    status = 415

    def __init__(self, content_type: str | None) -> None:
        if content_type is None:
            super().__init__("the request has no Content-Type: send application/json")
        else:
            super().__init__(
                f"Content-Type {content_type[:100]!r} is not JSON: send application/json"
            )


def content_type_problem(content_type: str | None) -> NotJSON | None:
    """A webhook is JSON: application/json or application/*+json, in UTF-8 if a charset is
    named. No header is no JSON: it is what a web page's fetch of a Blob sends, and a page
    may make a browser send that anywhere, while JSON needs the server's consent (CORS)."""
    if content_type is None:
        return NotJSON(None)
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        return NotJSON(content_type)
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            return NotJSON(content_type)
    return None


@dataclass(frozen=True)
class FieldError:
    path: str
    message: str


class InvalidWebhook(Rejection):
    """The body is a JSON object but not a valid webhook (HTTP 422)."""

    status = 422

    def __init__(self, errors: list[FieldError], event_type: str | None = None) -> None:
        self.errors, self.event_type = errors, event_type
        super().__init__("invalid webhook: " + "; ".join(f"{e.path}: {e.message}" for e in errors))


class Suppressed(Rejection):
    """The webhook names a customer erased and suppressed on request (HTTP 410): it is
    kept as a rejected delivery without its personal data, never logged."""

    status = 410

    def __init__(self, profile_uuid: str) -> None:
        self.profile_uuid = profile_uuid
        super().__init__(
            f"profile {profile_uuid} was erased and its webhooks are refused (cdp erase --suppress)"
        )


class Foreign(Rejection):
    """The webhook names a chat or profile that another source's webhooks named first
    (HTTP 409): a source may not write into another's customers."""

    status = 409

    def __init__(self, subject: str) -> None:
        kind, _, uuid = subject.partition(":")
        self.subject = subject
        super().__init__(f"{kind} {uuid} belongs to another source")


def team_id(value: object) -> int | None:
    """Fasttrack documents the id as a number but sends strings of digits too; None if neither."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        return None
    return value if 0 <= value <= INT64_MAX else None


def _team_id(value: object) -> int:
    parsed = team_id(value)
    if parsed is None:
        raise ValueError(f"must be an integer or a string of digits (up to 2^63-1), got {value!r}")
    return parsed


def identifier_problem(value: str) -> str | None:
    """Why `value` cannot be an identifier (look-alike ids make look-alike chats), or None."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_ID_LENGTH:
        return f"must be at most {MAX_ID_LENGTH} characters, got {len(value)}"
    if value.strip() != value:
        return f"must not begin or end with whitespace, got {value!r}"
    if not (value.isascii() and value.isprintable()):
        for character in value:
            category = unicodedata.category(character)
            if (
                category[0] == "C"
                or category in ("Zl", "Zp")
                or (category == "Zs" and character != " ")
            ):
                name = unicodedata.name(character, "a control character")
                return f"must not contain U+{ord(character):04X} ({name}), got {value!r}"
    return None


def identifier(value: object) -> str | None:
    """`value` if it is a valid identifier, else None: how a logged body's ids are read."""
    return value if isinstance(value, str) and identifier_problem(value) is None else None


def segment_problem(value: str) -> str | None:
    """Why `value`, a valid identifier, cannot name a chat, profile or operator, or None.

    Their ids are path segments (/chats/{uuid}, /profiles/{uuid}, /operators/{uuid}): the
    server routes on the decoded path, where an encoded "/" splits the segment in two, and
    clients resolve "." and ".." (encoded or not) before a request is sent. Such an id
    could be logged but never read, erased or linked to: it is refused instead."""
    if "/" in value:
        return f"must not contain '/': the API could not reach it as a path segment, got {value!r}"
    if value in (".", ".."):
        return f"must not be {value!r}: clients resolve it in a path, the API could not reach it"
    return None


def _identifier(value: str) -> str:
    problem = identifier_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _segment(value: str) -> str:
    problem = segment_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


TeamId = Annotated[int, BeforeValidator(_team_id)]
OptionalText = StrictStr | None
Id = Annotated[StrictStr, AfterValidator(_identifier)]
# A chat's, profile's or operator's id: a path segment of the API too.
SegmentId = Annotated[Id, AfterValidator(_segment)]
# An optional id may be empty: Fasttrack's way, perhaps, of saying there is none.
OptionalId = Annotated[SegmentId | None, BeforeValidator(_empty_is_none)]


# TypedDicts, not models: validating into a model instance took three quarters of the
# time. Unknown fields are accepted: the log stores the body as it came, these only check it.
class Chat(TypedDict):
    uuid: SegmentId
    avatar: NotRequired[OptionalText]
    platform: NotRequired[OptionalText]
    phone: NotRequired[OptionalText]
    name: NotRequired[OptionalText]


class Profile(TypedDict):
    uuid: NotRequired[OptionalId]


class Team(TypedDict):
    id: TeamId
    name: NotRequired[OptionalText]


class Operator(TypedDict):
    uuid: NotRequired[OptionalId]
    name: NotRequired[OptionalText]
    avatar: NotRequired[OptionalText]


class Session(TypedDict):
    title: NotRequired[OptionalText]
    context: NotRequired[OptionalText]
    team: NotRequired[Team | None]
    operator: NotRequired[Operator | None]


class SessionWithTeam(Session):
    team: Team  # type: ignore[misc]


class ChatPayload(TypedDict):
    """The payload of every known event type."""

    chat: Chat
    profile: NotRequired[Profile | None]
    session: NotRequired[Session | None]
    message: NotRequired[dict[str, Any] | None]


class SessionUpdatedPayload(ChatPayload):
    session: SessionWithTeam  # type: ignore[misc]


def _in_range(value: int, info: ValidationInfo) -> int:
    if value < EARLIEST_TIMESTAMP_MS:
        hint = " (it looks like seconds)" if value >= EARLIEST_TIMESTAMP_MS // 1000 else ""
        raise ValueError(
            f"{value} is before 2000-01-01{hint}: timestamp is milliseconds since the epoch"
        )
    assert info.context is not None
    latest: int = info.context["latest"]
    if value > latest:
        raise ValueError(
            f"{value} ({iso(utc(value))}) is further ahead of the server's clock than "
            f"CDP_MAX_CLOCK_SKEW allows (latest accepted now: {iso(utc(latest))})"
        )
    return value


class Envelope(TypedDict):
    event_type: Id
    payload: dict[str, Any]
    timestamp: Annotated[StrictInt, AfterValidator(_in_range)]


ENVELOPE: Final = TypeAdapter(Envelope)
CHAT_PAYLOAD: Final = TypeAdapter(ChatPayload)
SESSION_UPDATED_PAYLOAD: Final = TypeAdapter(SessionUpdatedPayload)
PAYLOADS: Final[dict[str, TypeAdapter[Any]]] = {
    SESSION_UPDATED: SESSION_UPDATED_PAYLOAD,
    MESSAGE_CREATED: CHAT_PAYLOAD,
    OPERATOR_REPLIED: CHAT_PAYLOAD,
    MESSAGE_UPDATED: CHAT_PAYLOAD,
}


@dataclass(frozen=True, slots=True)
class Webhook:
    """What the log keeps beside the body: the type, the time and the ids the webhook names.

    `document` is the parsed body; None for a logged body that cannot be read any more.
    """

    event_type: str
    timestamp: int
    chat_uuid: str | None
    profile_uuid: str | None
    document: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Incoming:
    """A webhook body as received, checked, with the source it came from.

    `fingerprint`: SHA-256 of its canonical JSON (see cdp.privacy.personal.dedupe_key); None for
    an event read back from the log, which keeps only the dedupe key made from it.
    """

    body: str
    fingerprint: str | None
    webhook: Webhook
    source: str = DEFAULT_SOURCE


def latest_timestamp(max_clock_skew: timedelta) -> int:
    """The latest timestamp accepted now: the server's clock plus the allowed skew."""
    return now_ms() + max_clock_skew // timedelta(milliseconds=1)


def parse(raw: bytes | str, *, latest: int, source: str = DEFAULT_SOURCE) -> Incoming:
    """Check one webhook body; raise MalformedBody or InvalidWebhook naming what is wrong.

    `latest` is the latest timestamp accepted: the server's clock plus the allowed skew.
    """
    try:
        body = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as error:
        raise MalformedBody(f"body is not UTF-8: {error}") from None
    if nesting(body, MAX_DEPTH) > MAX_DEPTH:
        raise MalformedBody(f"body is nested more than {MAX_DEPTH} levels deep")
    _READING.floats = False
    try:
        document = _FAST.decode(body)
        float_free = not _READING.floats
    except msgspec.DecodeError:  # json, slower, reads the same and says more about what is wrong
        document, float_free = None, False
    try:
        # NaN and Infinity become floats here only to be refused, with their path, below.
        document = json.loads(body, parse_constant=float) if document is None else document
    except ValueError as error:
        if "integer string conversion" in str(error):  # Python's own cap on integer digits
            raise MalformedBody("body holds an integer of more than 4300 digits") from None
        raise MalformedBody(f"body is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise MalformedBody(f"body must be a JSON object, got {_json_type(document)}")
    try:
        canonical = _canonical(document, float_free=float_free)
    except ValueError:  # a non-finite number, or a lone surrogate that is no Unicode text
        raise InvalidWebhook([_unrepresentable(document)], _event_type(document)) from None
    if _lost_keys(body, canonical):
        raise MalformedBody(f"body has {_repeated_key(body)}: each key must appear once")
    if len(body) > MAX_STRING_BYTES // 4 or len(body) > 5 * MAX_KEYS:
        too_large = _size_problem(document, len(body))
        if too_large is not None:
            raise InvalidWebhook([too_large], _event_type(document))
    fingerprint = hashlib.sha256(canonical).hexdigest()
    return Incoming(body, fingerprint, validate(document, latest=latest), source)


def _lost_keys(body: str, canonical: bytes) -> bool:
    """Did parsing drop a repeated key? Then the canonical text holds fewer strings.

    Without a backslash the body holds no escaped quote, nor then its canonical text: its
    quotes are twice its strings, and counting them is all it takes."""
    if "\\" not in body:
        return body.count('"') != canonical.count(b'"')
    return len(_STRING.findall(body)) != len(_STRING.findall(canonical.decode("utf-8")))


def _repeated_key(body: str) -> str:
    """Which key an object of `body` repeats, as the error names it."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen = set()
        for name, _ in items:
            if name in seen:
                raise _Repeated(name)
            seen.add(name)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs, parse_constant=float)
    except _Repeated as repeated:
        return f"the key {repeated.args[0][:64]!r} twice in one object"
    return "a key twice in one object"  # pragma: no cover - found by the count above


class _Repeated(Exception):
    pass


def _size_problem(document: dict[str, Any], length: int) -> FieldError | None:
    """A string over MAX_STRING_BYTES or more than MAX_KEYS keys, if any: only a body of
    `length` characters long enough to hold either is walked."""
    keys = 0
    for path, value in _walk(document):
        if isinstance(value, dict):
            keys += len(value)
            if keys > MAX_KEYS:
                return FieldError("body", f"holds more than {MAX_KEYS} keys")
            for name in value:
                if len(name) > MAX_STRING_BYTES // 4 and len(name.encode()) > MAX_STRING_BYTES:
                    return _too_long(path, "a key", len(name.encode()))
        elif (
            isinstance(value, str)
            and len(value) > MAX_STRING_BYTES // 4
            and len(value.encode()) > MAX_STRING_BYTES
        ):
            return _too_long(path, "it", len(value.encode()))
    return None


def _too_long(path: tuple[str | int, ...], what: str, size: int) -> FieldError:
    where = ".".join(str(part)[:64] for part in path) or "body"
    return FieldError(where, f"{what} is {size} bytes long; at most {MAX_STRING_BYTES}")


def validate(document: dict[str, Any], *, latest: int) -> Webhook:
    """Check the envelope and, for a known event type, its payload; report every bad field."""
    errors: list[FieldError] = []
    try:
        envelope: Envelope | None = ENVELOPE.validate_python(document, context={"latest": latest})
    except ValidationError as error:
        envelope, errors = None, _field_errors(error)
    event_type, raw_payload = document.get("event_type"), document.get("payload")
    adapter = PAYLOADS.get(event_type) if isinstance(event_type, str) else None
    payload: ChatPayload | None = None
    if adapter is not None and isinstance(raw_payload, dict):
        try:
            payload = adapter.validate_python(raw_payload)
        except ValidationError as error:
            errors += _field_errors(error, prefix="payload")
    if errors or envelope is None:
        raise InvalidWebhook(errors, _event_type(document))
    if payload is None:
        chat_uuid = _lenient_uuid(envelope["payload"].get("chat"))
        profile_uuid = _lenient_uuid(envelope["payload"].get("profile"))
    else:
        chat_uuid = payload["chat"]["uuid"]
        profile_uuid = (payload.get("profile") or {}).get("uuid")
    return Webhook(envelope["event_type"], envelope["timestamp"], chat_uuid, profile_uuid, document)


def _event_type(document: dict[str, Any]) -> str | None:
    """The event type a body names, valid or not; None if it names none as a string."""
    value = document.get("event_type")
    return value if isinstance(value, str) else None


def _canonical(document: dict[str, Any], *, float_free: bool) -> bytes:
    """The JSON text that tells bodies apart: sorted keys, no insignificant whitespace.

    ValueError if the document holds a non-finite number or a lone surrogate. msgspec
    writes the same canonical text ten times faster, but spells some floats otherwise
    (1e16 for 1e+16): it serves only documents known to hold none (`float_free`).
    """
    if float_free:
        return _CANONICAL.encode(document)
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return canonical.encode("utf-8")


def logged(body: str) -> dict[str, Any] | None:
    """A body the log holds as a JSON object, or None if it cannot be read as one.

    Never raises: reads and rebuilds go on whatever the log holds. Values no read model can
    store (non-finite numbers, lone surrogates) come back as null and U+FFFD.
    """
    if nesting(body, MAX_LOGGED_DEPTH) > MAX_LOGGED_DEPTH:
        return None
    try:
        document = _FAST_LOGGED.decode(body)
    except (msgspec.DecodeError, RecursionError):  # 512 levels, deep in a call stack
        document = None
    try:
        if document is None:
            document = json.loads(body, parse_float=_finite, parse_constant=lambda _: None)
        if _SURROGATE_ESCAPE.search(body):
            document = _representable(document)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


# A JSON string, escapes included; what is left between strings holds every bracket.
# An unterminated string runs to the end: no rescan from each quote, so the scan stays linear.
_STRING: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET: Final = re.compile(r"[\[\]{}]")
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def nesting(text: str, limit: int) -> int:
    """How deeply JSON `text` nests arrays and objects, counted up to `limit` + 1, no recursion;
    or, when that cannot exceed `limit`, how many brackets it opens (an upper bound)."""
    opened = text.count("{") + text.count("[")
    if opened <= limit:  # nothing can nest deeper than the brackets it opens: skip the scan
        return opened
    depth = deepest = 0
    for bracket in _BRACKET.finditer(_STRING.sub("", text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def _walk(document: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every value in the document with its path, depth first, without recursion."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        yield path, value
        if isinstance(value, dict):
            stack.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))


def _unrepresentable(document: dict[str, Any]) -> FieldError:
    """The first value that is no JSON number or no Unicode text, as a field error."""
    for path, value in _walk(document):
        where = ".".join(str(part)[:64] for part in path) or "body"
        if isinstance(value, float) and not math.isfinite(value):
            return FieldError(where, "must be a finite number (it overflows a double, or is NaN)")
        if isinstance(value, str) and not _is_unicode(value):
            return FieldError(where, "must be Unicode text, it holds an unpaired surrogate escape")
        if isinstance(value, dict):
            for key in value:
                if not _is_unicode(key):
                    return FieldError(where, "has a key with an unpaired surrogate escape")
    return FieldError("body", "holds a value JSON cannot represent")  # pragma: no cover


def _finite(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


# msgspec reads JSON into the very objects json.loads makes, three times faster; what it
# refuses (NaN, lone surrogate escapes, integers beyond 64 bits) is read again by json.
class _Reading(threading.local):
    floats = False  # did the body being read (in this thread) hold a float?


_READING: Final = _Reading()


def _float(text: str) -> float:
    _READING.floats = True
    return float(text)


_FAST: Final = msgspec.json.Decoder(float_hook=_float)
_CANONICAL: Final = msgspec.json.Encoder(order="sorted")
_FAST_LOGGED: Final = msgspec.json.Decoder(float_hook=_finite)


def _representable(value: Any) -> Any:
    """The value with unpaired surrogates as U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_representable(key): _representable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_representable(item) for item in value]
    return value


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lenient_uuid(value: object) -> str | None:
    """An unknown event type names a chat or profile only by a valid identifier that can be
    a path segment (see segment_problem)."""
    uuid = identifier(value.get("uuid")) if isinstance(value, dict) else None
    return uuid if uuid is not None and segment_problem(uuid) is None else None


def _field_errors(error: ValidationError, prefix: str | None = None) -> list[FieldError]:
    errors = []
    for item in error.errors(include_url=False):
        path = ".".join(str(part) for part in (prefix, *item["loc"]) if part is not None)
        message = item["msg"].removeprefix("Value error, ")
        errors.append(FieldError(path=path or "body", message=message))
    return errors


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
