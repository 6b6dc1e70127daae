"""The ASGI face: a pure ASGI middleware (no ``BaseHTTPMiddleware``).

Use it with any ASGI framework, with no change to the app's code::

    app.add_middleware(LogoutMiddleware)              # FastAPI, Starlette: reads LOGOUT_*
    application = LogoutMiddleware(get_asgi_application())   # Django
    Litestar(..., middleware=[LogoutMiddleware])      # Litestar

or by the server command alone, through :mod:`logout_middleware.serve`.

Requests to the logout URI are answered here and never reach the app. On every other
HTTP request the only work is a path comparison and, when the request carries
``Authorization: Bearer``, one Redis ``EXISTS`` (none with the revocation cache). A
websocket handshake carrying a revoked bearer token is refused too (``401`` where the
server supports ASGI's ``websocket.http.response`` extension, else ``403`` by a close
before accept); every other websocket, and ``lifespan``, passes through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import redis.asyncio

from .config import LogoutConfig
from .core import LogoutCore, RequestHead, Response, StoreOutcome
from .events import AsyncListener, Listener, anotify, listeners
from .store import AsyncRedisStore, warn_if_no_store

__all__ = ["LogoutMiddleware"]

logger = logging.getLogger("logout_middleware")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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
        self.store = AsyncRedisStore.from_config(self.config, redis)
        warn_if_no_store(self.store is not None)
        self.core = LogoutCore(self.config, has_store=self.store is not None)
        self.listeners = listeners(on_logout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3.0 application: answer the logout URI itself; refuse an HTTP request
        or websocket handshake whose bearer token is revoked (``401 invalid_token``, RFC
        6750 section 3.1); pass everything else, ``lifespan`` included, to the app."""
        kind = scope["type"]
        core = self.core
        if kind == "http":
            if core.matches(scope["path"], scope.get("root_path", "")):
                await self._logout(scope, receive, send)
                return
        elif kind != "websocket":
            await self.app(scope, receive, send)
            return
        if core.checks_tokens:
            # Scanned inline: a request without Authorization costs no coroutine.
            for name, value in scope["headers"]:
                if name == b"authorization":
                    refusal = await self._check_token(value)
                    if refusal is not None:
                        if kind == "http":
                            await _send(send, refusal)
                        else:
                            await _refuse_websocket(scope, receive, send, refusal)
                        return
        await self.app(scope, receive, send)

    async def _check_token(self, authorization: bytes) -> Response | None:
        """The refusal for a revoked bearer token in ``authorization``, or None."""
        key = self.core.revocation_key(authorization)
        if key is None or self.store is None:
            return None
        return self.core.revocation_response(await self.store.is_revoked(key))

    async def _logout(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self._respond(scope, receive)
        except Exception:
            logger.exception("logout failed unexpectedly")
            response = self.core.internal_error
        if response is not None:
            await _send(send, response)

    async def _respond(self, scope: Scope, receive: Receive) -> Response | None:
        """Carry out the core's steps; None when the client disconnected mid-body."""
        core = self.core
        head = _head(scope)
        admitted = core.admit(head)
        if isinstance(admitted, Response):
            return admitted
        body = await _read_body(receive, admitted) if admitted else b""
        if body is None:
            return None
        plan = core.plan(head, body)
        if isinstance(plan, Response):
            return plan
        outcome = StoreOutcome("disabled")
        if plan.ops is not None and self.store is not None:
            outcome = await self.store.execute(plan.ops)
        response, event = core.finish(plan, outcome)
        await anotify(self.listeners, event)
        return response


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
