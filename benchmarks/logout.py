"""Logout: ``POST /logout`` through this middleware (a session its process never saw,
and one it served just before), hand-written FastAPI and Flask routes (one pipeline, and
a call per command), and the floor (the same commands from redis-py alone, in its own
process: ``python -m benchmarks.logout``), in rotating rounds; the Redis round trips of
each logout, and samples checked (session deleted, token revoked).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio

from logout_middleware.core.checks import CACHE_SIZE

from . import wrk
from .apps import SESSION_KEY, audit_entry, denylist_key, logout_writes
from .common import (
    CLUSTER_VARIANTS,
    VARIANTS,
    get_request,
    logout_request,
    logout_token,
    session_id,
)
from .load import ROOT, Bench, Series, ServerRow, Stack, pin, rotate
from .redisutil import Usage, blocked_clients, wait_blocked
from .wrk import Load, Requests, exchange, numbered

__all__ = ["LogoutImpl", "logout", "logout_impls", "measure_logouts"]


#: A server process whose session cache would hold more sessions than this is restarted
#: before the sessions of a "seen" round are sent (the cache empties when full).
SEEN_CAPACITY = CACHE_SIZE * 9 // 10


@dataclass(frozen=True)
class LogoutImpl:
    """One way of logging out that the section compares.

    ``seen``: each session is used (a ``GET`` with its cookie, on the same process)
    before it logs out, so the process has read its record within the minute.
    ``middleware``: one of the variants (its follower may delete records it knows).
    """

    key: str
    label: str
    stack: str
    app: str
    path: str
    seen: bool = False
    middleware: bool = False


def logout_impls() -> list[LogoutImpl]:
    """Every logout measured: each variant on each stack, then the hand-written routes
    and the floor."""
    found: list[LogoutImpl] = []
    for v in VARIANTS:
        for stack in ("asgi", "wsgi"):
            found.append(
                LogoutImpl(
                    f"{v.name}-{stack}",
                    f"{v.label}, {stack.upper()}, session never seen",
                    stack,
                    v.name,
                    "/logout",
                    middleware=True,
                )
            )
            found.append(
                LogoutImpl(
                    f"{v.name}-{stack}-seen",
                    f"{v.label}, {stack.upper()}, session used first",
                    stack,
                    f"{v.name}-2",
                    "/logout",
                    seen=True,
                    middleware=True,
                )
            )
    found += [
        LogoutImpl(
            "fastapi-route", "FastAPI route, one pipeline", "asgi", "fastapi-routes", "/logout"
        ),
        LogoutImpl(
            "fastapi-naive",
            "FastAPI route, a call per command",
            "asgi",
            "fastapi-routes",
            "/logout-naive",
        ),
        LogoutImpl("flask-route", "Flask route, one pipeline", "wsgi", "flask-routes", "/logout"),
        LogoutImpl(
            "flask-naive",
            "Flask route, a call per command",
            "wsgi",
            "flask-routes",
            "/logout-naive",
        ),
        LogoutImpl("floor", "redis-py alone (floor)", "redis-py", "floor", ""),
    ]
    return found


def logout_requests(host: str, path: str, nonce: str, first: int) -> Requests:
    """Logouts numbered from ``first``, each with its own session and token."""
    sample = logout_request(0, host, path, nonce)
    marks = (
        (session_id(0).encode(), b"bench%010d"),
        (
            logout_token(0, nonce).encode(),
            logout_token(0, nonce).replace("0" * 12, "%012d", 1).encode(),
        ),
    )
    return Requests(template=numbered(sample, *marks), first=first, expected=303)


def _verify(admin: redis.Redis, first: int, issued: int, nonce: str) -> bool:
    """Whether sampled logouts of a run deleted their session and revoked their token."""
    if issued <= 0:
        return False
    step = max(1, issued // 10)
    for number in range(first, first + issued, step):
        if admin.exists(SESSION_KEY.format(sid=session_id(number))):
            return False
        if not admin.exists(denylist_key(logout_token(number, nonce))):
            return False
    return True


@dataclass
class _FloorRun:
    result: Load
    usage: Usage
    cpu_s: float
    #: The number of the first measured logout (the warm-up used the ones before it).
    first: int


def _floor_run(bench: Bench, first: int, seconds: float) -> _FloorRun:
    """One run of :mod:`benchmarks.floor` in its own process on the server CPU."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.logout",
        "--redis-url",
        bench.redis_url,
        "--concurrency",
        str(bench.settings.concurrency),
        "--duration",
        str(seconds),
        "--start",
        str(first),
        "--nonce",
        bench.nonce,
    ]
    if bench.server_cpu is not None:
        command += ["--cpu", str(bench.server_cpu)]
    with subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        ready = process.stdout.readline().strip()
        if ready != "ready":
            process.kill()
            raise RuntimeError(f"the floor did not start: {ready!r}")
        with bench.counter.measure() as usage:
            process.stdin.write("go\n")
            process.stdin.flush()
            line = process.stdout.readline()
        process.stdin.close()
        process.wait(timeout=30)
    data = json.loads(line)
    requests = int(data["requests"])
    p50, p90, p99 = (q / 1e6 for q in data["percentiles_ns"])
    result = Load(requests, int(data["issued"]), float(data["elapsed_s"]), 0, p50, p90, p99)
    return _FloorRun(result, usage, float(data["cpu_s"]), int(data["first"]))


def _use_sessions(bench: Bench, stack: Stack, app: str, first: int, count: int) -> bool:
    """Send a ``GET`` with each session ``first .. first + count - 1`` to the server, as a
    browser does before its user logs out (not measured); whether all answered 200.

    A process whose bounded session cache would overflow is restarted first (and its
    follower waited for), so that every one of these sessions is still known when it
    logs out."""
    if bench.sessions_sent[stack, app] + count > SEEN_CAPACITY:
        side = bench.side(app)
        bench.restart(stack, app)
        bench.log(f"  logout: restarted {stack}/{app} (its session cache was nearly full)")
        others = blocked_clients(side.watch)
        port = bench.servers.port(stack, app)
        exchange(port, get_request("cookie", f"127.0.0.1:{port}"))  # starts the follower
        if app.removesuffix("-2") in {v.name for v in (*VARIANTS, *CLUSTER_VARIANTS) if v.follows}:
            wait_blocked(side.watch, others + 1, 30.0)
    sample = get_request("cookie", bench.host(stack, app), session=session_id(0))
    template = numbered(sample, (session_id(0).encode(), b"bench%010d"))
    result = wrk.run(
        bench.servers.port(stack, app),
        Requests(template=template, first=first),
        concurrency=bench.settings.concurrency,
        duration=60.0,
        limit=count,
        cpu=bench.client_cpu,
    )
    bench.sessions_sent[stack, app] += count
    time.sleep(0.05)  # the last sessions' records read (after their responses)
    return result.requests == count and result.unexpected == 0


def logout(bench: Bench) -> list[ServerRow]:
    """Requests/s, latency and Redis round trips of ``POST /logout``: this middleware
    (for sessions its process never saw, and for sessions it served just before), hand-
    written Flask and FastAPI routes, and redis-py alone, in alternating rounds.

    Every logout has its own session (seeded in Redis beforehand) and its own token;
    samples of each run are checked afterwards: session deleted, token revoked. For the
    middleware, the ``DEL`` a follower sends for the records of sessions its process
    knows ended (its own logouts, here: already deleted) is counted apart from the
    request's round trips (``follower_deletes``; the request's own are
    ``request_round_trips``): each of its logouts' transactions holds one ``DEL``, so
    any other ``DEL`` is the follower's."""
    return measure_logouts(bench, logout_impls(), "logout", {})


def measure_logouts(
    bench: Bench, impls: list[LogoutImpl], section: str, baselines: dict[str, str]
) -> list[ServerRow]:
    """Measure ``impls`` in alternating rounds (see :func:`logout`); each row's ratio is
    against the impl ``baselines[key]`` names (the floor when it names none)."""
    settings = bench.settings
    series = {
        impl.key: Series(
            ServerRow(
                section,
                impl.stack,
                "logout",
                impl.key,
                impl.label,
                settings.concurrency,
                baselines.get(impl.key, "floor"),
                303,
            ),
            Requests(),
        )
        for impl in impls
    }
    verified = {impl.key: True for impl in impls}
    # A server in service has served requests with credentials, which started its
    # follower (whatever other sections ran before this one).
    for stack, app in dict.fromkeys((i.stack, i.app) for i in impls if i.middleware):
        port = bench.servers.port("asgi" if stack == "asgi" else "wsgi", app)
        exchange(port, get_request("cookie", f"127.0.0.1:{port}"))
    bench.settle_followers()
    # A guess of req/s, to seed sessions (and to size a "seen" run): raised as measured.
    rate = {impl.key: 3_000.0 if impl.seen else 10_000.0 for impl in impls}

    def one(impl: LogoutImpl, *, warm: bool) -> None:
        seconds = settings.warmup if warm else settings.logout_duration
        first = bench.next_logout
        extra = 0.3 if impl.stack == "redis-py" else 0.0  # the floor warms up first
        side = bench.side(impl.app)
        limit = None
        if impl.seen:
            limit = int(rate[impl.key] * seconds * 1.3) + 20
            side.seed_sessions(first, first + limit)
        else:
            side.seed_sessions(first, first + int(rate[impl.key] * (seconds + extra) * 2) + 100)
        usage: Usage = Usage()
        cpu: float | None = None
        used = True
        if impl.stack == "redis-py":
            floor = _floor_run(bench, first, seconds)
            result, usage, cpu, first = floor.result, floor.usage, floor.cpu_s, floor.first
        else:
            stack: Stack = "asgi" if impl.stack == "asgi" else "wsgi"
            if limit is not None:
                used = _use_sessions(bench, stack, impl.app, first, limit)
            make = logout_requests(bench.host(stack, impl.app), impl.path, bench.nonce, first)
            if warm:
                result = wrk.run(
                    bench.servers.port(stack, impl.app),
                    make,
                    concurrency=settings.concurrency,
                    duration=seconds,
                    limit=limit,
                    cpu=bench.client_cpu,
                )
            else:
                result, usage, cpu = bench.run(
                    stack,
                    impl.app,
                    make,
                    concurrency=settings.concurrency,
                    duration=seconds,
                    limit=limit,
                )
            if not impl.seen:
                bench.sessions_sent[stack, impl.app] += result.issued
        bench.next_logout = first + (limit if limit is not None else result.issued)
        if impl.seen:
            rate[impl.key] = result.rps
        else:
            rate[impl.key] = max(rate[impl.key], result.rps)
        if warm:
            return
        checked = _verify(side.admin, first, result.issued, bench.nonce)
        for _ in range(20):  # a slow Redis: a last look
            if checked:
                break
            time.sleep(0.05)
            checked = _verify(side.admin, first, result.issued, bench.nonce)
        ok = result.unexpected == 0 and checked
        verified[impl.key] = verified[impl.key] and ok and used
        series[impl.key].add(result, usage, cpu)

    for impl in impls:
        one(impl, warm=True)
    keys = [impl.key for impl in impls]
    by_key = {impl.key: impl for impl in impls}
    for round_ in range(settings.logout_rounds):
        for key in rotate(keys, round_):
            one(by_key[key], warm=False)
    rows: list[ServerRow] = []
    for impl in impls:
        row = series[impl.key].finish(series[baselines.get(impl.key, "floor")])
        row.verified = verified[impl.key]
        if impl.middleware:
            found = row.redis
            # Each logout writes one DEL and one audit entry (a script, inside MULTI/EXEC
            # on one Redis, in the stream's shard's batch on a cluster): any other DEL is
            # a follower's.
            written = max(found.get("exec", 0.0), found.get("eval", 0.0))
            deletes = max(0.0, found.get("del", 0.0) - written)
            found["follower_deletes"] = deletes
            found["request_round_trips"] = found.get("round_trips", 0.0) - deletes
        rows.append(row)
        bench.log(
            f"  {section} {impl.key:26} {row.rps:8.0f} req/s  x{row.ratio:.3f} of "
            f"{row.baseline}  p99 {row.p99_ms:.2f} ms  redis rt/logout "
            f"{row.redis.get('round_trips', 0):.2f} (request "
            f"{row.redis.get('request_round_trips', math.nan):.2f}, follower DEL "
            f"{row.redis.get('follower_deletes', math.nan):.2f})  verified {row.verified}"
        )
    return rows


# -- the floor: redis-py alone, in its own process on the server CPU ---------------


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
        "percentiles_ns": [_quantile(latencies, q) for q in (0.5, 0.9, 0.99)],
    }
    # Report, then wait for the suite to have read Redis's counters before closing:
    # closing a connection costs Redis a read too.
    print(json.dumps(result), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await client.aclose()


def _quantile(values: list[int], fraction: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]) if values else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.logout")
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
