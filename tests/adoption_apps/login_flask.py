"""A Flask-Login app: sessions on Redis (Flask-Session) and short-lived JWTs (HS256).

Flask-Login keeps the logged-in user's id in the session as ``_user_id``; Flask-Session
stores the session in Redis (``session:<id>``, the bare id in the ``session`` cookie).
The app is wrapped by :class:`~logout_middleware.WSGILogoutMiddleware`, configured by
``LOGOUT_*`` variables only (``LOGOUT_SESSION_SUBJECT=_user_id`` lets it learn whose
sessions are whose). Its own settings: ``REDIS_URL``, ``JWT_SECRET`` and ``SECRET_KEY``.

* ``POST /login`` (form ``username``): ``login_user`` for a known user; else 401, and
  the failed attempt is counted in the session (``failed_logins``), as apps that slow
  down guessing do. Flask-Login keeps the session's id at login.
* ``GET /``: ``Logged in as <name>.`` or ``Not logged in.`` (``current_user``).
* ``POST /token``: for a logged-in user, a JWT with ``sub`` = the user's id, ``iat`` =
  now, valid for :data:`TOKEN_LIFETIME` seconds.
* ``GET /api/me`` with ``Authorization: Bearer <jwt>``: the token's user, or 401.
* ``POST /logout`` never reaches the app: the middleware answers it.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from flask import Response, jsonify, request, session
from flask_login import LoginManager, current_user, login_required, login_user

from logout_middleware import WSGILogoutMiddleware
from tests.servers import flask_app_with_redis_sessions, text_response

JWT_SECRET = os.environ["JWT_SECRET"]
JWT_ALGORITHM = "HS256"
#: How long an issued token is valid, seconds.
TOKEN_LIFETIME = 600


@dataclass(frozen=True)
class User:
    """An account, as Flask-Login wants it (what ``UserMixin`` would provide)."""

    id: str
    name: str
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def get_id(self) -> str:
        return self.id


#: The only accounts, by user name; their ids are what sessions and tokens name.
USERS = {"alice": User("1", "alice"), "bob": User("2", "bob")}
BY_ID = {user.id: user for user in USERS.values()}

app = flask_app_with_redis_sessions(__name__)
login_manager = LoginManager(app)


def load_user(user_id: str) -> User | None:
    return BY_ID.get(user_id)


login_manager.user_loader(load_user)


@app.post("/login")
def login() -> Response:
    user = USERS.get(request.form.get("username", ""))
    if user is None:
        session["failed_logins"] = int(session.get("failed_logins", 0)) + 1
        return text_response("Unknown user.", 401)
    session.pop("failed_logins", None)
    login_user(user)
    return text_response(f"Logged in as {user.name}.")


@app.get("/")
def index() -> Response:
    if not current_user.is_authenticated:
        return text_response("Not logged in.")
    return text_response(f"Logged in as {current_user.name}.")


def issue_token() -> Response:
    now = int(time.time())
    claims = {
        "sub": current_user.get_id(),
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(claims, JWT_SECRET, algorithm=JWT_ALGORITHM)
    response = jsonify(access_token=token, token_type="Bearer", expires_in=TOKEN_LIFETIME)
    response.headers["Cache-Control"] = "no-store"
    return response


# Registered by call, not by decorator syntax: flask_login has no type hints.
app.post("/token")(login_required(issue_token))


@app.get("/api/me")
def api_me() -> Response | tuple[Response, int]:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    claims: dict[str, Any] | None = None
    if scheme.lower() == "bearer" and token:
        try:
            claims = jwt.decode(
                token, JWT_SECRET, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sub"]}
            )
        except jwt.PyJWTError:
            claims = None
    user = BY_ID.get(str(claims["sub"])) if claims is not None else None
    if user is None:
        return jsonify(error="invalid_token"), 401
    return jsonify(id=user.id, user=user.name)


app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)  # type: ignore[method-assign]
