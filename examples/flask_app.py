"""A Flask app with server-side sessions in Redis (Flask-Session), adopting the logout
middleware by configuration only.

The app itself knows nothing about logging out: the one line that wraps ``wsgi_app``
below is the whole integration, and every setting comes from ``LOGOUT_*``::

    REDIS_URL=redis://localhost:6379/0 LOGOUT_REDIS_URL=redis://localhost:6379/0 \\
        python -m waitress --port=8000 examples.flask_app:app

Flask-Session 0.8 keeps a session in the Redis key ``session:<id>`` and puts the bare
id in the ``session`` cookie, which are the middleware's defaults (``LOGOUT_SESSION_KEYS``
and ``LOGOUT_SESSION_COOKIE``). ``SESSION_USE_SIGNER`` is deprecated in Flask-Session
0.8 (it warns), so the id is not signed and ``LOGOUT_SESSION_SECRET`` stays unset.
"""

from __future__ import annotations

import os

import redis
from flask import Flask, Response, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_session import Session
from markupsafe import escape

from logout_middleware import WSGILogoutMiddleware

#: Longest user name accepted by the login form.
MAX_USER_LENGTH = 64

app = Flask(__name__)
app.config.update(
    SESSION_TYPE="redis",
    SESSION_REDIS=redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0")),
    SESSION_KEY_PREFIX="session:",
    SESSION_COOKIE_NAME="session",
    SESSION_COOKIE_SAMESITE="Lax",
)
Session(app)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flask example</title></head>
<body>
<h1>Flask + Flask-Session + logout-middleware</h1>
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
def index() -> Response:
    """Who is logged in, with the form that fits: log in, or log out."""
    user = session.get("user")
    body = LOGIN_FORM if user is None else LOGOUT_FORM.format(user=escape(user))
    return Response(PAGE.format(body=body), mimetype="text/html")


@app.post("/login")
def login() -> ResponseReturnValue:
    """Log in as the given user name (no password: this is a demo of logging out)."""
    user = request.form.get("username", "").strip()
    if not user or len(user) > MAX_USER_LENGTH:
        return Response("Bad Request: give a user name.\n", status=400, mimetype="text/plain")
    session.clear()
    session["user"] = user
    return redirect(url_for("index"), code=303)


# The whole integration: POST /logout is answered by the middleware from here on.
app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)  # type: ignore[method-assign]
