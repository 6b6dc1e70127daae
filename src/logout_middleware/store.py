"""Redis stores: carry out what the core asks for, each request in one round trip.

:class:`RedisStore` (redis-py, for WSGI) and :class:`AsyncRedisStore` (``redis.asyncio``,
for ASGI) have the same methods, as the ``limits`` and ``starsessions`` stores do, and
:func:`drive` / :func:`adrive` run a core flow on them:

* ``execute(ops)``: one ``MULTI``/``EXEC`` transaction, sent as one pipeline: ``DEL`` of
  the session records, ``SET ... EX`` of the revoked token, the session tombstones and a
  subject's not-before, ``ZREM`` from the session index, ``XADD`` of the audit entry. No
  other client's command runs between them, and if the connection fails none of them
  runs; Redis has no rollback, so a command it refuses (``WRONGTYPE``) does not undo
  the others.
* ``read``, ``check``, ``index``, ``delete``: one pipeline each (see :mod:`.core.ops`).

With ``LOGOUT_REVOCATION_CACHE`` (the default) each process keeps the core's
:class:`~.core.revocation.RevocationMirror` current: loaded by ``SCAN`` and followed
through the audit stream with a blocking ``XREAD`` (every revocation's ``XADD`` is in
the same transaction as its ``SET``), on a connection of its own. While the follower is
not connected, every check goes to Redis. The price: another process's revocation is
seen once the stream delivers it (well under a millisecond on a local network), not at
the instant of its ``EXEC``. When the stream says a session ended whose id this process
knows, the follower deletes its record: that is how logging out everywhere removes the
records of sessions the logging-out process never saw, with no session id stored.

Nothing here raises for Redis trouble: a failed logout is reported as a
:class:`~.core.ops.StoreOutcome` with status ``failed``, a failed check or read as None,
each logged (at most once every 10 seconds for checks). Failed logouts are kept in memory
(up to ``backlog`` of them) and carried out in the transaction of the next logout that
reaches Redis, their audit entries marked ``store=retried``.

Pass your own client to share a connection pool, or use ``from_url``; clients built here
have short timeouts and one retry, so a dead Redis answers in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .core.oidc import LogoutTokenError, OIDCProvider
from .core.ops import (
    Check,
    Checked,
    Claim,
    Delete,
    Discover,
    Flow,
    Index,
    Read,
    Reading,
    StoreOps,
    StoreOutcome,
    Verify,
    VerifyLogoutToken,
)
from .core.revocation import MirrorSnapshot, RevocationMirror

if TYPE_CHECKING:
    from .config import LogoutConfig
    from .core.tokens import TokenVerifier

__all__ = ["AsyncRedisStore", "RedisStore", "adrive", "drive"]

logger = logging.getLogger("logout_middleware")

#: How many failed logouts are kept while Redis is unreachable.
DEFAULT_BACKLOG = 1000
#: How long :meth:`RedisStore.close` waits for the follower thread to end, seconds.
STOP_WAIT = 2.0
#: How long one blocking ``XREAD`` of the mirror's follower waits, milliseconds.
FOLLOW_BLOCK_MS = 5000
#: How often a mirror reloads the whole state (dropping expired members), seconds.
MIRROR_RELOAD = 300.0
#: Least time between two warnings about failed checks, seconds.
WARN_EVERY = 10.0
#: Keys per ``SCAN`` step and per ``MGET`` while loading the mirror.
LOAD_BATCH = 1000

#: A logout whose writes failed, and when (seconds since the epoch).
_Late = tuple[StoreOps, float]
#: Given the members of ended sessions, the record keys this process knows for them.
RecordsOf = Callable[[Iterable[int]], tuple[str, ...]]

_T = TypeVar("_T")

#: Bumped in every child process right after ``fork``: a store compares it with the one
#: it saw, instead of calling ``os.getpid()`` on every request.
_generation = [0]


def _forked() -> None:
    _generation[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def client_options(url: str, timeout: float) -> dict[str, Any]:
    """Keyword arguments for a redis-py client that fails fast: ``timeout`` seconds to
    connect and to read, connections checked after 30 idle seconds, and TCP keep-alive
    (not for ``unix://`` URLs, whose connections take no such option)."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
    }
    if not url.startswith("unix://"):
        options["socket_keepalive"] = True
    return options


class _Backlog:
    """Logouts whose writes failed, oldest first, bounded; thread-safe."""

    def __init__(self, size: int) -> None:
        self._entries: deque[_Late] = deque()
        #: How many failed logouts it keeps; 0 keeps none (a one-off revocation).
        self.size = size
        self._lock = threading.Lock()
        self.dropped = 0

    def take(self) -> list[_Late]:
        with self._lock:
            taken = list(self._entries)
            self._entries.clear()
            return taken

    def put(self, entries: Sequence[_Late]) -> None:
        with self._lock:
            self._entries.extendleft(reversed(entries))
            while len(self._entries) > self.size:
                self._entries.pop()
                self.dropped += 1
        if self.dropped:
            logger.error("logout backlog full: %d failed logouts were dropped", self.dropped)


def _queue(pipe: Any, ops: StoreOps, status: str = "ok", elapsed: float = 0.0) -> None:
    """Queue the commands of one logout on a pipeline; ``elapsed`` seconds since it was
    asked for shorten the TTLs (a late revocation ends when it would have)."""
    if ops.delete:
        pipe.delete(*ops.delete)
    for key, value, ttl in ops.sets:
        remaining = int(ttl - elapsed)
        if remaining > 0:
            pipe.set(key, value, ex=remaining)
    for index, member in ops.unindex:
        pipe.zrem(index, member)
    if ops.drop_index:
        pipe.delete(*ops.drop_index)
    if ops.stream is not None:
        for entry in (ops.entry, *ops.extra_entries):
            pipe.xadd(
                ops.stream, {**dict(entry), "store": status}, maxlen=ops.maxlen, approximate=True
            )


def _queue_all(pipe: Any, ops: StoreOps, late: Sequence[_Late]) -> None:
    """This logout first (its ``DEL`` count is the first reply), then the backlog."""
    _queue(pipe, ops)
    now = time.time()
    for old, failed_at in late:
        _queue(pipe, old, "retried", now - failed_at)


def _failed(ops: StoreOps, exc: Exception, backlog: _Backlog, late: list[_Late]) -> StoreOutcome:
    """Report a failed transaction. Only an unreachable Redis (connection errors and
    timeouts) puts the logouts back in the backlog: a command Redis refused (such as
    ``WRONGTYPE``, when the stream key holds another type) would fail again."""
    error = f"{type(exc).__name__}: {exc}"[:200]
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        if backlog.size:
            late.append((ops, time.time()))
            logger.warning("logout: Redis unreachable (%s); will retry with the next logout", error)
        else:
            logger.warning("logout: Redis unreachable (%s)", error)
        backlog.put(late)
    else:
        backlog.put(late)
        logger.error("logout: Redis refused the writes (%s); not retried", error)
    return StoreOutcome("failed", error=error)


def _queue_read(pipe: Any, request: Read) -> None:
    for key in request.gets:
        pipe.get(key)
    for key in request.ranges:
        pipe.zrangebyscore(key, request.now, "+inf")


def _reading(request: Read, results: Sequence[Any]) -> Reading:
    count = len(request.gets)
    members = tuple(
        tuple(m.decode() if isinstance(m, bytes) else str(m) for m in found)
        for found in results[count:]
    )
    values = tuple(v.encode() if isinstance(v, str) else v for v in results[:count])
    return Reading(values=values, members=members)


def _queue_check(pipe: Any, request: Check) -> None:
    if request.session_key is not None:
        pipe.exists(request.session_key)
    if request.token_key is not None:
        pipe.exists(request.token_key)
    if request.not_before_key is not None:
        pipe.get(request.not_before_key)
    if request.oidc_sid_key is not None:
        pipe.exists(request.oidc_sid_key)


def _checked(request: Check, results: Sequence[Any]) -> Checked:
    replies = iter(results)
    session = bool(next(replies)) if request.session_key is not None else False
    token = bool(next(replies)) if request.token_key is not None else False
    not_before = 0.0
    if request.not_before_key is not None:
        raw = next(replies)
        with contextlib.suppress(TypeError, ValueError):
            not_before = float(raw) if raw is not None else 0.0
    oidc_sid = bool(next(replies)) if request.oidc_sid_key is not None else False
    return Checked(
        session_revoked=session,
        token_revoked=token,
        not_before=not_before,
        oidc_sid_revoked=oidc_sid,
    )


def _queue_index(pipe: Any, request: Index) -> None:
    pipe.zadd(request.key, {request.member: request.expires_at})
    pipe.zremrangebyscore(request.key, "-inf", request.now)
    pipe.expire(request.key, request.ttl)
    if request.previous is not None:
        pipe.zrem(request.previous, request.member)


def warn_if_no_store(has_store: bool) -> None:
    """Log the start-up warning of a middleware built without Redis."""
    if not has_store:
        logger.warning(
            "LOGOUT_REDIS_URL is not set: logout will expire cookies only; server-side "
            "sessions are not ended, bearer tokens are not revoked, no audit entry is written"
        )


class _Throttle:
    """True at most once every ``every`` seconds (for repeated warnings)."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._next = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self._every
        return True


def _stream_end(reply: Any) -> Any:
    """The id of the newest entry from an ``XREVRANGE ... COUNT 1`` reply, or ``0-0``."""
    return reply[0][0] if reply else b"0-0"


def _client_id(client: redis.Redis) -> int | None:
    """The connection's ``CLIENT ID``, or None where the ACL does not allow ``CLIENT``."""
    try:
        return int(client.client_id())
    except redis.ResponseError:
        return None


async def _scan(client: redis.asyncio.Redis, pattern: str) -> list[Any]:
    """Every key matching ``pattern``, by ``SCAN`` steps (no async generator: a follower
    cancelled mid-scan must leave no generator holding its connection)."""
    keys: list[Any] = []
    cursor = 0
    while True:
        cursor, batch = await client.scan(cursor, match=pattern, count=LOAD_BATCH)
        keys += batch
        if not cursor:
            return keys


def _decodes(client: Any) -> bool:
    pool = getattr(client, "connection_pool", None)
    return bool(pool is not None and pool.connection_kwargs.get("decode_responses"))


def _no_records(_members: Iterable[int]) -> tuple[str, ...]:
    return ()


_Store = TypeVar("_Store", bound="_Shared")


class _Shared:
    """What both stores share: their construction, the backlog, the warning throttle and
    the mirror. A subclass names its redis-py flavour in ``_flavour``."""

    #: redis-py's client, connection pool and retry classes: sync or ``redis.asyncio``.
    _flavour: ClassVar[tuple[Any, Any, Any]]

    def __init__(self, client: Any, backlog: int, cache_stream: str | None) -> None:
        self.client = client
        # Session records are bytes (msgpack, pickle): read them on a twin that does not
        # decode when the caller's client decodes responses.
        self._raw = self._twin(client) if _decodes(client) else client
        self._backlog = _Backlog(backlog)
        self._warn = _Throttle(WARN_EVERY)
        self._stream = cache_stream
        #: The mirror the follower keeps current (see :meth:`attach`), or None.
        self.mirror: RevocationMirror | None = None
        self._records_of: RecordsOf = _no_records

    @classmethod
    def _twin(cls, client: Any) -> Any:
        client_class, pool_class, _ = cls._flavour
        pool = client.connection_pool
        kwargs = {**pool.connection_kwargs, "decode_responses": False}
        return client_class(
            connection_pool=pool_class(connection_class=pool.connection_class, **kwargs)
        )

    def attach(self, mirror: RevocationMirror, records_of: RecordsOf = _no_records) -> None:
        """Keep ``mirror`` current by following the audit stream (when the store was made
        with a ``cache_stream``), deleting the records ``records_of`` names for sessions
        that the stream says ended."""
        self.mirror = mirror
        self._records_of = records_of

    @classmethod
    def from_url(cls: type[_Store], url: str, *, timeout: float = 1.0, **kwargs: Any) -> _Store:
        """A store on a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``)
        with ``timeout`` seconds to connect and read and one retry (to replace a stale
        pooled connection). ``kwargs`` go to the store's constructor.

        :raises ValueError: from redis-py, for a URL it cannot parse."""
        client_class, _, retry_class = cls._flavour
        client = client_class.from_url(
            url, retry=retry_class(NoBackoff(), 1), **client_options(url, timeout)
        )
        return cls(client, **kwargs)

    @classmethod
    def from_config(
        cls: type[_Store], config: LogoutConfig, client: Any = None, *, follow: bool = True
    ) -> _Store | None:
        """The store ``config`` asks for, on ``client`` (a redis-py client of the store's
        flavour) or on ``LOGOUT_REDIS_URL``; None when there is neither. With
        ``follow=False`` (a one-off revocation) it keeps no backlog and no mirror."""
        options: dict[str, Any] = {} if follow else {"backlog": 0}
        if follow and config.revocation_cache and config.events_stream:
            options["cache_stream"] = config.events_stream
        if client is not None:
            return cls(client, **options)
        if config.redis_url:
            return cls.from_url(config.redis_url, timeout=config.redis_timeout, **options)
        return None

    def _follower_pool(self) -> Any:
        """A one-connection pool for the follower: the client's settings, with a read
        timeout longer than the blocking ``XREAD`` and no retry (the follower's own loop
        reconnects, and a closed store's follower must stop at the first error)."""
        _, pool_class, retry_class = self._flavour
        pool = self.client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        timeout = float(kwargs.get("socket_timeout") or 1.0)
        kwargs["socket_timeout"] = FOLLOW_BLOCK_MS / 1000 + timeout
        kwargs["retry"] = retry_class(NoBackoff(), 0)
        return pool_class(connection_class=pool.connection_class, max_connections=1, **kwargs)

    def _check_failed(self, exc: Exception) -> None:
        if self._warn():
            logger.warning("revocation check failed: %s: %s", type(exc).__name__, exc)

    def _follower_failed(self, exc: Exception) -> None:
        if self.mirror is not None:
            self.mirror.live = False
        if self._warn():
            logger.warning("revocation cache offline: %s: %s", type(exc).__name__, exc)

    def _following(self) -> tuple[RevocationMirror, str] | None:
        if self.mirror is None or self._stream is None:
            return None
        return self.mirror, self._stream


class RedisStore(_Shared):
    """Synchronous store on a redis-py client (thread-safe, as its connection pool).

    :param client: a ``redis.Redis``; its ``decode_responses`` setting does not matter.
    :param backlog: how many failed logouts to keep for later.
    :param cache_stream: the audit stream to follow into the attached mirror, or None
        for no revocation cache.
    """

    _flavour = (redis.Redis, redis.ConnectionPool, Retry)
    client: redis.Redis

    def __init__(
        self,
        client: redis.Redis,
        *,
        backlog: int = DEFAULT_BACKLOG,
        cache_stream: str | None = None,
    ) -> None:
        super().__init__(client, backlog, cache_stream)
        self._follower: threading.Thread | None = None
        self._follower_id: int | None = None
        self._follower_pid = -1  # the fork generation the follower was started in
        self._stop = threading.Event()

    def execute(self, ops: StoreOps) -> StoreOutcome:
        """Make the writes of one logout in one transaction; never raises for Redis errors."""
        late = self._backlog.take()
        try:
            pipe = self.client.pipeline(transaction=True)
            _queue_all(pipe, ops, late)
            results = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return _failed(ops, exc, self._backlog, late)
        return StoreOutcome("ok", sessions_deleted=int(results[0]) if ops.delete else 0)

    def read(self, request: Read) -> Reading | None:
        """The replies to ``request`` in one pipeline, or None when Redis failed."""
        try:
            pipe = self._raw.pipeline(transaction=False)
            _queue_read(pipe, request)
            return _reading(request, pipe.execute())
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    def check(self, request: Check) -> Checked | None:
        """Redis's answers to ``request`` in one pipeline, or None when it failed."""
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_check(pipe, request)
            return _checked(request, pipe.execute())
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    def claim(self, request: Claim) -> bool | None:
        """``SET NX EX``: True when the key was new, False when it existed, None on failure."""
        try:
            return bool(self.client.set(request.key, b"1", nx=True, ex=request.ttl))
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    def index(self, request: Index) -> None:
        """Index a session under its subject; failures are logged."""
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_index(pipe, request)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)

    def delete(self, request: Delete) -> None:
        """Delete re-created records; failures are logged."""
        try:
            self.client.delete(*request.keys)
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)

    def follow(self) -> None:
        """Start the mirror's follower if it is not running in this process. Threads do
        not survive ``fork``: a forked worker's mirror is marked not live (what it holds
        may be stale) and the worker starts its own follower. Cheap: adapters call it on
        every request they check."""
        if self._follower_pid == _generation[0]:
            return
        self._follower_pid = _generation[0]
        if self.mirror is not None:
            self.mirror.live = False
        following = self._following()
        if following is None:
            return
        self._follower = threading.Thread(
            target=self._follow,
            args=(*following, self._follower_pool()),
            name="logout-revocations",
            daemon=True,
        )
        self._follower.start()

    def _follow(self, mirror: RevocationMirror, stream: str, pool: redis.ConnectionPool) -> None:
        client = redis.Redis(connection_pool=pool)
        try:
            while not self._stop.is_set():
                try:
                    self._follower_id = _client_id(client)
                    last = _stream_end(client.xrevrange(stream, count=1))
                    snapshot = MirrorSnapshot()
                    found = [
                        list(client.scan_iter(match=g, count=LOAD_BATCH))
                        for g in (*mirror.keys.globs(), mirror.keys.oidc_sid_glob())
                    ]
                    values: list[Any] = []
                    for start in range(0, len(found[2]), LOAD_BATCH):
                        values += client.mget(found[2][start : start + LOAD_BATCH])
                    mirror.load(
                        snapshot, found[0], found[1], zip(found[2], values, strict=True), found[3]
                    )
                    # Revocations made during the SCAN are in the stream after `last`.
                    while reply := client.xread({stream: last}, count=LOAD_BATCH):
                        last, ended = mirror.absorb(reply, last, snapshot)
                        records = self._records_of(ended) if ended else ()
                        if records:
                            client.delete(*records)
                    mirror.replace(snapshot)
                    reload_at = time.monotonic() + MIRROR_RELOAD
                    while not self._stop.is_set() and time.monotonic() < reload_at:
                        followed = client.xread(
                            {stream: last}, block=FOLLOW_BLOCK_MS, count=LOAD_BATCH
                        )
                        last, ended = mirror.absorb(followed, last)
                        records = self._records_of(ended) if ended else ()
                        if records:
                            client.delete(*records)
                except Exception as exc:  # a follower never dies: it reloads
                    if self._stop.is_set():
                        break
                    self._follower_failed(exc)
                    self._stop.wait(1.0)
        finally:
            mirror.live = False
            pool.disconnect()

    def close(self) -> None:
        """Stop the mirror's follower and close every connection, the follower's too.

        ``CLIENT UNBLOCK`` wakes the follower out of its blocking ``XREAD``, so that it
        ends (closing its connection) at once; this waits for it at most
        :data:`STOP_WAIT` seconds. Where ``CLIENT`` is not allowed, the follower ends
        within one ``XREAD`` block (:data:`FOLLOW_BLOCK_MS`) instead."""
        self._stop.set()
        follower = self._follower
        if follower is not None and follower is not threading.current_thread():
            deadline = time.monotonic() + STOP_WAIT
            while follower.is_alive() and time.monotonic() < deadline:
                if self._follower_id is not None:
                    with contextlib.suppress(redis.RedisError, OSError):
                        self.client.client_unblock(self._follower_id)
                follower.join(0.05)
        self.client.close()
        if self._raw is not self.client:
            self._raw.close()


class AsyncRedisStore(_Shared):
    """Asynchronous store on a ``redis.asyncio`` client, for the ASGI middleware.

    Parameters as :class:`RedisStore`; the mirror's follower is a task on the event loop
    of the first check.
    """

    _flavour = (redis.asyncio.Redis, redis.asyncio.ConnectionPool, AsyncRetry)
    client: redis.asyncio.Redis

    def __init__(
        self,
        client: redis.asyncio.Redis,
        *,
        backlog: int = DEFAULT_BACKLOG,
        cache_stream: str | None = None,
    ) -> None:
        super().__init__(client, backlog, cache_stream)
        self._follower: asyncio.Task[None] | None = None
        self._follower_pid = -1  # the fork generation the follower was started in

    async def execute(self, ops: StoreOps) -> StoreOutcome:
        """Make the writes of one logout in one transaction; never raises for Redis errors."""
        late = self._backlog.take()
        try:
            pipe = self.client.pipeline(transaction=True)
            _queue_all(pipe, ops, late)
            results = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return _failed(ops, exc, self._backlog, late)
        return StoreOutcome("ok", sessions_deleted=int(results[0]) if ops.delete else 0)

    async def read(self, request: Read) -> Reading | None:
        """The replies to ``request`` in one pipeline, or None when Redis failed."""
        try:
            pipe = self._raw.pipeline(transaction=False)
            _queue_read(pipe, request)
            return _reading(request, await pipe.execute())
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    async def check(self, request: Check) -> Checked | None:
        """Redis's answers to ``request`` in one pipeline, or None when it failed."""
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_check(pipe, request)
            return _checked(request, await pipe.execute())
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    async def claim(self, request: Claim) -> bool | None:
        """``SET NX EX``: True when the key was new, False when it existed, None on failure."""
        try:
            return bool(await self.client.set(request.key, b"1", nx=True, ex=request.ttl))
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    async def index(self, request: Index) -> None:
        """Index a session under its subject; failures are logged."""
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_index(pipe, request)
            await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)

    async def delete(self, request: Delete) -> None:
        """Delete re-created records; failures are logged."""
        try:
            await self.client.delete(*request.keys)
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)

    def follow(self) -> None:
        """Start the mirror's follower task on the running loop if it is not running
        (also after a ``fork``, whose child has no task: its mirror is marked not live
        first). Cheap: the adapter calls it on every request it checks."""
        if self._follower_pid == _generation[0]:
            if self._follower is not None and not self._follower.done():
                return
        else:
            self._follower_pid = _generation[0]
            if self.mirror is not None:
                self.mirror.live = False
        following = self._following()
        if following is not None:
            self._follower = asyncio.get_running_loop().create_task(self._follow(*following))

    async def _follow(self, mirror: RevocationMirror, stream: str) -> None:
        pool = self._follower_pool()
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            while True:
                try:
                    last = _stream_end(await client.xrevrange(stream, count=1))
                    snapshot = MirrorSnapshot()
                    patterns = (*mirror.keys.globs(), mirror.keys.oidc_sid_glob())
                    found = [await _scan(client, pattern) for pattern in patterns]
                    values: list[Any] = []
                    for start in range(0, len(found[2]), LOAD_BATCH):
                        values += await client.mget(found[2][start : start + LOAD_BATCH])
                    mirror.load(
                        snapshot, found[0], found[1], zip(found[2], values, strict=True), found[3]
                    )
                    # Revocations made during the SCAN are in the stream after `last`.
                    while reply := await client.xread({stream: last}, count=LOAD_BATCH):
                        last, ended = mirror.absorb(reply, last, snapshot)
                        records = self._records_of(ended) if ended else ()
                        if records:
                            await client.delete(*records)
                    mirror.replace(snapshot)
                    reload_at = time.monotonic() + MIRROR_RELOAD
                    while time.monotonic() < reload_at:
                        followed = await client.xread(
                            {stream: last}, block=FOLLOW_BLOCK_MS, count=LOAD_BATCH
                        )
                        last, ended = mirror.absorb(followed, last)
                        records = self._records_of(ended) if ended else ()
                        if records:
                            await client.delete(*records)
                except Exception as exc:  # a follower never dies: it reloads
                    self._follower_failed(exc)
                    await asyncio.sleep(1.0)
        finally:
            mirror.live = False
            await client.aclose()
            await pool.disconnect()

    async def aclose(self) -> None:
        """Stop the mirror's follower and close the client's connections.

        The follower is cancelled until it ends, for at most :data:`STOP_WAIT` seconds
        (redis-py may swallow one cancellation while it drops a connection mid-reply)."""
        follower = self._follower
        if follower is not None:
            deadline = time.monotonic() + STOP_WAIT
            while not follower.done() and time.monotonic() < deadline:
                follower.cancel()
                await asyncio.wait({follower}, timeout=0.05)
            if follower.done() and not follower.cancelled():
                follower.exception()  # retrieved: it is logged by the loop otherwise
        await self.client.aclose()
        if self._raw is not self.client:
            await self._raw.aclose()


def _provider_call(request: Any, provider: OIDCProvider | None) -> Any:
    """The answer to a request for the OpenID provider (blocking)."""
    if provider is None:
        return (
            LogoutTokenError("no OpenID provider configured")
            if isinstance(request, VerifyLogoutToken)
            else None
        )
    if isinstance(request, VerifyLogoutToken):
        return provider.verify_logout_token(request.token)
    return provider.end_session_endpoint()


def drive(
    flow: Flow[_T],
    store: RedisStore | None,
    verifier: TokenVerifier,
    provider: OIDCProvider | None = None,
) -> _T:
    """Run a core flow to its end on a synchronous store; return its result.

    Each request the flow yields is carried out here (a JWT verification, a call to the
    OpenID provider, or one Redis round trip) and its result sent back. Without a store,
    Redis requests get None.
    """
    result: Any = None
    try:
        while True:
            request = flow.send(result)
            if isinstance(request, Verify):
                result = verifier.verify(request.token)
            elif isinstance(request, (VerifyLogoutToken, Discover)):
                result = _provider_call(request, provider)
            elif store is None:
                result = None
            elif isinstance(request, StoreOps):
                result = store.execute(request)
            elif isinstance(request, Read):
                result = store.read(request)
            elif isinstance(request, Check):
                result = store.check(request)
            elif isinstance(request, Claim):
                result = store.claim(request)
            elif isinstance(request, Index):
                store.index(request)
                result = None
            else:
                store.delete(request)
                result = None
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def adrive(
    flow: Flow[_T],
    store: AsyncRedisStore | None,
    verifier: TokenVerifier,
    provider: OIDCProvider | None = None,
) -> _T:
    """:func:`drive` for the asynchronous store; a JWT verification that may fetch a
    JWKS, and every call to the OpenID provider, run in a worker thread, off the event
    loop."""
    result: Any = None
    try:
        while True:
            request = flow.send(result)
            if isinstance(request, Verify):
                if verifier.fetches:
                    result = await asyncio.to_thread(verifier.verify, request.token)
                else:
                    result = verifier.verify(request.token)
            elif isinstance(request, (VerifyLogoutToken, Discover)):
                result = await asyncio.to_thread(_provider_call, request, provider)
            elif store is None:
                result = None
            elif isinstance(request, StoreOps):
                result = await store.execute(request)
            elif isinstance(request, Read):
                result = await store.read(request)
            elif isinstance(request, Check):
                result = await store.check(request)
            elif isinstance(request, Claim):
                result = await store.claim(request)
            elif isinstance(request, Index):
                await store.index(request)
                result = None
            else:
                await store.delete(request)
                result = None
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
