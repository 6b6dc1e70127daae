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

__all__ = [
    "AsyncListener",
    "EventType",
    "Listener",
    "LogoutEvent",
    "Reason",
    "StoreStatus",
    "SubjectSource",
]

logger = logging.getLogger("logout_middleware")

#: ``ok``: every server-side write succeeded; ``failed``: Redis could not be reached
#: or refused them; ``disabled``: no Redis is configured, cookies only.
StoreStatus = Literal["ok", "failed", "disabled"]
#: What ended, typed as KeyHippo's audit log types the end of a context:
#: ``session_end`` (a browser session, possibly with a token), ``api_session_end`` (only
#: bearer tokens), ``impersonation_end`` (a JWT with an RFC 8693 ``act`` claim),
#: ``anon_context_end`` (a logout that carried no credentials).
EventType = Literal["session_end", "api_session_end", "impersonation_end", "anon_context_end"]
#: Why it ended (as Supabase's ``invalidation_reason``): ``user_logout`` (the logout
#: URI), ``everywhere`` (the everywhere URI), ``admin`` (:func:`logout_middleware.revoke`
#: or the command line), ``backchannel`` (the OpenID provider's back-channel logout).
Reason = Literal["user_logout", "everywhere", "admin", "backchannel"]
#: Where the subject came from: ``session`` (the server-side session record), ``jwt``
#: (a verified bearer JWT), ``jwt_unverified`` (a JWT whose signature was not checked:
#: a label only), ``admin`` (named by an operator), ``oidc`` (a validated logout token
#: from the OpenID provider).
SubjectSource = Literal["session", "jwt", "jwt_unverified", "admin", "oidc"]


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
    #: What ended (see :data:`EventType`).
    type: EventType = "anon_context_end"
    #: Why (see :data:`Reason`).
    reason: Reason = "user_logout"
    #: Who: the user id from the session record or the JWT's ``sub``, or None.
    subject: str | None = None
    #: Where :attr:`subject` came from (see :data:`SubjectSource`), or None.
    subject_source: SubjectSource | None = None
    #: The actor of an impersonation token (``act.sub``, RFC 8693 section 4.1), or None.
    impersonator: str | None = None
    #: How long the ended context had lasted, seconds: from starsessions'
    #: ``__metadata__.created`` or the JWT's ``iat``; None when unknown.
    duration: float | None = None
    #: How many sessions were ended (tombstoned): the request's own and, logging out
    #: everywhere, every other session in the subject's index.
    sessions_ended: int = 0
    #: How many tokens were revoked one by one (the request's own). Logging out
    #: everywhere ends the subject's other JWTs by :attr:`not_before`, uncounted.
    tokens_ended: int = 0
    #: SHA-256 of the ids of the other sessions ended (logging out everywhere).
    ended_session_hashes: tuple[str, ...] = ()
    #: Logging out everywhere: every JWT of the subject with ``iat`` at or before this
    #: time (seconds since the epoch) is refused from now on. None otherwise.
    not_before: float | None = None
    #: The schemes ended (``session``, ``bearer``; ``LOGOUT_SCHEME_PARAM``): all unless
    #: the request named some.
    schemes: tuple[str, ...] = ("session", "bearer")
    #: Ending a session impersonation: True when the impersonator's own session was
    #: restored, False when it could not be (missing, revoked, or someone else's) and
    #: the logout was complete. None when no session impersonation ended.
    restored: bool | None = None
    #: SHA-256 of the OpenID provider's issuer and ``sid`` whose JWTs were revoked (a
    #: back-channel logout by ``sid``), or None.
    oidc_sid_hash: str | None = None
    #: RP-initiated logout (``LOGOUT_OIDC_END_SESSION``): ``redirected`` when the browser
    #: was sent on to the provider's ``end_session_endpoint``, ``unavailable`` when the
    #: provider could not be reached (the local logout happened all the same); else None.
    end_session: str | None = None

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
            "type": self.type,
            "reason": self.reason,
            "subject": self.subject or "",
            "subject_source": self.subject_source or "",
            "impersonator": self.impersonator or "",
            "duration": "" if self.duration is None else f"{self.duration:.3f}",
            "sessions_ended": str(self.sessions_ended),
            "tokens_ended": str(self.tokens_ended),
            "ended_sessions": ",".join(self.ended_session_hashes),
            "not_before": "" if self.not_before is None else repr(self.not_before),
            "schemes": ",".join(self.schemes),
            "restored": "" if self.restored is None else str(self.restored).lower(),
            "oidc_sid_hash": self.oidc_sid_hash or "",
            "end_session": self.end_session or "",
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
