"""The floor of a logout's cost: the same Redis commands, sent directly with redis-py.

No HTTP, no framework: ``concurrency`` asyncio tasks on one ``redis.asyncio`` client each
send, in a closed loop, what one logout writes: ``MULTI``, ``DEL session:<id>``,
``SET logout:revoked:<sha256> 1 EX 3600``, ``XADD logout:events MAXLEN ~ 100000 ...``,
``EXEC``, in one pipeline. Run in its own process, on the server CPU, by the suite::

    python -m benchmarks.floor --redis-url redis://... --concurrency 16 --duration 1.2

After a warm-up it prints ``ready`` and waits for a line on stdin; then it measures and
prints one JSON object: ``requests``, ``issued``, ``first``, ``elapsed_s``, ``cpu_s``,
``latencies_ns``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable

import redis.asyncio

from .apps import audit_entry, logout_writes
from .server import pin
from .traffic import logout_token, session_id

__all__ = ["main"]


async def _run(url: str, concurrency: int, duration: float, start: int, nonce: str) -> None:
    client = redis.asyncio.Redis.from_url(url)
    counter = start
    latencies: list[int] = []

    def next_number() -> int:
        nonlocal counter
        counter += 1
        return counter - 1

    async def one(number: int) -> None:
        sid = session_id(number)
        token = logout_token(number, nonce)
        pipe = client.pipeline(transaction=True)
        logout_writes(pipe, sid, token, audit_entry(sid, token, "127.0.0.1", "bench"))
        await pipe.execute()

    async def worker(deadline: int, record: Callable[[int], None]) -> None:
        while True:
            began = time.perf_counter_ns()
            if began >= deadline:
                return
            await one(next_number())
            record(time.perf_counter_ns() - began)

    # Open the connections and warm up first, outside the clock; then say so and wait
    # for the go (a line on stdin), so that the suite counts only the measured logouts.
    await asyncio.gather(*(client.ping() for _ in range(concurrency)))
    warm = time.perf_counter_ns() + int(min(duration, 0.3) * 1e9)
    await asyncio.gather(*(worker(warm, lambda _: None) for _ in range(concurrency)))
    start = counter
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    cpu = time.process_time()
    began = time.perf_counter_ns()
    deadline = began + int(duration * 1e9)
    await asyncio.gather(*(worker(deadline, latencies.append) for _ in range(concurrency)))
    elapsed = (time.perf_counter_ns() - began) / 1e9
    cpu = time.process_time() - cpu
    result = {
        "requests": len(latencies),
        "issued": counter - start,
        "first": start,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "latencies_ns": latencies,
    }
    # Report, then wait for the suite to have read Redis's counters before closing:
    # closing a connection costs Redis a read too.
    print(json.dumps(result), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await client.aclose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.floor")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--start", type=int, default=0, help="number of the first logout")
    parser.add_argument("--nonce", default="", help="makes this run's tokens unique")
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    pin(args.cpu)
    asyncio.run(_run(args.redis_url, args.concurrency, args.duration, args.start, args.nonce))


if __name__ == "__main__":
    main()
