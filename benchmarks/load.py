"""Servers under load: the server processes, a measured series of wrk runs, and
:class:`Bench`, what the server benchmarks share.

Each app runs in its own process (``python -m benchmarks.apps``: uvicorn, no workers,
access log off; waitress, its default 4 threads), pinned to the server CPU; each wrk
run is pinned to the client CPU, with Redis. Within a comparison the servers take turns,
round after round, in rotating order (*alone*), then the baseline's server and each
other are loaded at the same time (*side by side*); a ratio is the median of per-round
ratios. Every run records the server's CPU time (``/proc``) and what Redis did.
"""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Literal, TypeVar

import redis

from . import wrk
from .common import Settings, is_cluster_app
from .redisutil import RedisCounter, RedisSide, Usage, pin_pid, process_cpu_s, single_side
from .wrk import Load, Requests

__all__ = ["ROOT", "STACK_LABELS", "Bench", "LineHelper", "Series", "ServerRow", "Servers", "Stack"]

Stack = Literal["asgi", "wsgi"]
Log = Callable[[str], None]
T = TypeVar("T")
#: The directory holding the ``benchmarks`` package.
ROOT = Path(__file__).resolve().parent.parent
#: How the report names the servers.
STACK_LABELS = {"asgi": "ASGI, uvicorn", "wsgi": "WSGI, waitress + Flask", "redis-py": "no HTTP"}


def rotate(items: Sequence[T], by: int) -> list[T]:
    """``items`` rotated left by ``by``: round ``by``'s order."""
    shift = by % len(items)
    return [*items[shift:], *items[:shift]]


def nan_median(values: Sequence[float]) -> float:
    """The median, NaN for none."""
    return median(values) if values else math.nan


def pin(cpu: int | None) -> None:
    """Pin the calling process to ``cpu`` (no-op for None)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One app's server process."""

    stack: Stack
    app: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    redis_url: str


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


class Servers:
    """The server processes of one run, by ``(stack, app)``, each pinned to ``cpu``."""

    def __init__(self, redis_url: str, *, cpu: int | None, http: str = "auto") -> None:
        self.redis_url, self.cpu, self.http = redis_url, cpu, http
        self.servers: dict[tuple[Stack, str], Server] = {}
        self._logs = tempfile.TemporaryDirectory(prefix="logout-bench-")

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers.values():
            _stop(server)
        self.servers.clear()
        self._logs.cleanup()

    def start(self, wanted: Iterable[tuple[Stack, str]], redis_url: str | None = None) -> None:
        """Start each server not running yet and wait until all answer.

        :raises RuntimeError: when one exits or does not answer within 60 s (its log).
        """
        url = redis_url or self.redis_url
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        started: list[Server] = []
        for stack, app in wanted:
            if (stack, app) in self.servers:
                continue
            port = free_port()
            log = Path(self._logs.name) / f"{stack}-{app}.log"
            command = [sys.executable, "-m", "benchmarks.apps", stack, app, str(port), url]
            command += ["--http", self.http]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            if self.cpu is not None:
                pin_pid(process.pid, self.cpu)
            self.servers[stack, app] = server = Server(stack, app, port, process, log, url)
            started.append(server)
        deadline = time.monotonic() + 60.0
        for server in started:
            while not _answers(server.port):
                if server.process.poll() is not None or time.monotonic() > deadline:
                    text = server.log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"server {server.stack}/{server.app} did not start:\n{text}")
                time.sleep(0.05)
            if self.cpu is not None:  # the threads it started meanwhile
                pin_pid(server.process.pid, self.cpu)

    def port(self, stack: Stack, app: str) -> int:
        """The port of ``(stack, app)``'s server."""
        return self.servers[stack, app].port

    def stop(self, stack: Stack, app: str) -> None:
        """Stop ``(stack, app)``'s server."""
        _stop(self.servers.pop((stack, app)))

    def restart(self, stack: Stack, app: str) -> Server:
        """A fresh process for ``(stack, app)`` (its caches and mirror begin anew)."""
        old = self.servers.pop((stack, app))
        _stop(old)
        self.start([(stack, app)], old.redis_url)
        return self.servers[stack, app]


def _stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@dataclass
class LineHelper:
    """A helper process spoken to a line at a time (stdin/stdout, text)."""

    process: subprocess.Popen[str]

    def ask(self, line: str) -> str:
        """Send ``line``; the answer's line, stripped."""
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.read()

    def read(self) -> str:
        """The next line, stripped."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()


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


class Series:
    """Collects the runs of one server row: ``rps`` (median), ``ratio`` (median of
    per-round ratios to the baseline, alone), ``paired_ratio`` (side by side), the
    server's CPU µs per request and its ratios, wrk's latency percentiles (median over
    runs), Redis's work per request (``redis``; on a cluster each primary's in
    ``redis_shards``)."""

    def __init__(self, row: ServerRow, requests: Requests) -> None:
        self.row, self.requests = row, requests
        self.loads: list[Load] = []
        #: Requests sent (each answered: wrk's runs drain).
        self.issued = 0
        self.usage = Usage()
        self.cpu: list[float | None] = []
        self.pair_cpu: list[tuple[float | None, int, float | None, int]] = []

    def add(self, load: Load, usage: Usage, cpu_s: float | None) -> None:
        """One run alone."""
        self.loads.append(load)
        self.row.rps_rounds.append(load.rps)
        self.row.requests += load.requests
        self.row.unexpected += load.unexpected
        self.issued += load.issued
        self.usage = self.usage + usage
        self.cpu.append(cpu_s)

    def add_pair(
        self, base: Load, own: Load, base_cpu: float | None, own_cpu: float | None
    ) -> None:
        """One round side by side with the baseline."""
        if base.rps > 0:
            self.row.paired_rounds.append(own.rps / base.rps)
        self.row.unexpected += own.unexpected + base.unexpected
        self.pair_cpu.append((own_cpu, own.requests, base_cpu, base.requests))

    def cpu_us(self) -> float:
        """Server CPU µs per request over the runs alone (NaN when unknown)."""
        if None in self.cpu or not self.row.requests:
            return math.nan
        return sum(c or 0.0 for c in self.cpu) / self.row.requests * 1e6

    def finish(self, baseline: Series | None) -> ServerRow:
        """The finished row."""
        row = self.row
        row.rps = nan_median(row.rps_rounds)
        if baseline is not None:
            pairs = zip(row.rps_rounds, baseline.row.rps_rounds, strict=False)
            row.ratio = nan_median([a / b for a, b in pairs if b > 0])
        for name in ("p50_ms", "p90_ms", "p99_ms"):
            setattr(row, name, nan_median([getattr(load, name) for load in self.loads]))
        row.cpu_us = self.cpu_us()
        base_cpu = baseline.cpu_us() if baseline is not None else math.nan
        row.cpu_ratio = row.cpu_us / base_cpu if base_cpu > 0 else math.nan
        row.redis = self.usage.per(self.issued)
        row.redis_shards = [shard.per(self.issued) for shard in self.usage.shards]
        row.paired_ratio = nan_median(row.paired_rounds)
        known = [p for p in self.pair_cpu if p[0] is not None and p[2] is not None]
        if known and len(known) == len(self.pair_cpu):
            own = sum(p[0] or 0.0 for p in known) / max(1, sum(p[1] for p in known))
            base = sum(p[2] or 0.0 for p in known) / max(1, sum(p[3] for p in known))
            row.paired_cpu_ratio = own / base if base > 0 else math.nan
        calls = self.usage.calls.get("exists", 0)
        row.redis_usec_per_exists = self.usage.usec["exists"] / calls if calls else math.nan
        return row


@dataclass
class Bench:
    """What the server benchmarks share. ``cluster``: the Redis Cluster, when running."""

    settings: Settings
    redis_url: str
    admin: redis.Redis
    counter: RedisCounter
    servers: Servers
    server_cpu: int | None
    client_cpu: int | None
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
        """The Redis the app called ``app`` talks to."""
        if not is_cluster_app(app):
            return self.single
        if self.cluster is None:
            raise RuntimeError(f"{app} needs the Redis Cluster, which is not running")
        return self.cluster

    def host(self, stack: Stack, app: str) -> str:
        """The ``Host`` header for ``(stack, app)``'s server."""
        return f"127.0.0.1:{self.servers.port(stack, app)}"

    def run(
        self,
        stack: Stack,
        app: str,
        requests: Requests,
        *,
        concurrency: int,
        duration: float,
        limit: int | None = None,
    ) -> tuple[Load, Usage, float | None]:
        """One measured run: wrk's result, Redis's work, the server's CPU seconds."""
        server = self.servers.servers[stack, app]
        with self.side(app).counter.measure() as usage:
            before = process_cpu_s(server.process.pid)
            load = wrk.run(
                server.port,
                requests,
                concurrency=concurrency,
                duration=duration,
                limit=limit,
                cpu=self.client_cpu,
            )
            after = process_cpu_s(server.process.pid)
        cpu = None if before is None or after is None else after - before
        return load, usage, cpu

    def warm(self, stack: Stack, app: str, requests: Requests, concurrency: int) -> Load:
        """An unmeasured run: connections and code paths warm."""
        return wrk.run(
            self.servers.port(stack, app),
            requests,
            concurrency=concurrency,
            duration=self.settings.warmup,
            cpu=self.client_cpu,
        )

    def restart(self, stack: Stack, app: str) -> int:
        """A fresh process for ``(stack, app)``; its pid."""
        server = self.servers.restart(stack, app)
        self.sessions_sent[stack, app] = 0
        return server.process.pid

    def settle_followers(self, timeout: float = 60.0) -> None:
        """Wait until every follower is parked (none loading its mirror)."""
        for side in (self.single, self.cluster):
            if side is not None and not side.settle(timeout):
                self.log(f"  (followers on the {side.name} Redis still busy after {timeout:.0f} s)")

    def compare(
        self,
        stack: Stack,
        measured: list[Series],
        *,
        rounds: int,
        paired_rounds: int,
        concurrency: int,
        duration: float,
        paired_duration: float,
    ) -> list[ServerRow]:
        """Each series against the first (the baseline): ``rounds`` alone, then
        ``paired_rounds`` side by side with the baseline, in rotating order."""
        for round_ in range(rounds):
            for series in rotate(measured, round_):
                series.add(
                    *self.run(
                        stack,
                        series.row.variant,
                        series.requests,
                        concurrency=concurrency,
                        duration=duration,
                    )
                )
        base, others = measured[0], measured[1:]
        base_server = self.servers.servers[stack, base.row.variant]
        for round_ in range(paired_rounds):
            for series in rotate(others, round_):
                own_server = self.servers.servers[stack, series.row.variant]
                pids = (base_server.process.pid, own_server.process.pid)
                before = [process_cpu_s(pid) for pid in pids]
                a, b = wrk.run_pair(
                    (base_server.port, base.requests),
                    (own_server.port, series.requests),
                    concurrency=concurrency,
                    duration=paired_duration,
                    cpu=self.client_cpu,
                )
                after = [process_cpu_s(pid) for pid in pids]
                cpu = [
                    None if x is None or y is None else y - x
                    for x, y in zip(before, after, strict=True)
                ]
                series.add_pair(a, b, cpu[0], cpu[1])
        rows = [series.finish(base) for series in measured]
        rows[0].paired_ratio = rows[0].paired_cpu_ratio = 1.0
        return rows
