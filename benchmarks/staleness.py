"""Cross-process staleness of the revocation mirror: how long after one process's
``EXEC`` another process's mirror holds the revocation.

A helper process (``python -m benchmarks.staleness``, on the server CPU) keeps a mirror
followed by a store of either flavour (the ASGI store's asyncio task, the WSGI store's
thread), as a server process would, and polls it. For each trial the suite revokes a
new token with the middleware's own core and store, timing ``execute()`` with
:func:`time.perf_counter_ns`; the helper reports the instant its mirror first holds it
(``CLOCK_MONOTONIC``: one clock for every process). Polls are bounded (1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import redis

from logout_middleware import LogoutConfig
from logout_middleware.core import (
    LogoutCore,
    RevocationKeys,
    RevocationMirror,
    StoreOps,
    StoreOutcome,
    sha256_hex,
)
from logout_middleware.core.revocation import member
from logout_middleware.store import AsyncRedisStore, RedisStore, drive

from .common import Settings
from .load import ROOT, LineHelper, pin

__all__ = ["FLAVOURS", "StalenessRow", "main", "staleness"]

#: Follower flavours and how the report names them.
FLAVOURS = {"async": "ASGI store (asyncio task)", "thread": "WSGI store (thread)"}
#: How long the helper polls for one revocation before giving up, seconds.
POLL_TIMEOUT = 1.0
#: How long the helper's mirror may take to become live, seconds.
LIVE_TIMEOUT = 30.0


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank); NaN for none."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))]


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
            return percentile(values, fraction)

        self.p50_us = pct(self.after_exec_us, 0.50)
        self.p99_us = pct(self.after_exec_us, 0.99)
        self.max_us = max(self.after_exec_us, default=math.nan)
        self.call_p50_us = pct(self.after_call_us, 0.50)
        self.call_p99_us = pct(self.after_call_us, 0.99)
        self.exec_p50_us = pct(self.exec_us, 0.50)
        return self


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
    parser = argparse.ArgumentParser(prog="python -m benchmarks.staleness")
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
            "benchmarks.staleness",
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
                    raise RuntimeError(f"benchmarks.staleness ({flavour}) did not start: {ready!r}")
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
                    raise RuntimeError(f"benchmarks.staleness ({flavour}) stopped answering")
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
