"""Ending credentials, step by step: what a logout, logging out everywhere, an
impersonation's end and an operator's revocation have in common.

:class:`Ender` carries out an :class:`~.request.Ending` in small sub-flows, each with one
job: sort the tokens, learn the subject (read the session's record when due), decide
what ends, find what else ends (the subject's other sessions, an impersonator's session
to restore), name it in events (:mod:`.event`) and plan the writes (:mod:`.writes`), all
in one transaction.
"""

from __future__ import annotations

from dataclasses import replace

from ...events import SubjectSource
from ..credentials import KnownSession
from ..everywhere import Prefetched, other_sessions, reading_with_index
from ..impersonation import original_session
from ..ops import Flow, Reading, StoreOutcome, Verify
from ..parts import Parts
from ..schemes import ALL_SCHEMES
from ..sessions import SessionRecord, read_record
from ..tokens import TokenClaims, read_claims
from .event import ending_events
from .request import Ended, Ending, Scope, Tokens
from .writes import planned_writes

__all__ = ["Ender"]


class Ender:
    """Carries out :class:`Ending` requests.

    :param parts: the core's shared parts.
    """

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._impersonation_configured = bool(
            parts.config.session_impersonator or parts.config.session_original
        )
        self._keeps_id_token = bool(parts.config.oidc_end_session and parts.config.session_id_token)

    def end(self, ending: Ending) -> Flow[Ended]:
        """End what ``ending`` names.

        The subject is the operator's when given, else the session record's (read now
        unless this process read it within :data:`~.checks.SESSION_REREAD` seconds;
        always for a subject-wide logout or when impersonation is configured), else
        the JWT's ``sub``. A subject-wide logout takes only a trusted subject: given,
        from the session, or from a verified JWT; without one it changes nothing
        (:attr:`Ended.no_subject`). Ending an impersonated session restores the
        impersonator's own when :func:`~.impersonation.original_session` allows
        (:attr:`Ended.restore`). An ended token's records (``LOGOUT_TOKEN_KEYS``) are
        deleted whether or not ``LOGOUT_REVOKE_TOKENS`` revokes it.

        Round trips: the session read when due, the original session's read when
        restoring, the index read with ``everywhere``, and one ``MULTI``/``EXEC`` with
        every write and the audit entry.
        """
        parts = self._parts
        now = parts.clock()
        sid = ending.session_id
        session = parts.checks.known_session(sid) if sid else None
        tokens = yield from self._tokens(ending)
        record, prefetched = yield from self._learn(ending, session, now)
        scope = self._scope(ending, session, record, tokens)
        if scope is None:
            return Ended(None, not_impersonating=True)
        subject, source = self._subject(ending, session, tokens.claims)
        if ending.everywhere and source not in ("admin", "session", "jwt"):
            return Ended(None, no_subject=True)
        restore: KnownSession | None = None
        restored: bool | None = None
        impersonator = scope.session_impersonator
        if scope.session and session is not None and impersonator is not None and parts.has_store:
            restore = yield from original_session(parts, session, record, impersonator)
            restored = restore is not None
        others = yield from self._others(ending, scope, session, subject, prefetched, now)
        event, more = ending_events(
            parts, ending, scope, session, tokens, subject, source, others, now
        )
        event = replace(event, restored=restored)
        id_token = record.id_token if record is not None and scope.session else None
        if not parts.has_store or parts.mirror is None:
            return Ended(event, id_token=id_token, more=more)
        ops = planned_writes(parts, ending, scope, session, tokens, event, more, others, now)
        outcome: StoreOutcome | None = yield ops
        if outcome is None:  # driven without a store
            outcome = StoreOutcome("failed", error="no store")
        done = replace(
            event,
            store=outcome.status,
            sessions_deleted=outcome.sessions_deleted,
            store_error=outcome.error,
        )
        return Ended(
            done,
            restore=restore if outcome.status == "ok" else None,
            id_token=id_token,
            more=tuple(replace(e, store=outcome.status, store_error=outcome.error) for e in more),
        )

    # -- learn ------------------------------------------------------------------------

    def _tokens(self, ending: Ending) -> Flow[Tokens]:
        """Which token the logout is about, with the claims of each (verified when a
        key is configured)."""
        token, second, from_cookie = ending.token, ending.cookie_token, False
        if second is not None and token in (None, second):
            token, second, from_cookie = second, None, True
        claims = yield from self._claims(token)
        second_claims = yield from self._claims(second)
        if (
            ending.impersonation_only
            and second_claims is not None
            and second_claims.actor is not None
            and (claims is None or claims.actor is None)
        ):  # the token cookie's token is the one that impersonates: it comes first
            return Tokens(second, second_claims, token, claims, True)
        return Tokens(token, claims, second, second_claims, from_cookie)

    def _claims(self, token: bytes | None) -> Flow[TokenClaims | None]:
        """A token's claims: verified when a key is configured and the signature holds,
        else as read (None for an opaque token, or no token)."""
        if token is None:
            return None
        claims = read_claims(token)
        if self._parts.verifier.enabled:
            verified: TokenClaims | None = yield Verify(token)
            if verified is not None:
                claims = verified
        return claims

    def _learn(
        self, ending: Ending, session: KnownSession | None, now: float
    ) -> Flow[tuple[SessionRecord | None, Prefetched | None]]:
        """Read the session's record when due (always for a subject-wide logout, with
        impersonation configured, or when the ID token is kept), and with
        ``everywhere`` the index of the subject this process last saw, in the same
        round trip."""
        parts = self._parts
        checks = parts.checks
        fresh = ending.everywhere or self._impersonation_configured or self._keeps_id_token
        if session is None or not parts.has_store or not (fresh or checks.due(session)):
            return None, None
        checks.mark_read(session)
        everywhere = ending.everywhere and "session" in ending.schemes
        guess = session.subject if everywhere else None
        reading: Reading | None = yield reading_with_index(parts, session.keys[0], guess, now)
        if reading is None:
            session.read_at = None  # not read after all: try again next time
            return None, None
        record = read_record(reading.values[0], parts.config)
        session.subject = record.subject if record else None
        session.created = record.created if record else None
        session.oidc_sid = record.oidc_sid if record else None
        return record, (guess, reading.members[0]) if guess is not None else None

    # -- decide -----------------------------------------------------------------------

    def _scope(
        self,
        ending: Ending,
        session: KnownSession | None,
        record: SessionRecord | None,
        tokens: Tokens,
    ) -> Scope | None:
        """What ends, by scheme; None at the impersonation URI when nothing
        impersonates."""
        config = self._parts.config
        schemes = ending.schemes
        session_impersonator = record.impersonator if record is not None else None
        token_impersonator = tokens.claims.actor if tokens.claims is not None else None
        ends_session = session is not None and "session" in schemes
        ends_token = tokens.token is not None and "bearer" in schemes
        ends_second = tokens.second is not None and "bearer" in schemes
        if ending.impersonation_only:
            second = tokens.second_claims
            ends_session = ends_session and session_impersonator is not None
            ends_token = ends_token and token_impersonator is not None
            ends_second = ends_second and second is not None and second.actor is not None
            if not (ends_session or ends_token):
                return None
            schemes = tuple(
                s for s in ALL_SCHEMES if (ends_session, ends_token)[ALL_SCHEMES.index(s)]
            )
        expired: tuple[str, ...] = ()
        if ending.asked.method:  # an HTTP logout: the cookies of the ended schemes
            expired = config.expired_cookies if "session" in schemes else ()
            ends_cookie = (tokens.from_cookie and ends_token) or ends_second
            if (
                config.token_cookie
                and "bearer" in schemes
                and (ends_cookie or not ending.impersonation_only)
            ):
                expired = tuple(dict.fromkeys((*expired, config.token_cookie)))
        return Scope(
            ends_session,
            ends_token,
            ends_second,
            schemes,
            expired,
            session_impersonator,
            token_impersonator,
        )

    @staticmethod
    def _subject(
        ending: Ending, session: KnownSession | None, claims: TokenClaims | None
    ) -> tuple[str | None, SubjectSource | None]:
        """Whose credentials end, and how that is known."""
        if ending.subject is not None:
            return ending.subject, "admin"
        if session is not None and session.subject is not None:
            return session.subject, "session"
        if claims is not None and claims.sub is not None:
            return claims.sub, "jwt" if claims.verified else "jwt_unverified"
        return None, None

    def _others(
        self,
        ending: Ending,
        scope: Scope,
        session: KnownSession | None,
        subject: str | None,
        prefetched: Prefetched | None,
        now: float,
    ) -> Flow[list[str]]:
        """The hashes of the other sessions that end: the subject's, everywhere, and the
        further copies of the session cookie."""
        parts = self._parts
        found: list[str] = []
        own = session.hash if session is not None else None
        everywhere = ending.everywhere and "session" in scope.schemes
        if everywhere and subject is not None and parts.has_store:
            found = yield from other_sessions(parts, subject, own, prefetched, now)
        if ending.copies and scope.session and not ending.impersonation_only and own:
            for copy in ending.copies:
                digest = parts.checks.known_session(copy).hash
                if digest != own and digest not in found:
                    found.append(digest)
        return found

    # -- name it ----------------------------------------------------------------------
