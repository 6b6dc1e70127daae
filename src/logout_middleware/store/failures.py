"""What a Redis failure means: whether a retry can cure it, how it is reported, and how
often it is logged.

Shared by every operation of both stores: a logout whose writes failed is kept for a
retry only when :func:`failure` says a retry can cure it; a failed check, read or follow
is logged through a :class:`Warnings` throttle.
"""

from __future__ import annotations

import logging
import re
import time

import redis
from redis.exceptions import (
    AskError,
    ClusterError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)

__all__ = ["TRANSIENT", "TRANSIENT_REPLIES", "WARN_EVERY", "Warnings", "failure"]

logger = logging.getLogger("logout_middleware")

#: Least time between two warnings about failed checks, seconds.
WARN_EVERY = 10.0

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

#: redis-py names a failed pipeline command with its arguments, keys included; a key
#: may hold a raw session id or token (``session:<id>``), so they are cut out.
_COMMAND_ARGS = re.compile(r"(Command # \d+) \(.*?\)( of pipeline)", re.DOTALL)


def _reply_of(exc: BaseException) -> str:
    """Redis's own reply in an error (after redis-py's "... of pipeline caused error: ")."""
    text = str(exc)
    _, found, reply = text.partition("caused error: ")
    return (reply if found else text).lstrip()


def failure(exc: BaseException) -> tuple[bool, str]:
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


class Warnings:
    """Logs each cause at most once every ``every`` seconds, saying how many times it
    recurred in between; thread-safe enough (a lost count is harmless).

    :param every: the least time between two messages of one cause, seconds.
    """

    def __init__(self, every: float = WARN_EVERY) -> None:
        self._every = every
        self._next: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def __call__(self, cause: str, level: int, message: str, *args: object) -> None:
        """Log ``message % args`` at ``level`` (a :mod:`logging` level) unless ``cause``
        was logged less than ``every`` seconds ago, in which case it is only counted."""
        now = time.monotonic()
        if now < self._next.get(cause, 0.0):
            self._quiet[cause] = self._quiet.get(cause, 0) + 1
            return
        self._next[cause] = now + self._every
        quiet = self._quiet.pop(cause, 0)
        if quiet:
            message += f" ({quiet} more like it in the last {self._every:g} s)"
        logger.log(level, message, *args)
