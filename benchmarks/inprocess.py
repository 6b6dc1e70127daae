"""Pass-through overhead in-process, timed by pyperf: the app called directly.

For each group (raw ASGI app; raw WSGI app; Flask app) and each kind of request, the
bare app, the same app behind an empty middleware (one more call: the least any
middleware costs), behind the *floor* (a minimal middleware that compares the path and
passes on: the least a logout middleware costs) and behind each variant (and, ASGI,
Starlette ``BaseHTTPMiddleware``) are pyperf benchmarks: ``Runner.bench_time_func``,
worker processes pinned with ``--affinity`` to the server CPU, the garbage collector off
while a batch runs (as :mod:`timeit`). pyperf's JSON (``inprocess.pyperf.json``) is kept
beside the results, so that ``python -m pyperf compare_to --table`` compares two runs.
Rows that reach Redis (without the cache: the pipelined check) get a second benchmark
timed in the thread's CPU time (``... cpu``): their wall time includes the wait for Redis.

Variants with the revocation cache are timed once their mirror is live (steady state).
Before pyperf runs, the suite counts each row's Redis round trips on a batch of
:data:`COUNTED_CALLS` calls (``INFO`` deltas) and checks its status.

Run by the suite as ``python -m benchmarks.inprocess --redis-url URL [pyperf options]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

from . import apps
from .common import (
    KINDS,
    SESSION_ID,
    SUBJECT,
    VARIANTS,
    Kind,
    Settings,
    Variant,
    asgi_scope,
    session_record,
    wsgi_environ,
)
from .load import ROOT
from .redisutil import RedisCounter

__all__ = ["COUNTED_CALLS", "FLOOR_LABEL", "GROUPS", "InprocessRow", "main", "run_inprocess"]

#: The in-process groups and how the report names them.
GROUPS = {"asgi": "ASGI, raw app", "wsgi": "WSGI, raw app", "flask": "WSGI, Flask app"}
#: Calls of the counted batch that gives each row's Redis round trips per request.
COUNTED_CALLS = 200
#: How long to wait for a variant's mirror to become live, seconds.
LIVE_TIMEOUT = 15.0
#: How the report names the floor.
FLOOR_LABEL = "floor: path comparison only"
#: The kinds timed in-process (``cookie_post``: the middleware variants, raw apps only).
ALL_KINDS: tuple[Kind, ...] = (*KINDS, "cookie_post")
Log = Callable[[str], None]


@dataclass
class InprocessRow:
    """One (group, kind, variant): nanoseconds per request and the cost over bare.

    ``ns``/``cpu_ns``: wall-clock and CPU nanoseconds per request, pyperf's median;
    ``ratio``: wall time relative to the bare app; ``added_ns``/``added_cpu_ns``: the
    difference to the bare app; ``over_floor_ns``/``over_floor_cpu_ns``: the difference
    to the floor (the path-comparing middleware). pyperf's values are kept in
    ``*_values``. ``round_trips``/``commands``: Redis work per request in a counted
    batch; ``live``: whether the variant's mirror was live (None: it keeps none).
    """

    group: str
    kind: Kind
    variant: str
    label: str
    status: int
    calls_per_round: int
    #: pyperf's values (ns per call) and, for rows that reach Redis, CPU ns per call.
    ns_values: list[float] = field(default_factory=list)
    cpu_ns_values: list[float] = field(default_factory=list)
    ns: float = 0.0
    cpu_ns: float = 0.0
    ratio: float = 1.0
    added_ns: float = 0.0
    added_cpu_ns: float = 0.0
    over_floor_ns: float = math.nan
    over_floor_cpu_ns: float = math.nan
    round_trips: float = math.nan
    commands: float = math.nan
    live: bool | None = None
    #: Redis work per request by command (``cookie_post`` rows).
    commands_by_name: dict[str, float] = field(default_factory=dict)


def candidates(group: str, redis_url: str) -> list[tuple[str, str, Callable[[], Any]]]:
    """``(name, label, factory)`` of the apps compared in ``group``; bare first."""
    if group == "asgi":
        found: list[tuple[str, str, Callable[[], Any]]] = [
            ("bare", "bare app", lambda: apps.bare_asgi),
            ("empty", "empty middleware", lambda: apps.empty_asgi(apps.bare_asgi)),
            ("floor", FLOOR_LABEL, lambda: apps.FloorASGI(apps.bare_asgi)),
        ]
        found += [
            (v.name, v.label, partial(v.wrap_asgi, apps.bare_asgi, redis_url)) for v in VARIANTS
        ]
        basehttp = partial(apps.BaseHTTPLogout, apps.bare_asgi, redis_url)
        return [*found, ("basehttp", "Starlette BaseHTTPMiddleware", basehttp)]
    make: Callable[[], Any] = (lambda: apps.bare_wsgi) if group == "wsgi" else apps.flask_app
    return [
        ("bare", "bare app", make),
        ("empty", "empty middleware", lambda: apps.empty_wsgi(make())),
        ("floor", FLOOR_LABEL, lambda: apps.floor_wsgi(make())),
        *((v.name, v.label, partial(_wrap_wsgi, v, make, redis_url)) for v in VARIANTS),
    ]


def _wrap_wsgi(variant: Variant, make: Callable[[], Any], redis_url: str) -> Any:
    return variant.wrap_wsgi(make(), redis_url)


def _cases(group: str) -> list[Kind]:
    variants_post = group != "flask"
    return [k for k in ALL_KINDS if k != "cookie_post" or variants_post]


def _timed(group: str, kind: Kind, name: str) -> bool:
    return kind != "cookie_post" or name in {v.name for v in VARIANTS}


def _mirror_live(app: Any) -> bool:
    mirror = getattr(getattr(app, "core", None), "mirror", None)
    return bool(getattr(mirror, "live", False))


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class Case:
    """One app and request, built on first use (in the process that times it): called
    once (its status), its mirror waited for, then timed ``loops`` calls at a time."""

    #: The case built last in this process.
    current: Case | None = None

    def __init__(self, group: str, kind: Kind, factory: Callable[[], Any], follows: bool) -> None:
        self.group, self.kind, self.factory, self.follows = group, kind, factory, follows
        self.app: Any = None
        self.loop = asyncio.new_event_loop() if group == "asgi" else None
        self.status = 0
        self.live: bool | None = None
        if group == "asgi":
            self.scope: dict[str, Any] = asgi_scope(kind)
        else:
            self.environ: dict[str, Any] = wsgi_environ(kind)

    def ready(self) -> None:
        if self.app is None and Case.current not in (None, self):
            Case.current.close()  # in one process, the case timed before: done
        if self.loop is not None:  # the loop its Redis clients and follower use
            asyncio.set_event_loop(self.loop)
        if self.app is not None:
            return
        Case.current = self
        self.app = self.factory()
        self.status = self._run(self._status())
        if self.follows and self.kind != "none":  # a check starts the follower
            deadline = time.monotonic() + LIVE_TIMEOUT
            while not _mirror_live(self.app) and time.monotonic() < deadline:
                self._run(asyncio.sleep(0.005)) if self.loop else time.sleep(0.005)
            self.live = _mirror_live(self.app)

    def _run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work) if self.loop is not None else work

    def _status(self) -> Any:
        found: list[int] = []
        if self.loop is not None:

            async def send(message: Any) -> None:
                if message["type"] == "http.response.start":
                    found.append(int(message["status"]))

            async def call() -> int:
                await self.app(dict(self.scope), _receive, send)
                return found[0] if found else 0

            return call()

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            found.append(int(status.split(" ", 1)[0]))
            return lambda data: None

        self._wsgi_call(start_response)
        return found[0] if found else 0

    def _wsgi_call(self, start_response: Any) -> None:
        result = self.app(dict(self.environ), start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()

    def calls(self, loops: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """Seconds (of ``clock``) that ``loops`` calls take."""
        self.ready()
        gc.collect()
        gc.disable()
        try:
            if self.loop is not None:
                return float(self.loop.run_until_complete(self._asgi_calls(loops, clock)))
            return self._wsgi_calls(loops, clock)
        finally:
            gc.enable()

    async def _asgi_calls(self, loops: int, clock: Callable[[], float]) -> float:
        app, scope, receive = self.app, self.scope, _receive

        async def send(message: Any) -> None:
            pass

        began = clock()
        for _ in range(loops):
            await app(scope, receive, send)
        return clock() - began

    def _wsgi_calls(self, loops: int, clock: Callable[[], float]) -> float:
        app, environ, copy = self.app, self.environ, self.group == "flask"

        def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
            return _write

        began = clock()
        for _ in range(loops):
            result = app(dict(environ) if copy else environ, start_response)
            for _chunk in result:
                pass
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return clock() - began

    def close(self) -> None:
        """Close the app's Redis clients and its loop (once)."""
        if Case.current is self:
            Case.current = None
        if self.loop is not None and self.loop.is_closed():
            return
        if self.loop is not None:
            asyncio.set_event_loop(self.loop)
        store = getattr(self.app, "store", None)
        client = getattr(self.app, "redis", None)
        if self.loop is not None:
            for closing in (store, client):
                if closing is not None and hasattr(closing, "aclose"):
                    self.loop.run_until_complete(closing.aclose())
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()
        elif store is not None and hasattr(store, "close"):
            store.close()


def _write(data: bytes) -> None:
    del data


def bench_name(group: str, kind: str, name: str, cpu: bool = False) -> str:
    """The pyperf benchmark of a row (``... cpu``: timed in thread CPU time)."""
    return f"inprocess {group} {kind} {name}" + (" cpu" if cpu else "")


# -- the pyperf script -------------------------------------------------------------------


def main() -> None:
    """Every in-process benchmark, one pyperf ``bench_time_func`` each (see the module)."""
    import pyperf

    def forward(command: list[str], args: argparse.Namespace) -> None:
        command += ["--redis-url", args.redis_url, "--cpu-too", args.cpu_too]

    runner = pyperf.Runner(add_cmdline_args=forward, program_args=("-m", "benchmarks.inprocess"))
    runner.argparser.add_argument("--redis-url", required=True)
    runner.argparser.add_argument("--cpu-too", default="", help="benchmarks timed in CPU too")
    args = runner.parse_args()
    cpu_too = set(filter(None, args.cpu_too.split(",")))
    follows = {v.name for v in VARIANTS if v.follows}
    for group in GROUPS:
        for kind in _cases(group):
            for name, _label, factory in candidates(group, args.redis_url):
                if not _timed(group, kind, name):
                    continue
                case = Case(group, kind, factory, name in follows)
                runner.bench_time_func(bench_name(group, kind, name), case.calls)
                if bench_name(group, kind, name) in cpu_too:
                    runner.bench_time_func(
                        bench_name(group, kind, name, cpu=True), case.calls, time.thread_time
                    )


# -- the suite's side ----------------------------------------------------------------------


def _count(group: str, redis_url: str, log: Log) -> list[InprocessRow]:
    """Each row's status and Redis round trips per request (a counted batch)."""
    follows = {v.name for v in VARIANTS if v.follows}
    rows: list[InprocessRow] = []
    with redis.Redis.from_url(redis_url) as client:
        counter = RedisCounter(client)
        for kind in _cases(group):
            for name, label, factory in candidates(group, redis_url):
                if not _timed(group, kind, name):
                    continue
                case = Case(group, kind, factory, name in follows)
                try:
                    case.ready()
                    case.calls(20)
                    if case.loop is not None:  # followers parked again before counting
                        case.loop.run_until_complete(asyncio.sleep(0.01))
                    with counter.measure() as usage:
                        case.calls(COUNTED_CALLS)
                finally:
                    case.close()
                row = InprocessRow(group, kind, name, label, case.status, 0, live=case.live)
                row.round_trips = usage.reads / COUNTED_CALLS
                row.commands = usage.commands / COUNTED_CALLS
                if kind == "cookie_post":
                    row.commands_by_name = usage.per(COUNTED_CALLS)
                rows.append(row)
    return rows


def pyperf_options(settings: Settings, cpu: int | None) -> list[str]:
    """pyperf's options: worker processes on the server CPU; smoke: in process, once."""
    if settings.smoke:
        return ["--in-process", "-p", "1", "--values", "1", "--warmups", "0", "--loops", "5"]
    found = ["--processes", str(settings.inproc_processes), "--values", "3"]
    found += ["--min-time", str(settings.inproc_min_time)]
    return found + (["--affinity", str(cpu)] if cpu is not None else [])


def run_inprocess(
    settings: Settings, redis_url: str, log: Log, cpu: int | None, out: Path
) -> list[InprocessRow]:
    """Every in-process row, counted here and timed by pyperf (its JSON at ``out``)."""
    import pyperf

    with redis.Redis.from_url(redis_url) as client:
        client.set(f"session:{SESSION_ID}", session_record(SUBJECT))
    rows = [row for group in GROUPS for row in _count(group, redis_url, log)]
    cpu_too = [bench_name(r.group, r.kind, r.variant) for r in rows if r.round_trips > 0.005]
    out.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.inprocess", "--redis-url", redis_url]
    command += ["--cpu-too", ",".join(cpu_too), "--quiet", "--append", str(out)]
    subprocess.run(
        command + pyperf_options(settings, cpu), cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    suite = {b.get_name(): b for b in pyperf.BenchmarkSuite.load(str(out)).get_benchmarks()}
    for row in rows:
        bench = suite[bench_name(row.group, row.kind, row.variant)]
        row.ns_values = [v * 1e9 for v in bench.get_values()]
        row.ns = bench.median() * 1e9
        row.calls_per_round = bench.get_runs()[-1].get_loops()
        twin = suite.get(bench_name(row.group, row.kind, row.variant, cpu=True))
        row.cpu_ns_values = [v * 1e9 for v in twin.get_values()] if twin else []
        row.cpu_ns = twin.median() * 1e9 if twin else row.ns
    for group in GROUPS:
        for kind in KINDS:
            found = [r for r in rows if (r.group, r.kind) == (group, kind)]
            bare, floor = found[0], next(r for r in found if r.variant == "floor")
            for row in found:
                row.ratio = row.ns / bare.ns
                row.added_ns, row.added_cpu_ns = row.ns - bare.ns, row.cpu_ns - bare.cpu_ns
                row.over_floor_ns = row.ns - floor.ns
                row.over_floor_cpu_ns = row.cpu_ns - floor.cpu_ns
                log(
                    f"  in-process {group:5} {kind:6} {row.variant:10} {row.ns:10.0f} ns/request"
                    f"  {row.added_ns:+.0f} ns (CPU over floor {row.over_floor_cpu_ns:+.0f} ns)"
                    f"  redis rt/req {row.round_trips:.2f}"
                )
    return rows


if __name__ == "__main__":
    main()
