"""A logout's writes, and the backlog of those that failed, written once as flows.

:meth:`Writes.execute` makes the writes of one logout, with any backlog: one
``MULTI``/``EXEC`` on one Redis, two pipelines on a cluster (:func:`phases`).
:meth:`Writes.retry` and :meth:`Writes.retrying` carry the backlog out later. Each is
a flow of :mod:`.steps` that the synchronous store runs with :func:`.steps.run` and the
asynchronous one with :func:`.steps.arun`; what a failure means (kept for a retry or
not, how it is logged) is decided here, once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..core.ops import StoreOps, StoreOutcome
from ..topology import hash_tag
from .failures import Warnings, failure
from .steps import Send, Sleep, Steps

__all__ = [
    "APPEND_ONCE",
    "DEFAULT_BACKLOG",
    "RETRY_EVERY",
    "WRITTEN_TTL",
    "Backlog",
    "Late",
    "Write",
    "Writes",
    "phases",
    "written_key",
]

logger = logging.getLogger("logout_middleware")

#: How many failed logouts are kept while Redis is unreachable.
DEFAULT_BACKLOG = 1000
#: How often failed logouts are retried in the background, seconds.
RETRY_EVERY = 1.0
#: How long an audit entry's write-once marker is kept, seconds: a retry within that
#: time (a day) never appends the same entry twice. Logouts waiting longer in the
#: backlog are dropped by the retrier, with an error, rather than risk it.
WRITTEN_TTL = 86400

#: Appends an audit entry once: claims the entry's id (``KEYS[2]``, in the stream's hash
#: slot) with ``SET NX EX ARGV[1]``, then ``XADD``\s the fields ``ARGV[3:]`` to the stream
#: ``KEYS[1]``, capped at about ``ARGV[2]`` entries ("" for no cap). Returns the new
#: entry's id, or nil when the id was written before.
APPEND_ONCE = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then return false end
if ARGV[2] == '' then return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3)) end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
"""

#: A logout whose writes failed, and when (seconds since the epoch).
Late = tuple[StoreOps, float]
#: One logout to write: its ops, the audit entries' ``store`` status, and seconds since
#: it was asked for (a late revocation ends when it would have: its TTLs are shortened).
Write = tuple[StoreOps, str, float]


def written_key(prefix: str, stream: str, entry_id: str) -> str:
    """The write-once marker of audit entry ``entry_id`` in ``stream``:
    ``<prefix>{<tag>}:<entry id>``, where the tag is the stream's hash tag when it has
    one, else its whole name, so that the script that checks the marker and appends the
    entry touches one slot of a cluster. (A stream name with a ``}`` outside a hash tag
    is refused by the configuration.)"""
    tag = hash_tag(stream)
    return f"{prefix}{{{stream if tag is None else tag}}}:{entry_id}"


class Backlog:
    """Logouts whose writes failed, oldest first, bounded; thread-safe.

    :param size: how many failed logouts it keeps; 0 keeps none (a one-off revocation).
    """

    def __init__(self, size: int) -> None:
        self._entries: deque[Late] = deque()
        #: How many failed logouts it keeps; 0 keeps none (a one-off revocation).
        self.size = size
        self._lock = threading.Lock()
        #: How many failed logouts were dropped in all (overflow or age).
        self.dropped = 0

    def take(self) -> list[Late]:
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

    def put(self, entries: Sequence[Late]) -> int:
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


def _writes(ops: StoreOps | None, late: Sequence[Late]) -> list[Write]:
    """This logout first (its ``DEL`` counts are the first replies), then the backlog."""
    now = time.time()
    first: list[Write] = [(ops, "ok", 0.0)] if ops is not None else []
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


def phases(writes: Sequence[Write], cluster: bool) -> list[Callable[[Any], None]]:
    """The pipelines that carry out ``writes``, in order: each queues its commands on a
    pipeline it is given.

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


class Writes:
    """The write flows of one store, over its backlog.

    :param backlog: the failed logouts kept for a retry.
    :param warn: the store's warning throttle.
    :param errors: what a client may raise for Redis trouble (caught; anything else, a
        cancellation included, puts the writes it carried back and propagates).
    :param cluster: whether the client is a cluster client (two pipelines, no
        transaction).
    :param retry_soon: starts the store's background retrier (a thread or a task) if it
        is not running; called after a failure a retry can cure.
    """

    def __init__(
        self,
        backlog: Backlog,
        warn: Warnings,
        errors: tuple[type[BaseException], ...],
        *,
        cluster: bool,
        retry_soon: Callable[[], None],
    ) -> None:
        self.backlog = backlog
        self._warn = warn
        self._errors = errors
        self._cluster = cluster
        self._retry_soon = retry_soon

    def write(self, client: Any, writes: Sequence[Write]) -> Steps[list[Any]]:
        """Carry out ``writes`` on ``client`` (:func:`phases`), one :class:`.Send` of a
        pipeline's ``execute`` per phase; returns the first pipeline's replies.

        :raises Exception: what the client raised (the phases after it are not sent)."""
        first: list[Any] | None = None
        for phase in phases(writes, self._cluster):
            pipe = client.pipeline(transaction=not self._cluster)
            phase(pipe)
            replies = yield Send(pipe.execute)
            first = replies if first is None else first
        return first or []

    def execute(self, client: Any, ops: StoreOps) -> Steps[StoreOutcome]:
        """Make the writes of one logout on ``client``, with the backlog; never raises
        for Redis errors: a failure is an outcome with status ``failed``. Interrupted
        otherwise (a cancelled task: a client that went away, a server shutting down),
        it puts the backlog it carried back, with this logout, for the retrier: they may
        or may not have been written, and every write is idempotent."""
        late = self.backlog.take()
        try:
            results = yield from self.write(client, _writes(ops, late))
        except self._errors as exc:
            return self._failed(ops, exc, late)
        except BaseException:
            self._put_back([*late, (ops, time.time())] if self.backlog.size else late)
            raise
        return StoreOutcome("ok", sessions_deleted=_deleted(ops, results))

    def retry(self, client: Any) -> Steps[bool]:
        """Carry out the failed logouts now, on ``client``; returns True when none is
        left. Interrupted, it puts them back."""
        late = self.backlog.take()
        if not late:
            return True
        try:
            yield from self.write(client, _writes(None, late))
        except self._errors as exc:
            return self._retried(late, exc)
        except BaseException:
            self._put_back(late)
            raise
        return self._retried(late, None)

    def retrying(self, client_of: Callable[[], Any]) -> Steps[None]:
        """The background retrier: :meth:`retry` on ``client_of()`` every
        :data:`RETRY_EVERY` seconds until the backlog is empty or the store closes."""
        while not (yield Sleep(RETRY_EVERY)):
            if (yield from self.retry(client_of())):
                return

    def _failed(self, ops: StoreOps, exc: BaseException, late: list[Late]) -> StoreOutcome:
        """Report a failed logout. A failure a retry can cure puts it (and the backlog it
        carried) back in the backlog and schedules the background retry; a command Redis
        refused (``WRONGTYPE``, when the stream key holds another type) would fail
        again and is not kept."""
        transient, error = failure(exc)
        if transient and self.backlog.size:
            late.append((ops, time.time()))
        self._put_back(late)
        if transient:
            retry = "; retried in the background" if self.backlog.size else ""
            self._warn("logout", logging.WARNING, "logout: Redis unreachable (%s)%s", error, retry)
            self._retry_soon()
        else:
            self._warn("refused", logging.ERROR, "logout: Redis refused the writes (%s)", error)
        return StoreOutcome("failed", error=error)

    def _retried(self, late: list[Late], exc: BaseException | None) -> bool:
        """After a background retry of ``late``: True when nothing is left to retry."""
        if exc is None:
            logger.info("logout: %d failed logouts carried out on retry", len(late))
            return not self.backlog.pending()
        transient, error = failure(exc)
        self._put_back(late if transient else [])
        if not transient:
            self._warn("refused", logging.ERROR, "logout: Redis refused a retry (%s)", error)
        return not self.backlog.pending()

    def _put_back(self, late: Sequence[Late]) -> None:
        """Return logouts to the backlog, saying (throttled) when it overflowed."""
        dropped = self.backlog.put(late)
        if dropped:
            self._warn(
                "backlog",
                logging.ERROR,
                "logout backlog full: %d failed logouts dropped (%d in all)",
                dropped,
                self.backlog.dropped,
            )
