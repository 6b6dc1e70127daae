"""The fault-test harness (tests/topologies.py) checked with plain redis-py: an
append-only file survives SIGKILL, a paused server times a client out and answers again
once continued, redis-py's Sentinel client follows a failover, redis-py's cluster client
reads every slot back after a primary is killed, a slot moved live keeps every key, and
no process or file outlives its topology, also when it fails to start.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.servers import wait_until
from tests.topologies import (
    AOF,
    SLOTS,
    RedisCluster,
    RedisProcess,
    SentinelGroup,
    TopologyError,
)

pytestmark = pytest.mark.faults

#: How long a client waits for one reply in these tests, seconds.
TIMEOUT = 0.3
#: What a timed-out call may take beyond its timeout on a busy machine, seconds.
SLACK = 2.0


def no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def processes_in(root: Path) -> set[int]:
    """Our processes whose working directory is ``root`` or below it (every server
    of a topology runs in its own directory under the topology's root)."""
    found: set[int] = set()
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            where = os.readlink(cwd)
        except OSError:
            continue
        if where == str(root) or where.startswith(f"{root}/"):
            found.add(int(cwd.parent.name))
    return found


def root_of(topology: RedisProcess | SentinelGroup | RedisCluster) -> Path:
    """The directory every file of ``topology`` is in."""
    return topology.directory if isinstance(topology, RedisProcess) else topology.root


def gone(pid: int | None) -> bool:
    """Whether process ``pid`` no longer exists (exited and reaped)."""
    return pid is not None and not Path(f"/proc/{pid}").exists()


def slot_keys() -> list[str]:
    """One key for every hash slot of a cluster."""
    keys: dict[int, str] = {}
    number = 0
    while len(keys) < SLOTS:
        key = f"key:{number}"
        keys.setdefault(key_slot(key.encode()), key)
        number += 1
    return [keys[slot] for slot in range(SLOTS)]


@contextlib.contextmanager
def cluster_client(cluster: RedisCluster) -> Iterator[ClusterClient]:
    client = ClusterClient.from_url(
        cluster.url, socket_timeout=1.0, socket_connect_timeout=1.0, decode_responses=True
    )
    try:
        yield client
    finally:
        client.close()


def test_aof_survives_kill_and_restart() -> None:
    with RedisProcess(AOF) as server:
        port, first_pid = server.port, server.pid
        client = server.client(retry=no_retry())
        try:
            client.mset({f"k{n}": str(n) for n in range(100)})
            server.kill()
            assert gone(first_pid)
            with pytest.raises(redis.ConnectionError):
                client.ping()
            server.restart()
            assert (server.port, server.running) == (port, True)
            assert server.pid != first_pid
            assert client.mget([f"k{n}" for n in range(100)]) == [
                str(n).encode() for n in range(100)
            ]
        finally:
            client.close()


def test_pause_times_a_client_out_and_resume_recovers() -> None:
    with RedisProcess() as server:
        client = server.client(socket_timeout=TIMEOUT, retry=no_retry())
        try:
            client.set("before", "1")
            server.pause()
            started = time.monotonic()
            with pytest.raises(redis.TimeoutError):
                client.get("before")
            elapsed = time.monotonic() - started
            assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + SLACK
            assert not server.answers()
            server.resume()
            assert client.get("before") == b"1"
            assert server.answers()
        finally:
            client.close()
    assert not server.running


def test_sentinel_client_follows_a_failover() -> None:
    with SentinelGroup() as group:
        hosts = ",".join(f"127.0.0.1:{port}" for _host, port in group.sentinel_addresses)
        assert group.url == f"redis+sentinel://{hosts}/{group.service}"
        assert len(group.sentinels) == 3
        old = group.primary_address()
        assert old == group.servers[0].address

        sentinel = Sentinel(
            group.sentinel_addresses,
            socket_timeout=TIMEOUT,
            sentinel_kwargs={"socket_timeout": TIMEOUT, "socket_connect_timeout": TIMEOUT},
        )
        primary = sentinel.master_for(
            group.service, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        try:
            primary.set("before", "1")
            group.wait_synced()
            promoted = group.failover()
            assert promoted.address != old
            assert promoted.address == group.primary_address()
            assert not group.servers[0].running
            found = sentinel.discover_master(group.service)
            assert found == promoted.address

            def written() -> bool:
                try:
                    return bool(primary.set("after", "2"))
                except redis.RedisError:
                    return False

            assert wait_until(written, timeout=10)
            assert primary.mget("before", "after") == [b"1", b"2"]
            assert promoted.info("keyspace")["db0"]["keys"] == 2
        finally:
            primary.close()
            for client in sentinel.sentinels:
                client.close()


def test_sentinel_failover_of_a_paused_primary() -> None:
    with SentinelGroup() as group:
        old = group.servers[0]
        promoted = group.failover(pause=True)
        assert old.paused
        assert old.running
        assert promoted is group.servers[1]
        assert group.primary_address() == promoted.address
        assert promoted.info("replication")["role"] == "master"


def test_cluster_writes_every_slot_and_reads_them_after_a_failover() -> None:
    keys = slot_keys()
    with RedisCluster() as cluster:
        assert len(cluster.nodes) == 6
        assert len(cluster.primaries()) == 3
        for primary in cluster.primaries():
            assert cluster.replica_of(primary) in cluster.nodes[3:]
        with cluster_client(cluster) as client:
            pipe = client.pipeline()  # type: ignore[no-untyped-call]
            for key in keys:
                pipe.set(key, key)
            assert all(pipe.execute())
            cluster.wait_synced()

            victim = cluster.primaries()[1]
            replica = cluster.replica_of(victim)
            promoted = cluster.failover(victim)
            assert promoted is replica
            assert not victim.running
            assert promoted in cluster.primaries()
            assert victim not in cluster.primaries()

            # The client learns the new layout from the first error it gets (redis-py
            # refreshes its slot table after a connection error), then reads every key.
            assert wait_until(lambda: read_back(client, keys), timeout=10)

            # The killed node comes back as the replica of the one that took over.
            victim.restart()
            cluster.wait_ok()
            assert cluster.replica_of(promoted) is victim


def read_back(client: ClusterClient, keys: list[str]) -> bool:
    try:
        return bool(client.mget_nonatomic(keys) == keys)
    except redis.RedisError:
        return False


def test_cluster_manual_failover_swaps_roles_and_keeps_writes() -> None:
    keys = slot_keys()[:1000]
    with RedisCluster() as cluster, cluster_client(cluster) as client:
        client.mset_nonatomic(dict.fromkeys(keys, "1"))
        first = cluster.primaries()[0]
        replica = cluster.replica_of(first)
        assert cluster.manual_failover() is replica
        assert replica in cluster.primaries()
        assert cluster.replica_of(replica) is first
        assert first.info("replication")["role"] == "slave"
        assert wait_until(lambda: client.mget_nonatomic(keys) == ["1"] * len(keys), timeout=10)


def test_cluster_migrate_slot_moves_its_keys_while_a_client_writes() -> None:
    """Resharding one slot live: every key in it, old or written meanwhile (through
    ``ASK`` redirections), is served by the new owner afterwards, TTLs kept."""
    keys = [f"{{moved}}:{n}" for n in range(250)]
    slot = key_slot(b"moved")
    with RedisCluster() as cluster, cluster_client(cluster) as client:
        client.mset_nonatomic(dict.fromkeys(keys, "1"))
        client.expire(keys[0], 600)
        source = cluster.owner(slot)
        target = next(p for p in cluster.primaries() if p is not source)
        stop = threading.Event()
        written: list[str] = []

        def write() -> None:
            with cluster_client(cluster) as writer:
                for n in itertools.count():
                    if stop.is_set():
                        return
                    with contextlib.suppress(redis.RedisError):  # TRYAGAIN, mid-move
                        writer.set(f"{{moved}}:w{n}", "1")
                        written.append(f"{{moved}}:w{n}")

        writer = threading.Thread(target=write)
        writer.start()
        try:
            wait_until(lambda: len(written) >= 20, timeout=10)
            moved = cluster.migrate_slot(slot, target)
            time.sleep(0.2)
        finally:
            stop.set()
            writer.join()
        assert moved >= len(keys)
        assert cluster.owner(slot) is target
        assert cluster.owner(slot) in cluster.primaries()
        assert client.mget_nonatomic(keys) == ["1"] * len(keys)
        assert client.mget_nonatomic(written) == ["1"] * len(written)
        assert 0 < client.ttl(keys[0]) <= 600
        assert cluster.migrate_slot(slot, target) == 0


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: RedisProcess(AOF), id="process"),
        pytest.param(SentinelGroup, id="sentinel"),
        pytest.param(RedisCluster, id="cluster"),
    ],
)
def test_every_process_and_file_is_gone_after_the_context(
    make: Callable[[], RedisProcess | SentinelGroup | RedisCluster],
) -> None:
    topology = make()
    pids: list[int | None] = []
    roots: list[Path] = []

    def fail_inside() -> None:
        with topology:
            roots.append(root_of(topology))
            processes = topology.processes()
            pids.extend(process.pid for process in processes)
            assert all(process.running for process in processes)
            assert set(pids) <= processes_in(roots[0])
            processes[0].pause()  # a paused server is stopped too
            raise RuntimeError("the test failed")

    with pytest.raises(RuntimeError, match="the test failed"):
        fail_inside()
    assert pids
    assert all(gone(pid) for pid in pids)
    assert processes_in(roots[0]) == set()
    assert not roots[0].exists()


def test_a_topology_failing_half_way_stops_what_it_started() -> None:
    """The sentinels refuse their configuration (a negative timeout) after the primary
    and the replica started: both are stopped, every file removed."""
    group = SentinelGroup(down_after_ms=-1)
    with pytest.raises(TopologyError, match="sentinel0"):
        group.__enter__()
    assert [server.running for server in group.servers] == [False, False]
    assert all(gone(server.pid) for server in group.servers)
    assert processes_in(group.root) == set()
    assert not group.root.exists()


def test_a_server_that_cannot_start_says_why() -> None:
    server = RedisProcess({"no-such-directive": "1"}, name="broken")
    with pytest.raises(TopologyError, match=r"broken exited at start-up[\s\S]*no-such-directive"):
        server.__enter__()
    assert not server.running
    assert not server.directory.exists()
