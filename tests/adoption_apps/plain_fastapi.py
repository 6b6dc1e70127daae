"""An ordinary FastAPI app: starsessions on Redis, plus JWT bearer tokens (HS256).

Written as if logout-middleware did not exist; it is adopted by the server command alone.
Settings come from the environment: ``REDIS_URL`` and ``JWT_SECRET``.

* ``POST /login`` (JSON ``username``, ``password``): starts a session.
* ``GET /``: who am I, by the session.
* ``POST /token``: for a logged-in session, a JWT valid for 15 minutes.
* ``GET /api/me`` with ``Authorization: Bearer <jwt>``: who am I, by the token; each
  call is counted in ``api-calls:<user>`` (usage metering).
* ``GET /logout``: the usual half-done logout: it forgets the user in the session, and
  JWTs, being stateless, stay valid until they expire.
"""

from __future__ import annotations

import hmac
import os
import secrets
import time
from typing import Annotated, Any

import jwt
import redis.asyncio
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from starsessions import SessionAutoloadMiddleware, SessionMiddleware
from starsessions.stores.redis import RedisStore

#: The only accounts; a real app would check a password hash in its database.
USERS = {"alice": "wonderland", "bob": "builder"}
JWT_SECRET = os.environ["JWT_SECRET"]
JWT_ALGORITHM = "HS256"
TOKEN_LIFETIME = 15 * 60

store = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])

app = FastAPI(title="plain FastAPI app")
app.add_middleware(SessionAutoloadMiddleware)
app.add_middleware(
    SessionMiddleware,
    store=RedisStore(connection=store, prefix="starsessions."),
    cookie_name="session",
    cookie_https_only=False,
    lifetime=3600,
)


class Credentials(BaseModel):
    username: str
    password: str


@app.post("/login")
async def login(credentials: Credentials, request: Request) -> dict[str, str]:
    expected = USERS.get(credentials.username)
    if expected is None or not hmac.compare_digest(expected, credentials.password):
        raise HTTPException(status_code=401, detail="bad credentials")
    request.session["user"] = credentials.username
    return {"user": credentials.username}


@app.get("/")
async def whoami(request: Request) -> dict[str, str | None]:
    return {"user": request.session.get("user")}


@app.post("/token")
async def issue_token(request: Request) -> dict[str, str]:
    user = request.session.get("user")
    if user is None:
        raise HTTPException(status_code=401, detail="log in first")
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + TOKEN_LIFETIME, "jti": secrets.token_hex(16)}
    return {"token": jwt.encode(claims, JWT_SECRET, algorithm=JWT_ALGORITHM)}


@app.get("/api/me")
async def api_me(authorization: Annotated[str, Header()] = "") -> dict[str, Any]:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(status_code=401, detail="invalid token")
    try:
        claims = jwt.decode(token, JWT_SECRET, algorithms=[JWT_ALGORITHM])
    except jwt.PyJWTError:
        raise HTTPException(status_code=401, detail="invalid token") from None
    user = str(claims["sub"])
    calls = await store.incr(f"api-calls:{user}")
    return {"user": user, "calls": calls}


@app.get("/logout")
async def logout(request: Request) -> RedirectResponse:
    request.session.pop("user", None)
    return RedirectResponse("/", status_code=303)
