"""A Quart app with server-side sessions in Redis (Quart-Session, ``SESSION_TYPE="redis"``),
adopting the logout middleware around its ASGI app. Serve it on an embedded Redis with::

    python dev.py example quart

(the README's recipes table has its server command and ``LOGOUT_*`` settings).

Quart-Session 3.0 keeps a session in the Redis key ``session:<id>`` (its default
``SESSION_KEY_PREFIX``), the id a UUID and the bare value of the ``session`` cookie
(``SESSION_USE_SIGNER`` is off). The record is the session dict in Quart's tagged JSON
(plain JSON for plain data, ``LOGOUT_SESSION_FORMAT=json``, never pickle), with the
user name at ``user`` beside Quart-Session's ``_addr``. Quart-Session writes a session
only when it changed, so a visitor who never logs in gets no record and no cookie.
Its Redis client is made at start-up from ``SESSION_URI``.
"""

from __future__ import annotations

import os

from markupsafe import escape
from quart import Quart, Response, redirect, request, session
from quart.typing import ResponseReturnValue
from quart_session import Session

from logout_middleware import LogoutConfig, LogoutMiddleware

#: Longest user name accepted by the login form.
MAX_USER_LENGTH = 64

app = Quart(__name__)
app.config.update(
    SESSION_TYPE="redis",
    SESSION_URI=os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    SESSION_KEY_PREFIX="session:",
    SESSION_COOKIE_NAME="session",
    SESSION_COOKIE_SAMESITE="Lax",
)
Session(app)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Quart example</title></head>
<body>
<h1>Quart + Quart-Session + logout-middleware</h1>
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


@app.get("/")
async def index() -> Response:
    """Who is logged in, with the form that fits: log in, or log out."""
    user = session.get("user")
    body = LOGIN_FORM if user is None else LOGOUT_FORM.format(user=escape(user))
    return Response(PAGE.format(body=body), mimetype="text/html")


@app.post("/login")
async def login() -> ResponseReturnValue:
    """Log in as the given user name (no password: this is a demo of logging out)."""
    form = await request.form
    user = form.get("username", "").strip()
    if not user or len(user) > MAX_USER_LENGTH:
        return Response("Bad Request: give a user name.\n", status=400, mimetype="text/plain")
    session.clear()
    session["user"] = user
    return redirect("/", code=303)


# The whole integration: POST /logout is answered by the middleware from here on. The
# configuration is read here, at import, so that a bad LOGOUT_* value stops the app.
# (Assigning to a method is what mypy's ignore is for, as in Flask's wsgi_app idiom.)
app.asgi_app = LogoutMiddleware(  # type: ignore[method-assign]
    app.asgi_app,
    config=LogoutConfig.from_env(),
)
