"""A FastAPI app for the browser suite, served over HTTPS: starsessions on Redis, its
session id in a ``__Host-session`` cookie.

The cookie is set as a ``__Host-`` cookie must be (``Secure``, ``Path=/``, no
``Domain``), ``HttpOnly``, with the ``SameSite`` of ``BROWSER_SAMESITE`` (``lax``
unless told). With ``none`` a browser sends it on a cross-site ``POST`` too, so that
refusing such a logout is the middleware's doing, not the browser's. A browser keeps
such a cookie only when every attribute is right, and drops it only when a deletion has
the same attributes: the jar after a logout shows the middleware got them right.

:class:`~logout_middleware.LogoutMiddleware` is added last (outermost) and configured by
``LOGOUT_*`` variables only (the tests give ``LOGOUT_SESSION_COOKIE=__Host-session`` and
``LOGOUT_SESSION_KEYS=starsessions.{sid}``). Its own settings: ``REDIS_URL`` and
``BROWSER_SAMESITE``. The pages are those of the examples:

* ``GET /``: ``Logged in as <user>.`` with a logout form, or ``Not logged in.`` with a
  login form (in ``<p id="user">``).
* ``POST /login`` (form ``username``): starts a session for that user (a fresh id), then
  ``303`` to ``/``.
* ``POST /logout`` never reaches the app: the middleware answers it.
"""

from __future__ import annotations

import html
import os
from urllib.parse import parse_qs

import redis.asyncio
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from starlette.responses import Response
from starsessions import SessionAutoloadMiddleware, SessionMiddleware, regenerate_session_id
from starsessions.stores.redis import RedisStore

from logout_middleware import LogoutConfig, LogoutMiddleware

#: The session cookie: the ``__Host-`` prefix binds it to this host, over HTTPS only.
COOKIE = "__Host-session"
#: Largest login form body read, bytes.
MAX_LOGIN_BODY = 4096

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HTTPS example</title></head>
<body>
{body}
</body></html>
"""
LOGIN_FORM = """<p id="user">Not logged in.</p>
<form method="post" action="/login">
  <label>User name <input name="username" required></label>
  <button type="submit">Log in</button>
</form>"""
LOGOUT_FORM = """<p id="user">Logged in as {user}.</p>
<form method="post" action="/logout"><button type="submit">Log out</button></form>"""

app = FastAPI(title="HTTPS FastAPI app with a __Host- session cookie")


@app.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    user = request.session.get("user")
    body = LOGIN_FORM if user is None else LOGOUT_FORM.format(user=html.escape(user))
    return HTMLResponse(PAGE.format(body=body))


@app.post("/login")
async def login(request: Request) -> Response:
    body = await request.body()
    fields = parse_qs(body[:MAX_LOGIN_BODY].decode("utf-8", "replace"))
    user = fields.get("username", [""])[0].strip()
    if not user:
        return PlainTextResponse("Bad Request: give a user name.\n", status_code=400)
    request.session.clear()
    regenerate_session_id(request)
    request.session["user"] = user
    return RedirectResponse("/", status_code=303)


app.add_middleware(SessionAutoloadMiddleware)
app.add_middleware(
    SessionMiddleware,
    store=RedisStore(connection=redis.asyncio.from_url(os.environ["REDIS_URL"])),
    cookie_name=COOKIE,
    cookie_same_site=os.environ.get("BROWSER_SAMESITE", "lax"),
    cookie_https_only=True,
    cookie_path="/",
    lifetime=3600,
)
app.add_middleware(LogoutMiddleware, config=LogoutConfig.from_env())
