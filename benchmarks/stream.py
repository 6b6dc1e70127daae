"""The audit stream's throughput with many concurrent writers, on one Redis and on a
Redis Cluster, where the one stream lives on one shard.

Every logout appends an entry to one stream (``logout:events``), which every process
follows in order with one blocking ``XREAD``; on a cluster that stream, and so every
logout's audit entry, lands on one shard. This measures how many logouts that shard
takes, and what each costs it:

* ``logout``: the middleware's own ``AsyncRedisStore.execute()`` of a logout's writes
  as :class:`~logout_middleware.core.LogoutCore` plans them (a session and an opaque
  bearer token, never seen before: ``DEL`` of the record, ``SET`` of the revoked token
  and of the session's tombstone, and the audit entry, appended by a script that first
  claims its id with ``SET NX``): one ``MULTI``/``EXEC`` on one Redis; on a cluster,
  the key writes (a batch per shard, in parallel), then the entry on the stream's shard.
  The writes are planned before the clock starts.
* ``xadd``: the same entry's fields appended with a plain ``XADD ... MAXLEN ~`` from
  redis-py (the store's own client, in a pipeline of one, as the store sends
  everything): what one shard does for a bare entry.
* ``xadd-batch``: :data:`BATCH` such ``XADD`` s per pipeline: the client's cost per
  entry shrinks, so the shard comes closer to its own ceiling.

Each writer count (1, 8, 64) runs one helper process per (kind, Redis), started one
after another and pinned to the server CPU: ``python -m benchmarks.stream ...`` with
that many asyncio tasks, each with one request in flight (its own connection; one
process: the writers share one core, as the Redis servers share the other). After a
warm-up it prints ``ready``, then
answers each ``go`` line with one measured burst (JSON: operations, failures, seconds,
its own CPU seconds, latencies) and ends at ``quit``. The helpers of a writer count take
turns, round after round, in rotating order; around each burst the suite takes ``INFO``
deltas of every primary (commands, socket reads, ``INFO cpu``), so that the stream's
shard's CPU time per entry is known, and with it the entries per second one shard could
take at one full core (its *ceiling*; an estimate: Redis's per-read overhead is shared
by more entries as the load grows).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from logout_middleware import LogoutConfig
from logout_middleware.core import Asked, Ending, LogoutCore, StoreOps
from logout_middleware.store import AsyncRedisStore
from logout_middleware.topology import REDIS_ERRORS

from .common import TOKEN, Settings
from .load import ROOT, LineHelper, nan_median, pin, rotate
from .redisutil import NOT_COMMANDS, RedisSide, Usage

__all__ = ["BATCH", "KINDS", "StreamRow", "main", "stream_throughput"]

#: What each writer sends, and how the report names it.
KINDS = {
    "logout": "a logout (store.execute)",
    "xadd": "plain XADD of the same entry",
    "xadd-batch": "plain XADD, pipelined",
}
#: ``XADD`` s per pipeline of the ``xadd-batch`` writers.
BATCH = 50
#: How the report names the two deployments.
TOPOLOGIES = {"single": "one Redis", "cluster": "Redis Cluster (3 primaries)"}
#: The user agent of the planned logouts.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
#: Seconds of warm-up (connections opened, code paths warm) before ``ready``.
WARMUP_S = 0.3


@dataclass
class StreamRow:
    """One (Redis, kind, writers) over its rounds.

    ``ops``: operations done (logouts; for ``xadd-batch``, pipelines); ``entries``: the
    ``XADD`` calls Redis counted on the stream's node. ``rate``/``entries_per_s``:
    medians over rounds of per-round operations and entries per second. On the stream's
    node (one of the primaries on a cluster): ``stream_cpu_us`` its CPU time per entry,
    ``stream_busy`` its CPU time over the wall time (1.0 = one core saturated),
    ``stream_reads`` its socket reads per operation and ``stream_commands`` its
    commands per operation. Over every primary: ``redis_cpu_us`` CPU time and ``reads``
    socket reads per operation. ``client_cpu_us``: the writers' process's CPU time per
    operation. ``ceiling``: ``1e6 / stream_cpu_us``, the entries per second the stream's
    node would take at one full core at this cost per entry.
    """

    topology: str
    kind: str
    label: str
    writers: int
    batch: int
    ops_rounds: list[float] = field(default_factory=list)
    entries_rounds: list[float] = field(default_factory=list)
    ops: int = 0
    entries: int = 0
    failed: int = 0
    exhausted: int = 0
    elapsed_s: float = 0.0
    rate: float = math.nan
    entries_per_s: float = math.nan
    stream_cpu_us: float = math.nan
    stream_busy: float = math.nan
    stream_reads: float = math.nan
    stream_commands: dict[str, float] = field(default_factory=dict)
    redis_cpu_us: float = math.nan
    reads: float = math.nan
    client_cpu_us: float = math.nan
    ceiling: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan


# -- the helper: writers in one process --------------------------------------------------


def _planner(config: LogoutConfig, nonce: str) -> Callable[[int], StoreOps]:
    """Plans logout number ``n``'s writes with the middleware's own core (a session and
    an opaque bearer token, each new), as an HTTP logout would."""
    core = LogoutCore(config, has_store=True)

    def plan(number: int) -> StoreOps:
        sid = f"sw{nonce}{number:010d}{TOKEN[:24]}"
        flow = core.end(
            Ending(
                session_id=sid,
                token=f"tok{nonce}{number:012d}{TOKEN[:24]}".encode(),
                asked=Asked(
                    method="POST",
                    path="/logout",
                    client="127.0.0.1",
                    user_agent=USER_AGENT,
                    redirect="/",
                ),
            )
        )
        request: Any = flow.send(None)
        while not isinstance(request, StoreOps):  # no reads in the default configuration
            request = flow.send(None)
        flow.close()
        return request

    return plan


class _Writers:
    """``writers`` asyncio tasks doing operations of ``kind`` on one store's client."""

    def __init__(self, store: AsyncRedisStore, config: LogoutConfig, kind: str, nonce: str):
        self.store = store
        self.client: Any = store.client
        self.kind = kind
        self.stream = config.events_stream
        self.maxlen = config.events_maxlen
        self.plan = _planner(config, nonce)
        self.planned: list[StoreOps] = []
        self.fields: dict[str, str] = {**dict(self.plan(0).entry), "store": "ok"}
        self.number = 1

    def top_up(self, count: int) -> None:
        """Plan logouts until ``count`` wait (before the clock starts)."""
        while len(self.planned) < count:
            self.planned.append(self.plan(self.number))
            self.number += 1

    async def one(self) -> bool:
        """One operation; whether Redis took it."""
        if self.kind == "logout":
            if not self.planned:
                self.top_up(1)
            outcome = await self.store.execute(self.planned.pop())
            return outcome.status == "ok"
        # A pipeline, as the store sends everything (one command on its own through
        # redis-py's asyncio cluster client loses connections when many tasks start at
        # once: "Connection closed by server", AttributeError).
        pipe = self.client.pipeline(transaction=False)
        for _ in range(BATCH if self.kind == "xadd-batch" else 1):
            pipe.xadd(self.stream, self.fields, maxlen=self.maxlen, approximate=True)
        try:
            await pipe.execute()
        except REDIS_ERRORS:
            return False
        return True

    async def burst(self, writers: int, seconds: float) -> dict[str, Any]:
        """Every writer in a closed loop for ``seconds``: what they did."""
        latencies: list[int] = []
        failed = 0
        exhausted = 0

        async def writer(deadline: int) -> None:
            nonlocal failed, exhausted
            while True:
                began = time.perf_counter_ns()
                if began >= deadline:
                    return
                if self.kind == "logout" and not self.planned:
                    exhausted += 1
                    return
                if not await self.one():
                    failed += 1
                latencies.append(time.perf_counter_ns() - began)

        cpu = time.process_time()
        began = time.perf_counter_ns()
        await asyncio.gather(*(writer(began + int(seconds * 1e9)) for _ in range(writers)))
        elapsed = (time.perf_counter_ns() - began) / 1e9
        return {
            "ops": len(latencies),
            "failed": failed,
            "exhausted": exhausted,
            "elapsed_s": elapsed,
            "cpu_s": time.process_time() - cpu,
            "latencies_ns": latencies,
        }


async def _serve(args: argparse.Namespace) -> None:
    config = LogoutConfig(redis_url=args.redis_url, redis_cluster=args.cluster)
    store = AsyncRedisStore.from_config(config, follow=False)
    if store is None:
        raise SystemExit("no store")
    writers = _Writers(store, config, args.kind, args.nonce)
    if args.kind == "logout":
        writers.top_up(20 * args.writers)
    warm = await writers.burst(args.writers, WARMUP_S)
    rate = warm["ops"] / max(warm["elapsed_s"], 1e-9)
    if args.kind == "logout":
        writers.top_up(int(rate * args.duration * 3) + 20 * args.writers)
    print("ready", flush=True)
    while True:
        line = (await asyncio.to_thread(sys.stdin.readline)).strip()
        if line != "go":
            break
        found = await writers.burst(args.writers, args.duration)
        print(json.dumps(found), flush=True)
        rate = max(rate, found["ops"] / max(found["elapsed_s"], 1e-9))
        if args.kind == "logout":  # planned between bursts, off the clock
            writers.top_up(int(rate * args.duration * 3) + 20 * args.writers)
    await store.aclose()


def main(argv: list[str] | None = None) -> None:
    """Run one helper (see the module)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--cluster", action="store_true", help="the URL names a cluster node")
    parser.add_argument("--kind", choices=sorted(KINDS), required=True)
    parser.add_argument("--writers", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="seconds per burst")
    parser.add_argument("--nonce", default="", help="makes this helper's ids unique")
    parser.add_argument("--cpu", type=int, default=None)
    args = parser.parse_args(argv)
    pin(args.cpu)
    asyncio.run(_serve(args))


# -- the suite's side ----------------------------------------------------------------------


@contextmanager
def _helper(
    side: RedisSide, kind: str, writers: int, duration: float, nonce: str, cpu: int | None
) -> Iterator[LineHelper]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.stream",
        "--redis-url",
        side.url,
        "--kind",
        kind,
        "--writers",
        str(writers),
        "--duration",
        str(duration),
        "--nonce",
        nonce,
    ]
    if side.cluster:
        command.append("--cluster")
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    with subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            yield LineHelper(process)
        finally:
            assert process.stdin is not None
            process.stdin.close()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class _Series:
    """The bursts of one :class:`StreamRow`."""

    def __init__(self, row: StreamRow, side: RedisSide) -> None:
        self.row = row
        self.side = side
        self.latencies: list[int] = []
        self.usage = Usage()
        self.client_cpu_s = 0.0

    def add(self, found: dict[str, Any], usage: Usage) -> None:
        row = self.row
        stream = usage.shards[self.side.stream_node] if usage.shards else usage
        entries = stream.calls.get("xadd", 0)
        elapsed = float(found["elapsed_s"])
        row.ops += int(found["ops"])
        row.entries += entries
        row.failed += int(found["failed"])
        row.exhausted += int(found["exhausted"])
        row.elapsed_s += elapsed
        row.ops_rounds.append(found["ops"] / elapsed if elapsed > 0 else 0.0)
        row.entries_rounds.append(entries / elapsed if elapsed > 0 else 0.0)
        self.latencies += found["latencies_ns"]
        self.usage = self.usage + usage
        self.client_cpu_s += float(found["cpu_s"])

    def finish(self) -> StreamRow:
        row = self.row
        usage = self.usage
        stream = usage.shards[self.side.stream_node] if usage.shards else usage
        row.rate = nan_median(row.ops_rounds)
        row.entries_per_s = nan_median(row.entries_rounds)
        if row.entries:
            row.stream_cpu_us = stream.cpu_s / row.entries * 1e6
            row.ceiling = 1e6 / row.stream_cpu_us if row.stream_cpu_us > 0 else math.nan
        if row.elapsed_s > 0:
            row.stream_busy = stream.cpu_s / row.elapsed_s
        if row.ops:
            row.stream_reads = stream.reads / row.ops
            row.stream_commands = {
                k: v for k, v in stream.per(row.ops).items() if k not in NOT_COMMANDS
            }
            row.redis_cpu_us = usage.cpu_s / row.ops * 1e6
            row.reads = usage.reads / row.ops
            row.client_cpu_us = self.client_cpu_s / row.ops * 1e6
        ordered = sorted(self.latencies)
        if ordered:
            row.p50_ms = ordered[len(ordered) // 2] / 1e6
            row.p99_ms = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6
        return row


def stream_throughput(
    settings: Settings, sides: list[RedisSide], cpu: int | None, log: Callable[[str], None]
) -> list[StreamRow]:
    """The audit stream's throughput (see the module) on each of ``sides`` (the single
    Redis, the cluster), the helpers on ``cpu`` (run it before the servers start)."""
    nonce = f"{time.time_ns() % 10**9:09d}"
    rows: list[StreamRow] = []
    for writers in settings.stream_writers:
        kinds = ["logout", "xadd"]
        if writers == settings.stream_writers[-1]:
            kinds.append("xadd-batch")
        configs = [(side, kind) for kind in kinds for side in sides]
        with ExitStack() as stack:
            running: list[tuple[_Series, LineHelper]] = []
            for side, kind in configs:
                helper = stack.enter_context(
                    _helper(
                        side,
                        kind,
                        writers,
                        settings.stream_duration,
                        f"{nonce}{side.name[0]}{writers}{kind[0]}{len(kind)}",
                        cpu,
                    )
                )
                batch = BATCH if kind == "xadd-batch" else 1
                label = f"{TOPOLOGIES[side.name]}, {KINDS[kind]}"
                row = StreamRow(side.name, kind, label, writers, batch)
                running.append((_Series(row, side), helper))
                # One at a time: warm-ups that share the CPU would starve each other's
                # first connections (and their rate estimates).
                ready = helper.read()
                if ready != "ready":
                    raise RuntimeError(f"benchmarks.stream did not start: {ready!r}")
            for round_ in range(settings.stream_rounds):
                for series, helper in rotate(running, round_):
                    with series.side.counter.measure() as usage:
                        line = helper.ask("go")
                    series.add(json.loads(line), usage)
        for series, _ in running:
            row = series.finish()
            rows.append(row)
            log(
                f"  stream {row.topology:7} {row.kind:10} {writers:3} writers: "
                f"{row.rate:8.0f} ops/s, {row.entries_per_s:8.0f} entries/s, stream node "
                f"{row.stream_cpu_us:.1f} us CPU/entry ({row.stream_busy:.0%} busy, ceiling "
                f"{row.ceiling:,.0f} entries/s), client {row.client_cpu_us:.0f} us/op, "
                f"failed {row.failed}"
            )
    return rows


if __name__ == "__main__":
    main()
