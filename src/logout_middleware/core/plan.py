"""The plan of a logout: :class:`LogoutCore`, the one object the adapters talk to.

The adapters (:mod:`logout_middleware.asgi`, :mod:`logout_middleware.wsgi`) translate a
request into a :class:`~.messages.RequestHead`, run the core's flows with their store's
driver, and render the :class:`~.messages.Response` that comes back. A flow is a
generator that yields I/O requests (:mod:`.ops`) and is sent their results, so every
decision lives here, once, and both adapters (and :func:`logout_middleware.revoke`)
carry out the same plan.

At the logout URI (and the everywhere URI)::

    route = core.route(path, root_path)       # "logout", "everywhere" or None
    core.admit(head, route)                   # -> Response (refusal) | int (body bytes)
    drive(core.logout(head, body, route))     # -> (Response, LogoutEvent | None)

On every other request carrying the session cookie or a bearer token::

    verdict = core.checks.check(session, token)   # or a Check for Redis, then .answer()
    ... pass to the app (without a revoked session's cookie) ...
    drive(core.settle(session))                   # after the app: learn or clean up
"""

from __future__ import annotations

import html
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Literal

from werkzeug.exceptions import RequestEntityTooLarge

from ..config import ConfigError, LogoutConfig
from ..events import EventType, LogoutEvent, Reason, SubjectSource
from .admission import same_origin, wants_json
from .checks import Credentials, KnownSession, KnownToken, RequestChecks, Verdict
from .cookies import cookie_value, expire_cookie, restore_cookie, sets_cookie, without_cookie
from .forms import request_params
from .messages import RequestHead, Response, json_response, text_response
from .oidc import LogoutTokenClaims, LogoutTokenError, OIDCProvider, end_session_url
from .ops import (
    Check,
    Checked,
    Claim,
    Delete,
    Discover,
    Flow,
    Index,
    Read,
    Reading,
    StoreOps,
    StoreOutcome,
    Verify,
    VerifyLogoutToken,
)
from .redirects import choose_next
from .revocation import RevocationKeys, RevocationMirror, member, oidc_sid_hash, sha256_hex
from .schemes import ALL_SCHEMES, Scheme, parse_schemes
from .sessions import SessionIds, SessionRecord, read_record
from .tokens import (
    TokenClaims,
    TokenVerifier,
    bearer_token,
    cookie_token,
    read_claims,
    token_records,
    token_ttl,
)

__all__ = ["Ended", "LogoutCore", "Route"]

logger = logging.getLogger("logout_middleware")

_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

#: Which URI a request is for.
Route = Literal["logout", "everywhere", "impersonation", "backchannel"]


@dataclass(frozen=True, slots=True)
class Ended:
    """The result of ending credentials: the event (complete, or None when refused), and
    why it was refused (then nothing was changed): a subject-wide logout without a trusted
    subject, or an impersonation-only logout of a request that is not impersonating."""

    event: LogoutEvent | None
    no_subject: bool = False
    not_impersonating: bool = False
    #: The impersonator's own session, to set the session cookie back to.
    restore: KnownSession | None = None
    #: The raw ID token from the session record (``LOGOUT_SESSION_ID_TOKEN``), or None.
    id_token: str | None = None
    #: The events of further contexts ended with it: a token in ``LOGOUT_TOKEN_COOKIE``
    #: that differs from the request's bearer token (one audit entry each).
    more: tuple[LogoutEvent, ...] = ()


class LogoutCore:
    """Every decision of the middleware, precomputed where it can be.

    :param config: the checked configuration.
    :param has_store: whether a Redis store is attached; without one, a logout plans no
        server-side writes and no request is checked.
    :param clock: seconds since the epoch; ``time.time`` unless a test needs another.
    :param monotonic: ``time.monotonic`` unless a test needs another.
    """

    def __init__(
        self,
        config: LogoutConfig,
        *,
        has_store: bool,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.everywhere_path and not has_store:
            raise ConfigError(
                "LOGOUT_EVERYWHERE_PATH: logging out everywhere needs Redis (LOGOUT_REDIS_URL)"
            )
        self.config = config
        self.has_store = has_store
        self.keys = RevocationKeys(config)
        #: The process's revocation mirror (None without a store); the store follows the
        #: audit stream into it when ``LOGOUT_REVOCATION_CACHE`` is on.
        self.mirror = RevocationMirror(self.keys) if has_store else None
        #: The per-request checks and their caches.
        self.checks = RequestChecks(config, self.keys, self.mirror, monotonic)
        #: JWT verification with ``LOGOUT_JWT_KEY`` or ``LOGOUT_JWKS_URL``.
        self.verifier = TokenVerifier(config)
        #: Whether ordinary requests are checked at all (a store is configured).
        self.checks_requests = has_store
        self._clock = clock
        self._ids = SessionIds(config)
        self._routes: dict[str, Route] = {config.path: "logout"}
        if config.everywhere_path:
            self._routes[config.everywhere_path] = "everywhere"
        if config.impersonation_path:
            self._routes[config.impersonation_path] = "impersonation"
        if config.backchannel_path:
            self._routes[config.backchannel_path] = "backchannel"
        if config.backchannel_path and not has_store:
            raise ConfigError(
                "LOGOUT_BACKCHANNEL_PATH: back-channel logout needs Redis (LOGOUT_REDIS_URL)"
            )
        #: The OpenID provider (``LOGOUT_OIDC_ISSUER``), or None.
        self.provider = (
            OIDCProvider(config) if config.oidc_issuer and config.oidc_client_id else None
        )
        self._impersonation_configured = bool(
            config.session_impersonator or config.session_original
        )
        self._keeps_id_token = bool(config.oidc_end_session and config.session_id_token)
        self._methods = frozenset(config.methods)
        self._allowed_hosts = frozenset(config.allowed_hosts)
        self._trusted_origins = frozenset(config.trusted_origins)
        allow = list(config.methods)
        if config.on_get == "confirm":
            allow += ["GET", "HEAD"]
        # Cookie deletions, rendered once for plain and for secure requests.
        self._cookie_headers = {
            secure: tuple(
                ("Set-Cookie", expire_cookie(name, secure, config))
                for name in config.expired_cookies
            )
            for secure in (False, True)
        }
        self._session_expiry = {
            secure: expire_cookie(config.session_cookie, secure, config) for secure in (False, True)
        }
        token_cookie = config.token_cookie
        self._token_cookie_expiry = {
            secure: expire_cookie(token_cookie, secure, config) if token_cookie else ""
            for secure in (False, True)
        }
        clear = ", ".join(f'"{kind}"' for kind in config.clear_site_data)
        self._clear_site_data = (("Clear-Site-Data", clear),) if clear else ()
        self._not_allowed = text_response(
            405,
            f"Method Not Allowed: log out with {' or '.join(config.methods)}.\n",
            ("Allow", ", ".join(allow)),
        )
        self._forbidden = text_response(403, "Forbidden: cross-site logout refused.\n")
        self._too_large = text_response(
            413, f"Payload Too Large: at most {config.max_body} bytes.\n"
        )
        #: Answer to a malformed logout request (bad ``Content-Length``, form, or body).
        self.bad_request = text_response(400, "Bad Request: malformed logout request.\n")
        #: Answer when the middleware itself failed; no detail reaches the client.
        self.internal_error = text_response(500, "Internal Server Error: logout failed.\n")
        #: Answer to a request whose bearer token is revoked (RFC 6750 section 3.1).
        self.revoked = json_response(
            401,
            {"error": "invalid_token", "error_description": "The access token has been revoked"},
            (
                (
                    "WWW-Authenticate",
                    'Bearer error="invalid_token", '
                    'error_description="The access token has been revoked"',
                ),
                ("Cache-Control", "no-store"),
            ),
        )
        #: Answer to a request with more than one ``Authorization`` header: which one the
        #: app reads is the framework's choice, so none is let through (RFC 6750
        #: section 3.1, ``invalid_request``).
        self.duplicate_authorization = json_response(
            400,
            {
                "error": "invalid_request",
                "error_description": "More than one Authorization header",
            },
            (
                ("WWW-Authenticate", 'Bearer error="invalid_request"'),
                ("Cache-Control", "no-store"),
            ),
        )
        #: Answer to a request whose ``Cookie`` header carries a revoked session or token
        #: where it cannot be taken out (a pair that only some parsers read, such as
        #: ``x=1, session=...``): which one the app reads is the framework's choice, so
        #: the request does not reach it.
        self.ambiguous_cookie = text_response(
            400, "Bad Request: a cookie of an ended session cannot be taken out.\n"
        )
        #: Answer when revocation cannot be checked and ``on_check_error`` is ``deny``.
        self.check_unavailable = text_response(
            503, "Service Unavailable: revocation cannot be checked.\n", ("Retry-After", "5")
        )
        self._unknown_scheme = json_response(
            400,
            {
                "error": "unknown_scheme",
                "error_description": f"{config.scheme_param} names only session and bearer "
                "(comma-separated or repeated); nothing was changed.",
            },
            (("Cache-Control", "no-store"),),
        )
        self._not_impersonating = json_response(
            409,
            {
                "error": "not_impersonating",
                "error_description": "This request does not impersonate anyone; nothing "
                "was changed.",
            },
            (("Cache-Control", "no-store"),),
        )
        self._backchannel_not_allowed = text_response(
            405, "Method Not Allowed: back-channel logout takes POST.\n", ("Allow", "POST")
        )
        self._backchannel_ok = Response(
            200, (("Cache-Control", "no-store"), ("Content-Length", "0"))
        )
        self._no_subject = json_response(
            400,
            {
                "error": "unknown_subject",
                "error_description": "Logging out everywhere needs a logged-in session "
                "or a verified bearer token; nothing was changed.",
            },
            (("Cache-Control", "no-store"),),
        )

    # -- every request -------------------------------------------------------------

    def route(self, path: str, root_path: str) -> Route | None:
        """Which of the middleware's URIs ``path`` is, with or without the mount point.

        ASGI servers disagree on whether ``scope["path"]`` includes ``root_path``; both
        forms match. WSGI adapters pass ``PATH_INFO``, which never includes it.
        """
        found = self._routes.get(path)
        if found is not None or not root_path or not path.startswith(root_path):
            return found
        return self._routes.get(path[len(root_path) :])

    def check_copies(self, verdict: Verdict, found: Credentials) -> Flow[Verdict]:
        """``verdict`` (of the request's first session and its token), completed with
        what the other copies of its cookies say: every further session id in the
        session cookie, and the token cookie's values that
        :meth:`~.checks.RequestChecks.credentials` did not check as the request's token
        (beside a bearer header, or sent more than once). A revoked one is taken out
        (:attr:`Verdict.strip`, :attr:`Verdict.strip_token`); of several sessions, the
        first that is not revoked is the one left to the app (:attr:`Verdict.keep`).
        One Redis check per credential the mirror cannot answer for; none when the
        request carries one copy of each (the common case)."""
        if len(found.sessions) > 1:
            revoked = list(verdict.strip)
            for session in found.sessions[1:]:
                judged = yield from self._check_one(session, None)
                revoked += judged.strip
            ended = {session.sid for session in revoked}
            keep = next((s for s in found.sessions if s.sid not in ended), None)
            verdict = replace(verdict, strip=tuple(revoked), keep=keep)
        for token in found.cookie_tokens:
            if verdict.strip_token:
                break
            judged = yield from self._check_one(None, token)
            if judged.strip_token:
                verdict = replace(verdict, strip_token=True)
        return verdict

    def _check_one(self, session: KnownSession | None, token: KnownToken | None) -> Flow[Verdict]:
        """The verdict of one credential, asking Redis when the mirror cannot say."""
        checks = self.checks
        asked = checks.check(session, token)
        if isinstance(asked, Check):
            answer: Checked | None = yield asked
            return checks.answer(session, token, answer)
        return asked

    def without_cookies(self, cookie_header: str, verdict: Verdict) -> str | None:
        """The ``Cookie`` header with the cookies ``verdict`` takes out: every copy of
        the session cookie that carries a revoked session, or, with
        :attr:`Verdict.keep`, every copy but the first that carries the kept session;
        every copy of the token cookie of a revoked token.

        None when a revoked session or token would still reach the app: a parser finds
        a copy that is not a ``;``-separated pair of its own (``x=1, session=...``, as
        :class:`http.cookies.SimpleCookie` reads it). The adapters then answer
        :attr:`ambiguous_cookie`."""
        config = self.config
        checks = self.checks
        if verdict.strip or verdict.keep is not None:
            keep = verdict.keep
            keeps = None if keep is None else checks.carries(keep)
            cookie_header = without_cookie(cookie_header, config.session_cookie, keeps)
            ended = {session.sid for session in verdict.strip}
            if any(s.sid in ended for s in checks.cookie_sessions(cookie_header)):
                return None
        if verdict.strip_token and config.token_cookie:
            cookie_header = without_cookie(cookie_header, config.token_cookie)
            if checks.cookie_tokens(cookie_header):
                return None
        return cookie_header

    def expiries_for(self, set_cookies: list[str], secure: bool, verdict: Verdict) -> list[str]:
        """The ``Set-Cookie`` values to add to the app's response to a request whose
        cookies ``verdict`` took out: their deletions, except for a cookie the app set
        itself (a new session, a new token), and the session cookie's when a copy of a
        live session was kept."""
        found = []
        if (
            verdict.strip
            and verdict.keep is None
            and not self.checks.sets_session_cookie(set_cookies)
        ):
            found.append(self._session_expiry[secure])
        token_cookie = self.config.token_cookie
        if verdict.strip_token and token_cookie and not sets_cookie(set_cookies, token_cookie):
            found.append(self._token_cookie_expiry[secure])
        return found

    def records_of(self, members: Iterable[int]) -> tuple[str, ...]:
        """The record keys of the ended sessions (by mirror member) whose ids this
        process knows; the store's follower deletes them."""
        found: list[str] = []
        for at in members:
            known = self.checks.by_member(at)
            if known is not None and not known.deleted:
                found += known.keys
        return tuple(found)

    def unsettled(
        self,
        session: KnownSession | None,
        method: str,
        set_cookies: list[str] | None = None,
        others: Iterable[KnownSession] = (),
    ) -> bool:
        """Whether :meth:`settle` has anything to do after a request with ``session``
        (or none) and ``method`` whose response set ``set_cookies`` (None when the
        adapter did not watch: :meth:`~.checks.RequestChecks.watches`), and ``others``.
        Cheap: adapters skip the flow when it has not."""
        checks = self.checks
        if any(checks.revoked_since(other) for other in others):
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
        checks = self.checks
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
        checks = self.checks
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
        checks = self.checks
        periodic = checks.due(session)
        checks.mark_read(session)
        reading: Reading | None = yield Read(gets=(session.keys[0],))
        if reading is not None:
            yield from self._learned(session, reading.values[0], periodic)

    def _learned(self, session: KnownSession, raw: bytes | None, periodic: bool) -> Flow[None]:
        """Record what the session's record says; index it under its subject when the
        subject is new or changed, or on the periodic read (which renews the entry)."""
        record = read_record(raw, self.config)
        previous = session.subject
        session.subject = record.subject if record else None
        session.created = record.created if record else None
        sid = record.oidc_sid if record is not None else None
        if sid is not None and self.provider is not None and (periodic or sid != session.oidc_sid):
            now = self._clock()
            yield Index(
                key=self.keys.oidc_index(oidc_sid_hash(self.provider.issuer, sid)),
                member=session.hash,
                expires_at=now + self.config.session_ttl,
                now=now,
                ttl=self.config.session_ttl,
            )
        session.oidc_sid = sid
        if session.subject is None or (session.subject == previous and not periodic):
            return
        now = self._clock()
        ttl = self.config.session_ttl
        yield Index(
            key=self.keys.index(session.subject),
            member=session.hash,
            expires_at=now + ttl,
            now=now,
            ttl=ttl,
            previous=self.keys.index(previous)
            if previous is not None and previous != session.subject
            else None,
        )

    # -- the logout and everywhere URIs ----------------------------------------------

    def admit(self, head: RequestHead, route: Route = "logout") -> Response | int:
        """Refuse the request, or say how many body bytes to read (0: none).

        Refusals change nothing: ``405`` (with ``Allow``) for other methods, or the
        confirmation page for ``GET``/``HEAD`` under ``LOGOUT_GET=confirm``; ``403`` for
        a cross-site request; ``413`` when ``Content-Length`` exceeds the cap; ``400``
        for a malformed ``Content-Length``. Adapters read at most the returned number
        plus one byte, so that :meth:`logout` can tell an oversized chunked body.
        """
        if route == "backchannel":
            return self._admit_backchannel(head)
        if head.method not in self._methods:
            if head.method in ("GET", "HEAD") and self.config.on_get == "confirm":
                return self._confirm_page(head, route)
            return self._not_allowed
        if not same_origin(
            origin=head.origin,
            sec_fetch_site=head.sec_fetch_site,
            host=head.host,
            trusted=self._trusted_origins,
        ):
            return self._forbidden
        length = head.content_length.strip()
        if length:
            if not length.isdigit() or not length.isascii():
                return self.bad_request
            if int(length) > self.config.max_body:
                return self._too_large
        mimetype = head.content_type.split(";", 1)[0].strip().lower()
        return self.config.max_body if mimetype in _FORM_TYPES else 0

    def respond(
        self, head: RequestHead, body: bytes, route: Route
    ) -> Flow[tuple[Response, tuple[LogoutEvent, ...]]]:
        """The flow for an admitted request to one of the middleware's URIs: its response
        and the events to emit (none when it was refused; one per context ended)."""
        if route == "backchannel":
            return (yield from self.backchannel(head, body))
        return (yield from self._logout(head, body, route))

    def _admit_backchannel(self, head: RequestHead) -> Response | int:
        """The back-channel receiver takes a form ``POST`` from the provider: no cookies
        and no cross-site checks apply (Back-Channel Logout 1.0 section 2.5)."""
        if head.method != "POST":
            return self._backchannel_not_allowed
        mimetype = head.content_type.split(";", 1)[0].strip().lower()
        if mimetype != "application/x-www-form-urlencoded":
            return _oidc_error("the request must be application/x-www-form-urlencoded")
        length = head.content_length.strip()
        if length and (not length.isdigit() or not length.isascii()):
            return _oidc_error("malformed Content-Length")
        if length and int(length) > self.config.max_body:
            return self._too_large
        return self.config.max_body

    def backchannel(
        self, head: RequestHead, body: bytes
    ) -> Flow[tuple[Response, tuple[LogoutEvent, ...]]]:
        """Receive a back-channel logout (OpenID Connect Back-Channel Logout 1.0): validate
        the ``logout_token`` (section 2.6, :func:`~.oidc.check_logout_token`), refuse a
        ``jti`` seen before (kept in Redis until the token's ``exp``, so across processes
        and hosts), then end what it names:

        * by ``sid``: every local session signed in with that provider session (its
          index, built as sessions are read), and every JWT carrying that ``sid``;
        * by ``sub`` alone: the subject, everywhere (sessions and JWTs).

        One audit entry per ended context, ``reason=backchannel``. Answers (section 2.8):
        ``200`` with ``Cache-Control: no-store`` (also when nothing was logged in),
        ``400`` with ``error``/``error_description`` for a bad request or token, ``503``
        when Redis fails; never ``500``.
        """
        config = self.config
        if len(body) > config.max_body:
            return self._too_large, ()
        try:
            params = request_params("", head.content_type, body, config.max_body)
        except RequestEntityTooLarge:
            return self._too_large, ()
        except ValueError:
            return _oidc_error("malformed form body"), ()
        found = [v for k, v in params if k == "logout_token"]
        if len(found) != 1 or not found[0]:
            return _oidc_error("send exactly one logout_token"), ()
        checked: LogoutTokenClaims | LogoutTokenError = yield VerifyLogoutToken(
            found[0].encode("utf-8", "replace")
        )
        if isinstance(checked, LogoutTokenError):
            logger.info("back-channel logout refused: %s", checked)
            return _oidc_error(str(checked)), ()
        now = self._clock()
        ttl = max(1, int(checked.exp - now) + config.jwt_leeway)
        fresh: bool | None = yield Claim(self.keys.oidc_jti(checked.iss, checked.jti), ttl)
        if fresh is None:
            return self.check_unavailable, ()
        if not fresh:
            return _oidc_error("logout_token was already used (its jti was seen)"), ()
        events = yield from self._end_provider_session(checked, head, now)
        if any(event.store == "failed" for event in events):
            return self.check_unavailable, events
        return self._backchannel_ok, events

    def _end_provider_session(
        self, claims: LogoutTokenClaims, head: RequestHead, now: float
    ) -> Flow[tuple[LogoutEvent, ...]]:
        """End what a valid logout token names, in one transaction."""
        config, keys = self.config, self.keys
        sid_hash = oidc_sid_hash(claims.iss, claims.sid) if claims.sid else None
        index = keys.oidc_index(sid_hash) if sid_hash else keys.index(claims.sub or "")
        reading: Reading | None = yield Read(ranges=(index,), now=now)
        hashes = list(reading.members[0]) if reading is not None else []
        if self.mirror is not None:  # already ended here (a logout that went on to the provider)
            ended = self.mirror.state.sessions
            hashes = [h for h in hashes if member(h) not in ended]
        base = LogoutEvent(
            id="",
            at=datetime.fromtimestamp(now, timezone.utc),
            method=head.method,
            path=head.root_path + (config.backchannel_path or ""),
            cookies=(),
            session_id_hash=None,
            sessions_deleted=0,
            token_hash=None,
            token_ttl=None,
            client=head.client,
            user_agent=head.user_agent[:256] or None,
            redirect=None,
            store="disabled",
            reason="backchannel",
            subject=claims.sub,
            subject_source="oidc" if claims.sub else None,
        )
        events = [
            replace(
                base, id=uuid.uuid4().hex, type="session_end", session_id_hash=h, sessions_ended=1
            )
            for h in hashes
        ]
        not_before = None if sid_hash else now
        events.append(
            replace(
                base,
                id=uuid.uuid4().hex,
                type="api_session_end",
                schemes=("bearer",),
                oidc_sid_hash=sid_hash,
                not_before=not_before,
            )
        )
        sets = [(keys.session(h), "1", config.session_ttl) for h in hashes]
        if sid_hash:
            sets.append((keys.oidc_sid(sid_hash), "1", config.token_max_ttl))
        elif claims.sub:
            sets.append((keys.not_before(claims.sub), repr(now), config.token_max_ttl))
        known = self.checks.known(hashes)
        delete = [key for session in known for key in session.keys]
        fields = [tuple(event.to_fields().items()) for event in events]
        ops = StoreOps(
            delete=tuple(dict.fromkeys(delete)),
            sets=tuple(sets),
            discard=(index,),
            stream=config.events_stream or None,
            maxlen=config.events_maxlen,
            written_prefix=keys.written_prefix,
            entry=fields[0],
            extra_entries=tuple(fields[1:]),
        )
        for session in known:  # deleted by this transaction: not again by the follower
            self.checks.forget(session)
        if self.mirror is not None:
            self.mirror.add(
                sessions=hashes,
                oidc_sids=(sid_hash,) if sid_hash else (),
                subject=claims.sub if not_before is not None else None,
                not_before=not_before,
            )
        outcome: StoreOutcome | None = yield ops
        status = outcome.status if outcome is not None else "failed"
        error = outcome.error if outcome is not None else "no store"
        return tuple(replace(event, store=status, store_error=error) for event in events)

    def logout(
        self, head: RequestHead, body: bytes, route: Route = "logout"
    ) -> Flow[tuple[Response, LogoutEvent | None]]:
        """Log out the request's own credentials (of the schemes it names, all by
        default); at the everywhere URI, then every session and JWT of its subject too;
        at the impersonation URI, only what is impersonating.

        The request's token is its ``Authorization: Bearer`` token, else the token in
        ``LOGOUT_TOKEN_COOKIE``; a token cookie that differs from the bearer token ends
        too, with an event of its own (given by :meth:`respond`).

        :param body: the request body as read (empty when :meth:`admit` returned 0).
        :returns: (by ``StopIteration``) the response, and the event (None when the
            request was refused and nothing changed: ``413``/``400`` for a bad body or an
            unknown scheme, ``400`` at the everywhere URI without a trusted subject,
            ``409`` at the impersonation URI when not impersonating).
        """
        response, events = yield from self._logout(head, body, route)
        return response, events[0] if events else None

    def _logout(
        self, head: RequestHead, body: bytes, route: Route
    ) -> Flow[tuple[Response, tuple[LogoutEvent, ...]]]:
        """:meth:`logout`, with the events of every context it ended."""
        config = self.config
        if len(body) > config.max_body:
            return self._too_large, ()
        try:
            params = request_params(head.query_string, head.content_type, body, config.max_body)
        except RequestEntityTooLarge:
            return self._too_large, ()
        except ValueError:
            return self.bad_request, ()
        schemes = parse_schemes(v for k, v in params if k == config.scheme_param)
        if schemes is None:
            return self._unknown_scheme, ()
        redirect = None
        if not wants_json(head.accept):
            redirect = choose_next(
                [v for k, v in params if k == config.next_param],
                host=head.host,
                scheme=head.scheme,
                allowed_hosts=self._allowed_hosts,
                fallback=config.next_uri,
            )
        # Every copy of the session cookie that a framework may read ends: the first is
        # the session, the others end with it (which one the app reads is its parser's
        # choice). The token cookie's first value is the token cookie's token.
        copies = self.checks.cookie_sessions(head.cookie)
        token = bearer_token(head.authorization.encode("latin-1", "replace"))
        in_cookie = (
            cookie_token(cookie_value(head.cookie, config.token_cookie))
            if config.token_cookie
            else None
        )
        endpoint: str | None = None
        rp_initiated = route == "logout" and config.oidc_end_session and "session" in schemes
        if rp_initiated:
            endpoint = yield Discover()
        ended = yield from self.end(
            session_id=copies[0].sid if copies else None,
            copies=tuple(copy.sid for copy in copies[1:]),
            token=token,
            cookie_token=in_cookie,
            reason="everywhere" if route == "everywhere" else "user_logout",
            everywhere=route == "everywhere",
            impersonation_only=route == "impersonation",
            schemes=schemes,
            method=head.method,
            path=head.root_path + self._path_of(route),
            client=head.client,
            user_agent=head.user_agent[:256] or None,
            redirect=redirect,
            end_session=("redirected" if endpoint else "unavailable") if rp_initiated else None,
        )
        if ended.not_impersonating:
            return self._not_impersonating, ()
        if ended.no_subject or ended.event is None:
            return self._no_subject, ()
        provider_url = None
        if endpoint is not None and config.oidc_client_id:
            back = redirect or config.next_uri
            if back.startswith("/"):
                back = f"{head.scheme}://{head.host}{back}"
            provider_url = end_session_url(
                endpoint,
                client_id=config.oidc_client_id,
                id_token_hint=ended.id_token,
                post_logout_redirect_uri=back,
                state=secrets.token_urlsafe(16),
            )
        response, event = self._finish(head.scheme == "https", ended, route, provider_url)
        return response, (event, *(replace(more, redirect=event.redirect) for more in ended.more))

    def end(
        self,
        *,
        session_id: str | None = None,
        copies: tuple[str, ...] = (),
        token: bytes | None = None,
        cookie_token: bytes | None = None,
        subject: str | None = None,
        everywhere: bool = False,
        impersonation_only: bool = False,
        schemes: tuple[Scheme, ...] = ALL_SCHEMES,
        reason: Reason = "user_logout",
        method: str = "",
        path: str = "",
        client: str | None = None,
        user_agent: str | None = None,
        redirect: str | None = None,
        end_session: str | None = None,
    ) -> Flow[Ended]:
        """End a session and a token, and with ``everywhere`` every session in the
        subject's index and every JWT of the subject issued up to now (its not-before).

        ``schemes`` limits what ends: ``session`` (the session; everywhere: every
        session of the subject) and ``bearer`` (the token; everywhere: every JWT).
        With ``impersonation_only``, only credentials that impersonate end: a JWT with an
        ``act`` claim, a session whose record names an impersonator; when there is
        neither, nothing changes (:attr:`Ended.not_impersonating`).

        The subject is ``subject`` when given (an operator's revocation), else the
        session record's (read now unless this process read it within
        :data:`~.checks.SESSION_REREAD` seconds; always for a subject-wide logout or
        when impersonation is configured), else the JWT's ``sub``. A subject-wide
        logout takes only a trusted subject: given, from the session, or from a verified
        JWT; without one it changes nothing (:attr:`Ended.no_subject`).

        Ending an impersonated session whose record names the impersonator's own
        session (``LOGOUT_SESSION_ORIGINAL``) restores that session when it exists, is
        not revoked, and belongs to the recorded impersonator (:attr:`Ended.restore`).

        ``copies`` are further session ids the request's session cookie carries (the
        cookie sent more than once): with the session scheme (not at the impersonation
        URI) they end too, tombstoned and their records deleted, counted in
        :attr:`~logout_middleware.events.LogoutEvent.ended_session_hashes`.

        ``cookie_token`` is the token in ``LOGOUT_TOKEN_COOKIE``: without ``token`` (or
        equal to it) it is the token; else a second credential of the request, ended
        with the bearer scheme in the same transaction, its event in
        :attr:`Ended.more`. An ended token's records (``LOGOUT_TOKEN_KEYS``) are deleted
        whether or not ``LOGOUT_REVOKE_TOKENS`` revokes it; the token cookie is expired
        with the bearer scheme (at the impersonation URI, only when its token ended).

        Round trips: the session read when due, the original session's read when
        restoring, the index read with ``everywhere``, and one ``MULTI``/``EXEC`` with
        every write and the audit entry.
        """
        config = self.config
        now = self._clock()
        session = self.checks.known_session(session_id) if session_id else None
        from_cookie = False  # whether ``token`` came from the token cookie
        if cookie_token is not None and token in (None, cookie_token):
            token, cookie_token, from_cookie = cookie_token, None, True
        claims = yield from self._claims(token)
        second = yield from self._claims(cookie_token)
        if (
            impersonation_only
            and second is not None
            and second.actor is not None
            and (claims is None or claims.actor is None)
        ):  # the token cookie's token is the one that impersonates: it comes first
            token, cookie_token, claims, second = cookie_token, token, second, claims
            from_cookie = True
        record: SessionRecord | None = None
        prefetched: tuple[str, tuple[str, ...]] | None = None
        fresh = everywhere or self._impersonation_configured or self._keeps_id_token
        if session is not None and self.has_store and (fresh or self.checks.due(session)):
            self.checks.mark_read(session)
            # Logging out everywhere: read the subject's index in the same round trip,
            # for the subject this process last saw (read again below if it changed).
            guess = session.subject if everywhere and "session" in schemes else None
            ranges = (self.keys.index(guess),) if guess is not None else ()
            reading: Reading | None = yield Read(gets=(session.keys[0],), ranges=ranges, now=now)
            if reading is None:
                session.read_at = None  # not read after all: try again next time
            else:
                if guess is not None:
                    prefetched = (guess, reading.members[0])
                record = read_record(reading.values[0], config)
                session.subject = record.subject if record else None
                session.created = record.created if record else None
                session.oidc_sid = record.oidc_sid if record else None
        session_impersonator = record.impersonator if record is not None else None
        token_impersonator = claims.actor if claims is not None else None
        ends_session = session is not None and "session" in schemes
        ends_token = token is not None and "bearer" in schemes
        ends_second = cookie_token is not None and "bearer" in schemes
        if impersonation_only:
            ends_session = ends_session and session_impersonator is not None
            ends_token = ends_token and token_impersonator is not None
            ends_second = ends_second and second is not None and second.actor is not None
            if not (ends_session or ends_token):
                return Ended(None, not_impersonating=True)
            schemes = tuple(
                s for s in ALL_SCHEMES if (ends_session, ends_token)[ALL_SCHEMES.index(s)]
            )
        expired: tuple[str, ...] = ()
        if method:  # an HTTP logout: the cookies of the ended schemes
            expired = config.expired_cookies if "session" in schemes else ()
            ends_cookie = (from_cookie and ends_token) or ends_second
            if (
                config.token_cookie
                and "bearer" in schemes
                and (ends_cookie or not impersonation_only)
            ):
                expired = tuple(dict.fromkeys((*expired, config.token_cookie)))

        session_subject = session.subject if session is not None else None
        source: SubjectSource | None = None
        if subject is not None:
            source = "admin"
        elif session_subject is not None:
            subject, source = session_subject, "session"
        elif claims is not None and claims.sub is not None:
            subject = claims.sub
            source = "jwt" if claims.verified else "jwt_unverified"
        if everywhere and source not in ("admin", "session", "jwt"):
            return Ended(None, no_subject=True)

        restore: KnownSession | None = None
        restored: bool | None = None
        if ends_session and session_impersonator is not None and self.has_store:
            restored = False
            original = record.original if record is not None else None
            if original is not None and session is not None and original != session.sid:
                candidate = self.checks.known_session(original)
                found: Reading | None = yield Read(
                    gets=(candidate.keys[0], self.keys.session(candidate.hash))
                )
                if self._restorable(candidate, found, session_impersonator):
                    restore, restored = candidate, True

        ended_hashes: list[str] = []
        if everywhere and "session" in schemes and subject is not None and self.has_store:
            members: tuple[str, ...] | None = None
            if prefetched is not None and prefetched[0] == subject:
                members = prefetched[1]
            else:
                index: Reading | None = yield Read(ranges=(self.keys.index(subject),), now=now)
                members = index.members[0] if index is not None else None
            if members is not None:
                own = session.hash if session is not None else None
                ended_hashes = [h for h in members if h != own]
        if copies and ends_session and not impersonation_only and session is not None:
            for copy in copies:
                digest = self.checks.known_session(copy).hash
                if digest != session.hash and digest not in ended_hashes:
                    ended_hashes.append(digest)

        revoke_token = ends_token and config.revoke_tokens
        token_hash = sha256_hex(token) if token is not None and ends_token else None
        ttl = token_ttl(claims, now, config) if token_hash is not None else None
        not_before = now if everywhere and "bearer" in schemes else None
        duration = None
        if ends_session and session is not None and session.created is not None:
            duration = max(0.0, now - session.created)
        elif ends_token and claims is not None and claims.iat is not None:
            duration = max(0.0, now - claims.iat)
        ended_sessions = len(ended_hashes) + ends_session
        impersonator = session_impersonator if ends_session else None
        if impersonator is None and ends_token:
            impersonator = token_impersonator
        event = LogoutEvent(
            id=uuid.uuid4().hex,
            at=datetime.fromtimestamp(now, timezone.utc),
            method=method,
            path=path,
            cookies=expired,
            session_id_hash=session.hash if ends_session and session is not None else None,
            sessions_deleted=0,
            token_hash=token_hash,
            token_ttl=ttl,
            client=client,
            user_agent=user_agent,
            redirect=redirect,
            store="disabled",
            type=_event_type(impersonator, ended_sessions, ends_token or not_before is not None),
            reason=reason,
            subject=subject,
            subject_source=source,
            impersonator=impersonator,
            duration=duration,
            sessions_ended=ended_sessions if self.has_store else 0,
            tokens_ended=int(revoke_token and self.has_store),
            ended_session_hashes=tuple(ended_hashes),
            not_before=not_before,
            schemes=schemes,
            restored=restored,
            end_session=end_session,
        )
        second_event: LogoutEvent | None = None
        if ends_second and cookie_token is not None:
            second_event = self._second_token(event, cookie_token, second, now)
        more = (second_event,) if second_event is not None else ()
        id_token = record.id_token if record is not None and ends_session else None
        if not self.has_store or self.mirror is None:
            return Ended(event, id_token=id_token, more=more)

        keys = self.keys
        delete: list[str] = []
        sets: list[tuple[str, str, int]] = []
        tombstoned = [session.hash] if ends_session and session is not None else []
        tombstoned += ended_hashes
        if ends_session and session is not None:
            delete += session.keys
        forgotten = self.checks.known(ended_hashes)
        delete += [key for known in forgotten for key in known.keys]
        if ends_session and session is not None:
            forgotten.append(session)
        if revoke_token and token_hash is not None and ttl is not None:
            sets.append((keys.token(token_hash), "1", ttl))
        revoked = [token_hash] if revoke_token and token_hash is not None else []
        records = token_records(token, config.token_keys) if ends_token and token else ()
        if second_event is not None and cookie_token is not None:
            records += token_records(cookie_token, config.token_keys)
            if second_event.tokens_ended and second_event.token_hash and second_event.token_ttl:
                revoked.append(second_event.token_hash)
                sets.append((keys.token(second_event.token_hash), "1", second_event.token_ttl))
        sets += [(keys.session(digest), "1", config.session_ttl) for digest in tombstoned]
        if not_before is not None and subject is not None:
            sets.append((keys.not_before(subject), repr(now), config.token_max_ttl))
        unindex: list[tuple[str, str]] = []
        if ends_session and session is not None:
            if session_subject is not None:
                unindex.append((keys.index(session_subject), session.hash))
            if session.oidc_sid is not None and self.provider is not None:
                sid_key = keys.oidc_index(oidc_sid_hash(self.provider.issuer, session.oidc_sid))
                unindex.append((sid_key, session.hash))
        ops = StoreOps(
            delete=tuple(dict.fromkeys(delete)),
            sets=tuple(sets),
            unindex=tuple(unindex),
            discard=(
                (keys.index(subject),)
                if everywhere and "session" in schemes and subject is not None
                else ()
            )
            + tuple(dict.fromkeys(records)),
            stream=config.events_stream or None,
            maxlen=config.events_maxlen,
            written_prefix=keys.written_prefix,
            entry=tuple(event.to_fields().items()),
            extra_entries=tuple(tuple(e.to_fields().items()) for e in more),
        )
        # Known before the transaction is sent: a request of this process that saves the
        # session after the DEL sees the tombstone when it finishes (and deletes again).
        self.mirror.add(
            tokens=revoked,
            sessions=tombstoned,
            subject=subject if not_before is not None else None,
            not_before=not_before,
        )
        # Deleted by this transaction (or by its replay from the backlog): this process's
        # follower, which may see the entry before the reply arrives, need not again.
        for known in forgotten:
            self.checks.forget(known)
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

    def _claims(self, token: bytes | None) -> Flow[TokenClaims | None]:
        """A token's claims: verified when a key is configured and the signature holds,
        else as read (None for an opaque token, or no token)."""
        if token is None:
            return None
        claims = read_claims(token)
        if self.verifier.enabled:
            verified: TokenClaims | None = yield Verify(token)
            if verified is not None:
                claims = verified
        return claims

    def _second_token(
        self, event: LogoutEvent, token: bytes, claims: TokenClaims | None, now: float
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
            token_ttl=token_ttl(claims, now, self.config),
            type=_event_type(actor, 0, api=True),
            subject=sub,
            subject_source=source,
            impersonator=actor,
            duration=max(0.0, now - iat) if iat is not None else None,
            sessions_ended=0,
            tokens_ended=int(self.config.revoke_tokens and self.has_store),
            ended_session_hashes=(),
            not_before=None,
            schemes=("bearer",),
            restored=None,
            end_session=None,
        )

    def _restorable(
        self, candidate: KnownSession, found: Reading | None, impersonator: str
    ) -> bool:
        """Whether the impersonator's own session may be restored: its record exists,
        it is not revoked (no tombstone in Redis or in the mirror), and its subject is
        the recorded impersonator."""
        if found is None or found.values[1] is not None or self.mirror is None:
            return False
        if candidate.member in self.mirror.state.sessions:
            return False
        original = read_record(found.values[0], self.config)
        return original is not None and original.subject == impersonator

    def _finish(
        self, secure: bool, ended: Ended, route: Route, provider_url: str | None = None
    ) -> tuple[Response, LogoutEvent]:
        """The response to send, given the completed event.

        The cookies are expired when the session scheme ended; with a restored
        impersonator's session, the session cookie is set back to it instead. The token
        cookie is expired when the event names it (its scheme ended). When the
        store failed and ``LOGOUT_ON_STORE_ERROR`` is ``fail``, the answer is ``503``
        with ``Retry-After``; else ``303`` to the target, or ``200`` JSON for JSON
        clients (``{"success": true}``, with the counts at the everywhere URI and
        ``restored`` when an impersonation ended). All carry ``Cache-Control:
        no-store``.
        """
        event = ended.event
        assert event is not None  # noqa: S101 (the caller checked)
        headers: list[tuple[str, str]] = [("Cache-Control", "no-store")]
        if "session" in event.schemes:
            if ended.restore is not None:
                name = self.config.session_cookie
                headers += [h for h in self._cookie_headers[secure] if not _sets(h[1], name)]
                value = self._ids.cookie_value(ended.restore.sid)
                headers.append(("Set-Cookie", restore_cookie(name, value, secure, self.config)))
            else:
                headers += self._cookie_headers[secure]
                if secure:
                    headers += self._clear_site_data
        token_cookie = self.config.token_cookie
        with_session = "session" in event.schemes and token_cookie in self.config.expired_cookies
        if token_cookie and token_cookie in event.cookies and not with_session:
            headers.append(("Set-Cookie", self._token_cookie_expiry[secure]))
        failed = event.store == "failed" and self.config.on_store_error == "fail"
        if failed:
            event = replace(event, redirect=None, end_session=None)
            body: dict[str, object] = {
                "success": False,
                "error": "session_store_unavailable",
                "message": "Cookies were cleared, but the server-side session could not be "
                "ended. Try again.",
            }
            headers += [("Retry-After", "5")]
            return json_response(503, body, headers), event
        if event.redirect is None:
            payload: dict[str, object] = {"success": True}
            if route == "everywhere":
                payload.update(
                    sessions_ended=event.sessions_ended,
                    tokens_ended=event.tokens_ended + sum(e.tokens_ended for e in ended.more),
                    not_before=event.not_before,
                )
            if event.restored is not None:
                payload["restored"] = event.restored
            if provider_url is not None:
                payload["end_session_url"] = provider_url
            return json_response(200, payload, headers), event
        location = provider_url if provider_url is not None else event.redirect
        headers += [("Location", location), ("Content-Length", "0")]
        return Response(303, tuple(headers)), event

    # -- helpers -------------------------------------------------------------------

    def _path_of(self, route: Route) -> str:
        if route == "everywhere" and self.config.everywhere_path:
            return self.config.everywhere_path
        if route == "impersonation" and self.config.impersonation_path:
            return self.config.impersonation_path
        return self.config.path

    def _confirm_page(self, head: RequestHead, route: Route) -> Response:
        """A minimal page whose form POSTs back here, carrying a safe ``next``."""
        config = self.config
        action = html.escape(head.root_path + self._path_of(route))
        hidden = ""
        try:
            params = request_params(head.query_string, "", b"", config.max_body)
        except ValueError:
            params = []
        values = [v for k, v in params if k == config.next_param]
        target = (
            choose_next(
                values,
                host=head.host,
                scheme=head.scheme,
                allowed_hosts=self._allowed_hosts,
                fallback=config.next_uri,
            )
            if values
            else None
        )
        if target is not None and target != config.next_uri:
            hidden = (
                f'<input type="hidden" name="{html.escape(config.next_param)}" '
                f'value="{html.escape(target)}">'
            )
        question, button = {
            "everywhere": ("Do you want to log out on every device?", "Log out everywhere"),
            "impersonation": ("Do you want to stop impersonating?", "Stop impersonating"),
        }.get(route, ("Do you want to log out?", "Log out"))
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="robots" content="noindex"><title>Log out</title></head><body>'
            f'<form method="post" action="{action}">{hidden}'
            f'<p>{question}</p><button type="submit">{button}</button>'
            "</form></body></html>\n"
        ).encode()
        headers = (
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(page))),
            ("Cache-Control", "no-store"),
            (
                "Content-Security-Policy",
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
            ),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        )
        return Response(200, headers, b"" if head.method == "HEAD" else page)


def _oidc_error(description: str) -> Response:
    """A ``400`` as Back-Channel Logout 1.0 section 2.8 asks: a JSON ``error`` and
    ``error_description``, not cached."""
    return json_response(
        400,
        {"error": "invalid_request", "error_description": description},
        (("Cache-Control", "no-store"),),
    )


def _sets(set_cookie: str, name: str) -> bool:
    return set_cookie.split("=", 1)[0] == name


def _event_type(impersonator: str | None, sessions: int, api: bool) -> EventType:
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
