"""One way to drive both adapters in tests, so each behaviour is tested on both.

``Harness.request`` goes through httpx (ASGI, on one event loop kept in a blocking portal)
or webtest (WSGI, with its WSGI lint on). ``raw_asgi``/``raw_wsgi`` call an adapter
directly with exact bytes, for hostile input that HTTP clients refuse to send.

The wrapped downstream app answers ``200 app`` and records each request it sees, so a
test can assert that the app never saw something.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio.from_thread
import httpx
import webtest

from logout_middleware import LogoutConfig, LogoutMiddleware, WSGILogoutMiddleware
from logout_middleware.events import Listener

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

Kind = Literal["asgi", "wsgi"]
KINDS: tuple[Kind, ...] = ("asgi", "wsgi")
CLIENT_ADDRESS = "203.0.113.7"


@dataclass
class Reply:
    """A response as the client saw it; header names compared case-insensitively."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def set_cookies(self) -> list[str]:
        return self.all("set-cookie")

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Seen:
    """What the downstream app received: method, path and Authorization of each request."""

    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: The ``Cookie`` header of each request ("" when absent), in order.
    cookies: list[str] = field(default_factory=list)
    #: A ``Set-Cookie`` value the app adds to every response, or None.
    set_cookie: str | None = None


def downstream_asgi(seen: Seen) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        auth = dict(scope["headers"]).get(b"authorization")
        seen.requests.append((scope["method"], scope["path"], auth and auth.decode("latin-1")))
        cookie = b"; ".join(v for k, v in scope["headers"] if k == b"cookie")
        seen.cookies.append(cookie.decode("latin-1"))
        headers = [(b"content-type", b"text/plain")]
        if seen.set_cookie is not None:
            headers.append((b"set-cookie", seen.set_cookie.encode("latin-1")))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"app"})

    return app


def downstream_wsgi(seen: Seen) -> Any:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.requests.append(
            (
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                environ.get("HTTP_AUTHORIZATION"),
            )
        )
        seen.cookies.append(environ.get("HTTP_COOKIE", ""))
        headers = [("Content-Type", "text/plain")]
        if seen.set_cookie is not None:
            headers.append(("Set-Cookie", seen.set_cookie))
        start_response("200 OK", headers)
        return [b"app"]

    return app


class Harness:
    """A middleware of one kind around the recording app, and a client for it."""

    def __init__(self, kind: Kind, middleware: Any, seen: Seen, portal: Any = None) -> None:
        self.kind = kind
        self.middleware = middleware
        self.seen = seen
        self._portal = portal
        self._webtest = webtest.TestApp(middleware) if kind == "wsgi" else None

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        scheme: str = "http",
        host: str = "testserver",
    ) -> Reply:
        """Send one request; ``path`` may carry a query string. No cookie jar is kept."""
        headers = dict(headers or {})
        if self.kind == "asgi":
            reply: Reply = self._portal.call(
                self._asgi_request, method, path, headers, body, scheme, host
            )
            return reply
        assert self._webtest is not None
        self._webtest.reset()
        environ = {"REMOTE_ADDR": CLIENT_ADDRESS, "HTTP_HOST": host, "wsgi.url_scheme": scheme}
        response = self._webtest.request(
            path,
            method=method,
            headers=headers,
            body=body,
            expect_errors=True,
            environ=environ,
        )
        return Reply(response.status_int, list(response.headerlist), response.body)

    async def _asgi_request(
        self, method: str, path: str, headers: dict[str, str], body: bytes, scheme: str, host: str
    ) -> Reply:
        transport = httpx.ASGITransport(app=self.middleware, client=(CLIENT_ADDRESS, 50000))
        async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://{host}") as client:
            response = await client.request(method, path, headers=headers, content=body)
        return Reply(response.status_code, list(response.headers.multi_items()), response.content)

    def post_logout(self, path: str = "/logout", **kwargs: Any) -> Reply:
        return self.request("POST", path, **kwargs)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run ``function(*args)`` on the ASGI loop when it is a coroutine function."""
        if self.kind == "asgi" and asyncio.iscoroutinefunction(function):
            return self._portal.call(function, *args)
        return function(*args)


def _checked_at_start(store: Any) -> None:
    """Wait (at most 10 s) for the store's start-up check to end."""
    check = getattr(store, "startup_check", None)
    if check is not None:
        check.join(10)


@contextmanager
def adapter(
    kind: Kind, config: LogoutConfig, seen: Seen, **kwargs: Any
) -> Iterator[tuple[Any, Any]]:
    """The middleware of ``kind`` with ``config`` (and ``kwargs``) around the recording app,
    and the blocking portal whose event loop runs it (``None`` for WSGI). Its start-up
    check of Redis has ended when it is yielded (so that the check's commands never fall
    in a test's count); its store is closed on exit."""
    if kind == "wsgi":
        wsgi = WSGILogoutMiddleware(downstream_wsgi(seen), config, **kwargs)
        _checked_at_start(wsgi.store)
        try:
            yield wsgi, None
        finally:
            if wsgi.store is not None:
                wsgi.store.close()
        return
    with anyio.from_thread.start_blocking_portal() as portal:
        asgi = LogoutMiddleware(downstream_asgi(seen), config, **kwargs)
        _checked_at_start(asgi.store)
        try:
            yield asgi, portal
        finally:
            if asgi.store is not None:
                portal.call(asgi.store.aclose)


@contextmanager
def harness(
    kind: Kind,
    redis_url: str | None,
    *,
    on_logout: Listener | Iterable[Listener] | None = None,
    **settings: Any,
) -> Iterator[Harness]:
    """A :class:`Harness` for ``kind`` with ``LogoutConfig(redis_url=redis_url, **settings)``."""
    config = LogoutConfig(redis_url=redis_url, **settings)
    seen = Seen()
    with adapter(kind, config, seen, on_logout=on_logout) as (middleware, portal):
        yield Harness(kind, middleware, seen, portal)


def multipart(fields: Sequence[tuple[str, str]], boundary: str = "xYzZY") -> tuple[str, bytes]:
    """A ``multipart/form-data`` body of ``fields``, and its Content-Type."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields
    ]
    body = "".join(parts) + f"--{boundary}--\r\n"
    return f"multipart/form-data; boundary={boundary}", body.encode()


def raw_asgi(
    middleware: Any, scope: dict[str, Any], body: bytes = b"", portal: Any = None
) -> Reply:
    """Call an ASGI middleware directly with ``scope`` (defaults filled in) and ``body``."""
    full = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/logout",
        "raw_path": b"/logout",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": (CLIENT_ADDRESS, 50000),
        "server": ("testserver", 80),
    }
    full.update(scope)
    sent: list[dict[str, Any]] = []
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await anyio.sleep(3600)
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def go() -> None:
        await middleware(full, receive, send)

    if portal is not None:
        portal.call(go)
    else:
        anyio.run(go)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
    return Reply(start["status"], headers, body_out)


def raw_wsgi(middleware: Any, environ: dict[str, Any]) -> Reply:
    """Call a WSGI middleware directly with ``environ`` (defaults filled in)."""
    import io

    full: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/logout",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": CLIENT_ADDRESS,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    full.update(environ)
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"] = int(status.split(" ", 1)[0])
        captured["headers"] = headers
        return lambda data: None

    chunks = middleware(full, start_response)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return Reply(captured["status"], list(captured["headers"]), body)
