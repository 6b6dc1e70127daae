"""A FastAPI app for the browser suite, served over HTTPS: the pages of
examples/fastapi_app.py, starsessions on Redis, its session id in a ``__Host-session``
cookie.

The cookie is set as a ``__Host-`` cookie must be (``Secure``, ``Path=/``, no
``Domain``), ``HttpOnly``, with the ``SameSite`` of ``BROWSER_SAMESITE`` (``lax``
unless told). With ``none`` a browser sends it on a cross-site ``POST`` too, so that
refusing such a logout is the middleware's doing, not the browser's. A browser keeps
such a cookie only when every attribute is right, and drops it only when a deletion has
the same attributes: the jar after a logout shows the middleware got them right.

:class:`~logout_middleware.LogoutMiddleware` is added last (outermost) and configured by
``LOGOUT_*`` variables only (the tests give ``LOGOUT_SESSION_COOKIE=__Host-session`` and
``LOGOUT_SESSION_KEYS=starsessions.{sid}``). Its own settings: ``REDIS_URL`` and
``BROWSER_SAMESITE``. The routes are the example's own (its ``index`` and ``login``):

* ``GET /``: ``Logged in as <user>.`` with a logout form, or ``Not logged in.`` with a
  login form (in ``<p id="user">``).
* ``POST /login`` (form ``username``): starts a session for that user (a fresh id), then
  ``303`` to ``/``.
* ``POST /logout`` never reaches the app: the middleware answers it.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from examples.fastapi_app import index, login
from logout_middleware import LogoutConfig, LogoutMiddleware
from tests.servers import add_redis_sessions

#: The session cookie: the ``__Host-`` prefix binds it to this host, over HTTPS only.
COOKIE = "__Host-session"

app = FastAPI(title="HTTPS FastAPI app with a __Host- session cookie")
app.get("/", response_class=HTMLResponse)(index)
app.post("/login")(login)

add_redis_sessions(
    app,
    cookie_name=COOKIE,
    https_only=True,
    same_site=os.environ.get("BROWSER_SAMESITE", "lax"),
)
app.add_middleware(LogoutMiddleware, config=LogoutConfig.from_env())
