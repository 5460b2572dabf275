"""Who may post and who may read: sources with their secrets, tokens with their roles.

Every secret is 256 random bits, shown once and kept as its SHA-256 digest (as GitHub and
PyPI keep API tokens): a digest of so random a value can be neither reversed nor guessed,
so a slow password hash would only add its cost to every request. Signing keys (Standard
Webhooks) are the exception: checking an HMAC needs the key itself.
"""

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Literal, get_args

from sqlalchemy import Connection, delete, insert, select, update

from cdp.access.tables import sources, tokens
from cdp.times import now_ms

Role = Literal["read", "admin"]
ROLES: Final[tuple[Role, ...]] = get_args(Role)
# Names go into URLs and log lines: plain, short, lower case.
_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_SECRET_PREFIX: Final = "cdps_"
_TOKEN_PREFIX: Final = "cdpt_"
_SIGNING_PREFIX: Final = "whsec_"
# How far a signed delivery's webhook-timestamp may be from the server's clock.
SIGNATURE_TOLERANCE: Final = timedelta(minutes=5)


class CredentialError(ValueError):
    """A name that is not valid, taken, or not there."""


def check_name(name: str, what: str) -> str:
    if not _NAME.fullmatch(name):
        raise CredentialError(
            f"{what} name {name!r} is not valid: 1 to 64 of a-z, 0-9, _ and -, "
            "beginning with a letter or digit"
        )
    return name


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Issued:
    """What a new or rotated source is told once: its secret, and its signing key if any."""

    secret: str
    signing_key: str | None = None


@dataclass(frozen=True)
class SourceInfo:
    name: str
    created_at: int
    signed: bool
    previous_until: int | None


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: Role
    created_at: int


def add_source(connection: Connection, name: str, *, signed: bool = False) -> Issued:
    check_name(name, "source")
    if _source(connection, name) is not None:
        raise CredentialError(f"source {name!r} exists already: rotate its secret instead")
    issued = Issued(_SECRET_PREFIX + secrets.token_urlsafe(32), _signing_key() if signed else None)
    connection.execute(
        insert(sources).values(
            name=name,
            secret_digest=digest(issued.secret),
            signing_key=issued.signing_key,
            created_at=now_ms(),
        )
    )
    return issued


def rotate_source(
    connection: Connection, name: str, *, grace: timedelta, signed: bool | None = None
) -> Issued:
    """A new secret (and signing key, if the source signs or `signed`); the old ones stay
    valid for `grace`. `signed=False` stops requiring signatures."""
    row = _source(connection, name)
    if row is None:
        raise CredentialError(f"no source {name!r}: cdp source list shows them")
    signs = row.signing_key is not None if signed is None else signed
    issued = Issued(_SECRET_PREFIX + secrets.token_urlsafe(32), _signing_key() if signs else None)
    until = now_ms() + grace // timedelta(milliseconds=1) if grace > timedelta(0) else None
    connection.execute(
        update(sources)
        .where(sources.c.name == name)
        .values(
            secret_digest=digest(issued.secret),
            previous_digest=row.secret_digest if until else None,
            previous_until=until,
            signing_key=issued.signing_key,
            previous_signing_key=row.signing_key if until and issued.signing_key else None,
        )
    )
    return issued


def remove_source(connection: Connection, name: str) -> None:
    """Refuse the source's deliveries from now on; what it delivered stays in the log."""
    if connection.execute(delete(sources).where(sources.c.name == name)).rowcount == 0:
        raise CredentialError(f"no source {name!r}: cdp source list shows them")


def list_sources(connection: Connection) -> list[SourceInfo]:
    now = now_ms()
    return [
        SourceInfo(
            row.name,
            row.created_at,
            row.signing_key is not None,
            row.previous_until if row.previous_until and row.previous_until > now else None,
        )
        for row in connection.execute(select(sources).order_by(sources.c.name))
    ]


def create_token(connection: Connection, name: str, role: Role) -> str:
    check_name(name, "token")
    if role not in ROLES:
        raise CredentialError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    taken = connection.execute(select(tokens.c.name).where(tokens.c.name == name)).first()
    if taken is not None:
        raise CredentialError(f"a token named {name!r} exists already: revoke it first")
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    connection.execute(
        insert(tokens).values(name=name, role=role, digest=digest(token), created_at=now_ms())
    )
    return token


def revoke_token(connection: Connection, name: str) -> None:
    if connection.execute(delete(tokens).where(tokens.c.name == name)).rowcount == 0:
        raise CredentialError(f"no token named {name!r}: cdp token list shows them")


def list_tokens(connection: Connection) -> list[TokenInfo]:
    query = select(tokens.c.name, tokens.c.role, tokens.c.created_at).order_by(tokens.c.name)
    return [TokenInfo(row.name, row.role, row.created_at) for row in connection.execute(query)]


def _source(connection: Connection, name: str) -> "_SourceRow | None":
    row = connection.execute(select(sources).where(sources.c.name == name)).first()
    return None if row is None else _SourceRow(**row._asdict())


def _signing_key() -> str:
    return _SIGNING_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class _SourceRow:
    name: str
    secret_digest: str
    previous_digest: str | None
    previous_until: int | None
    signing_key: str | None
    previous_signing_key: str | None
    created_at: int


# Compared against when a source does not exist, so that its answer takes as long.
_NOBODY: Final = _SourceRow("", "0" * 64, "0" * 64, 0, None, None, 0)


@dataclass(frozen=True)
class Caller:
    """Who a request comes from: a token's name and role."""

    name: str
    role: Role


@dataclass(frozen=True)
class Keyring:
    """Every credential, as read at one moment; what the server checks requests against."""

    sources: dict[str, _SourceRow] = field(default_factory=dict)
    tokens: dict[str, Caller] = field(default_factory=dict)

    @property
    def ingest_open(self) -> bool:
        """No source is configured: webhooks need no secret (the default source only)."""
        return not self.sources

    @property
    def reads_open(self) -> bool:
        """No token is configured: queries need none."""
        return not self.tokens

    def admits(self, source: str, secret: str | None, now: int) -> bool:
        """Is `secret` the source's, or its previous one still in its grace period?

        As long whether or not the source exists, and constant-time in the secret."""
        row = self.sources.get(source, _NOBODY)
        given = digest(secret or "")
        current = hmac.compare_digest(given, row.secret_digest)
        previous = hmac.compare_digest(given, row.previous_digest or _NOBODY.secret_digest)
        in_grace = row.previous_until is not None and now < row.previous_until
        return row is not _NOBODY and secret is not None and (current or (previous and in_grace))

    def signing_keys(self, source: str, now: int) -> list[str]:
        """The keys a source's deliveries must be signed with (one of them); none: unsigned."""
        row = self.sources.get(source)
        if row is None or row.signing_key is None:
            return []
        in_grace = row.previous_until is not None and now < row.previous_until
        previous = [row.previous_signing_key] if row.previous_signing_key and in_grace else []
        return [row.signing_key, *previous]

    def caller(self, token: str | None) -> Caller | None:
        return None if token is None else self.tokens.get(digest(token))


def load(connection: Connection) -> Keyring:
    rows = connection.execute(select(sources)).all()
    callers = connection.execute(select(tokens.c.name, tokens.c.role, tokens.c.digest)).all()
    return Keyring(
        sources={row.name: _SourceRow(**row._asdict()) for row in rows},
        tokens={row.digest: Caller(row.name, row.role) for row in callers},
    )


def signature_problem(
    keys: list[str], headers: dict[str, str | None], body: bytes, now: int
) -> str | None:
    """Why a delivery's Standard Webhooks signature does not hold, or None if it does.

    The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; webhook-signature holds
    one or more space-separated `v1,<base64 HMAC-SHA256>`, any of which may match any key.
    """
    webhook_id, timestamp, signatures = (
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
    )
    if not webhook_id or not timestamp or not signatures:
        return (
            "this source signs its deliveries: webhook-id, webhook-timestamp and "
            "webhook-signature are required"
        )
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return f"webhook-timestamp must be seconds since the epoch, got {timestamp[:32]!r}"
    tolerance = SIGNATURE_TOLERANCE // timedelta(milliseconds=1)
    if abs(int(timestamp) * 1000 - now) > tolerance:
        return "webhook-timestamp is more than 5 minutes from the server's clock"
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = [hmac.new(_key_bytes(key), signed, hashlib.sha256).digest() for key in keys]
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(hmac.compare_digest(given, mac) for mac in expected):
            return None
    return "no webhook-signature matches the source's signing key"


def _key_bytes(key: str) -> bytes:
    return base64.b64decode(key.removeprefix(_SIGNING_PREFIX))


def sign(key: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """A webhook-signature header value, as a sender computes it (for tests and clients)."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    mac = hmac.new(_key_bytes(key), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()
