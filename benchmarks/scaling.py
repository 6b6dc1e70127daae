"""Scaling of the revocation check: 1, 10^4 and 10^6 revoked tokens in Redis (and in each
mirror, reloaded: its load time and memory), at 1, 8 and 64 connections; ``EXISTS``
timed directly from redis-py."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from .apps import DENYLIST_PREFIX, TOKEN_TTL, denylist_key
from .common import TOKEN, VARIANTS, get_request
from .load import Bench, Series, ServerRow
from .redisutil import blocked_clients, fill_revoked, rss_mib, wait_blocked
from .wrk import Requests, exchange

__all__ = ["ExistsRow", "MirrorLoadRow", "scaling"]


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

    def maker(app: str, case: str) -> Requests:
        host = bench.host("asgi", app)
        if case == "hit":
            return Requests((get_request("bearer", host, token=revoked),), expected=401)
        return Requests(tuple(get_request("bearer", host, token=token) for token in misses))

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
            measured: list[Series] = []
            for app, case, label, status in cases:
                row = ServerRow(
                    "scaling", "asgi", case, app, label, concurrency, "bare", status, size
                )
                measured.append(Series(row, makers[app, case]))
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
