"""What every handler may ask for: the settings, the projectors, and the database, in lanes.

Database work never runs on the event loop. Each kind of request has a lane: a number of
connections and as many worker threads. A request waits for a place in its lane at most
CDP_DATABASE_POOL_TIMEOUT, then gets a 503; so many slow reads can never hold up /health
or a webhook, and the pool can never be waited on by more threads than it has connections.

Webhooks go through one writer, in a thread of its own, that commits them in groups:
those that arrive while a transaction is open are checked, appended and projected
together in the next one.
"""

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from typing import Concatenate, Final, ParamSpec, TypeVar

import anyio
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from cdp import db, times
from cdp.log import ingest, rejected, store, webhook
from cdp.log.store import Receipt
from cdp.log.webhook import Incoming
from cdp.paging import Clock
from cdp.privacy import erasure
from cdp.privacy.keystore import Keystore
from cdp.projections import builds
from cdp.projections.runner import Projector
from cdp.runtime.metrics import Metrics
from cdp.settings import Settings

logger = logging.getLogger("cdp.api")
P = ParamSpec("P")
T = TypeVar("T")

# Connections kept for everything but reads: webhooks, /health, the credentials every
# request is checked against (read again each second), and rebuilds. Each its own, so that
# none waits for another: /health never answers 503 because the credentials were being read.
WRITE_LANE, PROBE_LANE, CREDENTIALS_LANE, ADMIN_LANE = 1, 1, 1, 1
# Webhooks per transaction at most, and waiting at most: beyond that, 503 at once.
GROUP, BACKLOG = 500, 2000
# How long a build on SQLite waits at most, between two of its transactions, for the
# webhooks waiting then to be committed (see Writer.yield_to_webhooks).
YIELD_WITHIN: Final = 0.5
# A query PostgreSQL chose as a deadlock's victim (a build swapping its tables in takes
# them in its own order, a read in the query's) is run again, this many times in all: a
# read changes nothing, and the lock is gone once the other transaction ended.
QUERY_ATTEMPTS: Final = 3
_EXPIRY_EVERY_MS = 3_600_000
# Old rejected deliveries forgotten after a group at most: a transaction of milliseconds.
_EXPIRED_AT_ONCE = 500
RESERVED = WRITE_LANE + PROBE_LANE + CREDENTIALS_LANE + ADMIN_LANE
# A build's: one reads the log, one writes the new tables (in a pool of their own).
BUILD_CONNECTIONS: Final = 2


class Overloaded(Exception):
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
                raise Overloaded(self.name, self.wait) from None
        try:
            return await anyio.to_thread.run_sync(work, limiter=self._threads)
        finally:
            self._gate.release()

    async def query(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a query on a connection of its own, in a thread of this lane."""

        def work() -> T:
            for attempt in range(1, QUERY_ATTEMPTS + 1):
                try:
                    with self.engine.connect() as connection:
                        return query(connection, *args, **kwargs)
                except DBAPIError as error:
                    if attempt == QUERY_ATTEMPTS or not db.gave_way(error):
                        raise
            raise AssertionError("unreachable")

        return await self.run(work)


class Bell:
    """Wakes the tasks that wait for it on the event loop, when rung from any thread: what a
    stream that has sent the whole log waits for, besides its next poll."""

    def __init__(self) -> None:
        self._next: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def next(self) -> asyncio.Event:
        """On the event loop: the next ring. Taken before looking at what a ring announces,
        it cannot be missed."""
        if self._next is None:
            self._loop = asyncio.get_running_loop()
            self._next = asyncio.Event()
        return self._next

    def ring(self) -> None:
        """From any thread: wake every task waiting for the next ring."""
        if self._loop is not None:
            with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                self._loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._next is not None:
            self._next.set()
            self._next = None


@dataclass(slots=True)
class _Delivery:
    body: bytes
    source: str
    headers: Mapping[str, str]
    rejection: webhook.Rejection | None  # rejected already (413, 415): only to be kept
    answer: "asyncio.Future[Receipt]"
    started: float  # when its request came (time.perf_counter())
    deadline: float  # when its wait for a transaction ends (time.perf_counter())


class Writer:
    """Group commit: each transaction takes every webhook that arrived while the one
    before it was open. Each request still answers only once its own group committed.

    The transactions run one after another in a thread of the writer's own, which takes
    the next group as soon as one commits: it never waits for the event loop, busy
    answering the group before, to hand it the next.
    """

    def __init__(
        self,
        engine: Engine,
        projectors: list[Projector],
        settings: Settings,
        wait: timedelta,
        keystore: Keystore,
        metrics: Metrics,
        backlog: int = BACKLOG,
    ) -> None:
        self.engine, self.projectors, self.settings = engine, projectors, settings
        self.keystore, self.metrics = keystore, metrics
        self.wait, self.backlog = wait, backlog
        self.groups = 0  # transactions run
        self.appended = Bell()  # rung after each group that logged an event
        self._waiting: deque[_Delivery] = deque()
        guard = threading.RLock()  # guards what follows
        self._turn = threading.Condition(guard)  # wakes the thread
        self._done = threading.Condition(guard)  # tells that a group ended (see yield_to_webhooks)
        self._open = True
        self._committing = False  # the thread is in a transaction
        self._taken = False  # and has taken its group: what waits now waits for the next
        self._ended = 0  # groups ended
        self._thread: threading.Thread | None = None
        self._expired_at = 0  # when old rejected deliveries were last forgotten (ms)

    async def record(
        self,
        body: bytes,
        source: str = webhook.DEFAULT_SOURCE,
        headers: Mapping[str, str] | None = None,
        rejection: webhook.Rejection | None = None,
        started: float | None = None,
    ) -> Receipt:
        """Log and project one webhook body; raises what parse() or the database raise.

        A delivery refused as bad input (by parse(), or before: `rejection`) is kept as a
        rejected delivery, with the `headers` of interest, before its error is raised.
        `started`: when its request came (time.perf_counter()), for the ingest latency."""
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        delivery = _Delivery(
            body,
            source,
            headers or {},
            rejection,
            loop.create_future(),
            now if started is None else started,
            now + self.wait.total_seconds(),
        )
        with self._turn:
            if not self._open or len(self._waiting) >= self.backlog:
                raise Overloaded("webhooks", timedelta(0))
            self._waiting.append(delivery)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cdp-writer", daemon=True)
                self._thread.start()
            self._turn.notify()
        # Bounded while it waits for a transaction; once in one, the database's own
        # timeouts bound it, and it must not answer before its commit. A timer, not
        # wait_for: that would start a task per webhook.
        timer = loop.call_later(self.wait.total_seconds(), self._expire, delivery)
        try:
            return await delivery.answer
        finally:
            timer.cancel()
            # A refusal raised here has this frame in its traceback: were it, or the delivery
            # that holds it, still among the frame's locals, that cycle and the body in it
            # would wait for a full garbage collection, hundreds of requests away.
            del delivery, rejection

    def start(self) -> None:
        """Take webhooks (a new writer does already; one that was stopped, again)."""
        with self._turn:
            self._open = True

    def stop(self) -> None:
        """Refuse new webhooks, commit those waiting, and end the thread (blocks until then)."""
        with self._turn:
            self._open = False
            self._turn.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _expire(self, delivery: _Delivery) -> None:
        """A webhook still waiting for a transaction when its time is up: 503, not stored.

        Only while another transaction of this writer holds it up: an idle writer's thread
        is about to take it, and one beginning its transaction takes it once it holds the
        lock, or answers it itself if the lock is not had by then (see _commit); so a wait
        of 0 means "not behind another group", not "never"."""
        with self._turn:
            if not self._taken or delivery not in self._waiting:
                return
            self._waiting.remove(delivery)
        if not delivery.answer.done():
            delivery.answer.set_exception(Overloaded("webhooks", self.wait))

    def _run(self) -> None:
        """The writer's thread: a transaction per group, until stopped and nothing waits."""
        while True:
            with self._turn:
                while self._open and not self._waiting:
                    self._turn.wait()
                if not self._waiting:
                    return
                self._committing = True
            self.groups += 1
            group: list[_Delivery] = []  # taken once the transaction holds the lock
            take = partial(self._take, group)
            outcomes: Sequence[Receipt | Exception]
            try:
                outcomes = self._commit(take)
            except _LockWaitOver:  # those whose wait is over get 503; the rest wait on
                group.extend(self._overdue())
                outcomes = [Overloaded("webhooks", self.wait)] * len(group)
            except Exception as error:  # the database failed the whole group
                if not group:
                    take()
                outcomes = [error] * len(group)
            with self._turn:  # before the answers: a client's next webhook is not behind it
                self._committing = self._taken = False
                self._ended += 1
                self._done.notify_all()
            loops: dict[asyncio.AbstractEventLoop, list[int]] = {}
            for i, delivery in enumerate(group):
                loops.setdefault(delivery.answer.get_loop(), []).append(i)
            for loop, members in loops.items():
                with suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                    loop.call_soon_threadsafe(
                        _answer, [group[i] for i in members], [outcomes[i] for i in members]
                    )
            if any(isinstance(o, Receipt) and not o.duplicate for o in outcomes):
                self.appended.ring()

    def yield_to_webhooks(self, timeout: float = YIELD_WITHIN) -> None:
        """Wait, `timeout` at most, until the webhooks waiting now were committed: what a
        build on SQLite does between two of its transactions. SQLite's writers take turns at
        one lock, and one that waits for it only looks again now and then (its busy handler
        sleeps, up to 100 ms): a build that began its next transaction at once would keep
        webhooks waiting for many of them."""
        with self._done:
            if not self._waiting and not self._committing:
                return
            # The group being committed, if one is; else the next.
            until = self._ended + 1
            self._done.wait_for(lambda: self._ended >= until, timeout)

    def _overdue(self) -> list[_Delivery]:
        """Take those waiting whose wait for a transaction is over."""
        now = time.perf_counter()
        with self._turn:
            overdue = [delivery for delivery in self._waiting if delivery.deadline <= now]
            for delivery in overdue:
                self._waiting.remove(delivery)
        return overdue

    def _lock_wait(self) -> timedelta:
        """How long the next transaction may wait for the append lock: until the first
        webhook waiting now has waited CDP_DATABASE_POOL_TIMEOUT, or for the statement
        timeout if that is sooner (as any statement waits for a lock)."""
        with self._turn:
            first = self._waiting[0].deadline if self._waiting else time.perf_counter()
        left = timedelta(seconds=max(first - time.perf_counter(), 0.0))
        return min(left, self.settings.database_statement_timeout)

    def _take(self, group: list[_Delivery]) -> list[_Delivery]:
        """Fill `group` with what waits now (GROUP at most): the transaction holds the
        append lock."""
        with self._turn:
            group.extend(self._waiting.popleft() for _ in range(min(GROUP, len(self._waiting))))
            self._taken = True
        return group

    def _commit(self, take: Callable[[], list[_Delivery]]) -> list[Receipt | webhook.Rejection]:
        """Take the group once the transaction holds the append lock, check each body, then
        log and project the valid ones, and keep the refused ones, in one transaction; count
        each once it committed.

        Taken once the lock is held, not before: with several worker processes, the lock
        is theirs in turn, and what arrives while this one waits for it joins its group.
        Whatever holds the lock (another process's group, an erasure, `cdp rebuild`), it is
        waited for only until the first webhook waiting has waited its time: then this
        raises _LockWaitOver, and nothing was taken."""
        within = self._lock_wait()
        group: list[_Delivery] | None = None
        try:
            with db.writing(self.engine, within=within) as connection:
                with db.pipelined(connection):  # BEGIN and the lock in one round trip
                    store.lock(connection, within=within)
                group = take()
                outcomes = self._check_and_record(connection, group)
        except Exception as error:
            statement_timeout = self.settings.database_statement_timeout
            if group is None and db.lock_timed_out(error) and within < statement_timeout:
                raise _LockWaitOver from error
            raise
        self._count(group, [o[1] for o in outcomes], [o[0] for o in outcomes])
        self._expire_rejected(times.now_ms())
        return [o[0] for o in outcomes]

    def _check_and_record(
        self, connection: Connection, group: list[_Delivery]
    ) -> list[tuple[Receipt | webhook.Rejection, str | None]]:
        """Each delivery's outcome, with the event type it names."""
        now = times.now_ms()
        latest = webhook.latest_timestamp(self.settings.max_clock_skew)
        errors: list[webhook.Rejection | None] = []  # None: valid, its receipt comes from the log
        named: list[str | None] = []  # the event type each names
        valid: list[Incoming] = []
        kept: list[rejected.RejectedDelivery] = []
        for delivery in group:
            error = delivery.rejection
            if error is None:
                try:
                    incoming = webhook.parse(delivery.body, latest=latest, source=delivery.source)
                except webhook.Rejection as rejection:  # its traceback would keep the group
                    error = rejection.with_traceback(None)
                else:
                    valid.append(incoming)
            errors.append(error)
            named.append(valid[-1].webhook.event_type if error is None else error.event_type)
            if error is not None:
                kept.append(_rejected(delivery, error, now))
        with db.pipelined(connection, len(valid) < db.BULK_FROM):
            recorded = ingest.record_in(
                connection, valid, self.projectors, keystore=self.keystore, rejections=kept
            )
        receipts = iter(recorded)
        outcomes = [next(receipts) if error is None else error for error in errors]
        return list(zip(outcomes, named, strict=True))

    def _count(
        self,
        group: list[_Delivery],
        named: list[str | None],
        outcomes: list[Receipt | webhook.Rejection],
    ) -> None:
        """Count the webhooks of a group that committed. A failure here (a metrics file
        that cannot grow) is logged: it never turns a stored webhook's answer into an error."""
        committed = time.perf_counter()
        try:
            for delivery, event_type, outcome in zip(group, named, outcomes, strict=True):
                seconds = committed - delivery.started
                self.metrics.webhook(delivery.source, event_type, outcome, seconds)
        except Exception as error:
            logger.warning("webhooks were not counted: %s: %s", type(error).__name__, error)

    def _expire_rejected(self, now: int) -> None:
        """Forget old rejected deliveries, once an hour (in the writer's thread): a few
        hundred after each group until none is left, so that the webhooks waiting wait
        for none of them long.

        Apart from the group's transaction, which committed: a failure here is logged and
        tried again an hour later; it never turns a stored webhook's answer into an error."""
        if now - self._expired_at < _EXPIRY_EVERY_MS:
            return
        retention = self.settings.rejected_retention // timedelta(milliseconds=1)
        try:
            with db.writing(self.engine) as connection:
                before = now - retention
                forgotten = rejected.expire(connection, before, _EXPIRED_AT_ONCE, self.keystore)
        except Exception as error:
            self._expired_at = now
            reason = " ".join(str(error).split())
            logger.warning("old rejected deliveries were not forgotten: %s", reason)
        else:
            if forgotten < _EXPIRED_AT_ONCE:  # none left: again in an hour
                self._expired_at = now


class _LockWaitOver(Exception):
    """The append lock was not had before the first webhook waiting had waited its time."""


def _rejected(delivery: _Delivery, error: webhook.Rejection, now: int) -> rejected.RejectedDelivery:
    body = error.kept if isinstance(error, webhook.BodyTooLarge) else delivery.body
    announced = delivery.headers.get("content-length", "")
    size = int(announced) if announced.isdecimal() and len(announced) < 19 else len(body)
    return rejected.rejection(
        received_at=now,
        source=delivery.source,
        status=error.status,
        reason=str(error),
        size=max(size, len(body)),
        headers=delivery.headers,
        body=body,
    )


def _answer(group: list[_Delivery], outcomes: list[Receipt | Exception]) -> None:
    """On the event loop: each request of a committed group gets its own outcome."""
    for delivery, outcome in zip(group, outcomes, strict=True):
        if delivery.answer.done():  # its request was cancelled: the client left
            continue
        if isinstance(outcome, Exception):
            delivery.answer.set_exception(outcome)
        else:
            delivery.answer.set_result(outcome)


class Builder:
    """Builds of projections beside the live ones (see cdp.projections.builds), each in a thread of
    its own, on connections of its own (so that a build never waits for the queries' pool,
    nor they for it): one at a time in this process; across processes, one per projection."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        keystore: Keystore,
        metrics: Metrics,
        between: Callable[[], None] | None = None,
    ) -> None:
        self.settings, self.engine, self.keystore = settings, engine, keystore
        self.metrics = metrics
        self.between = between  # called after each of a build's transactions
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._stop = threading.Event()

    def start(self, projectors: Sequence[Projector]) -> None:
        """Start building `projectors` and return once the right to is held: BuildRunning if a
        build runs, here or in another process. Blocks: call it from a worker thread."""
        claimed, failed = threading.Event(), list[BaseException]()
        with self._guard:
            if self._thread is not None and self._thread.is_alive():
                raise builds.running_build(self.engine, projectors[0].name)

            def work() -> None:
                engine = db.engine_of(self.settings, connections=BUILD_CONNECTIONS)
                try:
                    builds.run(
                        engine,
                        projectors,
                        self.keystore,
                        report=_Progress(projectors, self.metrics, self.between),
                        on_claim=claimed.set,
                        stop=self._stop,
                    )
                except builds.Stopped as stopped:
                    _LOG.info("%s; the live tables serve on", stopped)
                except BaseException as error:  # told to the starter, or logged
                    if not claimed.is_set():
                        failed.append(error)
                        claimed.set()
                    else:
                        _LOG.exception("the build of %s failed", [p.name for p in projectors])
                finally:
                    engine.dispose()

            self._thread = threading.Thread(target=work, name="cdp-build", daemon=True)
            self._thread.start()
        wait = self.settings.database_connect_timeout + self.settings.database_pool_timeout
        if not claimed.wait(wait.total_seconds()):  # the database did not answer in time
            raise Overloaded("builds", wait)
        if failed:
            raise failed[0]

    def stop(self, wait: timedelta) -> None:
        """Stop a running build (the live projection serves on) and wait for it, `wait` at
        most: it stops between two batches."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(wait.total_seconds())


class _Progress:
    """A build's progress: on /metrics as it goes, in the server's log at every tenth."""

    def __init__(
        self,
        projectors: Sequence[Projector],
        metrics: Metrics,
        between: Callable[[], None] | None = None,
    ) -> None:
        self.names = [projector.name for projector in projectors]
        self.metrics, self.told, self.between = metrics, -1, between

    def __call__(self, done: int, total: int) -> None:
        if self.between is not None:
            self.between()
        for name in self.names:
            self.metrics.rebuild_progress(name, done, total)
        tenth = 10 * done // total if total else 10
        if tenth > self.told:
            self.told = tenth
            _LOG.info("building %s: %d of %d events", ", ".join(self.names), done, total)


_LOG: Final = logging.getLogger("cdp.builds")


@dataclass(frozen=True)
class Service:
    settings: Settings
    engine: Engine
    projectors: list[Projector]
    keystore: Keystore
    metrics: Metrics
    reads: Lane
    webhooks: Writer
    health: Lane
    credentials: Lane
    rebuilds: Lane
    builder: Builder

    checkpointer: db.Checkpointer | None
    # What long maintenance (a build, an erasure) calls between two of its transactions,
    # so that the webhooks waiting then get the lock first: on SQLite, whose writers take
    # turns at one lock that a waiting one only looks at now and then, the writer's
    # yield_to_webhooks; PostgreSQL queues them.
    between: Callable[[], None] | None

    @classmethod
    def of(cls, settings: Settings, projectors: list[Projector], metrics: Metrics) -> "Service":
        sqlite = make_url(settings.database_url).get_backend_name() == "sqlite"
        engine = db.engine_of(
            settings, connections=settings.database_pool_size, checkpointer=sqlite
        )
        wait = settings.database_pool_timeout
        keystore = Keystore.at(
            settings.keystore(),
            key_file=settings.key_path(),
            connections=settings.database_pool_size,
            wait=settings.database_pool_timeout,
            synchronous=settings.sqlite_synchronous,
        )
        writer = Writer(engine, projectors, settings, wait, keystore, metrics)
        between = writer.yield_to_webhooks if sqlite else None
        return cls(
            settings=settings,
            engine=engine,
            projectors=projectors,
            keystore=keystore,
            metrics=metrics,
            reads=Lane("reads", settings.database_pool_size - RESERVED, wait, engine),
            webhooks=writer,
            health=Lane("health", PROBE_LANE, wait, engine),
            credentials=Lane("credentials", CREDENTIALS_LANE, wait, engine),
            rebuilds=Lane("rebuilds", ADMIN_LANE, wait, engine),
            builder=Builder(settings, engine, keystore, metrics, between),
            checkpointer=db.Checkpointer(settings.database_url) if sqlite else None,
            between=between,
        )

    async def start(self) -> None:
        """Finish any erasure the main database and the keystore disagree on, or that
        stopped midway (see erasure.reconcile), then take webhooks; other processes take
        theirs between its steps. A database that cannot be reached yet is no reason not
        to start: the next start, or `cdp erase --reconcile`, finishes them."""
        between = erasure.pause(self.engine)
        try:
            await self.rebuilds.run(
                lambda: erasure.reconcile(self.engine, self.keystore, self.projectors, between)
            )
        except (Overloaded, SQLAlchemyError) as error:  # its text may name hosts: not logged
            logging.getLogger("cdp.erasure").warning(
                "erasures not reconciled with the keystore (%s: the database cannot be "
                "reached); the next start, or cdp erase --reconcile, finishes them",
                type(error).__name__,
            )
        self.webhooks.start()
        if self.checkpointer is not None:
            self.checkpointer.start()
        await self._build_what_is_needed()

    async def _build_what_is_needed(self) -> None:
        """Build anew, beside the live ones, the projections never built or built by another
        version or settings: in the background; another process may be at it already."""

        def start() -> list[str]:
            with self.engine.connect() as connection:
                needed = builds.needed(connection, self.projectors)
                needed = builds.with_dependencies(connection, self.projectors, needed)
            if needed:
                self.builder.start(needed)
            return [projector.name for projector in needed]

        try:
            started = await self.rebuilds.run(start)
        except builds.BuildRunning as busy:
            _LOG.info("not building at start: %s", busy)
        except (Overloaded, SQLAlchemyError) as error:
            _LOG.warning("not building at start: %s", type(error).__name__)
        else:
            if started:
                _LOG.info("building %s beside the live tables", ", ".join(started))

    async def stop(self) -> None:
        """Commit the webhooks still waiting, stop the threads, close the connections: in a
        worker thread, since the writer's last transaction may take a while."""
        await anyio.to_thread.run_sync(self._stop)

    def _stop(self) -> None:
        self.builder.stop(timedelta(seconds=30))
        self.webhooks.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()
        self.keystore.dispose()

    def clock(self) -> Clock:
        """The time of this request: read once, so that one answer never disagrees with itself."""
        idle_ms = self.settings.session_idle_timeout // timedelta(milliseconds=1)
        return Clock(idle_ms, times.now_ms())
