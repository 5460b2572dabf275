"""A real server under a stream of 100 MB bodies: each a 413, read no further, and the
server's process does not grow, not even for a moment.

`cdp serve` runs in a process of its own, on SQLite and on PostgreSQL; its memory is read
from /proc (Linux): VmRSS now, and VmHWM, the most it held since it was last reset.
"""

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest
from sqlalchemy import Engine

from cdp.settings import Settings
from tests.api.conftest import kept_deliveries
from tests.conftest import Server
from tests.factories import JSON_TYPE, now_ms, webhook

MiB: Final = 1024 * 1024
HUNDRED_MB: Final = 100 * MiB
LIMIT: Final = MiB  # CDP_MAX_BODY_SIZE, the default
# Far below one body: a server that held one, even briefly, would be caught.
MARGIN: Final = 50 * MiB


def hundred_megabytes() -> Iterator[bytes]:
    """A webhook whose message is 100 MB long, made as it is sent."""
    start, end = b'{"event_type": "message_created", "payload": {"message": {"text": "', b'"}}}'
    yield start
    left = HUNDRED_MB - len(start) - len(end)
    while left > 0:
        yield b"x" * min(left, 64 * 1024)
        left -= 64 * 1024
    yield end


def post(client: httpx.Client, *, announced: bool) -> int | None:
    """POST 100 MB, with its Content-Length or chunked; the status, or None if the server
    closed the connection before the client read an answer (it may, once it sent a 413)."""
    headers = {"Content-Length": str(HUNDRED_MB)} if announced else {}
    try:
        answer = client.post(
            "/webhooks/fasttrack", content=hundred_megabytes(), headers={**JSON_TYPE, **headers}
        )
    except httpx.TransportError:
        return None
    return answer.status_code


def memory(server: Server, item: str) -> int:
    """VmRSS or VmHWM of the server's process, in bytes."""
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == item:
            return int(value.split()[0]) * 1024
    raise AssertionError(f"no {item} in /proc/{server.process.pid}/status")


@pytest.mark.slow
def test_a_stream_of_100_mb_bodies_is_refused_and_does_not_grow_the_server(
    serve: Callable[..., Server], engine: Engine, database: str
) -> None:
    server = serve()  # nothing configured: the default source takes webhooks without a secret
    with httpx.Client(base_url=server.url, timeout=60) as client:
        body = json.dumps(webhook("message_created", chat="warm", at=now_ms(), message="hi"))
        assert (
            client.post("/webhooks/fasttrack", content=body, headers=JSON_TYPE).status_code == 202
        )
        warm = [post(client, announced=True), post(client, announced=False)]
        warmed = memory(server, "VmRSS")
        Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        answers = [post(client, announced=n % 2 == 0) for n in range(6)]
        peak = memory(server, "VmHWM")
    assert {*warm, *answers} <= {413, None}
    assert peak - warmed < MARGIN, f"{peak - warmed} bytes more at peak than after warm-up"
    kept = kept_deliveries(engine, Settings(database_url=database))
    rejections = [(row["status"], row["size"], len(row["body"])) for row in kept]
    # However the client fared, each was refused: announced, at once; chunked, after 1 MiB.
    assert rejections == [(413, HUNDRED_MB, 0), (413, LIMIT, LIMIT)] * 4
