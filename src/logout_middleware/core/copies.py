"""Every copy of a request's cookies: the verdict of each, and the ``Cookie`` header the
app gets.

A request may carry the session cookie or the token cookie more than once, and which
copy the app reads is its framework's choice (:func:`~.cookies.cookie_values`). The main
check judges the first session and the request's token
(:meth:`~.checks.RequestChecks.check`); :class:`CookieCopies` completes that verdict
with the other copies, takes out what must not reach the app, and names the cookies to
expire in the response.
"""

from __future__ import annotations

from dataclasses import replace

from .cookies import sets_cookie, without_cookie
from .credentials import Credentials, KnownSession, KnownToken, Verdict
from .ops import Check, Checked, Flow
from .parts import Parts

__all__ = ["CookieCopies"]


class CookieCopies:
    """The flows and rules for cookies sent more than once.

    :param parts: the core's shared parts.
    """

    def __init__(self, parts: Parts) -> None:
        self._parts = parts
        self._checks = parts.checks
        self._config = parts.config

    def check_copies(self, verdict: Verdict, found: Credentials) -> Flow[Verdict]:
        """``verdict`` (of the request's first session and its token), completed with
        what the other copies of its cookies say: every further session id in the
        session cookie, and the token cookie's values that
        :meth:`~.checks.RequestChecks.credentials` did not check as the request's token
        (beside a bearer header, or sent more than once). A revoked one is taken out
        (:attr:`Verdict.strip`, :attr:`Verdict.strip_token`); of several sessions, the
        first that is not revoked is the one left to the app (:attr:`Verdict.keep`).
        One Redis check per credential the mirror cannot answer for; none when the
        request carries one copy of each (the common case). When a check cannot be made
        and ``LOGOUT_ON_CHECK_ERROR`` is ``deny``, the verdict is
        :attr:`Verdict.unavailable`, as for the first copy."""
        if len(found.sessions) > 1:
            revoked = list(verdict.strip)
            for session in found.sessions[1:]:
                judged = yield from self._check_one(session, None)
                if judged.unavailable:
                    return replace(verdict, unavailable=True)
                revoked += judged.strip
            ended = {session.sid for session in revoked}
            keep = next((s for s in found.sessions if s.sid not in ended), None)
            verdict = replace(verdict, strip=tuple(revoked), keep=keep)
        for token in found.cookie_tokens:
            if verdict.strip_token:
                break
            judged = yield from self._check_one(None, token)
            if judged.unavailable:
                return replace(verdict, unavailable=True)
            if judged.strip_token:
                verdict = replace(verdict, strip_token=True)
        return verdict

    def _check_one(self, session: KnownSession | None, token: KnownToken | None) -> Flow[Verdict]:
        """The verdict of one credential, asking Redis when the mirror cannot say."""
        checks = self._checks
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
        :attr:`~.responses.Responses.ambiguous_cookie`."""
        config = self._config
        checks = self._checks
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
        expiries = self._parts.expiries
        if (
            verdict.strip
            and verdict.keep is None
            and not self._checks.sets_session_cookie(set_cookies)
        ):
            found.append(expiries.session[secure])
        token_cookie = self._config.token_cookie
        if verdict.strip_token and token_cookie and not sets_cookie(set_cookies, token_cookie):
            found.append(expiries.token_cookie[secure])
        return found
