"""Log out everywhere, as a new user would adopt it: real servers, real Redis, and
nothing but environment variables.

Three apps, each served in a subprocess and configured only by ``LOGOUT_*``
(``LOGOUT_EVERYWHERE_PATH=/logout/everywhere`` and ``LOGOUT_SESSION_SUBJECT``):

* ``examples/flask_app.py`` under waitress (the subject is the session's ``user``). It
  hands out no tokens, so the test makes its own JWTs; the middleware refuses an
  earlier one by its claims, whoever signed it (only the bearer's request is refused);
* ``examples/fastapi_app.py`` under uvicorn (``user``; JWTs from ``POST /token``,
  verified by the middleware with ``LOGOUT_JWT_KEY``);
* :mod:`tests.adoption_apps.login_flask`, a Flask-Login app under waitress (the
  subject is Flask-Login's ``_user_id``; JWTs from ``POST /token``, ``sub`` = user id).

Two browsers log in as the same user and each makes one request, which indexes their
sessions under the user. Logging out everywhere from one of them ends both sessions
(their records are deleted, the other browser is logged out on its next request) and
every JWT of the user issued up to that second; a JWT issued in a later second works.
Without a trusted subject (a session naming a user, or a JWT verified with
``LOGOUT_JWT_KEY``) the request is refused with 400 and nothing changes.

Also: a verified JWT alone names the subject; a session whose id survives the login
(Flask-Login, Flask-Session) is indexed under the user who logged in, also when it
switched users; and after a restart, when no process knows the other session's id, it
is still ended and its record deleted at its next use.
"""

from __future__ import annotations

import hashlib
import math
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import redis

from examples.demo import serve

ROOT = Path(__file__).resolve().parent.parent
EVERYWHERE = "/logout/everywhere"
SESSION_COOKIE = "session"
EVENTS = "logout:events"
TOMBSTONE_PREFIX = "logout:revoked-session:"
NOT_BEFORE_PREFIX = "logout:not-before:"
INDEX_PREFIX = "logout:sessions-of:"
JWT_SECRET = secrets.token_urlsafe(32)
#: How long a server may take to answer its first request, seconds.
START_TIMEOUT = 30.0
#: How long the middleware may take with what it does after the app answered, seconds.
SETTLE_TIMEOUT = 5.0
#: Timeout of each HTTP request, seconds.
REQUEST_TIMEOUT = 10.0
JSON = {"Accept": "application/json"}


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- the three apps ----------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    """One app, how it is served and configured, and how it names users and tokens."""

    name: str
    #: ``python -m`` arguments serving the app on a port.
    command: Callable[[int], list[str]]
    #: The app's own settings and the ``LOGOUT_*`` ones (beside the Redis URLs).
    env: dict[str, str]
    #: The Redis key of a session, ``{sid}`` standing for the cookie's value.
    session_key: str
    #: The subject the middleware reads from a session of user ``alice``.
    subject: str
    #: ... and from a session of user ``bob``.
    bob_subject: str
    #: Whether the app issues JWTs at ``POST /token`` (else the test makes its own).
    issues_tokens: bool
    #: Whether the middleware verifies JWTs (``LOGOUT_JWT_KEY``).
    verifies_tokens: bool = field(default=False)

    def record(self, sid: str) -> str:
        return self.session_key.replace("{sid}", sid)


def _waitress(target: str) -> Callable[[int], list[str]]:
    return lambda port: ["waitress", "--host=127.0.0.1", f"--port={port}", target]


def _uvicorn(target: str) -> Callable[[int], list[str]]:
    return lambda port: [
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]


APPS = {
    "flask-example": App(
        name="flask-example",
        command=_waitress("examples.flask_app:app"),
        env={"LOGOUT_SESSION_SUBJECT": "user", "LOGOUT_EVERYWHERE_PATH": EVERYWHERE},
        session_key="session:{sid}",
        subject="alice",
        bob_subject="bob",
        issues_tokens=False,
    ),
    "fastapi-example": App(
        name="fastapi-example",
        command=_uvicorn("examples.fastapi_app:app"),
        env={
            "JWT_SECRET": JWT_SECRET,
            "LOGOUT_SESSION_KEYS": "starsessions.{sid}",
            "LOGOUT_SESSION_SUBJECT": "user",
            "LOGOUT_JWT_KEY": JWT_SECRET,
            "LOGOUT_EVERYWHERE_PATH": EVERYWHERE,
        },
        session_key="starsessions.{sid}",
        subject="alice",
        bob_subject="bob",
        issues_tokens=True,
        verifies_tokens=True,
    ),
    "flask-login": App(
        name="flask-login",
        command=_waitress("tests.adoption_apps.login_flask:app"),
        env={
            "JWT_SECRET": JWT_SECRET,
            "SECRET_KEY": secrets.token_hex(32),
            "LOGOUT_SESSION_SUBJECT": "_user_id",
            "LOGOUT_JWT_KEY": JWT_SECRET,
            "LOGOUT_EVERYWHERE_PATH": EVERYWHERE,
        },
        session_key="session:{sid}",
        # Flask-Login keeps the user's id, and alice's is "1".
        subject="1",
        bob_subject="2",
        issues_tokens=True,
        verifies_tokens=True,
    ),
}
ISSUING = sorted(name for name, app in APPS.items() if app.issues_tokens)


def server_env(app: App, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(PYTHONUNBUFFERED="1", REDIS_URL=redis_url, LOGOUT_REDIS_URL=redis_url)
    env.update(app.env)
    return env


@dataclass
class Served:
    app: App
    url: str
    clients: ExitStack

    def client(self) -> httpx.Client:
        """A new browser: its own cookie jar and connection."""
        return self.clients.enter_context(httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT))


@pytest.fixture
def served(
    request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis
) -> Iterator[Served]:
    app = APPS[request.param]
    command = app.command

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", *command(port)]

    with (
        serve(app.name, argv, server_env(app, redis_url), timeout=START_TIMEOUT) as url,
        ExitStack() as clients,
    ):
        yield Served(app, url, clients)


# -- what a user does ------------------------------------------------------------------


def log_in(browser: httpx.Client, user: str = "alice") -> str:
    """Log in through the app's form; return the new session cookie's value."""
    response = browser.post("/login", data={"username": user})
    assert response.status_code in (200, 303), response.text
    sid = browser.cookies.get(SESSION_COOKIE)
    assert sid, response.headers
    return sid


def who(browser: httpx.Client) -> str:
    """``Logged in as <user>.`` or ``Not logged in.``, as ``GET /`` says (text or HTML)."""
    response = browser.get("/")
    assert response.status_code == 200, response.text
    if "Not logged in." in response.text:
        return "Not logged in."
    start = response.text.index("Logged in as ")
    return response.text[start : response.text.index(".", start) + 1]


def token_for(served: Served, browser: httpx.Client, subject: str) -> str:
    """A JWT for the logged-in user: the app's own, or (for an app that issues none)
    one made here with the same claims an issuer would put in it."""
    if served.app.issues_tokens:
        response = browser.post("/token")
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token
    now = int(time.time())
    claims = {"sub": subject, "iat": now, "exp": now + 300, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, secrets.token_urlsafe(32), algorithm="HS256")


def use_token(served: Served, token: str) -> httpx.Response:
    """A request with only this bearer token: ``GET /api/me``, or ``GET /`` for the app
    that has no API (there only the middleware looks at the token)."""
    path = "/api/me" if served.app.issues_tokens else "/"
    return httpx.get(
        served.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=REQUEST_TIMEOUT
    )


def assert_token_works(served: Served, token: str, user: str = "alice") -> None:
    response = use_token(served, token)
    assert response.status_code == 200, response.text
    if served.app.issues_tokens:
        assert response.json()["user"] == user


def assert_token_refused(served: Served, token: str) -> None:
    response = use_token(served, token)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


def session_set_cookies(response: httpx.Response) -> list[str]:
    return [
        value
        for value in response.headers.get_list("set-cookie")
        if value.split(";", 1)[0].split("=", 1)[0].strip() == SESSION_COOKIE
    ]


def assert_expires_session_cookie(response: httpx.Response) -> None:
    (value,) = session_set_cookies(response)
    assert value.split(";", 1)[0].strip() == f"{SESSION_COOKIE}=", value
    assert "max-age=0" in value.lower() or "1970" in value, value


def poll(condition: Callable[[], bool], timeout: float = SETTLE_TIMEOUT) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def absent(client: redis.Redis, key: str) -> Callable[[], bool]:
    """A condition for :func:`poll`: ``key`` does not exist."""
    return lambda: not client.exists(key)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def index_members(client: redis.Redis, subject: str) -> set[str]:
    return {text(m) for m in client.zrange(INDEX_PREFIX + sha256_hex(subject), 0, -1)}


def events(client: redis.Redis) -> list[dict[str, str]]:
    entries: Any = client.xrange(EVENTS)
    return [{text(k): text(v) for k, v in fields.items()} for _id, fields in entries]


def redis_state(client: redis.Redis) -> dict[str, Any]:
    """Every key and its content (not its TTL), comparable."""
    state: dict[str, Any] = {}
    for raw in client.scan_iter():
        key = text(raw)
        kind = text(client.type(key))
        if kind == "string":
            state[key] = client.get(key)
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            state[key] = client.xrange(key)
        else:
            state[key] = (kind, client.dump(key))
    return state


def two_browsers_of_alice(
    served: Served, redis_client: redis.Redis
) -> tuple[httpx.Client, str, httpx.Client, str]:
    """Two browsers log in as alice and each makes one request; wait until the
    middleware has indexed both sessions under her (it does so after the app answered)."""
    first, second = served.client(), served.client()
    sid_a, sid_b = log_in(first), log_in(second)
    assert sid_a != sid_b
    for browser in (first, second):
        assert who(browser) == "Logged in as alice."
    expected = {sha256_hex(sid_a), sha256_hex(sid_b)}
    subject = served.app.subject
    assert poll(lambda: index_members(redis_client, subject) == expected), (
        f"sessions not indexed under {subject!r}: {index_members(redis_client, subject)}"
    )
    for sid in (sid_a, sid_b):
        assert redis_client.exists(served.app.record(sid)) == 1
    return first, sid_a, second, sid_b


def wait_for_the_next_second(after: float) -> None:
    """Sleep until the clock is past the whole second of ``after`` (so that a token
    issued now has ``iat`` > ``after``); at most a second and a bit."""
    target = math.floor(after) + 1
    deadline = time.monotonic() + 2.0
    while time.time() < target:
        assert time.monotonic() < deadline
        time.sleep(min(0.05, max(0.0, target - time.time())))


# -- the acceptance test -------------------------------------------------------------------


@pytest.mark.parametrize("served", sorted(APPS), indirect=True)
def test_logout_everywhere_ends_every_session_and_earlier_token(
    served: Served, redis_client: redis.Redis
) -> None:
    app = served.app
    subject = app.subject
    first, sid_a, second, sid_b = two_browsers_of_alice(served, redis_client)
    token_before = token_for(served, first, subject)
    assert_token_works(served, token_before)
    # Bob, meanwhile, is logged in too, with a token of his own.
    bob = served.client()
    bob_sid = log_in(bob, "bob")
    assert who(bob) == "Logged in as bob."
    bob_token = token_for(served, bob, app.bob_subject)

    # The first browser logs out everywhere, as a JSON client.
    answer = first.post(EVERYWHERE, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    not_before = body["not_before"]
    assert body == {
        "success": True,
        "sessions_ended": 2,
        "tokens_ended": 0,
        "not_before": not_before,
    }
    assert isinstance(not_before, float)
    assert abs(not_before - time.time()) < 60
    assert_expires_session_cookie(answer)

    # Both session records are gone, each replaced by a tombstone; the index is dropped.
    for sid in (sid_a, sid_b):
        key = app.record(sid)
        assert poll(absent(redis_client, key)), f"{key} still exists"
        tombstone = TOMBSTONE_PREFIX + sha256_hex(sid)
        assert redis_client.exists(tombstone) == 1
        assert redis_client.ttl(tombstone) > 0
    assert redis_client.exists(INDEX_PREFIX + sha256_hex(subject)) == 0
    # The subject's not-before is the answer's, and lasts.
    not_before_key = NOT_BEFORE_PREFIX + sha256_hex(subject)
    assert float(text(redis_client.get(not_before_key))) == not_before
    assert redis_client.ttl(not_before_key) > 0

    # The other browser is logged out on its next request, and its cookie expired.
    replay = second.get("/")
    assert replay.status_code == 200
    assert "Not logged in." in replay.text
    assert_expires_session_cookie(replay)
    assert SESSION_COOKIE not in second.cookies
    assert who(first) == "Not logged in."
    # Replayed by hand, neither old cookie logs anyone in.
    for sid in (sid_a, sid_b):
        stale = httpx.get(
            served.url + "/", headers={"Cookie": f"{SESSION_COOKIE}={sid}"}, timeout=10
        )
        assert "Not logged in." in stale.text
        assert_expires_session_cookie(stale)
        assert redis_client.exists(app.record(sid)) == 0

    # The JWT issued before is refused by the middleware.
    assert_token_refused(served, token_before)
    # Bob is not affected: his session, record and token work as before.
    assert who(bob) == "Logged in as bob."
    assert redis_client.exists(app.record(bob_sid)) == 1
    assert_token_works(served, bob_token, "bob")
    assert redis_client.exists(NOT_BEFORE_PREFIX + sha256_hex(app.bob_subject)) == 0

    # The audit entry says what ended, whose, and why.
    (entry,) = events(redis_client)
    assert entry["type"] == "session_end"
    assert entry["reason"] == "everywhere"
    assert entry["subject"] == subject
    assert entry["subject_source"] == "session"
    assert entry["sessions_ended"] == "2"
    assert entry["tokens_ended"] == "0"
    assert entry["path"] == EVERYWHERE
    assert entry["session_id_hash"] == sha256_hex(sid_a)
    assert entry["ended_sessions"] == sha256_hex(sid_b)
    assert float(entry["not_before"]) == not_before
    assert all(sid not in value for value in entry.values() for sid in (sid_a, sid_b))

    # From the next whole second on, alice logs in again and gets a token that works.
    # She logs in from a browser that still sends an old cookie: the app never sees it,
    # makes a new session, and the middleware leaves the app's new cookie alone.
    wait_for_the_next_second(not_before)
    third = served.client()
    relogin = third.post(
        "/login",
        data={"username": "alice"},
        headers={"Cookie": f"{SESSION_COOKIE}={sid_b}"},
    )
    assert relogin.status_code in (200, 303), relogin.text
    (new_cookie,) = session_set_cookies(relogin)
    sid_c = third.cookies.get(SESSION_COOKIE)
    assert sid_c
    assert sid_c not in (sid_a, sid_b)
    assert new_cookie.startswith(f"{SESSION_COOKIE}={sid_c}")
    assert who(third) == "Logged in as alice."
    token_after = token_for(served, third, subject)
    claims = jwt.decode(token_after, options={"verify_signature": False})
    assert claims["iat"] > not_before
    assert_token_works(served, token_after)
    assert_token_refused(served, token_before)
    assert redis_client.exists(app.record(sid_c)) == 1


@pytest.mark.parametrize("served", sorted(APPS), indirect=True)
def test_everywhere_without_a_trusted_subject_changes_nothing(
    served: Served, redis_client: redis.Redis
) -> None:
    app = served.app
    first, sid_a, second, sid_b = two_browsers_of_alice(served, redis_client)
    token = token_for(served, first, app.subject)
    before = redis_state(redis_client)

    # With alice's own cookie, but from another site, or by GET (a link, an <img>).
    cookie = {"Cookie": f"{SESSION_COOKIE}={sid_a}"}
    cross_site = httpx.post(
        served.url + EVERYWHERE,
        headers={
            **cookie,
            **JSON,
            "Origin": "https://evil.example",
            "Sec-Fetch-Site": "cross-site",
        },
        timeout=REQUEST_TIMEOUT,
    )
    assert cross_site.status_code == 403, cross_site.text
    by_get = httpx.get(served.url + EVERYWHERE, headers=cookie, timeout=REQUEST_TIMEOUT)
    assert by_get.status_code == 405, by_get.text
    assert by_get.headers["allow"] == "POST"
    for refused in (cross_site, by_get):
        assert session_set_cookies(refused) == []

    # A JWT naming alice but signed with another key: a claim, not a trusted subject.
    now = int(time.time())
    forged = jwt.encode(
        {"sub": app.subject, "iat": now, "exp": now + 300}, "not-the-key-" + "x" * 32, "HS256"
    )
    attempts = {
        "nothing": {},
        "forged JWT": {"Authorization": f"Bearer {forged}"},
        "cookie of no session": {"Cookie": f"{SESSION_COOKIE}={secrets.token_hex(16)}"},
    }
    if not app.verifies_tokens:
        # Without LOGOUT_JWT_KEY no JWT is trusted, not even a genuine one.
        attempts["unverifiable JWT"] = {"Authorization": f"Bearer {token}"}
    for what, headers in attempts.items():
        for accept in (JSON, {}):
            refused = httpx.post(
                served.url + EVERYWHERE, headers={**headers, **accept}, timeout=REQUEST_TIMEOUT
            )
            assert refused.status_code == 400, (what, refused.text)
            assert refused.json()["error"] == "unknown_subject", what
            assert refused.headers["cache-control"] == "no-store"
            assert session_set_cookies(refused) == [], what

    # Nothing changed: no record deleted, no tombstone, no not-before, no audit entry.
    assert redis_state(redis_client) == before
    assert redis_client.exists(EVENTS) == 0
    assert list(redis_client.scan_iter(match=TOMBSTONE_PREFIX + "*")) == []
    assert list(redis_client.scan_iter(match=NOT_BEFORE_PREFIX + "*")) == []
    for browser in (first, second):
        assert who(browser) == "Logged in as alice."
    assert_token_works(served, token)
    assert index_members(redis_client, app.subject) == {sha256_hex(sid_a), sha256_hex(sid_b)}


@pytest.mark.parametrize("served", ISSUING, indirect=True)
def test_a_verified_jwt_alone_logs_its_subject_out_everywhere(
    served: Served, redis_client: redis.Redis
) -> None:
    """An API client with no session: the verified token's ``sub`` is the subject. Both
    sessions end, the token itself is revoked (tokens_ended 1), and earlier JWTs too."""
    app = served.app
    first, sid_a, second, sid_b = two_browsers_of_alice(served, redis_client)
    token = token_for(served, first, app.subject)
    other_token = token_for(served, second, app.subject)

    answer = httpx.post(
        served.url + EVERYWHERE,
        headers={**JSON, "Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    assert body["sessions_ended"] == 2
    assert body["tokens_ended"] == 1

    for sid in (sid_a, sid_b):
        key = app.record(sid)
        assert poll(absent(redis_client, key)), f"{key} still exists"
    for browser in (first, second):
        assert who(browser) == "Not logged in."
    assert_token_refused(served, token)
    assert_token_refused(served, other_token)

    (entry,) = events(redis_client)
    assert entry["type"] == "session_end"
    assert entry["reason"] == "everywhere"
    assert entry["subject"] == app.subject
    assert entry["subject_source"] == "jwt"
    assert entry["sessions_ended"] == "2"
    assert entry["tokens_ended"] == "1"
    assert entry["token_hash"] == sha256_hex(token)
    assert entry["session_id_hash"] == ""
    assert set(entry["ended_sessions"].split(",")) == {sha256_hex(sid_a), sha256_hex(sid_b)}


@pytest.mark.parametrize("served", ["flask-login"], indirect=True)
def test_a_login_that_keeps_the_session_id_is_ended_everywhere(
    served: Served, redis_client: redis.Redis
) -> None:
    """Flask-Login keeps the session's id at login. A kiosk's session that existed (and
    was seen by the middleware, without a user) before alice logged in there is still
    indexed under her at once, and ended by her logging out everywhere from her phone."""
    app = served.app
    kiosk = served.client()
    typo = kiosk.post("/login", data={"username": "alcie"})
    assert typo.status_code == 401
    sid = kiosk.cookies.get(SESSION_COOKIE)
    assert sid, typo.headers
    assert who(kiosk) == "Not logged in."  # the middleware reads the record: no user yet
    assert log_in(kiosk) == sid
    assert who(kiosk) == "Logged in as alice."

    phone = served.client()
    phone_sid = log_in(phone)
    assert who(phone) == "Logged in as alice."
    expected = {sha256_hex(sid), sha256_hex(phone_sid)}
    assert poll(lambda: index_members(redis_client, app.subject) == expected), index_members(
        redis_client, app.subject
    )

    answer = phone.post(EVERYWHERE, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sessions_ended"] == 2
    assert poll(absent(redis_client, app.record(sid)))
    assert who(kiosk) == "Not logged in."


def switched_kiosk(served: Served) -> tuple[httpx.Client, str]:
    """A shared computer: bob logs in and uses the site, then alice logs in on the same
    browser without bob logging out (the apps keep the session id)."""
    kiosk = served.client()
    sid = log_in(kiosk, "bob")
    assert who(kiosk) == "Logged in as bob."
    assert log_in(kiosk, "alice") == sid
    assert who(kiosk) == "Logged in as alice."
    return kiosk, sid


@pytest.mark.parametrize("served", ["flask-example", "flask-login"], indirect=True)
def test_a_session_switched_to_alice_is_ended_by_her_everywhere(
    served: Served, redis_client: redis.Redis
) -> None:
    """The login that switched the kiosk's session to alice re-indexes it under her at
    once, so her logging out everywhere from her phone ends it (it is not left in bob's
    index until the next periodic re-read)."""
    app = served.app
    bob_subject = app.bob_subject
    kiosk, sid = switched_kiosk(served)
    phone = served.client()
    phone_sid = log_in(phone)
    assert who(phone) == "Logged in as alice."
    expected = {sha256_hex(sid), sha256_hex(phone_sid)}
    assert poll(lambda: index_members(redis_client, app.subject) == expected), index_members(
        redis_client, app.subject
    )
    assert index_members(redis_client, bob_subject) == set()

    answer = phone.post(EVERYWHERE, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sessions_ended"] == 2
    assert who(kiosk) == "Not logged in."
    assert poll(absent(redis_client, app.record(sid)))


@pytest.mark.parametrize("served", ["flask-example", "flask-login"], indirect=True)
def test_everywhere_from_a_switched_session_logs_out_its_current_user(
    served: Served, redis_client: redis.Redis
) -> None:
    """Logging out everywhere from the kiosk ends alice's sessions and JWTs, not bob's
    (whose session it was a moment ago): the everywhere URI reads the session's subject
    afresh."""
    bob_subject = served.app.bob_subject
    bobs_phone = served.client()
    log_in(bobs_phone, "bob")
    assert who(bobs_phone) == "Logged in as bob."
    kiosk, _sid = switched_kiosk(served)
    alices_phone = served.client()
    log_in(alices_phone)
    assert who(alices_phone) == "Logged in as alice."

    answer = kiosk.post(EVERYWHERE, headers=JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sessions_ended"] == 2
    (entry,) = events(redis_client)
    assert entry["subject"] == served.app.subject, entry["subject"]
    assert who(alices_phone) == "Not logged in."
    assert who(bobs_phone) == "Logged in as bob."
    assert redis_client.exists(NOT_BEFORE_PREFIX + sha256_hex(bob_subject)) == 0


@pytest.mark.parametrize("name", sorted(APPS))
def test_everywhere_after_a_restart_ends_sessions_no_process_knows(
    name: str, redis_url: str, redis_client: redis.Redis
) -> None:
    """The server restarts between the logins and the logout everywhere, so no process
    knows the other session's id (only its hash is in the index). It is still ended: the
    other browser is logged out on its next request, which also deletes its record."""
    app = APPS[name]
    env = server_env(app, redis_url)

    def argv(port: int) -> list[str]:
        return [sys.executable, "-m", *app.command(port)]

    with ExitStack() as clients:
        first, second = (
            clients.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT)) for _ in range(2)
        )
        with serve(app.name, argv, env, timeout=START_TIMEOUT) as url:
            first.base_url = second.base_url = httpx.URL(url)
            sid_a, sid_b = log_in(first), log_in(second)
            for browser in (first, second):
                assert who(browser) == "Logged in as alice."
            expected = {sha256_hex(sid_a), sha256_hex(sid_b)}
            assert poll(lambda: index_members(redis_client, app.subject) == expected)
        with serve(app.name, argv, env, timeout=START_TIMEOUT) as url:
            first.base_url = second.base_url = httpx.URL(url)
            answer = first.post(EVERYWHERE, headers=JSON)
            assert answer.status_code == 200, answer.text
            assert answer.json()["sessions_ended"] == 2
            assert poll(absent(redis_client, app.record(sid_a)))
            assert redis_client.exists(TOMBSTONE_PREFIX + sha256_hex(sid_b)) == 1
            replay = second.get("/")
            assert "Not logged in." in replay.text
            assert_expires_session_cookie(replay)
            assert poll(absent(redis_client, app.record(sid_b))), "record outlived its use"
