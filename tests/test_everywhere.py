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

import math
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import redis

from tests.servers import (
    ACCEPT_JSON,
    EVENTS_STREAM,
    EVERYWHERE_PATH,
    NOT_BEFORE_PREFIX,
    REQUEST_TIMEOUT,
    SESSION_COOKIE,
    TOMBSTONE_PREFIX,
    ServedApp,
    absent,
    assert_expires_cookie,
    audit_entries,
    index_key,
    index_members,
    not_before_key,
    set_cookies_of,
    sha256_hex,
    tombstone_key,
    uvicorn,
    wait_indexed,
    wait_until,
    waitress,
)

JWT_SECRET = secrets.token_urlsafe(32)


# -- the three apps ----------------------------------------------------------------------


@dataclass(frozen=True)
class App(ServedApp):
    """One app, how it is served and configured, and how it names users and tokens."""

    #: The subject the middleware reads from a session of user ``alice``.
    subject: str = "alice"
    #: ... and from a session of user ``bob``.
    bob_subject: str = "bob"
    #: Whether the app issues JWTs at ``POST /token`` (else the test makes its own).
    issues_tokens: bool = False

    @property
    def verifies_tokens(self) -> bool:
        """Whether the middleware verifies JWTs (``LOGOUT_JWT_KEY``)."""
        return "LOGOUT_JWT_KEY" in self.env


def _settings(session_subject: str, *, jwt_key: bool, **app: str) -> dict[str, str]:
    """The app's own settings (``app``) and the middleware's: the session's subject,
    the everywhere URI, and with ``jwt_key`` the key of the JWTs the app issues."""
    settings = {
        "LOGOUT_SESSION_SUBJECT": session_subject,
        "LOGOUT_EVERYWHERE_PATH": EVERYWHERE_PATH,
    }
    if jwt_key:
        settings.update(JWT_SECRET=JWT_SECRET, LOGOUT_JWT_KEY=JWT_SECRET)
    return {**app, **settings}


APPS = {
    "flask-example": App(
        name="flask-example",
        command=waitress("examples.flask_app:app"),
        env=_settings("user", jwt_key=False),
        session_key="session:{sid}",
    ),
    "fastapi-example": App(
        name="fastapi-example",
        command=uvicorn("examples.fastapi_app:app"),
        env=_settings("user", jwt_key=True, LOGOUT_SESSION_KEYS="starsessions.{sid}"),
        session_key="starsessions.{sid}",
        issues_tokens=True,
    ),
    "flask-login": App(
        name="flask-login",
        command=waitress("tests.adoption_apps.login_flask:app"),
        env=_settings("_user_id", jwt_key=True, SECRET_KEY=secrets.token_hex(32)),
        session_key="session:{sid}",
        # Flask-Login keeps the user's id, and alice's is "1".
        subject="1",
        bob_subject="2",
        issues_tokens=True,
    ),
}
ISSUING = sorted(name for name, app in APPS.items() if app.issues_tokens)


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
    with app.serve(redis_url) as server, ExitStack() as clients:
        yield Served(app, server.url, clients)


# -- what a user does ------------------------------------------------------------------


def log_in(browser: httpx.Client, user: str = "alice") -> str:
    """Log in through the app's form, and check who ``GET /`` says is logged in (the
    middleware indexes the session after such a request); return the session cookie's
    value."""
    response = browser.post("/login", data={"username": user})
    assert response.status_code in (200, 303), response.text
    sid = browser.cookies.get(SESSION_COOKIE)
    assert sid, response.headers
    assert who(browser) == f"Logged in as {user}."
    return sid


def log_out_everywhere(browser: httpx.Client) -> httpx.Response:
    """``POST`` the everywhere URI as a ACCEPT_JSON client, ending two sessions."""
    answer = browser.post(EVERYWHERE_PATH, headers=ACCEPT_JSON)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sessions_ended"] == 2
    return answer


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


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
    wait_indexed(redis_client, served.app.subject, (sid_a, sid_b))
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
    bob_token = token_for(served, bob, app.bob_subject)

    # The first browser logs out everywhere, as a ACCEPT_JSON client.
    answer = log_out_everywhere(first)
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
    assert_expires_cookie(answer)

    # Both session records are gone, each replaced by a tombstone; the index is dropped.
    for sid in (sid_a, sid_b):
        key = app.record(sid)
        assert wait_until(absent(redis_client, key)), f"{key} still exists"
        tombstone = tombstone_key(sid)
        assert redis_client.exists(tombstone) == 1
        assert redis_client.ttl(tombstone) > 0
    assert redis_client.exists(index_key(subject)) == 0
    # The subject's not-before is the answer's, and lasts.
    subjects_not_before = not_before_key(subject)
    assert float(text(redis_client.get(subjects_not_before))) == not_before
    assert redis_client.ttl(subjects_not_before) > 0

    # The other browser is logged out on its next request, and its cookie expired.
    replay = second.get("/")
    assert replay.status_code == 200
    assert "Not logged in." in replay.text
    assert_expires_cookie(replay)
    assert SESSION_COOKIE not in second.cookies
    assert who(first) == "Not logged in."
    # Replayed by hand, neither old cookie logs anyone in.
    for sid in (sid_a, sid_b):
        stale = httpx.get(
            served.url + "/", headers={"Cookie": f"{SESSION_COOKIE}={sid}"}, timeout=10
        )
        assert "Not logged in." in stale.text
        assert_expires_cookie(stale)
        assert redis_client.exists(app.record(sid)) == 0

    # The JWT issued before is refused by the middleware.
    assert_token_refused(served, token_before)
    # Bob is not affected: his session, record and token work as before.
    assert who(bob) == "Logged in as bob."
    assert redis_client.exists(app.record(bob_sid)) == 1
    assert_token_works(served, bob_token, "bob")
    assert redis_client.exists(not_before_key(app.bob_subject)) == 0

    # The audit entry says what ended, whose, and why.
    (entry,) = audit_entries(redis_client)
    assert entry["type"] == "session_end"
    assert entry["reason"] == "everywhere"
    assert entry["subject"] == subject
    assert entry["subject_source"] == "session"
    assert entry["sessions_ended"] == "2"
    assert entry["tokens_ended"] == "0"
    assert entry["path"] == EVERYWHERE_PATH
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
    (new_cookie,) = set_cookies_of(relogin)
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
        served.url + EVERYWHERE_PATH,
        headers={
            **cookie,
            **ACCEPT_JSON,
            "Origin": "https://evil.example",
            "Sec-Fetch-Site": "cross-site",
        },
        timeout=REQUEST_TIMEOUT,
    )
    assert cross_site.status_code == 403, cross_site.text
    by_get = httpx.get(served.url + EVERYWHERE_PATH, headers=cookie, timeout=REQUEST_TIMEOUT)
    assert by_get.status_code == 405, by_get.text
    assert by_get.headers["allow"] == "POST"
    for refused in (cross_site, by_get):
        assert set_cookies_of(refused) == []

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
        for accept in (ACCEPT_JSON, {}):
            refused = httpx.post(
                served.url + EVERYWHERE_PATH, headers={**headers, **accept}, timeout=REQUEST_TIMEOUT
            )
            assert refused.status_code == 400, (what, refused.text)
            assert refused.json()["error"] == "unknown_subject", what
            assert refused.headers["cache-control"] == "no-store"
            assert set_cookies_of(refused) == [], what

    # Nothing changed: no record deleted, no tombstone, no not-before, no audit entry.
    assert redis_state(redis_client) == before
    assert redis_client.exists(EVENTS_STREAM) == 0
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
        served.url + EVERYWHERE_PATH,
        headers={**ACCEPT_JSON, "Authorization": f"Bearer {token}"},
        timeout=REQUEST_TIMEOUT,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["success"] is True
    assert body["sessions_ended"] == 2
    assert body["tokens_ended"] == 1

    for sid in (sid_a, sid_b):
        key = app.record(sid)
        assert wait_until(absent(redis_client, key)), f"{key} still exists"
    for browser in (first, second):
        assert who(browser) == "Not logged in."
    assert_token_refused(served, token)
    assert_token_refused(served, other_token)

    (entry,) = audit_entries(redis_client)
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

    log_out_everywhere(alices_phone(served, redis_client, sid))
    assert wait_until(absent(redis_client, app.record(sid)))
    assert who(kiosk) == "Not logged in."


def alices_phone(served: Served, redis_client: redis.Redis, kiosk_sid: str) -> httpx.Client:
    """Alice logs in on her phone too; wait until her index has the phone's session and
    the kiosk's (``kiosk_sid``)."""
    phone = served.client()
    wait_indexed(redis_client, served.app.subject, (kiosk_sid, log_in(phone)))
    return phone


def switched_kiosk(served: Served) -> tuple[httpx.Client, str]:
    """A shared computer: bob logs in and uses the site, then alice logs in on the same
    browser without bob logging out (the apps keep the session id)."""
    kiosk = served.client()
    sid = log_in(kiosk, "bob")
    assert log_in(kiosk, "alice") == sid
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
    phone = alices_phone(served, redis_client, sid)
    assert index_members(redis_client, bob_subject) == set()

    log_out_everywhere(phone)
    assert who(kiosk) == "Not logged in."
    assert wait_until(absent(redis_client, app.record(sid)))


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
    kiosk, _sid = switched_kiosk(served)
    phone = served.client()
    log_in(phone)

    log_out_everywhere(kiosk)
    (entry,) = audit_entries(redis_client)
    assert entry["subject"] == served.app.subject, entry["subject"]
    assert who(phone) == "Not logged in."
    assert who(bobs_phone) == "Logged in as bob."
    assert redis_client.exists(not_before_key(bob_subject)) == 0


@pytest.mark.parametrize("name", sorted(APPS))
def test_everywhere_after_a_restart_ends_sessions_no_process_knows(
    name: str, redis_url: str, redis_client: redis.Redis
) -> None:
    """The server restarts between the logins and the logout everywhere, so no process
    knows the other session's id (only its hash is in the index). It is still ended: the
    other browser is logged out on its next request, which also deletes its record."""
    app = APPS[name]
    with ExitStack() as clients:
        first, second = (
            clients.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT)) for _ in range(2)
        )
        with app.serve(redis_url) as server:
            first.base_url = second.base_url = httpx.URL(server.url)
            sid_a, sid_b = log_in(first), log_in(second)
            wait_indexed(redis_client, app.subject, (sid_a, sid_b))
        with app.serve(redis_url) as server:
            first.base_url = second.base_url = httpx.URL(server.url)
            log_out_everywhere(first)
            assert wait_until(absent(redis_client, app.record(sid_a)))
            assert redis_client.exists(tombstone_key(sid_b)) == 1
            replay = second.get("/")
            assert "Not logged in." in replay.text
            assert_expires_cookie(replay)
            assert wait_until(absent(redis_client, app.record(sid_b))), "record outlived its use"
