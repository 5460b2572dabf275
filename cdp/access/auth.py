"""Who may call what: a source's secret to post webhooks, a read or admin token to ask.

Credentials are read from the database at most a second before they are checked, so a
token revoked or a source rotated with `cdp` takes effect within a second, in every process.
A wrong or missing credential is 401 whether or not the source or token exists; a client
address that keeps sending wrong ones gets 429 until it slows down.
"""

import math
import time
from typing import Any, Final, NoReturn

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import (
    NotAuthorizedException,
    PermissionDeniedException,
    TooManyRequestsException,
)
from litestar.handlers import BaseRouteHandler

from cdp.access import credentials
from cdp.access.credentials import Caller, Keyring, Role
from cdp.access.limits import Limiter
from cdp.log.webhook import DEFAULT_SOURCE
from cdp.runtime.service import Lane
from cdp.settings import Settings
from cdp.times import now_ms

AnyConnection = ASGIConnection[Any, Any, Any, Any]
_BEARER: Final = "bearer "


class Keys:
    """The credentials as of at most `max_age` seconds ago, read off the event loop."""

    def __init__(self, lane: Lane, max_age: float = 1.0) -> None:
        self.lane, self.max_age = lane, max_age
        self.ring: Keyring | None = None
        self._read_at = -math.inf
        self._reading = anyio.Lock()

    async def current(self) -> Keyring:
        """The keyring, read again if it is old: by one request, while the others use the
        old one. Until it was read once, every request waits for it: never open by mistake."""
        if time.monotonic() - self._read_at < self.max_age:
            assert self.ring is not None
            return self.ring
        if self.ring is not None and self._reading.locked():
            return self.ring
        async with self._reading:
            if time.monotonic() - self._read_at >= self.max_age:
                self.ring = await self.lane.query(credentials.load)
                self._read_at = time.monotonic()
        assert self.ring is not None
        return self.ring


class Gate:
    """Everything a request's credentials are checked against, and the rate limits."""

    def __init__(self, keys: Keys, settings: Settings, *, exposed: bool) -> None:
        self.keys, self.exposed = keys, exposed
        self.webhooks = Limiter(settings.webhook_rate_limit)
        self.reads = Limiter(settings.read_rate_limit)
        self.failures = Limiter(settings.failed_auth_rate_limit)

    async def sender(self, connection: AnyConnection, source: str) -> Keyring:
        """May this request post webhooks as `source`? 401 or 429 if not; the keyring it
        was checked against (which also holds the source's signing keys)."""
        ring = await self.keys.current()
        if ring.ingest_open and not self.exposed:
            if source != DEFAULT_SOURCE:
                self.refuse(connection, "no sources are configured: post to /webhooks/fasttrack")
        else:
            secret = connection.query_params.get("token") or _bearer(connection)
            if not ring.admits(source, secret, now_ms()):
                self.refuse(
                    connection,
                    "unknown source or wrong secret: give the source's secret as ?token= or "
                    "Authorization: Bearer",
                )
        _limit(self.webhooks, f"source {source}", "webhooks of this source")
        return ring

    async def caller(
        self,
        connection: AnyConnection,
        role: Role,
        token: str | None,
        missing: str = "a valid token is needed: Authorization: Bearer <token>",
    ) -> Caller | None:
        """May a request with `token` do what `role` may? 401 (saying `missing`), 403 or
        429 if not; who it is, or None if the store is open."""
        if await self.open():
            return None
        ring = await self.keys.current()
        caller = ring.caller(token)
        if caller is None:
            self.refuse(connection, missing)
        permit(caller, role)
        _limit(self.reads, f"token {caller.name}", "requests with this token")
        return caller

    async def open(self) -> bool:
        """Do queries need no token (no token exists, and the server listens on 127.0.0.1)?"""
        ring = await self.keys.current()
        return ring.reads_open and not self.exposed

    async def admits(self, connection: AnyConnection, role: Role) -> bool:
        """Would caller() still let this request do what `role` may, rate limits aside? Asked
        again and again by a request that lasts, so that a token revoked meanwhile ends it."""
        if await self.open():
            return True
        ring = await self.keys.current()
        caller = ring.caller(_bearer(connection))
        return caller is not None and (role != "admin" or caller.role == "admin")

    async def token_name(self, connection: AnyConnection) -> str | None:
        """The name of the token a request that a guard let through came with; None if the
        store is open (or the token was revoked since)."""
        if await self.open():
            return None
        caller = (await self.keys.current()).caller(_bearer(connection))
        return None if caller is None else caller.name

    def refuse(self, connection: AnyConnection, detail: str) -> NoReturn:
        address = connection.client.host if connection.client else "unknown"
        wait = self.failures.take(address)
        if wait:
            raise TooManyRequestsException(
                "too many requests with wrong credentials from this address; retry later",
                headers={"Retry-After": str(math.ceil(wait))},
            )
        raise NotAuthorizedException(detail, headers={"WWW-Authenticate": "Bearer"})


def permit(caller: Caller, role: Role) -> None:
    """403 unless `caller` may do what `role` may."""
    if role == "admin" and caller.role != "admin":
        raise PermissionDeniedException(
            f"this needs an admin token; token {caller.name!r} may only read"
        )


def _limit(limiter: Limiter, key: str, what: str) -> None:
    wait = limiter.take(key)
    if wait:
        raise TooManyRequestsException(
            f"too many {what}: at most {limiter.rate:g} a second; retry later",
            headers={"Retry-After": str(math.ceil(wait))},
        )


def _bearer(connection: AnyConnection) -> str | None:
    header = connection.headers.get("authorization")
    if header is None or header[: len(_BEARER)].lower() != _BEARER:
        return None
    return header[len(_BEARER) :].strip() or None


def gate(connection: AnyConnection) -> Gate:
    gate: Gate = connection.app.state.gate
    return gate


async def reader(connection: AnyConnection, _: BaseRouteHandler) -> None:
    """Guard: a read or admin token."""
    await gate(connection).caller(connection, "read", _bearer(connection))


async def admin(connection: AnyConnection, _: BaseRouteHandler) -> None:
    """Guard: an admin token."""
    await gate(connection).caller(connection, "admin", _bearer(connection))
