"""The ASGI face: a pure ASGI middleware (no ``BaseHTTPMiddleware``).

Use it with any ASGI framework, with no change to the app's code::

    app.add_middleware(LogoutMiddleware)              # FastAPI, Starlette: reads LOGOUT_*
    application = LogoutMiddleware(get_asgi_application())   # Django
    app = LogoutMiddleware(Litestar(...))             # Litestar: wrap the whole app

or by the server command alone, through :mod:`logout_middleware.serve`.

Requests to the logout URI (and the everywhere URI) are answered here and never reach
the app. Every other HTTP request or websocket handshake costs a path comparison and a
header scan; one that carries the session cookie or a bearer token is checked against
the revocation state (from the process's mirror: no Redis round trip in steady state).
A revoked bearer token gets ``401 invalid_token`` (a websocket: ``401`` where the server
supports ASGI's ``websocket.http.response`` extension, else ``403`` by a close before
accept); a revoked session's cookie is taken out of the request before the app sees
it, and expired in the response. ``lifespan`` passes through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import redis.asyncio

from .config import LogoutConfig
from .core import Check, LogoutCore, RequestHead, Response, Route, Verdict
from .events import AsyncListener, Listener, anotify, listeners
from .store import AsyncRedisStore, adrive

__all__ = ["LogoutMiddleware"]

logger = logging.getLogger("logout_middleware")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: Any ASGI 3.0 application. Loosely typed on purpose: frameworks type their scopes as
#: ``TypedDict`` unions (Litestar, Quart), which a ``MutableMapping`` parameter refuses.
ASGIApp = Callable[..., Awaitable[None]]

#: Stands for the ``Authorization`` of a request that has more than one.
_TWO = b"\0two"

#: The request headers a logout looks at, and the separator for repeated ones.
_WANTED = {
    b"host": ", ",
    b"cookie": "; ",
    b"authorization": ", ",
    b"accept": ", ",
    b"content-type": ", ",
    b"content-length": ", ",
    b"user-agent": ", ",
    b"origin": ", ",
    b"sec-fetch-site": ", ",
}


class LogoutMiddleware:
    """Complete logout for an ASGI app.

    :param app: the ASGI application to wrap.
    :param config: the settings; None reads ``LOGOUT_*`` from the environment.
    :param on_logout: a listener or a sequence of listeners, called with each
        :class:`~logout_middleware.events.LogoutEvent`; coroutine functions are awaited.
    :param redis: a ``redis.asyncio.Redis`` to use instead of ``LOGOUT_REDIS_URL``.
    :raises ConfigError: when the configuration is invalid (naming the variable).
    :raises TypeError: when a listener is not callable.
    """

    def __init__(
        self,
        app: ASGIApp,
        config: LogoutConfig | None = None,
        *,
        on_logout: Listener | AsyncListener | Iterable[Listener | AsyncListener] | None = None,
        redis: redis.asyncio.Redis | None = None,
    ) -> None:
        self.app = app
        self.config = config if config is not None else LogoutConfig.from_env()
        self.store = AsyncRedisStore.for_middleware(self.config, redis)
        self.core = LogoutCore(self.config, has_store=self.store is not None)
        if self.store is not None and self.core.mirror is not None:
            self.store.attach(self.core.mirror, self.core.records_of)
        self.listeners = listeners(on_logout)
        # Read on every request: kept as plain attributes (no calls, no lookups in core).
        self._exact_route = self.core.exact_route
        self._checks_requests = self.core.checks_requests
        self._learns = self.core.checks.learns

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The ASGI 3.0 application: answer the logout and everywhere URIs itself; check
        the credentials of other HTTP requests and websocket handshakes; pass everything
        else, ``lifespan`` included, to the app. (``scope``, ``receive`` and ``send`` are
        typed ``Any`` so that a framework's own ASGI types, ``TypedDict`` scopes
        included, type-check where the middleware takes the app's place.)"""
        kind = scope["type"]
        if kind == "http":
            route = self._exact_route(scope["path"])
            if route is None and scope.get("root_path"):
                route = self.core.route(scope["path"], scope["root_path"])
            if route is not None:
                await self._logout(scope, receive, send, route)
                return
        elif kind != "websocket":
            await self.app(scope, receive, send)
            return
        if self._checks_requests:
            # Scanned inline: a request without credentials costs no coroutine.
            cookie = authorization = None
            for name, value in scope["headers"]:
                if name == b"cookie":
                    cookie = value if cookie is None else cookie + b"; " + value
                elif name == b"authorization":
                    authorization = value if authorization is None else _TWO
            if (
                cookie is not None
                or authorization is not None
                # A login without credentials yet may issue a session.
                or (self._learns and self.core.checks.watches(None, scope.get("method", "GET")))
            ):
                await self._checked(scope, receive, send, cookie, authorization)
                return
        await self.app(scope, receive, send)

    async def _checked(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        cookie: bytes | None,
        authorization: bytes | None,
    ) -> None:
        """Check a request's credentials, then pass it on (or refuse it); afterwards
        settle its session and any session the response issued."""
        core = self.core
        checks = core.checks
        if authorization is _TWO:
            await self._refuse(scope, receive, send, core.duplicate_authorization)
            return
        found = checks.credentials(cookie, authorization)
        session = found.session
        if found.present:
            if self.store is not None:
                self.store.follow()
            verdict = checks.check(session, found.token)
            if isinstance(verdict, Check):
                answer = await self.store.check(verdict) if self.store is not None else None
                verdict = checks.answer(session, found.token, answer)
            if found.several and not (verdict.refuse or verdict.unavailable):
                verdict = await adrive(core.check_copies(verdict, found), self.store, core.verifier)
                session = verdict.keep or session
            if verdict.refuse or verdict.unavailable:
                refusal = core.revoked if verdict.refuse else core.check_unavailable
                await self._refuse(scope, receive, send, refusal)
                return
            if verdict.rewrites and cookie is not None:
                without = self._without(scope, send, cookie, verdict)
                if without is None:
                    await self._refuse(scope, receive, send, core.ambiguous_cookie)
                    return
                scope, send = without
        # Then settle the session, and any session the response issues (a login):
        # LogoutCore.settle, with the response's Set-Cookie values when watched.
        method = scope.get("method", "GET")
        watched: list[list[str]] | None = None
        if checks.learns and checks.watches(session, method):
            watched = []
            send = _watching(send, watched)
        await self.app(scope, receive, send)
        if session is None and not watched:
            return
        seen = watched[0] if watched else None
        if core.unsettled(session, method, seen, found.copies):
            try:
                flow = core.settle(session, method, seen, found.copies)
                await adrive(flow, self.store, core.verifier)
            except Exception:
                logger.exception("session bookkeeping failed")

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Response) -> None:
        """Answer ``refusal`` instead of the app: an HTTP response, or a refused
        websocket handshake."""
        if scope["type"] == "http":
            await _send(send, refusal)
        else:
            await _refuse_websocket(scope, receive, send, refusal)

    def _without(
        self, scope: Scope, send: Send, cookie: bytes, verdict: Verdict
    ) -> tuple[Scope, Send] | None:
        """The scope without the cookies ``verdict`` takes out (``cookie``: the request's
        ``Cookie`` headers, joined into one), and a ``send`` that expires them in the
        response (unless the app sets a new one); None when they cannot be taken out
        (:meth:`LogoutCore.without_cookies`)."""
        core = self.core
        remaining = core.without_cookies(cookie.decode("latin-1"), verdict)
        if remaining is None:
            return None
        headers = [(k, v) for k, v in scope["headers"] if k != b"cookie"]
        if remaining:
            headers.append((b"cookie", remaining.encode("latin-1")))
        secure = scope.get("scheme") in ("https", "wss")

        async def expiring_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                found = list(message.get("headers", []))
                set_cookies = [v.decode("latin-1") for k, v in found if k.lower() == b"set-cookie"]
                expiries = core.expiries_for(set_cookies, secure, verdict)
                if expiries:
                    found += [(b"set-cookie", expiry.encode("latin-1")) for expiry in expiries]
                    message = {**message, "headers": found}
            await send(message)

        return {**scope, "headers": headers}, expiring_send

    async def _logout(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        try:
            response = await self._respond(scope, receive, route)
        except Exception:
            logger.exception("logout failed unexpectedly")
            response = self.core.internal_error
        if response is not None:
            await _send(send, response)

    async def _respond(self, scope: Scope, receive: Receive, route: Route) -> Response | None:
        """Carry out the core's logout; None when the client disconnected mid-body."""
        core = self.core
        head = _head(scope)
        admitted = core.admit(head, route)
        if isinstance(admitted, Response):
            return admitted
        body = await _read_body(receive, admitted) if admitted else b""
        if body is None:
            return None
        flow = core.respond(head, body, route)
        response, events = await adrive(flow, self.store, core.verifier, core.provider)
        for event in events:
            await anotify(self.listeners, event)
        return response


def _watching(send: Send, set_cookies: list[list[str]]) -> Send:
    """``send``, noting the response's ``Set-Cookie`` values in ``set_cookies``."""

    async def watching_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            set_cookies.append(
                [
                    v.decode("latin-1")
                    for k, v in message.get("headers", ())
                    if k.lower() == b"set-cookie"
                ]
            )
        await send(message)

    return watching_send


def _head(scope: Scope) -> RequestHead:
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        separator = _WANTED.get(name)
        if separator is not None:
            text = value.decode("latin-1")
            found[name] = found[name] + separator + text if name in found else text
    host = found.get(b"host")
    if host is None:
        server = scope.get("server")
        host = f"{server[0]}:{server[1]}" if server and server[1] is not None else ""
    client = scope.get("client")
    return RequestHead(
        method=scope["method"],
        scheme=scope.get("scheme", "http"),
        host=host,
        root_path=scope.get("root_path", ""),
        query_string=scope.get("query_string", b"").decode("latin-1"),
        cookie=found.get(b"cookie", ""),
        authorization=found.get(b"authorization", ""),
        accept=found.get(b"accept", ""),
        content_type=found.get(b"content-type", ""),
        content_length=found.get(b"content-length", ""),
        user_agent=found.get(b"user-agent", ""),
        origin=found.get(b"origin"),
        sec_fetch_site=found.get(b"sec-fetch-site"),
        client=client[0] if client else None,
    )


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """Read the body, stopping once it exceeds ``limit`` bytes; None on disconnect."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size > limit or not message.get("more_body", False):
            return b"".join(chunks)


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send, refusal: Response) -> None:
    """Refuse a websocket handshake: with ``refusal`` itself where the server offers the
    ``websocket.http.response`` extension, else by closing before accepting (code 1008,
    policy violation), which servers answer with ``403``."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await _send(send, refusal, "websocket.http.response")
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": "invalid_token"})


async def _send(send: Send, response: Response, kind: str = "http.response") -> None:
    """Send ``response`` as ASGI ``<kind>.start`` and ``<kind>.body`` messages: ``kind``
    is ``http.response``, or ``websocket.http.response`` to deny a websocket handshake."""
    await send(
        {
            "type": kind + ".start",
            "status": response.status,
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers
            ],
        }
    )
    await send({"type": kind + ".body", "body": response.body})
