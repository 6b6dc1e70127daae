"""The Redis stores, against a real Redis server (the ``redis_url`` fixture)."""

from __future__ import annotations

import hashlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import pytest
import redis
import redis.asyncio

from logout_middleware.core import StoreOps, sha256_hex
from logout_middleware.store import AsyncRedisStore, DenylistMirror, RedisStore

STREAM = "logout:events"
PREFIX = "logout:revoked:"


def dead_url() -> str:
    """A Redis URL on a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def revoke_key(token: str) -> str:
    return PREFIX + sha256_hex(token.encode())


def make_ops(
    name: str,
    *,
    delete: tuple[str, ...] = (),
    token: str | None = None,
    ttl: int = 600,
    stream: str | None = STREAM,
) -> StoreOps:
    """Ops of one logout whose audit entry has ``id`` = ``name``."""
    return StoreOps(
        delete=delete,
        revoke=(revoke_key(token), ttl) if token is not None else None,
        stream=stream,
        maxlen=1000,
        entry=(
            ("id", name),
            ("path", "/logout"),
            ("token_hash", sha256_hex(token.encode()) if token is not None else ""),
        ),
    )


def entries(client: redis.Redis, stream: str = STREAM) -> list[dict[str, str]]:
    """The stream's entries, oldest first, as text."""
    reply: Any = client.xrange(stream)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in reply]


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls so far of each command, from INFO commandstats."""
    stats: dict[str, Any] = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def calls_during(client: redis.Redis, action: Callable[[], object]) -> dict[str, int]:
    before = command_calls(client)
    action()
    after = command_calls(client)
    changed = {name: n - before.get(name, 0) for name, n in after.items()}
    return {name: n for name, n in changed.items() if n and name != "info"}


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.fixture
def store(redis_client: redis.Redis) -> RedisStore:
    return RedisStore(redis_client)


@pytest.fixture
def dead_store() -> Iterator[RedisStore]:
    dead = RedisStore.from_url(dead_url(), timeout=0.2)
    yield dead
    dead.close()


# -- execute ---------------------------------------------------------------------------


def test_execute_deletes_sessions(store: RedisStore, redis_client: redis.Redis) -> None:
    redis_client.set("session:abc", b"data")
    redis_client.set("starsessions.abc", b"data")
    redis_client.set("session:other", b"data")
    outcome = store.execute(
        make_ops("e1", delete=("session:abc", "starsessions.abc", "absent:abc"))
    )
    assert outcome.status == "ok"
    assert outcome.error is None
    assert outcome.sessions_deleted == 2
    assert redis_client.exists("session:abc", "starsessions.abc") == 0
    assert redis_client.exists("session:other") == 1


def test_execute_counts_only_existing_sessions(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    outcome = store.execute(make_ops("e1", delete=("session:gone",)))
    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 0


def test_execute_revokes_with_ttl(store: RedisStore, redis_client: redis.Redis) -> None:
    outcome = store.execute(make_ops("e1", token="tok", ttl=660))
    assert outcome.status == "ok"
    key = revoke_key("tok")
    assert redis_client.get(key) == b"1"
    assert 650 <= redis_client.ttl(key) <= 660


def test_execute_appends_one_entry(store: RedisStore, redis_client: redis.Redis) -> None:
    ops = make_ops("e1", delete=("session:x",), token="tok")
    store.execute(ops)
    assert entries(redis_client) == [{**dict(ops.entry), "store": "ok"}]


def test_execute_without_stream_writes_no_entry(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    outcome = store.execute(make_ops("e1", token="tok", stream=None))
    assert outcome.status == "ok"
    assert redis_client.exists(STREAM) == 0
    assert redis_client.exists(revoke_key("tok")) == 1


def test_execute_nothing_to_do(store: RedisStore, redis_client: redis.Redis) -> None:
    outcome = store.execute(make_ops("e1", stream=None))
    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 0
    assert redis_client.dbsize() == 0


def test_execute_is_one_transaction(store: RedisStore, redis_client: redis.Redis) -> None:
    redis_client.set("session:abc", b"data")
    ops = make_ops("e1", delete=("session:abc",), token="tok")
    calls = calls_during(redis_client, lambda: store.execute(ops))
    assert calls == {"multi": 1, "del": 1, "set": 1, "xadd": 1, "exec": 1}


def test_execute_with_decoding_client(redis_url: str, redis_client: redis.Redis) -> None:
    """The client's decode_responses setting does not matter."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        redis_client.set("session:abc", b"data")
        outcome = RedisStore(client).execute(make_ops("e1", delete=("session:abc",), token="t"))
    finally:
        client.close()
    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 1
    assert redis_client.exists(revoke_key("t")) == 1


# -- is_revoked ------------------------------------------------------------------------


def test_is_revoked(store: RedisStore, redis_client: redis.Redis) -> None:
    assert store.is_revoked(revoke_key("tok")) is False
    store.execute(make_ops("e1", token="tok"))
    assert store.is_revoked(revoke_key("tok")) is True
    assert store.is_revoked(revoke_key("other")) is False


def test_is_revoked_reads_denylist_key(store: RedisStore, redis_client: redis.Redis) -> None:
    redis_client.set(revoke_key("tok"), b"1", ex=60)
    assert store.is_revoked(revoke_key("tok")) is True


# -- Redis unreachable -----------------------------------------------------------------


def test_execute_unreachable_fails(
    dead_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="logout_middleware"):
        outcome = dead_store.execute(make_ops("e1", delete=("session:abc",), token="tok"))
    assert outcome.status == "failed"
    assert outcome.sessions_deleted == 0
    assert outcome.error is not None
    assert outcome.error.startswith("ConnectionError")
    assert len(outcome.error) <= 200
    assert any("Redis unreachable" in r.getMessage() for r in caplog.records)


def test_is_revoked_unreachable_is_none(
    dead_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="logout_middleware"):
        assert dead_store.is_revoked(revoke_key("tok")) is None
        assert dead_store.is_revoked(revoke_key("tok")) is None
    warnings = [r for r in caplog.records if "denylist check failed" in r.getMessage()]
    assert len(warnings) == 1  # throttled: at most one every 10 seconds


# -- the backlog of failed logouts -----------------------------------------------------


def test_backlog_replayed_with_next_logout(
    dead_store: RedisStore, redis_client: redis.Redis
) -> None:
    redis_client.set("session:first", b"data")
    redis_client.set("session:second", b"data")
    first = make_ops("first", delete=("session:first",), token="tok1", ttl=600)
    assert dead_store.execute(first).status == "failed"
    assert redis_client.exists("session:first") == 1

    dead_store.client = redis_client
    second = make_ops("second", delete=("session:second",), token="tok2")
    outcome = dead_store.execute(second)

    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 1  # this logout's count only
    assert entries(redis_client) == [
        {**dict(second.entry), "store": "ok"},
        {**dict(first.entry), "store": "retried"},
    ]
    assert redis_client.exists("session:first", "session:second") == 0
    assert redis_client.exists(revoke_key("tok1"), revoke_key("tok2")) == 2
    assert 0 < redis_client.ttl(revoke_key("tok1")) <= 600

    third = make_ops("third")
    assert dead_store.execute(third).status == "ok"
    assert [e["id"] for e in entries(redis_client)] == ["second", "first", "third"]


def test_backlog_keeps_every_failure_until_success(
    dead_store: RedisStore, redis_client: redis.Redis
) -> None:
    for name in ("a", "b", "c"):
        assert dead_store.execute(make_ops(name)).status == "failed"
    dead_store.client = redis_client
    dead_store.execute(make_ops("now"))
    found = entries(redis_client)
    assert [e["id"] for e in found] == ["now", "a", "b", "c"]
    assert [e["store"] for e in found] == ["ok", "retried", "retried", "retried"]


def test_backlog_writes_late_entry_even_without_stream_now(
    dead_store: RedisStore, redis_client: redis.Redis
) -> None:
    dead_store.execute(make_ops("late"))
    dead_store.client = redis_client
    assert dead_store.execute(make_ops("now", stream=None)).status == "ok"
    assert entries(redis_client) == [{**dict(make_ops("late").entry), "store": "retried"}]


def test_backlog_is_bounded(redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    small = RedisStore.from_url(dead_url(), timeout=0.2, backlog=2)
    with caplog.at_level(logging.ERROR, logger="logout_middleware"):
        for name in ("a", "b", "c"):
            assert small.execute(make_ops(name)).status == "failed"
    small.close()
    assert any("backlog full" in r.getMessage() for r in caplog.records)
    small.client = redis_client
    small.execute(make_ops("now"))
    found = entries(redis_client)
    assert len(found) == 3
    assert [e["store"] for e in found] == ["ok", "retried", "retried"]


# -- AsyncRedisStore -------------------------------------------------------------------


@pytest.fixture
async def async_client(redis_url: str, redis_client: redis.Redis) -> AsyncIterator[Any]:
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def async_dead_store() -> AsyncIterator[AsyncRedisStore]:
    dead = AsyncRedisStore.from_url(dead_url(), timeout=0.2)
    yield dead
    await dead.aclose()


@pytest.mark.anyio
async def test_async_execute(async_client: Any, redis_client: redis.Redis) -> None:
    store = AsyncRedisStore(async_client)
    redis_client.set("session:abc", b"data")
    redis_client.set("starsessions.abc", b"data")
    ops = make_ops("e1", delete=("session:abc", "starsessions.abc", "x:abc"), token="tok", ttl=660)
    before = command_calls(redis_client)
    outcome = await store.execute(ops)
    after = command_calls(redis_client)
    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 2
    assert redis_client.exists("session:abc", "starsessions.abc") == 0
    assert redis_client.get(revoke_key("tok")) == b"1"
    assert 650 <= redis_client.ttl(revoke_key("tok")) <= 660
    assert entries(redis_client) == [{**dict(ops.entry), "store": "ok"}]
    for name in ("multi", "exec", "del", "set", "xadd"):
        assert after.get(name, 0) - before.get(name, 0) == 1, name


@pytest.mark.anyio
async def test_async_is_revoked(async_client: Any, redis_client: redis.Redis) -> None:
    store = AsyncRedisStore(async_client)
    assert await store.is_revoked(revoke_key("tok")) is False
    await store.execute(make_ops("e1", token="tok"))
    assert await store.is_revoked(revoke_key("tok")) is True
    assert await store.is_revoked(revoke_key("other")) is False


@pytest.mark.anyio
async def test_async_unreachable(
    async_dead_store: AsyncRedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="logout_middleware"):
        outcome = await async_dead_store.execute(make_ops("e1", token="tok"))
        revoked = await async_dead_store.is_revoked(revoke_key("tok"))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("ConnectionError")
    assert revoked is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("Redis unreachable" in m for m in messages)
    assert any("denylist check failed" in m for m in messages)


@pytest.mark.anyio
async def test_async_backlog_replayed(
    async_dead_store: AsyncRedisStore, async_client: Any, redis_client: redis.Redis
) -> None:
    redis_client.set("session:first", b"data")
    first = make_ops("first", delete=("session:first",), token="tok1")
    assert (await async_dead_store.execute(first)).status == "failed"
    dead_client = async_dead_store.client
    async_dead_store.client = async_client
    try:
        second = make_ops("second", token="tok2")
        outcome = await async_dead_store.execute(second)
    finally:
        async_dead_store.client = dead_client
    assert outcome.status == "ok"
    assert entries(redis_client) == [
        {**dict(second.entry), "store": "ok"},
        {**dict(first.entry), "store": "retried"},
    ]
    assert redis_client.exists("session:first") == 0
    assert redis_client.exists(revoke_key("tok1"), revoke_key("tok2")) == 2


# -- DenylistMirror --------------------------------------------------------------------


def test_mirror_not_live_clears_nothing() -> None:
    mirror = DenylistMirror(PREFIX)
    assert mirror.live is False
    assert mirror.clears(revoke_key("anything")) is False


def test_mirror_replace_add_key_absorb() -> None:
    mirror = DenylistMirror(PREFIX)
    mirror.replace(mirror.members_of([revoke_key("a").encode()]))
    assert mirror.live is True
    assert mirror.clears(revoke_key("a")) is False
    assert mirror.clears(revoke_key("b")) is True
    mirror.add_key(revoke_key("b"))
    assert mirror.clears(revoke_key("b")) is False
    entries = [
        (b"1-0", {b"token_hash": sha256_hex(b"c").encode()}),
        (b"2-0", {b"token_hash": b""}),
    ]
    last = mirror.absorb([(b"logout:events", entries)], b"0-0")
    assert last == b"2-0"
    assert mirror.clears(revoke_key("c")) is False
    assert mirror.clears(revoke_key("d")) is True
    assert mirror.absorb(None, b"2-0") == b"2-0"
    assert mirror.absorb([], b"2-0") == b"2-0"
    elsewhere: set[int] = set()
    mirror.absorb([("s", [("3-0", {"token_hash": sha256_hex(b"e")})])], "2-0", elsewhere)
    assert elsewhere == mirror.members_of([revoke_key("e")])
    assert mirror.clears(revoke_key("e")) is True


def test_mirror_reload_replaces_members() -> None:
    """A reload replaces the members, dropping expired ones: a key gone from Redis is
    cleared afterwards. Text keys (decode_responses=True) work as bytes do."""
    mirror = DenylistMirror(PREFIX)
    mirror.replace(mirror.members_of([revoke_key("expired").encode()]))
    mirror.replace(mirror.members_of([revoke_key("current")]))
    assert mirror.clears(revoke_key("current")) is False
    assert mirror.clears(revoke_key("expired")) is True


@pytest.mark.parametrize(
    ("prefix", "pattern"),
    [
        ("logout:revoked:", "logout:revoked:*"),
        ("a*b?", "a\\*b\\?*"),
        ("[x]\\", "\\[x\\]\\\\*"),
    ],
    ids=["plain", "wildcards", "brackets-backslash"],
)
def test_mirror_glob(prefix: str, pattern: str) -> None:
    assert DenylistMirror(prefix).glob() == pattern


def test_mirror_glob_matches_only_denylist(redis_client: redis.Redis) -> None:
    prefix = "deny*[1]:"
    redis_client.set(prefix + "x", b"1")
    redis_client.set("denyX[1]:y", b"1")
    redis_client.set("deny*1:z", b"1")
    found = set(redis_client.scan_iter(match=DenylistMirror(prefix).glob()))
    assert found == {(prefix + "x").encode()}


# -- the revocation cache, end to end --------------------------------------------------


def cached_store(client: redis.Redis) -> RedisStore:
    return RedisStore(client, cache_stream=STREAM, denylist_prefix=PREFIX)


@pytest.mark.parametrize("decode_responses", [False, True], ids=["bytes", "decoded"])
def test_cache_sees_other_process_revocation(
    redis_url: str, redis_client: redis.Redis, decode_responses: bool
) -> None:
    redis_client.set(revoke_key("old"), b"1", ex=600)
    client = redis.Redis.from_url(redis_url, decode_responses=decode_responses)
    cached = cached_store(client)
    other = RedisStore(redis_client)
    try:
        assert cached.is_revoked(revoke_key("new")) is False  # starts the follower
        assert cached.mirror is not None
        assert wait_for(lambda: cached.mirror is not None and cached.mirror.live)
        assert cached.is_revoked(revoke_key("old")) is True

        # A token not in the mirror costs no Redis command.
        calls = calls_during(redis_client, lambda: cached.is_revoked(revoke_key("clean")))
        assert "exists" not in calls

        # Another process revokes a token: this one sees it through the stream.
        assert other.execute(make_ops("e1", token="new")).status == "ok"
        assert wait_for(lambda: cached.is_revoked(revoke_key("new")) is True, timeout=3.0)
    finally:
        cached.close()


def test_cache_own_revocation_seen_at_once(redis_url: str, redis_client: redis.Redis) -> None:
    client = redis.Redis.from_url(redis_url)
    cached = cached_store(client)
    try:
        cached.is_revoked(revoke_key("warm-up"))
        assert wait_for(lambda: cached.mirror is not None and cached.mirror.live)
        assert cached.execute(make_ops("e1", token="mine", stream=None)).status == "ok"
        assert cached.is_revoked(revoke_key("mine")) is True
    finally:
        cached.close()


def test_cache_off_by_default(store: RedisStore) -> None:
    assert store.mirror is None


@pytest.mark.anyio
async def test_async_cache_sees_other_process_revocation(
    redis_url: str, redis_client: redis.Redis
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cached = AsyncRedisStore(client, cache_stream=STREAM, denylist_prefix=PREFIX)
    other = RedisStore(redis_client)
    try:
        assert await cached.is_revoked(revoke_key("new")) is False
        mirror = cached.mirror
        assert mirror is not None
        deadline = time.monotonic() + 5
        while not mirror.live and time.monotonic() < deadline:
            await _sleep()
        assert mirror.live
        calls_before = command_calls(redis_client).get("exists", 0)
        assert await cached.is_revoked(revoke_key("clean")) is False
        assert command_calls(redis_client).get("exists", 0) == calls_before

        assert other.execute(make_ops("e1", token="new")).status == "ok"
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not await cached.is_revoked(revoke_key("new")):
            await _sleep()
        assert await cached.is_revoked(revoke_key("new")) is True
    finally:
        await cached.aclose()


async def _sleep() -> None:
    await anyio.sleep(0.01)


def connections(client: redis.Redis) -> int:
    """Client connections Redis has open now (the asking one included)."""
    return len(client.client_list())


def test_close_ends_follower_and_its_connection(redis_url: str, redis_client: redis.Redis) -> None:
    """Closing a caching store wakes its follower out of the blocking XREAD (5 s) and
    closes the follower's connection along with the store's own, at once."""
    alone = connections(redis_client)
    cached = cached_store(redis.Redis.from_url(redis_url))
    cached.is_revoked(revoke_key("warm-up"))
    assert wait_for(lambda: cached.mirror is not None and cached.mirror.live)
    assert connections(redis_client) == alone + 2  # the store's and the follower's
    began = time.monotonic()
    cached.close()
    assert time.monotonic() - began < 2.0, "close() waited out the follower's XREAD"
    assert wait_for(lambda: connections(redis_client) == alone, timeout=1.0)
    assert cached.mirror is not None
    assert not cached.mirror.live


@pytest.mark.anyio
async def test_async_close_ends_follower_and_its_connection(
    redis_url: str, redis_client: redis.Redis
) -> None:
    alone = connections(redis_client)
    cached = AsyncRedisStore(
        redis.asyncio.Redis.from_url(redis_url), cache_stream=STREAM, denylist_prefix=PREFIX
    )
    await cached.is_revoked(revoke_key("warm-up"))
    mirror = cached.mirror
    assert mirror is not None
    deadline = time.monotonic() + 5
    while not mirror.live and time.monotonic() < deadline:
        await _sleep()
    assert connections(redis_client) == alone + 2
    await cached.aclose()
    assert not mirror.live
    # Redis drops a closed connection from CLIENT LIST when it reads the close.
    assert wait_for(lambda: connections(redis_client) == alone, timeout=1.0)


def test_sha_prefix_helper() -> None:
    """The keys used above are the prefix plus a 64-hex SHA-256, as the core makes them."""
    assert revoke_key("t") == PREFIX + hashlib.sha256(b"t").hexdigest()
