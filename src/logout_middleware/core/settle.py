"""After the app answered: learn whose session it was, or clean up after a late save.

A request's session record is read (at most once a minute per session per process, and
after requests that may log someone in) to learn its subject and OpenID provider
session, and the session is indexed under them, so that logging out everywhere and
back-channel logouts find it. A session revoked while its request was in the app may
have been saved again: its record is deleted. Ended sessions that other processes
revoked are deleted by the store's follower, with :meth:`Settling.records_of`.
"""

from __future__ import annotations

from collections.abc import Iterable

from .credentials import KnownSession
from .ops import Delete, Flow, Index, Read, Reading
from .parts import Parts
from .revocation import oidc_sid_hash
from .sessions import read_record

__all__ = ["Settling"]


class Settling:
    """The after-the-app flows of one process.

    :param parts: the core's shared parts.
    """

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._checks = parts.checks

    def records_of(self, members: Iterable[int]) -> tuple[str, ...]:
        """The record keys of the ended sessions (by mirror member) whose ids this
        process knows; the store's follower deletes them."""
        found: list[str] = []
        for at in members:
            known = self._checks.by_member(at)
            if known is not None and not known.deleted:
                found += known.keys
        return tuple(found)

    def unsettled(
        self,
        session: KnownSession | None,
        method: str,
        set_cookies: list[str] | None = None,
        others: tuple[KnownSession, ...] = (),
    ) -> bool:
        """Whether :meth:`settle` has anything to do after a request with ``session``
        (or none) and ``method`` whose response set ``set_cookies`` (None when the
        adapter did not watch: :meth:`~.checks.RequestChecks.watches`), and ``others``.
        Cheap: adapters skip the flow when it has not."""
        checks = self._checks
        if others and any(checks.revoked_since(other) for other in others):
            return True
        if session is not None and (
            checks.revoked_since(session)
            or checks.due(session, method, bool(set_cookies) and self._saved(session, set_cookies))
        ):
            return True
        # A response that sets the session cookie may issue a session: settle() finds out
        # (verifying a signed id once, there, not here too).
        return set_cookies is not None and checks.sets_session_cookie(set_cookies)

    def _saved(self, session: KnownSession, set_cookies: list[str] | None) -> bool:
        """The response set the session cookie of a session read as anonymous."""
        checks = self._checks
        return bool(
            set_cookies and checks.anonymous(session) and checks.sets_session_cookie(set_cookies)
        )

    def settle(
        self,
        session: KnownSession | None,
        method: str = "GET",
        set_cookies: list[str] | None = None,
        others: Iterable[KnownSession] = (),
    ) -> Flow[None]:
        """After the app answered a request with ``session`` (the one its cookie left to
        the app): delete its record when the session was revoked meanwhile (a late save
        re-created it), else read the record when due
        (:meth:`~.checks.RequestChecks.due`) to learn its subject, and index the session
        under it. Then the same for a session the response issued
        (:meth:`~.checks.RequestChecks.issued`): a login's new session is indexed at once.
        ``others`` are the request's other sessions (further copies of its cookie): each
        record is deleted when its session was revoked meanwhile, and never read.

        One ``DEL``; or one read and one index write per session per
        :data:`~.checks.SESSION_REREAD` seconds per process (and after each unsafe
        request while no subject is known, and for each session a response issues);
        else nothing.
        """
        checks = self._checks
        for other in others:
            if other is not session and checks.revoked_since(other):
                yield Delete(other.keys)
        if session is not None:
            if checks.revoked_since(session):
                yield Delete(session.keys)
            elif checks.due(session, method, self._saved(session, set_cookies)):
                yield from self._read(session)
        issued = checks.issued(set_cookies, session) if set_cookies else None
        if issued is not None and checks.due(issued, "POST"):
            yield from self._read(issued)

    def _read(self, session: KnownSession) -> Flow[None]:
        """Read the session's record and learn from it."""
        checks = self._checks
        periodic = checks.due(session)
        checks.mark_read(session)
        reading: Reading | None = yield Read(gets=(session.keys[0],))
        if reading is not None:
            yield from self._learned(session, reading.values[0], periodic)

    def _learned(self, session: KnownSession, raw: bytes | None, periodic: bool) -> Flow[None]:
        """Record what the session's record says; index it under its subject when the
        subject is new or changed, or on the periodic read (which renews the entry)."""
        parts = self._parts
        config, keys, provider = parts.config, parts.keys, parts.provider
        record = read_record(raw, config)
        previous = session.subject
        session.subject = record.subject if record else None
        session.created = record.created if record else None
        sid = record.oidc_sid if record is not None else None
        ttl = config.session_ttl
        if sid is not None and provider is not None and (periodic or sid != session.oidc_sid):
            now = parts.clock()
            yield Index(
                key=keys.oidc_index(oidc_sid_hash(provider.issuer, sid)),
                member=session.hash,
                expires_at=now + ttl,
                now=now,
                ttl=ttl,
            )
        session.oidc_sid = sid
        if session.subject is None or (session.subject == previous and not periodic):
            return
        now = parts.clock()
        yield Index(
            key=keys.index(session.subject),
            member=session.hash,
            expires_at=now + ttl,
            now=now,
            ttl=ttl,
            previous=keys.index(previous)
            if previous is not None and previous != session.subject
            else None,
        )
