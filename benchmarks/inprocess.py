"""Pass-through overhead in-process: the app called directly, no server, no sockets.

For each group (raw ASGI app; raw WSGI app; Flask app) and each kind of request, the
bare app, the same app behind an empty middleware (one more call: the least any
middleware costs), behind the *floor* (a minimal middleware that compares the path and
passes on: the least a logout middleware costs) and behind each measured middleware
are called ``n`` times in a row, in short rounds whose order rotates. Each round records
wall-clock time and the thread's CPU time; as :mod:`timeit` advises, the lowest of the
rounds is the figure (the least disturbed by the rest of the machine), and the garbage
collector is off while the rounds run.

Variants with the revocation cache are timed once their mirror is live (loaded and
followed), as in a process's steady state. Requests that reach Redis (without the
cache: the pipelined check of a cookie or a bearer token) include the real round trip:
their wall time includes the wait for Redis, their CPU time does not. Before the timed
rounds, a counted batch of each gives the Redis round trips per request (``INFO``
deltas, :class:`~benchmarks.redisutil.RedisCounter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from . import apps
from .redisutil import RedisCounter, Usage
from .stats import rotate
from .traffic import KINDS, SESSION_ID, SUBJECT, Kind, asgi_scope, session_record, wsgi_environ
from .variants import VARIANTS

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from .settings import Settings

__all__ = ["COUNTED_CALLS", "GROUPS", "LIVE_TIMEOUT", "InprocessRow", "run_inprocess"]

#: The in-process groups and how the report names them.
GROUPS = {
    "asgi": "ASGI, raw app",
    "wsgi": "WSGI, raw app",
    "flask": "WSGI, Flask app",
}
#: Calls of the counted batch that gives each row's Redis round trips per request.
COUNTED_CALLS = 200
#: How long to wait for a variant's mirror to become live, seconds.
LIVE_TIMEOUT = 15.0


@dataclass
class InprocessRow:
    """One (group, kind, variant): nanoseconds per request and the cost over bare.

    ``ns``/``cpu_ns``: wall-clock and CPU nanoseconds per request, lowest round;
    ``ratio``: wall time relative to the bare app; ``added_ns``/``added_cpu_ns``: the
    difference to the bare app; ``over_floor_ns``/``over_floor_cpu_ns``: the difference
    to the floor (the path-comparing middleware). The per-round values are kept in
    ``*_rounds``. ``round_trips``/``commands``: Redis work per request in a counted
    batch; ``live``: whether the variant's mirror was live (None: it keeps none).
    """

    group: str
    kind: Kind
    variant: str
    label: str
    status: int
    calls_per_round: int
    ns_rounds: list[float] = field(default_factory=list)
    cpu_ns_rounds: list[float] = field(default_factory=list)
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

    def add(self, spent: tuple[int, int]) -> None:
        """Record one round: ``(wall, cpu)`` nanoseconds of ``calls_per_round`` calls."""
        self.ns_rounds.append(spent[0] / self.calls_per_round)
        self.cpu_ns_rounds.append(spent[1] / self.calls_per_round)


Log = Callable[[str], None]

#: How the report names the floor.
FLOOR_LABEL = "floor: path comparison only"


def _clamp_calls(seconds_per_call: float, target: float) -> int:
    return max(20, min(500_000, int(target / max(seconds_per_call, 1e-9))))


# -- ASGI ----------------------------------------------------------------------------


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _discard(message: Any) -> None:
    del message


async def _asgi_batch(app: apps.ASGIApp, scope: dict[str, Any], calls: int) -> tuple[int, int]:
    """Wall and CPU nanoseconds of ``calls`` calls."""
    receive, send = _receive, _discard
    cpu = time.thread_time_ns()
    began = time.perf_counter_ns()
    for _ in range(calls):
        await app(scope, receive, send)
    return time.perf_counter_ns() - began, time.thread_time_ns() - cpu


async def _asgi_status(app: apps.ASGIApp, scope: dict[str, Any]) -> int:
    found: list[int] = []

    async def send(message: Any) -> None:
        if message["type"] == "http.response.start":
            found.append(int(message["status"]))

    await app(dict(scope), _receive, send)
    return found[0] if found else 0


def _candidates_asgi(redis_url: str) -> list[tuple[str, str, apps.ASGIApp]]:
    found: list[tuple[str, str, apps.ASGIApp]] = [
        ("bare", "bare app", apps.bare_asgi),
        ("empty", "empty middleware", apps.empty_asgi(apps.bare_asgi)),
        ("floor", FLOOR_LABEL, apps.FloorASGI(apps.bare_asgi)),
    ]
    found += [(v.name, v.label, v.wrap_asgi(apps.bare_asgi, redis_url)) for v in VARIANTS]
    basehttp = apps.BaseHTTPLogout(apps.bare_asgi, redis_url)
    found.append(("basehttp", "Starlette BaseHTTPMiddleware", basehttp))
    return found


async def _asgi_group(settings: Settings, redis_url: str, log: Log) -> list[InprocessRow]:
    candidates = _candidates_asgi(redis_url)
    follows = {v.name for v in VARIANTS if v.follows}
    rows: list[InprocessRow] = []
    with _counter(redis_url) as counter:
        try:
            for kind in KINDS:
                scope = asgi_scope(kind)
                found: list[tuple[InprocessRow, apps.ASGIApp]] = []
                for name, label, app in candidates:
                    status = await _asgi_status(app, scope)
                    live = None
                    if name in follows and kind != "none":  # a check starts the follower
                        live = await _alive(app)
                    await _asgi_batch(app, scope, 20)
                    per = (await _asgi_batch(app, scope, 50))[0] / 50 / 1e9
                    calls = _clamp_calls(per, settings.inproc_batch_s)
                    row = InprocessRow("asgi", kind, name, label, status, calls, live=live)
                    await asyncio.sleep(0.01)  # followers parked again before counting
                    with counter.measure() as usage:
                        await _asgi_batch(app, scope, COUNTED_CALLS)
                    _count(row, usage.reads, usage.commands)
                    found.append((row, app))
                with _gc_off():
                    for round_ in range(settings.inproc_rounds):
                        for row, app in rotate(found, round_):
                            row.add(await _asgi_batch(app, scope, row.calls_per_round))
                rows += _finish([row for row, _ in found], log)
            variants = {v.name for v in VARIANTS}
            scope = asgi_scope("cookie_post")
            for name, label, app in candidates:
                if name not in variants:
                    continue
                status = await _asgi_status(app, scope)
                await asyncio.sleep(0.01)  # followers parked again before counting
                with counter.measure() as usage:
                    spent = await _asgi_batch(app, scope, COUNTED_CALLS)
                rows.append(_unsafe("asgi", name, label, status, spent, usage, log))
        finally:
            for _, _, app in candidates:
                await _aclose(app)
    return rows


async def _alive(app: Any) -> bool:
    """Wait (at most :data:`LIVE_TIMEOUT`) for the app's mirror to be live."""
    for _ in range(int(LIVE_TIMEOUT / 0.005)):  # bounded polling
        if _mirror_live(app):
            break
        await asyncio.sleep(0.005)
    return _mirror_live(app)


async def _aclose(app: Any) -> None:
    store = getattr(app, "store", None)
    if store is not None and hasattr(store, "aclose"):
        await store.aclose()
    client = getattr(app, "redis", None)
    if client is not None and hasattr(client, "aclose"):
        await client.aclose()


# -- WSGI ----------------------------------------------------------------------------


def _start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], Any]:
    del status, headers, exc_info
    return _write


def _write(data: bytes) -> None:
    del data


def _wsgi_batch(
    app: WSGIApplication, environ: dict[str, Any], calls: int, copy: bool
) -> tuple[int, int]:
    """Wall and CPU nanoseconds of ``calls`` calls."""
    start_response = _start_response
    cpu = time.thread_time_ns()
    began = time.perf_counter_ns()
    for _ in range(calls):
        result = app(dict(environ) if copy else environ, start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return time.perf_counter_ns() - began, time.thread_time_ns() - cpu


def _wsgi_status(app: WSGIApplication, environ: dict[str, Any]) -> int:
    found: list[int] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], Any]:
        del headers, exc_info
        found.append(int(status.split(" ", 1)[0]))
        return _write

    result = app(dict(environ), start_response)
    b"".join(result)
    close = getattr(result, "close", None)
    if close is not None:
        close()
    return found[0] if found else 0


def _wsgi_group(
    group: str,
    settings: Settings,
    redis_url: str,
    make: Callable[[], WSGIApplication],
    log: Log,
) -> list[InprocessRow]:
    copy = group == "flask"  # Flask stores its request in the environ
    candidates: list[tuple[str, str, WSGIApplication]] = [
        ("bare", "bare app", make()),
        ("empty", "empty middleware", apps.empty_wsgi(make())),
        ("floor", FLOOR_LABEL, apps.floor_wsgi(make())),
    ]
    candidates += [(v.name, v.label, v.wrap_wsgi(make(), redis_url)) for v in VARIANTS]
    follows = {v.name for v in VARIANTS if v.follows}
    rows: list[InprocessRow] = []
    with _counter(redis_url) as counter:
        try:
            for kind in KINDS:
                environ = wsgi_environ(kind)
                found: list[tuple[InprocessRow, WSGIApplication]] = []
                for name, label, app in candidates:
                    status = _wsgi_status(app, environ)
                    live = None
                    if name in follows and kind != "none":  # a check starts the follower
                        deadline = time.monotonic() + LIVE_TIMEOUT
                        while not _mirror_live(app) and time.monotonic() < deadline:
                            time.sleep(0.005)
                        live = _mirror_live(app)
                    _wsgi_batch(app, environ, 20, copy)
                    per = _wsgi_batch(app, environ, 50, copy)[0] / 50 / 1e9
                    calls = _clamp_calls(per, settings.inproc_batch_s)
                    row = InprocessRow(group, kind, name, label, status, calls, live=live)
                    with counter.measure() as usage:
                        _wsgi_batch(app, environ, COUNTED_CALLS, copy)
                    _count(row, usage.reads, usage.commands)
                    found.append((row, app))
                with _gc_off():
                    for round_ in range(settings.inproc_rounds):
                        for row, app in rotate(found, round_):
                            row.add(_wsgi_batch(app, environ, row.calls_per_round, copy))
                rows += _finish([row for row, _ in found], log)
            variants = {v.name for v in VARIANTS}
            environ = wsgi_environ("cookie_post")
            for name, label, app in candidates:
                if name not in variants or group == "flask":
                    continue
                status = _wsgi_status(app, environ)
                with counter.measure() as usage:
                    spent = _wsgi_batch(app, environ, COUNTED_CALLS, copy)
                rows.append(_unsafe(group, name, label, status, spent, usage, log))
        finally:
            for _, _, app in candidates:
                store = getattr(app, "store", None)
                if store is not None and hasattr(store, "close"):
                    store.close()
    return rows


# -- common --------------------------------------------------------------------------


@contextlib.contextmanager
def _gc_off() -> Iterator[None]:
    """Collect garbage, then keep the collector off inside the block (as :mod:`timeit`)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _mirror_live(app: Any) -> bool:
    """Whether the middleware ``app``'s revocation mirror is live."""
    mirror = getattr(getattr(app, "core", None), "mirror", None)
    return bool(getattr(mirror, "live", False))


@contextlib.contextmanager
def _counter(redis_url: str) -> Iterator[RedisCounter]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield RedisCounter(client)
    finally:
        client.close()


def _unsafe(
    group: str,
    name: str,
    label: str,
    status: int,
    spent: tuple[int, int],
    usage: Usage,
    log: Log,
) -> InprocessRow:
    """The row of a counted batch of ``POST`` requests with the session cookie (timed
    once, Redis round trips included: not comparable with the timed rows)."""
    row = InprocessRow(group, "cookie_post", name, label, status, COUNTED_CALLS)
    row.add(spent)
    row.ns, row.cpu_ns = row.ns_rounds[0], row.cpu_ns_rounds[0]
    _count(row, usage.reads, usage.commands)
    row.commands_by_name = usage.per(COUNTED_CALLS)
    log(
        f"  in-process {group:5} POST+cookie {name:10} {row.ns:10.0f} ns/request  "
        f"redis rt/req {row.round_trips:.2f}"
    )
    return row


def _count(row: InprocessRow, reads: int, commands: int) -> None:
    row.round_trips = reads / COUNTED_CALLS
    row.commands = commands / COUNTED_CALLS


def _finish(rows: list[InprocessRow], log: Log) -> list[InprocessRow]:
    bare = rows[0]
    for row in rows:
        row.ns = min(row.ns_rounds)
        row.cpu_ns = min(row.cpu_ns_rounds)
    floor = next((row for row in rows if row.variant == "floor"), None)
    for row in rows:
        row.ratio = row.ns / bare.ns
        row.added_ns = row.ns - bare.ns
        row.added_cpu_ns = row.cpu_ns - bare.cpu_ns
        if floor is not None:
            row.over_floor_ns = row.ns - floor.ns
            row.over_floor_cpu_ns = row.cpu_ns - floor.cpu_ns
        log(
            f"  in-process {row.group:5} {row.kind:6} {row.variant:10} "
            f"{row.ns:10.0f} ns/request  x{row.ratio:.3f}  {row.added_ns:+.0f} ns  "
            f"(CPU {row.added_cpu_ns:+.0f} ns; over floor {row.over_floor_cpu_ns:+.0f} ns)  "
            f"redis rt/req {row.round_trips:.2f}"
            + ("" if row.live is None else f"  live {row.live}")
        )
    return rows


def run_inprocess(settings: Settings, redis_url: str, log: Log) -> list[InprocessRow]:
    """Every in-process row: ASGI raw app, WSGI raw app, Flask app; all kinds. The
    cookie requests' session has a record in Redis, as a logged-in user's would."""
    client = redis.Redis.from_url(redis_url)
    client.set(f"session:{SESSION_ID}", session_record(SUBJECT))
    client.close()
    rows = asyncio.run(_asgi_group(settings, redis_url, log))
    rows += _wsgi_group("wsgi", settings, redis_url, lambda: apps.bare_wsgi, log)
    rows += _wsgi_group("flask", settings, redis_url, apps.flask_app, log)
    return rows
