"""Adoption by configuration only: two apps that never heard of this project get a
complete logout when their server command and environment change, and nothing else.

The apps in :mod:`tests.adoption_apps` import nothing from ``logout_middleware``. Each is
served by a real server in a subprocess and spoken to over loopback with httpx:

* before, as written: ``waitress tests.adoption_apps.plain_flask:app`` and
  ``uvicorn tests.adoption_apps.plain_fastapi:app``. Their naive ``GET /logout`` works
  from a cross-site ``<img>`` and leaves every bearer token handed out usable;
* after, with ``--call logout_middleware.serve:wsgi`` / ``--factory
  logout_middleware.serve:asgi`` and ``LOGOUT_*`` variables: ``GET /logout`` is 405 and
  never reaches the app, ``POST /logout`` is 303, the Redis session is deleted, the
  cookie expired, the token answered 401 without reaching the app, and one audit entry
  is written to ``logout:events``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from examples.demo import serve

ROOT = Path(__file__).resolve().parent.parent
#: How long a server may take to answer its first request, seconds.
START_TIMEOUT = 30.0
#: Headers a browser sends for ``<img src="https://victim/logout">`` on another site.
CROSS_SITE_IMAGE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
EVENTS = "logout:events"
DENYLIST_PREFIX = "logout:revoked:"


# -- the two apps --------------------------------------------------------------------


@dataclass(frozen=True)
class AdoptionCase:
    """One app, how to serve it before and after adoption, and how it keeps sessions."""

    name: str
    #: ``LOGOUT_APP`` and the plain server's target.
    target: str
    #: Server arguments (after ``python -m``) serving the app as written.
    plain: Callable[[int], list[str]]
    #: Server arguments serving it through ``logout_middleware.serve``.
    adopted: Callable[[int], list[str]]
    #: The app's own settings (its environment before and after).
    app_env: dict[str, str]
    #: The ``LOGOUT_*`` settings added to adopt the middleware.
    logout_env: dict[str, str]
    #: The Redis key of a session, ``{sid}`` standing for the cookie's value.
    session_key: str
    #: Whether ``POST /login`` takes JSON (else an HTML form).
    json_login: bool
    #: Whether the app itself would still accept ``token`` (checked without the app).
    token_valid_for_app: Callable[[str, redis.Redis], bool]
    #: The longest a revocation of the app's token should last, seconds.
    revocation_ttl_max: int

    def env(self, redis_url: str, *, adopted: bool) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        env["REDIS_URL"] = redis_url
        env.update(self.app_env)
        if adopted:
            env.update(self.logout_env)
            env["LOGOUT_APP"] = self.target
            env["LOGOUT_REDIS_URL"] = redis_url
        return env


FLASK_TARGET = "tests.adoption_apps.plain_flask:app"
FASTAPI_TARGET = "tests.adoption_apps.plain_fastapi:app"
JWT_SECRET = secrets.token_hex(32)


def _opaque_token_stored(token: str, client: redis.Redis) -> bool:
    return bool(client.exists(f"token:{token}"))


def _jwt_verifies(token: str, client: redis.Redis) -> bool:
    try:
        jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    except jwt.PyJWTError:
        return False
    return True


CASES = {
    "flask": AdoptionCase(
        name="flask",
        target=FLASK_TARGET,
        plain=lambda port: ["waitress", "--host=127.0.0.1", f"--port={port}", FLASK_TARGET],
        adopted=lambda port: [
            "waitress",
            "--host=127.0.0.1",
            f"--port={port}",
            "--call",
            "logout_middleware.serve:wsgi",
        ],
        app_env={"SECRET_KEY": secrets.token_hex(32)},
        # Flask-Session's defaults (cookie "session", keys "session:{sid}") are the
        # middleware's defaults too.
        logout_env={},
        session_key="session:{sid}",
        json_login=False,
        token_valid_for_app=_opaque_token_stored,
        # An opaque token: LOGOUT_TOKEN_TTL, one hour by default.
        revocation_ttl_max=3600,
    ),
    "fastapi": AdoptionCase(
        name="fastapi",
        target=FASTAPI_TARGET,
        plain=lambda port: ["uvicorn", "--host", "127.0.0.1", "--port", str(port), FASTAPI_TARGET],
        adopted=lambda port: [
            "uvicorn",
            "--factory",
            "logout_middleware.serve:asgi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        app_env={"JWT_SECRET": JWT_SECRET},
        logout_env={"LOGOUT_SESSION_KEYS": "starsessions.{sid}"},
        session_key="starsessions.{sid}",
        json_login=True,
        token_valid_for_app=_jwt_verifies,
        # A JWT: until its exp (15 minutes after issue) plus a minute of leeway.
        revocation_ttl_max=15 * 60 + 60,
    ),
}


# -- real servers in subprocesses ----------------------------------------------------


def running(argv: Callable[[int], list[str]], env: dict[str, str], name: str) -> Any:
    """``python -m <argv(port)>`` served on a free loopback port until it answers; the
    context manager yields its base URL and always stops it (see examples/demo.py)."""
    return serve(name, lambda port: [sys.executable, "-m", *argv(port)], env, timeout=START_TIMEOUT)


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> AdoptionCase:
    return CASES[request.param]


@pytest.fixture
def plain_server(case: AdoptionCase, redis_url: str, redis_client: redis.Redis) -> Iterator[str]:
    """The app served as written: no ``logout_middleware`` anywhere."""
    with running(case.plain, case.env(redis_url, adopted=False), "plain") as url:
        yield url


@pytest.fixture
def adopted_server(case: AdoptionCase, redis_url: str, redis_client: redis.Redis) -> Iterator[str]:
    """The same app, server command and environment changed to adopt the middleware."""
    with running(case.adopted, case.env(redis_url, adopted=True), "adopted") as url:
        yield url


# -- a user's session and token ------------------------------------------------------


def _log_in(client: httpx.Client, case: AdoptionCase, user: str, password: str) -> str:
    """Log in through the app; return the session cookie's value."""
    credentials = {"username": user, "password": password}
    if case.json_login:
        response = client.post("/login", json=credentials)
    else:
        response = client.post("/login", data=credentials)
    assert response.status_code == 200, response.text
    assert response.json() == {"user": user}
    sid = client.cookies.get("session")
    assert sid
    return sid


def _signed_in(
    browser: httpx.Client, case: AdoptionCase, redis_client: redis.Redis
) -> tuple[str, str, str]:
    """Log alice in through the app and check her session is in Redis and seen by the
    app; return the session cookie's value, its Redis key and a token the app hands out."""
    sid = _log_in(browser, case, "alice", "wonderland")
    session_key = case.session_key.format(sid=sid)
    assert redis_client.exists(session_key) == 1
    assert browser.get("/").json() == {"user": "alice"}
    return sid, session_key, _token(browser)


def _whoami(url: str, sid: str | None) -> Any:
    """``GET /`` as a separate client presenting only this session cookie (or none)."""
    headers = {"Cookie": f"session={sid}"} if sid else {}
    response = httpx.get(url + "/", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["user"]


def _api_me(url: str, token: str) -> httpx.Response:
    """``GET /api/me`` as a separate client presenting only this bearer token."""
    return httpx.get(url + "/api/me", headers={"Authorization": f"Bearer {token}"})


def _token(client: httpx.Client) -> str:
    response = client.post("/token")
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def _api_calls(client: redis.Redis, user: str) -> int:
    """How many ``/api/me`` calls the app itself has handled for ``user``."""
    return int(client.get(f"api-calls:{user}") or 0)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _events(client: redis.Redis) -> list[dict[str, str]]:
    """The entries of the audit stream, oldest first, as text."""
    entries: Any = client.xrange(EVENTS)
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in entries]


def _set_cookie(response: httpx.Response, name: str) -> list[SimpleCookie]:
    """The ``Set-Cookie`` headers of ``response`` that set ``name``, parsed."""
    found = []
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        if name in cookie:
            found.append(cookie)
    return found


# -- before: the gap -----------------------------------------------------------------


def test_naive_logout_leaves_the_token_usable(
    case: AdoptionCase, plain_server: str, redis_client: redis.Redis
) -> None:
    url = plain_server
    with httpx.Client(base_url=url) as browser:
        sid, session_key, token = _signed_in(browser, case, redis_client)
        first = _api_me(url, token)
        assert first.status_code == 200
        assert first.json() == {"user": "alice", "calls": 1}

        # The app's logout is a GET, so another site's <img src=".../logout"> runs it.
        logout = browser.get("/logout", headers=CROSS_SITE_IMAGE)
        assert logout.status_code in (302, 303)
        assert logout.headers["location"].endswith("/")
        assert browser.get("/").json() == {"user": None}

    # The app does end its own session (the session emptied, so the library drops it) ...
    assert redis_client.exists(session_key) == 0
    assert _whoami(url, sid) is None
    # ... but the bearer token handed out during the session is still accepted.
    assert case.token_valid_for_app(token, redis_client)
    after = _api_me(url, token)
    assert after.status_code == 200
    assert after.json() == {"user": "alice", "calls": 2}
    assert _api_calls(redis_client, "alice") == 2
    # Nothing revoked it and nothing recorded the logout.
    assert list(redis_client.scan_iter(match=DENYLIST_PREFIX + "*")) == []
    assert redis_client.exists(EVENTS) == 0


# -- after: configuration only, logout complete ---------------------------------------


def test_adopted_logout_is_complete(
    case: AdoptionCase, adopted_server: str, redis_client: redis.Redis
) -> None:
    url = adopted_server
    with httpx.Client(base_url=url) as browser:
        # The app works as before through the middleware.
        sid, session_key, token = _signed_in(browser, case, redis_client)
        assert _api_me(url, token).json() == {"user": "alice", "calls": 1}

        # GET /logout no longer reaches the app's naive route and changes nothing.
        for headers in ({}, CROSS_SITE_IMAGE):
            refused = browser.get("/logout", headers=headers)
            assert refused.status_code == 405
            assert refused.headers["allow"] == "POST"
            assert "location" not in refused.headers
            assert refused.headers.get_list("set-cookie") == []
        # Nor does a near miss: the app 404s it, or redirects it to /logout (405 again).
        near_miss = browser.get("/logout/", follow_redirects=True)
        assert near_miss.status_code in (404, 405)
        assert redis_client.exists(session_key) == 1
        assert browser.get("/").json() == {"user": "alice"}
        assert _api_me(url, token).json() == {"user": "alice", "calls": 2}
        assert redis_client.exists(EVENTS) == 0

        # POST /logout, with the session cookie (from the jar) and the bearer token.
        logout = browser.post("/logout", headers={"Authorization": f"Bearer {token}"})
        assert logout.status_code == 303
        assert logout.headers["location"] == "/"
        assert logout.headers["cache-control"] == "no-store"

        # The cookie is expired: one Set-Cookie, empty value, Max-Age=0, the same Path.
        (expiry,) = _set_cookie(logout, "session")
        morsel = expiry["session"]
        assert morsel.value == ""
        assert morsel["max-age"] == "0"
        assert morsel["path"] == "/"
        assert "1970" in morsel["expires"]
        assert "session" not in browser.cookies
        assert browser.get("/").json() == {"user": None}

    # The server-side session is gone: the old cookie, replayed, is nobody.
    assert redis_client.exists(session_key) == 0
    assert _whoami(url, sid) is None

    # The token is revoked: refused with the middleware's 401, and the app never saw it
    # although, by the app's own rules, the token is still good.
    assert case.token_valid_for_app(token, redis_client)
    refused = _api_me(url, token)
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert refused.json()["error"] == "invalid_token"
    assert _api_calls(redis_client, "alice") == 2
    denied = DENYLIST_PREFIX + _sha256(token)
    assert redis_client.exists(denied) == 1
    assert 0 < redis_client.ttl(denied) <= case.revocation_ttl_max

    # One audit entry, naming the session and the token by their hashes only.
    (fields,) = _events(redis_client)
    assert fields["method"] == "POST"
    assert fields["path"] == "/logout"
    assert fields["session_id_hash"] == _sha256(sid)
    assert fields["token_hash"] == _sha256(token)
    assert fields["redirect"] == "/"
    assert fields["store"] == "ok"
    assert fields["client"] == "127.0.0.1"
    assert all(sid not in value for value in fields.values())
    assert all(token not in value for value in fields.values())

    # Everything else goes on as before: a new login and a new token work.
    with httpx.Client(base_url=url) as browser:
        new_sid = _log_in(browser, case, "alice", "wonderland")
        assert new_sid != sid
        assert browser.get("/").json() == {"user": "alice"}
        new_token = _token(browser)
        assert _api_me(url, new_token).json() == {"user": "alice", "calls": 3}
    assert redis_client.xlen(EVENTS) == 1
