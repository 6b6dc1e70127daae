"""A Flask app whose slow request saves its session late: the resurrection race.

Flask + Flask-Session on Redis (``SESSION_TYPE="redis"``, keys ``session:<id>``, the
bare id in the ``session`` cookie, ``SESSION_REFRESH_EACH_REQUEST`` left at its default
``True``), wrapped by :class:`~logout_middleware.WSGILogoutMiddleware` configured by
``LOGOUT_*`` variables only. Its own settings: ``REDIS_URL``, and ``SLOW_SECONDS`` (how
long ``GET /slow`` holds the loaded session before saving it; 0.3 by default).

* ``POST /login`` (form ``username``): starts a session for that user.
* ``GET /``: ``Logged in as <user>.`` or ``Not logged in.``
* ``GET /slow``: loads the session, waits, then modifies it (``hits`` + 1), so that
  Flask-Session writes the record back after the wait, whatever happened meanwhile.
  Answers ``Logged in as <user>; hits=<n>.`` (or ``Not logged in.``).
* ``GET /cookie``: the ``Cookie`` header that reached the app, as a JSON list (empty
  without one), so that a test can tell which cookies the middleware let through.
* ``POST /logout`` never reaches the app: the middleware answers it.
"""

from __future__ import annotations

import os
import time

from flask import Response, jsonify, request, session

from logout_middleware import WSGILogoutMiddleware
from tests.servers import flask_app_with_redis_sessions, text_response

#: How long ``GET /slow`` keeps the session loaded before saving it, seconds.
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "0.3"))

app = flask_app_with_redis_sessions(__name__)


@app.post("/login")
def login() -> Response:
    user = request.form.get("username", "").strip()
    if not user:
        return text_response("Bad Request: give a user name.", 400)
    session.clear()
    session["user"] = user
    return text_response(f"Logged in as {user}.")


@app.get("/")
def index() -> Response:
    user = session.get("user")
    return text_response("Not logged in." if user is None else f"Logged in as {user}.")


@app.get("/slow")
def slow() -> Response:
    user = session.get("user")
    if user is None:
        return text_response("Not logged in.")
    hits = int(session.get("hits", 0))
    time.sleep(SLOW_SECONDS)
    session["hits"] = hits + 1
    return text_response(f"Logged in as {user}; hits={hits + 1}.")


@app.get("/cookie")
def cookie() -> Response:
    header = request.environ.get("HTTP_COOKIE")
    return jsonify([header] if header is not None else [])


app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)  # type: ignore[method-assign]
