"""An ordinary Flask app: Flask-Session on Redis, plus opaque API tokens kept in Redis.

Written as if logout-middleware did not exist; it is adopted by the server command alone.
Settings come from the environment: ``REDIS_URL`` and ``SECRET_KEY``.

* ``POST /login`` (form ``username``, ``password``): starts a session.
* ``GET /``: who am I, by the session.
* ``POST /token``: for a logged-in session, an opaque bearer token, stored in Redis as
  ``token:<token>`` -> user name for an hour.
* ``GET /api/me`` with ``Authorization: Bearer <token>``: who am I, by the token; each
  call is counted in ``api-calls:<user>`` (usage metering).
* ``GET /logout``: the usual half-done logout: it forgets the user in the session, and
  does nothing about the tokens handed out.

``SESSION_USE_SIGNER`` is not set: Flask-Session 0.8 deprecates it (a DeprecationWarning).
"""

from __future__ import annotations

import hmac
import os
import secrets

import redis
from flask import Flask, abort, jsonify, redirect, request, session
from flask.typing import ResponseReturnValue
from flask_session import Session

#: The only accounts; a real app would check a password hash in its database.
USERS = {"alice": "wonderland", "bob": "builder"}
TOKEN_LIFETIME = 3600

store = redis.Redis.from_url(os.environ["REDIS_URL"])

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ["SECRET_KEY"],
    SESSION_TYPE="redis",
    SESSION_REDIS=store,
    SESSION_KEY_PREFIX="session:",
    SESSION_COOKIE_NAME="session",
    SESSION_COOKIE_HTTPONLY=True,
)
Session(app)


@app.post("/login")
def login() -> ResponseReturnValue:
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    expected = USERS.get(username)
    if expected is None or not hmac.compare_digest(expected, password):
        abort(401)
    session["user"] = username
    return jsonify(user=username)


@app.get("/")
def whoami() -> ResponseReturnValue:
    return jsonify(user=session.get("user"))


@app.post("/token")
def issue_token() -> ResponseReturnValue:
    user = session.get("user")
    if user is None:
        abort(401)
    token = secrets.token_urlsafe(32)
    store.set(f"token:{token}", user, ex=TOKEN_LIFETIME)
    return jsonify(token=token)


@app.get("/api/me")
def api_me() -> ResponseReturnValue:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    raw = store.get(f"token:{token}") if scheme.lower() == "bearer" and token else None
    if raw is None:
        return jsonify(error="invalid token"), 401
    user = raw.decode() if isinstance(raw, bytes) else str(raw)
    calls = store.incr(f"api-calls:{user}")
    return jsonify(user=user, calls=calls)


@app.get("/logout")
def logout() -> ResponseReturnValue:
    session.pop("user", None)
    return redirect("/")
