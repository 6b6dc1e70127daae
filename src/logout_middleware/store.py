"""Redis stores: carry out what the core asks for, each request in one round trip.

:class:`RedisStore` (redis-py, for WSGI) and :class:`AsyncRedisStore` (``redis.asyncio``,
for ASGI) have the same methods, as the ``limits`` and ``starsessions`` stores do, and
:func:`drive` / :func:`adrive` run a core flow on them. Each works on one Redis, a
Sentinel-managed primary or a Redis Cluster (:mod:`.topology`).

* ``execute(ops)``: the writes of one logout, sent as one pipeline: ``DEL`` of the
  session records, ``SET ... EX`` of the revoked token, the session tombstones and a
  subject's not-before, ``ZREM`` from the session index, and the audit entry.

  - On one Redis (and on a Sentinel's primary) the pipeline is one ``MULTI``/``EXEC``
    transaction: no other client's command runs between them, and if the connection
    fails none of them runs. Redis has no rollback: a command it refuses
    (``WRONGTYPE``) does not undo the others.
  - On a cluster, keys live on different shards, and a transaction cannot span them.
    A logout is two pipelines: its key writes, one batch per shard the logout touches,
    all written before any reply is read (in parallel); then, once every one of them
    succeeded, its audit entry, on the stream's shard. Atomic: each key's write, and the
    audit entry together with its write-once marker (same hash slot). Not atomic: the
    writes to different keys; if a shard fails midway, some are made, no entry is
    appended, and the logout is reported failed and retried whole. The entry comes last
    so that it never announces a revocation whose keys are not written yet (a process
    whose revocation cache reloaded in between would otherwise miss it until its next
    reload: the retried entry is not appended again).

  Every write is idempotent, so a retry after a partial failure, or after a transaction
  that timed out but ran, has the same effect as one: ``DEL``, ``SET`` and ``ZREM`` are,
  and the audit entry is appended by a script that first claims its id with
  ``SET NX`` (kept :data:`WRITTEN_TTL` seconds): an entry id is written once.
* ``read``, ``check``, ``index``, ``delete``: one pipeline each (see :mod:`.core.ops`).

With ``LOGOUT_REVOCATION_CACHE`` (the default) each process keeps the core's
:class:`~.core.revocation.RevocationMirror` current: loaded by ``SCAN`` (of every primary,
on a cluster) and followed through the audit stream with a blocking ``XREAD``, on a
connection of its own. While the follower is not connected, every check goes to Redis.
The price: another process's revocation is seen once the stream delivers it (well under a
millisecond on a local network), not at the instant of its write. When the stream says a
session ended whose id this process knows, the follower deletes its record: that is how
logging out everywhere removes the records of sessions the logging-out process never
saw, with no session id stored.

Nothing here raises for Redis trouble: a failed logout is reported as a
:class:`~.core.ops.StoreOutcome` with status ``failed``, a failed check or read as None,
each logged, at most once every 10 seconds per cause (with a count of the others).
Failed logouts are kept in memory (up to ``backlog`` of them) and retried in the
background every second until Redis takes them, and with the next logout; their audit
entries are marked ``store=retried``. The backlog does not survive a restart of the
process: it holds the keys of the sessions to delete, which contain raw session ids, and
those are never written to disk. What a restart can lose is bounded by the logouts that
were answered ``503`` (the client was told) in the outage, at most ``backlog`` of them.

Pass your own client to share a connection pool, or use ``from_url``; clients built here
have short timeouts and one retry, so a dead Redis answers in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
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
from .topology import (
    REDIS_ERRORS,
    LazyClient,
    RedisTarget,
    aclose_client,
    close_client,
    hash_tag,
    make_client,
    redis_target,
    start_probe,
)

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
#: The same on a cluster, where ``CLIENT UNBLOCK`` cannot reach the follower's own
#: connection: closing the store waits for the follower's ``XREAD`` to end instead.
CLUSTER_FOLLOW_BLOCK_MS = 1000
#: After a check or read timed out, how long the next ones answer "Redis failed" at once
#: instead of waiting for their own timeout, seconds: a Redis that does not answer (or a
#: TLS URL to a plain port) costs one request a second its timeouts, not every request.
DOWN_FOR = 1.0
#: How often failed logouts are retried in the background, seconds.
RETRY_EVERY = 1.0
#: How long an audit entry's write-once marker is kept, seconds: a retry within that
#: time (a day) never appends the same entry twice. Logouts waiting longer in the
#: backlog are dropped by the retrier, with an error, rather than risk it.
WRITTEN_TTL = 86400
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


#: Those a retry can cure: Redis unreachable or loading, a failover or resharding under
#: way (a Sentinel's old primary now a replica, a cluster slot moving or uncovered).
TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    OSError,
    ClusterError,
    TryAgainError,
    AskError,
    ReadOnlyError,
    SlotNotCoveredError,
    OutOfMemoryError,
)
#: Replies Redis gives while a condition lasts that clears by itself (a failed
#: snapshot, too few replicas, a primary down, a script running, a dataset loading).
TRANSIENT_REPLIES = ("MISCONF", "NOREPLICAS", "MASTERDOWN", "BUSY", "LOADING", "TRYAGAIN")


def _is_cluster(client: Any) -> bool:
    cluster_classes = (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster, LazyClient)
    return isinstance(client, cluster_classes)


#: Appends an audit entry once: claims the entry's id (``KEYS[2]``, in the stream's hash
#: slot) with ``SET NX EX ARGV[1]``, then ``XADD``\s the fields ``ARGV[3:]`` to the stream
#: ``KEYS[1]``, capped at about ``ARGV[2]`` entries ("" for no cap). Returns the new
#: entry's id, or nil when the id was written before.
APPEND_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return false end
if ARGV[2] == '' then return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3)) end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
"""


def written_key(prefix: str, stream: str, entry_id: str) -> str:
    """The write-once marker of audit entry ``entry_id`` in ``stream``:
    ``<prefix>{<tag>}:<entry id>``, where the tag is the stream's hash tag when it has
    one, else its whole name, so that the script that checks the marker and appends the
    entry touches one slot of a cluster. (A stream name with a ``}`` outside a hash tag
    is refused by the configuration.)"""
    tag = hash_tag(stream)
    return f"{prefix}{{{stream if tag is None else tag}}}:{entry_id}"


class _Backlog:
    """Logouts whose writes failed, oldest first, bounded; thread-safe."""

    def __init__(self, size: int) -> None:
        self._entries: deque[_Late] = deque()
        #: How many failed logouts it keeps; 0 keeps none (a one-off revocation).
        self.size = size
        self._lock = threading.Lock()
        self.dropped = 0

    def take(self) -> list[_Late]:
        """Every waiting logout, oldest first, except those older than the audit entries'
        write-once markers (:data:`WRITTEN_TTL`, less a minute): they are dropped, with
        an error, since their retry could append an entry twice."""
        with self._lock:
            taken = list(self._entries)
            self._entries.clear()
        oldest = time.time() - (WRITTEN_TTL - 60)
        fresh = [entry for entry in taken if entry[1] > oldest]
        if len(fresh) < len(taken):
            self.dropped += len(taken) - len(fresh)
            logger.error(
                "logout backlog: %d failed logouts older than %d s dropped",
                len(taken) - len(fresh),
                WRITTEN_TTL - 60,
            )
        return fresh

    def pending(self) -> int:
        """How many failed logouts wait for a retry."""
        return len(self._entries)

    def put(self, entries: Sequence[_Late]) -> int:
        """Put ``entries`` back, oldest first; how many of the oldest had to be dropped
        to keep the bound (``dropped`` counts them all)."""
        dropped = 0
        with self._lock:
            self._entries.extendleft(reversed(entries))
            while len(self._entries) > self.size:
                self._entries.pop()
                dropped += 1
            self.dropped += dropped
        return dropped


#: One logout to write: its ops, the audit entries' ``store`` status, and seconds since
#: it was asked for (a late revocation ends when it would have: its TTLs are shortened).
_Write = tuple[StoreOps, str, float]


def _writes(ops: StoreOps | None, late: Sequence[_Late]) -> list[_Write]:
    """This logout first (its ``DEL`` counts are the first replies), then the backlog."""
    now = time.time()
    first: list[_Write] = [(ops, "ok", 0.0)] if ops is not None else []
    return first + [(old, "retried", now - failed_at) for old, failed_at in late]


def _queue_keys(pipe: Any, ops: StoreOps, elapsed: float) -> None:
    """Queue a logout's key writes, one key per command (as a cluster pipeline needs)."""
    for key in ops.delete:
        pipe.delete(key)
    for key, value, ttl in ops.sets:
        remaining = int(ttl - elapsed)
        if remaining > 0:
            pipe.set(key, value, ex=remaining)
    for index, member in ops.unindex:
        pipe.zrem(index, member)
    for key in ops.discard:
        pipe.delete(key)


def _queue_entries(pipe: Any, ops: StoreOps, status: str) -> None:
    """Queue a logout's audit entries, each appended once (:data:`APPEND_ONCE`)."""
    if ops.stream is None:
        return
    cap = "" if ops.maxlen is None else str(ops.maxlen)
    for entry in (ops.entry, *ops.extra_entries):
        fields = {**dict(entry), "store": status}
        flat = [part for pair in fields.items() for part in pair]
        marker = written_key(ops.written_prefix, ops.stream, fields.get("id", ""))
        pipe.execute_command("EVAL", APPEND_ONCE, 2, ops.stream, marker, WRITTEN_TTL, cap, *flat)


def _phases(writes: Sequence[_Write], cluster: bool) -> list[Callable[[Any], None]]:
    """The pipelines that carry out ``writes``, in order.

    One Redis: one transaction, each logout's key writes then its audit entries. A
    cluster: two pipelines, every key write (one batch per shard, in parallel), then,
    only once all of them succeeded, the audit entries (on the stream's shard). An entry
    thus never announces a revocation whose keys are not written yet: a process whose
    revocation cache reloads in between would miss it for good (the retried entry is
    not appended again).
    """

    def keys(pipe: Any) -> None:
        for ops, _status, elapsed in writes:
            _queue_keys(pipe, ops, elapsed)

    def entries(pipe: Any) -> None:
        for ops, status, _elapsed in writes:
            _queue_entries(pipe, ops, status)

    def both(pipe: Any) -> None:
        for ops, status, elapsed in writes:
            _queue_keys(pipe, ops, elapsed)
            _queue_entries(pipe, ops, status)

    return [keys, entries] if cluster else [both]


def _deleted(ops: StoreOps, results: Sequence[Any]) -> int:
    return sum(int(n) for n in results[: len(ops.delete)])


#: redis-py names a failed pipeline command with its arguments, keys included; a key
#: may hold a raw session id or token (``session:<id>``), so they are cut out.
_COMMAND_ARGS = re.compile(r"(Command # \d+) \(.*?\)( of pipeline)", re.DOTALL)


def _reply_of(exc: BaseException) -> str:
    """Redis's own reply in an error (after redis-py's "... of pipeline caused error: ")."""
    text = str(exc)
    _, found, reply = text.partition("caused error: ")
    return (reply if found else text).lstrip()


def _failure(exc: BaseException) -> tuple[bool, str]:
    """Whether a retry can cure ``exc`` (Redis unreachable, a failover under way, or an
    error from inside a cluster client that is reinitializing: anything that is not a
    reply Redis refused), and the error as reported: type and message, at most 200
    characters, with the failed command's arguments removed (they may name a key
    holding a raw secret)."""
    message = _COMMAND_ARGS.sub(r"\1\2", str(exc))
    transient = (
        isinstance(exc, TRANSIENT)
        or not isinstance(exc, (redis.RedisError, RedisClusterException))
        or (isinstance(exc, redis.ResponseError) and _reply_of(exc).startswith(TRANSIENT_REPLIES))
    )
    return transient, f"{type(exc).__name__}: {message}"[:200]


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


class _Warnings:
    """Logs each cause at most once every ``every`` seconds, saying how many times it
    recurred in between; thread-safe enough (a lost count is harmless)."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._next: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def __call__(self, cause: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next.get(cause, 0.0):
            self._quiet[cause] = self._quiet.get(cause, 0) + 1
            return
        self._next[cause] = now + self._every
        quiet = self._quiet.pop(cause, 0)
        if quiet:
            message += f" ({quiet} more like it in the last {self._every:g} s)"
        logger.log(level, message, *args)


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
        self._backlog = _Backlog(backlog)
        self._warn = _Warnings(WARN_EVERY)
        self._down_until = 0.0  # see DOWN_FOR
        #: The thread of the start-up check (:meth:`check_at_start`), once started.
        self.startup_check: threading.Thread | None = None
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

    def _follower_client(self) -> tuple[Any, int, bool]:
        """A client for the follower, the ``XREAD`` block it may use (milliseconds), and
        whether the follower owns (and closes) the client. Its read timeout is longer
        than the block, and it never retries (the follower's own loop reconnects, and a
        closed store's follower must stop at the first error). One Redis: a
        one-connection pool with the client's settings. Sentinel: a client of its own on
        the current primary. Cluster: a client of its own (or, for a caller's cluster
        client, that client), blocking for at most :data:`CLUSTER_FOLLOW_BLOCK_MS`."""
        block = CLUSTER_FOLLOW_BLOCK_MS if self._cluster else FOLLOW_BLOCK_MS
        target = self._target
        if target is not None and target.kind != "single":
            timeout = float(self._timeout())
            client = make_client(
                target,
                asyncio=self._flavour[0] is redis.asyncio.Redis,
                timeout=timeout,
                read_timeout=block / 1000 + timeout,
                retries=0,
                max_connections=None if self._cluster else 1,
            )
            return client, block, True
        if self._cluster:
            return self.client, block, False
        client_class, pool_class, retry_class = self._flavour
        pool = self.client.connection_pool
        kwargs = dict(pool.connection_kwargs)
        kwargs["socket_timeout"] = block / 1000 + float(self._timeout())
        kwargs["retry"] = retry_class(NoBackoff(), 0)
        follower_pool = pool_class(
            connection_class=pool.connection_class, max_connections=1, **kwargs
        )
        return client_class(connection_pool=follower_pool), block, True

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

    def _failed(self, ops: StoreOps, exc: BaseException, late: list[_Late]) -> StoreOutcome:
        """Report a failed logout. A failure a retry can cure puts it (and the backlog it
        carried) back in the backlog and schedules the background retry; a command Redis
        refused (``WRONGTYPE``, when the stream key holds another type) would fail
        again and is not kept."""
        transient, error = _failure(exc)
        if transient and self._backlog.size:
            late.append((ops, time.time()))
        self._put_back(late)
        if transient:
            retry = "; retried in the background" if self._backlog.size else ""
            self._warn("logout", logging.WARNING, "logout: Redis unreachable (%s)%s", error, retry)
            self._retry_soon()
        else:
            self._warn("refused", logging.ERROR, "logout: Redis refused the writes (%s)", error)
        return StoreOutcome("failed", error=error)

    def _retried(self, late: list[_Late], exc: BaseException | None) -> bool:
        """After a background retry of ``late``: True when nothing is left to retry."""
        if exc is None:
            logger.info("logout: %d failed logouts carried out on retry", len(late))
            return not self._backlog.pending()
        transient, error = _failure(exc)
        self._put_back(late if transient else [])
        if not transient:
            self._warn("refused", logging.ERROR, "logout: Redis refused a retry (%s)", error)
        return not self._backlog.pending()

    def _put_back(self, late: Sequence[_Late]) -> None:
        """Return logouts to the backlog, saying (throttled) when it overflowed."""
        dropped = self._backlog.put(late)
        if dropped:
            self._warn(
                "backlog",
                logging.ERROR,
                "logout backlog full: %d failed logouts dropped (%d in all)",
                dropped,
                self._backlog.dropped,
            )

    def _retry_soon(self) -> None:
        raise NotImplementedError

    def _xread(
        self, client: Any, stream: str, last: Any, block: int | None = None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The follower's ``XREAD`` of ``stream`` after ``last`` (at most
        :data:`LOAD_BATCH` entries, waiting ``block`` milliseconds): the arguments of
        ``execute_command``. On a cluster it names the node that holds the stream, which
        spares redis-py two ``COMMAND GETKEYS`` round trips per read (``XREAD`` has
        movable keys); after a resharding the ``MOVED`` error makes the follower reload,
        which asks again. Returns positional and keyword arguments."""
        wait = ("BLOCK", block) if block is not None else ()
        args = ("XREAD", "COUNT", LOAD_BATCH, *wait, "STREAMS", stream, last)
        if not self._cluster:
            return args, {}
        return args, {"target_nodes": client.get_node_from_key(stream)}

    def _check_failed(self, exc: BaseException) -> None:
        error = _failure(exc)[1]
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

    def _follower_failed(self, exc: BaseException) -> None:
        if self.mirror is not None:
            self.mirror.live = False
        self._warn("follower", logging.WARNING, "revocation cache offline: %s", _failure(exc)[1])

    def _following(self) -> tuple[RevocationMirror, str] | None:
        if self.mirror is None or self._stream is None:
            return None
        return self.mirror, self._stream


class RedisStore(_Shared):
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

    def _write(self, writes: Sequence[_Write]) -> list[Any]:
        """Carry out ``writes`` (:func:`_phases`); the first pipeline's replies."""
        first: list[Any] | None = None
        for phase in _phases(writes, self._cluster):
            pipe = self.client.pipeline(transaction=not self._cluster)
            phase(pipe)
            replies = pipe.execute()
            first = replies if first is None else first
        return first or []

    def execute(self, ops: StoreOps) -> StoreOutcome:
        """Make the writes of one logout, with any backlog: one transaction on one Redis,
        two pipelines on a cluster (:func:`_phases`); never raises for Redis errors."""
        late = self._backlog.take()
        try:
            results = self._write(_writes(ops, late))
        except self._errors as exc:
            return self._failed(ops, exc, late)
        return StoreOutcome("ok", sessions_deleted=_deleted(ops, results))

    def retry(self) -> bool:
        """Carry out the failed logouts now; True when none is left. The background
        retrier calls it every :data:`RETRY_EVERY` seconds."""
        late = self._backlog.take()
        if not late:
            return True
        try:
            self._write(_writes(None, late))
        except self._errors as exc:
            return self._retried(late, exc)
        return self._retried(late, None)

    def _retry_soon(self) -> None:
        retrier = self._retrier
        if retrier is not None and retrier.is_alive():  # never true in a forked child
            return
        self._retrier = threading.Thread(target=self._retrying, name="logout-retry", daemon=True)
        self._retrier.start()

    def _retrying(self) -> None:
        while not self._stop.wait(RETRY_EVERY):
            if self.retry():
                return

    def read(self, request: Read) -> Reading | None:
        """The replies to ``request`` in one pipeline, or None when Redis failed."""
        if self._skipping():
            return None
        try:
            pipe = self._raw.pipeline(transaction=False)
            _queue_read(pipe, request)
            return _reading(request, pipe.execute())
        except self._errors as exc:
            self._check_failed(exc)
            return None

    def check(self, request: Check) -> Checked | None:
        """Redis's answers to ``request`` in one pipeline, or None when it failed."""
        if self._skipping():
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_check(pipe, request)
            return _checked(request, pipe.execute())
        except self._errors as exc:
            self._check_failed(exc)
            return None

    def claim(self, request: Claim) -> bool | None:
        """``SET NX EX``: True when the key was new, False when it existed, None on failure."""
        if self._skipping():
            return None
        try:
            return bool(self.client.set(request.key, b"1", nx=True, ex=request.ttl))
        except self._errors as exc:
            self._check_failed(exc)
            return None

    def index(self, request: Index) -> None:
        """Index a session under its subject; failures are logged."""
        if self._skipping():
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_index(pipe, request)
            pipe.execute()
        except self._errors as exc:
            self._check_failed(exc)

    def delete(self, request: Delete) -> None:
        """Delete re-created records; failures are logged."""
        if self._skipping():
            return
        try:
            self.client.delete(*request.keys)
        except self._errors as exc:
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
        if self._backlog.pending():
            self._retry_soon()  # a forked child inherits the backlog, not the thread
        following = self._following()
        if following is None:
            return
        self._follower = threading.Thread(
            target=self._follow,
            args=(*following, *self._follower_client()),
            name="logout-revocations",
            daemon=True,
        )
        self._follower.start()

    def _load(self, client: Any, mirror: RevocationMirror) -> tuple[Any, MirrorSnapshot]:
        """Load the mirror's state (``SCAN`` of every primary on a cluster); returns the
        stream position it was loaded at and the snapshot."""
        stream = self._stream or ""
        last = _stream_end(client.xrevrange(stream, count=1))
        snapshot = MirrorSnapshot()
        found = [
            list(client.scan_iter(match=g, count=LOAD_BATCH))
            for g in (*mirror.keys.globs(), mirror.keys.oidc_sid_glob())
        ]
        get_many = client.mget_nonatomic if self._cluster else client.mget
        values: list[Any] = []
        for start in range(0, len(found[2]), LOAD_BATCH):
            values += get_many(found[2][start : start + LOAD_BATCH])
        mirror.load(snapshot, found[0], found[1], zip(found[2], values, strict=True), found[3])
        return last, snapshot

    def _follow(
        self, mirror: RevocationMirror, stream: str, client: Any, block: int, owned: bool
    ) -> None:
        try:
            while not self._stop.is_set():
                try:
                    found = None if self._cluster else _client_id(client)
                    if found is not None:
                        self._follower_ids[threading.current_thread()] = found
                    last, snapshot = self._load(client, mirror)
                    # Revocations made during the SCAN are in the stream after `last`.
                    while reply := _call(client, self._xread(client, stream, last)):
                        last, ended = mirror.absorb(reply, last, snapshot)
                        records = self._records_of(ended) if ended else ()
                        if records:
                            client.delete(*records)
                    mirror.replace(snapshot)
                    reload_at = time.monotonic() + MIRROR_RELOAD
                    while not self._stop.is_set() and time.monotonic() < reload_at:
                        read = self._xread(client, stream, last, block)
                        followed = _call(client, read)
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
            if owned:
                close_client(client)

    def close(self) -> None:
        """Stop the mirror's follower and the retrier, and close every connection, the
        follower's too.

        ``CLIENT UNBLOCK`` wakes the follower out of its blocking ``XREAD``, so that it
        ends (closing its connection) at once; this waits for it at most
        :data:`STOP_WAIT` seconds. Where ``CLIENT`` is not allowed, the follower ends
        within one ``XREAD`` block (:data:`FOLLOW_BLOCK_MS`) instead; on a cluster
        within :data:`CLUSTER_FOLLOW_BLOCK_MS`."""
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


def _call(client: Any, command: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
    """``client.execute_command`` with ``command``'s arguments (an awaitable on
    ``redis.asyncio``)."""
    args, kwargs = command
    return client.execute_command(*args, **kwargs)


class AsyncRedisStore(_Shared):
    """Asynchronous store on a ``redis.asyncio`` client, for the ASGI middleware.

    Parameters as :class:`RedisStore` (with ``redis.asyncio`` clients); the mirror's
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

    async def _write(self, writes: Sequence[_Write]) -> list[Any]:
        """Carry out ``writes`` (:func:`_phases`); the first pipeline's replies."""
        first: list[Any] | None = None
        for phase in _phases(writes, self._cluster):
            pipe = self.client.pipeline(transaction=not self._cluster)
            phase(pipe)
            replies = await pipe.execute()
            first = replies if first is None else first
        return first or []

    async def execute(self, ops: StoreOps) -> StoreOutcome:
        """:meth:`RedisStore.execute` on ``redis.asyncio``. Cancelled midway (a client
        that went away, a server shutting down), it puts the backlog it carried back,
        with this logout, for the retrier: they may or may not have been written, and
        every write is idempotent."""
        late = self._backlog.take()
        try:
            results = await self._write(_writes(ops, late))
        except self._errors as exc:
            return self._failed(ops, exc, late)
        except BaseException:
            self._put_back([*late, (ops, time.time())] if self._backlog.size else late)
            raise
        return StoreOutcome("ok", sessions_deleted=_deleted(ops, results))

    async def retry(self) -> bool:
        """:meth:`RedisStore.retry`: carry out the failed logouts now; True when none
        is left. Cancelled midway, it puts them back."""
        late = self._backlog.take()
        if not late:
            return True
        try:
            await self._write(_writes(None, late))
        except self._errors as exc:
            return self._retried(late, exc)
        except BaseException:
            self._put_back(late)
            raise
        return self._retried(late, None)

    def _retry_soon(self) -> None:
        retrier = self._retrier
        if retrier is not None and not retrier.done():
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next logout retries
            self._retrier = asyncio.get_running_loop().create_task(self._retrying())

    async def _retrying(self) -> None:
        while True:
            await asyncio.sleep(RETRY_EVERY)
            if await self.retry():
                return

    async def read(self, request: Read) -> Reading | None:
        """The replies to ``request`` in one pipeline, or None when Redis failed."""
        if self._skipping():
            return None
        try:
            pipe = self._raw.pipeline(transaction=False)
            _queue_read(pipe, request)
            return _reading(request, await pipe.execute())
        except self._errors as exc:
            self._check_failed(exc)
            return None

    async def check(self, request: Check) -> Checked | None:
        """Redis's answers to ``request`` in one pipeline, or None when it failed."""
        if self._skipping():
            return None
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_check(pipe, request)
            return _checked(request, await pipe.execute())
        except self._errors as exc:
            self._check_failed(exc)
            return None

    async def claim(self, request: Claim) -> bool | None:
        """``SET NX EX``: True when the key was new, False when it existed, None on failure."""
        if self._skipping():
            return None
        try:
            return bool(await self.client.set(request.key, b"1", nx=True, ex=request.ttl))
        except self._errors as exc:
            self._check_failed(exc)
            return None

    async def index(self, request: Index) -> None:
        """Index a session under its subject; failures are logged."""
        if self._skipping():
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            _queue_index(pipe, request)
            await pipe.execute()
        except self._errors as exc:
            self._check_failed(exc)

    async def delete(self, request: Delete) -> None:
        """Delete re-created records; failures are logged."""
        if self._skipping():
            return
        try:
            await self.client.delete(*request.keys)
        except self._errors as exc:
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
            if self._backlog.pending():
                self._retrier = None  # a forked child inherits the backlog, not the task
                self._retry_soon()
        following = self._following()
        if following is not None:
            self._follower = asyncio.get_running_loop().create_task(self._follow(*following))

    async def _scan(self, client: Any, pattern: str) -> list[Any]:
        """Every key matching ``pattern`` (on every primary of a cluster)."""
        if self._cluster:
            return [key async for key in client.scan_iter(match=pattern, count=LOAD_BATCH)]
        return await _scan(client, pattern)

    async def _follow(self, mirror: RevocationMirror, stream: str) -> None:
        client, block, owned = self._follower_client()
        get_many = client.mget_nonatomic if self._cluster else client.mget
        try:
            while True:
                try:
                    last = _stream_end(await client.xrevrange(stream, count=1))
                    snapshot = MirrorSnapshot()
                    patterns = (*mirror.keys.globs(), mirror.keys.oidc_sid_glob())
                    found = [await self._scan(client, pattern) for pattern in patterns]
                    values: list[Any] = []
                    for start in range(0, len(found[2]), LOAD_BATCH):
                        values += await get_many(found[2][start : start + LOAD_BATCH])
                    mirror.load(
                        snapshot, found[0], found[1], zip(found[2], values, strict=True), found[3]
                    )
                    # Revocations made during the SCAN are in the stream after `last`.
                    while reply := await _call(client, self._xread(client, stream, last)):
                        last, ended = mirror.absorb(reply, last, snapshot)
                        records = self._records_of(ended) if ended else ()
                        if records:
                            await client.delete(*records)
                    mirror.replace(snapshot)
                    reload_at = time.monotonic() + MIRROR_RELOAD
                    while time.monotonic() < reload_at:
                        read = self._xread(client, stream, last, block)
                        followed = await _call(client, read)
                        last, ended = mirror.absorb(followed, last)
                        records = self._records_of(ended) if ended else ()
                        if records:
                            await client.delete(*records)
                except Exception as exc:  # a follower never dies: it reloads
                    self._follower_failed(exc)
                    await asyncio.sleep(1.0)
        finally:
            mirror.live = False
            if owned:
                await aclose_client(client)

    async def aclose(self) -> None:
        """Stop the mirror's follower and the retrier, and close the client's connections.

        The follower is cancelled until it ends, for at most :data:`STOP_WAIT` seconds
        (redis-py may swallow one cancellation while it drops a connection mid-reply)."""
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
