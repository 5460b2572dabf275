"""The readers of `cdp bench`'s live event streams, in a process of their own.

`python -m cdp.bench.streams BASE COUNT AFTER` opens COUNT streams of the server at BASE,
each from position AFTER, and reads them as fast as they come, counting the events each
received. It writes `ready` once every stream is open; then, for each line it reads, the
fewest events any stream has received so far. It ends when its input ends, and fails (a
line on standard error, exit status 1) if a stream is refused or ends.

Plain HTTP/1.1 on asyncio streams, as the bench's other clients: a client library would
cost more than the server it measures.
"""

import asyncio
import os
import sys
import threading
from collections.abc import Callable

_MARK = b"\nid: "  # how each event's message begins, whatever chunk it arrives in
_READ = 1 << 20  # bytes
_NICENESS = 10


async def follow(base: str, count: int, after: int, received: list[int]) -> None:
    host, port = base.removeprefix("http://").split(":")
    opened = 0
    all_open = asyncio.Event()

    async def one(index: int) -> None:
        nonlocal opened
        # A buffer as large as what the server sends at once: fewer, larger reads.
        reader, writer = await asyncio.open_connection(host, int(port), limit=_READ)
        try:
            writer.write(
                b"GET /events/stream?after=%d HTTP/1.1\r\nHost: %s\r\n\r\n" % (after, host.encode())
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b"\r\n")[0].split()[1])
            if status != 200:
                raise RuntimeError(f"a stream was answered {status}: {await reader.read(500)!r}")
            opened += 1
            if opened == count:
                all_open.set()
            carry = b""  # the end of the chunk before: a mark may begin there
            while chunk := await reader.read(_READ):
                edge = len(_MARK) - 1
                received[index] += (carry + chunk[:edge]).count(_MARK) + chunk.count(_MARK)
                carry = chunk[-edge:] if len(chunk) >= edge else (carry + chunk)[-edge:]
            raise RuntimeError("a stream ended")
        finally:
            writer.close()

    tasks = [asyncio.create_task(one(index)) for index in range(count)]
    ready = asyncio.create_task(all_open.wait())
    # Bounded: a server that does not answer fails the run.
    done, _ = await asyncio.wait([*tasks, ready], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if not done:
        raise RuntimeError(f"{opened} of {count} streams opened in 60 s")
    if ready in done:
        print("ready", flush=True)
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in tasks:
        failed = task.exception() if task.done() else None
        if failed is not None:
            raise failed


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's, where it is installed (as the server uses it): reading a hundred streams
    costs it less, on a machine the server under test shares."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main() -> None:
    base, count, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # Below the server and the clients that post: a real server's stream clients run on
    # other machines, and on this one the server under test should not wait for them. They
    # still get the time they need: the server holds what they have not read yet.
    os.nice(_NICENESS)
    received = [0] * count

    def answer() -> None:
        """Each line asks for the fewest events a stream received; the end of input ends all."""
        for _ in sys.stdin:
            print(min(received), flush=True)
        os._exit(0)

    threading.Thread(target=answer, daemon=True).start()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(follow(base, count, after, received))
    except Exception as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
