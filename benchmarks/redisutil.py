"""The suite's Redis: which server, CPU placement, round-trip counting and bulk fills.

Round trips are counted on the server, from ``INFO`` deltas taken around each
measured run, while no other client is active:

* ``total_reads_processed`` (``INFO stats``) counts the reads Redis made from client
  sockets. A client that sends a command, or a whole ``MULTI``...``EXEC`` pipeline, in
  one write and waits for the answer costs exactly one read: this is the number of
  round trips (an upper bound: a request split over two writes would count two).
* ``INFO commandstats`` gives the commands themselves (calls of ``EXISTS``, ``MULTI``,
  ``EXEC``, ``DEL``, ``SET``, ``XADD``...) and Redis's own time per ``EXISTS``.

The ``INFO`` calls that take the snapshots are measured once and subtracted. So are the
reads of revocation-cache followers (``XREAD``, ``XREVRANGE``, ``SCAN``, ``MGET``,
``CLIENT ID``: one read each), which server processes make when a logout's ``XADD``
wakes them (and at each reload): they are counted apart, as ``follower_reads``, the cost
a revocation puts on every cached process. Both snapshots wait for every follower to be
parked in its blocking ``XREAD``, so that each follower read inside the window matches
one follower call inside it. (A follower that deletes the records of sessions the
stream says ended sends a ``DEL``, which no request sends alone: the sections that can
see one count it apart from the request's own round trips.)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from logout_middleware.testing import redis_server

__all__ = [
    "RedisCounter",
    "Usage",
    "bench_redis",
    "blocked_clients",
    "fill_revoked",
    "pin_pid",
    "rss_mib",
    "seed_sessions",
    "wait_blocked",
    "wait_followers_parked",
]

#: How long :meth:`RedisCounter.measure` waits for the followers to park, seconds.
SETTLE_S = 2.0

#: Keys per Lua call when filling; each call blocks Redis for well under a second.
FILL_BATCH = 50_000

_FILL_REVOKED = """
local prefix = KEYS[1]
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('SET', prefix .. string.format('%064x', i), '1', 'EX', ARGV[3])
end
return 1
"""

_SEED_SESSIONS = """
local value = ARGV[3]
for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
  redis.call('SET', 'session:bench' .. string.format('%010d', i), value)
end
return 1
"""


@contextlib.contextmanager
def bench_redis() -> Iterator[tuple[str, bool]]:
    """``(url, owned)``: ``REDIS_URL`` when set (not owned: never pinned, but flushed),
    else a private ``redis-server`` from :func:`logout_middleware.testing.redis_server`."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url, False
        return
    with redis_server() as started:
        yield started, True


def pin_pid(pid: int, cpu: int) -> None:
    """Pin every thread of process ``pid`` to ``cpu`` (Linux; no-op elsewhere)."""
    if not hasattr(os, "sched_setaffinity"):
        return
    tasks = [int(t) for t in _listdir(f"/proc/{pid}/task")] or [pid]
    for task in tasks:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(task, {cpu})


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def process_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds used so far by process ``pid`` (all its threads),
    from ``/proc/<pid>/stat``; None where that is not available."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (``VmRSS``), or None where unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def blocked_clients(client: redis.Redis) -> int:
    """Clients blocked in Redis now: the followers waiting in ``XREAD ... BLOCK``."""
    info: dict[str, Any] = client.info("clients")
    return int(info.get("blocked_clients", 0))


def wait_blocked(client: redis.Redis, target: int, timeout: float) -> bool:
    """Wait until at least ``target`` clients are blocked (every follower parked), at
    most ``timeout`` seconds; whether they are."""
    deadline = time.monotonic() + timeout
    while blocked_clients(client) < target:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


#: Commands only a follower sends on its own connection (its last command while it loads
#: or is parked): a follower whose last command is one of these and is not blocked is
#: loading its mirror or taking in entries.
_FOLLOWING = frozenset({"xread", "xrevrange", "scan", "mget"})


def followers_busy(client: redis.Redis) -> int:
    """Followers not parked now: connections whose last command is a follower's and that
    are not blocked (``CLIENT LIST``)."""
    return sum(
        1
        for found in client.client_list()
        if str(found.get("cmd", "")).split("|", 1)[0] in _FOLLOWING
        and "b" not in str(found.get("flags", ""))
    )


def wait_followers_parked(client: redis.Redis, timeout: float = 60.0) -> bool:
    """Wait until every follower is parked in its blocking ``XREAD`` (none loading its
    mirror or taking in entries), seen twice 20 ms apart; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        if time.monotonic() > deadline:
            return False
        quiet = quiet + 1 if followers_busy(client) == 0 else 0
        time.sleep(0.02)
    return True


@dataclass
class Usage:
    """What Redis did during one measured run."""

    reads: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    usec: Counter[str] = field(default_factory=Counter)
    #: Reads made by revocation-cache followers, not by the measured requests.
    follower_reads: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.reads + other.reads,
            self.calls + other.calls,
            self.usec + other.usec,
            self.follower_reads + other.follower_reads,
        )

    @property
    def commands(self) -> int:
        return sum(self.calls.values())

    def per(self, requests: int) -> dict[str, float]:
        """Round trips, commands, and each command's calls, per request."""
        if requests <= 0:
            return {"round_trips": 0.0, "commands": 0.0}
        found = {
            "round_trips": self.reads / requests,
            "commands": self.commands / requests,
            "follower_reads": self.follower_reads / requests,
        }
        for name, calls in sorted(self.calls.items()):
            found[name] = calls / requests
        return found


#: Commands only the revocation cache's followers send (``client`` is ``CLIENT ID`` on
#: Redis before 7, which counts subcommands under the command).
FOLLOWER_COMMANDS = ("xread", "xrevrange", "scan", "mget", "client|id", "client")


class RedisCounter:
    """Snapshots of Redis's counters, with the snapshots' own cost removed."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._own = Usage()
        first = self._snapshot()
        second = self._snapshot()
        self._own = self._diff(first, second)

    def _snapshot(self) -> Usage:
        stats: dict[str, Any] = self.client.info("stats")
        commands: dict[str, Any] = self.client.info("commandstats")
        usage = Usage(int(stats.get("total_reads_processed", 0)))
        for key, value in commands.items():
            name = key.removeprefix("cmdstat_")
            usage.calls[name] = int(value["calls"])
            usage.usec[name] = int(value["usec"])
        return usage

    @staticmethod
    def _diff(before: Usage, after: Usage) -> Usage:
        calls = Counter({k: v - before.calls.get(k, 0) for k, v in after.calls.items()})
        usec = Counter({k: v - before.usec.get(k, 0) for k, v in after.usec.items()})
        return Usage(after.reads - before.reads, +calls, +usec)

    def _blocked(self) -> int:
        return blocked_clients(self.client)

    def _settle(self, target: int | None) -> tuple[int, int]:
        """Wait (at most :data:`SETTLE_S`) until the number of blocked clients equals
        ``target``, or, with ``target=None``, until it reads the same twice in a row.

        Returns ``(blocked, polls)``: the last count seen and the ``INFO clients`` calls
        made, each one read and one ``info`` call that the caller may have to remove."""
        polls = 1
        seen = self._blocked()
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            if target is not None and seen == target:
                break
            time.sleep(0.005)
            polls += 1
            now = self._blocked()
            if target is None and now == seen:
                break
            seen = now
        return seen, polls

    @contextlib.contextmanager
    def measure(self) -> Iterator[Usage]:
        """Fill the yielded :class:`Usage` with what Redis did inside the block.

        A follower's blocking ``XREAD`` is counted as a read when it is sent but as a
        call only when an entry (or its timeout) wakes it. So both snapshots are taken
        with every follower parked in its ``XREAD``: then, inside the window, each
        wake-up is exactly one follower read and one follower call, and the follower
        reads can be removed from the round trips exactly."""
        found = Usage()
        parked, _ = self._settle(None)
        before = self._snapshot()
        yield found
        _, polls = self._settle(parked)
        after = self._snapshot()
        delta = self._diff(before, after)
        delta.calls["info"] -= polls
        own = self._own
        found.calls = +Counter({k: v - own.calls.get(k, 0) for k, v in delta.calls.items()})
        found.follower_reads = sum(found.calls.get(name, 0) for name in FOLLOWER_COMMANDS)
        found.reads = max(0, delta.reads - polls - own.reads - found.follower_reads)
        found.usec = +Counter({k: v - own.usec.get(k, 0) for k, v in delta.usec.items()})


def fill_revoked(client: redis.Redis, prefix: str, start: int, stop: int, ttl: int) -> None:
    """Add denylist-shaped keys ``prefix + 64 hex digits`` numbered ``start..stop-1``,
    each with a TTL, as the middleware writes them; a Lua loop, in batches."""
    for low in range(start, stop, FILL_BATCH):
        high = min(stop, low + FILL_BATCH) - 1
        client.eval(_FILL_REVOKED, 1, prefix, low, high, ttl)


def seed_sessions(client: redis.Redis, start: int, stop: int) -> None:
    """Create the session keys ``session:bench<n>`` for ``n`` in ``start..stop-1``."""
    value = "x" * 96
    for low in range(start, stop, FILL_BATCH):
        high = min(stop, low + FILL_BATCH) - 1
        client.eval(_SEED_SESSIONS, 0, low, high, value)
