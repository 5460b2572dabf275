"""What every handler may ask for: the settings, the projectors, and the database, in lanes.

Database work never runs on the event loop. Each kind of request has a lane: a number of
connections and as many worker threads. A request waits for a place in its lane at most
CDP_DATABASE_POOL_TIMEOUT, then gets a 503; so many slow reads can never hold up /health
or a webhook, and the pool can never be waited on by more threads than it has connections.

Webhooks go through one writer that commits them in groups: those that arrive while a
transaction is open are checked, appended and projected together in the next one.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Concatenate, ParamSpec, TypeVar

import anyio
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from cdp import db, ingest, times, webhook
from cdp.log import Receipt
from cdp.projectors import Projector
from cdp.queries import Clock
from cdp.settings import Settings
from cdp.webhook import Incoming

P = ParamSpec("P")
T = TypeVar("T")

# Connections kept for everything but reads: webhooks, /health, and rebuilds.
WRITE_LANE, PROBE_LANE, ADMIN_LANE = 1, 1, 1
# Webhooks per transaction at most, and waiting at most: beyond that, 503 at once.
GROUP, BACKLOG = 500, 2000
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


@dataclass(slots=True)
class _Delivery:
    body: bytes
    answer: "asyncio.Future[Receipt]"


class Writer:
    """Group commit: each transaction takes every webhook that arrived while the one
    before it was open. Each request still answers only once its own group committed."""

    def __init__(
        self, lane: Lane, projectors: list[Projector], settings: Settings, backlog: int = BACKLOG
    ) -> None:
        self.lane, self.projectors, self.settings = lane, projectors, settings
        self.backlog = backlog
        self.groups = 0  # transactions run
        self._waiting: list[_Delivery] = []
        self._draining: asyncio.Task[None] | None = None

    async def record(self, body: bytes) -> Receipt:
        """Log and project one webhook body; raises what parse() or the database raise."""
        if len(self._waiting) >= self.backlog:
            raise Busy("webhooks", timedelta(0))
        loop = asyncio.get_running_loop()
        delivery = _Delivery(body, loop.create_future())
        self._waiting.append(delivery)
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain())
        # Bounded while it waits for a transaction; once in one, the database's own
        # timeouts bound it, and it must not answer before its commit. A timer, not
        # wait_for: that would start a task per webhook.
        timer = loop.call_later(self.lane.wait.total_seconds(), self._expire, delivery)
        try:
            return await delivery.answer
        finally:
            timer.cancel()

    def _expire(self, delivery: _Delivery) -> None:
        """A webhook still waiting for a transaction when its time is up: 503, not stored."""
        if delivery in self._waiting and not delivery.answer.done():
            self._waiting.remove(delivery)
            delivery.answer.set_exception(Busy("webhooks", self.lane.wait))

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:GROUP], self._waiting[GROUP:]
                self.groups += 1
                try:
                    outcomes = await self.lane.run(partial(self._commit, [d.body for d in group]))
                except Exception as error:  # the database failed the whole group
                    outcomes = [error] * len(group)
                for delivery, outcome in zip(group, outcomes, strict=True):
                    if delivery.answer.done():  # its request was cancelled: the client left
                        continue
                    if isinstance(outcome, Exception):
                        delivery.answer.set_exception(outcome)
                    else:
                        delivery.answer.set_result(outcome)
        finally:
            self._draining = None

    def _commit(self, bodies: list[bytes]) -> list[Receipt | Exception]:
        """Check each body, then log and project the valid ones in one transaction."""
        latest = webhook.latest_timestamp(self.settings.max_clock_skew)
        refused: list[Exception | None] = []  # None: valid, its receipt comes from the log
        valid: list[Incoming] = []
        for body in bodies:
            try:
                valid.append(webhook.parse(body, latest=latest))
                refused.append(None)
            except (webhook.MalformedBody, webhook.InvalidWebhook) as error:
                refused.append(error)
        receipts = iter(ingest.record(self.lane.engine, valid, self.projectors) if valid else [])
        return [next(receipts) if error is None else error for error in refused]


@dataclass(frozen=True)
class Service:
    settings: Settings
    engine: Engine
    projectors: list[Projector]
    reads: Lane
    webhooks: Writer
    health: Lane
    rebuilds: Lane

    checkpointer: db.Checkpointer | None

    @classmethod
    def of(cls, settings: Settings, projectors: list[Projector]) -> "Service":
        sqlite = make_url(settings.database_url).get_backend_name() == "sqlite"
        engine = db.engine_of(
            settings, connections=settings.database_pool_size, checkpointer=sqlite
        )
        wait = settings.database_pool_timeout
        return cls(
            settings=settings,
            engine=engine,
            projectors=projectors,
            reads=Lane("reads", settings.database_pool_size - RESERVED, wait, engine),
            webhooks=Writer(Lane("webhooks", WRITE_LANE, wait, engine), projectors, settings),
            health=Lane("health", PROBE_LANE, wait, engine),
            rebuilds=Lane("rebuilds", ADMIN_LANE, wait, engine),
            checkpointer=db.Checkpointer(settings.database_url) if sqlite else None,
        )

    def start(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.start()

    def stop(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    def clock(self) -> Clock:
        """The time of this request: read once, so that one answer never disagrees with itself."""
        idle_ms = self.settings.session_idle_timeout // timedelta(milliseconds=1)
        return Clock(idle_ms, times.now_ms())
