"""A FastAPI app whose slow request saves its session late: the resurrection race.

FastAPI + starsessions (``RedisStore``, keys ``starsessions.<id>``, the bare id in the
``session`` cookie, loaded by ``SessionAutoloadMiddleware``), with
:class:`~logout_middleware.LogoutMiddleware` added last (outermost), configured by
``LOGOUT_*`` variables only. Its own settings: ``REDIS_URL``, and ``SLOW_SECONDS`` (how
long ``GET /slow`` holds the loaded session before saving it; 0.3 by default).

* ``POST /login`` (form ``username``): starts a session for that user (a fresh id).
* ``GET /``: ``Logged in as <user>.`` or ``Not logged in.``
* ``GET /slow``: the session is loaded before the route runs; it waits, then modifies
  the session (``hits`` + 1), which starsessions writes back as the response starts.
  Answers ``Logged in as <user>; hits=<n>.`` (or ``Not logged in.``).
* ``GET /cookie``: every ``Cookie`` header field that reached the app (JSON list), so
  that a test can tell which cookies the middleware let through.
* ``GET /pid``: the worker's process id, so that a test can tell which worker of
  ``uvicorn --workers N`` answered on a connection.
* ``POST /logout`` never reaches the app: the middleware answers it.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from starsessions import regenerate_session_id

from logout_middleware import LogoutMiddleware
from tests.servers import add_redis_sessions

#: How long ``GET /slow`` keeps the session loaded before saving it, seconds.
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "0.3"))
#: Largest login form body read, bytes.
MAX_LOGIN_BODY = 4096

app = FastAPI(title="race FastAPI app")


@app.post("/login")
async def login(request: Request) -> PlainTextResponse:
    body = await request.body()
    fields = parse_qs(body[:MAX_LOGIN_BODY].decode("utf-8", "replace"))
    user = fields.get("username", [""])[0].strip()
    if not user:
        return PlainTextResponse("Bad Request: give a user name.\n", status_code=400)
    request.session.clear()
    regenerate_session_id(request)
    request.session["user"] = user
    return PlainTextResponse(f"Logged in as {user}.\n")


@app.get("/")
async def index(request: Request) -> PlainTextResponse:
    user = request.session.get("user")
    return PlainTextResponse("Not logged in.\n" if user is None else f"Logged in as {user}.\n")


@app.get("/slow")
async def slow(request: Request) -> PlainTextResponse:
    user = request.session.get("user")
    if user is None:
        return PlainTextResponse("Not logged in.\n")
    hits = int(request.session.get("hits", 0))
    await asyncio.sleep(SLOW_SECONDS)
    request.session["hits"] = hits + 1
    return PlainTextResponse(f"Logged in as {user}; hits={hits + 1}.\n")


@app.get("/cookie")
async def cookie(request: Request) -> list[str]:
    return request.headers.getlist("cookie")


@app.get("/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


add_redis_sessions(app)
# Added last, so outermost: it sees every request before starsessions does.
app.add_middleware(LogoutMiddleware)
