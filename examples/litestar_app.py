"""A Litestar app with server-side sessions on Litestar's own Redis store, adopting the
logout middleware by wrapping the whole app. Serve it on an embedded Redis with::

    python dev.py example litestar

(the README's recipes table has its server command and ``LOGOUT_*`` settings).

Litestar's ``ServerSideSessionConfig`` keeps a session in the store registered as
``"sessions"``: here a ``RedisStore`` in the ``sessions`` namespace below the default
root namespace ``LITESTAR``, as Litestar's documentation sets one up, so the record of a
session is the Redis key ``LITESTAR_sessions:<id>``. The id (64 hex digits) is the bare
value of the ``session`` cookie, and the record is the session dict as JSON bytes
(``LOGOUT_SESSION_FORMAT=json``), the user name at ``user``.

Litestar writes the session on every response, an empty one included (an anonymous
visitor gets a record ``{}`` and a cookie), and has no call that renews the session id
at login: the middleware reads the record again after the login's ``POST``, so it
learns the user at once.

The middleware wraps the whole app, not ``Litestar(middleware=[...])``: Litestar runs
its middleware stack only for requests that match a route, and ``/logout`` has none, so
a ``POST /logout`` would get Litestar's ``404`` (or ``405``) there.
"""

from __future__ import annotations

import html
import os
from typing import Any

import redis.asyncio
from litestar import Litestar, MediaType, Request, get, post
from litestar.middleware.session.server_side import ServerSideSessionConfig
from litestar.response import Redirect, Response
from litestar.stores.redis import RedisStore

from logout_middleware import LogoutConfig, LogoutMiddleware

#: Longest user name accepted by the login form.
MAX_USER_LENGTH = 64

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Litestar example</title></head>
<body>
<h1>Litestar + RedisStore sessions + logout-middleware</h1>
{body}
</body></html>
"""

LOGIN_FORM = f"""<p id="user">Not logged in.</p>
<form method="post" action="/login">
  <label>User name <input name="username" required maxlength="{MAX_USER_LENGTH}"></label>
  <button type="submit">Log in</button>
</form>"""

LOGOUT_FORM = """<p id="user">Logged in as {user}.</p>
<form method="post" action="/logout"><button type="submit">Log out</button></form>"""


@get("/", media_type=MediaType.HTML)
async def index(request: Request[Any, Any, Any]) -> str:
    """Who is logged in, with the form that fits: log in, or log out."""
    user = request.session.get("user")
    body = LOGIN_FORM if user is None else LOGOUT_FORM.format(user=html.escape(str(user)))
    return PAGE.format(body=body)


@post("/login")
async def login(request: Request[Any, Any, Any]) -> Response[str] | Redirect:
    """Log in as the form's ``username`` (no password: this is a demo of logging out)."""
    form = await request.form()
    user = str(form.get("username", "")).strip()
    if not user or len(user) > MAX_USER_LENGTH:
        return Response(
            "Bad Request: give a user name.\n", status_code=400, media_type=MediaType.TEXT
        )
    request.set_session({"user": user})
    return Redirect("/", status_code=303)


sessions_redis = redis.asyncio.Redis.from_url(
    os.environ.get("REDIS_URL", "redis://localhost:6379/0")
)

# The whole integration: the outermost layer, so POST /logout is answered before
# Litestar routes it. The configuration is read here, at import, so that a bad
# LOGOUT_* value stops the app at start-up.
app = LogoutMiddleware(
    Litestar(
        route_handlers=[index, login],
        middleware=[ServerSideSessionConfig(key="session").middleware],
        stores={"sessions": RedisStore(sessions_redis).with_namespace("sessions")},
        on_shutdown=[sessions_redis.aclose],
    ),
    config=LogoutConfig.from_env(),
)
