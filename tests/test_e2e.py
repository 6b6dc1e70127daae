"""End to end over loopback: the examples under real servers (uvicorn, waitress) on the
test Redis, driven by the demo's own walk-throughs (examples/demo.py), plus what the
walk-throughs do not check: the exact audit entry, the denylist entry's lifetime, that
no raw secret reaches Redis, browser-form logouts (same-origin only), the revocation
cache, and that the demo script passes, fails clearly, and leaves no process behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
import redis

from examples.demo import (
    DENYLIST_PREFIX,
    SESSION_COOKIE,
    STREAM,
    USER_AGENT,
    Browser,
    StepFailed,
    WalkResult,
    serve_fastapi,
    serve_flask,
    set_cookie,
    sha256_hex,
    walk_everywhere,
    walk_fastapi,
    walk_flask,
)
from logout_middleware.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
#: Guards against a hung demo; not an assertion about speed.
DEMO_TIMEOUT = 300


@pytest.fixture(scope="module")
def fastapi_url(redis_url: str) -> Iterator[str]:
    with serve_fastapi(redis_url) as url:
        yield url


@pytest.fixture(scope="module")
def flask_url(redis_url: str) -> Iterator[str]:
    with serve_flask(redis_url) as url:
        yield url


def text(value: object) -> str:
    """A Redis reply item as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def redis_text(client: redis.Redis) -> list[str]:
    """Every key in the database and every value in it, as text."""
    found: list[str] = []
    for raw_key in client.scan_iter():
        key = text(raw_key)
        found.append(key)
        kind = text(client.type(key))
        items: list[object]
        if kind == "string":
            items = [client.get(key)]
        elif kind == "stream":
            items = []
            for entry_id, fields in client.xrange(key) or []:
                items += [entry_id, *[part for pair in (fields or {}).items() for part in pair]]
        elif kind == "hash":
            items = [part for pair in client.hgetall(key).items() for part in pair]
        elif kind == "list":
            items = list(client.lrange(key, 0, -1))
        elif kind == "set":
            items = list(client.smembers(key))
        elif kind == "zset":
            items = list(client.zrange(key, 0, -1))
        else:
            pytest.fail(f"unexpected Redis type {kind} at {key}")
        found += [text(item) for item in items]
    return found


def stream_entries(client: redis.Redis) -> list[tuple[str, dict[str, str]]]:
    """Every entry of the audit stream, as text."""
    return [
        (text(entry_id), {text(k): text(v) for k, v in (fields or {}).items()})
        for entry_id, fields in client.xrange(STREAM) or []
    ]


def assert_expired_session_cookie(set_cookies: list[str]) -> None:
    """One ``Set-Cookie``, deleting the session cookie with the attributes it was set with."""
    assert len(set_cookies) == 1, set_cookies
    header = set_cookies[0]
    assert header.startswith(f"{SESSION_COOKIE}=;"), header
    attributes = {part.strip().split("=", 1)[0].lower() for part in header.split(";")[1:]}
    assert {"max-age", "expires", "path", "httponly"} <= attributes, header
    assert "secure" not in attributes  # plain http: a Secure deletion would be ignored
    assert "Max-Age=0" in header
    assert "Path=/" in header
    assert "1970" in header


def assert_common_entry(entry: dict[str, str], result: WalkResult) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", entry["id"]), entry["id"]
    at = datetime.fromisoformat(entry["at"])
    assert at.utcoffset() == timedelta(0)
    assert entry["method"] == "POST"
    assert entry["path"] == "/logout"
    assert entry["cookies"] == SESSION_COOKIE
    assert entry["session_id_hash"] == sha256_hex(result.session_id)
    assert entry["client"] == "127.0.0.1"
    assert entry["user_agent"] == USER_AGENT
    assert entry["redirect"] == "/"
    assert entry["store"] == "ok"
    assert entry["type"] == "session_end"
    assert entry["reason"] == "user_logout"
    assert entry["subject"] == result.user
    assert entry["subject_source"] == "session"
    assert entry["sessions_ended"] == "1"


ENTRY_FIELDS = {
    "id",
    "at",
    "method",
    "path",
    "cookies",
    "session_id_hash",
    "token_hash",
    "token_ttl",
    "client",
    "user_agent",
    "redirect",
    "type",
    "reason",
    "subject",
    "subject_source",
    "impersonator",
    "duration",
    "sessions_ended",
    "tokens_ended",
    "ended_sessions",
    "not_before",
    "schemes",
    "restored",
    "oidc_sid_hash",
    "end_session",
    "store",
}


def test_fastapi_walk_through(fastapi_url: str, redis_url: str, redis_client: redis.Redis) -> None:
    lines: list[str] = []
    result = walk_fastapi(fastapi_url, redis_url, out=lines.append)
    assert result.token is not None
    assert result.denylist_key is not None
    assert lines == result.lines
    assert any(line.startswith("11. ") for line in lines)

    # The audit stream holds exactly the entry the walk saw, with every field exact.
    entries = stream_entries(redis_client)
    assert entries == [(result.entry_id, result.entry)]
    entry = result.entry
    assert set(entry) == ENTRY_FIELDS
    assert_common_entry(entry, result)
    assert entry["token_hash"] == sha256_hex(result.token)
    claims = jwt.decode(result.token, options={"verify_signature": False})
    token_ttl = int(entry["token_ttl"])
    # Until the token's exp (still ahead at logout), plus the middleware's 60 s leeway.
    assert 60 <= token_ttl <= claims["exp"] - claims["iat"] + 60

    # The denylist entry: the token's hash, set for token_ttl seconds, and counting down.
    assert result.denylist_key == DENYLIST_PREFIX + sha256_hex(result.token)
    assert redis_client.get(result.denylist_key) == b"1"
    assert 0 < redis_client.ttl(result.denylist_key) <= token_ttl

    # Nothing in Redis holds the raw session id or token (nor the token's signature).
    signature = result.token.rsplit(".", 1)[1]
    for text in redis_text(redis_client):
        assert result.session_id not in text
        assert result.token not in text
        assert signature not in text
    # ... nor does the demo print them whole.
    printed = "\n".join(lines)
    assert result.session_id not in printed
    assert result.token not in printed

    assert_expired_session_cookie(result.logout_set_cookies)


def test_fastapi_after_logout_only_the_old_credentials_are_dead(
    fastapi_url: str, redis_url: str, redis_client: redis.Redis
) -> None:
    result = walk_fastapi(fastapi_url, redis_url, out=lambda line: None, user="carol")
    browser = Browser(fastapi_url)
    try:
        login = browser.request("POST", "/login", form={"username": "carol"})
        cookie = set_cookie(login)
        assert cookie is not None
        assert cookie.value != result.session_id
        assert "Logged in as carol." in browser.request("GET", "/", cookie=cookie.value).text

        token = browser.request("POST", "/token", cookie=cookie.value).json()["access_token"]
        assert token != result.token
        me = browser.request("GET", "/api/me", token=token)
        assert me.status_code == 200
        assert me.json()["user"] == "carol"

        old = browser.request("GET", "/api/me", token=result.token)
        assert old.status_code == 401
        assert 'error="invalid_token"' in old.headers["www-authenticate"]
        assert old.headers["cache-control"] == "no-store"
    finally:
        browser.close()
    assert redis_client.exists(f"starsessions.{cookie.value}") == 1
    assert redis_client.exists(result.session_key) == 0


def test_fastapi_walk_through_with_the_revocation_cache(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """LOGOUT_REVOCATION_CACHE=true (a per-process denylist mirror) changes nothing a
    client can see: the same walk-through holds, the old token included."""
    with serve_fastapi(redis_url, revocation_cache="true") as url:
        result = walk_fastapi(url, redis_url, out=lambda line: None)
    assert stream_entries(redis_client) == [(result.entry_id, result.entry)]


def test_flask_walk_through_with_the_revocation_cache(
    redis_url: str, redis_client: redis.Redis
) -> None:
    with serve_flask(redis_url, revocation_cache="true") as url:
        result = walk_flask(url, redis_url, out=lambda line: None)
        token = revoke_opaque_token(url)
    (first_id, first), (_, second) = stream_entries(redis_client)
    assert (first_id, first) == (result.entry_id, result.entry)
    assert second["token_hash"] == sha256_hex(token)


def test_flask_walk_through(flask_url: str, redis_url: str, redis_client: redis.Redis) -> None:
    lines: list[str] = []
    result = walk_flask(flask_url, redis_url, out=lines.append)
    assert result.token is None
    assert lines == result.lines
    assert any(line.startswith("7. ") for line in lines)
    assert result.session_key == f"session:{result.session_id}"

    entries = stream_entries(redis_client)
    assert entries == [(result.entry_id, result.entry)]
    entry = result.entry
    assert set(entry) == ENTRY_FIELDS
    assert_common_entry(entry, result)
    assert entry["token_hash"] == ""
    assert entry["token_ttl"] == ""

    # No token, so no denylist key; and the raw session id is nowhere in Redis.
    assert list(redis_client.scan_iter(match=f"{DENYLIST_PREFIX}*")) == []
    for text in redis_text(redis_client):
        assert result.session_id not in text
    assert result.session_id not in "\n".join(lines)

    assert_expired_session_cookie(result.logout_set_cookies)


@pytest.mark.parametrize(
    ("server", "key_template"),
    [("fastapi_url", "starsessions.{sid}"), ("flask_url", "session:{sid}")],
)
def test_browser_form_logout_same_origin_only(
    server: str, key_template: str, request: pytest.FixtureRequest, redis_client: redis.Redis
) -> None:
    """What a browser's logout form sends: Origin, Sec-Fetch-Site and a form body with
    ``next``. Cross-site, it is refused and changes nothing; same-origin, it logs out and
    goes to ``next``."""
    base_url: str = request.getfixturevalue(server)
    browser = Browser(base_url)
    try:
        cookie = set_cookie(browser.request("POST", "/login", form={"username": "dave"}))
    finally:
        browser.close()
    assert cookie is not None
    key = key_template.replace("{sid}", cookie.value)
    headers = {
        "Cookie": f"{SESSION_COOKIE}={cookie.value}",
        "Content-Type": "application/x-www-form-urlencoded",
    }

    cross = httpx.post(
        base_url + "/logout",
        headers={**headers, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        content=b"next=%2Fbye",
    )
    assert cross.status_code == 403
    assert "set-cookie" not in cross.headers
    assert redis_client.exists(key) == 1

    same = httpx.post(
        base_url + "/logout",
        headers={**headers, "Origin": base_url, "Sec-Fetch-Site": "same-origin"},
        content=b"next=%2Fbye%3Fx%3D1",
    )
    assert same.status_code == 303
    assert same.headers["location"] == "/bye?x=1"
    assert redis_client.exists(key) == 0
    [(_, entry)] = stream_entries(redis_client)
    assert entry["redirect"] == "/bye?x=1"
    assert entry["session_id_hash"] == sha256_hex(cookie.value)


def revoke_opaque_token(base_url: str) -> str:
    """Log out with a fresh opaque bearer token; check that the server refuses it from
    then on (and only it). Returns the token."""
    token = "opaque-" + os.urandom(16).hex()
    other = "opaque-" + os.urandom(16).hex()
    browser = Browser(base_url)
    try:
        assert browser.request("GET", "/", token=token).status_code == 200
        assert browser.request("POST", "/logout", token=token).status_code == 303
        refused = browser.request("GET", "/", token=token)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
        assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert browser.request("GET", "/", token=other).status_code == 200
    finally:
        browser.close()
    return token


def test_flask_logout_revokes_a_bearer_token_under_waitress(
    flask_url: str, redis_client: redis.Redis
) -> None:
    token = revoke_opaque_token(flask_url)
    key = DENYLIST_PREFIX + sha256_hex(token)
    # An opaque token stays revoked for LOGOUT_TOKEN_TTL, 3600 s by default.
    assert 0 < redis_client.ttl(key) <= 3600
    [(_, entry)] = stream_entries(redis_client)
    assert entry["token_hash"] == sha256_hex(token)
    assert entry["token_ttl"] == "3600"
    assert entry["session_id_hash"] == ""
    for item in redis_text(redis_client):
        assert token not in item


def test_a_failed_step_is_named_and_the_server_is_still_stopped(
    redis_url: str, redis_client: redis.Redis
) -> None:
    urls: list[str] = []

    def walk_the_wrong_app() -> None:
        with serve_flask(redis_url) as url:
            urls.append(url)
            walk_fastapi(url, redis_url, out=lambda line: None)

    # The Flask example keeps sessions in session:{sid}, not starsessions.{sid}: the
    # FastAPI walk stops at its first check of Redis, saying which step and what.
    with pytest.raises(
        StepFailed, match=r"^FastAPI walk-through, step 1: expected Redis has the session: starsess"
    ):
        walk_the_wrong_app()
    assert len(urls) == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(urls[0] + "/")


def run_demo(redis_url: str) -> subprocess.CompletedProcess[str]:
    """``examples/demo.py`` run to its end with ``REDIS_URL`` and no ``LOGOUT_*``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
    env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "examples/demo.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )


def test_demo_script_passes(redis_url: str, redis_client: redis.Redis) -> None:
    done = run_demo(redis_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Using the Redis at {redis_url}" in done.stdout
    assert "FastAPI + starsessions + JWT, at http://127.0.0.1:" in done.stdout
    assert "Flask + Flask-Session, at http://127.0.0.1:" in done.stdout
    assert "All checks passed" in done.stdout
    assert "FAILED" not in done.stdout + done.stderr
    # Two logouts and two logouts everywhere, four audit entries; every session gone.
    assert "Log out everywhere, at http://127.0.0.1:" in done.stdout
    assert redis_client.xlen(STREAM) == 4
    assert list(redis_client.scan_iter(match="starsessions.*")) == []
    assert list(redis_client.scan_iter(match="session:*")) == []


def test_demo_script_fails_clearly_without_redis() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = run_demo(dead)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"ERROR: cannot reach the Redis at {dead}" in done.stderr


@pytest.mark.parametrize(
    ("signum", "code", "farewell"),
    [(signal.SIGINT, 0, "Stopped."), (signal.SIGTERM, 128 + signal.SIGTERM, "")],
)
def test_demo_serve_stops_every_process_it_started(
    signum: signal.Signals, code: int, farewell: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "LOGOUT_REDIS_URL"}}
    process = subprocess.Popen(
        [sys.executable, "examples/demo.py", "--serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    printed: list[str] = []
    try:
        for line in process.stdout:
            printed.append(line)
            if line.startswith("Serving the FastAPI example at "):
                break
        output = "".join(printed)
        redis_found = re.search(r"private redis-server for this run: (\S+)", output)
        app_found = re.search(r"Serving the FastAPI example at (\S+)", output)
        assert redis_found is not None, output
        assert app_found is not None, output
        assert httpx.get(app_found.group(1)).status_code == 200
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=DEMO_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, output + rest
    assert farewell in rest
    with pytest.raises(httpx.ConnectError):
        httpx.get(app_found.group(1))
    client = redis.Redis.from_url(redis_found.group(1), socket_connect_timeout=2)
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()


@pytest.mark.parametrize(
    ("server", "key_template", "with_token"),
    [("fastapi_url", "starsessions.{sid}", True), ("flask_url", "session:{sid}", False)],
)
def test_everywhere_walk_through(
    server: str,
    key_template: str,
    with_token: bool,
    request: pytest.FixtureRequest,
    redis_client: redis.Redis,
    redis_url: str,
) -> None:
    """The demo's everywhere walk on the unmodified examples, configured by environment
    only: two browsers, one logs out everywhere, the other is logged out too."""
    url = request.getfixturevalue(server)
    lines = walk_everywhere(
        url, redis_url, session_keys=key_template, with_token=with_token, out=lambda line: None
    )
    assert any("both sessions are gone from Redis" in line for line in lines)
    assert any("Not logged in." in line for line in lines)
    assert (any("401 Unauthorized" in line for line in lines)) is with_token
    assert list(redis_client.scan_iter(match=key_template.replace("{sid}", "*"))) == []
