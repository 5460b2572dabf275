"""Rejected deliveries: what was refused as bad input, kept apart from the log for a while.

A delivery refused as bad input (400, 413, 415, 422) is kept with its bytes, the headers
that tell where it came from, its source, when, and why; not one refused for its
credentials or its rate (401, 429): those prove nothing came from a source. Replaying runs
them through today's checks and moves those that pass into the log, exactly once.

An erasure forgets the kept deliveries that name the customer, so a body is kept only if
an erasure can read it (`texts`): compressed (gzip, deflate) it is decompressed, at most
MAX_DECODED bytes and MAX_RATIO times its size; it is read as UTF-8, UTF-16 or UTF-32, or
in the charset its Content-Type names. One that cannot be read so is kept as its size and
SHA-256 only (`refusal`).

A kept body is sealed (AES-GCM) under a key of its own, made in the keystore as it is
kept (subject "refused:<random>"): the erasure that forgets it destroys that key, so the
copies a database keeps of what it deleted (PostgreSQL's dead rows and WAL) open no more;
forgetting one that expired, or that a replay moved into the log, deletes its key too, and
the next erasure moves that key's KEK on all the same (see Keystore.discard).
"""

import codecs
import hashlib
import json
import logging
import re
import secrets
import unicodedata
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_plus

from sqlalchemy import Connection, bindparam, delete, insert, select

from cdp import db
from cdp.log.tables import rejected
from cdp.privacy import personal
from cdp.privacy.keystore import Keystore

logger = logging.getLogger("cdp.rejected")

# The request headers kept with a refused delivery: never Authorization or cookies.
KEPT_HEADERS: Final = (
    "content-type",
    "content-encoding",
    "content-length",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "x-forwarded-for",
    "x-request-id",
)
_KEEP: Final = db.Prepared(
    insert(rejected).values(
        {column: bindparam(column.name) for column in rejected.c if column.name != "id"}
    )
)
_HEADER_BYTES: Final = 1024  # of each kept header at most
# A compressed body is read no further than this, nor than MAX_RATIO times its own size:
# a body of a megabyte may not make a gigabyte (a decompression bomb).
MAX_DECODED: Final = 4 * 1024 * 1024
MAX_RATIO: Final = 100
_LAYERS: Final = 3  # of Content-Encoding at most ("gzip, gzip")


@dataclass(frozen=True, slots=True)
class RejectedDelivery:
    """A refused delivery as it is kept; `names`, the ids its body may name (see `named`),
    for suppression to find."""

    received_at: int
    source: str
    status: int
    reason: str
    size: int
    headers: Mapping[str, str]
    body: bytes
    names: frozenset[str] = field(default=frozenset(), compare=False)

    def row(self) -> dict[str, object]:
        return {
            "received_at": self.received_at,
            "source": self.source,
            "status": self.status,
            "reason": self.reason,
            "size": self.size,
            "headers": dict(self.headers),
            "body": self.body,
        }


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {
        name: headers[name][:_HEADER_BYTES]
        for name in KEPT_HEADERS
        if headers.get(name) is not None
    }


def rejection(
    received_at: int,
    source: str,
    status: int,
    reason: str,
    size: int,
    headers: Mapping[str, str],
    body: bytes,
) -> RejectedDelivery:
    """A refused delivery as it is kept: with its body if an erasure can read it (see
    `texts`), else with its size and SHA-256 only, its reason saying why."""
    kept = kept_headers(headers)
    try:
        names = frozenset(named(texts(body, kept)))
    # Whatever a hostile body does to a decoder is this delivery's alone, never that of the
    # group of webhooks it is committed with.
    except Exception as error:
        why = error if isinstance(error, Unreadable) else f"{type(error).__name__} reading it"
        if not isinstance(error, Unreadable):
            logger.warning("a refused delivery could not be read for erasure: %r", error)
        digest = hashlib.sha256(body).hexdigest()
        reason = (
            f"{reason} (body not kept, since no erasure could read it: {why}; SHA-256 {digest})"
        )
        return RejectedDelivery(received_at, source, status, reason, size, kept, b"")
    return RejectedDelivery(received_at, source, status, reason, size, kept, body, names)


class Unreadable(ValueError):
    """A kept body that cannot be read as text (see `texts`): why."""


def texts(body: bytes, headers: Mapping[str, str]) -> list[str]:
    """The text of a kept body, in each way it can be read: decompressed as its
    Content-Encoding says (gzip and zlib also when it says nothing), bounded; then in
    each of UTF-8, the UTF-16 or UTF-32 its first bytes show, and the charset its
    Content-Type names, that it is. Unreadable if none."""
    data = _decompressed(body, headers.get("content-encoding"))
    found: list[str] = []
    for encoding in _encodings(data, headers.get("content-type")):
        try:
            text = codecs.getincrementaldecoder(encoding)("strict").decode(data, final=False)
        except (ValueError, LookupError):  # UnicodeError too: UTF-16 with no byte order mark
            continue
        text = text.removeprefix("\ufeff")
        if text not in found:
            found.append(text)
    if not found:
        raise Unreadable("it is not text in UTF-8, UTF-16, UTF-32 or its Content-Type's charset")
    return found


_NO_CHARSETS: Final = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined", "mbcs", "oem"}
)


def _encodings(data: bytes, content_type: str | None) -> list[str]:
    """The text encodings a body may be in: UTF-8, the one its first bytes show (a byte
    order mark, or the NULs of UTF-16 or UTF-32 JSON), the one its Content-Type names."""
    found: list[str] = ["utf-8"]
    names: list[str] = [json.detect_encoding(data)]
    for parameter in (content_type or "").split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            names.append(value.strip().strip('"')[:40])
    for name in names:
        try:
            info = codecs.lookup(name)
        except LookupError:
            continue
        # Not "zlib" or "base64": codecs of bytes to bytes, that no limit bounds; nor
        # Python's codecs that are no charset (escapes, IDNA labels).
        text_encoding = getattr(info, "_is_text_encoding", True)
        if text_encoding and info.name not in _NO_CHARSETS and info.name not in found:
            found.append(info.name)
    return found


def _decompressed(body: bytes, content_encoding: str | None) -> bytes:
    """`body` decompressed as `content_encoding` says, or as its first bytes show (gzip,
    zlib) when it says nothing; Unreadable if it cannot be, or would make more than
    MAX_DECODED bytes or MAX_RATIO times its size."""
    limit = min(MAX_DECODED, MAX_RATIO * max(len(body), 1))
    codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if len(codings) > _LAYERS:
        raise Unreadable(f"Content-Encoding has more than {_LAYERS} codings")
    if not codings:
        if body.startswith(b"\x1f\x8b"):
            return _inflated(body, "gzip", limit)
        if len(body) > 1 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0:
            try:  # zlib's two bytes: "x^" or "x\x9c", say, could begin a text too
                return _inflated(body, "deflate", limit)
            except Unreadable:
                return body
        return body
    for coding in reversed(codings):
        if coding not in ("gzip", "x-gzip", "deflate"):
            raise Unreadable(f"Content-Encoding {coding[:40]!r} is not gzip or deflate")
        body = _inflated(body, coding, limit)
    return body


def _inflated(data: bytes, coding: str, limit: int) -> bytes:
    """`data` (gzip: one member or more; deflate: zlib or raw) decompressed, at most
    `limit` bytes of it. A stream cut short gives what it holds: a 413 keeps the start."""
    windows = (31,) if coding != "deflate" else (15, -15)
    for window in windows:
        try:
            return _inflated_as(data, window, limit)
        except zlib.error as error:
            broken = error
    raise Unreadable(f"its {coding} data is broken: {broken}")


def _inflated_as(data: bytes, window: int, limit: int) -> bytes:
    out: list[bytes] = []
    size = 0
    while True:
        stream = zlib.decompressobj(window)
        chunk = stream.decompress(data, limit - size + 1)
        size += len(chunk)
        if size > limit:
            raise Unreadable(f"it decompresses to more than {limit} bytes")
        out.append(chunk)
        data = stream.unused_data
        if not stream.eof or not data:
            return b"".join(out)
        if window != 31 or not data.startswith(b"\x1f\x8b"):
            raise Unreadable("it holds bytes after its compressed data")


def named(found: Iterable[str]) -> set[str]:
    """Every id the texts `found` of a kept body may name as a parser reads ids: each
    JSON string (escapes resolved) short enough to be an id, wherever it is and whether
    or not the body is JSON, also once the body is percent-decoded (a form); each field
    name and value of a form; each as it is and without whitespace at its ends."""
    ids = _strings_of(found)
    ids.update([value.strip() for value in ids])
    # No id holds a control character or a lone surrogate (nor could a database take it).
    return {value for value in ids if 0 < len(value) <= _ID_CHARACTERS and value.isprintable()}


def mentioned(found: Iterable[str]) -> set[str]:
    """Every id the texts `found` of a kept body may name as a person would read it,
    `folded`: the strings `named` finds, and each word and line of the text (the fields
    of a multipart form, of plain text), also once percent-decoded."""
    candidates = _strings_of(found)
    for text in found:
        for view in _views(text):
            candidates.update(_WORD.findall(view))
            candidates.update(view.splitlines())
    return {
        key
        for value in candidates
        if len(value) <= 4 * _ID_CHARACTERS and len(key := folded(value)) <= _ID_CHARACTERS and key
    }


def _strings_of(found: Iterable[str]) -> set[str]:
    """The JSON strings of the texts `found`, also once percent-decoded, and the field
    names and values of a form."""
    strings: set[str] = set()
    for text in found:
        for view in _views(text):
            strings.update(_strings(view))
        if "=" in text:
            for pair in parse_qsl(text, keep_blank_values=True):
                for value in pair:
                    strings.update(_strings(value) if '"' in value else ())
                    strings.add(value)
    return strings


def _views(text: str) -> list[str]:
    """`text`, and `text` percent-decoded (a form) if it may be."""
    return [text, unquote_plus(text)] if "%" in text or "+" in text else [text]


def folded(value: str) -> str:
    """`value` as a person compares ids: compatibility forms, case, whitespace at its ends
    or in runs, control and invisible format characters aside."""
    if not value.isascii():
        value = unicodedata.normalize("NFKC", value)
        value = "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cf"))
    elif not value.isprintable():
        value = "".join(c for c in value if c.isprintable() or c.isspace())
    return " ".join(value.split()).casefold()


def _strings(text: str) -> Iterable[str]:
    for literal in _STRING.findall(text):
        if len(literal) > _ID_CHARACTERS * 6:  # \uXXXX six characters a character at most
            continue
        try:
            yield json.loads(f'"{literal}"') if "\\" in literal else literal
        except ValueError:  # a broken escape: the text as it stands
            yield literal


# A JSON string, escapes and all: unbounded, so that one long string never throws the
# scan off the quotes that open and close the strings after it; possessive, so that a
# string of a megabyte costs no backtracking state; and one left open runs to the end of
# the body, so that the scan is one pass whatever the body holds.
_STRING: Final = re.compile(r'"([^"\\]*+(?:\\.[^"\\]*+)*+)"?', re.DOTALL)
# A word of text: what lies between white space, quotes and the marks of JSON, XML, forms.
_WORD: Final = re.compile(r"[^\s\"'`<>{}\[\](),;&=]+")
_ID_CHARACTERS: Final = 200


def without(rejections: Sequence[RejectedDelivery], doomed: set[str]) -> list[RejectedDelivery]:
    """`refusals`, those whose body names one of `doomed` (ids of customers erased and
    suppressed) kept without it, their reason saying so."""
    kept = []
    for rejection in rejections:
        if rejection.names & doomed:
            reason = f"{rejection.reason} (body not kept: it names a customer erased on request)"
            rejection = replace(rejection, body=b"", reason=reason)
        kept.append(rejection)
    return kept


def keep(
    connection: Connection, rejections: Sequence[RejectedDelivery], keystore: Keystore
) -> None:
    """Keep `rejections`, each body sealed under a key of its own (under the append lock)."""
    if not rejections:
        return
    subjects = [personal.of_refusal(secrets.token_hex(16)) if r.body else None for r in rejections]
    ring = keystore.fresh(connection, [subject for subject in subjects if subject])
    rows = []
    for rejection, subject in zip(rejections, subjects, strict=True):
        row = rejection.row()
        row["key_id"] = None
        if subject is not None:
            key = ring[subject]
            row["body"] = personal.seal_bytes(key.material, rejection.body, key.id)
            row["key_id"] = key.id
        rows.append(row)
    _KEEP.run(connection, rows)


def bodies(connection: Connection, keystore: Keystore, rows: Sequence[Any]) -> list[bytes | None]:
    """The bodies of kept rows (body, key_id), opened; None for one that does not open (its
    key is not in the keystore: one restored from a backup older than the delivery)."""
    ids = {row.key_id for row in rows if row.key_id is not None}
    materials = keystore.materials(connection, ids) if ids else {}
    opened: list[bytes | None] = []
    for row in rows:
        if row.key_id is None:  # kept before bodies were sealed
            opened.append(bytes(row.body))
        elif not row.body:  # kept without its body
            opened.append(b"")
        elif material := materials.get(row.key_id):
            opened.append(personal.open_bytes(material, bytes(row.body), row.key_id))
        else:
            opened.append(None)
    return opened


def expire(connection: Connection, before: int, most: int, keystore: Keystore) -> int:
    """Forget the oldest deliveries refused before `before` (ms), `most` at most, and their
    keys: a sender may have had millions refused, and forgetting them must not hold the
    writer up for long. How many were forgotten."""
    oldest = (
        select(rejected.c.id)
        .where(rejected.c.received_at < before)
        .order_by(rejected.c.received_at)
        .limit(most)
    )
    ids = list(connection.scalars(oldest))
    drop(connection, ids, keystore)
    return len(ids)


def drop(connection: Connection, ids: Sequence[int], keystore: Keystore) -> None:
    """Delete the kept deliveries of `ids` and their keys (see Keystore.discard)."""
    if not ids:
        return
    values = {"ids": list(ids)}
    key_ids = [row["key_id"] for row in _KEY_IDS.rows(connection, values) if row["key_id"]]
    _DROP.run(connection, [values])
    keystore.discard(connection, key_ids)


# Prepared: a replay forgets what it moved into the log in a pipeline (see db.writing).
_KEY_IDS: Final = db.Prepared(select(rejected.c.key_id).where(db.any_of(rejected.c.id, "ids")))
_DROP: Final = db.Prepared(delete(rejected).where(db.any_of(rejected.c.id, "ids")))


def read(
    connection: Connection, *, after: int, limit: int, source: str | None, max_bytes: int
) -> tuple[list[Any], bool]:
    """Refused deliveries after id `after`, oldest first: `limit` at most, and no more than
    `max_bytes` of bodies (one at least); and whether more are left."""
    query = select(rejected).where(rejected.c.id > after)
    if source is not None:
        query = query.where(rejected.c.source == source)
    return db.bounded(
        connection,
        query.order_by(rejected.c.id),
        limit=limit,
        max_bytes=max_bytes,
        weight=lambda row: len(row.body),
    )


def forget(connection: Connection, ids: Sequence[int], keystore: Keystore) -> None:
    """Forget kept deliveries a replay moved into the log, and their keys."""
    drop(connection, ids, keystore)
