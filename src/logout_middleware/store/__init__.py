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

The Redis logic is written once and driven twice. Each operation of more than one call
(the write phases, the backlog's retry, the follower's load and follow) is a generator
that yields I/O steps, as the core's flows yield requests to :func:`drive`; a ~20-line
blocking runner and a ~20-line ``await`` runner carry the steps out. Each one-round-trip
request is a description (commands, reading of the replies) that the synchronous store
calls and the asynchronous one awaits. We chose this over generating the synchronous
twin with ``unasync``: the stores differ in more than ``await`` (threads that a stop
event and ``CLIENT UNBLOCK`` end, against cancelled tasks), which a token rewrite cannot
express, and flows need no generated file or ``--check`` step and match the core's
idiom. The modules, by concept:

* :mod:`.steps`: the I/O steps (call a client method or a pipeline's ``execute``,
  collect an iterator, sleep) and the two runners, :func:`~.steps.run` (blocking) and
  :func:`~.steps.arun` (``await``);
* :mod:`.writes`: a logout's write phases, the backlog and its retry, as flows;
* :mod:`.follower`: the revocation follower's load and follow, as a flow;
* :mod:`.queries`: the one-round-trip requests (read, check, claim, index, delete),
  each described once (commands, replies, failure);
* :mod:`.failures`: whether a failure is transient, and the warning throttle;
* :mod:`.base`: construction and what both stores share; :mod:`.sync` and :mod:`.aio`:
  the two stores, their threads and tasks; :mod:`.drivers`: :func:`drive` and
  :func:`adrive`, over one routing of the core's requests.
"""

from __future__ import annotations

from .aio import AsyncRedisStore
from .base import DOWN_FOR as DOWN_FOR
from .base import STOP_WAIT as STOP_WAIT
from .base import forked, generation
from .drivers import adrive, drive
from .failures import TRANSIENT as TRANSIENT
from .failures import TRANSIENT_REPLIES as TRANSIENT_REPLIES
from .failures import WARN_EVERY as WARN_EVERY
from .failures import failure
from .follower import CLUSTER_FOLLOW_BLOCK_MS as CLUSTER_FOLLOW_BLOCK_MS
from .follower import FOLLOW_BLOCK_MS as FOLLOW_BLOCK_MS
from .follower import LOAD_BATCH as LOAD_BATCH
from .follower import MIRROR_RELOAD as MIRROR_RELOAD
from .follower import RecordsOf as RecordsOf
from .sync import RedisStore
from .writes import APPEND_ONCE as APPEND_ONCE
from .writes import DEFAULT_BACKLOG as DEFAULT_BACKLOG
from .writes import RETRY_EVERY as RETRY_EVERY
from .writes import WRITTEN_TTL as WRITTEN_TTL
from .writes import written_key as written_key

__all__ = ["AsyncRedisStore", "RedisStore", "adrive", "drive"]

# Besides the public names, the former single module's settings and helpers stay
# importable from here (the ``as`` re-exports above), and the private names tests use:

_forked = forked  # what os.register_at_fork runs in a child (tests call it)
_generation = generation  # the fork generation, the same list the stores read
_failure = failure  # whether a Redis failure is transient, and its report
