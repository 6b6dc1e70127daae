"""The I/O the core asks for: plain values that a store carries out.

The core's flows (:meth:`LogoutCore.logout`, :meth:`LogoutCore.revoke`,
:meth:`LogoutCore.learn`) are generators in the style of "bring your own I/O" (h11):
each ``yield`` hands one of these to the adapter's driver
(:func:`logout_middleware.store.drive` and its async twin), which sends back the result
named in the class's docstring. Every Redis request is one round trip.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from ..events import StoreStatus

__all__ = [
    "Check",
    "Checked",
    "Claim",
    "Delete",
    "Discover",
    "Flow",
    "Index",
    "Read",
    "Reading",
    "StoreOps",
    "StoreOutcome",
    "Verify",
    "VerifyLogoutToken",
]

_T = TypeVar("_T")
#: A core flow: yields I/O requests, is sent their results, returns ``_T``.
Flow = Generator[Any, Any, _T]


@dataclass(frozen=True, slots=True)
class StoreOps:
    """The server-side writes of one logout, made by a store in one ``MULTI``/``EXEC``
    (on a Redis Cluster, in two pipelines: the keys, then the audit entries).

    ``delete``: session record keys to delete (the ``DEL`` count is reported).
    ``sets``: ``(key, value, ttl seconds)`` for ``SET key value EX ttl``: revoked tokens,
    session tombstones, a subject's not-before. ``unindex``: ``(index key, member)``
    pairs to ``ZREM``; ``discard``: keys to delete whole whose ``DEL`` count is not
    reported: a subject's session index, and the records of the ended tokens
    (``LOGOUT_TOKEN_KEYS``, such as ``fastapi_users_token:<token>``). ``stream``: the
    audit stream, or None to write no entry; ``entry`` its fields; ``maxlen`` the
    approximate cap on its length; ``written_prefix`` the prefix of each entry's
    write-once marker (an entry id is appended once, however often the writes are
    retried).

    Result: a :class:`StoreOutcome`.
    """

    delete: tuple[str, ...] = ()
    sets: tuple[tuple[str, str, int], ...] = ()
    unindex: tuple[tuple[str, str], ...] = ()
    discard: tuple[str, ...] = ()
    stream: str | None = None
    maxlen: int = 100_000
    entry: tuple[tuple[str, str], ...] = ()
    #: Further audit entries of the same transaction (one per context ended).
    extra_entries: tuple[tuple[tuple[str, str], ...], ...] = ()
    written_prefix: str = "logout:written:"


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What a store reports after :class:`StoreOps`: status, session keys that existed
    and were deleted, and the error text on failure (the exception's class and message)."""

    status: StoreStatus
    sessions_deleted: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Read:
    """One pipeline of reads: ``GET`` of each of ``gets`` and ``ZRANGE key now +inf
    BYSCORE`` of each of ``ranges`` (the live members of a session index).

    Result: a :class:`Reading`, or None when Redis failed.
    """

    gets: tuple[str, ...] = ()
    ranges: tuple[str, ...] = ()
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class Reading:
    """The replies to a :class:`Read`, in its order (members as text)."""

    values: tuple[bytes | None, ...]
    members: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Check:
    """The revocation questions the mirror could not answer, asked in one pipeline:
    ``EXISTS`` of a tombstone and of a denylist key, ``GET`` of a not-before key; each
    None when not asked.

    Result: a :class:`Checked`, or None when Redis failed.
    """

    session_key: str | None
    token_key: str | None
    not_before_key: str | None
    #: The revocation key of the OpenID provider session a JWT names (its ``sid``).
    oidc_sid_key: str | None = None


@dataclass(frozen=True, slots=True)
class Checked:
    """The answers to a :class:`Check` (False / 0.0 for what was not asked)."""

    session_revoked: bool
    token_revoked: bool
    not_before: float
    oidc_sid_revoked: bool = False


@dataclass(frozen=True, slots=True)
class Index:
    """Add ``member`` (a session id's hash) to the session index ``key`` with score
    ``expires_at`` (seconds since the epoch), drop members that expired by ``now``, and
    keep the index ``ttl`` seconds; remove ``member`` from ``previous`` (the index of the
    session's former subject) when given. Result: None (failures are logged, not raised).
    """

    key: str
    member: str
    expires_at: float
    now: float
    ttl: int
    previous: str | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """``DEL`` of ``keys``: records re-created after their session was revoked.
    Result: None (failures are logged, not raised)."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Claim:
    """``SET key 1 NX EX ttl``: record a one-time value (a logout token's ``jti``).
    Result: True when it was new, False when it was already there, None when Redis
    failed."""

    key: str
    ttl: int


@dataclass(frozen=True, slots=True)
class VerifyLogoutToken:
    """Validate an OpenID Connect logout token with the provider's keys (may fetch its
    metadata and JWKS: adapters run it off the event loop). Result:
    :class:`~.oidc.LogoutTokenClaims` or :class:`~.oidc.LogoutTokenError`."""

    token: bytes


@dataclass(frozen=True, slots=True)
class Discover:
    """The provider's ``end_session_endpoint`` (may fetch its metadata: adapters run it
    off the event loop). Result: the URL, or None when unknown or unreachable."""


@dataclass(frozen=True, slots=True)
class Verify:
    """Verify a JWT's signature and claims (may fetch a JWKS: adapters run it off the
    event loop). Result: :class:`~logout_middleware.core.tokens.TokenClaims` or None."""

    token: bytes
