"""The synchronous store: redis-py, threads. It carries the shared flows out with
:func:`.steps.run` and the one-round-trip queries with plain calls; what is its own is
how its follower and retrier threads start and stop."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, TypeVar

import redis
import redis.cluster
from redis.retry import Retry

from ..core.ops import Check, Checked, Claim, Delete, Index, Read, Reading, StoreOps, StoreOutcome
from ..topology import REDIS_ERRORS, close_client
from .base import STOP_WAIT, StoreBase, generation
from .follower import Follower
from .queries import CHECK, CLAIM, DELETE, INDEX, READ, Query
from .steps import run
from .writes import DEFAULT_BACKLOG

__all__ = ["RedisStore"]

_R = TypeVar("_R")
_A = TypeVar("_A")


class RedisStore(StoreBase):
    """Synchronous store on a redis-py client (thread-safe, as its connection pool).

    :param client: a ``redis.Redis`` (a Sentinel's ``master_for`` client is one) or a
        ``redis.cluster.RedisCluster``; a ``redis.Redis``'s ``decode_responses`` setting
        does not matter, a cluster client's must be off.
    :param backlog: how many failed logouts to keep for later.
    :param cache_stream: the audit stream to follow into the attached mirror, or None
        for no revocation cache.
    """

    _flavour = (redis.Redis, redis.ConnectionPool, Retry)
    client: redis.Redis

    def __init__(
        self,
        client: redis.Redis | redis.cluster.RedisCluster,
        *,
        backlog: int = DEFAULT_BACKLOG,
        cache_stream: str | None = None,
    ) -> None:
        super().__init__(client, backlog, cache_stream)
        self._follower: threading.Thread | None = None
        #: Each follower's connection (``CLIENT ID``), current or earlier (one started
        #: before a ``fork`` in this process's memory): all are woken on close.
        self._follower_ids: dict[threading.Thread, int] = {}
        self._follower_pid = -1  # the fork generation the follower was started in
        self._stop = threading.Event()
        self._retrier: threading.Thread | None = None

    def execute(self, ops: StoreOps) -> StoreOutcome:
        """Make the writes of one logout, with any backlog: one transaction on one Redis,
        two pipelines on a cluster (:func:`.writes.phases`); never raises for Redis
        errors (the outcome's status is ``failed``, and a failure a retry can cure is
        kept in the backlog)."""
        return run(self._writes.execute(self.client, ops), self._stop)

    def retry(self) -> bool:
        """Carry out the failed logouts now; True when none is left. The background
        retrier does it every :data:`.writes.RETRY_EVERY` seconds."""
        return run(self._writes.retry(self.client), self._stop)

    def _retry_soon(self) -> None:
        retrier = self._retrier
        if retrier is not None and retrier.is_alive():  # never true in a forked child
            return
        self._retrier = threading.Thread(target=self._retrying, name="logout-retry", daemon=True)
        self._retrier.start()

    def _retrying(self) -> None:
        run(self._writes.retrying(lambda: self.client), self._stop)

    def _ask(self, query: Query[_R, _A], request: _R) -> _A | None:
        """``query``'s answer to ``request``, or None when Redis failed (logged)."""
        if self._down_until and self._skipping():
            return None
        try:
            return query.parse(
                request, query.send(self._raw if query.raw else self.client, request)
            )
        except self._errors as exc:
            self._check_failed(exc)
            return None

    def read(self, request: Read) -> Reading | None:
        """The replies to ``request`` in one pipeline, or None when Redis failed."""
        return self._ask(READ, request)

    def check(self, request: Check) -> Checked | None:
        """Redis's answers to ``request`` in one pipeline, or None when it failed."""
        return self._ask(CHECK, request)

    def claim(self, request: Claim) -> bool | None:
        """``SET NX EX``: True when the key was new, False when it existed, None on failure."""
        return self._ask(CLAIM, request)

    def index(self, request: Index) -> None:
        """Index a session under its subject; failures are logged."""
        self._ask(INDEX, request)

    def delete(self, request: Delete) -> None:
        """Delete re-created records; failures are logged."""
        self._ask(DELETE, request)

    def follow(self) -> None:
        """Start the mirror's follower if it is not running in this process. Threads do
        not survive ``fork``: a forked worker's mirror is marked not live (what it holds
        may be stale) and the worker starts its own follower. Cheap: adapters call it on
        every request they check."""
        if self._follower_pid == generation[0]:
            return
        self._follower_pid = generation[0]
        if self.mirror is not None:
            self.mirror.live = False
        if self._backlog.pending():
            self._retry_soon()  # a forked child inherits the backlog, not the thread
        follower = self._following()
        if follower is None:
            return
        self._follower = threading.Thread(
            target=self._follow,
            args=(follower, *self._follower_client()),
            name="logout-revocations",
            daemon=True,
        )
        self._follower.start()

    def _follow(self, follower: Follower, client: Any, block: int, owned: bool) -> None:
        connected = None if self._cluster else self._connected
        try:
            run(
                follower.follow(client, block, stopped=self._stop.is_set, connected=connected),
                self._stop,
            )
        finally:
            if owned:
                close_client(client)

    def _connected(self, client_id: int) -> None:
        self._follower_ids[threading.current_thread()] = client_id

    def close(self) -> None:
        """Stop the mirror's follower and the retrier, and close every connection, the
        follower's too.

        ``CLIENT UNBLOCK`` wakes the follower out of its blocking ``XREAD``, so that it
        ends (closing its connection) at once; this waits for it at most
        :data:`.base.STOP_WAIT` seconds. Where ``CLIENT`` is not allowed, the follower
        ends within one ``XREAD`` block (:data:`.follower.FOLLOW_BLOCK_MS`) instead; on a
        cluster within :data:`.follower.CLUSTER_FOLLOW_BLOCK_MS`."""
        self._stop.set()
        followers = {*self._follower_ids, *([self._follower] if self._follower else [])}
        followers.discard(threading.current_thread())
        deadline = time.monotonic() + STOP_WAIT
        while any(f.is_alive() for f in followers) and time.monotonic() < deadline:
            for follower, client_id in list(self._follower_ids.items()):
                if follower.is_alive():
                    with contextlib.suppress(*REDIS_ERRORS):
                        self.client.client_unblock(client_id)
            for follower in followers:
                follower.join(0.05)
        close_client(self.client, own_pool=False)
        if self._raw is not self.client:
            self._raw.close()
