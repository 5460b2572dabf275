"""`cdp bench --soak SECONDS`: one server under mixed traffic for a while, then checked whole.

Clients post new webhooks, post again ones already sent (as Fasttrack redelivers, at
times while the first delivery is still being answered) and ask every kind of query, for
SECONDS. Then the log must hold each webhook answered 2xx exactly once, at the position
its answer named, and every projection must be what a rebuild makes of the log.
"""

import asyncio
import hashlib
import json
import random
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, Engine, Table, select

from cdp import db
from cdp.access import credentials
from cdp.bench.run import databases, percentile, read_answer, server
from cdp.bench.traffic import TEAMS, Traffic, webhooks
from cdp.log import store
from cdp.log.store import Receipt
from cdp.privacy.keystore import Keystore
from cdp.projections import registry
from cdp.projections.runner import Projector, key_lookup, rebuild
from cdp.projections.tables import checkpoints
from cdp.settings import Settings

CLIENTS: Final = 16
# What each request of a client is: a new webhook, one sent before, or a query.
KINDS: Final = ("new", "again", "query")
SHARES: Final = (0.6, 0.15, 0.25)
QUERIES: Final = (
    "/chats/{chat}",
    "/chats/{chat}/timeline",
    "/chats/{chat}/sessions",
    "/chats/{chat}/handoffs",
    "/events?chat_uuid={chat}&limit=100",
    "/profiles/{profile}",
    "/teams/{team}/chats?state=open",
    "/handoffs?team_id={team}",
)
_RECENT: Final = 10_000  # sent webhooks a client may post again; chats and profiles to ask about
_WAIT: Final = 60  # seconds: a request not answered by then failed
_SHOWN: Final = 40  # lines of the server's log shown when the soak failed


@dataclass
class Soaked:
    """What a soak saw, and what it found afterwards."""

    seconds: float
    clients: int
    requests: Counter[str] = field(default_factory=Counter)  # by kind
    statuses: Counter[int] = field(default_factory=Counter)  # 0: no answer at all
    latencies: dict[str, list[float]] = field(
        default_factory=lambda: {"webhooks": [], "queries": []}
    )
    # Each webhook answered 2xx (by a digest of its body): the receipts it was given.
    receipts: dict[bytes, list[Receipt]] = field(default_factory=lambda: defaultdict(list))
    lost: int = 0
    duplicated: int = 0
    changed: list[str] = field(default_factory=list)  # tables a rebuild would change
    server_log: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        """Requests answered with a server error other than 503, or not answered at all."""
        failures = (n for status, n in self.statuses.items() if status >= 500 and status != 503)
        return sum(failures) + self.statuses[0]

    @property
    def passed(self) -> bool:
        return not (self.lost or self.duplicated or self.changed or self.failed)

    def report(self) -> list[str]:
        total = sum(self.requests.values())
        ok = sum(n for status, n in self.statuses.items() if 200 <= status < 300)
        errors = sorted(
            (status, n) for status, n in self.statuses.items() if not 200 <= status < 300
        )
        p99 = {
            kind: f"{percentile(times, 99) * 1000:.1f} ms" if times else "-"
            for kind, times in self.latencies.items()
        }
        return [
            f"requests: {total:,} ({total / self.seconds:,.0f}/s: new webhooks "
            f"{self.requests['new']:,}, sent again {self.requests['again']:,}, "
            f"queries {self.requests['query']:,})",
            f"2xx: {ok:,}",
            "errors: "
            + (", ".join(f"{status or 'no answer'}: {n:,}" for status, n in errors) or "none"),
            f"p99 latency: webhooks {p99['webhooks']}, queries {p99['queries']}",
            f"lost: {self.lost}",
            f"duplicated: {self.duplicated}",
            "projections equal a rebuild: "
            + ("yes" if not self.changed else f"no ({', '.join(self.changed)} differ)"),
            *(["the server's log ends:", *self.server_log[-_SHOWN:]] if not self.passed else []),
        ]


def soak(
    database: str, seconds: float, settings: Settings, *, clients: int = CLIENTS, seed: int = 1
) -> Soaked:
    """Soak a server on a fresh database of the kind (or on the server) of `database`."""
    soaked = Soaked(seconds, clients)
    with databases(database) as fresh:
        url = fresh()
        engine = db.make_engine(url)
        with engine.begin() as connection:
            secret = credentials.add_source(connection, "soak").secret
            token = credentials.create_token(connection, "soak", "read")
        target = f"/webhooks/fasttrack/soak?token={secret}"
        unlimited = {"CDP_WEBHOOK_RATE_LIMIT": "0", "CDP_READ_RATE_LIMIT": "0"}
        with tempfile.TemporaryFile() as server_log:
            with server(["-m", "cdp", "serve"], url, target, unlimited, server_log) as base:
                asyncio.run(_traffic(soaked, base, target, token, seed))
            server_log.seek(0)
            soaked.server_log = server_log.read().decode(errors="replace").splitlines()
        keystore = keystore_of(engine)
        soaked.lost, soaked.duplicated = account(engine, soaked.receipts, keystore)
        soaked.changed = rebuild_changes(engine, registry.projectors(settings), keystore)
        keystore.dispose()
        engine.dispose()
    return soaked


def account(
    engine: Engine, receipts: Mapping[bytes, Sequence[Receipt]], keystore: Keystore
) -> tuple[int, int]:
    """(lost, duplicated): the webhooks answered 2xx that the log does not hold at the
    position their answer named, and how many times more than once the log holds any
    body, or a webhook was answered as new. Bodies are opened with `keystore`'s keys."""
    held: dict[bytes, list[int]] = defaultdict(list)
    with engine.connect() as connection:
        after = 0
        while rows := store.read(connection, after=after, limit=5000):
            opened = store.bodies(rows, key_lookup(connection, keystore))
            for row, (body, _) in zip(rows, opened, strict=True):
                held[digest(body.encode())].append(row.position)
            after = rows[-1].position
    lost = sum(
        any(receipt.position not in held.get(key, ()) for receipt in answers)
        for key, answers in receipts.items()
    )
    stored_again = sum(len(positions) - 1 for positions in held.values())
    new_again = sum(
        max(sum(not receipt.duplicate for receipt in answers) - 1, 0)
        for answers in receipts.values()
    )
    return lost, stored_again + new_again


def digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


def keystore_of(engine: Engine) -> Keystore:
    """The keystore a server on this engine's database uses when CDP_KEYSTORE_URL is unset."""
    url = engine.url.render_as_string(hide_password=False)
    return Keystore.at(Settings(database_url=url).keystore())


def rebuild_changes(
    engine: Engine, projectors: Sequence[Projector], keystore: Keystore
) -> list[str]:
    """The tables a rebuild from the log would change: none when every projection is what
    a rebuild makes of the log. The rebuild is rolled back: the database is left as it was."""
    tables = [table for projector in projectors for table in projector.tables]
    tables.append(checkpoints)
    with db.writing(engine, commit=False) as connection:
        before = [_contents(connection, table) for table in tables]
        rebuild(connection, projectors, keystore)
        after = [_contents(connection, table) for table in tables]
    return [table.name for table, old, new in zip(tables, before, after, strict=True) if old != new]


def _contents(connection: Connection, table: Table) -> str:
    """A digest of every row of the table, in the order of its primary key; not when a
    checkpoint's tables were built (`built_at`), which a rebuild moves."""
    contents = hashlib.sha256()
    columns = [column for column in table.c if column.name != "built_at"]
    query = select(*columns).order_by(*table.primary_key.columns)
    for row in connection.execute(query.execution_options(yield_per=5000)):
        contents.update(repr(tuple(row)).encode())
    return contents.hexdigest()


@dataclass(frozen=True, slots=True)
class _Sent:
    body: bytes
    chat: str
    profile: str


def _fresh(seed: int) -> Iterator[_Sent]:
    """New webhooks for as long as they are asked for: seeded traffic, a part at a time."""
    part = 0
    while True:
        for body in webhooks(Traffic(events=50_000, seed=seed * 1_000_003 + part)):
            payload = body["payload"]
            line = json.dumps(body, ensure_ascii=False).encode()
            yield _Sent(line, payload["chat"]["uuid"], payload["profile"]["uuid"])
        part += 1


async def _traffic(soaked: Soaked, base: str, target: str, token: str, seed: int) -> None:
    """`soaked.clients` clients, each with a connection of its own, until the time is up."""
    host, port = base.removeprefix("http://").split(":")
    fresh = _fresh(seed)
    sent: deque[_Sent] = deque(maxlen=_RECENT)  # to post again
    known: deque[_Sent] = deque(maxlen=_RECENT)  # answered 2xx: to ask about
    chosen = random.Random(seed)
    ends = time.monotonic() + soaked.seconds
    auth = f"Authorization: Bearer {token}\r\n".encode()

    async def client() -> None:
        connection = _Connection(host, int(port))
        try:
            while time.monotonic() < ends:
                kind = chosen.choices(KINDS, SHARES)[0]
                if kind == "query" and known:
                    about = chosen.choice(known)
                    path = chosen.choice(QUERIES).format(
                        chat=about.chat, profile=about.profile, team=chosen.choice(list(TEAMS))
                    )
                    status, _, took = await connection.request(b"GET", path, auth)
                    soaked.latencies["queries"].append(took)
                else:
                    kind = "again" if kind == "again" and sent else "new"
                    if kind == "again":
                        webhook = chosen.choice(sent)
                    else:
                        webhook = next(fresh)
                        sent.append(webhook)
                    status, answer, took = await connection.request(
                        b"POST", target, b"Content-Type: application/json\r\n", webhook.body
                    )
                    soaked.latencies["webhooks"].append(took)
                    if status in (200, 202):
                        receipt = Receipt(**json.loads(answer))
                        soaked.receipts[digest(webhook.body)].append(receipt)
                        known.append(webhook)
                soaked.requests[kind] += 1
                soaked.statuses[status] += 1
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(soaked.clients)))


class _Connection:
    """A kept-alive HTTP/1.1 connection, written by hand as the bench's ingest client is;
    opened again after a request that got no answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(
        self, method: bytes, target: str, headers: bytes, body: bytes = b""
    ) -> tuple[int, bytes, float]:
        """(status, answer, seconds); status 0 when no answer came."""
        started = time.perf_counter()
        try:
            async with asyncio.timeout(_WAIT):
                if self._streams is None:
                    self._streams = await asyncio.open_connection(self.host, self.port)
                reader, writer = self._streams
                writer.write(
                    b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s"
                    % (method, target.encode(), self.host.encode(), headers, len(body), body)
                )
                status, length = await read_answer(reader)
                answer = await reader.readexactly(length)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            self.close()
            return 0, b"", time.perf_counter() - started
        return status, answer, time.perf_counter() - started

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None
