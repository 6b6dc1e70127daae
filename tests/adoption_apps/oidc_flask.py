"""A Flask app that signs users in through an OpenID Provider with Authlib, sessions on
Redis (Flask-Session: ``session:<id>``, the bare id in the ``session`` cookie).

Settings from the environment: ``OIDC_ISSUER`` (metadata from its
``/.well-known/openid-configuration``), ``OIDC_CLIENT_ID``, ``OIDC_CLIENT_SECRET``,
``REDIS_URL``, ``APP_BASE_URL`` (``http://127.0.0.1:<port>``; the redirect URI is
``<APP_BASE_URL>/auth/callback``) and ``SECRET_KEY`` (random when unset). The app is
wrapped by :class:`~logout_middleware.WSGILogoutMiddleware`, configured by ``LOGOUT_*``
variables only.

* ``GET /login``: redirect to the provider (scope ``openid``, PKCE S256, a nonce).
* ``GET /auth/callback``: Authlib exchanges the code and checks the ID token; the session
  keeps what it gives: ``user`` = the ID token's claims (``sub``, and ``sid`` when the
  provider sends one), ``id_token`` = the raw ID token. Then 303 to ``/``.
* ``GET /``: ``Logged in as <sub>.`` or ``Not logged in.``
"""

from __future__ import annotations

import os

from authlib.integrations.flask_client import OAuth
from flask import Response, redirect, session
from werkzeug.wrappers import Response as BaseResponse

from logout_middleware import WSGILogoutMiddleware
from tests.servers import flask_app_with_redis_sessions, text_response

ISSUER = os.environ["OIDC_ISSUER"].rstrip("/")
APP_BASE_URL = os.environ["APP_BASE_URL"].rstrip("/")

app = flask_app_with_redis_sessions(__name__)

oauth = OAuth(app)
oauth.register(
    "provider",
    client_id=os.environ["OIDC_CLIENT_ID"],
    client_secret=os.environ["OIDC_CLIENT_SECRET"],
    server_metadata_url=f"{ISSUER}/.well-known/openid-configuration",
    # requests has no timeout of its own: default_timeout bounds every call to the provider.
    client_kwargs={"scope": "openid", "code_challenge_method": "S256", "default_timeout": 10},
)


@app.get("/login")
def login() -> BaseResponse:
    response: BaseResponse = oauth.provider.authorize_redirect(f"{APP_BASE_URL}/auth/callback")
    return response


@app.get("/auth/callback")
def callback() -> BaseResponse:
    token = oauth.provider.authorize_access_token()
    session["user"] = dict(token["userinfo"])
    session["id_token"] = token["id_token"]
    return redirect("/", code=303)


@app.get("/")
def index() -> Response:
    user = session.get("user")
    if not isinstance(user, dict) or not user.get("sub"):
        return text_response("Not logged in.")
    return text_response(f"Logged in as {user['sub']}.")


app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)  # type: ignore[method-assign]
