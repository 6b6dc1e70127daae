"""A FastAPI app with server-side sessions in Redis (starsessions) and short-lived JWTs,
adopting the logout middleware with one line: ``app.add_middleware(LogoutMiddleware)``.

Every logout setting comes from ``LOGOUT_*``; for this app::

    REDIS_URL=redis://localhost:6379/0 \\
    LOGOUT_REDIS_URL=redis://localhost:6379/0 \\
    LOGOUT_SESSION_KEYS='starsessions.{sid}' \\
        python -m uvicorn examples.fastapi_app:app --port 8000

starsessions keeps a session in the Redis key ``starsessions.<id>`` and puts the bare id
in the ``session`` cookie. ``JWT_SECRET`` signs the tokens; when unset, a random secret
is made at start-up (tokens then die with the process, which suits a demo).

Routes: ``GET /`` (who is logged in), ``POST /login`` (form field ``username``),
``POST /token`` (a JWT for the logged-in user), ``GET /api/me`` (the user of a bearer
JWT). ``POST /logout`` never reaches the app: the middleware answers it.
"""

import html
import os
import secrets
import time
from typing import Annotated, Any
from urllib.parse import parse_qs

import jwt
import redis.asyncio
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.responses import Response
from starsessions import SessionAutoloadMiddleware, SessionMiddleware, regenerate_session_id
from starsessions.stores.redis import RedisStore

from logout_middleware import LogoutConfig, LogoutMiddleware

#: How long an issued token is valid, seconds.
TOKEN_LIFETIME = 300
#: Longest user name accepted by the login form.
MAX_USER_LENGTH = 64
#: Largest login form body read, bytes.
MAX_LOGIN_BODY = 4096

JWT_SECRET = os.environ.get("JWT_SECRET") or secrets.token_urlsafe(32)
JWT_ALGORITHM = "HS256"

app = FastAPI(title="FastAPI + starsessions + logout-middleware")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>FastAPI example</title></head>
<body>
<h1>FastAPI + starsessions + logout-middleware</h1>
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


@app.get("/", response_class=HTMLResponse)
async def index(request: Request) -> HTMLResponse:
    """Who is logged in, with the form that fits: log in, or log out."""
    user = request.session.get("user")
    body = LOGIN_FORM if user is None else LOGOUT_FORM.format(user=html.escape(user))
    return HTMLResponse(PAGE.format(body=body))


@app.post("/login")
async def login(request: Request) -> Response:
    """Log in as the form's ``username`` (no password: this is a demo of logging out).

    The form is parsed here so that the example needs no ``python-multipart``.
    """
    body = await request.body()
    fields = parse_qs(body[:MAX_LOGIN_BODY].decode("utf-8", "replace"))
    user = fields.get("username", [""])[0].strip()
    if not user or len(user) > MAX_USER_LENGTH:
        return PlainTextResponse("Bad Request: give a user name.\n", status_code=400)
    request.session.clear()
    regenerate_session_id(request)  # a fresh id at login: no session fixation
    request.session["user"] = user
    return RedirectResponse("/", status_code=303)


@app.post("/token")
async def issue_token(request: Request) -> JSONResponse:
    """A short-lived HS256 JWT for the logged-in user (an OAuth-style token response)."""
    user = request.session.get("user")
    if user is None:
        return JSONResponse({"error": "login_required"}, status_code=401)
    now = int(time.time())
    claims = {
        "sub": user,
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "jti": secrets.token_hex(8),
    }
    token = jwt.encode(claims, JWT_SECRET, algorithm=JWT_ALGORITHM)
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": TOKEN_LIFETIME},
        headers={"Cache-Control": "no-store"},
    )


bearer = HTTPBearer(auto_error=False)


@app.get("/api/me")
async def me(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> dict[str, Any]:
    """The user of a valid bearer JWT. The app checks signature and expiry only: a token
    revoked by logout is refused by the middleware before it gets here."""
    if credentials is None:
        raise HTTPException(401, "bearer token required", headers={"WWW-Authenticate": "Bearer"})
    try:
        claims = jwt.decode(
            credentials.credentials,
            JWT_SECRET,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError:
        raise HTTPException(
            401, "invalid token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        ) from None
    return {"user": claims["sub"], "expires": claims["exp"]}


# Added first, so innermost: loads the session before each route runs.
app.add_middleware(SessionAutoloadMiddleware)
app.add_middleware(
    SessionMiddleware,
    store=RedisStore(
        connection=redis.asyncio.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    ),
    cookie_name="session",
    cookie_https_only=False,  # the demo runs over plain http; keep True in production
    cookie_same_site="lax",
)
# Added last, so outermost: POST /logout and revoked tokens never reach the app. The
# configuration is read here, at import, so that a bad LOGOUT_* value stops the app at
# start-up (Starlette builds its middleware only at the first request).
app.add_middleware(LogoutMiddleware, config=LogoutConfig.from_env())
