"""A cookie sent more than once, or spelt with whitespace before its ``=``, is checked in
every copy any framework could read (issue #15), on real servers and a real Redis.

Frameworks disagree on which copy of a repeated cookie the app gets (the last for
Starlette and Django, the first for Werkzeug, Flask's parser) and all of them strip
whitespace around names, so ``session =V`` and ``session\\t=V`` are the
cookie ``session``. A middleware that checks only the first copy spelt exactly
``session=`` lets a stolen, logged-out session id through in another copy.

The race, per spelling and stack: the victim (alice) and the attacker (bob) log in; bob
starts ``GET /slow`` (loads the session, waits :data:`SLOW_SECONDS`, saves it) carrying
his own session id A and alice's V in the spelling under test; while it runs, alice logs
out with V. Then (3) alice's record is not in Redis :data:`RECREATED_WITHIN` seconds after
the slow request was answered (a late save re-created nothing that stays), and (4)
``GET /`` with the same spelling does not answer as alice (nor re-creates her record),
and ``GET /cookie`` (which echoes the ``Cookie`` header fields the app received) shows
that V reached the app in no copy. :data:`TRIALS` races per spelling and stack.

The spellings (:data:`SESSION_SPELLINGS`): ``A; V`` (stolen second), ``V; A`` (stolen
first), ``A; session =V``, ``A; session\\t=V``, ``session =V`` alone, and two ``Cookie``
header fields ``session=A`` and ``session=V``.

The stacks: Starlette + starsessions (:mod:`tests.adoption_apps.race_fastapi`) under
uvicorn; Flask + Flask-Session (:mod:`tests.adoption_apps.race_flask`) under waitress;
Django with the README's ``django-asgi`` row (``cache`` engine) under uvicorn and its
``django-wsgi`` row (``cached_db``, whose database row outlives the Redis copy) under
waitress, served by :mod:`tests.adoption_apps.race_django`: the example
(examples/django_app, unchanged) plus a slow route, so Django runs the same race as the
others rather than a no-race variant.

Two ``Cookie`` fields: uvicorn hands them to the ASGI app as two ``cookie`` headers.
Starlette parses each in turn, the later copy wins: V. Django 5.2's ``ASGIRequest`` joins
repeated headers with ``,`` (``sessionid=A,sessionid=V``), and its parser, splitting on
``;`` only, reads the id ``A,sessionid=V``: no such session. Waitress (HTTP/1.1 only)
joins repeated header fields with ``, `` into one ``HTTP_COOKIE`` (waitress/parser.py:
``headers[key1] += ", " + value``), so a WSGI app gets ``session=A, session=V``: Werkzeug
then reads no ``session`` cookie at all, and Django the id ``A, session=V``. So only
Starlette's parser reads V from two fields; V still reaches every app in the raw header
unless the middleware takes it out, which ``GET /cookie`` shows.

Django's ``cache`` engine (``django-asgi``) refuses to save a session whose record is gone
(``SessionInterrupted``: the slow request answers ``400``), so on that stack the late
save re-creates nothing even when the middleware lets V through; only ``GET /cookie``
tells. ``cached_db`` (``django-wsgi``) saves to its database row, which outlives the
logout, and writes the Redis copy back.

The token cookie: an app configured with ``LOGOUT_TOKEN_COOKIE=tok`` and
``LOGOUT_JWT_KEY`` that echoes the token cookie it received and every ``Cookie`` header
that reached it (:mod:`tests.adoption_apps.token_echo_starlette` under uvicorn,
:mod:`tests.adoption_apps.token_echo_flask` under waitress). Once a JWT is revoked by a
logout, no spelling of :data:`TOKEN_SPELLINGS` gets it to the app: the request is
refused (``401``) or reaches the app without any copy of the token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from examples.recipes import Recipe, read_recipes, serve_recipe
from tests import recipe_apps
from tests.recipe_apps import same_origin
from tests.servers import (
    JWT_KEY,
    REQUEST_TIMEOUT,
    SESSION_COOKIE,
    ServedApp,
    absent,
    hs256_token,
    token_key,
    tombstone_key,
    uvicorn,
    waited,
    waitress,
)
from tests.test_django import CSRF_COOKIE, PASSWORD
from tests.test_django import SESSION_COOKIE as DJANGO_SESSION_COOKIE

#: A Redis client that does not flush: the module's servers keep running.
client = recipe_apps.client

#: Races per spelling and stack.
TRIALS = 2
#: How long ``GET /slow`` holds the loaded session (the apps' ``SLOW_SECONDS``).
SLOW_SECONDS = 0.3
#: When the logout is sent after ``GET /slow``, seconds: the session is loaded by then.
LOGOUT_AFTER = 0.1
#: How long a re-created record may live after the request that saved it was answered.
RECREATED_WITHIN = 1.0
#: The victim, whose session id is stolen, and the attacker (the Django example's users).
VICTIM, ATTACKER = "alice", "bob"
#: The token cookie (``LOGOUT_TOKEN_COOKIE``) of the token apps.
TOKEN_COOKIE = "tok"

_WHO = re.compile(r"Logged in as ([^.;<\s]+)|Not logged in")
_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


def cookieless_client(url: str) -> httpx.Client:
    """A client of the server at ``url`` that keeps no cookies: every request sends only
    the ``Cookie`` fields it is given. One per test, shared by its threads (a new client
    costs tens of milliseconds)."""
    nothing = CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT, cookies=nothing)


def user_of(response: httpx.Response) -> str | None:
    """Who an answer of the race apps (text) or the Django example (HTML) says is logged
    in; None for "Not logged in"."""
    assert response.status_code == 200, response.text
    found = _WHO.search(response.text)
    assert found, response.text
    return found.group(1)


# -- spellings ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Spelling:
    """One way to send a cookie called ``name`` twice: the request's ``Cookie`` header
    fields, given the name, a harmless value and the value under test."""

    id: str
    fields: Callable[[str, str, str], list[str]]

    def headers(self, name: str, harmless: str, tested: str) -> list[tuple[str, str]]:
        """The request headers: one ``Cookie`` per field, in order (httpx sends a list of
        pairs as separate header fields)."""
        return [("Cookie", value) for value in self.fields(name, harmless, tested)]


#: The attacker's own session id A (harmless) with the victim's stolen V (tested).
SESSION_SPELLINGS = [
    Spelling("stolen-second", lambda n, a, v: [f"{n}={a}; {n}={v}"]),
    Spelling("stolen-first", lambda n, a, v: [f"{n}={v}; {n}={a}"]),
    Spelling("space-before-eq", lambda n, a, v: [f"{n}={a}; {n} ={v}"]),
    Spelling("tab-before-eq", lambda n, a, v: [f"{n}={a}; {n}\t={v}"]),
    Spelling("space-before-eq-alone", lambda n, a, v: [f"{n} ={v}"]),
    Spelling("two-fields", lambda n, a, v: [f"{n}={a}", f"{n}={v}"]),
]
#: A revoked JWT (tested), alone or beside a harmless ``x``.
TOKEN_SPELLINGS = [
    Spelling("space-before-eq", lambda n, x, t: [f"{n} ={t}"]),
    Spelling("space-before-eq-after-other", lambda n, x, t: [f"a=1;{n} ={t}"]),
    Spelling("tab-before-eq", lambda n, x, t: [f"{n}\t={t}"]),
    Spelling("revoked-second", lambda n, x, t: [f"{n}={x}; {n}={t}"]),
    Spelling("revoked-first", lambda n, x, t: [f"{n}={t}; {n}={x}"]),
    Spelling("two-fields", lambda n, x, t: [f"{n}={x}", f"{n}={t}"]),
]


# -- stacks ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Stack:
    """An app on a real server: how to serve it, and (for the race) its session cookie,
    where its sessions are in Redis and how to log in."""

    id: str
    #: Serve it with Redis at a URL, its files (a database) in a directory; yields the
    #: base URL.
    serve: Callable[[str, Path], contextlib.AbstractContextManager[str]]
    cookie: str = SESSION_COOKIE
    #: The Redis key of a session, ``{sid}`` standing for its id.
    session_key: str = ""
    #: Log in as a user with a :func:`cookieless_client`; the session id.
    log_in: Callable[[httpx.Client, str], str] | None = None

    def record(self, sid: str) -> str:
        """The Redis key of session ``sid``."""
        return self.session_key.replace("{sid}", sid)


def served(app: ServedApp) -> Callable[[str, Path], contextlib.AbstractContextManager[str]]:
    """Serve ``app`` (:meth:`ServedApp.serve`), yielding its base URL."""

    @contextlib.contextmanager
    def serve(redis_url: str, _workdir: Path) -> Iterator[str]:
        with app.serve(redis_url) as server:
            yield server.url

    return serve


def race_app_log_in(browser: httpx.Client, user: str) -> str:
    """Log in to a race app (``POST /login``); the session cookie's value."""
    login = browser.post("/login", data={"username": user})
    assert login.status_code == 200, login.text
    assert login.text == f"Logged in as {user}.\n"
    sid = login.cookies.get(SESSION_COOKIE)
    assert sid, login.headers
    return sid


def django_log_in(browser: httpx.Client, user: str) -> str:
    """Log in to the Django app through its form, with its CSRF token, as
    :func:`tests.test_django.logged_in` does; the session id."""
    page = browser.get("/")
    assert user_of(page) is None
    token = _CSRF_FIELD.search(page.text)
    assert token, page.text
    login = browser.post(
        "/login",
        data={"username": user, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        headers={
            "Cookie": f"{CSRF_COOKIE}={page.cookies[CSRF_COOKIE]}",
            **same_origin(url_of(browser)),
        },
    )
    assert login.status_code == 303, login.text
    sid = login.cookies.get(DJANGO_SESSION_COOKIE)
    assert sid, login.headers
    assert user_of(browser.get("/", headers={"Cookie": f"{DJANGO_SESSION_COOKIE}={sid}"})) == user
    return sid


def url_of(browser: httpx.Client) -> str:
    """The base URL of a client's server, without a trailing slash."""
    return str(browser.base_url).rstrip("/")


RECIPES = read_recipes()


def django_recipe(row: str) -> Recipe:
    """The README's row ``row``, its server command serving
    :mod:`tests.adoption_apps.race_django` (the example plus ``GET /slow``)."""
    recipe = RECIPES[row]
    server = tuple(
        arg.replace("examples.django_app.", "tests.adoption_apps.race_django.")
        for arg in recipe.server
    )
    assert server != recipe.server, recipe.server
    return dataclasses.replace(recipe, server=server)


def served_django(recipe: Recipe) -> Callable[[str, Path], contextlib.AbstractContextManager[str]]:
    """Serve the Django app by ``recipe`` with its database in the given directory."""

    @contextlib.contextmanager
    def serve(redis_url: str, workdir: Path) -> Iterator[str]:
        db = str(workdir / "django.sqlite3")
        with serve_recipe(recipe, redis_url, DJANGO_DB=db, SLOW_SECONDS=str(SLOW_SECONDS)) as url:
            yield url

    return serve


#: The race apps' settings: how long ``GET /slow`` waits, and the middleware learns whose
#: sessions are whose.
RACE_SETTINGS = {"SLOW_SECONDS": str(SLOW_SECONDS), "LOGOUT_SESSION_SUBJECT": "user"}
DJANGO_ASGI = django_recipe("django-asgi")
DJANGO_WSGI = django_recipe("django-wsgi")
RACE_STACKS = [
    Stack(
        "starlette-uvicorn",
        served(
            ServedApp(
                "starlette (starsessions) under uvicorn",
                uvicorn("tests.adoption_apps.race_fastapi:app"),
                "starsessions.{sid}",
                {"LOGOUT_SESSION_KEYS": "starsessions.{sid}", **RACE_SETTINGS},
            )
        ),
        session_key="starsessions.{sid}",
        log_in=race_app_log_in,
    ),
    Stack(
        "flask-waitress",
        served(
            ServedApp(
                "flask (Flask-Session) under waitress",
                waitress("tests.adoption_apps.race_flask:app", "--threads=8"),
                "session:{sid}",
                RACE_SETTINGS,
            )
        ),
        session_key="session:{sid}",
        log_in=race_app_log_in,
    ),
    Stack(
        "django-asgi-uvicorn-cache",
        served_django(DJANGO_ASGI),
        cookie=DJANGO_SESSION_COOKIE,
        session_key=DJANGO_ASGI.settings["LOGOUT_SESSION_KEYS"],
        log_in=django_log_in,
    ),
    Stack(
        "django-wsgi-waitress-cached_db",
        served_django(DJANGO_WSGI),
        cookie=DJANGO_SESSION_COOKIE,
        session_key=DJANGO_WSGI.settings["LOGOUT_SESSION_KEYS"],
        log_in=django_log_in,
    ),
]

#: The token apps' settings: the token cookie, and the key its JWTs are signed with.
TOKEN_SETTINGS = {
    "LOGOUT_TOKEN_COOKIE": TOKEN_COOKIE,
    "LOGOUT_JWT_KEY": JWT_KEY,
    "TOKEN_COOKIE": TOKEN_COOKIE,
}
TOKEN_STACKS = [
    Stack(
        "starlette-uvicorn",
        served(
            ServedApp(
                "token echo (starlette) under uvicorn",
                uvicorn("tests.adoption_apps.token_echo_starlette:app"),
                "session:{sid}",
                TOKEN_SETTINGS,
            )
        ),
    ),
    Stack(
        "flask-waitress",
        served(
            ServedApp(
                "token echo (flask) under waitress",
                waitress("tests.adoption_apps.token_echo_flask:app", "--threads=4"),
                "session:{sid}",
                TOKEN_SETTINGS,
            )
        ),
    ),
]


class Servers:
    """The module's servers, each started on first use and kept until the module ends
    (every test uses fresh sessions and tokens of its own)."""

    def __init__(self, redis_url: str, workdir: Path, running: contextlib.ExitStack) -> None:
        self._redis_url = redis_url
        self._workdir = workdir
        self._running = running
        self._urls: dict[int, str] = {}

    def url(self, stack: Stack) -> str:
        """The base URL of ``stack``'s server, started now when it is not running yet."""
        if id(stack) not in self._urls:
            workdir = self._workdir / stack.id
            workdir.mkdir(exist_ok=True)
            url = self._running.enter_context(stack.serve(self._redis_url, workdir))
            self._urls[id(stack)] = url
        return self._urls[id(stack)]


@pytest.fixture(scope="module")
def servers(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with contextlib.ExitStack() as running:
        yield Servers(redis_url, tmp_path_factory.mktemp("repeated-cookies"), running)


# -- the race ----------------------------------------------------------------------------


def log_out(browser: httpx.Client, cookie: str, sid: str) -> None:
    """The victim's own logout of session ``sid``, as a browser's form sends it."""
    response = browser.post(
        "/logout", headers={"Cookie": f"{cookie}={sid}", **same_origin(url_of(browser))}
    )
    assert response.status_code == 303, response.text


def race(
    browser: httpx.Client, stack: Stack, spelling: Spelling, attacker_sid: str, client: redis.Redis
) -> list[str]:
    """One race (see the module's docstring) with ``browser``, a
    :func:`cookieless_client`; what went wrong, empty when nothing did."""
    assert stack.log_in is not None
    victim_sid = stack.log_in(browser, VICTIM)
    record = stack.record(victim_sid)
    assert client.exists(record) == 1, f"{record} not written at login"
    headers = spelling.headers(stack.cookie, attacker_sid, victim_sid)

    slow: dict[str, Any] = {}

    def run_slow() -> None:
        try:
            slow["response"] = browser.get("/slow", headers=headers)
        except Exception as exc:  # reported by the main thread
            slow["error"] = exc
        slow["answered"] = time.monotonic()

    thread = threading.Thread(target=run_slow, name="slow request", daemon=True)
    started = time.monotonic()
    thread.start()
    time.sleep(LOGOUT_AFTER)
    log_out(browser, stack.cookie, victim_sid)
    logout_answered = time.monotonic() - started
    thread.join(REQUEST_TIMEOUT + 1)
    assert not thread.is_alive(), "GET /slow did not finish"
    assert "error" not in slow, slow.get("error")
    assert client.exists(tombstone_key(victim_sid)) == 1, "the logout left no tombstone"
    # Who the slow request was: the victim when the app read the stolen copy before the
    # logout (a real race when the logout was answered during its wait), else the
    # attacker or nobody. Django's cache engine refuses to save a session whose record
    # was deleted meanwhile (SessionInterrupted: 400), which revives nothing either.
    slow_response: httpx.Response = slow["response"]
    if slow_response.status_code == 400 and stack.cookie == DJANGO_SESSION_COOKIE:
        answer = "400 (Django: the session was deleted before the request completed)"
    else:
        answer = f"as {user_of(slow_response) or 'nobody'}"
    during = logout_answered < SLOW_SECONDS
    context = (
        f"{stack.id}, {spelling.id} {headers!r}: GET /slow answered {answer}"
        f"{' (a race: the logout was answered during its wait)' if during else ''}"
    )

    problems: list[str] = []
    # (3) No re-created record of the victim is left a second after the slow answer.
    since_answer = time.monotonic() - slow["answered"]
    gone = waited(absent(client, record), max(RECREATED_WITHIN - since_answer, 0.0)) is not None
    if not gone:
        problems.append(
            f"{context}; the victim's record {record} still exists {RECREATED_WITHIN:g} s "
            "after that answer"
        )
    # (4) The same spelling never answers as the victim, nor brings her record back.
    replay = browser.get("/", headers=headers)
    if user_of(replay) == VICTIM:
        problems.append(f"{context}; then GET / with the same cookies answered as {VICTIM}")
    if gone and waited(absent(client, record), RECREATED_WITHIN) is None:
        problems.append(f"{context}; after GET /, the victim's record {record} exists again")
    # And the victim's id reaches the app in no copy at all (the apps' GET /cookie).
    reached = browser.get("/cookie", headers=headers)
    assert reached.status_code == 200, reached.text
    if any(victim_sid in value for value in reached.json()):
        problems.append(f"{context}; then the victim's id reached the app: {reached.json()}")
    return problems


@pytest.mark.parametrize("spelling", SESSION_SPELLINGS, ids=[s.id for s in SESSION_SPELLINGS])
@pytest.mark.parametrize("stack", RACE_STACKS, ids=[s.id for s in RACE_STACKS])
def test_a_logged_out_session_is_never_revived_in_any_copy(
    stack: Stack, spelling: Spelling, servers: Servers, client: redis.Redis
) -> None:
    assert stack.log_in is not None
    with cookieless_client(servers.url(stack)) as browser:
        attacker_sid = stack.log_in(browser, ATTACKER)
        problems: list[str] = []
        for _trial in range(TRIALS):
            problems += race(browser, stack, spelling, attacker_sid, client)
    assert not problems, "\n".join(problems)


# -- the token cookie --------------------------------------------------------------------


@pytest.mark.parametrize("spelling", TOKEN_SPELLINGS, ids=[s.id for s in TOKEN_SPELLINGS])
@pytest.mark.parametrize("stack", TOKEN_STACKS, ids=[s.id for s in TOKEN_STACKS])
def test_a_revoked_token_cookie_never_reaches_the_app(
    stack: Stack, spelling: Spelling, servers: Servers, client: redis.Redis
) -> None:
    token = hs256_token(f"{stack.id}-{spelling.id}", jti=f"{time.time_ns()}")
    plain = [("Cookie", f"{TOKEN_COOKIE}={token}")]
    with cookieless_client(servers.url(stack)) as browser:
        # While live, the token reaches the app.
        live = browser.get("/echo", headers=plain)
        assert live.status_code == 200, live.text
        assert live.json()["token"] == token

        # Logging out with it revokes it ...
        same_site = list(same_origin(url_of(browser)).items())
        logout = browser.post("/logout", headers=[*plain, *same_site])
        assert logout.status_code == 303, logout.text
        assert client.exists(token_key(token)) == 1
        assert browser.get("/echo", headers=plain).json()["token"] is None

        # ... and no spelling of it reaches the app: refused, or the app gets no copy.
        headers = spelling.headers(TOKEN_COOKIE, "x", token)
        for attempt in ("first", "again"):
            response = browser.get("/echo", headers=headers)
            if response.status_code == 401:
                continue
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["token"] != token, f"{attempt} request {headers!r}: the app read {body}"
            leaked = [value for value in body["cookie"] if token in value]
            assert not leaked, (
                f"{attempt} request {headers!r}: the revoked token reached the app: {body}"
            )
