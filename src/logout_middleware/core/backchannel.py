"""OpenID Connect Back-Channel Logout 1.0: the receiver of the provider's
``logout_token``.

The provider ``POST``s a signed logout token (section 2.5); the receiver validates it
claim by claim (section 2.6, :func:`~.oidc.check_logout_token`, carried out by the
store's driver), refuses a ``jti`` seen before (kept in Redis until the token's ``exp``,
so across processes and hosts), then ends what the token names in one transaction, one
audit entry per ended context.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from datetime import datetime, timezone

from werkzeug.exceptions import RequestEntityTooLarge

from ..events import LogoutEvent
from .forms import request_params
from .messages import RequestHead, Response
from .oidc import LogoutTokenClaims, LogoutTokenError
from .ops import Claim, Flow, Read, Reading, StoreOps, StoreOutcome, VerifyLogoutToken
from .parts import Parts
from .responses import oidc_error
from .revocation import member, oidc_sid_hash

__all__ = ["BackchannelLogout"]

logger = logging.getLogger("logout_middleware")


class BackchannelLogout:
    """The back-channel receiver (``LOGOUT_BACKCHANNEL_PATH``).

    :param parts: the core's shared parts.
    """

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._responses = parts.responses

    def admit(self, head: RequestHead) -> Response | int:
        """The back-channel receiver takes a form ``POST`` from the provider: no cookies
        and no cross-site checks apply (Back-Channel Logout 1.0 section 2.5)."""
        if head.method != "POST":
            return self._responses.backchannel_not_allowed
        mimetype = head.content_type.split(";", 1)[0].strip().lower()
        if mimetype != "application/x-www-form-urlencoded":
            return oidc_error("the request must be application/x-www-form-urlencoded")
        length = head.content_length.strip()
        if length and (not length.isdigit() or not length.isascii()):
            return oidc_error("malformed Content-Length")
        if length and int(length) > self._parts.config.max_body:
            return self._responses.too_large
        return self._parts.config.max_body

    def receive(
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
        config = self._parts.config
        if len(body) > config.max_body:
            return self._responses.too_large, ()
        try:
            params = request_params("", head.content_type, body, config.max_body)
        except RequestEntityTooLarge:
            return self._responses.too_large, ()
        except ValueError:
            return oidc_error("malformed form body"), ()
        found = [v for k, v in params if k == "logout_token"]
        if len(found) != 1 or not found[0]:
            return oidc_error("send exactly one logout_token"), ()
        checked: LogoutTokenClaims | LogoutTokenError = yield VerifyLogoutToken(
            found[0].encode("utf-8", "replace")
        )
        if isinstance(checked, LogoutTokenError):
            logger.info("back-channel logout refused: %s", checked)
            return oidc_error(str(checked)), ()
        now = self._parts.clock()
        ttl = max(1, int(checked.exp - now) + config.jwt_leeway)
        fresh: bool | None = yield Claim(self._parts.keys.oidc_jti(checked.iss, checked.jti), ttl)
        if fresh is None:
            return self._responses.check_unavailable, ()
        if not fresh:
            return oidc_error("logout_token was already used (its jti was seen)"), ()
        events = yield from self._end_provider_session(checked, head, now)
        if any(event.store == "failed" for event in events):
            return self._responses.check_unavailable, events
        return self._responses.backchannel_ok, events

    def _end_provider_session(
        self, claims: LogoutTokenClaims, head: RequestHead, now: float
    ) -> Flow[tuple[LogoutEvent, ...]]:
        """End what a valid logout token names, in one transaction."""
        config, keys = self._parts.config, self._parts.keys
        sid_hash = oidc_sid_hash(claims.iss, claims.sid) if claims.sid else None
        index = keys.oidc_index(sid_hash) if sid_hash else keys.index(claims.sub or "")
        reading: Reading | None = yield Read(ranges=(index,), now=now)
        hashes = list(reading.members[0]) if reading is not None else []
        if (
            self._parts.mirror is not None
        ):  # already ended here (a logout that went on to the provider)
            ended = self._parts.mirror.state.sessions
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
        known = self._parts.checks.known(hashes)
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
            self._parts.checks.forget(session)
        if self._parts.mirror is not None:
            self._parts.mirror.add(
                sessions=hashes,
                oidc_sids=(sid_hash,) if sid_hash else (),
                subject=claims.sub if not_before is not None else None,
                not_before=not_before,
            )
        outcome: StoreOutcome | None = yield ops
        status = outcome.status if outcome is not None else "failed"
        error = outcome.error if outcome is not None else "no store"
        return tuple(replace(event, store=status, store_error=error) for event in events)
