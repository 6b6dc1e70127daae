"""Logout events: what in-process listeners receive and what the audit stream records.

One :class:`LogoutEvent` is emitted per completed logout (not for refused requests),
like Django's ``user_logged_out`` signal, Spring Security's ``LogoutSuccessEvent`` and
Stormpath's ``LogoutRequestEvent``. The same fields, as text, are appended to the Redis
stream ``LOGOUT_EVENTS_STREAM`` in the logout's one round trip.

Secrets never appear in an event: session ids and bearer tokens are given as their
SHA-256 hex digests, the same digests the denylist keys use, so an audit entry can be
matched to a revocation without storing the credential.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = ["AsyncListener", "Listener", "LogoutEvent", "StoreStatus"]

logger = logging.getLogger("logout_middleware")

#: ``ok``: every server-side write succeeded; ``failed``: Redis could not be reached
#: or refused them; ``disabled``: no Redis is configured, cookies only.
StoreStatus = Literal["ok", "failed", "disabled"]


@dataclass(frozen=True, slots=True)
class LogoutEvent:
    """One completed logout.

    All hashes are lower-case SHA-256 hex digests (64 characters) of the raw value.
    """

    #: A random identifier (32 hex characters), also written to the audit stream.
    id: str
    #: When the logout was handled, timezone-aware UTC.
    at: datetime
    #: The request method (``POST`` unless ``LOGOUT_METHODS`` says otherwise).
    method: str
    #: The logout URI as requested, including any mount point.
    path: str
    #: The names of the cookies expired in the response.
    cookies: tuple[str, ...]
    #: SHA-256 of the server-side session id, or None when the request had none.
    session_id_hash: str | None
    #: How many Redis session keys existed and were deleted (0 when none or failed).
    sessions_deleted: int
    #: SHA-256 of the revoked bearer token, or None when the request had none.
    token_hash: str | None
    #: How long the token stays on the denylist, seconds (None without a token).
    token_ttl: int | None
    #: The client address (``host`` or ``host:port`` as the server gave it), or None.
    client: str | None
    #: The ``User-Agent`` header, cut to 256 characters, or None.
    user_agent: str | None
    #: Where the response redirected (303), or None for a JSON answer.
    redirect: str | None
    #: ``ok``, ``failed`` or ``disabled`` (see :data:`StoreStatus`).
    store: StoreStatus
    #: Why the server-side part failed (the exception's class and message), or None.
    store_error: str | None = None

    @property
    def store_ok(self) -> bool:
        """True when the server-side session and token were ended in Redis."""
        return self.store == "ok"

    def to_fields(self) -> dict[str, str]:
        """The event as the flat ``field -> text`` mapping written to the Redis stream.

        Absent values are empty strings; ``cookies`` is comma-separated; ``at`` is
        ISO 8601. ``store`` and ``store_error`` are not included: an entry exists in
        the stream only when its logout's writes succeeded (they share a transaction).
        """
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "method": self.method,
            "path": self.path,
            "cookies": ",".join(self.cookies),
            "session_id_hash": self.session_id_hash or "",
            "token_hash": self.token_hash or "",
            "token_ttl": "" if self.token_ttl is None else str(self.token_ttl),
            "client": self.client or "",
            "user_agent": self.user_agent or "",
            "redirect": self.redirect or "",
        }


#: A listener: called with each event. Its return value is ignored.
Listener = Callable[[LogoutEvent], object]
#: A coroutine-function listener, accepted by the ASGI middleware only.
AsyncListener = Callable[[LogoutEvent], Awaitable[object]]


def listeners(on_logout: Listener | Iterable[Listener] | None) -> tuple[Listener, ...]:
    """Normalise the ``on_logout`` argument: None, one callable, or an iterable of them.

    :raises TypeError: when an item is not callable.
    """
    if on_logout is None:
        return ()
    found = (on_logout,) if callable(on_logout) else tuple(on_logout)
    for listener in found:
        if not callable(listener):
            raise TypeError(f"on_logout: {listener!r} is not callable")
    return found


def notify(found: tuple[Listener, ...], event: LogoutEvent) -> None:
    """Call each listener in order; one that raises is logged and the rest still run.

    Raises nothing: a listener's exception is logged on ``logout_middleware`` with its
    traceback, never passed on to the server or the client.
    """
    for listener in found:
        try:
            listener(event)
        except Exception:
            logger.exception("on_logout listener %r failed for event %s", listener, event.id)


async def anotify(found: tuple[Listener, ...], event: LogoutEvent) -> None:
    """Like :func:`notify`, awaiting listeners that return an awaitable."""
    for listener in found:
        try:
            result = listener(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_logout listener %r failed for event %s", listener, event.id)


def sync_only(found: tuple[Listener, ...]) -> tuple[Listener, ...]:
    """Refuse coroutine functions where nothing could await them (the WSGI middleware).

    :raises TypeError: naming the coroutine function.
    """
    for listener in found:
        if inspect.iscoroutinefunction(listener):
            raise TypeError(
                f"on_logout: {listener!r} is a coroutine function; WSGI cannot await it"
            )
    return found
