"""A FastAPI app that signs users in through an OpenID Provider with Authlib, sessions on
Redis (starsessions: ``starsessions.<id>``, the bare id in the ``session`` cookie).

Settings from the environment: ``OIDC_ISSUER`` (metadata from its
``/.well-known/openid-configuration``), ``OIDC_CLIENT_ID``, ``OIDC_CLIENT_SECRET``,
``REDIS_URL`` and ``APP_BASE_URL`` (``http://127.0.0.1:<port>``; the redirect URI is
``<APP_BASE_URL>/auth/callback``). :class:`~logout_middleware.LogoutMiddleware` is added
last (outermost), configured by ``LOGOUT_*`` variables only.

* ``GET /login``: redirect to the provider (scope ``openid``, PKCE S256, a nonce).
* ``GET /auth/callback``: Authlib exchanges the code and checks the ID token; the session
  keeps what it gives: ``user`` = the ID token's claims (``sub``, and ``sid`` when the
  provider sends one), ``id_token`` = the raw ID token. Then 303 to ``/``.
* ``GET /``: ``Logged in as <sub>.`` or ``Not logged in.``
"""

from __future__ import annotations

import os

from authlib.integrations.starlette_client import OAuth
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, RedirectResponse
from starlette.responses import Response

from logout_middleware import LogoutMiddleware
from tests.servers import add_redis_sessions

ISSUER = os.environ["OIDC_ISSUER"].rstrip("/")
APP_BASE_URL = os.environ["APP_BASE_URL"].rstrip("/")

oauth = OAuth()
oauth.register(
    "provider",
    client_id=os.environ["OIDC_CLIENT_ID"],
    client_secret=os.environ["OIDC_CLIENT_SECRET"],
    server_metadata_url=f"{ISSUER}/.well-known/openid-configuration",
    client_kwargs={"scope": "openid", "code_challenge_method": "S256", "timeout": 10},
)

app = FastAPI(title="OpenID Connect sign-in (Authlib, starsessions)")


@app.get("/login")
async def login(request: Request) -> Response:
    response: Response = await oauth.provider.authorize_redirect(
        request, f"{APP_BASE_URL}/auth/callback"
    )
    return response


@app.get("/auth/callback")
async def callback(request: Request) -> Response:
    token = await oauth.provider.authorize_access_token(request)
    request.session["user"] = dict(token["userinfo"])
    request.session["id_token"] = token["id_token"]
    return RedirectResponse("/", status_code=303)


@app.get("/")
async def index(request: Request) -> PlainTextResponse:
    user = request.session.get("user")
    if not isinstance(user, dict) or not user.get("sub"):
        return PlainTextResponse("Not logged in.\n")
    return PlainTextResponse(f"Logged in as {user['sub']}.\n")


add_redis_sessions(app)
app.add_middleware(LogoutMiddleware)
