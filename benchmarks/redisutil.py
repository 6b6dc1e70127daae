"""The suite's Redis: which servers, CPU placement, round-trip counting and bulk fills.

Two deployments: the single Redis every section uses (:func:`bench_redis`) and, for the
cluster section, a local Redis Cluster of three primaries with one replica each
(:func:`bench_cluster`), started from the same ``redis-server`` binary and formed by
``redis-cli --cluster create``. :class:`RedisSide` is what a section needs of either.

Round trips are counted on the server, from ``INFO`` deltas taken around each
measured run, while no other client is active:

* ``total_reads_processed`` (``INFO stats``) counts the reads Redis made from client
  sockets. A client that sends a command, or a whole ``MULTI``...``EXEC`` pipeline, in
  one write and waits for the answer costs exactly one read: this is the number of
  round trips (an upper bound: a request split over two writes would count two).
* ``INFO commandstats`` gives the commands themselves (calls of ``EXISTS``, ``MULTI``,
  ``EXEC``, ``DEL``, ``SET``, ``XADD``...) and Redis's own time per ``EXISTS``.

On a cluster, :class:`ClusterCounter` takes the same snapshots on every primary and
sums them (a pipeline touching three shards costs three reads, one per shard's batch,
all sent before any reply is read: one round trip of waiting), keeping each primary's
figures.
``INFO cpu`` (``used_cpu_user`` + ``used_cpu_sys``) gives the server CPU time spent in
the window, per node. A primary's replica sends it ``REPLCONF ACK`` once a second: those
reads and calls are removed.

The ``INFO`` calls that take the snapshots are measured once and subtracted. So are the
reads of revocation-cache followers (``XREAD``, ``XREVRANGE``, ``SCAN``, ``MGET``,
``CLIENT ID``, and on a cluster redis-py's ``COMMAND GETKEYS`` before each ``XREAD``:
one read each), which server processes make when a logout's ``XADD``
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
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis
import redis.cluster

from logout_middleware.testing import find_redis_server, redis_server, stop_process

__all__ = [
    "ClusterCounter",
    "LocalCluster",
    "RedisCounter",
    "RedisSide",
    "Usage",
    "bench_cluster",
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


def followers_busy(client: redis.Redis, *, recent: bool = False) -> int:
    """Followers not parked now: connections whose last command is a follower's and that
    are not blocked (``CLIENT LIST``). With ``recent``, only those active within the last
    second: a cluster client's follower keeps a connection to every primary, and the
    ones it used only to ``SCAN`` stay idle with that as their last command."""
    return sum(
        1
        for found in client.client_list()
        if str(found.get("cmd", "")).split("|", 1)[0] in _FOLLOWING
        and "b" not in str(found.get("flags", ""))
        and not (recent and int(found.get("idle", 0)) > 0)
    )


def wait_followers_parked(
    client: redis.Redis, timeout: float = 60.0, *, recent: bool = False
) -> bool:
    """Wait until every follower is parked in its blocking ``XREAD`` (none loading its
    mirror or taking in entries), seen twice 20 ms apart; at most ``timeout`` seconds.
    ``recent``: see :func:`followers_busy` (for a cluster's nodes)."""
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 2:
        if time.monotonic() > deadline:
            return False
        quiet = quiet + 1 if followers_busy(client, recent=recent) == 0 else 0
        time.sleep(0.02)
    return True


@dataclass
class Usage:
    """What Redis did during one measured run (on a cluster: summed over the primaries,
    each primary's own in ``shards``, in slot order)."""

    reads: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    usec: Counter[str] = field(default_factory=Counter)
    #: Reads made by revocation-cache followers, not by the measured requests.
    follower_reads: int = 0
    #: Server CPU seconds (``INFO cpu``: user + system) spent in the window.
    cpu_s: float = 0.0
    shards: list[Usage] = field(default_factory=list)

    def __add__(self, other: Usage) -> Usage:
        shards = [a + b for a, b in zip(self.shards, other.shards, strict=False)]
        return Usage(
            self.reads + other.reads,
            self.calls + other.calls,
            self.usec + other.usec,
            self.follower_reads + other.follower_reads,
            self.cpu_s + other.cpu_s,
            shards or self.shards or other.shards,
        )

    @property
    def commands(self) -> int:
        """Commands Redis counted in all (every command's calls summed)."""
        return sum(self.calls.values())

    def per(self, requests: int) -> dict[str, float]:
        """Round trips (on a cluster: reads summed over the shards), commands, Redis CPU
        microseconds (``redis_cpu_us``) and each command's calls, per request."""
        if requests <= 0:
            return {"round_trips": 0.0, "commands": 0.0}
        found = {
            "round_trips": self.reads / requests,
            "commands": self.commands / requests,
            "follower_reads": self.follower_reads / requests,
            "redis_cpu_us": self.cpu_s / requests * 1e6,
        }
        for name, calls in sorted(self.calls.items()):
            found[name] = calls / requests
        return found


#: Keys of :meth:`Usage.per` that are not commands.
NOT_COMMANDS = frozenset({"round_trips", "commands", "follower_reads", "redis_cpu_us"})


#: Commands only the revocation cache's followers send (``client`` is ``CLIENT ID`` on
#: Redis before 7, which counts subcommands under the command). On a cluster, redis-py
#: cannot find the key of an ``XREAD`` (a command with "movable keys") by itself and
#: asks a node with ``COMMAND GETKEYS`` (twice, in redis-py 8.1) before each one: those
#: are the followers' too (``command`` before Redis 7; the request paths send none).
FOLLOWER_COMMANDS = (
    "xread",
    "xrevrange",
    "scan",
    "mget",
    "client|id",
    "client",
    "command",
    "command|getkeys",
)


#: Snapshot pairs taken to learn what a snapshot itself costs Redis.
CALIBRATIONS = 3


class RedisCounter:
    """Snapshots of Redis's counters, with the snapshots' own cost removed."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._own = Usage()
        # The cost of a snapshot: the least of a few tries, so that another client's
        # commands at that moment (a new app's start-up check, say) are not taken for it.
        tries = []
        for attempt in range(CALIBRATIONS):
            if attempt:
                time.sleep(0.01)
            first = self._snapshot()
            tries.append(self._diff(first, self._snapshot()))
        self._own = min(tries, key=lambda found: (found.reads, found.commands))

    def _snapshot(self) -> Usage:
        stats: dict[str, Any] = self.client.info("stats")
        commands: dict[str, Any] = self.client.info("commandstats")
        usage = Usage(int(stats.get("total_reads_processed", 0)), cpu_s=cpu_seconds(self.client))
        for key, value in commands.items():
            name = key.removeprefix("cmdstat_")
            usage.calls[name] = int(value["calls"])
            usage.usec[name] = int(value["usec"])
        return usage

    @staticmethod
    def _diff(before: Usage, after: Usage) -> Usage:
        calls = Counter({k: v - before.calls.get(k, 0) for k, v in after.calls.items()})
        usec = Counter({k: v - before.usec.get(k, 0) for k, v in after.usec.items()})
        return Usage(after.reads - before.reads, +calls, +usec, cpu_s=after.cpu_s - before.cpu_s)

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
        # A cluster primary's replica acknowledges what it took in once a second.
        acks = found.calls.pop("replconf", 0)
        found.reads = max(0, delta.reads - polls - own.reads - found.follower_reads - acks)
        found.usec = +Counter({k: v - own.usec.get(k, 0) for k, v in delta.usec.items()})
        found.cpu_s = delta.cpu_s


def cpu_seconds(client: redis.Redis) -> float:
    """CPU seconds the Redis server has used (``INFO cpu``: user + system)."""
    info: dict[str, Any] = client.info("cpu")
    return float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0))


class Counting(Protocol):
    """What measures Redis's work around a block: :class:`RedisCounter` on one Redis,
    :class:`ClusterCounter` on a cluster."""

    def measure(self) -> contextlib.AbstractContextManager[Usage]:
        """Fill the yielded :class:`Usage` with what Redis did inside the block."""
        ...


class ClusterCounter:
    """A :class:`RedisCounter` on every primary of a cluster (``nodes``, in slot order):
    :meth:`measure` yields their sum, each primary's own in :attr:`Usage.shards`."""

    def __init__(self, nodes: Sequence[redis.Redis]) -> None:
        self.counters = [RedisCounter(node) for node in nodes]

    @contextlib.contextmanager
    def measure(self) -> Iterator[Usage]:
        """As :meth:`RedisCounter.measure`, on every primary at once."""
        found = Usage()
        with contextlib.ExitStack() as stack:
            parts = [stack.enter_context(counter.measure()) for counter in self.counters]
            yield found
        total = Usage()
        for part in parts:
            total = total + part
        found.reads, found.calls, found.usec = total.reads, total.calls, total.usec
        found.follower_reads, found.cpu_s, found.shards = total.follower_reads, total.cpu_s, parts


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


def seed_sessions_cluster(client: Any, start: int, stop: int) -> None:
    """:func:`seed_sessions` on a cluster client: a script cannot write keys of other
    shards, so a non-transactional pipeline of ``SET`` s per batch (one batch per shard)."""
    value = "x" * 96
    for low in range(start, stop, CLUSTER_SEED_BATCH):
        pipe = client.pipeline(transaction=False)
        for number in range(low, min(stop, low + CLUSTER_SEED_BATCH)):
            pipe.set(f"session:bench{number:010d}", value)
        pipe.execute()


#: Keys per pipeline when seeding sessions on a cluster.
CLUSTER_SEED_BATCH = 2000


@dataclass
class RedisSide:
    """One Redis deployment the suite measures against: the single Redis or the cluster.

    :param name: ``single`` or ``cluster``.
    :param url: what the middleware is given (``LOGOUT_REDIS_URL``; on a cluster, a
        node, with ``LOGOUT_REDIS_CLUSTER=true``).
    :param admin: a redis-py client for checks and seeding (``redis.Redis`` or
        ``redis.cluster.RedisCluster``).
    :param counter: measures Redis's work (every primary's, on a cluster).
    :param nodes: a client on each primary, in slot order (the single Redis: ``admin``).
    :param stream_node: the index in ``nodes`` of the primary holding the audit stream,
        where the followers block in ``XREAD``.
    """

    name: str
    url: str
    admin: Any
    counter: Counting
    nodes: list[redis.Redis]
    stream_node: int = 0

    @property
    def cluster(self) -> bool:
        """Whether this is the cluster."""
        return self.name == "cluster"

    @property
    def watch(self) -> redis.Redis:
        """The node where the followers block (``INFO clients``)."""
        return self.nodes[self.stream_node]

    def seed_sessions(self, start: int, stop: int) -> None:
        """Create the session keys ``session:bench<n>`` for ``n`` in ``start..stop-1``."""
        if self.cluster:
            seed_sessions_cluster(self.admin, start, stop)
        else:
            seed_sessions(self.admin, start, stop)

    def settle(self, timeout: float) -> bool:
        """Wait until every follower on this deployment is parked (see
        :func:`wait_followers_parked`); whether they are."""
        return all(wait_followers_parked(node, timeout, recent=self.cluster) for node in self.nodes)

    def flush(self) -> None:
        """Delete every key of the database (on a cluster, of every primary)."""
        for node in self.nodes:
            node.flushdb()


def single_side(url: str, admin: redis.Redis, counter: RedisCounter) -> RedisSide:
    """The :class:`RedisSide` of the single Redis."""
    return RedisSide("single", url, admin, counter, [admin])


# -- a local Redis Cluster -------------------------------------------------------------

#: Primaries of the suite's cluster (each with one replica).
CLUSTER_PRIMARIES = 3
#: Redis puts a node's cluster bus on its port + 10000.
BUS_OFFSET = 10000
#: How long the cluster may take to start and settle, seconds.
CLUSTER_TIMEOUT = 30.0


def _cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 65535 - BUS_OFFSET)
        try:
            with socket.socket() as one, socket.socket() as two:
                one.bind(("127.0.0.1", port))
                two.bind(("127.0.0.1", port + BUS_OFFSET))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of ports for a cluster node")


def _redis_cli(server: str) -> str:
    """The ``redis-cli`` beside the ``redis-server`` binary, else on ``PATH``."""
    beside = Path(server).with_name("redis-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("redis-cli")
    if found is None:
        raise RuntimeError("no redis-cli found (it forms the benchmark's Redis Cluster)")
    return found


@dataclass
class LocalCluster:
    """A Redis Cluster on loopback started by :func:`bench_cluster`."""

    #: ``(port, process)`` of every node.
    nodes: list[tuple[int, subprocess.Popen[bytes]]]
    #: A cluster client (redis-py's ``RedisCluster``), for checks and seeding.
    client: redis.cluster.RedisCluster
    #: The server version.
    version: str

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of the first node (any node will do)."""
        return f"redis://127.0.0.1:{self.nodes[0][0]}"

    def primaries(self) -> list[int]:
        """The primaries' ports, in slot order."""
        slots: Any = self.client.cluster_slots()  # {(low, high): {"primary": ...}}
        first = sorted((low, node) for (low, _high), node in slots.items())
        return [int(node["primary"][1]) for _low, node in first]

    def slot_owner(self, key: str) -> int:
        """The port of the primary serving ``key``."""
        client: Any = self.client  # untyped in redis-py
        return int(client.get_node_from_key(key).port)

    def pids(self) -> list[int]:
        """Every node's process id."""
        return [process.pid for _port, process in self.nodes]

    def side(self, stream: str) -> RedisSide:
        """The :class:`RedisSide` of this cluster, the audit ``stream``'s primary marked."""
        ports = self.primaries()
        nodes = [redis.Redis(host="127.0.0.1", port=port) for port in ports]
        return RedisSide(
            "cluster",
            self.url,
            self.client,
            ClusterCounter(nodes),
            nodes,
            ports.index(self.slot_owner(stream)),
        )


def _settled(ports: Sequence[int]) -> bool:
    for port in ports:
        with contextlib.closing(redis.Redis(port=port, socket_timeout=1.0)) as node:
            info: dict[str, Any] = node.cluster("INFO")
            if str(info.get("cluster_state")) != "ok":
                return False
            replication: dict[str, Any] = node.info("replication")
            if replication.get("role") == "slave":
                if replication.get("master_link_status") != "up":
                    return False
            elif int(replication.get("connected_slaves", 0)) < 1:
                return False
    return True


@contextlib.contextmanager
def bench_cluster(primaries: int = CLUSTER_PRIMARIES) -> Iterator[LocalCluster]:
    """A Redis Cluster of ``primaries`` primaries with one replica each, on loopback,
    from :func:`~logout_middleware.testing.find_redis_server`'s binary (nothing
    persisted), formed by ``redis-cli --cluster create``; every node stopped and its
    directory removed on exit.

    :raises RuntimeError: when a node does not start or the cluster does not settle in
        :data:`CLUSTER_TIMEOUT` seconds.
    """
    server = find_redis_server()
    workdir = tempfile.mkdtemp(prefix="logout-bench-cluster-")
    nodes: list[tuple[int, subprocess.Popen[bytes]]] = []
    client: redis.cluster.RedisCluster | None = None
    try:
        for number in range(2 * primaries):
            port = _cluster_port()
            directory = Path(workdir) / f"node{number}"
            directory.mkdir()
            process = subprocess.Popen(
                [
                    server,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(directory),
                    "--daemonize",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            nodes.append((port, process))
        ports = [port for port, _ in nodes]
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        for port in ports:
            while not _answers(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node on port {port} did not start")
                time.sleep(0.05)
        subprocess.run(
            [
                _redis_cli(server),
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=CLUSTER_TIMEOUT,
        )
        while not _quiet(_settled, ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the benchmark's Redis Cluster did not settle")
            time.sleep(0.1)
        client = redis.cluster.RedisCluster(host="127.0.0.1", port=ports[0])
        version = str(_version(ports[0]))
        yield LocalCluster(nodes, client, version)
    finally:
        if client is not None:
            client.close()
        for _port, process in nodes:
            stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _version(port: int) -> str:
    with contextlib.closing(redis.Redis(port=port)) as node:
        info: dict[str, Any] = node.info("server")
        return str(info["redis_version"])


def _answers(port: int) -> bool:
    with contextlib.closing(redis.Redis(port=port, socket_connect_timeout=0.5)) as node:
        try:
            return bool(node.ping())
        except redis.RedisError:
            return False


def _quiet(check: Any, ports: Sequence[int]) -> bool:
    """``check(ports)``, a Redis error counting as false."""
    try:
        return bool(check(ports))
    except (redis.RedisError, OSError):
        return False
