"""Redis topologies and Redis trouble, in process, on real Redis processes
(tests/topologies.py): the start-up check and its causes, the background retry of
failed logouts, a replay that never appends an audit entry twice, warnings throttled per
cause, a Redis that is down costing one request a timeout, and logout on a Redis
Cluster and through a Sentinel failover, on both adapters.

The same on real servers under traffic is in tests/test_faults.py.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import cast

import anyio
import pytest
import redis
import redis.cluster
from redis.crc import key_slot
from redis.exceptions import OutOfMemoryError

from logout_middleware.core import StoreOps, sha256_hex
from logout_middleware.store import (
    WRITTEN_TTL,
    AsyncRedisStore,
    RedisStore,
    _failure,
    written_key,
)
from logout_middleware.topology import probe, redis_target, report
from tests.harness import KINDS, Kind, harness
from tests.servers import audit_entries, wait_until
from tests.topologies import RedisCluster, RedisProcess, SentinelGroup

pytestmark = pytest.mark.faults

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
AOF = {"appendonly": "yes", "appendfsync": "always"}
WRITTEN = "logout:written:"


def denylist_key(token: str) -> str:
    return "logout:revoked:" + sha256_hex(token.encode())


def entries(client: redis.Redis | redis.cluster.RedisCluster) -> list[dict[str, str]]:
    """The audit stream's entries, decoded, oldest first (on one Redis or a cluster)."""
    return audit_entries(cast("redis.Redis", client))


@pytest.fixture
def aof_redis() -> Iterator[RedisProcess]:
    with RedisProcess(AOF) as process:
        yield process


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster() as started:
        yield started


# -- the start-up check ---------------------------------------------------------------


def test_probe_names_the_cause(aof_redis: RedisProcess) -> None:
    port = aof_redis.port
    admin = aof_redis.client()
    admin.config_set("requirepass", "s3cret")
    admin.close()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        refused = free.getsockname()[1]
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        cases = {
            f"redis://:s3cret@127.0.0.1:{port}/0": "",
            f"redis://:wrong@127.0.0.1:{port}/0": "wrong password",
            f"redis://127.0.0.1:{port}/0": "wrong password",
            f"rediss://:s3cret@127.0.0.1:{port}/0": "TLS",
            f"redis://127.0.0.1:{refused}/0": "connection refused",
            f"redis://127.0.0.1:{silent.getsockname()[1]}/0": "timed out",
            "redis+sentinel://127.0.0.1:1/nothing": "no sentinel answered",
        }
        found = {url: probe(redis_target(url), timeout=0.5) for url in cases}
    for url, cause in cases.items():
        assert found[url].answers is (cause == ""), (url, found[url])
        assert cause in found[url].cause, (url, found[url])
    healthy = found[f"redis://:s3cret@127.0.0.1:{port}/0"]
    assert healthy.persistence == "aof"
    assert healthy.version.startswith(("6.", "7.", "8."))


def test_report_warns_when_redis_persists_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="logout_middleware")
    with RedisProcess() as plain, RedisProcess(AOF) as durable:
        for process in (plain, durable):
            target = redis_target(process.url)
            report(target, probe(target, timeout=1.0))
    records = [r for r in caplog.records if r.name == "logout_middleware"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO]
    assert "persists nothing" in records[0].getMessage()
    assert "un-revokes every token" in records[0].getMessage()
    assert "persistence: aof" in records[1].getMessage()


@pytest.mark.parametrize("kind", KINDS)
def test_the_middleware_logs_an_unreachable_redis_once_at_start(
    kind: Kind, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"redis://:hunter2@127.0.0.1:{free.getsockname()[1]}/0"
    caplog.set_level(logging.INFO, logger="logout_middleware")
    with harness(kind, url, redis_timeout=0.3):

        def logged() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "does not answer" in r.getMessage()]

        assert wait_until(logged)
    (record,) = logged()
    assert record.levelno == logging.ERROR
    assert "connection refused" in record.getMessage()
    assert "LOGOUT_ON_CHECK_ERROR" in record.getMessage()
    assert "hunter2" not in caplog.text  # the password is never logged


# -- failed logouts ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_failed_logouts_are_retried_in_the_background(kind: Kind, aof_redis: RedisProcess) -> None:
    """Logouts answered 503 while Redis was down are carried out once it is back, with
    no other request to carry them."""
    client = aof_redis.client()
    sids = [f"sid-{kind}-{n}" for n in range(3)]
    for sid in sids:
        client.set(f"session:{sid}", b"record")
    with harness(kind, aof_redis.url, redis_timeout=0.3) as h:
        aof_redis.kill()
        for n, sid in enumerate(sids):
            headers = {"Cookie": f"session={sid}", "Authorization": f"Bearer t{n}"}
            reply = h.post_logout(headers={**headers, **SAME_ORIGIN})
            assert reply.status == 503
            assert any(c.startswith("session=;") for c in reply.set_cookies)
        aof_redis.restart()
        client = aof_redis.client()
        assert wait_until(lambda: not client.exists(*(f"session:{s}" for s in sids)), 10)
        assert all(client.exists(denylist_key(f"t{n}")) for n in range(3))
        assert [e["store"] for e in entries(client)] == ["retried"] * 3
    client.close()


def test_a_replay_never_appends_an_entry_twice(aof_redis: RedisProcess) -> None:
    """A transaction that timed out while Redis was stopped still runs when Redis
    continues; its retry then changes nothing and appends no second entry."""
    client = aof_redis.client()
    client.set("session:late", b"record")
    with harness("wsgi", aof_redis.url, redis_timeout=0.3) as h:
        h.request("GET", "/", headers={"Cookie": "session=other"})  # connection in the pool
        aof_redis.pause()
        try:
            reply = h.post_logout(headers={"Cookie": "session=late", **SAME_ORIGIN})
        finally:
            aof_redis.resume()
        assert reply.status == 503
        assert wait_until(lambda: len(entries(client)) >= 1)
        store = h.middleware.store
        assert isinstance(store, RedisStore)
        assert wait_until(store.retry, 10)  # the backlog is empty
        found = entries(client)
    assert len(found) == 1, found
    assert len({e["id"] for e in found}) == 1
    assert not client.exists("session:late")
    assert (
        client.ttl(written_key("logout:written:", "logout:events", found[0]["id"]))
        > WRITTEN_TTL - 60
    )
    client.close()


def test_written_key_shares_the_streams_slot() -> None:
    assert written_key("logout:written:", "logout:events", "e1") == (
        "logout:written:{logout:events}:e1"
    )
    assert written_key("p:", "{app}:events", "e1") == "p:{app}:e1"
    slot = key_slot
    for stream in ("logout:events", "{app}:events", "a{b", "{a}b}"):
        assert slot(written_key("logout:written:", stream, "e1").encode()) == slot(stream.encode())


@pytest.mark.parametrize("kind", KINDS)
def test_warnings_are_throttled_per_cause(kind: Kind, caplog: pytest.LogCaptureFixture) -> None:
    with RedisProcess() as process, harness(kind, process.url, redis_timeout=0.2) as h:
        process.kill()
        caplog.clear()
        for n in range(12):
            reply = h.post_logout(headers={"Authorization": f"Bearer w{n}", **SAME_ORIGIN})
            assert reply.status == 503
    unreachable = [r for r in caplog.records if "Redis unreachable" in r.getMessage()]
    assert len(unreachable) == 1, [r.getMessage() for r in unreachable]


@pytest.mark.parametrize("kind", KINDS)
def test_a_silent_redis_costs_one_request_a_timeout(kind: Kind) -> None:
    """While Redis does not answer, checks answer "Redis failed" at once for a second
    after one timed out: ten bearer requests make the connection attempts of one check
    (a connection and its handshake, each retried once: four), not forty."""
    accepted: list[socket.socket] = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        silent.settimeout(0.05)
        stop = threading.Event()

        def accept() -> None:
            while not stop.is_set():
                try:
                    accepted.append(silent.accept()[0])
                except TimeoutError:
                    continue

        acceptor = threading.Thread(target=accept)
        acceptor.start()
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        try:
            with harness(kind, url, redis_timeout=0.2, revocation_cache=False) as h:
                assert wait_until(lambda: accepted)  # the start-up check's connection
                before = len(accepted)
                for n in range(10):
                    reply = h.request("GET", "/", headers={"Authorization": f"Bearer s{n}"})
                    assert reply.status == 200  # LOGOUT_ON_CHECK_ERROR=allow
                made = len(accepted) - before
        finally:
            stop.set()
            acceptor.join()
            for sock in accepted:
                sock.close()
    assert 1 <= made <= 4, made


# -- Redis Cluster ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_logout_on_a_cluster(kind: Kind, cluster: RedisCluster) -> None:
    """Keys on every shard: records deleted, tokens revoked and refused, one audit entry
    per logout, the write-once marker in the stream's slot."""
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    sids = [f"c-{kind}-{n}" for n in range(12)]
    for sid in sids:
        client.set(f"session:{sid}", b"record")
        client.set(f"other:{sid}", b"record")
    assert len({key_slot(f"session:{sid}".encode()) // 5462 for sid in sids}) == 3  # 3 shards
    before = len(entries(client))
    keys = ("session:{sid}", "other:{sid}")
    with harness(kind, cluster.url, redis_cluster=True, session_keys=keys) as h:
        for sid in sids:
            headers = {"Cookie": f"session={sid}", "Authorization": f"Bearer {sid}-t"}
            assert h.post_logout(headers={**headers, **SAME_ORIGIN}).status == 303
        assert not any(client.exists(f"session:{s}", f"other:{s}") for s in sids)
        assert all(client.exists(denylist_key(f"{s}-t")) for s in sids)
        reply = h.request("GET", "/", headers={"Authorization": f"Bearer {sids[0]}-t"})
        assert reply.status == 401
        found = entries(client)[before:]
        assert len(found) == len(sids)
        assert {e["store"] for e in found} == {"ok"}
        assert all(
            client.exists(written_key("logout:written:", "logout:events", e["id"])) for e in found
        )
    client.close()


@pytest.mark.parametrize("kind", KINDS)
def test_the_revocation_cache_follows_a_cluster(kind: Kind, cluster: RedisCluster) -> None:
    """A token revoked by another process is refused once the stream delivers it."""
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    with (
        harness(kind, cluster.url, redis_cluster=True) as watcher,
        harness(kind, cluster.url, redis_cluster=True) as other,
    ):
        bearer = {"Authorization": f"Bearer follow-{kind}"}
        assert watcher.request("GET", "/", headers=bearer).status == 200
        assert other.post_logout(headers={**bearer, **SAME_ORIGIN}).status == 303
        assert wait_until(lambda: watcher.request("GET", "/", headers=bearer).status == 401)
    client.close()


# -- Redis Sentinel -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_logout_follows_a_sentinel_failover(kind: Kind) -> None:
    """Before and after the primary is killed, logouts end what they name on whichever
    server is primary; one that failed during the failover is carried out on the new one."""
    with SentinelGroup() as group, harness(kind, group.url, redis_timeout=0.5) as h:
        before = h.post_logout(headers={"Authorization": "Bearer s-before", **SAME_ORIGIN})
        assert before.status == 303
        group.wait_synced()
        new = group.failover()
        statuses = [
            h.post_logout(headers={"Authorization": f"Bearer s-after-{n}", **SAME_ORIGIN}).status
            for n in range(3)
        ]
        assert set(statuses) <= {303, 503}
        client = new.client()
        tokens = ["s-before", *(f"s-after-{n}" for n in range(3))]
        assert wait_until(lambda: all(client.exists(denylist_key(t)) for t in tokens), 10)
        assert h.request("GET", "/", headers={"Authorization": "Bearer s-after-2"}).status == 401
        client.close()


def test_the_command_line_works_on_a_cluster_and_a_sentinel(cluster: RedisCluster) -> None:
    """``logout-middleware revoke`` and ``status`` on each topology: the revocation is
    counted (``SCAN`` of every primary, on the cluster) and the topology named."""
    with SentinelGroup() as group:
        for url, cluster_flag in ((cluster.url, "true"), (group.url, "false")):
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")},
                "LOGOUT_REDIS_URL": url,
                "LOGOUT_REDIS_CLUSTER": cluster_flag,
            }
            token = f"cli-{cluster_flag}-{secrets.token_hex(4)}"
            revoked = subprocess.run(
                [sys.executable, "-m", "logout_middleware", "revoke", "--token"],
                input=token + "\n",
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert revoked.returncode == 0, revoked.stderr
            status = subprocess.run(
                [sys.executable, "-m", "logout_middleware", "status", "--json"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert status.returncode == 0, status.stderr
            found = json.loads(status.stdout)
            assert found["topology"] == ("cluster" if cluster_flag == "true" else "sentinel")
            assert found["revoked_tokens"] >= 1
            assert found["events"] >= 1


# -- the review's cases ---------------------------------------------------------------------


def test_redis_trouble_that_clears_by_itself_is_retried() -> None:
    """Out of memory, a failed snapshot, too few replicas: retried, not dropped; a
    reply that would fail again (``WRONGTYPE``) is not."""
    pipeline = "Command # 2 of pipeline caused error: "
    assert _failure(OutOfMemoryError("OOM command not allowed"))[0]
    assert _failure(redis.ResponseError(pipeline + "MISCONF Redis is configured to save"))[0]
    assert _failure(redis.ResponseError("NOREPLICAS Not enough good replicas"))[0]
    assert not _failure(redis.ResponseError(pipeline + "WRONGTYPE Operation against a key"))[0]
    assert _failure(AttributeError("'NoneType' object has no attribute 'writelines'"))[0]


def test_one_retrier_however_many_logouts_fail() -> None:
    """A process that has not checked a request yet (so no follower) still runs one
    background retrier, not one per failed logout."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{free.getsockname()[1]}/0"
    store = RedisStore.from_url(url, timeout=0.2)
    try:
        for n in range(6):
            ops = StoreOps(sets=((f"k{n}", "1", 60),))
            assert store.execute(ops).status == "failed"
        retriers = [t for t in threading.enumerate() if t.name == "logout-retry"]
        assert len(retriers) == 1
        assert store._backlog.pending() == 6
    finally:
        store.close()


@pytest.mark.anyio
async def test_a_cancelled_async_logout_keeps_the_backlog(aof_redis: RedisProcess) -> None:
    """A logout cancelled while Redis does not answer (the client went away) puts back
    the failed logouts it carried, and itself, for the retrier."""
    store = AsyncRedisStore.from_url(aof_redis.url, timeout=5.0)
    try:
        aof_redis.kill()
        assert (await store.execute(StoreOps(sets=(("first", "1", 60),)))).status == "failed"
        assert store._backlog.pending() == 1
        aof_redis.restart()
        aof_redis.pause()
        try:
            with anyio.move_on_after(0.3):
                await store.execute(StoreOps(sets=(("second", "1", 60),)))
        finally:
            aof_redis.resume()
        assert store._backlog.pending() == 2
        assert await store.retry()
        client = aof_redis.client()
        assert client.exists("first", "second") == 2
        client.close()
    finally:
        await store.aclose()


def test_a_wsgi_app_starts_while_its_cluster_is_unreachable() -> None:
    """The synchronous cluster client connects at its first use: the app starts, and a
    logout answers 503 (cookies expired) until the cluster answers."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{free.getsockname()[1]}"
    with harness("wsgi", url, redis_cluster=True, redis_timeout=0.2) as h:
        reply = h.post_logout(headers={"Cookie": "session=s", **SAME_ORIGIN})
        assert reply.status == 503
        assert any(c.startswith("session=;") for c in reply.set_cookies)
