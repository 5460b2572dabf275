"""Dedupe keys that give no erased data away, and no event left in the clear.

Until now an event's dedupe key was SHA-256 of its canonical body: whoever held a copy of
the log could test a guess of a customer's erased name or phone against it. Each event's
key is made anew here as every append makes it since (see cdp.personal.dedupe_key): a
hash of its redacted body, then an HMAC under its subject's key of what the old key was,
the body's fingerprint. Events that name neither a chat nor a profile, kept in the clear
until now, are sealed under their source's key.

Each readable body is sealed again, bound to its new key, and the whole log is chained
anew, in position order, once, with the guard triggers off inside this migration's
transaction; the read models' copies of the keys follow. An erased event keeps its
sealed bytes (nobody can open them) and gets a keyed half nobody can link to anything.

The keys come from the main database and from the keystore cdp passes in (`cdp migrate`
does); a key found in neither, of a chat or profile never erased, stops the migration
before anything changed. So does a break in the hash chain: chaining anew over it would
hide it. New keys go to the main database's `keys` table, which a keystore of its own
takes over the first time cdp opens it (see cdp.privacy.keystore.Keystore.adopt).

Ties between events of one chat and millisecond are ordered by the new keys: `cdp
migrate` rebuilds the projections after this migration (see cdp.upgrades.REORDERING).

What this needs of cdp (the hash chain, sealing, dedupe keys, the redacted body, reading a
logged body) is copied here, as cdp had it when the migrations were made self-contained
(at 0017): a later cdp may change its own, and this must go on writing what cdp verifies
and opens. A migration that cannot run raises its own Refused (see migrations/env.py).

Revision ID: 0009
Revises: 0008
"""

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import sqlalchemy as sa
from alembic import op
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class Refused(Exception):
    """This migration cannot run on this database as it is, and says why; nothing changed.
    migrations/env.py, which tells it by `migration_refused`, raises it as cdp's own."""

    migration_refused = True


SQLITE_UPDATE_GUARD = """
    CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
    BEGIN
        SELECT RAISE(ABORT, 'the event log is append-only: UPDATE on events is refused');
    END
"""
_CHUNK = 2000

# cdp.chain's, frozen (see _link): what a row's hash covers, in this order.
_GENESIS = "0" * 64
_COLUMNS = (
    "position",
    "event_type",
    "occurred_at",
    "received_at",
    "chat_uuid",
    "profile_uuid",
    "dedupe_key",
    "body",
    "source",
    "key_id",
    "sealed",
)

_EVENTS = sa.table(
    "events",
    *(sa.column(name) for name in _COLUMNS if name != "sealed"),
    sa.column("sealed", sa.LargeBinary()),
    sa.column("hash", sa.String()),
)
_KEYS = sa.table(
    "keys",
    sa.column("id"),
    sa.column("subject"),
    sa.column("material", sa.LargeBinary()),
    sa.column("created_at"),
)
_UPDATE = (
    _EVENTS.update()
    .where(_EVENTS.c.position == sa.bindparam("at"))
    .values(
        dedupe_key=sa.bindparam("new_dedupe_key"),
        body=sa.bindparam("new_body"),
        key_id=sa.bindparam("new_key_id"),
        sealed=sa.bindparam("new_sealed", type_=sa.LargeBinary()),
        hash=sa.bindparam("new_hash"),
    )
)


def upgrade() -> None:
    _rewrite(_rekey)


def downgrade() -> None:
    _rewrite(_unkey)
    op.execute("DELETE FROM keys WHERE subject LIKE 'source:%'")


class _Keys:
    """The key material of every key the main database or the keystore holds, and the
    subjects erased; keys made for subjects that had none, kept to be written."""

    def __init__(self, connection: sa.Connection) -> None:
        self.materials = {
            row.id: row.material
            for row in connection.execute(sa.select(_KEYS.c.id, _KEYS.c.material))
        }
        keystore = op.get_context().config.attributes.get("keystore")
        if keystore is not None and keystore.apart:
            wanted = sa.select(_EVENTS.c.key_id).where(_EVENTS.c.key_id.is_not(None)).distinct()
            ids = [
                key_id for (key_id,) in connection.execute(wanted) if key_id not in self.materials
            ]
            self.materials |= keystore.materials(connection, ids)
        self.erased: set[str] = set()
        for profile, chats in connection.execute(
            sa.text("SELECT profile_uuid, chats FROM erasures")
        ):
            self.erased.add(_of_profile(profile))
            listed = json.loads(chats) if isinstance(chats, str) else chats
            self.erased.update(_of_chat(chat) for chat in listed)
        self.made: dict[str, tuple[str, bytes]] = {}
        self.new_rows: list[dict[str, Any]] = []

    def of_source(self, name: str, connection: sa.Connection) -> tuple[str, bytes]:
        subject = _of_source(name)
        if subject not in self.made:
            found = connection.execute(
                sa.select(_KEYS.c.id, _KEYS.c.material).where(_KEYS.c.subject == subject)
            ).first()
            if found is not None:
                self.made[subject] = (found.id, found.material)
            else:
                self.made[subject] = (secrets.token_hex(16), _new_key())
                key_id, material = self.made[subject]
                self.materials[key_id] = material
                self.new_rows.append(
                    {
                        "id": key_id,
                        "subject": subject,
                        "material": material,
                        "created_at": _now_ms(),
                    }
                )
        return self.made[subject]


# What a row becomes: its columns that change (of dedupe_key, body, key_id and sealed).
Change = Callable[[sa.Connection, dict[str, Any], "_Keys"], dict[str, Any]]


def _rewrite(change: Change) -> None:
    """Run `change` over every logged row, in position order, chaining each anew, with the
    guard against updates off; the read models' copies of the dedupe keys follow."""
    connection = op.get_bind()
    sqlite = connection.dialect.name == "sqlite"
    keys = _Keys(connection)
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS events_refuse_update")
    else:
        op.execute("ALTER TABLE events DISABLE TRIGGER events_refuse_change")
    old_previous = new_previous = _GENESIS
    after = 0
    while rows := _chunk(connection, after):
        changes = []
        for row in rows:
            stored = dict(row._mapping)
            if stored["hash"] != _link(old_previous, stored):
                raise Refused(
                    f"the log's hash chain breaks at position {row.position}: see `cdp verify`; "
                    "this migration does not chain anew over a log that was tampered with"
                )
            old_previous = stored["hash"]
            stored.update(change(connection, stored, keys))
            new_previous = _link(new_previous, stored)
            changes.append(
                {
                    "at": row.position,
                    "new_dedupe_key": stored["dedupe_key"],
                    "new_body": stored["body"],
                    "new_key_id": stored["key_id"],
                    "new_sealed": stored["sealed"],
                    "new_hash": new_previous,
                }
            )
        connection.execute(_UPDATE, changes)
        after = rows[-1].position
    if keys.new_rows:
        connection.execute(_KEYS.insert(), keys.new_rows)
    if sqlite:
        op.execute(SQLITE_UPDATE_GUARD)
    else:
        op.execute("ALTER TABLE events ENABLE TRIGGER events_refuse_change")
    for table in ("timeline", "handoffs"):
        op.execute(
            f"UPDATE {table} SET dedupe_key = "
            f"(SELECT dedupe_key FROM events WHERE events.position = {table}.position)"
        )


def _rekey(connection: sa.Connection, row: dict[str, Any], keys: _Keys) -> dict[str, Any]:
    """The row's new dedupe key, its body sealed again bound to it; sealed first, under its
    source's key, when it was kept in the clear."""
    fingerprint = _fingerprint(row["dedupe_key"])
    if row["sealed"] is None:
        key_id, material = keys.of_source(row["source"], connection)
        redacted = _redacted(_logged(row["body"]))
        dedupe_key = _dedupe_key(redacted, fingerprint, material)
        sealed = _seal(material, row["body"], dedupe_key)
        return {"dedupe_key": dedupe_key, "body": redacted, "key_id": key_id, "sealed": sealed}
    material = keys.materials.get(row["key_id"])
    whole = None if material is None else _unseal(material, row["sealed"], row["dedupe_key"])
    if whole is None:
        if material is None and _subject(row) not in keys.erased:
            raise Refused(
                f"the key that seals the event at position {row['position']} is in neither "
                "this database nor the keystore: run this through `cdp migrate` with "
                "CDP_KEYSTORE_URL set as the server has it"
            )
        # Erased (or its sealed copy unreadable since): a keyed half nobody can link.
        clear = hashlib.sha256(row["body"].encode()).hexdigest()[:32]
        return {"dedupe_key": clear + secrets.token_hex(16)}
    assert material is not None
    dedupe_key = _dedupe_key(row["body"], fingerprint, material)
    return {"dedupe_key": dedupe_key, "sealed": _seal(material, whole, dedupe_key)}


def _unkey(connection: sa.Connection, row: dict[str, Any], keys: _Keys) -> dict[str, Any]:
    """The row's dedupe key as SHA-256 of its canonical body, its body sealed again bound
    to it (an erased one: a hash of its keyed key, which gives nothing away); in the clear
    again when it names neither a chat nor a profile."""
    material = keys.materials.get(row["key_id"])
    whole = None if material is None else _unseal(material, row["sealed"], row["dedupe_key"])
    if whole is None:
        return {"dedupe_key": hashlib.sha256(row["dedupe_key"].encode()).hexdigest()}
    document = _logged(whole)
    canonical = (
        json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
        if document is not None
        else whole
    )
    dedupe_key = hashlib.sha256(canonical.encode("utf-8", errors="replace")).hexdigest()
    if row["chat_uuid"] is None and row["profile_uuid"] is None:
        return {"dedupe_key": dedupe_key, "body": whole, "key_id": None, "sealed": None}
    assert material is not None
    return {"dedupe_key": dedupe_key, "sealed": _seal(material, whole, dedupe_key)}


def _fingerprint(dedupe_key: str) -> str:
    """What the old dedupe key was: the fingerprint of the body (SHA-256 of its canonical
    JSON); a key of any other shape, written around cdp, is hashed to one."""
    try:
        if len(bytes.fromhex(dedupe_key)) == 32:
            return dedupe_key.lower()
    except ValueError:
        pass
    return hashlib.sha256(dedupe_key.encode()).hexdigest()


def _subject(row: dict[str, Any]) -> str | None:
    if row["chat_uuid"] is not None:
        return _of_chat(row["chat_uuid"])
    if row["profile_uuid"] is not None:
        return _of_profile(row["profile_uuid"])
    return None


def _chunk(connection: sa.Connection, after: int) -> list[sa.Row[Any]]:
    query = sa.select(_EVENTS).where(_EVENTS.c.position > after).order_by(_EVENTS.c.position)
    return list(connection.execute(query.limit(_CHUNK)))


# What this migration needs of cdp, frozen: copied from cdp.chain, cdp.personal, cdp.times
# and cdp.webhook as they were at 0017, stripped to what is used here, writing byte for byte
# what they wrote (tests/unit/test_frozen_copies.py holds them to cdp's code).

_ENCODER = msgspec.json.Encoder()


def _link(previous: str, row: Mapping[str, Any]) -> str:
    """Frozen copy of cdp.chain.link for 0009: the hash of `row`, chained after `previous`."""
    sealed: bytes | None = row["sealed"]
    fields = [row[name] for name in _COLUMNS]
    fields[_COLUMNS.index("sealed")] = None if sealed is None else len(sealed)
    digest = hashlib.sha256(bytes.fromhex(previous))
    digest.update(_ENCODER.encode(fields))
    if sealed is not None:
        digest.update(sealed)
    return digest.hexdigest()


def _of_chat(uuid: str) -> str:
    """Frozen copy of cdp.personal.of_chat for 0009: a chat as the subject of a key."""
    return f"chat:{uuid}"


def _of_profile(uuid: str) -> str:
    """Frozen copy of cdp.personal.of_profile for 0009: a profile as the subject of a key."""
    return f"profile:{uuid}"


def _of_source(name: str) -> str:
    """Frozen copy of cdp.personal.of_source for 0009: a source as the subject of a key."""
    return f"source:{name}"


def _new_key() -> bytes:
    """Frozen copy of cdp.personal.new_key for 0009: a subject's new key, 32 random bytes."""
    return os.urandom(32)


_DEDUPE_LABEL = b"cdp dedupe key"
_HALF = 32  # hex digits in each half of a dedupe key


def _dedupe_key(redacted: str, fingerprint: str, key: bytes) -> str:
    """Frozen copy of cdp.personal.dedupe_key for 0009: clear half, then HMAC of the fingerprint."""
    clear = hashlib.sha256(redacted.encode()).hexdigest()[:_HALF]
    mac = hmac.new(hmac.digest(key, _DEDUPE_LABEL, "sha256"), bytes.fromhex(fingerprint), "sha256")
    return clear + mac.hexdigest()[:_HALF]


def _seal(key: bytes, body: str, dedupe_key: str) -> bytes:
    """Frozen copy of cdp.personal.seal for 0009: nonce, then AES-GCM bound to the dedupe key."""
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, body.encode("utf-8"), dedupe_key.encode())


def _unseal(key: bytes, sealed: bytes, dedupe_key: str) -> str | None:
    """Frozen copy of cdp.personal.unseal for 0009: what _seal sealed, or None."""
    nonce, ciphertext = sealed[:12], sealed[12:]
    try:
        plain = AESGCM(key).decrypt(nonce, ciphertext, dedupe_key.encode())
    except (InvalidTag, ValueError):
        return None
    return plain.decode("utf-8", errors="replace")


# cdp.personal.KEPT, frozen: the fields that are no personal data.
_KEPT: dict[str, Any] = {
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


def _redacted(document: dict[str, Any] | None) -> str:
    """Frozen copy of cdp.personal.redacted for 0009: the document as JSON, _KEPT's fields only."""
    return _ENCODER.encode(_kept(document or {}, _KEPT)).decode()


def _kept(value: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    """Frozen copy of cdp.personal._kept for 0009: the fields of `value` that `kept` lists."""
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


def _now_ms() -> int:
    """Frozen copy of cdp.times.now_ms for 0009: milliseconds since the Unix epoch."""
    return time.time_ns() // 1_000_000


_MAX_LOGGED_DEPTH = 512
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _logged(body: str) -> dict[str, Any] | None:
    """Frozen copy of cdp.webhook.logged for 0009: a logged body as a JSON object, or None."""
    if _nesting(body, _MAX_LOGGED_DEPTH) > _MAX_LOGGED_DEPTH:
        return None
    try:
        document = _DECODER.decode(body)
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


def _nesting(text: str, limit: int) -> int:
    """Frozen copy of cdp.webhook.nesting for 0009: how deep JSON `text` nests, up to limit + 1."""
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


def _finite(text: str) -> float | None:
    """Frozen copy of cdp.webhook._finite for 0009: a JSON number, None if it is not finite."""
    number = float(text)
    return number if math.isfinite(number) else None


_DECODER = msgspec.json.Decoder(float_hook=_finite)


def _representable(value: Any) -> Any:
    """Frozen copy of cdp.webhook._representable for 0009: lone surrogates as U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_representable(key): _representable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_representable(item) for item in value]
    return value
