"""The sections measured through real servers: pass-through, logout, logout everywhere,
the Redis Cluster column, scaling.

Every measured run records requests/s, latencies, the server process's CPU time and what
Redis did (round trips, commands). Within a section the variants being compared take
turns, round after round, in a rotating order; ratios are medians of per-round ratios.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from logout_middleware.core import RevocationKeys, sha256_hex
from logout_middleware.core.checks import CACHE_SIZE

from .apps import DENYLIST_PREFIX, EVERYWHERE, SESSION_KEY, TOKEN_TTL, denylist_key
from .loadgen import LoadResult, exchange, run_load, run_pair
from .redisutil import (
    RedisCounter,
    RedisSide,
    Usage,
    blocked_clients,
    fill_revoked,
    pin_pid,
    process_cpu_s,
    rss_mib,
    single_side,
    wait_blocked,
)
from .server import ROOT, Servers, Stack
from .settings import Settings
from .stats import median, paired_ratio, percentiles_ms, rotate
from .traffic import (
    KINDS,
    SESSION_ID,
    SUBJECT,
    TOKEN,
    everywhere_request,
    get_request,
    logout_request,
    logout_token,
    session_id,
    session_record,
)
from .variants import CLUSTER_VARIANTS, VARIANTS, is_cluster_app

__all__ = [
    "Bench",
    "EverywhereRow",
    "ExistsRow",
    "MirrorLoadRow",
    "ServerRow",
    "cluster",
    "everywhere",
    "logout",
    "passthrough",
    "scaling",
]

Log = Callable[[str], None]

#: How the report names the servers.
STACK_LABELS = {"asgi": "ASGI, uvicorn", "wsgi": "WSGI, waitress + Flask", "redis-py": "no HTTP"}


@dataclass
class ServerRow:
    """One measured series: a (section, stack, kind, variant) over all its rounds.

    ``ratio`` is requests/s relative to ``baseline`` (median of per-round ratios);
    ``cpu_us`` is the server process's CPU time per request and ``cpu_ratio`` the same
    relative to the baseline (totals over the rounds). ``redis`` holds Redis's work per
    request: ``round_trips``, ``commands``, ``redis_cpu_us`` (Redis's CPU time) and each
    command's calls; on a cluster, summed over the primaries (``round_trips`` is then
    the reads of every shard: one per shard the request sent a batch to), each
    primary's own in ``redis_shards`` (slot order).
    """

    section: str
    stack: str
    kind: str
    variant: str
    label: str
    concurrency: int
    baseline: str
    expected_status: int
    revoked_keys: int | None = None
    rps_rounds: list[float] = field(default_factory=list)
    rps: float = 0.0
    ratio: float = 1.0
    p50_ms: float = math.nan
    p90_ms: float = math.nan
    p99_ms: float = math.nan
    cpu_us: float = math.nan
    cpu_ratio: float = math.nan
    requests: int = 0
    unexpected: int = 0
    redis: dict[str, float] = field(default_factory=dict)
    redis_usec_per_exists: float = math.nan
    verified: bool | None = None
    #: Side by side: rounds in which this server and the baseline's were loaded at the
    #: same time, sharing the server CPU; req/s ratio per round, its median, and the
    #: ratio of CPU time per request over those rounds.
    paired_rounds: list[float] = field(default_factory=list)
    paired_ratio: float = math.nan
    paired_cpu_ratio: float = math.nan
    redis_shards: list[dict[str, float]] = field(default_factory=list)

    @property
    def side_ratio(self) -> float:
        """The side-by-side ratio, or the alone one when there is none."""
        return self.ratio if math.isnan(self.paired_ratio) else self.paired_ratio


@dataclass
class MirrorLoadRow:
    """Scaling: a server process started afresh with ``revoked_keys`` in Redis, until its
    follower had loaded the mirror and parked (``load_s``), and its resident memory
    then (``rss_mib``; None without a mirror: the variant keeps none)."""

    revoked_keys: int
    variant: str
    label: str
    follows: bool
    load_s: float
    rss_mib: float
    loaded: bool


@dataclass
class ExistsRow:
    """Scaling, measured directly: one ``EXISTS`` from redis-py, round trip and server time."""

    revoked_keys: int
    case: str
    client_us: float
    redis_usec: float


class _Series:
    """Collects the rounds of one :class:`ServerRow`."""

    def __init__(self, row: ServerRow) -> None:
        self.row = row
        self.latencies: list[int] = []
        self.usage = Usage()
        self.cpu_s = 0.0
        self.cpu_known = True
        # Side by side: [own CPU s, own requests, baseline CPU s, baseline requests].
        self.pair_cpu = [0.0, 0, 0.0, 0]
        self.pair_cpu_known = True

    def add_pair(
        self,
        base: LoadResult,
        own: LoadResult,
        base_cpu: float | None,
        own_cpu: float | None,
        base_status: int = 200,
    ) -> None:
        """One side-by-side round against the baseline (which answers ``base_status``)."""
        row = self.row
        if base.rps > 0:
            row.paired_rounds.append(own.rps / base.rps)
        row.unexpected += own.unexpected(row.expected_status)
        row.unexpected += base.unexpected(base_status)
        if own_cpu is None or base_cpu is None:
            self.pair_cpu_known = False
        else:
            self.pair_cpu[0] += own_cpu
            self.pair_cpu[1] += own.requests
            self.pair_cpu[2] += base_cpu
            self.pair_cpu[3] += base.requests

    def add(self, result: LoadResult, usage: Usage, cpu_s: float | None) -> None:
        row = self.row
        row.rps_rounds.append(result.rps)
        row.requests += result.requests
        row.unexpected += result.unexpected(row.expected_status)
        self.latencies += result.latencies_ns
        self.usage = self.usage + usage
        if cpu_s is None:
            self.cpu_known = False
        else:
            self.cpu_s += cpu_s

    def finish(self, baseline: _Series | None) -> ServerRow:
        row = self.row
        row.rps = median(row.rps_rounds)
        if baseline is not None:
            row.ratio = paired_ratio(row.rps_rounds, baseline.row.rps_rounds)
        for name, value in percentiles_ms(self.latencies).items():
            setattr(row, f"{name}_ms", value)
        if self.cpu_known and row.requests:
            row.cpu_us = self.cpu_s / row.requests * 1e6
            if baseline is not None and baseline.row.requests and baseline.cpu_known:
                base = baseline.cpu_s / baseline.row.requests * 1e6
                row.cpu_ratio = row.cpu_us / base if base > 0 else math.nan
        row.redis = self.usage.per(row.requests)
        row.redis_shards = [shard.per(row.requests) for shard in self.usage.shards]
        if row.paired_rounds:
            row.paired_ratio = median(row.paired_rounds)
            own_cpu, own_n, base_cpu, base_n = self.pair_cpu
            if self.pair_cpu_known and own_n and base_n and base_cpu > 0:
                row.paired_cpu_ratio = (own_cpu / own_n) / (base_cpu / base_n)
        calls = self.usage.calls.get("exists", 0)
        if calls:
            row.redis_usec_per_exists = self.usage.usec.get("exists", 0) / calls
        return row


@dataclass
class Bench:
    """What the server sections share. ``admin`` and ``counter`` are the single Redis's;
    ``cluster``, the Redis Cluster's side when the cluster section runs."""

    settings: Settings
    redis_url: str
    admin: redis.Redis
    counter: RedisCounter
    servers: Servers
    server_cpu: int | None
    log: Log
    nonce: str = field(default_factory=lambda: f"{int(time.time()) % 100_000:05d}")
    next_logout: int = 0
    #: Distinct sessions each server process has been sent (its session cache is bounded).
    sessions_sent: Counter[tuple[Stack, str]] = field(default_factory=Counter)
    cluster: RedisSide | None = None
    single: RedisSide = field(init=False)

    def __post_init__(self) -> None:
        self.single = single_side(self.redis_url, self.admin, self.counter)

    def side(self, app: str) -> RedisSide:
        """The Redis the app (or server) called ``app`` talks to."""
        if not is_cluster_app(app):
            return self.single
        if self.cluster is None:
            raise RuntimeError(f"{app} needs the Redis Cluster, which is not running")
        return self.cluster

    def run(
        self,
        stack: Stack,
        app: str,
        make: Callable[[int], bytes],
        *,
        concurrency: int,
        duration: float,
        limit: int | None = None,
    ) -> tuple[LoadResult, Usage, float | None]:
        """One measured run against a server; Redis usage and server CPU seconds."""
        server = self.servers.servers[stack, app]
        pid = server.process.pid
        with self.side(app).counter.measure() as usage:
            cpu_before = process_cpu_s(pid)
            result = run_load(
                server.port, make, concurrency=concurrency, duration=duration, limit=limit
            )
            cpu_after = process_cpu_s(pid)
        cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        return result, usage, cpu

    def restart(self, stack: Stack, app: str) -> int:
        """A fresh process for ``(stack, app)``, pinned as the others; its pid."""
        server = self.servers.restart(stack, app)
        if self.server_cpu is not None:
            pin_pid(server.process.pid, self.server_cpu)
        self.sessions_sent[stack, app] = 0
        return server.process.pid

    def settle_followers(self, timeout: float = 60.0) -> None:
        """Wait until every follower is parked (none still loading its mirror: a
        revocation that arrives while a follower loads is taken in by its catch-up
        read, which does not delete the records of the sessions it ended)."""
        for side in (self.single, self.cluster):
            if side is not None and not side.settle(timeout):
                self.log(f"  (followers on the {side.name} Redis still busy after {timeout:.0f} s)")

    def run_pair(
        self,
        stack: Stack,
        base: tuple[str, Callable[[int], bytes]],
        own: tuple[str, Callable[[int], bytes]],
        *,
        concurrency: int,
        duration: float,
    ) -> tuple[LoadResult, LoadResult, float | None, float | None]:
        """Two servers loaded at the same time (sharing the server CPU); their results and
        CPU seconds."""
        servers = [self.servers.servers[stack, app] for app in (base[0], own[0])]
        before = [process_cpu_s(s.process.pid) for s in servers]
        first, second = run_pair(
            (servers[0].port, base[1]),
            (servers[1].port, own[1]),
            concurrency=concurrency,
            duration=duration,
        )
        after = [process_cpu_s(s.process.pid) for s in servers]
        cpu = [
            None if b is None or a is None else a - b for b, a in zip(before, after, strict=True)
        ]
        return first, second, cpu[0], cpu[1]

    def warm(
        self, stack: Stack, app: str, make: Callable[[int], bytes], concurrency: int
    ) -> LoadResult:
        """An unmeasured run: connections and pools filled, code paths warm."""
        port = self.servers.port(stack, app)
        return run_load(port, make, concurrency=concurrency, duration=self.settings.warmup)

    def compare(
        self,
        stack: Stack,
        measured: list[tuple[_Series, Callable[[int], bytes]]],
        *,
        rounds: int,
        paired_rounds: int,
        concurrency: int,
        duration: float,
        paired_duration: float,
    ) -> list[ServerRow]:
        """Each series (its app is its row's ``variant``) against the first, the baseline:
        ``rounds`` rounds alone, then ``paired_rounds`` side by side with the baseline, in
        rotating order. Returns the finished rows, in order; the baseline's own
        side-by-side ratios are 1."""
        for round_ in range(rounds):
            for series, make in rotate(measured, round_):
                series.add(
                    *self.run(
                        stack, series.row.variant, make, concurrency=concurrency, duration=duration
                    )
                )
        (base, base_make), others = measured[0], measured[1:]
        for round_ in range(paired_rounds):
            for series, make in rotate(others, round_):
                series.add_pair(
                    *self.run_pair(
                        stack,
                        (base.row.variant, base_make),
                        (series.row.variant, make),
                        concurrency=concurrency,
                        duration=paired_duration,
                    )
                )
        rows = [series.finish(base) for series, _ in measured]
        rows[0].paired_ratio = rows[0].paired_cpu_ratio = 1.0
        return rows


def _fixed(data: bytes) -> Callable[[int], bytes]:
    def make(number: int) -> bytes:
        del number
        return data

    return make


# -- pass-through --------------------------------------------------------------------


def passthrough_apps(stack: Stack) -> list[tuple[str, str]]:
    """``(app, label)`` compared for ``stack``: bare first, then each variant, then the
    alternative (ASGI: ``BaseHTTPMiddleware``)."""
    found = [("bare", "bare app")] + [(v.name, v.label) for v in VARIANTS]
    if stack == "asgi":
        found.append(("basehttp", "Starlette BaseHTTPMiddleware"))
    return found


def passthrough(bench: Bench) -> list[ServerRow]:
    """Requests/s, latency, CPU and Redis work of pass-through requests, every stack, kind
    and variant, against the bare app in the same rounds (plus an A/A control).

    Two kinds of rounds: alone (each server loaded in turn: req/s, latency, CPU, Redis
    round trips) and side by side (the bare app's server and the other loaded at the same
    time on the one server CPU: their req/s ratio, which the machine's drift cannot skew).
    """
    settings = bench.settings
    # The cookie requests' session has a record, as a logged-in user's would.
    bench.admin.set(SESSION_KEY.format(sid=SESSION_ID), session_record(SUBJECT))
    rows: list[ServerRow] = []
    for stack in ("asgi", "wsgi"):
        for kind in KINDS:
            candidates = passthrough_apps(stack)
            if kind == "none":
                candidates.append(("bare-aa", "bare app again (A/A control)"))
            measured: list[tuple[_Series, Callable[[int], bytes]]] = []
            for app, label in candidates:
                port = bench.servers.port(stack, app)
                make = _fixed(get_request(kind, f"127.0.0.1:{port}"))
                row = ServerRow(
                    "passthrough", stack, kind, app, label, settings.concurrency, "bare", 200
                )
                measured.append((_Series(row), make))
                bench.warm(stack, app, make, settings.concurrency)
            bench.settle_followers()
            for row in bench.compare(
                stack,
                measured,
                rounds=settings.rounds,
                paired_rounds=settings.paired_rounds,
                concurrency=settings.concurrency,
                duration=settings.duration,
                paired_duration=settings.paired_duration,
            ):
                rows.append(row)
                bench.log(
                    f"  pass-through {stack} {kind:6} {row.variant:10} {row.rps:8.0f} req/s "
                    f"x{row.ratio:.3f} alone, x{row.paired_ratio:.3f} side by side, "
                    f"cpu x{row.cpu_ratio:.3f}/x{row.paired_cpu_ratio:.3f}  "
                    f"p99 {row.p99_ms:.2f} ms  redis rt/req {row.redis.get('round_trips', 0):.2f}"
                )
    return rows


# -- logout --------------------------------------------------------------------------

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
    result: LoadResult
    usage: Usage
    cpu_s: float
    #: The number of the first measured logout (the warm-up used the ones before it).
    first: int


def _floor_run(bench: Bench, first: int, seconds: float) -> _FloorRun:
    """One run of :mod:`benchmarks.floor` in its own process on the server CPU."""
    command = [
        sys.executable,
        "-m",
        "benchmarks.floor",
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
            raise RuntimeError(f"benchmarks.floor did not start: {ready!r}")
        with bench.counter.measure() as usage:
            process.stdin.write("go\n")
            process.stdin.flush()
            line = process.stdout.readline()
        process.stdin.close()
        process.wait(timeout=30)
    data = json.loads(line)
    requests = int(data["requests"])
    result = LoadResult(
        requests=requests,
        issued=int(data["issued"]),
        elapsed_s=float(data["elapsed_s"]),
        statuses=Counter({303: requests}),
        errors=0,
        latencies_ns=list(data["latencies_ns"]),
    )
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
    port = bench.servers.port(stack, app)
    host = f"127.0.0.1:{port}"

    def make(number: int) -> bytes:
        return get_request("cookie", host, session=session_id(first + number))

    result = run_load(
        port, make, concurrency=bench.settings.concurrency, duration=60.0, limit=count
    )
    bench.sessions_sent[stack, app] += count
    time.sleep(0.05)  # the last sessions' records read (after their responses)
    return result.requests == count and result.unexpected(200) == 0


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
    return _measure_logouts(bench, logout_impls(), "logout", {})


def _measure_logouts(
    bench: Bench, impls: list[LogoutImpl], section: str, baselines: dict[str, str]
) -> list[ServerRow]:
    """Measure ``impls`` in alternating rounds (see :func:`logout`); each row's ratio is
    against the impl ``baselines[key]`` names (the floor when it names none)."""
    settings = bench.settings
    series = {
        impl.key: _Series(
            ServerRow(
                section,
                impl.stack,
                "logout",
                impl.key,
                impl.label,
                settings.concurrency,
                baselines.get(impl.key, "floor"),
                303,
            )
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
            host = f"127.0.0.1:{bench.servers.port(stack, impl.app)}"
            begin = first

            def make(number: int) -> bytes:
                return logout_request(begin + number, host, impl.path, bench.nonce)

            if warm:
                port = bench.servers.port(stack, impl.app)
                result = run_load(
                    port, make, concurrency=settings.concurrency, duration=seconds, limit=limit
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
        ok = result.unexpected(303) == 0 and _verify(side.admin, first, result.issued, bench.nonce)
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


# -- the Redis Cluster column ----------------------------------------------------------


def cluster_logout_impls() -> list[LogoutImpl]:
    """The logouts compared on the single Redis and on the cluster: the first variant and
    its cluster twin, each stack, for a session never seen and one used first."""
    if not CLUSTER_VARIANTS:
        return []
    found: list[LogoutImpl] = []
    for stack in ("asgi", "wsgi"):
        for seen in (False, True):
            for v in (VARIANTS[0], CLUSTER_VARIANTS[0]):
                suffix = "-seen" if seen else ""
                found.append(
                    LogoutImpl(
                        f"{v.name}-{stack}{suffix}",
                        f"{v.label}, {stack.upper()}, session "
                        + ("used first" if seen else "never seen"),
                        stack,
                        f"{v.name}-2" if seen else v.name,
                        "/logout",
                        seen=seen,
                        middleware=True,
                    )
                )
    return found


def cluster_pairs() -> list[tuple[str, str]]:
    """``(variant on the single Redis, its twin on the cluster)`` names, in order."""
    singles = [v for v in VARIANTS if v.asgi is None and v.wsgi is None]
    return [(v.name, c.name) for v, c in zip(singles, CLUSTER_VARIANTS, strict=True)]


def cluster(bench: Bench) -> list[ServerRow]:
    """Each variant on the single Redis and its twin on the Redis Cluster (``-cluster``),
    measured in the same rounds: requests with a bearer JWT (with the revocation cache:
    answered from the mirror; without: one pipelined check, whose keys may live on two
    shards), alone and side by side as :func:`passthrough`; then logouts of the first
    variant (session never seen, and used first) as :func:`logout`. Every cluster row's
    ratio is against its single-Redis twin; its Redis work is summed over the primaries,
    each primary's own in ``redis_shards``."""
    settings = bench.settings
    rows: list[ServerRow] = []
    labels = {v.name: v.label for v in (*VARIANTS, *CLUSTER_VARIANTS)}
    for stack in ("asgi", "wsgi"):
        stack_: Stack = "asgi" if stack == "asgi" else "wsgi"
        for single, twin in cluster_pairs():
            measured: list[tuple[_Series, Callable[[int], bytes]]] = []
            for app in (single, twin):
                make = _fixed(get_request("bearer", f"127.0.0.1:{bench.servers.port(stack_, app)}"))
                row = ServerRow(
                    "cluster", stack, "bearer", app, labels[app], settings.concurrency, single, 200
                )
                measured.append((_Series(row), make))
                bench.warm(stack_, app, make, settings.concurrency)
            bench.settle_followers()
            for row in bench.compare(
                stack_,
                measured,
                rounds=settings.rounds,
                paired_rounds=settings.paired_rounds,
                concurrency=settings.concurrency,
                duration=settings.duration,
                paired_duration=settings.paired_duration,
            ):
                rows.append(row)
                shards = "+".join(f"{s.get('round_trips', 0):.2f}" for s in row.redis_shards)
                bench.log(
                    f"  cluster {stack} bearer {row.variant:16} {row.rps:8.0f} req/s  "
                    f"x{row.ratio:.3f} alone, x{row.paired_ratio:.3f} side by side, "
                    f"cpu {row.cpu_us:.0f} us/req  redis reads/req "
                    f"{row.redis.get('round_trips', 0):.2f}" + (f" ({shards})" if shards else "")
                )
    impls = cluster_logout_impls()
    twins = dict(cluster_pairs())
    baselines: dict[str, str] = {}
    for impl in impls:
        for single, twin in twins.items():
            if impl.key.startswith(f"{twin}-"):
                baselines[impl.key] = single + impl.key.removeprefix(twin)
        baselines.setdefault(impl.key, impl.key)
    rows += _measure_logouts(bench, impls, "cluster", baselines)
    return rows


# -- logout everywhere -------------------------------------------------------------------


@dataclass
class EverywhereRow:
    """One logout everywhere of a subject with ``sessions`` sessions, half of them used
    on each of two processes; the logout is sent to the first process with a session
    that process served (``seen``) or one only the second served (``unseen``).

    ``round_trips``: the request's own Redis round trips (exchanges: the record's
    ``GET`` and the index's ``ZRANGEBYSCORE``, in one pipeline when the process knows
    the subject, then the ``MULTI``/``EXEC``); ``socket_reads``: the reads Redis made
    for them (more when a large transaction reaches it in several pieces);
    ``follower_deletes``: the ``DEL`` s followers sent for records of ended sessions
    their process knew;
    ``follower_reads``: the followers' wake-ups; ``total_reads``: every read but the
    followers' ``XREAD`` s. Verified afterwards: the answer's
    ``sessions_ended``, records left, tombstones, the subject's not-before and index,
    and that another ended session's cookie is taken out on the second process.
    """

    stack: str
    case: str
    label: str
    sessions: int
    status: int = 0
    sessions_ended: int | None = None
    round_trips: float = math.nan
    socket_reads: float = math.nan
    total_reads: float = math.nan
    follower_deletes: float = math.nan
    follower_reads: float = math.nan
    commands: dict[str, float] = field(default_factory=dict)
    records_left: int = -1
    tombstones: int = 0
    not_before_set: bool = False
    index_left: bool = True
    stripped: bool = False
    verified: bool = False


def _everywhere_tx_deletes(known: int) -> int:
    """``DEL`` commands in the transaction of a logout everywhere whose process knows the
    records of ``known`` of the ended sessions: one per record and one for the subject's
    index (the store queues one key per command, as a cluster pipeline needs)."""
    return known + 1


def everywhere(bench: Bench) -> list[EverywhereRow]:
    """Logging out everywhere for a subject with many sessions (see
    :class:`EverywhereRow`), on both stacks, with the first variant plus an everywhere
    URI and ``LOGOUT_SESSION_SUBJECT`` (:data:`benchmarks.apps.EVERYWHERE`)."""
    settings = bench.settings
    admin = bench.admin
    config = EVERYWHERE.config(bench.redis_url)
    keys = RevocationKeys(config)
    rows: list[EverywhereRow] = []
    for stack in ("asgi", "wsgi"):
        stack_: Stack = "asgi" if stack == "asgi" else "wsgi"
        apps_ = (EVERYWHERE.name, f"{EVERYWHERE.name}-2")
        ports = [bench.servers.port(stack_, app) for app in apps_]
        for case in ("seen", "unseen"):
            subject = f"bench-everywhere-{stack}-{case}-{bench.nonce}"
            sids = [
                f"ew{stack}{case}{bench.nonce}n{i:05d}" for i in range(settings.everywhere_sessions)
            ]
            pipe = admin.pipeline(transaction=False)
            for sid in sids:
                pipe.set(SESSION_KEY.format(sid=sid), session_record(subject), ex=TOKEN_TTL)
            pipe.execute()
            row = EverywhereRow(
                stack,
                case,
                f"{STACK_LABELS[stack]}, {len(sids)} sessions, the logout's session "
                + ("served by the answering process" if case == "seen" else "never seen by it"),
                len(sids),
            )
            for i, sid in enumerate(sids):
                port = ports[i % 2]
                status, _, _ = exchange(
                    port, get_request("cookie", f"127.0.0.1:{port}", session=sid)
                )
                if status != 200:
                    raise RuntimeError(f"everywhere: GET with a session answered {status}")
            index = keys.index(subject)
            deadline = time.monotonic() + 10.0
            while admin.zcard(index) < len(sids) and time.monotonic() < deadline:
                time.sleep(0.01)
            # Steady state: both processes' followers parked, not loading their mirror.
            bench.settle_followers()
            mine = sids[0] if case == "seen" else sids[1]
            with bench.counter.measure() as usage:
                status, _, body = exchange(
                    ports[0], everywhere_request(mine, f"127.0.0.1:{ports[0]}")
                )
            row.status = status
            with contextlib.suppress(ValueError, TypeError, KeyError):
                row.sessions_ended = int(json.loads(body)["sessions_ended"])
            found = usage.per(1)
            # The answering process knows the records of the sessions it served.
            written = _everywhere_tx_deletes(len(sids[::2])) * found.get("exec", 0.0)
            deletes = max(0.0, found.get("del", 0.0) - written)
            row.total_reads = found["round_trips"]
            row.follower_deletes = deletes
            row.socket_reads = found["round_trips"] - deletes
            # The record and the subject's index are read in one pipeline when the
            # answering process knows the subject (it served the session), else one after
            # the other; then the transaction: one exchange each.
            get, ranges = found.get("get", 0.0), found.get("zrangebyscore", 0.0)
            reads = max(get, ranges) if case == "seen" else get + ranges
            row.round_trips = reads + found.get("exec", 0.0)
            row.follower_reads = found.get("follower_reads", 0.0)
            row.commands = {k: v for k, v in found.items() if k not in ("round_trips",)}
            row.records_left = int(admin.exists(*(SESSION_KEY.format(sid=sid) for sid in sids)))
            row.tombstones = int(
                admin.exists(*(keys.session(sha256_hex(sid.encode())) for sid in sids))
            )
            row.not_before_set = bool(admin.exists(keys.not_before(subject)))
            row.index_left = bool(admin.exists(index))
            # Another ended session, on the process that did not answer the logout: its
            # cookie is taken out of the request and expired in the response.
            other = ports[1]
            status2, head, _ = exchange(
                other, get_request("cookie", f"127.0.0.1:{other}", session=sids[3])
            )
            row.stripped = status2 == 200 and b"\r\nset-cookie: session=;" in head.lower()
            row.verified = (
                status == 200
                and row.sessions_ended == len(sids)
                and row.records_left == 0
                and row.tombstones == len(sids)
                and row.not_before_set
                and not row.index_left
                and row.stripped
            )
            rows.append(row)
            bench.log(
                f"  everywhere {stack} {case:6} {len(sids)} sessions: {row.round_trips:.0f} "
                f"round trips (+{row.follower_deletes:.0f} follower DEL), ended "
                f"{row.sessions_ended}, records left {row.records_left}, tombstones "
                f"{row.tombstones}, cookie taken out {row.stripped}, verified {row.verified}"
            )
    return rows


# -- scaling -------------------------------------------------------------------------


def _exists_direct(bench: Bench, key: str, calls: int) -> tuple[float, float]:
    """Microseconds per ``EXISTS key`` from redis-py (round trip), and Redis's own."""
    admin = bench.admin
    admin.exists(key)
    with bench.counter.measure() as usage:
        began = time.perf_counter_ns()
        for _ in range(calls):
            admin.exists(key)
        spent = time.perf_counter_ns() - began
    redis_calls = usage.calls.get("exists", 0)
    redis_usec = usage.usec.get("exists", 0) / redis_calls if redis_calls else math.nan
    return spent / calls / 1e3, redis_usec


def _reload(bench: Bench, apps_: list[tuple[str, str, bool]], size: int) -> list[MirrorLoadRow]:
    """Restart each of the scaling's middleware servers, so that those with a mirror load
    the whole denylist (a ``SCAN``; the fill wrote no audit entries), and wait for their
    followers to park; their load time and memory."""
    rows: list[MirrorLoadRow] = []
    for app, label, follows in apps_:
        pid = bench.restart("asgi", app)
        others = blocked_clients(bench.admin)  # every follower but the new process's
        port = bench.servers.port("asgi", app)
        began = time.monotonic()
        # The first checked request starts the follower (the check itself asks Redis).
        exchange(port, get_request("bearer", f"127.0.0.1:{port}"))
        loaded = wait_blocked(bench.admin, others + 1, 180.0) if follows else True
        load_s = time.monotonic() - began if follows else math.nan
        rss = rss_mib(pid)
        rows.append(
            MirrorLoadRow(
                size, app, label, follows, load_s, math.nan if rss is None else rss, loaded
            )
        )
        bench.log(
            f"  scaling: {app} restarted with {size:,} revoked keys: "
            + (f"mirror loaded in {load_s:.2f} s, " if follows else "no mirror, ")
            + f"RSS {rss or 0:.1f} MiB"
        )
    return rows


def scaling(bench: Bench) -> tuple[list[ServerRow], list[ExistsRow], list[MirrorLoadRow]]:
    """The revocation check as revoked keys (1, 10^4, 10^6) and concurrency grow: ASGI,
    bearer requests whose token is not revoked (``miss``: passed to the app) and is
    revoked (``hit``: 401), against the bare app given the same requests; alone and side
    by side, as :func:`passthrough`.

    The denylist is filled with keys shaped as the middleware writes them (prefix +
    64 hex digits, with a TTL); exactly one of them is the revoked token used by ``hit``.
    After each fill the middleware's servers are restarted, so that a mirror holds the
    whole denylist (as after a reload), and its load time and memory are recorded.
    Tokens here are opaque (the pass-through section measures JWTs).
    """
    settings = bench.settings
    admin = bench.admin
    admin.flushdb()
    revoked = "revoked-" + TOKEN
    revoked_hash = hashlib.sha256(revoked.encode()).hexdigest()
    revoked_key = DENYLIST_PREFIX + revoked_hash
    # Revoked as a logout revokes: SET and the audit entry in one transaction, so that
    # revocation caches already following the stream learn it too.
    pipe = admin.pipeline(transaction=True)
    pipe.set(revoked_key, b"1", ex=TOKEN_TTL * 24)
    pipe.xadd("logout:events", {"token_hash": revoked_hash, "store": "ok"})
    pipe.execute()
    misses = [f"live{n:04d}-{TOKEN}" for n in range(256)]
    miss_key = denylist_key(misses[0])
    filled = 1

    cases: list[tuple[str, str, str, int]] = [("bare", "miss", "bare app", 200)]
    for v in VARIANTS:
        cases += [(v.name, "miss", f"{v.label}, token not revoked", 200)]
        cases += [(v.name, "hit", f"{v.label}, token revoked", 401)]
    restarted = [(v.name, v.label, v.follows) for v in VARIANTS]

    def maker(app: str, case: str) -> Callable[[int], bytes]:
        host = f"127.0.0.1:{bench.servers.port('asgi', app)}"
        if case == "hit":
            return _fixed(get_request("bearer", host, token=revoked))
        pool = [get_request("bearer", host, token=token) for token in misses]
        return lambda number: pool[number % len(pool)]

    rows: list[ServerRow] = []
    exists_rows: list[ExistsRow] = []
    loads: list[MirrorLoadRow] = []
    for size in settings.scaling_sizes:
        if size > filled:
            began = time.monotonic()
            fill_revoked(admin, DENYLIST_PREFIX, filled, size, TOKEN_TTL * 24)
            bench.log(f"  scaling: {size} revoked keys ({time.monotonic() - began:.1f} s to fill)")
            filled = size
        loads += _reload(bench, restarted, size)
        makers = {(app, case): maker(app, case) for app, case, _, _ in cases}
        for case, key in (("miss", miss_key), ("hit", revoked_key)):
            client_us, redis_usec = _exists_direct(bench, key, settings.exists_calls)
            exists_rows.append(ExistsRow(size, case, client_us, redis_usec))
        for concurrency in settings.scaling_concurrency:
            measured: list[tuple[_Series, Callable[[int], bytes]]] = []
            for app, case, label, status in cases:
                row = ServerRow(
                    "scaling", "asgi", case, app, label, concurrency, "bare", status, size
                )
                measured.append((_Series(row), makers[app, case]))
                # The middleware's servers are new processes at every size.
                if app != "bare" or size == settings.scaling_sizes[0]:
                    bench.warm("asgi", app, makers[app, case], concurrency)
            for row in bench.compare(
                "asgi",
                measured,
                rounds=settings.scaling_rounds,
                paired_rounds=settings.scaling_paired_rounds,
                concurrency=concurrency,
                duration=settings.scaling_duration,
                paired_duration=settings.scaling_duration,
            ):
                rows.append(row)
                bench.log(
                    f"  scaling {size:>9} keys  c={concurrency:<3} {row.variant:8} {row.kind:4} "
                    f"{row.rps:8.0f} req/s  x{row.ratio:.3f} alone, x{row.paired_ratio:.3f} "
                    f"side by side  p99 {row.p99_ms:.2f} ms  "
                    f"redis rt/req {row.redis.get('round_trips', 0):.2f}, "
                    f"{row.redis_usec_per_exists:.2f} us/EXISTS"
                )
    return rows, exists_rows, loads
