"""What every ordinary request pays: the revocation checks of its credentials.

A request carrying the session cookie or a bearer token is checked against the
revocation state; everything else passes on a path comparison. The checks answer from
the process's :class:`~.revocation.RevocationMirror` when it is live, and otherwise ask
Redis in one pipeline (:class:`~.ops.Check`). Per process, two bounded caches make the
steady state cheap:

* tokens: the token's hash and unverified claims, by the token (no hashing or JWT
  decoding on a repeat);
* sessions: the session id, its hash, its subject and when its record was last read,
  by the cookie's value. A session's record is read to learn its subject at most once
  every :data:`SESSION_REREAD` seconds per process while it is in use, after the
  app has answered (:meth:`LogoutCore.learn`).

Verdicts: a revoked token, or a JWT whose ``iat`` is not after its subject's not-before,
gets ``401 invalid_token`` (RFC 6750 section 3.1); a revoked session's cookie is taken
out of the request (the app never sees it), expired in the response, and its record,
if a late save re-created it, deleted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from ..config import LogoutConfig
from .cookies import cookie_values, set_cookie_value, sets_cookie
from .credentials import PASS, Credentials, KnownSession, KnownToken, Verdict
from .ops import Check, Checked
from .revocation import RevocationKeys, RevocationMirror, member, oidc_sid_hash, sha256_hex
from .sessions import SessionIds
from .tokens import TokenClaims, bearer_token, cookie_token, read_claims

# The values are defined in .credentials; importing them from here keeps working.
__all__ = [
    "CACHE_SIZE",
    "PASS",
    "SESSION_REREAD",
    "Credentials",
    "KnownSession",
    "KnownToken",
    "RequestChecks",
    "Verdict",
]

#: How often one process reads a session's record while it is in use, seconds.
SESSION_REREAD = 60.0
#: How many tokens and sessions each cache holds; a full cache starts again empty.
CACHE_SIZE = 10_000
#: Methods that do not log anyone in (RFC 9110 section 9.2.1, safe methods).
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_K = TypeVar("_K")
_V = TypeVar("_V")


class _Bounded(Generic[_K, _V]):
    """A dict that forgets everything when it reaches :data:`CACHE_SIZE` entries."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: dict[_K, _V] = {}

    def put(self, key: _K, value: _V) -> _V:
        if len(self.data) >= CACHE_SIZE:
            self.data.clear()
        self.data[key] = value
        return value


_NOTHING = Credentials()
_REFUSE = Verdict(refuse=True)
_UNAVAILABLE = Verdict(unavailable=True)


class RequestChecks:
    """The per-request checks and the two caches of one process.

    :param config: the settings.
    :param keys: the revocation state's key names.
    :param mirror: the process's mirror, or None without a store.
    :param monotonic: ``time.monotonic`` unless a test needs another clock.
    """

    def __init__(
        self,
        config: LogoutConfig,
        keys: RevocationKeys,
        mirror: RevocationMirror | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._mirror = mirror
        self._ids = SessionIds(config)
        self._monotonic = monotonic
        self._cookie = config.session_cookie
        self._templates = config.session_keys
        self._tokens: _Bounded[bytes, KnownToken | None] = _Bounded()
        self._by_value: _Bounded[str, KnownSession | None] = _Bounded()
        self._by_member: _Bounded[int, KnownSession] = _Bounded()
        self._on_check_error = config.on_check_error
        #: Whether session records are read at all: they name something to learn
        #: (``LOGOUT_SESSION_SUBJECT`` or ``LOGOUT_SESSION_OIDC_SID``).
        self.learns = bool(config.session_subject or config.session_oidc_sid)
        #: ``LOGOUT_TOKEN_COOKIE``: the cookie that carries a token, or None.
        self.token_cookie = config.token_cookie
        self._by_header: _Bounded[str | bytes, Credentials] = _Bounded()
        self._by_authorization: _Bounded[bytes, Credentials] = _Bounded()
        #: Whether sessions are checked (Redis configured); tokens also need
        #: ``LOGOUT_REVOKE_TOKENS``.
        self.sessions = mirror is not None
        self.tokens = mirror is not None and config.revoke_tokens

    # -- what the request carries ------------------------------------------------

    def cookie_credentials(self, cookie_header: str | bytes) -> Credentials:
        """What a ``Cookie`` header (text, or latin-1 bytes as ASGI gives it) carries:
        every distinct session in the session cookie's copies and every token in the
        token cookie's, in order (:func:`~.cookies.cookie_values`: a copy the app's
        framework may read is never left unchecked). Cached by the whole header: a
        browser sends the same one request after request."""
        cached = self._by_header.data.get(cookie_header)
        if cached is not None:
            return cached
        text = (
            cookie_header.decode("latin-1") if isinstance(cookie_header, bytes) else cookie_header
        )
        sessions = self._sessions(text)
        token_cookie = self.token_cookie
        tokens = self._cookie_tokens(text, token_cookie) if token_cookie is not None else ()
        found = (
            Credentials(sessions, tokens[0])
            if len(tokens) == 1
            else Credentials(sessions, None, tokens)
        )
        return self._by_header.put(cookie_header, found)

    def cookie_sessions(self, cookie_header: str | bytes) -> tuple[KnownSession, ...]:
        """Every distinct session the session cookie carries
        (:meth:`cookie_credentials`), the first copy's first."""
        return self.cookie_credentials(cookie_header).sessions

    def session(self, cookie_header: str | bytes) -> KnownSession | None:
        """The first of :meth:`cookie_sessions`, or None."""
        return self.cookie_credentials(cookie_header).session

    def _sessions(self, cookie_header: str) -> tuple[KnownSession, ...]:
        found: dict[str, KnownSession] = {}
        data = self._by_value.data
        for value in cookie_values(cookie_header, self._cookie):
            if value in data:
                known = data[value]
            else:
                sid = self._ids.session_id(value)
                known = self._by_value.put(value, self.known_session(sid) if sid else None)
            if known is not None and known.sid not in found:
                found[known.sid] = known
        return tuple(found.values())

    def carries(self, session: KnownSession) -> Callable[[tuple[str, ...]], bool]:
        """A test of a cookie copy's values (:func:`~.cookies.copy_values`): whether
        one of them is ``session``'s id."""
        ids = self._ids
        return lambda values: any(ids.session_id(value) == session.sid for value in values)

    def known_session(self, sid: str) -> KnownSession:
        """The process's record of session ``sid``, made on first sight."""
        digest = sha256_hex(sid.encode())
        at = member(digest)
        known = self._by_member.data.get(at)
        if known is None or known.sid != sid:
            keys = tuple(t.replace("{sid}", sid) for t in self._templates)
            known = self._by_member.put(at, KnownSession(sid, digest, at, keys))
        return known

    def forget(self, session: KnownSession) -> None:
        """Mark an ended session's record as deleted by this process, so that its
        follower does not delete it again (:meth:`LogoutCore.records_of`). A late save
        is still caught: the request that saves it sees the tombstone when it ends."""
        session.deleted = True

    def known(self, digests: Iterable[str]) -> list[KnownSession]:
        """The sessions among ``digests`` (SHA-256 hex of their ids) whose ids this
        process knows, so that their records can be deleted."""
        found = []
        for digest in digests:
            known = self._by_member.data.get(member(digest))
            if known is not None and known.hash == digest:
                found.append(known)
        return found

    def by_member(self, session_member: int) -> KnownSession | None:
        """The session with this member, when this process knows its id."""
        return self._by_member.data.get(session_member)

    def token(self, authorization: bytes) -> KnownToken | None:
        """The request's bearer token (RFC 6750 section 2.1), or None."""
        data = self._tokens.data
        if authorization in data:
            return data[authorization]
        token = bearer_token(authorization)
        known = self._known_token(token) if token is not None else None
        return self._tokens.put(authorization, known)

    def cookie_tokens(self, cookie_header: str | bytes) -> tuple[KnownToken, ...]:
        """Each distinct token the token cookie carries (:meth:`cookie_credentials`): a
        request may send the cookie more than once, and which copy the app reads is its
        framework's choice, so every copy is checked."""
        found = self.cookie_credentials(cookie_header)
        return (found.token,) if found.token is not None else found.cookie_tokens

    def _cookie_tokens(self, cookie_header: str, name: str) -> tuple[KnownToken, ...]:
        found: dict[bytes, KnownToken] = {}
        data = self._tokens.data
        for value in cookie_values(cookie_header, name):
            token = cookie_token(value)
            if token is None or token in found:
                continue
            key = b"\0cookie " + token  # never an Authorization header's bytes
            known = data.get(key) or self._tokens.put(key, self._known_token(token, in_cookie=True))
            if known is not None:
                found[token] = known
        return tuple(found.values())

    def credentials(
        self, cookie_header: str | bytes | None, authorization: bytes | None
    ) -> Credentials:
        """A request's credentials (:class:`Credentials`), from its ``Cookie`` header
        fields joined with ``; `` and its one ``Authorization`` header (either None when
        absent). A bearer token is the request's token; the token cookie's values are
        then checked beside it."""
        if not cookie_header:
            if not authorization or not self.tokens:
                return _NOTHING
            cached = self._by_authorization.data.get(authorization)
            if cached is None:
                bearer = self.token(authorization)
                found = Credentials((), bearer) if bearer is not None else _NOTHING
                cached = self._by_authorization.put(authorization, found)
            return cached
        token = self.token(authorization) if authorization and self.tokens else None
        found = self.cookie_credentials(cookie_header)
        if token is None:
            return found
        in_cookie = (found.token,) if found.token is not None else found.cookie_tokens
        return Credentials(found.sessions, token, in_cookie)

    def _known_token(self, token: bytes, *, in_cookie: bool = False) -> KnownToken:
        digest = sha256_hex(token)
        claims = read_claims(token)
        subject = claims.sub if claims is not None else None
        sid = (
            oidc_sid_hash(claims.iss, claims.sid)
            if claims is not None and claims.iss and claims.sid
            else None
        )
        return KnownToken(
            digest,
            member(digest),
            self._keys.token(digest),
            claims,
            member(sha256_hex(subject.encode())) if subject is not None else None,
            sid,
            member(sid) if sid is not None else None,
            in_cookie,
        )

    # -- the checks -----------------------------------------------------------------

    def check(self, session: KnownSession | None, token: KnownToken | None) -> Verdict | Check:
        """The verdict, or the :class:`Check` to ask Redis when the mirror cannot say
        (then pass its answer to :meth:`answer`)."""
        return self._judge(session, token, None)

    def answer(
        self, session: KnownSession | None, token: KnownToken | None, checked: Checked | None
    ) -> Verdict:
        """The verdict given Redis's answer to :meth:`check`'s question.

        When Redis failed (``checked`` is None), what the mirror holds still counts: a
        token it holds is refused and a session it holds is taken out; whatever it could
        not vouch for is left to ``LOGOUT_ON_CHECK_ERROR`` (``deny``: ``503``)."""
        if checked is None:
            mirror = self._mirror
            if mirror is None:
                return PASS
            checks_token = token is not None and self.tokens
            token_revoked = (
                checks_token and token is not None and mirror.token_revoked(token.member)
            )
            revoked = session is not None and bool(mirror.session_revoked(session.member))
            stripped = (session,) if revoked and session is not None else ()
            if token_revoked and token is not None:
                return self._refused(token, stripped)
            deny = self._on_check_error == "deny"
            if deny and (checks_token or (session is not None and not revoked)):
                return _UNAVAILABLE
            return Verdict(strip=stripped) if stripped else PASS
        verdict = self._judge(session, token, checked)
        return verdict if isinstance(verdict, Verdict) else PASS

    def _judge(
        self, session: KnownSession | None, token: KnownToken | None, checked: Checked | None
    ) -> Verdict | Check:
        mirror = self._mirror
        if mirror is None:
            return PASS
        if not self.tokens:
            token = None
        session_revoked = mirror.session_revoked(session.member) if session else False
        token_revoked: bool | None = False
        not_before: float | None = 0.0
        claims = token.claims if token is not None else None
        subject = claims.sub if claims is not None else None
        sid_revoked: bool | None = False
        if token is not None:
            token_revoked = mirror.token_revoked(token.member)
            if token.subject_member is not None:
                not_before = mirror.not_before_of(token.subject_member)
            if token.oidc_sid_member is not None:
                sid_revoked = mirror.oidc_sid_revoked(token.oidc_sid_member)
        if (
            session_revoked is None
            or token_revoked is None
            or not_before is None
            or sid_revoked is None
        ):
            if checked is None:
                return Check(
                    session_key=self._keys.session(session.hash)
                    if session is not None and session_revoked is None
                    else None,
                    token_key=token.key if token is not None and token_revoked is None else None,
                    not_before_key=self._keys.not_before(subject)
                    if subject is not None and not_before is None
                    else None,
                    oidc_sid_key=self._keys.oidc_sid(token.oidc_sid)
                    if token is not None and token.oidc_sid is not None and sid_revoked is None
                    else None,
                )
            session_revoked = session_revoked or checked.session_revoked
            token_revoked = token_revoked or checked.token_revoked
            not_before = not_before or checked.not_before
            sid_revoked = sid_revoked or checked.oidc_sid_revoked
        refused = token is not None and bool(
            token_revoked or sid_revoked or self._before(claims, not_before or 0.0)
        )
        if refused and token is not None and not token.in_cookie:
            return _REFUSE
        strip = (session,) if session_revoked and session is not None else ()
        if strip:
            mirror.add(sessions=(strip[0].hash,))
        if refused:
            return Verdict(strip=strip, strip_token=True)
        return Verdict(strip=strip) if strip else PASS

    @staticmethod
    def _refused(token: KnownToken, strip: tuple[KnownSession, ...]) -> Verdict:
        """A revoked token's verdict: ``401`` for a bearer token; for the token cookie,
        the cookie taken out and expired (with the session's, when it is revoked too)."""
        return Verdict(strip=strip, strip_token=True) if token.in_cookie else _REFUSE

    @staticmethod
    def _before(claims: TokenClaims | None, not_before: float) -> bool:
        """Whether a JWT was issued at or before its subject's not-before time.

        ``iat`` has whole seconds (RFC 7519 section 2, NumericDate), so a token issued
        in the same second as a logout everywhere is refused too: a token is accepted
        only when ``iat > not_before``. A JWT without ``iat`` is refused once its
        subject has a not-before, since nothing shows it is newer."""
        if not not_before or claims is None:
            return False
        return claims.iat is None or claims.iat <= not_before

    def revoked_since(self, session: KnownSession) -> bool:
        """Whether ``session`` was revoked while its request was in the app (this
        process's mirror knows of it): its record may have been saved again."""
        mirror = self._mirror
        return mirror is not None and session.member in mirror.state.sessions

    def due(self, session: KnownSession, method: str = "GET", saved: bool = False) -> bool:
        """Whether the session's record should be read now to learn its subject: never
        read by this process, or last read :data:`SESSION_REREAD` seconds ago or more, or
        the request was not ``GET``/``HEAD``/``OPTIONS``, or (``saved``) the app set the
        session cookie while no subject was known: each may have logged a user in or
        switched users in a session whose id the app did not renew (an OpenID Connect
        callback is a ``GET``)."""
        if not self.learns:
            return False
        if method not in _SAFE_METHODS or saved:
            return True
        read_at = session.read_at
        return read_at is None or self._monotonic() - read_at >= SESSION_REREAD

    def anonymous(self, session: KnownSession) -> bool:
        """Whether the session was read and named no subject: the adapters then watch
        the response for the session cookie (:meth:`due`'s ``saved``)."""
        return self.learns and session.read_at is not None and session.subject is None

    def sets_session_cookie(self, set_cookies: Iterable[str]) -> bool:
        """Whether any of the response's ``Set-Cookie`` values sets the session cookie."""
        return sets_cookie(set_cookies, self._cookie)

    def watches(self, session: KnownSession | None, method: str) -> bool:
        """Whether the adapters should note the response's ``Set-Cookie`` values: when
        subjects are learned, for an unsafe request (a login may issue a session) and for
        a request of a session read as anonymous (an OpenID Connect callback may log it
        in without renewing its id)."""
        return self.learns and (
            method not in _SAFE_METHODS or (session is not None and self.anonymous(session))
        )

    def issued(
        self, set_cookies: Iterable[str], session: KnownSession | None
    ) -> KnownSession | None:
        """The session a response gives the client when it is not the request's own: a
        login that issued a session id, or renewed it (Django, starsessions'
        ``regenerate_session_id``). Its record is read and indexed at once, so that
        logging its user out everywhere finds it even before its next request. None
        when the response sets no session cookie, or only deletes it, or sets the
        request's own."""
        name = self._cookie
        for value in set_cookies:
            cookie = set_cookie_value(value, name)
            if not cookie:
                continue
            sid = self._ids.session_id(cookie)
            if sid and (session is None or sid != session.sid):
                return self.known_session(sid)
        return None

    def mark_read(self, session: KnownSession) -> None:
        """Record that the session's record was just read."""
        session.read_at = self._monotonic()
