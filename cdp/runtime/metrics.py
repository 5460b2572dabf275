"""What GET /metrics reports, in Prometheus' text format.

Counters, the ingest histogram and rebuild progress are kept by the process that counts
them. With PROMETHEUS_MULTIPROC_DIR set, prometheus_client keeps them in files of that
directory instead, a file per process, and /metrics sums those of every process: any
worker answers for all. The variable is prometheus_client's own switch, read as it is
imported, so it must be set before the process starts (see multiprocess_directory).

What the database holds (the log head, each projection's position and lag) and how the
connection pools are used is never kept here: /metrics reads it each time it is scraped.
"""

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy import Engine
from sqlalchemy.pool import QueuePool

from cdp.log.store import Receipt
from cdp.log.webhook import KNOWN_TYPES, Rejection
from cdp.projections.schemas import Projection

MULTIPROCESS_DIRECTORY: Final = "PROMETHEUS_MULTIPROC_DIR"
# Litestar adds the charset to a text/ media type itself.
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST.removesuffix("; charset=utf-8")
# From a millisecond (one webhook, SQLite, idle) to past CDP_DATABASE_POOL_TIMEOUT.
INGEST_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_METHODS: Final = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def multiprocess_directory() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR, or None when it is not set; ValueError when it is no
    directory, or was set only after prometheus_client was imported (counts would then
    stay in this process and never reach the directory)."""
    if MULTIPROCESS_DIRECTORY not in os.environ:
        return None
    directory = os.environ[MULTIPROCESS_DIRECTORY]
    if not os.path.isdir(directory):
        raise ValueError(
            f"{MULTIPROCESS_DIRECTORY}={directory!r} is not a directory: create it (empty) "
            "before the server starts, or unset it for a single process"
        )
    if values.ValueClass is values.MutexValue:
        raise ValueError(
            f"{MULTIPROCESS_DIRECTORY} was set after prometheus_client was imported: "
            "set it before the process starts"
        )
    return directory


# The files prometheus_client keeps in the directory: one per kind of metric and process,
# `counter_<pid>.db`, `gauge_livesum_<pid>.db`, ... (prometheus_client.values).
_COUNTING_FILE: Final = re.compile(
    r"(?:counter|histogram|summary|gauge_(?:live)?(?:all|min|max|sum|mostrecent))_\d+\.db"
)


def counting_files(directory: str) -> list[Path]:
    """The files prometheus_client counts in, in `directory`: those of processes before
    this one, that a new start removes so that their counts are not summed too."""
    return sorted(path for path in Path(directory).iterdir() if _COUNTING_FILE.fullmatch(path.name))


def foreign_files(directory: str) -> list[Path]:
    """The other `*.db` files of `directory`: prometheus_client would read each of them as
    one it counts in (every `*.db` there), so the directory must hold none."""
    return sorted(
        path for path in Path(directory).glob("*.db") if not _COUNTING_FILE.fullmatch(path.name)
    )


def worker_stopped() -> None:
    """A worker process of several stopping: what it counted stays in the totals, its
    gauges go (prometheus_client's mark_process_dead)."""
    directory = multiprocess_directory()
    if directory is not None:
        mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]


def event_type(named: str | None) -> str:
    """The label of an event type: a known one by name, `other` for any other, `none` for a
    body that names none. A sender cannot make label values of its own."""
    if named is None:
        return "none"
    return named if named in KNOWN_TYPES else "other"


def method(named: str) -> str:
    """The label of an HTTP method: a common one by name, `other` for any a client makes up."""
    return named if named in _METHODS else "other"


@dataclass(frozen=True, slots=True)
class Reading:
    """What /metrics read from the database as it was scraped: each projection as GET
    /projections says (its position, the head, its lag in events and seconds)."""

    positions: Sequence[Projection]


class Metrics:
    """The metrics of one server process; `directory` is PROMETHEUS_MULTIPROC_DIR's."""

    def __init__(self, directory: str | None = None) -> None:
        # Process-wide: no `_created` series beside every counter.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        # With a directory, what is counted goes to its files, and /metrics reads all of
        # them: counted in the registry as well, this process's counts would show twice.
        own = self.registry if directory is None else None
        by_webhook = ("source", "event_type")
        self.accepted = Counter(
            "cdp_webhooks_accepted",
            "Webhooks logged (answered 202)",
            by_webhook,
            registry=own,
        )
        self.duplicates = Counter(
            "cdp_webhooks_duplicate",
            "Webhooks logged before, so not again (answered 200)",
            by_webhook,
            registry=own,
        )
        self.rejected = Counter(
            "cdp_webhooks_rejected",
            "Webhooks refused as bad input and kept as rejected deliveries, by their answer",
            (*by_webhook, "status"),
            registry=own,
        )
        self.ingest_seconds = Histogram(
            "cdp_webhook_ingest_seconds",
            "Seconds from a webhook's request to the commit of its transaction, for those "
            "answered 202 or 200",
            buckets=INGEST_BUCKETS,
            registry=own,
        )
        self.requests = Counter(
            "cdp_http_requests",
            "Requests answered, by route and status",
            ("method", "route", "status"),
            registry=own,
        )
        # The most recent report wins, whichever process made it; one of a process that
        # ended (a worker marked dead) is gone.
        self.rebuild_done = Gauge(
            "cdp_rebuild_events_done",
            "Events the latest rebuild has folded into the projection",
            ("projection",),
            registry=own,
            multiprocess_mode="livemostrecent",
        )
        self.rebuild_total = Gauge(
            "cdp_rebuild_events_total",
            "Events the latest rebuild of the projection has to fold",
            ("projection",),
            registry=own,
            multiprocess_mode="livemostrecent",
        )
        self.streams_open = Gauge(
            "cdp_streams_open",
            "Event streams (GET /events/stream) open",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.stream_events = Counter(
            "cdp_stream_events_read",
            "Events the event streams read from the log: by the one reader a process shares "
            "among its streams that are live (`shared`), or by a stream catching up (`own`)",
            ("reader",),
            registry=own,
        )
        self.streams_cut = Counter(
            "cdp_streams_cut",
            "Event streams cut because their client did not read as fast as events came",
            registry=own,
        )
        if directory is not None:
            MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]

    def webhook(
        self, source: str, named: str | None, outcome: Receipt | Rejection, seconds: float
    ) -> None:
        """Count a webhook whose transaction committed: logged, a duplicate or refused.
        `named` is the event type it names; `seconds` since its request, for one logged."""
        labels = (source, event_type(named))
        if isinstance(outcome, Rejection):
            self.rejected.labels(*labels, str(outcome.status)).inc()
            return
        (self.duplicates if outcome.duplicate else self.accepted).labels(*labels).inc()
        self.ingest_seconds.observe(seconds)

    def request(self, named_method: str, route: str, status: int) -> None:
        self.requests.labels(method(named_method), route, str(status)).inc()

    def rebuild_progress(self, projection: str, done: int, total: int) -> None:
        """The hook for every rebuild: `done` of the `total` events it reads are folded into
        `projection`. Called as the rebuild starts and as it goes; done == total at the end."""
        self.rebuild_done.labels(projection).set(done)
        self.rebuild_total.labels(projection).set(total)

    def exposition(self, reading: Reading | None, engines: Mapping[str, Engine]) -> bytes:
        """The text /metrics answers: what is counted, then the `reading` of the database
        (None: it could not be read) and the use of the pools of `engines`, by name."""
        scraped = _Scraped([*_database(reading), *_pools(engines)])
        return generate_latest(self.registry) + generate_latest(scraped)


class _Scraped(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def _database(reading: Reading | None) -> list[Metric]:
    up = GaugeMetricFamily(
        "cdp_database_up", "1 if /metrics could read the database as it was scraped, else 0"
    )
    up.add_metric([], 0 if reading is None else 1)
    if reading is None:
        return [up]
    head = GaugeMetricFamily("cdp_log_head", "The position of the latest event in the log")
    head.add_metric([], reading.positions[0].head if reading.positions else 0)
    by_projection = ["projection"]
    position = GaugeMetricFamily(
        "cdp_projection_position",
        "The log position the projection has reached",
        None,
        by_projection,
    )
    lag = GaugeMetricFamily(
        "cdp_projection_lag",
        "Positions between the log head and the projection",
        None,
        by_projection,
    )
    lag_seconds = GaugeMetricFamily(
        "cdp_projection_lag_seconds",
        "Seconds since the oldest event the projection has yet to fold arrived; 0 if none",
        None,
        by_projection,
    )
    for projection in reading.positions:
        position.add_metric([projection.name], projection.position)
        lag.add_metric([projection.name], projection.lag)
        lag_seconds.add_metric([projection.name], projection.lag_seconds)
    return [up, head, position, lag, lag_seconds]


def _pools(engines: Mapping[str, Engine]) -> list[Metric]:
    by_engine = ["engine"]
    size = GaugeMetricFamily(
        "cdp_database_pool_size", "Connections the pool holds at most", None, by_engine
    )
    checked_out = GaugeMetricFamily(
        "cdp_database_pool_checked_out", "Connections of the pool in use", None, by_engine
    )
    overflow = GaugeMetricFamily(
        "cdp_database_pool_overflow", "Connections open beyond the pool's size", None, by_engine
    )
    for name, engine in engines.items():
        pool = engine.pool
        if isinstance(pool, QueuePool):
            size.add_metric([name], pool.size())
            checked_out.add_metric([name], pool.checkedout())
            overflow.add_metric([name], max(0, pool.overflow()))
    return [size, checked_out, overflow]
