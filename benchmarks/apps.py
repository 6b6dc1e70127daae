"""The applications measured, by name, for in-process calls and for the servers.

Pass-through:

* ASGI: :func:`bare_asgi`, a minimal raw ASGI app (``200 ok``), alone, behind each
  :data:`~benchmarks.variants.VARIANTS` entry, and behind :class:`BaseHTTPLogout`, the
  same logic written as a Starlette ``BaseHTTPMiddleware`` (the common alternative).
* WSGI: :func:`bare_wsgi`, a minimal raw WSGI app (in-process only), and
  :func:`flask_app`, a minimal Flask app, alone and behind each variant.
* The floors of a pass-through (in-process): :class:`FloorASGI` and :func:`floor_wsgi`,
  the least a logout middleware can do, a path comparison, and
  :func:`empty_asgi`/:func:`empty_wsgi`, one more call and nothing else.

Servers run each app by name (:data:`ASGI_APPS`, :data:`WSGI_APPS`): besides the bare
app, each variant also runs as a second process (``<variant>-2``, for logouts of
sessions that process has just served), each variant's twin on the Redis Cluster as
``<variant>-cluster`` (given a cluster node's URL), and the logout-everywhere section runs two
processes of the first variant with ``LOGOUT_EVERYWHERE_PATH`` and
``LOGOUT_SESSION_SUBJECT`` set (``everywhere``, ``everywhere-2``).

Logout, the hand-written alternatives doing the same work as the middleware (delete the
session key, revoke the bearer token, write the audit entry, expire the cookie, redirect
303): :func:`fastapi_routes` and :func:`flask_routes`, each with ``/logout`` (the three
writes in one ``MULTI``/``EXEC`` pipeline, as the middleware does) and ``/logout-naive``
(one call per command, as such routes are often written).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send
from werkzeug.wrappers import Response as WerkzeugResponse

from .common import CLUSTER_VARIANTS, EVERYWHERE_PATH, SUBJECT_FIELD, VARIANTS, Variant, variant

if TYPE_CHECKING:
    import flask
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "ASGI_APPS",
    "EVERYWHERE",
    "WSGI_APPS",
    "ASGIApp",
    "BaseHTTPLogout",
    "FloorASGI",
    "asgi_app",
    "bare_asgi",
    "bare_wsgi",
    "empty_asgi",
    "empty_wsgi",
    "fastapi_routes",
    "flask_app",
    "flask_routes",
    "floor_wsgi",
    "main",
    "wsgi_app",
]

LOGOUT_PATH = "/logout"
SESSION_COOKIE = "session"
SESSION_KEY = "session:{sid}"
DENYLIST_PREFIX = "logout:revoked:"
EVENTS_STREAM = "logout:events"
EVENTS_MAXLEN = 100_000
TOKEN_TTL = 3600

_BODY = b"ok"
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"2")],
}
_END = {"type": "http.response.body", "body": _BODY}


async def bare_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    """The minimal ASGI app: ``200 ok`` to every HTTP request."""
    if scope["type"] != "http":
        return
    await send(_START)
    await send(_END)


def bare_wsgi(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The minimal WSGI app: ``200 ok`` to every request."""
    start_response(
        "200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "2")]
    )
    return [_BODY]


def empty_asgi(app: ASGIApp) -> ASGIApp:
    """The least any pure ASGI middleware costs: one more coroutine call."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)

    return middleware


class FloorASGI:
    """The floor of a pass-through: a minimal pure ASGI class that compares the path
    with its own URI and passes every other request on, untouched (what any logout
    middleware must do at least). Its own URI answers ``204``."""

    def __init__(self, app: ASGIApp, path: str = LOGOUT_PATH) -> None:
        self.app = app
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def floor_wsgi(app: WSGIApplication, path: str = LOGOUT_PATH) -> WSGIApplication:
    """The WSGI twin of :class:`FloorASGI`: compare ``PATH_INFO``, pass the rest on."""

    def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == path:
            start_response("204 No Content", [])
            return [b""]
        return app(environ, start_response)

    return middleware


def empty_wsgi(app: WSGIApplication) -> WSGIApplication:
    """The least any WSGI middleware costs: one more function call."""

    def middleware(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return app(environ, start_response)

    return middleware


def flask_app() -> flask.Flask:
    """A minimal Flask app: ``GET /`` answers ``ok``."""
    import flask

    app = flask.Flask("bench")

    @app.get("/")
    def index() -> flask.Response:
        return flask.Response(_BODY, mimetype="text/plain")

    return app


def _bearer(authorization: str | None) -> str | None:
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    return authorization[7:].strip() or None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def denylist_key(token: str) -> str:
    """The key that revokes ``token``: :data:`DENYLIST_PREFIX` and the token's SHA-256."""
    return DENYLIST_PREFIX + _sha256(token)


def audit_entry(sid: str | None, token: str | None, client: str, user_agent: str) -> dict[str, str]:
    """The audit entry a hand-written logout writes: the fields the middleware writes."""
    return {
        "id": uuid.uuid4().hex,
        "at": datetime.now(timezone.utc).isoformat(),
        "method": "POST",
        "path": LOGOUT_PATH,
        "cookies": SESSION_COOKIE,
        "session_id_hash": _sha256(sid) if sid else "",
        "token_hash": _sha256(token) if token else "",
        "token_ttl": str(TOKEN_TTL) if token else "",
        "client": client,
        "user_agent": user_agent[:256],
        "redirect": "/",
    }


def logout_writes(
    target: Any, sid: str | None, token: str | None, entry: dict[str, str]
) -> list[Any]:
    """Issue a logout's writes on ``target``, in order: delete the session, revoke the
    token, append the audit entry. On a pipeline they are queued; a client sends each
    at once, and for an asyncio client what is returned are the calls to await, in order.
    """
    calls = []
    if sid:
        calls.append(target.delete(SESSION_KEY.format(sid=sid)))
    if token:
        calls.append(target.set(denylist_key(token), b"1", ex=TOKEN_TTL))
    calls.append(target.xadd(EVENTS_STREAM, entry, maxlen=EVENTS_MAXLEN, approximate=True))
    return calls


async def _async_logout(
    client: redis.asyncio.Redis, request: Request, *, pipelined: bool
) -> Response:
    sid = request.cookies.get(SESSION_COOKIE)
    token = _bearer(request.headers.get("authorization"))
    peer = request.client.host if request.client else ""
    entry = audit_entry(sid, token, peer, request.headers.get("user-agent", ""))
    if pipelined:
        pipe = client.pipeline(transaction=True)
        logout_writes(pipe, sid, token, entry)
        await pipe.execute()
    else:
        for call in logout_writes(client, sid, token, entry):
            await call
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.delete_cookie(SESSION_COOKIE, httponly=True)
    return response


class BaseHTTPLogout(BaseHTTPMiddleware):
    """The middleware's logic written the common way, as a Starlette ``BaseHTTPMiddleware``:
    ``POST /logout`` is answered here; any other request carrying a bearer token costs
    one ``EXISTS`` and a ``401`` when the token is revoked."""

    def __init__(self, app: ASGIApp, redis_url: str) -> None:
        super().__init__(app)
        self.redis = redis.asyncio.Redis.from_url(redis_url)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Starlette's hook: the logout URI answered here, a denylisted bearer token
        refused, anything else passed to ``call_next``."""
        if request.url.path == LOGOUT_PATH:
            if request.method != "POST":
                return PlainTextResponse("Method Not Allowed", status_code=405)
            return await _async_logout(self.redis, request, pipelined=True)
        token = _bearer(request.headers.get("authorization"))
        if token and await self.redis.exists(denylist_key(token)):
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return await call_next(request)


def fastapi_routes(redis_url: str) -> ASGIApp:
    """A FastAPI app with hand-written ``POST /logout`` and ``POST /logout-naive``."""
    import fastapi

    client = redis.asyncio.Redis.from_url(redis_url)
    app = fastapi.FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        return await _async_logout(client, request, pipelined=True)

    @app.post("/logout-naive")
    async def logout_naive(request: Request) -> Response:
        return await _async_logout(client, request, pipelined=False)

    @app.get("/")
    async def index() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app


def flask_routes(redis_url: str) -> flask.Flask:
    """A Flask app with hand-written ``POST /logout`` and ``POST /logout-naive``."""
    import flask

    client = redis.Redis.from_url(redis_url)
    app = flask.Flask("bench_routes")

    def logout(*, pipelined: bool) -> WerkzeugResponse:
        request = flask.request
        sid = request.cookies.get(SESSION_COOKIE)
        token = _bearer(request.headers.get("Authorization"))
        entry = audit_entry(
            sid, token, request.remote_addr or "", request.headers.get("User-Agent", "")
        )
        if pipelined:
            pipe = client.pipeline(transaction=True)
            logout_writes(pipe, sid, token, entry)
            pipe.execute()
        else:
            logout_writes(client, sid, token, entry)
        response = flask.redirect("/", 303)
        response.headers["Cache-Control"] = "no-store"
        response.delete_cookie(SESSION_COOKIE, httponly=True)
        return response

    app.add_url_rule("/logout", "logout", lambda: logout(pipelined=True), methods=["POST"])
    app.add_url_rule(
        "/logout-naive", "logout_naive", lambda: logout(pipelined=False), methods=["POST"]
    )
    app.add_url_rule("/", "index", lambda: flask.Response(_BODY, mimetype="text/plain"))
    return app


#: The configuration of the logout-everywhere section: the first variant with an
#: everywhere URI and the subject's place in session records.
EVERYWHERE = VARIANTS[0].with_settings(
    "everywhere",
    f"{VARIANTS[0].label}, everywhere URI",
    everywhere_path=EVERYWHERE_PATH,
    session_subject=SUBJECT_FIELD,
)
#: Apps served as more than one process: ``<name>-2`` is a second process of ``<name>``.
_TWICE = (*(v.name for v in (*VARIANTS, *CLUSTER_VARIANTS)), EVERYWHERE.name)
_MIDDLEWARES = (*_TWICE, *(f"{name}-2" for name in _TWICE))

#: ASGI apps served by uvicorn, by name; each takes the Redis URL.
ASGI_APPS: tuple[str, ...] = ("bare", "bare-aa", *_MIDDLEWARES, "basehttp", "fastapi-routes")
#: WSGI apps served by waitress, by name (all Flask apps).
WSGI_APPS: tuple[str, ...] = ("bare", "bare-aa", *_MIDDLEWARES, "flask-routes")


def _variant(name: str) -> Variant:
    """The variant served as app ``name`` (``<variant>`` or ``<variant>-2``)."""
    name = name.removesuffix("-2")
    return EVERYWHERE if name == EVERYWHERE.name else variant(name)


def asgi_app(name: str, redis_url: str) -> ASGIApp:
    """The ASGI app called ``name`` (one of :data:`ASGI_APPS`)."""
    if name not in ASGI_APPS:
        raise KeyError(f"no ASGI app {name!r}")
    if name in ("bare", "bare-aa"):
        return bare_asgi
    if name == "basehttp":
        return BaseHTTPLogout(bare_asgi, redis_url)
    if name == "fastapi-routes":
        return fastapi_routes(redis_url)
    return _variant(name).wrap_asgi(bare_asgi, redis_url)


def wsgi_app(name: str, redis_url: str) -> WSGIApplication:
    """The WSGI app called ``name`` (one of :data:`WSGI_APPS`): Flask, bare or wrapped."""
    if name not in WSGI_APPS:
        raise KeyError(f"no WSGI app {name!r}")
    if name in ("bare", "bare-aa"):
        return flask_app()
    if name == "flask-routes":
        return flask_routes(redis_url)
    return _variant(name).wrap_wsgi(flask_app(), redis_url)


def main(argv: list[str] | None = None) -> None:
    """Serve one app until terminated: ``python -m benchmarks.apps STACK APP PORT URL``
    (uvicorn: one process, no workers, access log off; waitress: its default 4 threads)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apps")
    parser.add_argument("stack", choices=["asgi", "wsgi"])
    parser.add_argument("app")
    parser.add_argument("port", type=int)
    parser.add_argument("redis_url")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.stack == "asgi":
        import uvicorn

        uvicorn.run(
            asgi_app(args.app, args.redis_url),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http=args.http,
        )
    else:
        import waitress

        logging.getLogger("waitress").setLevel(logging.ERROR)
        with contextlib.suppress(KeyboardInterrupt):
            app = wsgi_app(args.app, args.redis_url)
            waitress.serve(app, host="127.0.0.1", port=args.port, threads=4, ident="waitress")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
