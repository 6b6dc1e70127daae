"""A small closed-loop HTTP/1.1 load generator on raw asyncio protocols.

``concurrency`` keep-alive connections each send one request, wait for the whole
response, record its latency and send the next, until ``duration`` has passed; then
each finishes the request in flight. Connections are opened before the clock starts.
Callbacks on :class:`asyncio.Protocol` (no streams, no coroutine per request) keep the
generator's own cost to a few microseconds per request, far below a Python server's.
Responses are framed by ``Content-Length`` or chunked transfer coding.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LoadResult", "exchange", "run_load", "run_pair"]

#: Give up on a run that has not finished this long after its deadline, seconds.
DRAIN_TIMEOUT = 30.0


@dataclass
class LoadResult:
    """What one run measured. ``latencies_ns`` has one entry per response."""

    requests: int
    #: Requests sent, numbered 0 to issued - 1 (each answered, unless ``errors``).
    issued: int
    elapsed_s: float
    statuses: Counter[int]
    errors: int
    latencies_ns: list[int] = field(repr=False)

    @property
    def rps(self) -> float:
        """Requests per second over the run (0 for an empty run)."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def unexpected(self, expected: int) -> int:
        """Responses with another status than ``expected``, plus transport errors."""
        return self.errors + sum(n for status, n in self.statuses.items() if status != expected)


class _Framing(Exception):
    """A response the generator cannot frame (no length, not chunked)."""


def _response_end(buf: bytearray) -> tuple[int, int] | None:
    """``(status, length)`` of the complete response at the start of ``buf``, or None."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buf[:head_end]).lower()
    status = int(head[9:12])
    body_start = head_end + 4
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        end = body_start + length
        return (status, end) if len(buf) >= end else None
    if b"\r\ntransfer-encoding: chunked" in head:
        pos = body_start
        for _chunk in range(1_000_000):
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(bytes(buf[pos:line_end]).split(b";", 1)[0], 16)
            pos = line_end + 2 + size + 2
            if len(buf) < pos:
                return None
            if size == 0:
                return status, pos
        raise _Framing("too many chunks")
    if status in (204, 304) or 100 <= status < 200:
        return status, body_start
    raise _Framing(f"response {status} has neither Content-Length nor chunked coding")


class _Run:
    """State shared by the connections of one run."""

    def __init__(
        self, make: Callable[[int], bytes], deadline_ns: int, limit: int | None = None
    ) -> None:
        self.make = make
        self.deadline_ns = deadline_ns
        #: Send no more than this many requests (None: until the deadline).
        self.limit = limit
        self.counter = 0
        self.latencies: list[int] = []
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.last_ns = 0


class _Client(asyncio.Protocol):
    def __init__(self, run: _Run, done: asyncio.Future[None]) -> None:
        self.run = run
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.sent_ns = 0
        self.in_flight = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send_next(self) -> None:
        run = self.run
        now = time.perf_counter_ns()
        if (
            now >= run.deadline_ns
            or self.transport is None
            or (run.limit is not None and run.counter >= run.limit)
        ):
            self._finish()
            return
        number = run.counter
        run.counter += 1
        self.in_flight = True
        self.sent_ns = now
        self.transport.write(run.make(number))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            found = _response_end(self.buf)
        except (_Framing, ValueError):
            self.run.errors += 1
            self._finish()
            return
        if found is None:
            return
        status, end = found
        now = time.perf_counter_ns()
        run = self.run
        run.latencies.append(now - self.sent_ns)
        run.statuses[status] += 1
        run.last_ns = max(run.last_ns, now)
        self.in_flight = False
        del self.buf[:end]
        self.send_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight:
            self.run.errors += 1
            self.in_flight = False
        self.transport = None
        if not self.done.done():
            self.done.set_result(None)

    def _finish(self) -> None:
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)


def _same(client: _Client) -> _Client:
    return client


class _Load:
    """The connections to one server, and their run."""

    def __init__(self, make: Callable[[int], bytes], limit: int | None = None) -> None:
        self.run = _Run(make, 0, limit)
        self.clients: list[_Client] = []
        self.dones: list[asyncio.Future[None]] = []
        self.start_ns = 0

    async def connect(self, host: str, port: int, concurrency: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(concurrency):
            done: asyncio.Future[None] = loop.create_future()
            client = _Client(self.run, done)
            await loop.create_connection(functools.partial(_same, client), host, port)
            self.clients.append(client)
            self.dones.append(done)

    def start(self, now_ns: int, duration: float) -> None:
        self.start_ns = now_ns
        self.run.deadline_ns = now_ns + int(duration * 1e9)
        for client in self.clients:
            client.send_next()

    async def finish(self, duration: float) -> LoadResult:
        run = self.run
        try:
            await asyncio.wait_for(asyncio.gather(*self.dones), timeout=duration + DRAIN_TIMEOUT)
        except asyncio.TimeoutError:
            run.errors += sum(1 for c in self.clients if c.in_flight)
            for client in self.clients:
                client._finish()
        elapsed = max(run.last_ns - self.start_ns, 1) / 1e9
        return LoadResult(
            requests=len(run.latencies),
            issued=run.counter,
            elapsed_s=elapsed,
            statuses=run.statuses,
            errors=run.errors,
            latencies_ns=run.latencies,
        )


async def _load_all(
    host: str,
    targets: list[tuple[int, Callable[[int], bytes]]],
    concurrency: int,
    duration: float,
    limit: int | None = None,
) -> list[LoadResult]:
    loads = [_Load(make, limit) for _, make in targets]
    for load, (port, _) in zip(loads, targets, strict=True):
        await load.connect(host, port, concurrency)
    now = time.perf_counter_ns()
    for load in loads:
        load.start(now, duration)
    return list(await asyncio.gather(*(load.finish(duration) for load in loads)))


def run_load(
    port: int,
    make: Callable[[int], bytes],
    *,
    concurrency: int,
    duration: float,
    host: str = "127.0.0.1",
    limit: int | None = None,
) -> LoadResult:
    """Load ``host:port`` with ``make(n)`` as the n-th request, closed loop.

    :param make: the raw bytes of request number n (0, 1, 2, ... across connections).
    :param concurrency: how many keep-alive connections, each with one request in flight.
    :param duration: seconds after which no new request is sent.
    :param limit: send at most this many requests (numbered 0 to limit - 1), even if
        the duration has not passed.
    """
    return asyncio.run(_load_all(host, [(port, make)], concurrency, duration, limit))[0]


def run_pair(
    first: tuple[int, Callable[[int], bytes]],
    second: tuple[int, Callable[[int], bytes]],
    *,
    concurrency: int,
    duration: float,
    host: str = "127.0.0.1",
) -> tuple[LoadResult, LoadResult]:
    """Load two servers at the same time, each as :func:`run_load` would, with the same
    clock: whatever disturbs the machine disturbs both alike."""
    a, b = asyncio.run(_load_all(host, [first, second], concurrency, duration))
    return a, b


def exchange(
    port: int, request: bytes, *, host: str = "127.0.0.1", timeout: float = 10.0
) -> tuple[int, bytes, bytes]:
    """Send one request on a new connection and read its response (framed as in a run):
    ``(status, head, body)``, the head without its blank line, the body as sent.

    :raises ConnectionError: when the server closes before a whole response.
    """
    buf = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        while (found := _response_end(buf)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before a whole response")
            buf += chunk
    status, end = found
    head_end = buf.find(b"\r\n\r\n")
    return status, bytes(buf[:head_end]), bytes(buf[head_end + 4 : end])
