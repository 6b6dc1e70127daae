"""The revocation follower: keeps a process's :class:`~.core.revocation.RevocationMirror`
current, written once as a flow of :mod:`.steps`.

It loads the revocation state (``SCAN`` of every primary on a cluster, ``MGET`` of the
not-before values), reads the audit stream from where the load started, makes that the
mirror, then follows the stream with a blocking ``XREAD``, reloading every
:data:`MIRROR_RELOAD` seconds. When the stream says a session ended whose id this
process knows, it deletes its record. A failure marks the mirror not live (every check
goes to Redis), is logged, and the follower reloads a second later: it never dies. It
works on a connection of its own (:func:`follower_client`), so that its blocking read
holds up no request. The synchronous store runs it in a thread, the asynchronous one in
a task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff

from ..core.revocation import MirrorSnapshot, RevocationMirror
from ..topology import RedisTarget, make_client
from .failures import Warnings, failure
from .steps import Collect, Send, Sleep, Steps

__all__ = [
    "CLUSTER_FOLLOW_BLOCK_MS",
    "FOLLOW_BLOCK_MS",
    "LOAD_BATCH",
    "MIRROR_RELOAD",
    "Follower",
    "RecordsOf",
    "follower_client",
    "no_records",
]

#: How long one blocking ``XREAD`` of the mirror's follower waits, milliseconds.
FOLLOW_BLOCK_MS = 5000
#: The same on a cluster, where ``CLIENT UNBLOCK`` cannot reach the follower's own
#: connection: closing the store waits for the follower's ``XREAD`` to end instead.
CLUSTER_FOLLOW_BLOCK_MS = 1000
#: How often a mirror reloads the whole state (dropping expired members), seconds.
MIRROR_RELOAD = 300.0
#: Keys per ``SCAN`` step and per ``MGET`` while loading the mirror.
LOAD_BATCH = 1000
#: How long the follower waits after a failure before it reloads, seconds.
FAILED_WAIT = 1.0

#: Given the members of ended sessions, the record keys this process knows for them.
RecordsOf = Callable[[Iterable[int]], tuple[str, ...]]


def no_records(_members: Iterable[int]) -> tuple[str, ...]:
    """The :data:`RecordsOf` of a store that knows no session records: none."""
    return ()


def _never() -> bool:
    return False


def _stream_end(reply: Any) -> Any:
    """The id of the newest entry from an ``XREVRANGE ... COUNT 1`` reply, or ``0-0``."""
    return reply[0][0] if reply else b"0-0"


@dataclass(frozen=True, slots=True)
class Follower:
    """What one follower keeps current, and how.

    :param mirror: the mirror to load and keep current.
    :param stream: the audit stream's key.
    :param cluster: whether the client is a cluster client.
    :param records_of: the record keys to delete for sessions the stream says ended.
    :param warn: the store's warning throttle (a failure is logged as ``follower``).
    """

    mirror: RevocationMirror
    stream: str
    cluster: bool
    records_of: RecordsOf
    warn: Warnings

    def follow(
        self,
        client: Any,
        block: int,
        *,
        stopped: Callable[[], bool] = _never,
        connected: Callable[[int], None] | None = None,
    ) -> Steps[None]:
        """The follower's life on ``client``: load, catch up, follow with ``XREAD``\\s
        blocking ``block`` milliseconds, reload every :data:`MIRROR_RELOAD` seconds; on a
        failure, mark the mirror not live, log, wait :data:`FAILED_WAIT` seconds and
        reload. Ends when ``stopped()`` (or, on asyncio, when cancelled), the mirror then
        marked not live.

        :param connected: called with the connection's ``CLIENT ID`` before each load
            (so that closing the store can ``CLIENT UNBLOCK`` it), where ``CLIENT`` is
            allowed; None not to ask.
        """
        mirror = self.mirror
        try:
            while not stopped():
                try:
                    if connected is not None:
                        found = yield from _client_id(client)
                        if found is not None:
                            connected(found)
                    last, snapshot = yield from self.load(client)
                    # Revocations made during the SCAN are in the stream after `last`.
                    while reply := (yield self._read(client, last)):
                        last, ended = mirror.absorb(reply, last, snapshot)
                        yield from self._forget(client, ended)
                    mirror.replace(snapshot)
                    reload_at = time.monotonic() + MIRROR_RELOAD
                    while not stopped() and time.monotonic() < reload_at:
                        followed = yield self._read(client, last, block)
                        last, ended = mirror.absorb(followed, last)
                        yield from self._forget(client, ended)
                except Exception as exc:  # a follower never dies: it reloads
                    if stopped():
                        break
                    mirror.live = False
                    self.warn(
                        "follower",
                        logging.WARNING,
                        "revocation cache offline: %s",
                        failure(exc)[1],
                    )
                    yield Sleep(FAILED_WAIT)
        finally:
            mirror.live = False

    def load(self, client: Any) -> Steps[tuple[Any, MirrorSnapshot]]:
        """Load the mirror's state into a new snapshot (``SCAN`` of every primary on a
        cluster, ``MGET`` by :data:`LOAD_BATCH`); returns the stream position it was
        loaded at (an entry id, ``0-0`` for an empty stream) and the snapshot."""
        last = _stream_end((yield Send(client.xrevrange, self.stream, count=1)))
        snapshot = MirrorSnapshot()
        keys = self.mirror.keys
        found: list[list[Any]] = []
        for pattern in (*keys.globs(), keys.oidc_sid_glob()):
            found.append((yield from self._scan(client, pattern)))
        get_many = client.mget_nonatomic if self.cluster else client.mget
        values: list[Any] = []
        for start in range(0, len(found[2]), LOAD_BATCH):
            values += yield Send(get_many, found[2][start : start + LOAD_BATCH])
        self.mirror.load(snapshot, found[0], found[1], zip(found[2], values, strict=True), found[3])
        return last, snapshot

    def _scan(self, client: Any, pattern: str) -> Steps[list[Any]]:
        """Every key matching ``pattern``: on a cluster by the client's ``scan_iter``
        (every primary); else by ``SCAN`` steps, no iterator (a follower cancelled
        mid-scan must leave no async generator holding its connection)."""
        if self.cluster:
            every: list[Any] = yield Collect(client.scan_iter(match=pattern, count=LOAD_BATCH))
            return every
        keys: list[Any] = []
        cursor = 0
        while True:
            cursor, batch = yield Send(client.scan, cursor, match=pattern, count=LOAD_BATCH)
            keys += batch
            if not cursor:
                return keys

    def _read(self, client: Any, last: Any, block: int | None = None) -> Send:
        """The ``XREAD`` of the stream after ``last`` (at most :data:`LOAD_BATCH`
        entries, waiting ``block`` milliseconds). On a cluster it names the node that
        holds the stream, which spares redis-py two ``COMMAND GETKEYS`` round trips per
        read (``XREAD`` has movable keys); after a resharding the ``MOVED`` error makes
        the follower reload, which asks again."""
        wait = ("BLOCK", block) if block is not None else ()
        args = ("XREAD", "COUNT", LOAD_BATCH, *wait, "STREAMS", self.stream, last)
        if not self.cluster:
            return Send(client.execute_command, *args)
        return Send(
            client.execute_command, *args, target_nodes=client.get_node_from_key(self.stream)
        )

    def _forget(self, client: Any, ended: list[int]) -> Steps[None]:
        """Delete the records this process knows of the sessions in ``ended``."""
        records = self.records_of(ended) if ended else ()
        if records:
            yield Send(client.delete, *records)


def _client_id(client: Any) -> Steps[int | None]:
    """The connection's ``CLIENT ID``, or None where the ACL does not allow ``CLIENT``."""
    try:
        return int((yield Send(client.client_id)))
    except redis.ResponseError:
        return None


def follower_client(
    client: Any,
    target: RedisTarget | None,
    *,
    cluster: bool,
    timeout: float,
    flavour: tuple[Any, Any, Any],
) -> tuple[Any, int, bool]:
    """A client for the follower of a store on ``client``, the ``XREAD`` block it may
    use (milliseconds), and whether the follower owns (and closes) the client.

    Its read timeout is longer than the block, and it never retries (the follower's own
    loop reconnects, and a closed store's follower must stop at the first error). One
    Redis: a one-connection pool with the client's settings. Sentinel: a client of its
    own on the current primary. Cluster: a client of its own (or, for a caller's cluster
    client, that client), blocking for at most :data:`CLUSTER_FOLLOW_BLOCK_MS`.

    :param target: where ``from_url`` built the store's client, or None for a caller's.
    :param timeout: the store's timeout, seconds.
    :param flavour: redis-py's client, connection pool and retry classes (sync or
        ``redis.asyncio``).
    """
    block = CLUSTER_FOLLOW_BLOCK_MS if cluster else FOLLOW_BLOCK_MS
    if target is not None and target.kind != "single":
        built = make_client(
            target,
            asyncio=flavour[0] is redis.asyncio.Redis,
            timeout=timeout,
            read_timeout=block / 1000 + timeout,
            retries=0,
            max_connections=None if cluster else 1,
        )
        return built, block, True
    if cluster:
        return client, block, False
    client_class, pool_class, retry_class = flavour
    pool = client.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_timeout"] = block / 1000 + timeout
    kwargs["retry"] = retry_class(NoBackoff(), 0)
    follower_pool = pool_class(connection_class=pool.connection_class, max_connections=1, **kwargs)
    return client_class(connection_pool=follower_pool), block, True
