"""What every handler may ask for: the settings, the projectors, and the database, in lanes.

Database work never runs on the event loop. Each kind of request has a lane: a number of
connections and as many worker threads. A request waits for a place in its lane at most
CDP_DATABASE_POOL_TIMEOUT, then gets a 503; so many slow reads can never hold up /health
or a webhook, and the pool can never be waited on by more threads than it has connections.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Concatenate, ParamSpec, TypeVar

import anyio
from sqlalchemy import Connection, Engine

from cdp import db, times
from cdp.projectors import Projector
from cdp.queries import Clock
from cdp.settings import Settings

P = ParamSpec("P")
T = TypeVar("T")

# Connections kept for everything but reads: webhooks, /health, and rebuilds.
WRITE_LANE, PROBE_LANE, ADMIN_LANE = 2, 1, 1
RESERVED = WRITE_LANE + PROBE_LANE + ADMIN_LANE


class Busy(Exception):
    """No place in a lane came free in time (HTTP 503 with Retry-After)."""

    def __init__(self, lane: str, waited: timedelta) -> None:
        self.lane = lane
        super().__init__(
            f"the server is busy: no database connection for {lane} came free "
            f"within {waited.total_seconds():g} s; retry later"
        )


class Lane:
    """At most `size` calls at once, each in a worker thread of its own."""

    def __init__(self, name: str, size: int, wait: timedelta, engine: Engine) -> None:
        self.name, self.size, self.wait, self.engine = name, size, wait, engine
        self._gate: anyio.Semaphore | None = None
        self._threads: anyio.CapacityLimiter | None = None

    async def run(self, work: Callable[[], T]) -> T:
        """Run `work` (which opens its own transaction) in a thread of this lane."""
        if self._gate is None or self._threads is None:  # made on the event loop, once
            self._gate = anyio.Semaphore(self.size)
            self._threads = anyio.CapacityLimiter(self.size)
        try:
            self._gate.acquire_nowait()
        except anyio.WouldBlock:
            try:
                with anyio.fail_after(self.wait.total_seconds()):
                    await self._gate.acquire()
            except TimeoutError:
                raise Busy(self.name, self.wait) from None
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        finally:
            self._gate.release()

    async def query(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a query on a connection of its own, in a thread of this lane."""

        def work() -> T:
            with self.engine.connect() as connection:
                return query(connection, *args, **kwargs)

        return await self.run(work)


@dataclass(frozen=True)
class Service:
    settings: Settings
    engine: Engine
    projectors: list[Projector]
    reads: Lane
    webhooks: Lane
    health: Lane
    rebuilds: Lane

    @classmethod
    def of(cls, settings: Settings, projectors: list[Projector]) -> "Service":
        engine = db.engine_of(settings, connections=settings.database_pool_size)
        wait = settings.database_pool_timeout
        return cls(
            settings=settings,
            engine=engine,
            projectors=projectors,
            reads=Lane("reads", settings.database_pool_size - RESERVED, wait, engine),
            webhooks=Lane("webhooks", WRITE_LANE, wait, engine),
            health=Lane("health", PROBE_LANE, wait, engine),
            rebuilds=Lane("rebuilds", ADMIN_LANE, wait, engine),
        )

    def clock(self) -> Clock:
        """The time of this request: read once, so that one answer never disagrees with itself."""
        idle_ms = self.settings.session_idle_timeout // timedelta(milliseconds=1)
        return Clock(idle_ms, times.now_ms())
