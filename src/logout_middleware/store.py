"""Redis stores: carry out a logout's writes in one round trip, and read the denylist.

:class:`RedisStore` (redis-py, for WSGI) and :class:`AsyncRedisStore` (``redis.asyncio``,
for ASGI) have the same two methods, as the ``limits`` and ``starsessions`` stores do:

* ``execute(ops)``: one ``MULTI``/``EXEC`` transaction, sent as one pipeline: ``DEL``
  of the session keys, ``SET <denylist key> 1 EX <ttl>`` for the token, ``XADD`` of the
  audit entry. No other client's command runs between them, and if the connection fails
  none of them runs; Redis has no rollback, so a command it refuses (``WRONGTYPE``) does
  not undo the others.
* ``is_revoked(key)``: one ``EXISTS``, or none with the revocation cache.

With a ``cache_stream`` (``LOGOUT_REVOCATION_CACHE``) each process keeps a
:class:`DenylistMirror`: the denylist's members as 64-bit hash prefixes, loaded by
``SCAN`` and kept current by following the audit stream with a blocking ``XREAD``
(every revocation's ``XADD`` is in the same transaction as its ``SET``). A token whose
prefix is absent from a live mirror is not revoked and costs no round trip; a present
one is confirmed with ``EXISTS`` (expired members and prefix collisions cost only that).
While the follower is not connected, every check goes to Redis as without the cache.
The price: another process's revocation is seen after the stream delivers it (well
under a millisecond on a local network), not at the instant of its ``EXEC``.

Neither raises for Redis trouble: a failed logout is reported as a
:class:`~logout_middleware.core.StoreOutcome` with status ``failed``, and a failed
check as None, each logged (the check at most once every 10 seconds). Failed logouts
are kept in memory (up to ``backlog`` of them) and carried out in the transaction of the
next logout that reaches Redis: their session keys deleted, their tokens revoked for
what remains of the TTL, their audit entries written with ``store=retried``. A Redis
outage loses nothing unless it outlasts the backlog or the process.

Pass your own client to share a connection pool, or use ``from_url``; clients built
here have short timeouts and one retry, so a dead Redis answers in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .core import StoreOps, StoreOutcome

if TYPE_CHECKING:
    from .config import LogoutConfig

__all__ = ["AsyncRedisStore", "DenylistMirror", "RedisStore"]

logger = logging.getLogger("logout_middleware")

#: How many failed logouts are kept while Redis is unreachable.
DEFAULT_BACKLOG = 1000
#: How long :meth:`RedisStore.close` waits for the follower thread to end, seconds.
STOP_WAIT = 2.0

#: How long one blocking ``XREAD`` of the mirror's follower waits, milliseconds.
FOLLOW_BLOCK_MS = 5000
#: How often a mirror reloads the whole denylist (dropping expired members), seconds.
MIRROR_RELOAD = 300.0
#: Least time between two warnings about failed denylist checks, seconds.
WARN_EVERY = 10.0

#: A logout whose writes failed, and when (seconds since the epoch).
_Late = tuple[StoreOps, float]


def client_options(timeout: float) -> dict[str, Any]:
    """Keyword arguments for a redis-py client that fails fast: ``timeout`` seconds to
    connect and to read, keep-alive on, connections checked after 30 idle seconds."""
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
    }


class _Backlog:
    """Logouts whose writes failed, oldest first, bounded; thread-safe."""

    def __init__(self, size: int) -> None:
        self._entries: deque[_Late] = deque()
        self._size = size
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
            while len(self._entries) > self._size:
                self._entries.pop()
                self.dropped += 1
        if self.dropped:
            logger.error("logout backlog full: %d failed logouts were dropped", self.dropped)


def _queue(pipe: Any, ops: StoreOps, status: str = "ok", elapsed: float = 0.0) -> None:
    """Queue the commands of one logout on a pipeline; ``elapsed`` seconds since it was
    asked for shorten the revocation's TTL (a late revocation ends when it would have)."""
    if ops.delete:
        pipe.delete(*ops.delete)
    if ops.revoke is not None:
        key, ttl = ops.revoke
        remaining = int(ttl - elapsed)
        if remaining > 0:
            pipe.set(key, b"1", ex=remaining)
    if ops.stream is not None:
        pipe.xadd(
            ops.stream, {**dict(ops.entry), "store": status}, maxlen=ops.maxlen, approximate=True
        )


def _queue_all(pipe: Any, ops: StoreOps, late: Sequence[_Late]) -> None:
    """This logout first (its ``DEL`` count is the first reply), then the backlog."""
    _queue(pipe, ops)
    now = time.time()
    for old, failed_at in late:
        _queue(pipe, old, "retried", now - failed_at)


def _outcome(ops: StoreOps, results: Sequence[Any]) -> StoreOutcome:
    return StoreOutcome("ok", sessions_deleted=int(results[0]) if ops.delete else 0)


def _failed(ops: StoreOps, exc: Exception, backlog: _Backlog, late: list[_Late]) -> StoreOutcome:
    """Report a failed transaction. Only an unreachable Redis (connection errors and
    timeouts) puts the logouts back in the backlog: a command Redis refused (such as
    ``WRONGTYPE``, when the stream key holds another type) would fail again."""
    error = f"{type(exc).__name__}: {exc}"[:200]
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError)):
        late.append((ops, time.time()))
        backlog.put(late)
        logger.warning("logout: Redis unreachable (%s); will retry with the next logout", error)
    else:
        backlog.put(late)
        logger.error("logout: Redis refused the writes (%s); not retried", error)
    return StoreOutcome("failed", error=error)


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


class DenylistMirror:
    """A process-local copy of which denylist keys exist, as 64-bit prefixes of their
    SHA-256 (about 70 bytes per revoked token).

    Only a *live* mirror answers, and only "not revoked": :meth:`clears` is True when
    ``key`` is certainly absent. Members are never removed between reloads, so the
    mirror errs only towards asking Redis.

    :param prefix: ``LOGOUT_DENYLIST_PREFIX``, to find the hash in a key.
    """

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix
        self._start = len(prefix)
        self._members: set[int] = set()
        #: True while the mirror is complete and its follower connected.
        self.live = False

    @staticmethod
    def _member(hex_digest: str | bytes) -> int:
        return int(hex_digest[:16], 16)

    def clears(self, key: str) -> bool:
        """True when denylist ``key`` certainly does not exist (the mirror is live and
        does not hold its prefix); False means "ask Redis"."""
        return self.live and int(key[self._start : self._start + 16], 16) not in self._members

    def add_key(self, key: str) -> None:
        """Record a denylist key this process just wrote."""
        self._members.add(self._member(key[self._start :]))

    def absorb(self, reply: Any, last: Any, into: set[int] | None = None) -> Any:
        """Add the ``token_hash`` of every entry in an ``XREAD`` reply (a list of
        ``(stream, entries)``, or None) to ``into``, the mirror's own members by default.

        :returns: the id of the reply's last entry, or ``last`` when it has none.
        Field names may be bytes or text (``decode_responses``)."""
        members = self._members if into is None else into
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last = entry_id
                token_hash = fields.get(b"token_hash") or fields.get("token_hash")
                if token_hash:
                    members.add(self._member(token_hash))
        return last

    def members_of(self, keys: Iterable[str | bytes]) -> set[int]:
        """The members for denylist ``keys`` (bytes or text, as ``SCAN`` returns them)."""
        start = self._start
        return {self._member(key[start:]) for key in keys}

    def replace(self, members: set[int]) -> None:
        """Make ``members`` the whole denylist and the mirror live. Members whose keys
        expired since the last reload are dropped here."""
        self._members = members
        self.live = True

    def glob(self) -> str:
        """The ``SCAN MATCH`` pattern for the denylist keys."""
        escaped = "".join("\\" + c if c in "*?[]\\" else c for c in self._prefix)
        return escaped + "*"


def _stream_end(reply: Any) -> Any:
    """The id of the newest entry from an ``XREVRANGE ... COUNT 1`` reply, or ``0-0``."""
    return reply[0][0] if reply else b"0-0"


def _client_id(client: redis.Redis) -> int | None:
    """The connection's ``CLIENT ID``, or None where the ACL does not allow ``CLIENT``."""
    try:
        return int(client.client_id())
    except redis.ResponseError:
        return None


def _options(config: LogoutConfig) -> dict[str, Any]:
    """Store keyword arguments from a configuration."""
    options: dict[str, Any] = {"denylist_prefix": config.denylist_prefix}
    if config.revocation_cache and config.revoke_tokens:
        options["cache_stream"] = config.events_stream
    return options


_Store = TypeVar("_Store", bound="_Shared")


class _Shared:
    """What both stores share: their construction, the backlog, the warning throttle and
    the mirror. A subclass names its redis-py flavour in ``_flavour``."""

    #: redis-py's client, connection pool and retry classes: sync or ``redis.asyncio``.
    _flavour: ClassVar[tuple[Any, Any, Any]]

    def __init__(
        self, client: Any, backlog: int, cache_stream: str | None, denylist_prefix: str
    ) -> None:
        self.client = client
        self._backlog = _Backlog(backlog)
        self._warn = _Throttle(WARN_EVERY)
        self._stream = cache_stream
        #: The revocation cache, or None when it is off.
        self.mirror = DenylistMirror(denylist_prefix) if cache_stream else None

    @classmethod
    def from_url(cls: type[_Store], url: str, *, timeout: float = 1.0, **kwargs: Any) -> _Store:
        """A store on a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``)
        with ``timeout`` seconds to connect and read and one retry (to replace a stale
        pooled connection). ``kwargs`` go to the store's constructor.

        :raises ValueError: from redis-py, for a URL it cannot parse."""
        client_class, _, retry_class = cls._flavour
        client = client_class.from_url(
            url, retry=retry_class(NoBackoff(), 1), **client_options(timeout)
        )
        return cls(client, **kwargs)

    @classmethod
    def from_config(cls: type[_Store], config: LogoutConfig, client: Any = None) -> _Store | None:
        """The store ``config`` asks for, on ``client`` (a redis-py client of the store's
        flavour) or on ``LOGOUT_REDIS_URL``; None when there is neither."""
        options = _options(config)
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
            logger.warning("denylist check failed: %s: %s", type(exc).__name__, exc)

    def _follower_failed(self, exc: Exception) -> None:
        if self.mirror is not None:
            self.mirror.live = False
        if self._warn():
            logger.warning("revocation cache offline: %s: %s", type(exc).__name__, exc)

    def _succeeded(self, ops: StoreOps, results: Sequence[Any]) -> StoreOutcome:
        if self.mirror is not None and ops.revoke is not None:
            self.mirror.add_key(ops.revoke[0])
        return _outcome(ops, results)


class RedisStore(_Shared):
    """Synchronous store on a redis-py client (thread-safe, as its connection pool).

    :param client: a ``redis.Redis``; its ``decode_responses`` setting does not matter.
    :param backlog: how many failed logouts to keep for later.
    :param cache_stream: the audit stream to follow for a :class:`DenylistMirror`, or
        None for no revocation cache.
    :param denylist_prefix: ``LOGOUT_DENYLIST_PREFIX`` (used with ``cache_stream``).
    """

    _flavour = (redis.Redis, redis.ConnectionPool, Retry)
    client: redis.Redis

    def __init__(
        self,
        client: redis.Redis,
        *,
        backlog: int = DEFAULT_BACKLOG,
        cache_stream: str | None = None,
        denylist_prefix: str = "logout:revoked:",
    ) -> None:
        super().__init__(client, backlog, cache_stream, denylist_prefix)
        self._follower: threading.Thread | None = None
        self._follower_id: int | None = None
        self._follower_pid = 0
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
        return self._succeeded(ops, results)

    def is_revoked(self, key: str) -> bool | None:
        """Whether denylist ``key`` exists: True, False, or None when Redis failed."""
        mirror = self.mirror
        if mirror is not None:
            if self._follower_pid != os.getpid():
                self._start_follower()
            if mirror.clears(key):
                return False
        try:
            return bool(self.client.exists(key))
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    def _start_follower(self) -> None:
        # Started on first use and again in a forked worker (threads do not survive fork).
        self._follower_pid = os.getpid()
        if self.mirror is None or self._stream is None:
            return
        self._follower = threading.Thread(
            target=self._follow,
            args=(self.mirror, self._stream, self._follower_pool()),
            name="logout-denylist",
            daemon=True,
        )
        self._follower.start()

    def _follow(self, mirror: DenylistMirror, stream: str, pool: redis.ConnectionPool) -> None:
        client = redis.Redis(connection_pool=pool)
        try:
            while not self._stop.is_set():
                try:
                    self._follower_id = _client_id(client)
                    last = _stream_end(client.xrevrange(stream, count=1))
                    members = mirror.members_of(client.scan_iter(match=mirror.glob(), count=1000))
                    # Revocations made during the SCAN are in the stream after `last`.
                    while reply := client.xread({stream: last}, count=1000):
                        last = mirror.absorb(reply, last, members)
                    mirror.replace(members)
                    reload_at = time.monotonic() + MIRROR_RELOAD
                    while not self._stop.is_set() and time.monotonic() < reload_at:
                        followed = client.xread({stream: last}, block=FOLLOW_BLOCK_MS, count=1000)
                        last = mirror.absorb(followed, last)
                except (redis.RedisError, OSError) as exc:
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
        denylist_prefix: str = "logout:revoked:",
    ) -> None:
        super().__init__(client, backlog, cache_stream, denylist_prefix)
        self._follower: asyncio.Task[None] | None = None

    async def execute(self, ops: StoreOps) -> StoreOutcome:
        """Make the writes of one logout in one transaction; never raises for Redis errors."""
        late = self._backlog.take()
        try:
            pipe = self.client.pipeline(transaction=True)
            _queue_all(pipe, ops, late)
            results = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return _failed(ops, exc, self._backlog, late)
        return self._succeeded(ops, results)

    async def is_revoked(self, key: str) -> bool | None:
        """Whether denylist ``key`` exists: True, False, or None when Redis failed."""
        mirror = self.mirror
        if mirror is not None:
            if (self._follower is None or self._follower.done()) and self._stream is not None:
                self._follower = asyncio.get_running_loop().create_task(
                    self._follow(mirror, self._stream)
                )
            if mirror.clears(key):
                return False
        try:
            return bool(await self.client.exists(key))
        except (redis.RedisError, OSError) as exc:
            self._check_failed(exc)
            return None

    async def _follow(self, mirror: DenylistMirror, stream: str) -> None:
        pool = self._follower_pool()
        client = redis.asyncio.Redis(connection_pool=pool)
        try:
            while True:
                try:
                    last = _stream_end(await client.xrevrange(stream, count=1))
                    members = mirror.members_of(
                        [key async for key in client.scan_iter(match=mirror.glob(), count=1000)]
                    )
                    # Revocations made during the SCAN are in the stream after `last`.
                    while reply := await client.xread({stream: last}, count=1000):
                        last = mirror.absorb(reply, last, members)
                    mirror.replace(members)
                    reload_at = time.monotonic() + MIRROR_RELOAD
                    while time.monotonic() < reload_at:
                        followed = await client.xread(
                            {stream: last}, block=FOLLOW_BLOCK_MS, count=1000
                        )
                        last = mirror.absorb(followed, last)
                except (redis.RedisError, OSError) as exc:
                    self._follower_failed(exc)
                    await asyncio.sleep(1.0)
        finally:
            mirror.live = False
            await client.aclose()
            await pool.disconnect()

    async def aclose(self) -> None:
        """Stop the mirror's follower and close the client's connections."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
        await self.client.aclose()
