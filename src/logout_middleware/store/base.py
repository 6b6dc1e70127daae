"""What the synchronous and the asynchronous store share: construction (``from_url``,
``from_config``, ``for_middleware``), the decoding twin, the start-up check, the write
flows over the backlog, the mirror, and what a failed one-round-trip request means.

A store class names its redis-py flavour in ``_flavour`` and carries the flows of
:mod:`.writes` and :mod:`.follower` out in its own I/O style.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from ..core.revocation import RevocationMirror
from ..topology import (
    REDIS_ERRORS,
    LazyClient,
    RedisTarget,
    make_client,
    redis_target,
    start_probe,
)
from .failures import WARN_EVERY, Warnings, failure
from .follower import Follower, RecordsOf, follower_client, no_records
from .writes import DEFAULT_BACKLOG, Backlog, Writes

if TYPE_CHECKING:
    from ..config import LogoutConfig

__all__ = ["DEFAULT_BACKLOG", "DOWN_FOR", "STOP_WAIT", "StoreBase", "forked", "generation"]

logger = logging.getLogger("logout_middleware")

#: How long :meth:`RedisStore.close` waits for the follower thread to end, seconds.
STOP_WAIT = 2.0
#: After a check or read timed out, how long the next ones answer "Redis failed" at once
#: instead of waiting for their own timeout, seconds: a Redis that does not answer (or a
#: TLS URL to a plain port) costs one request a second its timeouts, not every request.
DOWN_FOR = 1.0

#: Bumped in every child process right after ``fork``: a store compares it with the one
#: it saw, instead of calling ``os.getpid()`` on every request.
generation = [0]


def forked() -> None:
    """Mark this process a forked child (run by ``os.register_at_fork``): every store's
    next ``follow()`` starts its follower (and retrier) anew."""
    generation[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forked)


def _is_cluster(client: Any) -> bool:
    cluster_classes = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster, LazyClient)
    return isinstance(client, cluster_classes)


def _decodes(client: Any) -> bool:
    pool = getattr(client, "connection_pool", None)
    return bool(pool is not None and pool.connection_kwargs.get("decode_responses"))


_Store = TypeVar("_Store", bound="StoreBase")


class StoreBase:
    """The parts of :class:`~.RedisStore` and :class:`~.AsyncRedisStore` that do no I/O
    of their own (see the module docstring). Not for use alone."""

    #: redis-py's client, connection pool and retry classes: sync or ``redis.asyncio``.
    _flavour: ClassVar[tuple[Any, Any, Any]]

    def __init__(
        self,
        client: Any,
        backlog: int,
        cache_stream: str | None,
    ) -> None:
        self.client = client
        #: Where ``from_url`` built the client, and its timeout: the follower's own
        #: client is built the same way. None for a caller's client.
        self._target: RedisTarget | None = None
        self._built_timeout: float | None = None
        self._cluster = _is_cluster(client)
        #: What a call may raise for Redis trouble. redis-py's cluster clients close
        #: themselves to reinitialize after a failover, under other requests' feet
        #: (``AttributeError`` from a connection closed mid-command): on a cluster, any
        #: exception of the client's is taken for Redis trouble, never a 500.
        self._errors: tuple[type[BaseException], ...] = (
            (Exception,) if self._cluster else REDIS_ERRORS
        )
        # Session records are bytes (msgpack, pickle): read them on a twin that does not
        # decode when the caller's client decodes responses.
        self._raw = self._twin(client) if _decodes(client) else client
        self._backlog = Backlog(backlog)
        self._warn = Warnings(WARN_EVERY)
        self._writes = Writes(
            self._backlog,
            self._warn,
            self._errors,
            cluster=self._cluster,
            retry_soon=self._retry_soon,
        )
        self._down_until = 0.0  # see DOWN_FOR
        #: The thread of the start-up check (:meth:`check_at_start`), once started.
        self.startup_check: threading.Thread | None = None
        self._stream = cache_stream
        #: The mirror the follower keeps current (see :meth:`attach`), or None.
        self.mirror: RevocationMirror | None = None
        self._records_of: RecordsOf = no_records

    @classmethod
    def _twin(cls, client: Any) -> Any:
        client_class, pool_class, _ = cls._flavour
        pool = client.connection_pool
        kwargs = {**pool.connection_kwargs, "decode_responses": False}
        return client_class(
            connection_pool=pool_class(connection_class=pool.connection_class, **kwargs)
        )

    def attach(self, mirror: RevocationMirror, records_of: RecordsOf = no_records) -> None:
        """Keep ``mirror`` current by following the audit stream (when the store was made
        with a ``cache_stream``), deleting the records ``records_of`` names for sessions
        that the stream says ended."""
        self.mirror = mirror
        self._records_of = records_of

    @classmethod
    def from_url(
        cls: type[_Store],
        url: str,
        *,
        timeout: float = 1.0,
        cluster: bool = False,
        **kwargs: Any,
    ) -> _Store:
        """A store on a new client for ``url`` (any form :mod:`.topology` takes; a
        cluster node with ``cluster=True``) with ``timeout`` seconds to connect and read
        and one retry (to replace a stale pooled connection). ``kwargs`` go to the
        store's constructor.

        :raises ValueError: for a URL that cannot be parsed."""
        target = redis_target(url, cluster=cluster)
        asynchronous = cls._flavour[0] is redis.asyncio.Redis
        store = cls(make_client(target, asyncio=asynchronous, timeout=timeout), **kwargs)
        store._target, store._built_timeout = target, timeout
        return store

    @classmethod
    def from_config(
        cls: type[_Store], config: LogoutConfig, client: Any = None, *, follow: bool = True
    ) -> _Store | None:
        """The store ``config`` asks for, on ``client`` (a redis-py client of the store's
        flavour, a cluster client included) or on ``LOGOUT_REDIS_URL``; None when there
        is neither. With ``follow=False`` (a one-off revocation) it keeps no backlog and
        no mirror."""
        options: dict[str, Any] = {} if follow else {"backlog": 0}
        if follow and config.revocation_cache and config.events_stream:
            options["cache_stream"] = config.events_stream
        if client is not None:
            return cls(client, **options)
        if config.redis_url:
            return cls.from_url(
                config.redis_url,
                timeout=config.redis_timeout,
                cluster=config.redis_cluster,
                **options,
            )
        return None

    @classmethod
    def for_middleware(
        cls: type[_Store], config: LogoutConfig, client: Any = None
    ) -> _Store | None:
        """The store a middleware runs on (:meth:`from_config`), its start-up check
        started (:meth:`check_at_start`); None without Redis, which is logged once, as a
        warning: then a logout only expires cookies."""
        store = cls.from_config(config, client)
        if store is None:
            logger.warning(
                "LOGOUT_REDIS_URL is not set: logout will expire cookies only; server-side "
                "sessions are not ended, bearer tokens are not revoked, no audit entry is "
                "written"
            )
        else:
            store.check_at_start()
        return store

    def check_at_start(self) -> None:
        """Start the start-up check of a store built from a URL (:func:`.topology.probe`
        in a daemon thread, kept in :attr:`startup_check`): whether Redis answers, and
        whether it persists; logged once with the cause. A caller's client is not
        checked."""
        if self._target is not None:
            self.startup_check = start_probe(self._target, timeout=self._timeout())

    def _timeout(self) -> float:
        """The read timeout of the clients built here (from ``from_url``), else of the
        caller's client's pool, seconds (1.0 when it has none)."""
        if self._built_timeout is not None:
            return self._built_timeout
        found = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        return float(found or 1.0)

    def _follower_client(self) -> tuple[Any, int, bool]:
        """The follower's client, ``XREAD`` block and ownership (:func:`follower_client`)."""
        return follower_client(
            self.client,
            self._target,
            cluster=self._cluster,
            timeout=float(self._timeout()),
            flavour=self._flavour,
        )

    def _following(self) -> Follower | None:
        """What a follower would keep current, or None without a mirror or a stream."""
        if self.mirror is None or self._stream is None:
            return None
        return Follower(self.mirror, self._stream, self._cluster, self._records_of, self._warn)

    def _retry_soon(self) -> None:
        """Start the background retrier (a thread or a task) if it is not running."""
        raise NotImplementedError

    def _check_failed(self, exc: BaseException) -> None:
        """What a failed one-round-trip request means: logged (throttled); after a
        timeout, the next ones skip Redis for :data:`DOWN_FOR` seconds."""
        error = failure(exc)[1]
        if isinstance(exc, redis.TimeoutError):  # slow: refused connections fail fast
            self._down_until = time.monotonic() + DOWN_FOR
        self._warn("check", logging.WARNING, "revocation check failed: %s", error)

    def _skipping(self) -> bool:
        """True for :data:`DOWN_FOR` seconds after a check found Redis unreachable: the
        caller answers as if Redis failed, at once."""
        if not self._down_until:
            return False
        if time.monotonic() < self._down_until:
            return True
        self._down_until = 0.0
        return False
