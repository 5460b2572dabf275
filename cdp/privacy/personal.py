"""The personal data in a webhook, and how the log keeps it: sealed under a key of its own.

Each chat has a key (a profile has one for events that name no chat, a source for events
that name neither); the log keeps every event twice: whole, sealed with AES-GCM under that
key, and in the clear with only the fields known to hold no personal data (`redacted`).
Erasing a customer destroys their keys: the sealed copies become unreadable wherever they
are, and the rows themselves, hash chain included, never change.

Nor can the dedupe key give erased data away: its part that depends on the whole body is
an HMAC under the same key (see `dedupe_key`).

The read models keep a chat's personal values sealed under the same key too (see Sealer):
a database that never overwrites what it deletes (PostgreSQL's dead rows, its write-ahead
log) then holds nothing of an erased customer that anything can open.
"""

import hashlib
import hmac
import os
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

from cdp.log.webhook import Webhook

# What survives erasure: a tree of the fields that say what happened, when, and which team
# and operator handled it; everything else (names, phones, avatars, texts, links, titles,
# and any field not listed, since new ones may appear) is personal until shown otherwise.
# Half of every dedupe key is made from it: changing it needs a migration that makes them
# anew, or a redelivery of an event logged before would be logged again.
KEPT: Final[dict[str, Any]] = {
    "event_type": True,
    "timestamp": True,
    "payload": {
        "chat": {"uuid": True, "platform": True},
        "profile": {"uuid": True},
        "session": {
            "team": {"id": True, "name": True},
            "operator": {"uuid": True, "name": True, "avatar": True},
        },
        "message": {"uuid": True, "type": True, "status": True},
    },
}

KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
_ENCODER: Final = msgspec.json.Encoder()
_DEDUPE_LABEL: Final = b"cdp dedupe key"
_FIELDS_LABEL: Final = b"cdp read-model fields"
_FIELDS_VERSION: Final = b"\x01"
HALF: Final = 32  # hex digits in each half of a dedupe key


def subject(webhook: Webhook, source: str) -> str:
    """Whose key seals the event: its chat's, else its profile's, else (an event of a type
    unknown that names neither) its source's, which no erasure of a customer destroys."""
    return subject_of(webhook.chat_uuid, webhook.profile_uuid, source)


def subject_of(chat_uuid: str | None, profile_uuid: str | None, source: str) -> str:
    """The subject of a logged event, from its columns (see `subject`)."""
    if chat_uuid is not None:
        return of_chat(chat_uuid)
    if profile_uuid is not None:
        return of_profile(profile_uuid)
    return of_source(source)


def named(webhook: Webhook) -> list[str]:
    """Every subject the webhook names: its chat's and its profile's."""
    ids = ((of_chat, webhook.chat_uuid), (of_profile, webhook.profile_uuid))
    return [subject_of(uuid) for subject_of, uuid in ids if uuid is not None]


def of_chat(uuid: str) -> str:
    """A chat as a subject: what keys, erasures and owners are recorded for."""
    return f"chat:{uuid}"


def of_profile(uuid: str) -> str:
    return f"profile:{uuid}"


def of_source(name: str) -> str:
    return f"source:{name}"


def uuid_of(subject: str) -> str:
    """The id a subject is of: its chat's, profile's or source's."""
    return subject.partition(":")[2]


def chat_of(subject: str) -> str | None:
    """The chat a subject is, or None for a profile."""
    kind, _, uuid = subject.partition(":")
    return uuid if kind == "chat" else None


def redacted(document: dict[str, Any] | None) -> str:
    """The document as JSON text, holding only the fields of KEPT."""
    return _ENCODER.encode(_kept(document or {}, KEPT)).decode()


def _kept(value: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, inner in kept.items():
        if name not in value:
            continue
        field = value[name]
        if inner is True:
            if not isinstance(field, dict | list):  # a value, never a subtree of unknown fields
                out[name] = field
        elif isinstance(field, dict):
            out[name] = _kept(field, inner)
    return out


def digest(label: bytes, value: str, bits: int) -> int:
    """The first `bits` of SHA-256 of `value` (labelled): what a search looks a sealed value
    up by. So few bits that many values share each (a sixteen-bit digest of a phone stands
    for some ten thousand numbers of its country): a digest left of an erased customer
    narrows a guess, and names nobody."""
    hashed = hashlib.sha256(label + b"\x00" + value.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(hashed[:4], "big") >> (32 - bits)


def as_json(value: Any) -> str:
    """A value as the JSON text the read models keep of it (sealed: see Sealer)."""
    return _ENCODER.encode(value).decode()


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def dedupe_key(redacted: str, fingerprint: str, key: bytes) -> str:
    """An event's dedupe key, 64 hex digits: 32 of SHA-256 of its redacted body, then 32 of
    an HMAC of its fingerprint under (a key derived from) its subject's key.

    A redelivery has the same body, so the same key. The first half, made from what the log
    shows in the clear anyway, orders the events of one chat and millisecond alike in every
    database; the second tells apart bodies that differ only in personal data. Once the key
    is destroyed, nobody can test a guess of erased data against the dedupe key, as one
    could against a plain hash of the body.
    """
    clear = hashlib.sha256(redacted.encode()).hexdigest()[:HALF]
    mac = hmac.new(hmac.digest(key, _DEDUPE_LABEL, "sha256"), bytes.fromhex(fingerprint), "sha256")
    return clear + mac.hexdigest()[:HALF]


def clear_half(dedupe_key: str) -> str:
    """The part of a dedupe key made from the redacted body alone."""
    return dedupe_key[:HALF]


def seal(key: bytes, body: str, dedupe_key: str) -> bytes:
    """The body encrypted and authenticated under `key`, bound to its event's dedupe key so
    that it cannot be moved to another row: nonce, then ciphertext and tag."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, body.encode("utf-8"), dedupe_key.encode())


def unseal(key: bytes, sealed: bytes, dedupe_key: str) -> str | None:
    """The body `seal` sealed, or None if `sealed` was not sealed by `key` for this event."""
    nonce, ciphertext = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, dedupe_key.encode())
    except (InvalidTag, ValueError):
        return None
    return plain.decode("utf-8", errors="replace")


def seal_bytes(key: bytes, data: bytes, bound: str) -> bytes:
    """`data` encrypted and authenticated under `key`, bound to `bound` (the id of what it
    belongs to): nonce, then ciphertext and tag."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, data, bound.encode())


def open_bytes(key: bytes, sealed: bytes, bound: str) -> bytes | None:
    """What seal_bytes sealed, or None if `sealed` was not sealed by `key` for `bound`."""
    try:
        return AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], bound.encode())
    except (InvalidTag, ValueError):
        return None


def of_refusal(token: str) -> str:
    """A refused delivery as a subject: each kept body is sealed under a key of its own."""
    return f"refused:{token}"


class Sealer:
    """Seals and opens the personal values of one chat's read-model rows (its name and phone,
    a session's title, a message), under a key derived from the chat's key: AES-SIV, with
    the column and the chat as associated data, so that a value cannot be moved to another
    column or chat.

    Deterministic: the same value seals to the same bytes, so a rebuild writes what the
    live fold wrote, and a stored value compares equal to one sealed anew. What it gives
    away is only which values of one chat's column are equal, and their lengths. A value
    that does not open (sealed under a key since destroyed) reads as None: erased."""

    __slots__ = ("_chat", "_siv")

    def __init__(self, material: bytes, chat_uuid: str) -> None:
        if len(material) != KEY_BYTES:
            raise ValueError("a chat's key is 32 bytes")
        self._siv = AESSIV(hmac.digest(material, _FIELDS_LABEL, "sha512"))
        self._chat = chat_uuid.encode()

    def seal(self, column: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        sealed = self._siv.encrypt(
            value.encode("utf-8", "surrogatepass"), [column.encode(), self._chat]
        )
        return _FIELDS_VERSION + sealed

    def open(self, column: str, sealed: bytes | None) -> str | None:
        if sealed is None or sealed[:1] != _FIELDS_VERSION:
            return None
        try:
            plain = self._siv.decrypt(bytes(sealed[1:]), [column.encode(), self._chat])
        except (InvalidTag, ValueError):
            return None
        return plain.decode("utf-8", "surrogatepass")


def sealer(material: bytes | None, chat_uuid: str) -> Sealer | None:
    """The chat's Sealer, or None without its key (destroyed: nothing of it opens)."""
    return Sealer(material, chat_uuid) if material else None


def opened(sealer: Sealer | None, column: str, value: bytes | None) -> str | None:
    """A read model's value of `column` opened; None without the chat's key (erased)."""
    return None if sealer is None or value is None else sealer.open(column, value)


def sealed(sealer: Sealer | None, column: str, value: str | None) -> bytes | None:
    """A read model's value of `column` sealed; None without the chat's key: a value is
    never kept in the clear."""
    return None if sealer is None or value is None else sealer.seal(column, value)
