"""The revocation mirror: what it costs in memory, and how stale it is across processes.

* **Memory** (in-process, :func:`measure_memory`): a
  :class:`~logout_middleware.core.revocation.RevocationMirror` is given ``n`` revoked
  tokens, ``n`` session tombstones and ``m`` subjects' not-before times, as the
  middleware records them; the memory each kind retains is measured with
  :mod:`tracemalloc` (every allocation still alive afterwards) and cross-checked with
  ``sys.getsizeof`` deltas (container plus members). The per-process caches of
  sessions and tokens the checks keep (bounded at ``CACHE_SIZE`` each) are measured the
  same way, and the CPU time of taking in one audit-stream entry (what every process
  pays per revocation anywhere).
* **Staleness** (:func:`staleness`): a helper process (``python -m benchmarks.mirror``,
  on the server CPU) keeps a mirror followed by a store of either flavour (the ASGI
  store's asyncio task, the WSGI store's thread), as a server process would, and polls
  it. For each trial the suite's process revokes a new token with the middleware's own
  core and store (one ``MULTI``/``EXEC``: ``SET`` and the audit entry), timing
  ``execute()`` with :func:`time.perf_counter_ns`; the helper reports the
  :func:`time.perf_counter_ns` at which its mirror first holds the token
  (``CLOCK_MONOTONIC``: one clock for every process of the machine). Staleness is that
  instant minus the instant ``execute()`` returned (the ``EXEC`` reply had arrived), and
  minus the instant it was called (an upper bound). Polling is bounded (1 s per trial).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import math
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
import redis

from logout_middleware import LogoutConfig
from logout_middleware.core import (
    LogoutCore,
    RequestChecks,
    RevocationKeys,
    RevocationMirror,
    StoreOps,
    StoreOutcome,
    sha256_hex,
)
from logout_middleware.core.revocation import MirrorSnapshot, member
from logout_middleware.store import AsyncRedisStore, RedisStore, drive

from .server import ROOT, LineHelper, pin
from .stats import percentile

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "CLAIMS",
    "FLAVOURS",
    "MemoryRow",
    "StalenessRow",
    "main",
    "measure_memory",
    "staleness",
]

#: Bytes per item that the code says a mirror costs (RevocationMirror's docstring).
CLAIMS = {"revoked token": 70.0, "session tombstone": 70.0, "subject not-before": 100.0}
#: Follower flavours and how the report names them.
FLAVOURS = {
    "async": "ASGI store (asyncio task)",
    "thread": "WSGI store (thread)",
}
#: How long the helper polls for one revocation before giving up, seconds.
POLL_TIMEOUT = 1.0
#: How long the helper's mirror may take to become live, seconds.
LIVE_TIMEOUT = 30.0
#: Audit entries whose intake is timed.
ABSORB_ENTRIES = 10_000


@dataclass
class MemoryRow:
    """Memory one kind of item retains, bytes per item, by two methods."""

    what: str
    items: int
    bytes_per_item: float
    getsizeof_per_item: float
    claim: float | None = None


@dataclass
class StalenessRow:
    """Cross-process staleness of a mirror, one follower flavour.

    ``after_exec_us``: from ``execute()``'s return to the other mirror holding the
    revocation; ``after_call_us``: from ``execute()``'s call. ``exec_us``: the
    ``execute()`` call itself. Percentiles over ``trials``; ``missed``: trials not seen
    within the poll bound.
    """

    flavour: str
    label: str
    trials: int
    missed: int
    after_exec_us: list[float] = field(default_factory=list, repr=False)
    after_call_us: list[float] = field(default_factory=list, repr=False)
    exec_us: list[float] = field(default_factory=list, repr=False)
    p50_us: float = math.nan
    p99_us: float = math.nan
    max_us: float = math.nan
    call_p50_us: float = math.nan
    call_p99_us: float = math.nan
    exec_p50_us: float = math.nan

    def finish(self) -> StalenessRow:
        """Fill the percentiles (microseconds) from the samples; returns the row."""

        def pct(values: list[float], fraction: float) -> float:
            return percentile(sorted(values), fraction) if values else math.nan

        self.p50_us = pct(self.after_exec_us, 0.50)
        self.p99_us = pct(self.after_exec_us, 0.99)
        self.max_us = max(self.after_exec_us, default=math.nan)
        self.call_p50_us = pct(self.after_call_us, 0.50)
        self.call_p99_us = pct(self.after_call_us, 0.99)
        self.exec_p50_us = pct(self.exec_us, 0.50)
        return self


# -- memory ----------------------------------------------------------------------------


def _retained(action: Callable[[], object]) -> int:
    """Bytes still allocated after ``action`` that were not before (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = action()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def _sizes(container: Any) -> int:
    """``sys.getsizeof`` of a set or dict and of every key (and value) in it."""
    total = sys.getsizeof(container)
    if isinstance(container, dict):
        return total + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in container.items())
    return total + sum(sys.getsizeof(x) for x in container)


def _hashes(prefix: str, count: int) -> list[str]:
    return [sha256_hex(f"{prefix}-{i}".encode()) for i in range(count)]


def _entries(count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Audit-stream entries as ``XREAD`` returns them: a logout's fields, as bytes."""
    found = []
    for i in range(count):
        fields = {
            "id": f"{i:032x}",
            "at": "2025-01-01T00:00:00.000000+00:00",
            "method": "POST",
            "path": "/logout",
            "cookies": "session",
            "session_id_hash": sha256_hex(f"s-{i}".encode()),
            "token_hash": sha256_hex(f"t-{i}".encode()),
            "token_ttl": "3600",
            "client": "127.0.0.1",
            "user_agent": "Mozilla/5.0",
            "redirect": "/",
            "type": "session_end",
            "reason": "user_logout",
            "subject": f"user-{i}",
            "subject_source": "session",
            "impersonator": "",
            "duration": "12.500",
            "sessions_ended": "1",
            "tokens_ended": "1",
            "ended_sessions": "",
            "not_before": "",
            "store": "ok",
        }
        found.append(
            (
                f"{1_700_000_000_000 + i}-0".encode(),
                {k.encode(): v.encode() for k, v in fields.items()},
            )
        )
    return found


def _reply(fields: list[dict[bytes, bytes]]) -> list[tuple[bytes, Any]]:
    """An ``XREAD`` reply holding one entry per ``fields``."""
    entries = [(f"{1_700_000_000_000 + i}-0".encode(), f) for i, f in enumerate(fields)]
    return [(b"logout:events", entries)]


def measure_memory(settings: Settings) -> tuple[list[MemoryRow], float]:
    """Bytes per item of each kind the mirror and the checks' caches hold, and the CPU
    microseconds of taking in one audit entry (:meth:`RevocationMirror.absorb`).

    The mirror's kinds are given to it as every process receives them, through the
    audit stream (:meth:`RevocationMirror.absorb`); a reload (``SCAN``) builds the same
    sets. A logout written by the process itself (:meth:`RevocationMirror.add`) is
    measured apart: the mirror also keeps it aside until its next reload."""
    config = LogoutConfig()
    keys = RevocationKeys(config)
    n, m = settings.memory_items, settings.memory_subjects
    rows: list[MemoryRow] = []

    mirror = RevocationMirror(keys)
    state = mirror.state
    tokens = _reply([{b"token_hash": h.encode()} for h in _hashes("token", n)])
    sessions = _reply([{b"session_id_hash": h.encode()} for h in _hashes("session", n)])
    subjects = _reply(
        [{b"subject": f"user-{i}".encode(), b"not_before": b"1700000000.25"} for i in range(m)]
    )
    for what, container, reply, count in (
        ("revoked token", state.tokens, tokens, n),
        ("session tombstone", state.sessions, sessions, n),
        ("subject not-before", state.not_before, subjects, m),
    ):
        size_before = _sizes(container)

        def take(reply: list[tuple[bytes, Any]] = reply) -> None:
            mirror.absorb(reply, b"0-0")

        retained = _retained(take)
        rows.append(
            MemoryRow(
                what,
                count,
                retained / count,
                (_sizes(container) - size_before) / count,
                CLAIMS[what],
            )
        )
    del tokens, sessions, subjects

    # A logout this process writes: its token and session in the state, and aside.
    own = RevocationMirror(keys)
    logouts = min(n, 20_000)
    pairs = list(zip(_hashes("own-token", logouts), _hashes("own-session", logouts), strict=True))

    def write() -> None:
        for token_hash, session_hash in pairs:
            own.add(tokens=(token_hash,), sessions=(session_hash,))

    retained = _retained(write)
    rows.append(
        MemoryRow(
            "logout written by this process (until its next reload)",
            logouts,
            retained / logouts,
            math.nan,
        )
    )

    # The checks' per-process caches: sessions (by cookie value and by member) and
    # tokens (by Authorization value, with their JWT claims), each bounded.
    from logout_middleware.core.checks import CACHE_SIZE

    bounded = min(n, CACHE_SIZE - 1)
    checks = RequestChecks(config, keys, RevocationMirror(keys))
    cookies = [f"session=sid{i:040d}; theme=dark" for i in range(bounded)]
    retained = _retained(lambda: [checks.session(c) for c in cookies] and None)
    rows.append(MemoryRow("session seen (checks' cache)", bounded, retained / bounded, math.nan))
    now = 1_700_000_000
    jwts = [
        jwt.encode(
            {"sub": f"user-{i}", "iat": now, "exp": now + 3600}, "k" * 32, algorithm="HS256"
        ).encode()
        for i in range(bounded)
    ]
    # Each Authorization value is made inside: the cache keeps it, as it keeps a request's.
    retained = _retained(lambda: [checks.token(b"Bearer " + t) for t in jwts] and None)
    rows.append(MemoryRow("JWT seen (checks' cache)", bounded, retained / bounded, math.nan))

    reply = _reply([fields for _, fields in _entries(ABSORB_ENTRIES)])
    best = math.inf
    for _ in range(5):
        snapshot = MirrorSnapshot()
        began = time.thread_time_ns()
        mirror.absorb(reply, b"0-0", snapshot)
        best = min(best, time.thread_time_ns() - began)
    return rows, best / ABSORB_ENTRIES / 1e3


# -- staleness: the helper process ---------------------------------------------------------


def _wait(condition: Callable[[], bool], timeout: float, nap: Callable[[], None]) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        nap()
    return True


def _poll(mirror: RevocationMirror, at: int) -> int | None:
    """Busy-poll (yielding the GIL) until the mirror holds ``at``; the instant, or None."""
    deadline = time.perf_counter_ns() + int(POLL_TIMEOUT * 1e9)
    while True:
        now = time.perf_counter_ns()
        if at in mirror.state.tokens:
            return now
        if now > deadline:
            return None
        time.sleep(0)


async def _apoll(mirror: RevocationMirror, at: int) -> int | None:
    """:func:`_poll` on the event loop, letting the follower task run between looks."""
    deadline = time.perf_counter_ns() + int(POLL_TIMEOUT * 1e9)
    while True:
        now = time.perf_counter_ns()
        if at in mirror.state.tokens:
            return now
        if now > deadline:
            return None
        await asyncio.sleep(0)


def _say(text: str) -> None:
    print(text, flush=True)


def _thread_helper(url: str) -> None:
    config = LogoutConfig(redis_url=url)
    store = RedisStore.from_config(config)
    assert store is not None
    mirror = RevocationMirror(RevocationKeys(config))
    store.attach(mirror)
    store.follow()
    if not _wait(lambda: mirror.live, LIVE_TIMEOUT, lambda: time.sleep(0.005)):
        _say("not live")
        return
    _say("ready")
    try:
        while True:
            words = sys.stdin.readline().split()
            if not words or words[0] != "expect":
                break
            at = int(words[1])
            _say("polling")
            seen = _poll(mirror, at)
            _say("missed" if seen is None else f"seen {seen}")
    finally:
        store.close()


async def _async_helper(url: str) -> None:
    config = LogoutConfig(redis_url=url)
    store = AsyncRedisStore.from_config(config)
    assert store is not None
    mirror = RevocationMirror(RevocationKeys(config))
    store.attach(mirror)
    store.follow()
    for _ in range(int(LIVE_TIMEOUT / 0.005)):  # bounded polling
        if mirror.live:
            break
        await asyncio.sleep(0.005)
    if not mirror.live:
        _say("not live")
        await store.aclose()
        return
    _say("ready")
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            words = line.split()
            if not words or words[0] != "expect":
                break
            at = int(words[1])
            _say("polling")
            seen = await _apoll(mirror, at)
            _say("missed" if seen is None else f"seen {seen}")
    finally:
        await store.aclose()


def main(argv: list[str] | None = None) -> None:
    """The staleness helper: follow the audit stream into a mirror; for each line
    ``expect <member>``, answer ``polling``, then ``seen <perf_counter_ns>`` (or
    ``missed``) once the mirror holds that token."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mirror")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--flavour", choices=sorted(FLAVOURS), required=True)
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    pin(args.cpu)
    if args.flavour == "thread":
        _thread_helper(args.redis_url)
    else:
        asyncio.run(_async_helper(args.redis_url))


# -- staleness: the driver -------------------------------------------------------------------


class _TimedStore(RedisStore):
    """The middleware's synchronous store, with ``execute()`` timed."""

    began = 0
    ended = 0

    def execute(self, ops: StoreOps) -> StoreOutcome:
        self.began = time.perf_counter_ns()
        outcome = super().execute(ops)
        self.ended = time.perf_counter_ns()
        return outcome


def _helpers(redis_url: str, cpu: int | None) -> Iterator[tuple[str, LineHelper]]:
    for flavour in FLAVOURS:
        command = [
            sys.executable,
            "-m",
            "benchmarks.mirror",
            "--redis-url",
            redis_url,
            "--flavour",
            flavour,
        ]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        with subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        ) as process:
            helper = LineHelper(process)
            try:
                ready = helper.read()
                if ready != "ready":
                    raise RuntimeError(f"benchmarks.mirror ({flavour}) did not start: {ready!r}")
                yield flavour, helper
            finally:
                assert process.stdin is not None
                process.stdin.close()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def staleness(
    settings: Settings, redis_url: str, cpu: int | None, log: Callable[[str], None]
) -> list[StalenessRow]:
    """Cross-process staleness of the mirror, per follower flavour (see the module); the
    helper on ``cpu``, alone there (run it before the servers start)."""
    config = LogoutConfig(redis_url=redis_url)
    client = redis.Redis.from_url(redis_url)
    store = _TimedStore(client)
    core = LogoutCore(config, has_store=True)
    nonce = f"{time.time_ns() % 10**9:09d}"
    rows: list[StalenessRow] = []
    try:
        for flavour, helper in _helpers(redis_url, cpu):
            row = StalenessRow(flavour, FLAVOURS[flavour], settings.staleness_trials, 0)
            for trial in range(row.trials):
                token = f"stale-{nonce}-{flavour}-{trial:06d}".encode()
                at = member(sha256_hex(token))
                if helper.ask(f"expect {at}") != "polling":
                    raise RuntimeError(f"benchmarks.mirror ({flavour}) stopped answering")
                ended = drive(core.end(token=token, reason="admin"), store, core.verifier)
                answer = helper.read()
                if ended.event is None or ended.event.store != "ok":
                    raise RuntimeError(f"revocation failed: {ended}")
                if not answer.startswith("seen "):
                    row.missed += 1
                    continue
                seen = int(answer.split()[1])
                row.after_exec_us.append((seen - store.ended) / 1e3)
                row.after_call_us.append((seen - store.began) / 1e3)
                row.exec_us.append((store.ended - store.began) / 1e3)
                time.sleep(0.002)
            rows.append(row.finish())
            log(
                f"  staleness {flavour:6} p50 {row.p50_us:.0f} us, p99 {row.p99_us:.0f} us, "
                f"max {row.max_us:.0f} us after EXEC returned (from the call: p50 "
                f"{row.call_p50_us:.0f}, p99 {row.call_p99_us:.0f}); missed {row.missed}"
            )
    finally:
        client.close()
    return rows


if __name__ == "__main__":
    main()
