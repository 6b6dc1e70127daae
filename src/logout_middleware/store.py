"""Redis stores: carry out a logout's writes in one round trip, and read the denylist.

:class:`RedisStore` (redis-py, for WSGI) and :class:`AsyncRedisStore` (``redis.asyncio``,
for ASGI) have the same two methods, as the ``limits`` and ``starsessions`` stores do:

* ``execute(ops)``: one ``MULTI``/``EXEC`` transaction, sent as one pipeline: ``DEL``
  of the session keys, ``SET <denylist key> 1 EX <ttl>`` for the token, ``XADD`` of the
  audit entry. Either all of them happen or none does.
* ``is_revoked(key)``: one ``EXISTS``.

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

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from .core import StoreOps, StoreOutcome

__all__ = ["AsyncRedisStore", "RedisStore"]

logger = logging.getLogger("logout_middleware")

#: How many unwritten audit entries are kept while Redis is unreachable.
DEFAULT_BACKLOG = 1000
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
    late.append((ops, time.time()))
    backlog.put(late)
    error = f"{type(exc).__name__}: {exc}"[:200]
    logger.warning("logout: Redis writes failed (%s); will retry with the next logout", error)
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


class RedisStore:
    """Synchronous store on a redis-py client (thread-safe, as its connection pool).

    :param client: a ``redis.Redis``; its ``decode_responses`` setting does not matter.
    :param backlog: how many audit entries of failed logouts to keep for later.
    """

    def __init__(self, client: redis.Redis, *, backlog: int = DEFAULT_BACKLOG) -> None:
        self.client = client
        self._backlog = _Backlog(backlog)
        self._warn = _Throttle(WARN_EVERY)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, **kwargs: Any) -> RedisStore:
        """A store on a new client for ``url`` (``redis://``, ``rediss://``, ``unix://``)
        with ``timeout`` seconds to connect and read. ``kwargs`` go to :class:`RedisStore`."""
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **client_options(timeout))
        return cls(client, **kwargs)

    def execute(self, ops: StoreOps) -> StoreOutcome:
        """Make the writes of one logout in one transaction; never raises for Redis errors."""
        late = self._backlog.take()
        try:
            pipe = self.client.pipeline(transaction=True)
            _queue_all(pipe, ops, late)
            results = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return _failed(ops, exc, self._backlog, late)
        return _outcome(ops, results)

    def is_revoked(self, key: str) -> bool | None:
        """Whether denylist ``key`` exists: True, False, or None when Redis failed."""
        try:
            return bool(self.client.exists(key))
        except (redis.RedisError, OSError) as exc:
            if self._warn():
                logger.warning("denylist check failed: %s: %s", type(exc).__name__, exc)
            return None

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class AsyncRedisStore:
    """Asynchronous store on a ``redis.asyncio`` client, for the ASGI middleware.

    :param client: a ``redis.asyncio.Redis``.
    :param backlog: how many audit entries of failed logouts to keep for later.
    """

    def __init__(self, client: redis.asyncio.Redis, *, backlog: int = DEFAULT_BACKLOG) -> None:
        self.client = client
        self._backlog = _Backlog(backlog)
        self._warn = _Throttle(WARN_EVERY)

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 1.0, **kwargs: Any) -> AsyncRedisStore:
        """A store on a new client for ``url``, as :meth:`RedisStore.from_url`."""
        client = redis.asyncio.Redis.from_url(
            url, retry=AsyncRetry(NoBackoff(), 1), **client_options(timeout)
        )
        return cls(client, **kwargs)

    async def execute(self, ops: StoreOps) -> StoreOutcome:
        """Make the writes of one logout in one transaction; never raises for Redis errors."""
        late = self._backlog.take()
        try:
            pipe = self.client.pipeline(transaction=True)
            _queue_all(pipe, ops, late)
            results = await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            return _failed(ops, exc, self._backlog, late)
        return _outcome(ops, results)

    async def is_revoked(self, key: str) -> bool | None:
        """Whether denylist ``key`` exists: True, False, or None when Redis failed."""
        try:
            return bool(await self.client.exists(key))
        except (redis.RedisError, OSError) as exc:
            if self._warn():
                logger.warning("denylist check failed: %s: %s", type(exc).__name__, exc)
            return None

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()
