"""The WSGI face: a plug-in for Flask, Django and any WSGI app.

Use it with no change to the app's logic::

    app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)      # Flask: reads LOGOUT_*
    application = WSGILogoutMiddleware(get_wsgi_application())  # Django

or by the server command alone, through :mod:`logout_middleware.serve`.

Requests to the logout URI (``PATH_INFO``, below ``SCRIPT_NAME``) are answered here and
never reach the app. Every other request costs a string comparison and, when it carries
``Authorization: Bearer``, one Redis ``EXISTS``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING

import redis
from werkzeug.exceptions import ClientDisconnected
from werkzeug.wsgi import get_host, get_input_stream

from .config import LogoutConfig
from .core import LogoutCore, RequestHead, Response, StoreOutcome
from .events import Listener, listeners, notify, sync_only
from .store import RedisStore, warn_if_no_store

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
        self.store = RedisStore.from_config(self.config, redis)
        warn_if_no_store(self.store is not None)
        self.core = LogoutCore(self.config, has_store=self.store is not None)
        self.listeners = sync_only(listeners(on_logout))

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application (PEP 3333): answer the logout URI itself; refuse a request
        whose bearer token is revoked (``401 invalid_token``, RFC 6750 section 3.1); pass
        everything else to the app."""
        core = self.core
        if core.matches(environ.get("PATH_INFO", ""), ""):
            return self._logout(environ, start_response)
        if core.checks_tokens and self.store is not None:
            authorization = environ.get("HTTP_AUTHORIZATION")
            if authorization:
                key = core.revocation_key(authorization.encode("latin-1"))
                if key is not None:
                    response = core.revocation_response(self.store.is_revoked(key))
                    if response is not None:
                        return _send(start_response, response)
        return self.app(environ, start_response)

    def _logout(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            response = self._respond(environ)
        except Exception:
            logger.exception("logout failed unexpectedly")
            response = self.core.internal_error
        return _send(start_response, response)

    def _respond(self, environ: WSGIEnvironment) -> Response:
        """Carry out the core's steps."""
        core = self.core
        head = _head(environ)
        admitted = core.admit(head)
        if isinstance(admitted, Response):
            return admitted
        body = b""
        if admitted:
            try:
                body = get_input_stream(environ, safe_fallback=True).read(admitted + 1)
            except ClientDisconnected:
                return core.bad_request
        plan = core.plan(head, body)
        if isinstance(plan, Response):
            return plan
        outcome = StoreOutcome("disabled")
        if plan.ops is not None and self.store is not None:
            outcome = self.store.execute(plan.ops)
        response, event = core.finish(plan, outcome)
        notify(self.listeners, event)
        return response


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
