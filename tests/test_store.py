"""The Redis stores, against a real Redis server (the ``redis_url`` fixture), never a
mock: each I/O request of the core, the backlog of failed logouts, and the follower
that keeps a process's revocation mirror current through the audit stream."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anyio
import jwt
import msgspec
import pytest
import redis
import redis.asyncio

from logout_middleware.config import LogoutConfig
from logout_middleware.core import (
    Check,
    Checked,
    Delete,
    Index,
    LogoutCore,
    Read,
    Reading,
    RequestHead,
    RevocationKeys,
    RevocationMirror,
    StoreOps,
    Verdict,
    sha256_hex,
)
from logout_middleware.core.revocation import member
from logout_middleware.store import AsyncRedisStore, RedisStore, drive

STREAM = "logout:events"
KEYS = RevocationKeys(LogoutConfig())
T = 1_700_000_000.0


def dead_url() -> str:
    """A Redis URL on a loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def h(name: str) -> str:
    return sha256_hex(name.encode())


def revoke_key(token: str) -> str:
    return KEYS.token(h(token))


def make_ops(
    name: str,
    *,
    delete: tuple[str, ...] = (),
    token: str | None = None,
    ttl: int = 600,
    stream: str | None = STREAM,
    sets: tuple[tuple[str, str, int], ...] = (),
    unindex: tuple[tuple[str, str], ...] = (),
    discard: tuple[str, ...] = (),
) -> StoreOps:
    """Ops of one logout whose audit entry has ``id`` = ``name``."""
    token_sets = ((revoke_key(token), "1", ttl),) if token is not None else ()
    return StoreOps(
        delete=delete,
        sets=token_sets + sets,
        unindex=unindex,
        discard=discard,
        stream=stream,
        maxlen=1000,
        entry=(
            ("id", name),
            ("path", "/logout"),
            ("token_hash", h(token) if token is not None else ""),
        ),
    )


def token_check(token: str) -> Check:
    return Check(session_key=None, token_key=revoke_key(token), not_before_key=None)


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


def connected_clients(client: redis.Redis) -> int:
    """Redis's ``connected_clients`` now (the asking connection included)."""
    info: dict[str, Any] = client.info("clients")
    return int(info["connected_clients"])


def head(**kw: Any) -> RequestHead:
    values: dict[str, Any] = {
        "method": "POST",
        "scheme": "http",
        "host": "example.com",
        "root_path": "",
        "query_string": "",
        "accept": "application/json",
    }
    values.update(kw)
    return RequestHead(**values)


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


def test_execute_counts_only_existing_sessions(store: RedisStore) -> None:
    outcome = store.execute(make_ops("e1", delete=("session:gone",)))
    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 0


def test_execute_revokes_with_ttl(store: RedisStore, redis_client: redis.Redis) -> None:
    outcome = store.execute(make_ops("e1", token="tok", ttl=660))
    assert outcome.status == "ok"
    key = revoke_key("tok")
    assert redis_client.get(key) == b"1"
    assert 650 <= redis_client.ttl(key) <= 660


def test_execute_writes_every_set_with_its_ttl(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    sets = (
        (KEYS.session(h("s1")), "1", 2_678_400),
        (KEYS.session(h("s2")), "1", 90),
        (KEYS.not_before("u1"), repr(T), 2_592_000),
    )
    assert store.execute(make_ops("e1", token="tok", ttl=300, sets=sets)).status == "ok"
    for key, value, ttl in ((revoke_key("tok"), "1", 300), *sets):
        assert redis_client.get(key) == value.encode(), key
        assert ttl - 10 <= redis_client.ttl(key) <= ttl, key
    assert float(redis_client.get(KEYS.not_before("u1")) or b"") == T


def test_execute_unindexes_one_member(store: RedisStore, redis_client: redis.Redis) -> None:
    index = KEYS.index("u1")
    redis_client.zadd(index, {h("s1"): T, h("s2"): T})
    redis_client.zadd(KEYS.index("u2"), {h("s1"): T})
    assert store.execute(make_ops("e1", unindex=((index, h("s1")),))).status == "ok"
    assert redis_client.zrange(index, 0, -1) == [h("s2").encode()]
    assert redis_client.zcard(KEYS.index("u2")) == 1


def test_execute_drops_whole_index(store: RedisStore, redis_client: redis.Redis) -> None:
    index = KEYS.index("u1")
    redis_client.zadd(index, {h("s1"): T, h("s2"): T})
    redis_client.zadd(KEYS.index("u2"), {h("s3"): T})
    redis_client.set("session:s1", b"data")
    outcome = store.execute(make_ops("e1", delete=("session:s1",), discard=(index,)))
    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 1  # the index is not counted as a session
    assert redis_client.exists(index) == 0
    assert redis_client.exists(KEYS.index("u2")) == 1


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
    # The audit entry is appended by a script that first claims its id (SET NX): the
    # second SET and the XADD run inside the EVAL.
    assert calls == {"multi": 1, "del": 1, "set": 2, "eval": 1, "xadd": 1, "exec": 1}


def test_execute_everywhere_is_one_transaction(
    store: RedisStore, redis_client: redis.Redis
) -> None:
    index = KEYS.index("u1")
    ops = make_ops(
        "e1",
        delete=("session:s1",),
        sets=((KEYS.session(h("s1")), "1", 60), (KEYS.not_before("u1"), repr(T), 60)),
        unindex=((index, h("s1")),),
        discard=(index,),
    )
    calls = calls_during(redis_client, lambda: store.execute(ops))
    # Two sets and the audit entry's write-once claim (inside the EVAL).
    expected = {"multi": 1, "del": 2, "set": 3, "eval": 1, "zrem": 1, "xadd": 1, "exec": 1}
    assert calls == expected


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


# -- read, check, index, delete --------------------------------------------------------


@pytest.mark.parametrize("decode_responses", [False, True], ids=["bytes", "decoded"])
def test_read(redis_url: str, redis_client: redis.Redis, decode_responses: bool) -> None:
    """GET values come back as bytes and index members as text, whatever the client's
    decode_responses; only members scored at or after ``now`` (live) are read."""
    record = b'{"user": {"id": 7}, "__metadata__": {"created": 1700000000.0}}'
    redis_client.set("starsessions.s1", record)
    now = time.time()
    redis_client.zadd(
        KEYS.index("u1"), {h("live-1"): now + 60, h("expired"): now - 1, h("live-2"): now + 30}
    )
    client = redis.Redis.from_url(redis_url, decode_responses=decode_responses)
    try:
        request = Read(
            gets=("starsessions.s1", "session:absent"),
            ranges=(KEYS.index("u1"), KEYS.index("nobody")),
            now=now,
        )
        reading = RedisStore(client).read(request)
    finally:
        client.close()
    assert reading == Reading(values=(record, None), members=((h("live-2"), h("live-1")), ()))


def test_read_binary_record_with_decoding_client(redis_url: str, redis_client: redis.Redis) -> None:
    """The client's decode_responses setting does not matter, for Flask-Session's
    msgpack records too."""
    record = msgspec.msgpack.encode({"_user_id": "42"})
    redis_client.set("session:s1", record)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        reading = RedisStore(client).read(Read(gets=("session:s1",)))
    finally:
        client.close()
    assert reading == Reading(values=(record,), members=())


def test_read_binary_record(store: RedisStore, redis_client: redis.Redis) -> None:
    record = msgspec.msgpack.encode({"_user_id": "42", "n": 1})
    redis_client.set("session:s1", record)
    reading = store.read(Read(gets=("session:s1",)))
    assert reading == Reading(values=(record,), members=())


CHECK_CASES: list[tuple[str, dict[str, bytes], Check, Checked]] = [
    (
        "nothing-revoked",
        {},
        Check(KEYS.session(h("s")), revoke_key("t"), KEYS.not_before("u")),
        Checked(False, False, 0.0),
    ),
    (
        "session-revoked",
        {KEYS.session(h("s")): b"1"},
        Check(KEYS.session(h("s")), None, None),
        Checked(True, False, 0.0),
    ),
    (
        "token-revoked",
        {revoke_key("t"): b"1"},
        Check(None, revoke_key("t"), None),
        Checked(False, True, 0.0),
    ),
    (
        "not-before",
        {KEYS.not_before("u"): repr(T).encode()},
        Check(None, None, KEYS.not_before("u")),
        Checked(False, False, T),
    ),
    (
        "all",
        {KEYS.session(h("s")): b"1", revoke_key("t"): b"1", KEYS.not_before("u"): b"5.5"},
        Check(KEYS.session(h("s")), revoke_key("t"), KEYS.not_before("u")),
        Checked(True, True, 5.5),
    ),
    (
        "not-asked-not-answered",
        {KEYS.session(h("s")): b"1", revoke_key("t"): b"1", KEYS.not_before("u"): b"5"},
        Check(None, None, None),
        Checked(False, False, 0.0),
    ),
    (
        "bad-not-before",
        {KEYS.not_before("u"): b"soon"},
        Check(None, None, KEYS.not_before("u")),
        Checked(False, False, 0.0),
    ),
]


@pytest.mark.parametrize(
    ("keys", "question", "answer"),
    [case[1:] for case in CHECK_CASES],
    ids=[case[0] for case in CHECK_CASES],
)
def test_check(
    store: RedisStore,
    redis_client: redis.Redis,
    keys: dict[str, bytes],
    question: Check,
    answer: Checked,
) -> None:
    for key, value in keys.items():
        redis_client.set(key, value, ex=60)
    assert store.check(question) == answer


def test_check_sees_execute(store: RedisStore) -> None:
    assert store.check(token_check("tok")) == Checked(False, False, 0.0)
    store.execute(make_ops("e1", token="tok"))
    assert store.check(token_check("tok")) == Checked(False, True, 0.0)
    assert store.check(token_check("other")) == Checked(False, False, 0.0)


def test_check_is_one_round_trip(store: RedisStore, redis_client: redis.Redis) -> None:
    question = Check(KEYS.session(h("s")), revoke_key("t"), KEYS.not_before("u"))
    calls = calls_during(redis_client, lambda: store.check(question))
    assert calls == {"exists": 2, "get": 1}


def test_index(store: RedisStore, redis_client: redis.Redis) -> None:
    now = time.time()
    key = KEYS.index("u1")
    redis_client.zadd(key, {h("old"): now - 5, h("other"): now + 100})
    store.index(Index(key=key, member=h("s1"), expires_at=now + 600, now=now, ttl=900))
    found: list[tuple[bytes, float]] = redis_client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
    assert dict(found) == {
        h("other").encode(): now + 100,
        h("s1").encode(): pytest.approx(now + 600),
    }
    assert 890 <= redis_client.ttl(key) <= 900


def test_index_again_moves_the_expiry(store: RedisStore, redis_client: redis.Redis) -> None:
    now = time.time()
    key = KEYS.index("u1")
    store.index(Index(key=key, member=h("s1"), expires_at=now + 10, now=now, ttl=60))
    store.index(Index(key=key, member=h("s1"), expires_at=now + 20, now=now, ttl=60))
    assert redis_client.zscore(key, h("s1")) == pytest.approx(now + 20)
    assert redis_client.zcard(key) == 1


def test_index_removes_from_previous_subject(store: RedisStore, redis_client: redis.Redis) -> None:
    now = time.time()
    old, new = KEYS.index("u1"), KEYS.index("u2")
    redis_client.zadd(old, {h("s1"): now + 60, h("s9"): now + 60})
    store.index(Index(key=new, member=h("s1"), expires_at=now + 60, now=now, ttl=60, previous=old))
    assert redis_client.zrange(old, 0, -1) == [h("s9").encode()]
    assert redis_client.zrange(new, 0, -1) == [h("s1").encode()]


def test_delete(store: RedisStore, redis_client: redis.Redis) -> None:
    redis_client.set("session:s1", b"x")
    redis_client.set("meta:s1", b"x")
    redis_client.set("session:s2", b"x")
    store.delete(Delete(("session:s1", "meta:s1")))
    assert redis_client.exists("session:s1", "meta:s1") == 0
    assert redis_client.exists("session:s2") == 1


def test_drive_runs_a_logout_on_the_store(store: RedisStore, redis_client: redis.Redis) -> None:
    core = LogoutCore(LogoutConfig(session_subject="_user_id"), has_store=True)
    redis_client.set("session:s1", msgspec.msgpack.encode({"_user_id": "42"}))
    redis_client.zadd(KEYS.index("42"), {h("s1"): time.time() + 60})
    response, event = drive(
        core.logout(head(cookie="session=s1", authorization="Bearer tok"), b""),
        store,
        core.verifier,
    )
    assert response.status == 200
    assert event is not None
    assert event.store == "ok"
    assert event.subject == "42"
    assert event.sessions_deleted == 1
    assert redis_client.exists("session:s1") == 0
    assert redis_client.exists(KEYS.session(h("s1")), revoke_key("tok")) == 2
    assert redis_client.zcard(KEYS.index("42")) == 0
    (entry,) = entries(redis_client)
    assert entry["id"] == event.id
    assert entry["store"] == "ok"


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


def test_requests_unreachable_answer_none(
    dead_store: RedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="logout_middleware"):
        assert dead_store.check(token_check("tok")) is None
        assert dead_store.check(token_check("tok")) is None
        assert dead_store.read(Read(gets=("session:s1",))) is None
        dead_store.index(Index(key="k", member="m", expires_at=1.0, now=0.0, ttl=1))
        dead_store.delete(Delete(("session:s1",)))
    warnings = [r for r in caplog.records if "revocation check failed" in r.getMessage()]
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


def test_backlog_replays_every_kind_of_write(
    dead_store: RedisStore, redis_client: redis.Redis
) -> None:
    index = KEYS.index("u1")
    redis_client.zadd(index, {h("s1"): T})
    late = make_ops(
        "late",
        sets=((KEYS.not_before("u1"), repr(T), 600),),
        unindex=((index, h("s1")),),
        discard=(index,),
    )
    assert dead_store.execute(late).status == "failed"
    dead_store.client = redis_client
    assert dead_store.execute(make_ops("now")).status == "ok"
    assert redis_client.exists(index) == 0
    assert 0 < redis_client.ttl(KEYS.not_before("u1")) <= 600


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


# -- construction ----------------------------------------------------------------------


def test_from_config_without_redis() -> None:
    assert RedisStore.from_config(LogoutConfig()) is None
    assert AsyncRedisStore.from_config(LogoutConfig()) is None


def test_from_config_on_a_client(redis_client: redis.Redis) -> None:
    found = RedisStore.from_config(LogoutConfig(), redis_client)
    assert found is not None
    assert found.client is redis_client
    assert found.mirror is None  # until attach()


def test_cache_off_by_default(store: RedisStore) -> None:
    assert store.mirror is None


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
    index = KEYS.index("u1")
    redis_client.zadd(index, {h("abc"): T})
    ops = make_ops(
        "e1",
        delete=("session:abc", "starsessions.abc", "x:abc"),
        token="tok",
        ttl=660,
        sets=((KEYS.session(h("abc")), "1", 900),),
        unindex=((index, h("abc")),),
    )
    before = command_calls(redis_client)
    outcome = await store.execute(ops)
    after = command_calls(redis_client)
    assert outcome.status == "ok"
    assert outcome.sessions_deleted == 2
    assert redis_client.exists("session:abc", "starsessions.abc") == 0
    assert redis_client.get(revoke_key("tok")) == b"1"
    assert 650 <= redis_client.ttl(revoke_key("tok")) <= 660
    assert 890 <= redis_client.ttl(KEYS.session(h("abc"))) <= 900
    assert redis_client.zcard(index) == 0
    assert entries(redis_client) == [{**dict(ops.entry), "store": "ok"}]
    # One DEL per key (a cluster pipeline takes no multi-key DEL); the third SET is the
    # audit entry's write-once claim, inside the EVAL.
    calls = (("multi", 1), ("exec", 1), ("del", 3), ("set", 3), ("eval", 1), ("zrem", 1))
    for name, count in calls:
        assert after.get(name, 0) - before.get(name, 0) == count, name


@pytest.mark.anyio
async def test_async_check(async_client: Any) -> None:
    store = AsyncRedisStore(async_client)
    assert await store.check(token_check("tok")) == Checked(False, False, 0.0)
    await store.execute(make_ops("e1", token="tok"))
    assert await store.check(token_check("tok")) == Checked(False, True, 0.0)
    assert await store.check(token_check("other")) == Checked(False, False, 0.0)


@pytest.mark.anyio
async def test_async_read_index_delete(async_client: Any, redis_client: redis.Redis) -> None:
    store = AsyncRedisStore(async_client)
    now = time.time()
    redis_client.set("session:s1", b"record")
    key = KEYS.index("u1")
    redis_client.zadd(KEYS.index("u0"), {h("s1"): now + 60})
    await store.index(
        Index(
            key=key, member=h("s1"), expires_at=now + 60, now=now, ttl=60, previous=KEYS.index("u0")
        )
    )
    reading = await store.read(Read(gets=("session:s1",), ranges=(key,), now=now))
    assert reading == Reading(values=(b"record",), members=((h("s1"),),))
    assert redis_client.zcard(KEYS.index("u0")) == 0
    await store.delete(Delete(("session:s1",)))
    assert redis_client.exists("session:s1") == 0


@pytest.mark.anyio
async def test_async_unreachable(
    async_dead_store: AsyncRedisStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="logout_middleware"):
        outcome = await async_dead_store.execute(make_ops("e1", token="tok"))
        checked = await async_dead_store.check(token_check("tok"))
        reading = await async_dead_store.read(Read(gets=("session:s1",)))
    assert outcome.status == "failed"
    assert outcome.error is not None
    assert outcome.error.startswith("ConnectionError")
    assert checked is None
    assert reading is None
    messages = [r.getMessage() for r in caplog.records]
    assert any("Redis unreachable" in m for m in messages)
    assert any("revocation check failed" in m for m in messages)


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


# -- the mirror's SCAN patterns, on a real server --------------------------------------


def test_globs_match_only_their_keys(redis_client: redis.Redis) -> None:
    keys = RevocationKeys(LogoutConfig(denylist_prefix="deny*[1]:", key_prefix="k?["))
    tokens, sessions, not_before = keys.globs()
    wanted = {
        tokens: keys.token(h("t")),
        sessions: keys.session(h("s")),
        not_before: keys.not_before("u"),
    }
    for key in (*wanted.values(), "denyX[1]:y", "deny*1:z", "kx[revoked-session:a", "k?[x"):
        redis_client.set(key, b"1")
    for pattern, key in wanted.items():
        assert set(redis_client.scan_iter(match=pattern)) == {key.encode()}


# -- the revocation cache: a process's mirror, followed through the stream -------------


class Process:
    """One worker process: a core, its mirror, and a caching store attached to it."""

    def __init__(self, client: redis.Redis, **config: Any) -> None:
        self.core = LogoutCore(LogoutConfig(**config), has_store=True)
        self.store = RedisStore(client, cache_stream=STREAM)
        assert self.core.mirror is not None
        self.mirror: RevocationMirror = self.core.mirror
        self.store.attach(self.mirror, self.core.records_of)

    def start(self, timeout: float = 5.0) -> None:
        self.store.follow()
        assert wait_for(lambda: self.mirror.live, timeout), "the follower never went live"

    def logout(self, request: RequestHead, route: Any = "logout") -> Any:
        return drive(self.core.logout(request, b"", route), self.store, self.core.verifier)

    def verdict(self, cookie: str | None = None, authorization: bytes | None = None) -> Verdict:
        checks = self.core.checks
        session = checks.session(cookie) if cookie else None
        token = checks.token(authorization) if authorization else None
        found = checks.check(session, token)
        if isinstance(found, Check):
            return checks.answer(session, token, self.store.check(found))
        return found


@pytest.fixture
def processes(redis_url: str, redis_client: redis.Redis) -> Iterator[Callable[..., Process]]:
    made: list[Process] = []

    def make(decode_responses: bool = False, **config: Any) -> Process:
        client = redis.Redis.from_url(redis_url, decode_responses=decode_responses)
        made.append(Process(client, **config))
        return made[-1]

    yield make
    for process in made:
        process.store.close()


@pytest.mark.parametrize("decode_responses", [False, True], ids=["bytes", "decoded"])
def test_cache_sees_other_process_revocation(
    processes: Callable[..., Process], redis_client: redis.Redis, decode_responses: bool
) -> None:
    redis_client.set(revoke_key("old"), b"1", ex=600)
    redis_client.set(KEYS.session(h("old-session")), b"1", ex=600)
    redis_client.set(KEYS.not_before("u0"), repr(T).encode(), ex=600)
    cached = processes(decode_responses)
    other = processes()
    cached.start()
    # What was revoked before it started was loaded by SCAN.
    assert cached.mirror.token_cleared(member(h("old"))) is False
    assert cached.mirror.session_revoked(member(h("old-session"))) is True
    assert cached.mirror.not_before("u0") == T

    # A clean token or session costs no Redis command.
    calls = calls_during(redis_client, lambda: cached.verdict("session=clean", b"Bearer clean"))
    assert calls == {}

    # Another process revokes a token: this one sees it through the stream.
    _, event = other.logout(head(authorization="Bearer new", cookie="session=s-new"))
    assert event is not None
    assert event.store == "ok"
    assert wait_for(lambda: not cached.mirror.token_cleared(member(h("new"))), timeout=3.0)
    assert cached.mirror.session_revoked(member(h("s-new"))) is True
    assert cached.verdict(authorization=b"Bearer new") == Verdict(refuse=True)
    stripped = cached.verdict(cookie="session=s-new")
    assert [session.sid for session in stripped.strip] == ["s-new"]


@pytest.mark.parametrize("stray", ["key", "stream-entry"])
def test_follower_survives_stray_data(
    processes: Callable[..., Process], redis_client: redis.Redis, stray: str
) -> None:
    """A key under a revocation prefix that is not ours, or a foreign entry in the
    stream, does not stop the revocation cache."""
    if stray == "key":
        redis_client.set(KEYS.token("not-a-hash"), b"1")
    cached = processes()
    cached.start(timeout=2.0)
    if stray == "stream-entry":
        redis_client.xadd(STREAM, {"token_hash": "not-a-hash"})
    redis_client.xadd(STREAM, {"token_hash": h("after")})
    assert wait_for(lambda: member(h("after")) in cached.mirror.state.tokens, timeout=2.0)
    assert cached.mirror.live


def test_cache_sees_other_process_not_before(
    processes: Callable[..., Process], redis_client: redis.Redis
) -> None:
    config = {"everywhere_path": "/logout/everywhere", "jwt_key": "k" * 32}
    cached = processes(**config)
    other = processes(**config)
    cached.start()
    old = jwt.encode({"sub": "u1", "iat": int(time.time()) - 5}, "k" * 32, algorithm="HS256")
    assert cached.verdict(authorization=f"Bearer {old}".encode()) == Verdict()
    other_token = jwt.encode({"sub": "u1"}, "k" * 32, algorithm="HS256")
    _, event = other.logout(head(authorization=f"Bearer {other_token}"), "everywhere")
    assert event is not None
    assert event.not_before is not None
    assert wait_for(lambda: cached.mirror.not_before("u1") == event.not_before, timeout=3.0)
    assert cached.verdict(authorization=f"Bearer {old}".encode()) == Verdict(refuse=True)


def test_cache_own_revocation_seen_at_once(processes: Callable[..., Process]) -> None:
    cached = processes()
    cached.start()
    _, event = cached.logout(head(authorization="Bearer mine"))
    assert event is not None
    assert cached.mirror.token_cleared(member(h("mine"))) is False
    assert cached.verdict(authorization=b"Bearer mine") == Verdict(refuse=True)


def test_follower_deletes_records_of_sessions_it_knows(
    processes: Callable[..., Process], redis_client: redis.Redis
) -> None:
    """Logging out everywhere in one process deletes, through the stream, the records
    of the subject's sessions that another process has seen."""
    config = {"everywhere_path": "/logout/everywhere", "session_subject": "_user_id"}
    seen_elsewhere = processes(**config)
    logging_out = processes(**config)
    seen_elsewhere.start()
    record = msgspec.msgpack.encode({"_user_id": "u1"})
    for sid in ("s1", "s2", "s3"):
        redis_client.set(f"session:{sid}", record)
    # s2 is used in the first process, which learns its subject and indexes it; s3 is
    # indexed by a process that has since gone away (its id is known to nobody).
    seen = seen_elsewhere.core.checks.session("session=s2")
    assert seen is not None
    drive(
        seen_elsewhere.core.settle(seen, "GET"), seen_elsewhere.store, seen_elsewhere.core.verifier
    )
    redis_client.zadd(KEYS.index("u1"), {h("s3"): time.time() + 60})
    assert redis_client.zcard(KEYS.index("u1")) == 2

    _, event = logging_out.logout(head(cookie="session=s1"), "everywhere")
    assert event is not None
    assert set(event.ended_session_hashes) == {h("s2"), h("s3")}
    assert redis_client.exists("session:s1") == 0  # its own, in the transaction
    assert wait_for(lambda: redis_client.exists("session:s2") == 0, timeout=3.0)
    assert redis_client.exists("session:s3") == 1  # nobody knows its id: tombstoned only
    assert redis_client.exists(KEYS.session(h("s3"))) == 1
    assert seen_elsewhere.mirror.session_revoked(member(h("s3"))) is True


def test_close_ends_follower_and_its_connection(redis_url: str, redis_client: redis.Redis) -> None:
    """Closing a caching store wakes its follower out of the blocking XREAD (5 s) and
    closes the follower's connection along with the store's own, at once."""
    alone = connected_clients(redis_client)
    cached = Process(redis.Redis.from_url(redis_url))
    cached.start()
    assert cached.verdict(authorization=b"Bearer warm-up") == Verdict()
    cached.store.check(token_check("warm-up"))  # the store's own connection
    assert connected_clients(redis_client) == alone + 2  # the store's and the follower's
    began = time.monotonic()
    cached.store.close()
    assert time.monotonic() - began < 2.0, "close() waited out the follower's XREAD"
    assert wait_for(lambda: connected_clients(redis_client) == alone, timeout=1.0)
    assert not cached.mirror.live


@pytest.mark.anyio
async def test_async_cache_sees_other_process_revocation(
    redis_url: str, redis_client: redis.Redis
) -> None:
    core = LogoutCore(LogoutConfig(), has_store=True)
    mirror = core.mirror
    assert mirror is not None
    cached = AsyncRedisStore(redis.asyncio.Redis.from_url(redis_url), cache_stream=STREAM)
    cached.attach(mirror, core.records_of)
    other = RedisStore(redis_client)
    try:
        cached.follow()
        deadline = time.monotonic() + 5
        while not mirror.live and time.monotonic() < deadline:
            await _sleep()
        assert mirror.live
        assert mirror.token_cleared(member(h("new"))) is True

        assert other.execute(make_ops("e1", token="new")).status == "ok"
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and mirror.token_cleared(member(h("new"))):
            await _sleep()
        assert mirror.token_cleared(member(h("new"))) is False
    finally:
        await cached.aclose()


async def _sleep() -> None:
    await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_async_close_ends_follower_and_its_connection(
    redis_url: str, redis_client: redis.Redis
) -> None:
    alone = connected_clients(redis_client)
    mirror = RevocationMirror(KEYS)
    cached = AsyncRedisStore(redis.asyncio.Redis.from_url(redis_url), cache_stream=STREAM)
    cached.attach(mirror)
    cached.follow()
    await cached.check(token_check("warm-up"))  # the store's own connection
    deadline = time.monotonic() + 5
    while not mirror.live and time.monotonic() < deadline:
        await _sleep()
    assert mirror.live
    assert connected_clients(redis_client) == alone + 2
    began = time.monotonic()
    await cached.aclose()
    assert time.monotonic() - began < 2.0
    assert not mirror.live
    # Redis drops a closed connection from its count when it reads the close.
    assert wait_for(lambda: connected_clients(redis_client) == alone, timeout=1.0)
