"""What `cdp serve` takes from a connection before the API sees a request, and for how long.

uvicorn parses HTTP/1.1 with httptools (llhttp), which bounds neither the size of a
request's headers nor the time they take to arrive: ten connections each sending an
endless header held a gigabyte, and a connection that sends nothing is never closed.
`Protocol` is uvicorn's httptools protocol with the limits of `Limits` added, every one
checked before a byte reaches the application:

- a request's line and headers of more than CDP_MAX_HEADER_SIZE bytes are answered `431`
  and the connection closed: a connection never holds more than that, plus one read;
- a request's line and headers must arrive within CDP_HEADER_TIMEOUT of the connection
  (or of its first byte after a keep-alive wait): else `408` (or, if nothing came, the
  connection is closed without a word);
- a request's body must arrive within CDP_BODY_TIMEOUT of its headers: else the
  connection is closed, and the application sees the client leave;
- an idle keep-alive connection is closed after CDP_KEEP_ALIVE_TIMEOUT (uvicorn's own);
- at most `Limits.connections` connections are open at once. One more first closes the
  connection idle the longest (waiting for a request, or reading one's headers): so
  sockets that send nothing cannot crowd out new clients. With none idle (every
  connection in a request), the new one is answered `503` with `Retry-After` and closed.

Every connection closed for a limit is counted, and a warning says how many and why, at
most once every LOG_EVERY seconds (see Tally).
"""

import asyncio
import json
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from cdp.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar

logger = logging.getLogger("cdp.server")

LOG_EVERY: Final = 10.0  # seconds between two warnings of connections closed for limits
# Open files a server process needs besides its connections: the listening socket, its
# log, modules, the event loop's own; and per database connection (SQLite: the file, its
# write-ahead log and its shared memory), for the main pool and the keystore's.
_RESERVED_FILES: Final = 64
_FILES_PER_DATABASE_CONNECTION: Final = 3
_EXTRA_DATABASE_CONNECTIONS: Final = 4  # a build's two, the checkpointer, migrations
# How long a refused connection is kept, at most, for its request to arrive (then the
# client reads the 503 before the connection closes, rather than a reset).
REFUSED_GRACE: Final = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of one server process, in bytes, seconds and connections."""

    connections: int
    header_size: int
    header_timeout: float
    body_timeout: float
    keep_alive_timeout: int  # whole seconds: uvicorn's own timer
    wanted_connections: int  # CDP_MAX_CONNECTIONS, which `connections` may be below
    open_files: int | None  # the process's limit on open files, None if none

    @classmethod
    def of(cls, settings: Settings) -> "Limits":
        """The limits `settings` ask for, with at most as many connections as this process
        may open files for, besides those its database connections need (the soft limit is
        raised towards the hard one first, as far as that takes)."""
        pools = 2 * settings.database_pool_size + _EXTRA_DATABASE_CONNECTIONS
        reserved = _RESERVED_FILES + _FILES_PER_DATABASE_CONNECTION * pools
        wanted = settings.max_connections
        files = open_files(wanted + reserved)
        connections = wanted if files is None else max(1, min(wanted, files - reserved))
        return cls(
            connections=connections,
            header_size=settings.max_header_size,
            header_timeout=settings.header_timeout.total_seconds(),
            body_timeout=settings.body_timeout.total_seconds(),
            keep_alive_timeout=math.ceil(settings.keep_alive_timeout.total_seconds()),
            wanted_connections=wanted,
            open_files=files,
        )

    def describe(self) -> str:
        """One line for the log as the server starts."""
        said = (
            f"at most {self.connections} connections at once, headers of "
            f"{self.header_size} bytes within {self.header_timeout:g} s, bodies within "
            f"{self.body_timeout:g} s, idle connections kept {self.keep_alive_timeout} s"
        )
        if self.connections < self.wanted_connections:
            said += (
                f" (CDP_MAX_CONNECTIONS asks for {self.wanted_connections}, but this process "
                f"may open {self.open_files} files, and its database connections need some: "
                "raise its limit on open files, ulimit -n or systemd's LimitNOFILE)"
            )
        return said


def open_files(wanted: int) -> int | None:
    """The number of files this process may open, after raising its soft limit towards
    `wanted` as far as the hard limit allows; None when there is no limit (or no way to
    know one, off Unix)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    return None if soft == resource.RLIM_INFINITY else soft


# Why a connection was closed, as the warning says it.
REASONS: Final = {
    "evicted": "idle the longest, to make room for a new one",
    "refused": "refused with 503, every other one being in a request",
    "header_size": "whose headers were too large (431)",
    "header_timeout": "whose headers did not arrive in time",
    "body_timeout": "whose body did not arrive in time",
    "malformed": "that sent no HTTP/1.1 (400)",
}


@dataclass
class Tally:
    """Connections closed for a limit: counted, and reported in one warning at most every
    LOG_EVERY seconds, so that a flood of them cannot flood the log."""

    limits: Limits
    counts: dict[str, int] = field(default_factory=dict)
    last_logged: float = -math.inf
    flush_due: asyncio.TimerHandle | None = None

    def note(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.flush_due is not None:
            return
        wait = self.last_logged + LOG_EVERY - time.monotonic()
        if wait <= 0:
            self.flush()
        else:
            self.flush_due = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        self.flush_due = None
        if not self.counts:
            return
        self.last_logged = time.monotonic()
        closed = dict(self.counts)
        self.counts.clear()
        parts = [f"{count} {REASONS[reason]}" for reason, count in closed.items()]
        limits = self.limits
        logger.warning(
            "connections closed for the server's limits: %s (at most %d connections "
            "(CDP_MAX_CONNECTIONS), headers of %d bytes (CDP_MAX_HEADER_SIZE) within %g s "
            "(CDP_HEADER_TIMEOUT), bodies within %g s (CDP_BODY_TIMEOUT))",
            "; ".join(parts),
            limits.connections,
            limits.header_size,
            limits.header_timeout,
            limits.body_timeout,
            extra={"fields": {"closed": closed}},
        )


class Guard:
    """The limits of this process, what was closed for them, and its idle connections,
    the one idle the longest first."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.tally = Tally(limits)
        self.idle: OrderedDict[Protocol, None] = OrderedDict()


_guard: Guard | None = None


def install(limits: Limits) -> Guard:
    """Make `limits` those of every connection this process takes from now on."""
    global _guard
    _guard = Guard(limits)
    logger.info("taking %s", limits.describe())
    return _guard


def guard() -> Guard:
    """The limits installed (see install), or the settings' from the environment."""
    return _guard or install(Limits.of(Settings()))


class HeadTooLarge(Exception):
    """Raised in a parser callback: a request's line and headers exceed the limit."""


class Protocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools), bounded as the module says."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, object],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.guard = guard()
        self.limits = self.guard.limits
        self.reading_head = True  # between requests, or in one's line and headers
        self.head_bytes = 0  # bytes received while reading_head, for this request
        self.head_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.refused = False

    # Connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.connections and not self._make_room():
            self._refuse()
            return
        self.guard.idle[self] = None
        self.head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)

    def _make_room(self) -> bool:
        """Close the connection idle the longest; False if none is idle."""
        while self.guard.idle:
            oldest, _ = self.guard.idle.popitem(last=False)
            if not oldest.transport.is_closing():  # else it is on its way out already
                oldest.transport.close()
                self.guard.tally.note("evicted")
                return True
        return False

    def _refuse(self) -> None:
        """Answer 503 at once, and close once the request has come (or REFUSED_GRACE has
        passed): a client then reads the answer, not a reset connection."""
        self.refused = True
        self.guard.tally.note("refused")
        detail = (
            f"the server has {self.limits.connections} connections open, as many as it "
            "takes (CDP_MAX_CONNECTIONS), every one in a request: retry later"
        )
        self._answer(503, detail, [(b"retry-after", b"1")])
        self.head_timer = self.loop.call_later(REFUSED_GRACE, self.transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.idle.pop(self, None)
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    # Data

    def data_received(self, data: bytes) -> None:
        if self.refused:
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        if self.reading_head:
            if self.head_timer is None:  # the first byte after a keep-alive wait
                self.head_timer = self.loop.call_later(self.limits.header_timeout, self._head_late)
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, HeadTooLarge):
                self._head_too_large()
            else:
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # as uvicorn: the app answers the request
        if self.reading_head and self.head_bytes > self.limits.header_size:
            self._head_too_large()

    def _bad_request(self) -> None:
        """Not HTTP: 400, counted with the others closed (uvicorn logs a line for each)."""
        self.guard.tally.note("malformed")
        self.send_400_response("Invalid HTTP request received.")

    def on_headers_complete(self) -> None:
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.header_size:
            raise HeadTooLarge
        self.reading_head = False
        self._cancel_head_timer()
        self.guard.idle.pop(self, None)
        super().on_headers_complete()
        self.body_timer = self.loop.call_later(self.limits.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        self.reading_head = True
        self.head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.cycle.response_complete:
            self.guard.idle[self] = None  # waits for its next request: idle again

    # Limits

    def _head_too_large(self) -> None:
        self.guard.tally.note("header_size")
        detail = (
            f"the request's line and headers exceed {self.limits.header_size} bytes "
            "(CDP_MAX_HEADER_SIZE)"
        )
        self._answer_between(431, detail)
        self.transport.close()

    def _head_late(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        self.guard.tally.note("header_timeout")
        if self.head_bytes:
            detail = (
                f"the request's line and headers did not arrive within "
                f"{self.limits.header_timeout:g} s (CDP_HEADER_TIMEOUT)"
            )
            self._answer_between(408, detail)
        self.transport.close()

    def _body_late(self) -> None:
        """The application is reading the body: it sees the client leave, and answers no one."""
        self.body_timer = None
        if not self.transport.is_closing():
            self.guard.tally.note("body_timeout")
            self.transport.close()

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _cancel_body_timer(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None

    def _answer_between(self, status: int, detail: str) -> None:
        """Answer, unless the answer to an earlier request is still being sent (a stream,
        with the next request sent meanwhile): that one is cut off instead."""
        if self.cycle is None or self.cycle.response_complete:
            self._answer(status, detail)

    def _answer(
        self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """A whole answer of the API's shape, written before any request reached it; the
        connection closes after it."""
        body = json.dumps({"detail": detail}).encode()
        lines = [f"HTTP/1.1 {status} {_PHRASES[status]}".encode()]
        for name, value in [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *(headers or []),
        ]:
            lines.append(name + b": " + value)
        self.transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)


_PHRASES: Final = {
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


def worker_app() -> "Litestar":
    """The app of one worker process of `cdp serve --workers N`, its connections bounded
    by the settings of the environment."""
    from cdp.http.app import from_environment
    from cdp.runtime import serverlog

    settings = Settings()
    serverlog.configure(settings.log_format)
    install(Limits.of(settings))
    return from_environment()
