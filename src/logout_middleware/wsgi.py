"""The WSGI face: a plug-in for Flask, Django and any WSGI app.

Use it with no change to the app's logic::

    app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)      # Flask: reads LOGOUT_*
    application = WSGILogoutMiddleware(get_wsgi_application())  # Django

or by the server command alone, through :mod:`logout_middleware.serve`.

Requests to the logout URI and the everywhere URI (``PATH_INFO``, below
``SCRIPT_NAME``) are answered here and never reach the app. Every other request costs
a string comparison; one that carries the session cookie or a bearer token is checked
against the revocation state (from the process's mirror: no Redis round trip in steady
state), as in the ASGI face.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import redis
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import get_host, get_input_stream

from .config import LogoutConfig
from .core import Check, LogoutCore, RequestHead, Response, Route, Verdict
from .events import Listener, listeners, notify, sync_only
from .store import RedisStore, drive

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["WSGILogoutMiddleware"]

logger = logging.getLogger("logout_middleware")


class WSGILogoutMiddleware:
    """Complete logout for a WSGI app.

    :param app: the WSGI application to wrap (for Flask, ``app.wsgi_app``).
    :param config: the settings; None reads ``LOGOUT_*`` from the environment.
    :param on_logout: a listener or a sequence of plain (not coroutine) functions, called
        with each :class:`~logout_middleware.events.LogoutEvent`.
    :param redis: a ``redis.Redis`` to use instead of ``LOGOUT_REDIS_URL``.
    :raises ConfigError: when the configuration is invalid (naming the variable).
    :raises TypeError: when a listener is not callable or is a coroutine function.
    """

    def __init__(
        self,
        app: WSGIApplication,
        config: LogoutConfig | None = None,
        *,
        on_logout: Listener | Iterable[Listener] | None = None,
        redis: redis.Redis | None = None,
    ) -> None:
        self.app = app
        self.config = config if config is not None else LogoutConfig.from_env()
        self.store = RedisStore.for_middleware(self.config, redis)
        self.core = LogoutCore(self.config, has_store=self.store is not None)
        if self.store is not None and self.core.mirror is not None:
            self.store.attach(self.core.mirror, self.core.records_of)
        self.listeners = sync_only(listeners(on_logout))
        # Read on every request: kept as plain attributes (no calls, no lookups in core).
        self._exact_route = self.core.exact_route
        self._checks_requests = self.core.checks_requests
        self._learns = self.core.checks.learns

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application (PEP 3333): answer the logout and everywhere URIs itself;
        check the credentials of other requests; pass everything else to the app."""
        # PATH_INFO is below SCRIPT_NAME already: the exact lookup is the whole rule.
        route = self._exact_route(environ.get("PATH_INFO", ""))
        if route is not None:
            return self._logout(environ, start_response, route)
        if self._checks_requests:
            cookie = environ.get("HTTP_COOKIE")
            authorization = environ.get("HTTP_AUTHORIZATION")
            if (
                cookie
                or authorization
                # A login without credentials yet may issue a session.
                or (
                    self._learns
                    and self.core.checks.watches(None, environ.get("REQUEST_METHOD", "GET"))
                )
            ):
                return self._checked(environ, start_response, cookie, authorization)
        return self.app(environ, start_response)

    def _checked(
        self,
        environ: WSGIEnvironment,
        start_response: StartResponse,
        cookie: str | None,
        authorization: str | None,
    ) -> Iterable[bytes]:
        """Check a request's credentials, then pass it on (or refuse it); afterwards
        settle its session and any session the response issued."""
        core = self.core
        checks = core.checks
        found = checks.credentials(
            cookie, authorization.encode("latin-1") if authorization else None
        )
        session = found.session
        if found.present:
            if self.store is not None:
                self.store.follow()
            verdict = checks.check(session, found.token)
            if isinstance(verdict, Check):
                answer = self.store.check(verdict) if self.store is not None else None
                verdict = checks.answer(session, found.token, answer)
            if found.several and not (verdict.refuse or verdict.unavailable):
                verdict = drive(core.check_copies(verdict, found), self.store, core.verifier)
                session = verdict.keep or session
            if verdict.refuse:
                return _send(start_response, core.revoked)
            if verdict.unavailable:
                return _send(start_response, core.check_unavailable)
            if verdict.rewrites:
                without = self._without(environ, start_response, verdict)
                if without is None:
                    return _send(start_response, core.ambiguous_cookie)
                environ, start_response = without
        # Then settle the session, and any session the response issues (a login):
        # LogoutCore.settle, with the response's Set-Cookie values when watched.
        method = environ.get("REQUEST_METHOD", "GET")
        watched: list[list[str]] | None = None
        if checks.learns and checks.watches(session, method):
            watched = []
            start_response = _watching(start_response, watched)
        result = self.app(environ, start_response)
        if session is None and not watched:
            return result
        seen = watched[0] if watched else None
        if core.unsettled(session, method, seen, found.copies):
            try:
                drive(core.settle(session, method, seen, found.copies), self.store, core.verifier)
            except Exception:
                logger.exception("session bookkeeping failed")
        return result

    def _without(
        self, environ: WSGIEnvironment, start_response: StartResponse, verdict: Verdict
    ) -> tuple[WSGIEnvironment, StartResponse] | None:
        """The environ without the cookies ``verdict`` takes out, and a
        ``start_response`` that expires them in the response (unless the app sets a new
        one); None when they cannot be taken out (:meth:`LogoutCore.without_cookies`)."""
        core = self.core
        remaining = core.without_cookies(environ.get("HTTP_COOKIE", ""), verdict)
        if remaining is None:
            return None
        environ = dict(environ)
        if remaining:
            environ["HTTP_COOKIE"] = remaining
        else:
            environ.pop("HTTP_COOKIE", None)
        secure = environ.get("wsgi.url_scheme") == "https"

        def expiring_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            set_cookies = [v for k, v in headers if k.lower() == "set-cookie"]
            expiries = core.expiries_for(set_cookies, secure, verdict)
            if expiries:
                headers = [*headers, *(("Set-Cookie", expiry) for expiry in expiries)]
            return start_response(status, headers, exc_info)

        return environ, expiring_start_response

    def _logout(
        self, environ: WSGIEnvironment, start_response: StartResponse, route: Route
    ) -> Iterable[bytes]:
        try:
            response = self._respond(environ, route)
        except Exception:
            logger.exception("logout failed unexpectedly")
            response = self.core.internal_error
        return _send(start_response, response)

    def _respond(self, environ: WSGIEnvironment, route: Route) -> Response:
        """Carry out the core's logout."""
        core = self.core
        head = _head(environ)
        admitted = core.admit(head, route)
        if isinstance(admitted, Response):
            return admitted
        body = b""
        if admitted:
            try:
                body = get_input_stream(environ, safe_fallback=True).read(admitted + 1)
            except ClientDisconnected:
                return core.bad_request
        flow = core.respond(head, body, route)
        response, events = drive(flow, self.store, core.verifier, core.provider)
        for event in events:
            notify(self.listeners, event)
        return response


def _watching(start_response: StartResponse, set_cookies: list[list[str]]) -> StartResponse:
    """``start_response``, noting the response's ``Set-Cookie`` values in ``set_cookies``."""

    def watching_start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        set_cookies.append([v for k, v in headers if k.lower() == "set-cookie"])
        return start_response(status, headers, exc_info)

    return watching_start_response


def _head(environ: WSGIEnvironment) -> RequestHead:
    script_name: str = environ.get("SCRIPT_NAME", "")
    return RequestHead(
        method=environ.get("REQUEST_METHOD", "GET"),
        scheme=environ.get("wsgi.url_scheme", "http"),
        host=get_host(environ),
        root_path=script_name,
        query_string=environ.get("QUERY_STRING", ""),
        cookie=environ.get("HTTP_COOKIE", ""),
        authorization=environ.get("HTTP_AUTHORIZATION", ""),
        accept=environ.get("HTTP_ACCEPT", ""),
        content_type=environ.get("CONTENT_TYPE", ""),
        content_length=environ.get("CONTENT_LENGTH", ""),
        user_agent=environ.get("HTTP_USER_AGENT", ""),
        origin=environ.get("HTTP_ORIGIN"),
        sec_fetch_site=environ.get("HTTP_SEC_FETCH_SITE"),
        client=environ.get("REMOTE_ADDR") or None,
    )


def _send(start_response: StartResponse, response: Response) -> list[bytes]:
    status = f"{response.status} {HTTPStatus(response.status).phrase}"
    start_response(status, list(response.headers))
    return [response.body]
