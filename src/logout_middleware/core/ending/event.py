"""The events an ending emits: who and what ended, typed as KeyHippo types them.

One :class:`~logout_middleware.events.LogoutEvent` for the request's own credentials
(its session, its token, with the subject's other sessions everywhere), and one more for
a second token (the token cookie's, when it differs from the bearer token). Secrets are
named by their SHA-256 only.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timezone

from ...events import EventType, LogoutEvent, SubjectSource
from ..credentials import KnownSession
from ..parts import Parts
from ..revocation import sha256_hex
from ..tokens import TokenClaims, token_ttl
from .request import Ending, Scope, Tokens

__all__ = ["ending_events", "event_type", "second_event"]


def ending_events(
    parts: Parts,
    ending: Ending,
    scope: Scope,
    session: KnownSession | None,
    tokens: Tokens,
    subject: str | None,
    source: SubjectSource | None,
    others: list[str],
    now: float,
) -> tuple[LogoutEvent, tuple[LogoutEvent, ...]]:
    """The ending's event, and the token cookie's second token's when it ends (its
    own audit entry). ``others``: the hashes of the other sessions that end; ``now``:
    seconds since the epoch."""
    config = parts.config
    claims = tokens.claims
    revoke_token = scope.token and config.revoke_tokens
    token = tokens.token
    token_hash = sha256_hex(token) if token is not None and scope.token else None
    ttl = token_ttl(claims, now, config) if token_hash is not None else None
    not_before = now if ending.everywhere and "bearer" in scope.schemes else None
    duration = None
    if scope.session and session is not None and session.created is not None:
        duration = max(0.0, now - session.created)
    elif scope.token and claims is not None and claims.iat is not None:
        duration = max(0.0, now - claims.iat)
    ended_sessions = len(others) + scope.session
    impersonator = scope.session_impersonator if scope.session else None
    if impersonator is None and scope.token:
        impersonator = scope.token_impersonator
    asked = ending.asked
    event = LogoutEvent(
        id=uuid.uuid4().hex,
        at=datetime.fromtimestamp(now, timezone.utc),
        method=asked.method,
        path=asked.path,
        cookies=scope.expired,
        session_id_hash=session.hash if scope.session and session is not None else None,
        sessions_deleted=0,
        token_hash=token_hash,
        token_ttl=ttl,
        client=asked.client,
        user_agent=asked.user_agent,
        redirect=asked.redirect,
        store="disabled",
        type=event_type(impersonator, ended_sessions, scope.token or not_before is not None),
        reason=ending.reason,
        subject=subject,
        subject_source=source,
        impersonator=impersonator,
        duration=duration,
        sessions_ended=ended_sessions if parts.has_store else 0,
        tokens_ended=int(revoke_token and parts.has_store),
        ended_session_hashes=tuple(others),
        not_before=not_before,
        schemes=scope.schemes,
        end_session=asked.end_session,
    )
    if not scope.second or tokens.second is None:
        return event, ()
    return event, (second_event(parts, event, tokens.second, tokens.second_claims, now),)


def second_event(
    parts: Parts, event: LogoutEvent, token: bytes, claims: TokenClaims | None, now: float
) -> LogoutEvent:
    """The event of a second token ended with ``event`` (a token cookie's that is not
    the bearer token): the same request, this token alone, named by its hash."""
    actor = claims.actor if claims is not None else None
    sub = claims.sub if claims is not None else None
    source: SubjectSource | None = None
    if sub is not None and claims is not None:
        source = "jwt" if claims.verified else "jwt_unverified"
    iat = claims.iat if claims is not None else None
    return replace(
        event,
        id=uuid.uuid4().hex,
        cookies=(),
        session_id_hash=None,
        token_hash=sha256_hex(token),
        token_ttl=token_ttl(claims, now, parts.config),
        type=event_type(actor, 0, api=True),
        subject=sub,
        subject_source=source,
        impersonator=actor,
        duration=max(0.0, now - iat) if iat is not None else None,
        sessions_ended=0,
        tokens_ended=int(parts.config.revoke_tokens and parts.has_store),
        ended_session_hashes=(),
        not_before=None,
        schemes=("bearer",),
        restored=None,
        end_session=None,
    )


# -- plan the writes --------------------------------------------------------------


def event_type(impersonator: str | None, sessions: int, api: bool) -> EventType:
    """KeyHippo's context types: an impersonation (an RFC 8693 ``act`` token, or a
    session naming its impersonator) first, then a session, then an API credential;
    ``anon_context_end`` when nothing was ended."""
    if impersonator is not None:
        return "impersonation_end"
    if sessions:
        return "session_end"
    if api:
        return "api_session_end"
    return "anon_context_end"
