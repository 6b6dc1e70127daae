"""A FastAPI app on fastapi-users with its ``RedisStrategy``: tokens kept server-side in
Redis, sent by a bearer transport and by a cookie transport, adopted with one line,
``app.add_middleware(LogoutMiddleware, config=LogoutConfig.from_env())``. Serve it on an
embedded Redis with::

    python dev.py example fastapi-users

(the README's recipes table has its server command and ``LOGOUT_*`` settings).

fastapi-users' ``RedisStrategy`` writes ``fastapi_users_token:<token>`` holding the
user's id at each login (``LOGOUT_TOKEN_KEYS=fastapi_users_token:{token}``); both
backends share that strategy, so a token from either login works with either transport.
The cookie transport puts the token in the ``fastapiusersauth`` cookie
(``LOGOUT_TOKEN_COOKIE=fastapiusersauth``). ``POST /logout`` never reaches the app: the
middleware deletes the token's record in its one transaction, revokes the token by its
SHA-256, expires the cookie and writes the audit entry. fastapi-users' own
``/auth/*/logout`` routes stay, and delete the record too.

The users live in SQLAlchemy on aiosqlite: ``DATABASE_URL``, else a SQLite file in a
temporary directory made at start-up and removed at shutdown. A demo user
(:data:`DEMO_EMAIL`, :data:`DEMO_PASSWORD`) is created at start-up; more register at
``POST /auth/register``. ``REDIS_URL`` is the Redis of the tokens; ``SECRET`` signs
fastapi-users' reset and verification tokens (random when unset).

Routes: ``GET /`` (who is logged in, with a login or logout form), ``GET /me`` (the user
of the request's token, or ``401``), ``POST /auth/bearer/login`` (form ``username``,
``password``: ``{"access_token": ..., "token_type": "bearer"}``),
``POST /auth/cookie/login`` (the same form: ``204`` with the cookie),
``POST /auth/register`` (JSON ``email``, ``password``).
"""

from __future__ import annotations

import contextlib
import html
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import redis.asyncio
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from fastapi_users import BaseUserManager, FastAPIUsers, UUIDIDMixin, exceptions, schemas
from fastapi_users.authentication import (
    AuthenticationBackend,
    BearerTransport,
    CookieTransport,
    RedisStrategy,
)
from fastapi_users.db import SQLAlchemyBaseUserTableUUID, SQLAlchemyUserDatabase
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from logout_middleware import LogoutConfig, LogoutMiddleware

#: The demo user created at start-up.
DEMO_EMAIL = "demo@example.com"
#: Its password (a demo: never ship a known password).
DEMO_PASSWORD = "demo-password-0"
#: How long a token (its Redis record and the cookie) lives, seconds.
TOKEN_LIFETIME = 3600
#: fastapi-users' ``CookieTransport`` cookie name (its default).
COOKIE_NAME = "fastapiusersauth"
#: ``Secure`` on the login cookie: fastapi-users' default is true; ``COOKIE_SECURE=false``
#: lets a browser keep it on plain ``http://`` (this demo's default).
COOKIE_SECURE = os.environ.get("COOKIE_SECURE", "false").lower() in ("1", "true", "yes")

SECRET = os.environ.get("SECRET") or secrets.token_urlsafe(32)
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")

_made_dir = None if os.environ.get("DATABASE_URL") else Path(tempfile.mkdtemp(prefix="fu-demo-"))
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite+aiosqlite:///{_made_dir}/users.db"


class Base(DeclarativeBase):
    """The SQLAlchemy models' base."""


class User(SQLAlchemyBaseUserTableUUID, Base):
    """fastapi-users' user table: id (UUID), email, hashed password, flags."""


class UserRead(schemas.BaseUser[uuid.UUID]):
    """A user as the API shows one."""


class UserCreate(schemas.BaseUserCreate):
    """What ``POST /auth/register`` takes."""


engine = create_async_engine(DATABASE_URL)
session_maker = async_sessionmaker(engine, expire_on_commit=False)
tokens = redis.asyncio.from_url(REDIS_URL, decode_responses=True)


class UserManager(UUIDIDMixin, BaseUserManager[User, uuid.UUID]):
    """fastapi-users' user manager, with the secrets of its reset and verify tokens."""

    reset_password_token_secret = SECRET
    verification_token_secret = SECRET


async def get_user_db() -> AsyncIterator[SQLAlchemyUserDatabase[User, uuid.UUID]]:
    """The user database on a fresh SQLAlchemy session."""
    async with session_maker() as session:
        yield SQLAlchemyUserDatabase(session, User)


async def get_user_manager(
    user_db: Annotated[SQLAlchemyUserDatabase[User, uuid.UUID], Depends(get_user_db)],
) -> AsyncIterator[UserManager]:
    """The user manager of that database."""
    yield UserManager(user_db)


def get_redis_strategy() -> RedisStrategy[User, uuid.UUID]:
    """Tokens in Redis: ``fastapi_users_token:<token>`` holds the user's id."""
    return RedisStrategy(tokens, lifetime_seconds=TOKEN_LIFETIME)


bearer_backend = AuthenticationBackend[User, uuid.UUID](
    name="bearer",
    transport=BearerTransport(tokenUrl="auth/bearer/login"),
    get_strategy=get_redis_strategy,
)
cookie_backend = AuthenticationBackend[User, uuid.UUID](
    name="cookie",
    transport=CookieTransport(
        cookie_name=COOKIE_NAME, cookie_max_age=TOKEN_LIFETIME, cookie_secure=COOKIE_SECURE
    ),
    get_strategy=get_redis_strategy,
)
fastapi_users = FastAPIUsers[User, uuid.UUID](get_user_manager, [bearer_backend, cookie_backend])
current_user = fastapi_users.current_user(active=True)
maybe_user = fastapi_users.current_user(active=True, optional=True)


async def create_demo_user() -> None:
    """Create the tables and the demo user (kept when it exists)."""
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    async with session_maker() as session:
        manager = UserManager(SQLAlchemyUserDatabase(session, User))
        with contextlib.suppress(exceptions.UserAlreadyExists):
            await manager.create(UserCreate(email=DEMO_EMAIL, password=DEMO_PASSWORD))


@contextlib.asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """The user database and the demo user at start-up; connections closed, and the
    temporary database removed, at shutdown."""
    await create_demo_user()
    try:
        yield
    finally:
        await tokens.aclose()
        await engine.dispose()
        if _made_dir is not None:
            shutil.rmtree(_made_dir, ignore_errors=True)


app = FastAPI(
    title="FastAPI + fastapi-users (RedisStrategy) + logout-middleware", lifespan=lifespan
)
app.include_router(fastapi_users.get_auth_router(bearer_backend), prefix="/auth/bearer")
app.include_router(fastapi_users.get_auth_router(cookie_backend), prefix="/auth/cookie")
app.include_router(fastapi_users.get_register_router(UserRead, UserCreate), prefix="/auth")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fastapi-users example</title></head>
<body>
<h1>FastAPI + fastapi-users (RedisStrategy) + logout-middleware</h1>
{body}
</body></html>
"""

LOGIN_FORM = f"""<p id="user">Not logged in.</p>
<form method="post" action="/auth/cookie/login">
  <label>Email <input name="username" type="email" value="{DEMO_EMAIL}" required></label>
  <label>Password <input name="password" type="password" required></label>
  <button type="submit">Log in</button> (the demo user's password is
  <code>{DEMO_PASSWORD}</code>; the login answers 204: reload this page)
</form>"""

LOGOUT_FORM = """<p id="user">Logged in as {user}.</p>
<form method="post" action="/logout"><button type="submit">Log out</button></form>"""


@app.get("/", response_class=HTMLResponse)
async def index(user: Annotated[User | None, Depends(maybe_user)]) -> HTMLResponse:
    """Who is logged in, with the form that fits: log in, or log out."""
    body = LOGIN_FORM if user is None else LOGOUT_FORM.format(user=html.escape(user.email))
    return HTMLResponse(PAGE.format(body=body))


@app.get("/me")
async def me(user: Annotated[User, Depends(current_user)]) -> dict[str, Any]:
    """The user of the request's token (bearer or cookie); ``401`` without one."""
    return {"id": str(user.id), "email": user.email}


# Outermost, so that /logout is answered before the app; from_env() here makes a bad
# LOGOUT_* value stop the app at import, naming the variable.
app.add_middleware(LogoutMiddleware, config=LogoutConfig.from_env())
