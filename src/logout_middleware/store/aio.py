"""The asynchronous store: ``redis.asyncio``, tasks. It carries the shared flows out with
:func:`.steps.arun` and awaits the one-round-trip queries; what is its own is how its
follower and retrier tasks start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TypeVar

import redis.asyncio
import redis.asyncio.cluster
from redis.asyncio.retry import Retry as AsyncRetry

from ..core.ops import Check, Checked, Claim, Delete, Index, Read, Reading, StoreOps, StoreOutcome
from ..topology import aclose_client
from .base import STOP_WAIT, StoreBase, generation
from .follower import Follower
from .queries import CHECK, CLAIM, DELETE, INDEX, READ, Query
from .steps import arun
from .writes import DEFAULT_BACKLOG

__all__ = ["AsyncRedisStore"]

_R = TypeVar("_R")
_A = TypeVar("_A")


class AsyncRedisStore(StoreBase):
    """Asynchronous store on a ``redis.asyncio`` client, for the ASGI middleware.

    Parameters as :class:`~.RedisStore` (with ``redis.asyncio`` clients); the mirror's
    follower and the retrier are tasks on the event loop of the first check and the
    first failed logout.
    """

    _flavour = (redis.asyncio.Redis, redis.asyncio.ConnectionPool, AsyncRetry)
    client: redis.asyncio.Redis

    def __init__(
        self,
        client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster,
        *,
        backlog: int = DEFAULT_BACKLOG,
        cache_stream: str | None = None,
    ) -> None:
        super().__init__(client, backlog, cache_stream)
        self._follower: asyncio.Task[None] | None = None
        self._follower_pid = -1  # the fork generation the follower was started in
        self._retrier: asyncio.Task[None] | None = None

    async def execute(self, ops: StoreOps) -> StoreOutcome:
        """:meth:`RedisStore.execute <.RedisStore.execute>` on ``redis.asyncio``.
        Cancelled midway (a client that went away, a server shutting down), it puts the
        backlog it carried back, with this logout, for the retrier: they may or may not
        have been written, and every write is idempotent."""
        return await arun(self._writes.execute(self.client, ops))

    async def retry(self) -> bool:
        """Carry out the failed logouts now; True when none is left. Cancelled midway,
        it puts them back."""
        return await arun(self._writes.retry(self.client))

    def _retry_soon(self) -> None:
        retrier = self._retrier
        if retrier is not None and not retrier.done():
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next logout retries
            self._retrier = asyncio.get_running_loop().create_task(self._retrying())

    async def _retrying(self) -> None:
        await arun(self._writes.retrying(lambda: self.client))

    async def _ask(self, query: Query[_R, _A], request: _R) -> _A | None:
        """``query``'s answer to ``request``, or None when Redis failed (logged)."""
        if self._down_until and self._skipping():
            return None
        try:
            replies = await query.send(self._raw if query.raw else self.client, request)
            return query.parse(request, replies)
        except self._errors as exc:
            self._check_failed(exc)
            return None

    async def read(self, request: Read) -> Reading | None:
        """The replies to ``request`` in one pipeline, or None when Redis failed."""
        return await self._ask(READ, request)

    async def check(self, request: Check) -> Checked | None:
        """Redis's answers to ``request`` in one pipeline, or None when it failed."""
        return await self._ask(CHECK, request)

    async def claim(self, request: Claim) -> bool | None:
        """``SET NX EX``: True when the key was new, False when it existed, None on failure."""
        return await self._ask(CLAIM, request)

    async def index(self, request: Index) -> None:
        """Index a session under its subject; failures are logged."""
        await self._ask(INDEX, request)

    async def delete(self, request: Delete) -> None:
        """Delete re-created records; failures are logged."""
        await self._ask(DELETE, request)

    def follow(self) -> None:
        """Start the mirror's follower task on the running loop if it is not running
        (also after a ``fork``, whose child has no task: its mirror is marked not live
        first). Cheap: the adapter calls it on every request it checks.

        :raises RuntimeError: when no event loop is running."""
        if self._follower_pid == generation[0]:
            if self._follower is not None and not self._follower.done():
                return
        else:
            self._follower_pid = generation[0]
            if self.mirror is not None:
                self.mirror.live = False
            if self._backlog.pending():
                self._retrier = None  # a forked child inherits the backlog, not the task
                self._retry_soon()
        follower = self._following()
        if follower is not None:
            self._follower = asyncio.get_running_loop().create_task(self._follow(follower))

    async def _follow(self, follower: Follower) -> None:
        client, block, owned = self._follower_client()
        try:
            await arun(follower.follow(client, block))
        finally:
            if owned:
                await aclose_client(client)

    async def aclose(self) -> None:
        """Stop the mirror's follower and the retrier, and close the client's connections.

        The follower is cancelled until it ends, for at most :data:`.base.STOP_WAIT`
        seconds (redis-py may swallow one cancellation while it drops a connection
        mid-reply)."""
        for task in (self._follower, self._retrier):
            if task is None:
                continue
            deadline = time.monotonic() + STOP_WAIT
            while not task.done() and time.monotonic() < deadline:
                task.cancel()
                await asyncio.wait({task}, timeout=0.05)
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: it is logged by the loop otherwise
        await aclose_client(self.client, own_pool=False)
        if self._raw is not self.client:
            await self._raw.aclose()
