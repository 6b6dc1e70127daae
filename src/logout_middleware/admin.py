"""Revocation for apps and operators: end a subject, a session or a token from code.

The same state and the same audit entries as a logout, with ``reason="admin"``::

    from logout_middleware import revoke, arevoke

    revoke(subject="42")                    # every session and JWT of user 42
    revoke(session_id=sid)                  # one session
    await arevoke(token=b"eyJ...")          # one bearer token

Configuration comes from ``LOGOUT_*`` unless ``config`` is given; the Redis client from
``LOGOUT_REDIS_URL`` unless ``redis`` is given (sync for :func:`revoke`, ``redis.asyncio``
for :func:`arevoke`). A running middleware sees the revocation through its mirror as
soon as the audit stream delivers it.
"""

from __future__ import annotations

from typing import Any

from .config import ConfigError, LogoutConfig
from .core import Ended, Ending, Flow, LogoutCore
from .events import LogoutEvent
from .store import AsyncRedisStore, RedisStore, adrive, drive

__all__ = ["RevocationFailed", "arevoke", "revoke"]


class RevocationFailed(RuntimeError):
    """Redis did not carry out the revocation (unreachable, or it refused the writes);
    the message says why. What was asked is not in force: on one Redis nothing was
    written; on a cluster some keys may have been (every write is idempotent: revoking
    again completes it)."""


def _prepare(
    config: LogoutConfig | None,
    client: Any,
    subject: str | None,
    session_id: str | None,
    token: str | bytes | None,
) -> tuple[LogoutConfig, LogoutCore, Flow[Ended]]:
    """What :func:`revoke` and :func:`arevoke` share before any I/O: the settings, the
    core, and the flow that revokes (``reason="admin"``).

    :raises ValueError: when nothing to revoke is given, or the subject is too long.
    :raises ConfigError: when there is no Redis to write to, or a setting is invalid.
    """
    config = _config(config, client)
    if subject is None and session_id is None and token is None:
        raise ValueError("give a subject, a session_id or a token to revoke")
    if subject is not None and not 0 < len(subject) <= 1024:
        raise ValueError("subject must be 1 to 1024 characters")
    raw = token.encode() if isinstance(token, str) else token
    core = LogoutCore(config, has_store=True)
    flow = core.end(
        Ending(
            session_id=session_id,
            token=raw,
            subject=subject,
            everywhere=subject is not None,
            reason="admin",
        )
    )
    return config, core, flow


def _result(ended: Ended) -> LogoutEvent:
    event = ended.event
    if event is None:  # not reached: an operator's subject is always trusted
        raise RevocationFailed("no subject")
    if event.store != "ok":
        raise RevocationFailed(event.store_error or "Redis failed")
    return event


def _config(config: LogoutConfig | None, client: Any) -> LogoutConfig:
    found = config if config is not None else LogoutConfig.from_env()
    if client is None and not found.redis_url:
        raise ConfigError("LOGOUT_REDIS_URL: set it to the Redis that holds the revocation state")
    return found


def revoke(
    *,
    subject: str | None = None,
    session_id: str | None = None,
    token: str | bytes | None = None,
    config: LogoutConfig | None = None,
    redis: Any = None,
) -> LogoutEvent:
    """Revoke a subject (every session in its index and every JWT issued up to now), a
    session id, a token, or several at once, in one transaction (on a Redis Cluster, the
    key writes then the audit entry); return the event, also appended to the audit
    stream (``reason=admin``).

    :param subject: the user id, as sessions and JWTs carry it.
    :param session_id: a session id as the session store names it (not the signed cookie).
    :param token: a bearer token, text or bytes.
    :param config: the settings; None reads ``LOGOUT_*``.
    :param redis: a ``redis.Redis`` (or a ``RedisCluster``) to use instead of
        ``LOGOUT_REDIS_URL``.
    :raises ValueError: when nothing to revoke is given.
    :raises ConfigError: when there is no Redis to write to, or a setting is invalid.
    :raises RevocationFailed: when Redis failed; the revocation is not in force (run it
        again).
    """
    config, core, flow = _prepare(config, redis, subject, session_id, token)
    store = RedisStore.from_config(config, redis, follow=False)
    try:
        return _result(drive(flow, store, core.verifier))
    finally:
        if store is not None and redis is None:
            store.close()


async def arevoke(
    *,
    subject: str | None = None,
    session_id: str | None = None,
    token: str | bytes | None = None,
    config: LogoutConfig | None = None,
    redis: Any = None,
) -> LogoutEvent:
    """The async twin of :func:`revoke`, on ``redis.asyncio`` (``redis`` is a
    ``redis.asyncio.Redis``). Same parameters, result and errors."""
    config, core, flow = _prepare(config, redis, subject, session_id, token)
    store = AsyncRedisStore.from_config(config, redis, follow=False)
    try:
        return _result(await adrive(flow, store, core.verifier))
    finally:
        if store is not None and redis is None:
            await store.aclose()
