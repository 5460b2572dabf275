"""GET /events/stream: the log as Server-Sent Events, live, each event once across reconnections.

The streams are read from real `cdp serve` processes, as a client library reads them: it keeps
the id of the last message and sends it as Last-Event-ID when it connects again. Nothing here
is timed: a test waits for what it expects, for a long while before it gives up.
"""

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import Engine

from cdp.access import credentials
from cdp.db import make_engine
from cdp.http.app import create_app
from cdp.log import store
from cdp.settings import Settings
from tests.api import test_outages
from tests.api.conftest import rebuilt
from tests.api.test_metrics import scraped
from tests.conftest import Server
from tests.factories import JSON_TYPE, PAST, webhook

pytestmark = pytest.mark.slow

# A quiet stream says so every second: every wait below sees a message at least that often.
QUIET = {"CDP_STREAM_HEARTBEAT": "1"}
PATIENCE = 60  # seconds a test waits for what it expects


@dataclass
class Message:
    """One message of an event stream, as EventSource reads it; comments kept apart."""

    id: int | None = None
    event: str | None = None
    data: Any = None  # the JSON it carries
    retry: int | None = None
    comments: list[str] = field(default_factory=list)


def messages(response: httpx.Response) -> Iterator[Message]:
    """The messages of a stream as they arrive, until it ends."""
    fields: dict[str, list[str]] = {}
    comments: list[str] = []
    for line in response.iter_lines():
        if line.startswith(":"):
            comments.append(line[1:].strip())
        elif line:
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))
        elif fields or comments:
            data = "\n".join(fields["data"]) if "data" in fields else None
            yield Message(
                id=int(fields["id"][-1]) if "id" in fields else None,
                event=fields.get("event", [None])[-1],
                data=None if data is None else json.loads(data),
                retry=int(fields["retry"][-1]) if "retry" in fields else None,
                comments=comments,
            )
            fields, comments = {}, []


class Reader:
    """A client of the stream: it connects again after the last id it got, as EventSource does."""

    def __init__(self, url: str, headers: dict[str, str] | None = None, **params: Any) -> None:
        self.url, self.headers, self.params = url, headers or {}, params
        self.events: list[dict[str, Any]] = []  # the data of every event received, in order
        self.ids: list[int] = []
        self.comments: list[str] = []
        self.connections = 0

    def read(
        self, until: Callable[[], bool], *, leave_after: int | None = None, after: int = 0
    ) -> bool:
        """Connect (with Last-Event-ID, after the first time) and read until `until()` holds or
        `leave_after` events came, then leave; False if the stream ended first."""
        deadline = time.monotonic() + PATIENCE
        headers = dict(self.headers)
        if self.ids:
            headers["Last-Event-ID"] = str(self.ids[-1])
        self.connections += 1
        timeout = httpx.Timeout(10, read=PATIENCE)
        params = {"after": after, **self.params}
        taken = 0
        with httpx.stream(
            "GET", f"{self.url}/events/stream", params=params, headers=headers, timeout=timeout
        ) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for message in messages(response):
                self.comments += message.comments
                if message.data is not None:
                    assert message.event == "logged"
                    assert message.id == message.data["position"]
                    self.events.append(message.data)
                    self.ids.append(message.id)
                    taken += 1
                if until() or taken == leave_after:
                    return True
                assert time.monotonic() < deadline, f"still waiting after {PATIENCE} s"
        return until()

    def wait_for(self, count: int) -> None:
        """Read, connecting again whenever the stream ends, until `count` events came."""
        for _ in range(PATIENCE):
            if self.read(lambda: len(self.ids) >= count):
                return
        raise AssertionError(f"{len(self.ids)} events of {count} came")


def post(
    url: str, *bodies: dict[str, Any], source: str = "default", secret: str | None = None
) -> list[int]:
    """Post each webhook (until it is taken, if the database is away); their positions."""
    positions = []
    query = {} if secret is None else {"token": secret}
    with httpx.Client(base_url=url, timeout=PATIENCE) as client:
        for body in bodies:
            for _ in range(PATIENCE * 10):
                answer = client.post(
                    f"/webhooks/fasttrack/{source}",
                    params=query,
                    content=json.dumps(body),
                    headers=JSON_TYPE,
                )
                if answer.status_code != 503:
                    break
            assert answer.status_code == 202, answer.text
            positions.append(answer.json()["position"])
    return positions


def then(
    action: Callable[[], object], reader: Reader, count: int, *, once: int = 0
) -> Callable[[], bool]:
    """A condition for Reader.read that does `action` once the reader is connected and has
    `once` events, and holds once it has `count`."""
    done: list[object] = []

    def condition() -> bool:
        if not done and len(reader.ids) >= once:
            done.append(action())
        return len(reader.ids) >= count

    return condition


def messages_in(chat: str, first: int, count: int) -> list[dict[str, Any]]:
    return [
        webhook("message_created", chat=chat, profile=chat, at=PAST + n, message=f"message {n}")
        for n in range(first, first + count)
    ]


@pytest.fixture
def quiet(serve: Callable[..., Server]) -> Callable[..., Server]:
    """A server whose streams send a comment after a second of silence."""
    return partial(serve, **QUIET)


def test_a_stream_sends_the_log_in_order_then_each_event_as_it_is_logged(
    quiet: Callable[..., Server],
) -> None:
    url = quiet().url
    logged = post(url, *messages_in("c1", 0, 5), *messages_in("c2", 5, 4))
    # A body as received, line breaks and all: its message spans several data lines.
    pretty = json.dumps(messages_in("c2", 9, 1)[0], indent=2).replace("\n", "\r\n")
    logged.append(
        httpx.post(f"{url}/webhooks/fasttrack", content=pretty, headers=JSON_TYPE).json()[
            "position"
        ]
    )
    reader = Reader(url)

    more = partial(post, url, *messages_in("c1", 10, 3))  # once the reader has the first ten

    assert reader.read(then(more, reader, 13, once=10))
    assert reader.connections == 1
    assert reader.ids == list(range(1, 14))
    assert reader.ids[:10] == logged
    with httpx.Client(base_url=url) as client:
        assert reader.events == [client.get(f"/events/{n}").json() for n in reader.ids]
    assert [event["body"]["payload"]["message"]["text"] for event in reader.events[10:]] == [
        "message 10",
        "message 11",
        "message 12",
    ]


def test_a_quiet_stream_says_how_soon_to_come_back_and_that_it_is_alive(
    quiet: Callable[..., Server],
) -> None:
    url = quiet().url
    with httpx.stream("GET", f"{url}/events/stream", timeout=PATIENCE) as response:
        stream = messages(response)
        first, second = next(stream), next(stream)
    assert (first.retry, first.data, first.id) == (2000, None, None)
    assert (second.comments, second.data) == (["keep-alive"], None)


def test_a_reader_that_connects_again_misses_nothing_and_gets_nothing_twice(
    quiet: Callable[..., Server],
) -> None:
    url = quiet().url
    sent: list[int] = []
    poster = threading.Thread(target=lambda: sent.extend(post(url, *messages_in("c", 0, 200))))
    poster.start()
    reader = Reader(url)

    # It leaves after a few events each time (and asks for after=0, which Last-Event-ID beats).
    for leave_after in itertools.cycle([1, 7, 2, 23, 3, 50]):
        reader.read(lambda: len(reader.ids) >= 200, leave_after=leave_after, after=0)
        if len(reader.ids) >= 200:
            break
    poster.join()

    assert reader.connections > 5
    assert sent == reader.ids == list(range(1, 201))


def test_a_filtered_stream_sends_only_the_events_that_match_in_position_order(
    quiet: Callable[..., Server], engine: Engine
) -> None:
    with engine.begin() as connection:
        default = credentials.add_source(connection, "default").secret
        shop = credentials.add_source(connection, "shop").secret
    url = quiet().url
    post(url, *messages_in("a", 0, 3), secret=default)
    post(url, webhook("operator_replied", chat="a", at=PAST + 3, operator="op"), secret=default)
    post(url, *messages_in("b", 4, 3), secret=default)
    post(url, *messages_in("s", 7, 2), source="shop", secret=shop)
    post(url, webhook("operator_replied", chat="a", at=PAST + 9, operator="op"), secret=default)
    filters: dict[str, dict[str, str]] = {
        "chat_uuid": {"chat_uuid": "a"},
        "event_type": {"event_type": "operator_replied"},
        "source": {"source": "shop"},
        "two at once": {"chat_uuid": "a", "event_type": "message_created"},
        "none": {"chat_uuid": "nobody"},
    }
    with httpx.Client(base_url=url) as client:
        for name, where in filters.items():
            expected = client.get("/events", params={**where, "limit": 1000}).json()["items"]
            reader = Reader(url, **where, until=10)
            assert not reader.read(lambda: False), name  # until=10: it ends, with the head at 10
            assert reader.events == expected, name
            assert reader.ids == sorted(set(reader.ids)), name

    # Live, the first event that matches is the next one sent, however many came before it.
    reader = Reader(url, chat_uuid="a")
    assert reader.read(lambda: len(reader.ids) == 5)

    def more() -> None:
        post(url, *messages_in("b", 10, 3), secret=default)
        post(url, webhook("operator_replied", chat="a", at=PAST + 13), secret=default)

    assert reader.read(then(more, reader, 6))
    assert reader.ids == [1, 2, 3, 4, 10, 14]


def test_a_stream_needs_a_read_token_and_positions_that_are_numbers(
    settings: Settings, engine: Engine
) -> None:
    with engine.begin() as connection:
        token = credentials.create_token(connection, "reader", "read")
    bearer = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(settings)) as client:
        # Each ends at once (until=0) if it is taken: this client reads an answer to its end.
        ask = partial(client.get, "/events/stream", params={"until": 0})
        refused = ask()
        wrong = ask(headers={"Authorization": "x"})
        taken = ask(headers=bearer)
        bad_after = ask(params={"until": 0, "after": "-1"}, headers=bearer)
        bad_ids = [
            ask(headers={**bearer, "Last-Event-ID": value})
            for value in ("null", "-1", "1.5", "9223372036854775808", "")
        ]

    assert refused.status_code == wrong.status_code == 401
    assert refused.headers["WWW-Authenticate"] == "Bearer"
    assert taken.status_code == 200
    assert taken.text == "retry: 2000\r\n\r\n"  # until=0: nothing to send, and it ends
    assert bad_after.status_code == 400
    assert bad_after.json()["errors"][0]["path"] == "after"
    for answer in bad_ids:
        assert answer.status_code == 400
        (error,) = answer.json()["errors"]
        assert error["path"] == "Last-Event-ID"
        assert error["message"].startswith("must be a position in the log, an integer from 0")


def test_streams_beyond_the_limit_are_refused_until_one_ends(
    quiet: Callable[..., Server],
) -> None:
    url = quiet(CDP_MAX_STREAMS="2").url
    timeout = httpx.Timeout(10, read=PATIENCE)
    # A stream's messages are kept while it is open: dropping them closes its connection.
    with (
        httpx.Client(base_url=url, timeout=timeout) as client,
        client.stream("GET", "/events/stream") as first,
    ):
        kept = [messages(first)]
        with client.stream("GET", "/events/stream") as second:
            kept.append(messages(second))
            assert [next(stream).retry for stream in kept] == [2000, 2000]
            refused = client.get("/events/stream")
            assert refused.status_code == 503
            assert refused.headers["Retry-After"]
            assert "at most 2 open at once (CDP_MAX_STREAMS)" in refused.json()["detail"]
            assert client.get("/events").status_code == 200  # other reads go on
        # The second left: its place is given back once the server sees it go.
        for _ in range(PATIENCE * 10):
            with client.stream("GET", "/events/stream") as third:
                if third.status_code == 200:
                    break
            time.sleep(0.1)
        assert third.status_code == 200


def test_a_stream_ends_once_its_token_is_revoked(
    quiet: Callable[..., Server], engine: Engine
) -> None:
    with engine.begin() as connection:
        token = credentials.create_token(connection, "reader", "read")
        credentials.create_token(connection, "admin", "admin")
    reader = Reader(quiet().url, headers={"Authorization": f"Bearer {token}"})
    assert reader.read(lambda: True)  # connected

    def revoked() -> bool:
        with engine.begin() as connection:
            credentials.revoke_token(connection, "reader")
        return False

    assert not reader.read(then(revoked, reader, 1))  # the stream ended of itself
    with httpx.Client(base_url=reader.url) as client:
        again = client.get("/events/stream", headers=reader.headers)
    assert again.status_code == 401


def test_a_stream_goes_on_across_a_rebuild(quiet: Callable[..., Server]) -> None:
    url = quiet().url
    post(url, *messages_in("c", 0, 10))
    reader = Reader(url)

    def rebuild_and_post() -> None:
        with httpx.Client(base_url=url, timeout=PATIENCE) as client:
            rebuilt(client)  # answered at once, then waited for
        post(url, *messages_in("c", 10, 10))

    assert reader.read(then(rebuild_and_post, reader, 20))
    assert reader.connections == 1
    assert reader.ids == list(range(1, 21))


def test_a_stream_ends_as_its_server_stops_and_the_reader_goes_on_with_the_next(
    database: str, serve_on: Callable[..., Server]
) -> None:
    server = serve_on(database, **QUIET)
    post(server.url, *messages_in("c", 0, 3))
    reader = Reader(server.url)
    assert reader.read(lambda: len(reader.ids) == 3)

    # The stream ends as a stream does (a connection cut short would be an error here), and
    # the server stops: it does not wait for the stream, which would never end by itself.
    assert not reader.read(then(server.process.terminate, reader, 4))
    server.process.wait(timeout=PATIENCE)

    reader.url = serve_on(database, **QUIET).url
    post(reader.url, *messages_in("c", 3, 2))
    reader.wait_for(5)
    assert reader.ids == list(range(1, 6))


# A PostgreSQL server of the test's own that stops, and SQLite locked by another process.
outage = test_outages.outage


def test_a_stream_waits_while_the_database_is_away_and_goes_on_once_it_is_back(
    outage: test_outages.Outage, serve_on: Callable[..., Server]
) -> None:
    url = serve_on(outage.url, **QUIET, **outage.settings).url
    post(url, *messages_in("c", 0, 5))
    reader = Reader(url)
    assert reader.read(lambda: len(reader.ids) == 5)

    went_away: list[int] = []  # how many comments the reader had then

    def through_the_outage() -> bool:
        """Take the database away; three comments later, bring it back and post five more."""
        if not went_away:
            outage.begin()
            went_away.append(len(reader.comments))
        elif len(went_away) == 1 and len(reader.comments) >= went_away[0] + 3:
            outage.end()
            post(url, *messages_in("c", 5, 5))
            went_away.append(len(reader.comments))
        return len(reader.ids) == 10

    assert reader.read(through_the_outage)  # on the same connection: the stream waited

    assert reader.ids == list(range(1, 11))
    if outage.reads == 503:  # PostgreSQL stopped: the stream said why it waited
        assert any(c.endswith("cannot be reached; trying again") for c in reader.comments)
    engine = make_engine(outage.url)
    with engine.connect() as connection:
        assert store.head(connection) == 10
    engine.dispose()


# -- many streams, one reader ----------------------------------------------------------------


def metric(url: str, name: str, **labels: str) -> float:
    """A sample of the server's /metrics (an open store's), 0 if it has none yet."""
    samples = scraped(httpx.get(f"{url}/metrics", timeout=PATIENCE).text)
    return samples.get((name, frozenset(labels.items())), 0.0)


def until_true(condition: Callable[[], bool], what: str) -> None:
    for _ in range(PATIENCE * 20):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"still waiting for {what} after {PATIENCE} s")


def reading(reader: Reader, count: int) -> threading.Thread:
    """A thread in which `reader` reads until it has `count` events, or its stream ends."""
    thread = threading.Thread(target=reader.read, args=(lambda: len(reader.ids) >= count,))
    thread.start()
    return thread


def test_many_streams_each_get_the_events_their_filters_match_in_order_once(
    quiet: Callable[..., Server],
) -> None:
    url = quiet().url
    kinds = ("message_created", "operator_replied")

    def batch(first: int, count: int) -> list[dict[str, Any]]:
        return [
            webhook(kinds[n % 3 == 0], chat="abc"[n % 3 - 1], at=PAST + n, message=f"m{n}")
            for n in range(first, first + count)
        ]

    post(url, *batch(0, 30))
    wheres: list[dict[str, str]] = [
        {},
        {"chat_uuid": "a"},
        {"chat_uuid": "b", "event_type": "message_created"},
        {"event_type": "operator_replied"},
        {"chat_uuid": "nobody"},
    ]
    total = 90
    readers: list[tuple[Reader, int]] = []  # each with where it starts
    threads = []
    # Streams from the start, from the middle and from the head, before and while the log
    # grows: some catch up on their own reads, some follow the shared reader at once.
    for first, count in ((30, 30), (60, 30), (90, 0)):
        for n, where in enumerate(wheres * 3):
            start = (0, 17, first)[n // len(wheres)]
            reader = Reader(url, **where, until=total, after=start)
            readers.append((reader, start))
            threads.append(threading.Thread(target=reader.read, args=(lambda: False,)))
            threads[-1].start()
        post(url, *batch(first, count))
    for thread in threads:
        thread.join(PATIENCE)
        assert not thread.is_alive()

    with httpx.Client(base_url=url) as client:
        for reader, start in readers:
            where = {k: v for k, v in reader.params.items() if k not in ("until", "after")}
            expected = client.get("/events", params={**where, "after": start, "limit": 1000})
            assert reader.ids == [event["position"] for event in expected.json()["items"]], where
            assert reader.events == expected.json()["items"], where
            assert reader.connections == 1


def test_the_log_is_read_once_per_new_event_however_many_streams_follow_it(
    quiet: Callable[..., Server],
) -> None:
    url = quiet().url
    readers = [Reader(url) for _ in range(10)]
    threads = [reading(reader, 6) for reader in readers]
    post(url, *messages_in("c", 0, 1))
    until_true(lambda: all(len(reader.ids) == 1 for reader in readers), "the first event")
    shared = metric(url, "cdp_stream_events_read_total", reader="shared")
    own = metric(url, "cdp_stream_events_read_total", reader="own")

    post(url, *messages_in("c", 1, 5))
    for thread in threads:
        thread.join(PATIENCE)
    assert all(reader.ids == list(range(1, 7)) for reader in readers)
    # Ten streams, five new events: each read once, by the reader they share.
    assert metric(url, "cdp_stream_events_read_total", reader="shared") - shared == 5
    assert metric(url, "cdp_stream_events_read_total", reader="own") == own
    until_true(lambda: metric(url, "cdp_streams_open") == 0, "every stream to be let go")


def big(n: int) -> dict[str, Any]:
    """A message in a chat of its own, its body 64 KB long: a field that no projection keeps."""
    body = webhook("message_created", chat=f"big-{n}", at=PAST + n, message=f"m{n}")
    body["padding"] = "x" * 64_000
    return body


def test_a_stream_whose_client_does_not_read_is_cut_and_its_client_resumes_without_loss(
    quiet: Callable[..., Server],
) -> None:
    server = quiet(CDP_MAX_STREAMS="1", CDP_STREAM_BUFFER="100")
    url = server.url
    # A client with a small receive buffer, so that the server soon has to hold what it sends
    # (the server's own socket takes a few megabytes first).
    small = httpx.HTTPTransport(socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)])
    posted: list[int] = []
    with (
        httpx.Client(transport=small, timeout=httpx.Timeout(10, read=PATIENCE)) as client,
        client.stream("GET", f"{url}/events/stream") as response,
    ):
        stream = messages(response)
        assert next(stream).retry == 2000
        posted += post(url, big(0))
        assert next(stream).id == 1  # it follows the log, live
        # It reads no more: post until the server cuts it (at about 150).
        while metric(url, "cdp_streams_cut_total") == 0:
            assert len(posted) < 1000
            posted += post(url, *(big(n) for n in range(len(posted), len(posted) + 10)))
        # Its place is free though its connection is still open.
        with httpx.stream("GET", f"{url}/events/stream", params={"until": 0}) as other:
            assert other.status_code == 200
    assert "GET /events/stream: cut: its client did not read" in server.log.read_text()

    # Connected again after the last id it got, it gets the rest: nothing lost, nothing twice.
    reader = Reader(url)
    reader.ids = [1]
    reader.wait_for(len(posted))
    assert [1, *reader.ids[1:]] == posted == list(range(1, len(posted) + 1))


def test_streams_are_limited_per_token_and_in_all_each_limit_named_when_reached(
    quiet: Callable[..., Server], engine: Engine
) -> None:
    with engine.begin() as connection:
        bearers = {
            name: {"Authorization": f"Bearer {credentials.create_token(connection, name, 'read')}"}
            for name in ("ann", "bob", "cid")
        }
    url = quiet(CDP_MAX_STREAMS="2", CDP_MAX_STREAMS_PER_TOKEN="1").url
    timeout = httpx.Timeout(10, read=PATIENCE)
    with (
        httpx.Client(base_url=url, timeout=timeout) as client,
        client.stream("GET", "/events/stream", headers=bearers["ann"]) as ann,
    ):
        # A stream's messages are kept while it is open: dropping them closes its connection.
        kept = [messages(ann)]
        assert next(kept[0]).retry == 2000
        again = client.get("/events/stream", headers=bearers["ann"])
        assert again.status_code == 503
        assert again.headers["Retry-After"] == "5"
        assert again.json()["detail"] == (
            "too many event streams for token 'ann': it may keep at most 1 open at once on "
            "this server (CDP_MAX_STREAMS_PER_TOKEN); close one, or retry later"
        )
        with client.stream("GET", "/events/stream", headers=bearers["bob"]) as bob:
            kept.append(messages(bob))
            assert next(kept[1]).retry == 2000
            third = client.get("/events/stream", headers=bearers["cid"])
            assert third.status_code == 503
            assert third.headers["Retry-After"] == "5"
            assert "at most 2 open at once (CDP_MAX_STREAMS)" in third.json()["detail"]
    # Both left: their places are given back once the server sees them go.
    for name in ("ann", "cid"):
        for _ in range(PATIENCE * 10):
            with httpx.stream(
                "GET", f"{url}/events/stream", params={"until": 0}, headers=bearers[name]
            ) as answer:
                if answer.status_code == 200:
                    break
            time.sleep(0.1)
        assert answer.status_code == 200, name
