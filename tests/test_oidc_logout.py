"""Single logout with OpenID Connect, end to end: a real provider (node-oidc-provider 9,
tests/oidc), the Authlib apps of tests/adoption_apps/oidc_flask.py (waitress) and
oidc_fastapi.py (uvicorn), each wrapped by the middleware and configured by ``LOGOUT_*``
variables only, and a real Redis.

* Logging out at the provider ends the app's session through the back channel
  (``LOGOUT_BACKCHANNEL_PATH``): the old cookie no longer logs anyone in, the record is
  gone, a tombstone exists, a JWT naming that provider session is refused, and the audit
  stream has one ``session_end`` entry with ``reason=backchannel``.
* Logging out at the app with ``LOGOUT_OIDC_END_SESSION=true`` sends the browser on to
  the provider's ``end_session_endpoint`` (``id_token_hint``, ``client_id``,
  ``post_logout_redirect_uri``, ``state``); once confirmed there the provider session is
  over and the browser is back at the app. The ``post_logout_redirect_uri`` is a safe
  ``next``, made absolute, else the app's ``/``; the session ends once in the audit
  trail, although the provider then back-channels the app too.
* Two apps in one browser: an RP-initiated logout at one ends the other's session through
  the provider's back channel.
* A sign-in that reuses the session of an abandoned earlier attempt (the callback is a
  ``GET``) is still ended through the back channel.
* ``uvicorn --workers 2``: the back-channel call reaches one worker; every worker refuses
  the session afterwards.
* The receiver refuses a replayed logout token (same ``jti``), other methods, bodies that
  are not a form, and forged tokens, and changes nothing when it refuses.

Skipped, with the reason, when node or npm is not on PATH.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from logout_middleware.config import LogoutConfig
from logout_middleware.core.revocation import RevocationKeys, oidc_sid_hash
from tests.oidc_provider import (
    BACKCHANNEL_EVENT,
    DEFAULT_BACKCHANNEL_PATH,
    FRAMEWORKS,
    SESSION_KEYS,
    App,
    Framework,
    Provider,
    Running,
    confirm_logout,
    end_session_at_provider,
    node_modules,  # noqa: F401 (a fixture)
    oidc_app_env,
    oidc_provider,
    planned_app,
    read_forms,
    running,
    serve_oidc_app,
    signed_in_record,
)
from tests.servers import (
    REQUEST_TIMEOUT,
    SESSION_COOKIE,
    Server,
    answers,
    assert_expires_cookie,
    audit_entries,
    children,
    left_running,
    recording_server,
    runs_with,
    sha256_hex,
    tombstone_key,
    waited,
)

#: The middleware's Redis keys under its default ``LOGOUT_KEY_PREFIX``.
KEYS = RevocationKeys(LogoutConfig())
#: Longest the middleware may take to index a session after a request with it, seconds.
INDEX_TIMEOUT = 5.0
#: Longest a back-channel delivery may take to reach the recorder, seconds.
DELIVERY_TIMEOUT = 5.0
#: Longest a worker may go on accepting a session another worker ended, seconds (its
#: revocation mirror follows the audit stream).
STALENESS_LIMIT = 1.0
#: Bound on each test (pytest-timeout), seconds.
TEST_TIMEOUT = 90

NOT_LOGGED_IN = "Not logged in.\n"
ALICE = "Logged in as alice.\n"

pytestmark = [pytest.mark.timeout(TEST_TIMEOUT), pytest.mark.usefixtures("node_modules")]


# -- the apps --------------------------------------------------------------------------


def _logout_settings(app: App, provider: Provider, *, end_session: bool = False) -> dict[str, str]:
    """The middleware configured for single logout (by environment only)."""
    return {
        "LOGOUT_OIDC_ISSUER": provider.issuer,
        "LOGOUT_OIDC_CLIENT_ID": app.client_id,
        "LOGOUT_SESSION_OIDC_SID": "user.sid",
        "LOGOUT_SESSION_ID_TOKEN": "id_token",
        "LOGOUT_SESSION_SUBJECT": "user.sub",
        "LOGOUT_BACKCHANNEL_PATH": DEFAULT_BACKCHANNEL_PATH,
        "LOGOUT_OIDC_END_SESSION": "true" if end_session else "false",
    }


def _running(
    apps: Sequence[App], redis_url: str, *, end_session: bool = False
) -> contextlib.AbstractContextManager[Running]:
    """The provider and ``apps`` configured for single logout, and a browser."""
    return running(apps, redis_url, functools.partial(_logout_settings, end_session=end_session))


def _log_out_at(app: App, browser: httpx.Client, **form: str) -> httpx.Response:
    """``POST /logout`` at ``app`` (with ``form``), from its own page: a ``303``, to the
    provider with ``LOGOUT_OIDC_END_SESSION``."""
    logout = browser.post(app.url + "/logout", data=form or None, headers={"Origin": app.url})
    assert logout.status_code == 303, logout.text
    return logout


# -- sessions, keys, events -----------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A browser's signed-in session at an app, as the test saw it before logout."""

    app: App
    #: The ``session`` cookie's value.
    id: str
    #: The provider's ``sid`` in the ID token.
    oidc_sid: str
    #: The raw ID token kept in the session.
    id_token: str

    @property
    def hash(self) -> str:
        """SHA-256 of the session id: how keys and events name it."""
        return sha256_hex(self.id)

    @property
    def record_key(self) -> str:
        """The app's session record in Redis."""
        return SESSION_KEYS[self.app.framework].format(sid=self.id)

    @property
    def tombstone_key(self) -> str:
        """The middleware's tombstone of the session."""
        return tombstone_key(self.id)

    def index_key(self, provider: Provider) -> str:
        """The middleware's index of the sessions signed in with this provider session."""
        return KEYS.oidc_index(oidc_sid_hash(provider.issuer, self.oidc_sid))

    @property
    def cookie(self) -> dict[str, str]:
        """A ``Cookie`` header with the session cookie, for a client without a jar."""
        return {"Cookie": f"{SESSION_COOKIE}={self.id}"}


def _wait_indexed(redis_client: redis.Redis, session: Session, provider: Provider) -> None:
    """Poll until the middleware indexed ``session`` under its provider ``sid`` (the
    write follows the response under uvicorn)."""
    key = session.index_key(provider)
    took = waited(lambda: redis_client.zscore(key, session.hash) is not None, INDEX_TIMEOUT, 0.005)
    assert took is not None, f"session not indexed under its sid after {INDEX_TIMEOUT} s"


def _signed_in(
    browser: httpx.Client,
    app: App,
    provider: Provider,
    redis_client: redis.Redis,
    *,
    indexed: bool = True,
) -> Session:
    """Sign alice in to ``app`` through the provider; check the page and the record;
    with ``indexed``, wait until the middleware indexed the session under its provider
    ``sid``."""
    session_id, record = signed_in_record(browser, app, provider, redis_client)
    session = Session(app, session_id, record["user"]["sid"], record["id_token"])
    if indexed:
        _wait_indexed(redis_client, session, provider)
    return session


def _events(redis_client: redis.Redis, reason: str | None = None) -> list[dict[str, str]]:
    """The audit stream's entries, oldest first; only ``reason``'s when given."""
    entries = audit_entries(redis_client)
    return [entry for entry in entries if reason is None or entry["reason"] == reason]


def _backchannel_session_ends(redis_client: redis.Redis, session: Session) -> list[dict[str, str]]:
    """The stream's back-channel ``session_end`` entries for ``session``."""
    return [
        entry
        for entry in _events(redis_client, "backchannel")
        if entry["type"] == "session_end" and entry["session_id_hash"] == session.hash
    ]


def _assert_ended_by_backchannel(
    redis_client: redis.Redis, session: Session, provider: Provider
) -> None:
    """The session was ended through the back channel: its old cookie reaches the app
    without the session (and is expired), its record is gone, its tombstone exists, a
    JWT naming its provider session is refused, and the stream has exactly one
    ``session_end`` entry for it with ``reason=backchannel`` and ``subject=alice``."""
    with httpx.Client(timeout=REQUEST_TIMEOUT) as fresh:
        page = fresh.get(session.app.url + "/", headers=session.cookie)
        assert page.status_code == 200
        assert page.text == NOT_LOGGED_IN
        assert_expires_cookie(page)
        # The ID token carries the provider's iss and sid: as a bearer JWT it is refused.
        refused = fresh.get(
            session.app.url + "/", headers={"Authorization": f"Bearer {session.id_token}"}
        )
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"] == "invalid_token"
    assert redis_client.exists(session.record_key) == 0
    assert redis_client.exists(session.tombstone_key) == 1
    [entry] = _backchannel_session_ends(redis_client, session)
    assert entry["subject"] == "alice"
    assert entry["subject_source"] == "oidc"
    assert entry["method"] == "POST"
    assert entry["path"] == DEFAULT_BACKCHANNEL_PATH
    assert entry["sessions_ended"] == "1"
    # The provider session's JWTs are ended by one bearer entry naming the sid's hash.
    bearer = [
        e
        for e in _events(redis_client, "backchannel")
        if e["type"] == "api_session_end"
        and e["oidc_sid_hash"] == oidc_sid_hash(provider.issuer, session.oidc_sid)
    ]
    assert len(bearer) == 1, bearer


def _assert_alive(redis_client: redis.Redis, session: Session) -> None:
    """The session still logs alice in, and nothing revoked it."""
    with httpx.Client(timeout=REQUEST_TIMEOUT) as fresh:
        assert fresh.get(session.app.url + "/", headers=session.cookie).text == ALICE
        bearer = fresh.get(
            session.app.url + "/", headers={"Authorization": f"Bearer {session.id_token}"}
        )
        assert bearer.status_code == 200, bearer.text
    assert redis_client.exists(session.record_key) == 1
    assert redis_client.exists(session.tombstone_key) == 0


# -- several workers -------------------------------------------------------------------


def _socket_owner(server_port: int, client_port: int, pids: set[int]) -> int | None:
    """Which of ``pids`` holds the server side of the loopback TCP connection from
    ``client_port`` to ``server_port`` (from /proc/net/tcp and the processes' fds)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and (
            int(remote.split(":")[1], 16) == client_port
        ):
            inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd) == target:
                    return pid
    return None


def _get_on_fresh_connection(
    url: str, headers: Mapping[str, str], master: int
) -> tuple[str, int | None]:
    """``GET /`` on a new TCP connection: the body, and which worker (a child of
    ``master``) served it."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    connection = HTTPConnection(parts.hostname, parts.port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request("GET", "/", headers=dict(headers))
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == 200, body
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        # Asked while the kept-alive connection is still open.
        worker = _socket_owner(parts.port, client_port, children(master))
    finally:
        connection.close()
    return body, worker


@contextlib.contextmanager
def _serve_fastapi_workers(app: App, env: Mapping[str, str], workers: int) -> Iterator[Server]:
    """Serve tests/adoption_apps/oidc_fastapi.py under ``uvicorn --workers`` at the
    app's URL; yield the server once ``GET /`` answers and ``workers`` children run. The
    server is always stopped on exit, and its workers must be gone then."""
    ours = f"APP_BASE_URL={app.url}"
    seen: set[int] = set()

    def workers_of(server: Server) -> set[int]:
        return {pid for pid in children(server.process.pid) if runs_with(pid, ours)}

    def ready(server: Server) -> bool:
        running = workers_of(server)
        seen.update(running)
        return len(running) >= workers and answers(server)

    try:
        with serve_oidc_app(
            "fastapi", app.url, env, "--workers", str(workers), ready=ready
        ) as server:
            try:
                yield server
            finally:
                seen.update(workers_of(server))
    finally:
        left = left_running(seen, ours)
        if left:
            pytest.fail(f"uvicorn workers {sorted(left)} still ran after the server stopped")


# -- forged logout tokens --------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _forged_tokens(provider: Provider, session: Session) -> dict[str, tuple[str, str]]:
    """Logout tokens with the claims a real one for ``session`` would have, none signed
    by the provider: by a key of our own (under the provider's ``kid`` and under a
    ``kid`` of our own), HS256 keyed with the provider's public key (algorithm
    confusion), and ``alg`` ``none``; each with a word its refusal should name."""
    jwks = httpx.get(provider.jwks_uri, timeout=REQUEST_TIMEOUT).json()
    [provider_jwk] = jwks["keys"]
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": session.app.client_id,
        "sub": "alice",
        "sid": session.oidc_sid,
        "events": {BACKCHANNEL_EVENT: {}},
        "iat": now,
        "exp": now + 120,
    }
    ours = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def own_key(kid: str) -> str:
        headers = {"typ": "logout+jwt", "kid": kid}
        payload = {**claims, "jti": secrets.token_hex(8)}
        return jwt.encode(payload, ours, algorithm="RS256", headers=headers)

    def unsigned_or_hs256(alg: str) -> str:
        header = {"alg": alg, "typ": "logout+jwt", "kid": provider_jwk["kid"]}
        payload = {**claims, "jti": secrets.token_hex(8)}
        signing_input = (
            f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}".encode()
        )
        if alg == "none":
            return signing_input.decode() + "."
        public = jwt.PyJWK(provider_jwk).key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        signature = hmac.new(public, signing_input, hashlib.sha256).digest()
        return f"{signing_input.decode()}.{_b64(signature)}"

    return {
        "own key, provider's kid": (own_key(provider_jwk["kid"]), "signature"),
        "own key, own kid": (own_key("forged-" + secrets.token_hex(4)), "kid"),
        "HS256 keyed with the public key": (unsigned_or_hs256("HS256"), "algorithm"),
        "alg none": (unsigned_or_hs256("none"), "algorithm"),
    }


def _assert_oidc_error(response: httpx.Response) -> dict[str, Any]:
    """A Back-Channel Logout 1.0 section 2.8 error: 400, JSON ``error``
    ``invalid_request`` with an ``error_description``, not cached."""
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("cache-control") == "no-store"
    body = response.json()
    assert isinstance(body, dict)
    assert body["error"] == "invalid_request"
    assert isinstance(body.get("error_description"), str)
    assert body["error_description"]
    return body


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_logging_out_at_the_provider_ends_the_app_session_through_the_back_channel(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """The provider's own logout (no app involved) back-channels the app, which ends the
    session signed in with that provider session."""
    app = planned_app(framework)
    with _running([app], redis_url) as run:
        provider, browser = run.provider, run.browser
        session = _signed_in(browser, app, provider, redis_client)
        _assert_alive(redis_client, session)
        assert _events(redis_client) == []

        done = end_session_at_provider(browser, provider)
        assert done.status_code == 200
        assert str(done.url) == f"{provider.end_session_endpoint}/success"
        # The provider answered only once its delivery was over: it was accepted.
        assert provider.output().count("backchannel.success") == 1
        assert "backchannel.error" not in provider.output()

        _assert_ended_by_backchannel(redis_client, session, provider)
        # The browser's own request also gets the session taken out, and the cookie expired.
        page = browser.get(app.url + "/")
        assert page.text == NOT_LOGGED_IN
        assert browser.cookies.get(SESSION_COOKIE, domain=app.host) is None
        # Only back-channel entries were written.
        assert {entry["reason"] for entry in _events(redis_client)} == {"backchannel"}


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_rp_initiated_logout_ends_the_provider_session_too(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """``POST /logout`` with ``LOGOUT_OIDC_END_SESSION=true``: the local logout, then
    ``303`` to the provider's ``end_session_endpoint`` with the session's raw ID token as
    ``id_token_hint``; confirmed there, the provider session is over and the browser is
    back at the ``post_logout_redirect_uri`` with the ``state``."""
    app = planned_app(framework)
    with _running([app], redis_url, end_session=True) as run:
        provider, browser = run.provider, run.browser
        session = _signed_in(browser, app, provider, redis_client)

        logout = _log_out_at(app, browser)
        assert logout.headers.get("cache-control") == "no-store"
        assert_expires_cookie(logout)
        assert browser.cookies.get(SESSION_COOKIE, domain=app.host) is None
        location = urlsplit(logout.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == (
            provider.end_session_endpoint
        )
        query = parse_qs(location.query, keep_blank_values=True)
        assert set(query) == {"client_id", "id_token_hint", "post_logout_redirect_uri", "state"}
        assert all(len(values) == 1 for values in query.values()), query
        assert query["client_id"] == [app.client_id]
        assert query["id_token_hint"] == [session.id_token]
        assert query["post_logout_redirect_uri"] == [app.url + "/"]
        [state] = query["state"]
        assert len(state) >= 16

        # The local logout is complete before the browser reaches the provider.
        assert redis_client.exists(session.record_key) == 0
        assert redis_client.exists(session.tombstone_key) == 1
        [local] = _events(redis_client, "user_logout")
        assert local["type"] == "session_end"
        assert local["session_id_hash"] == session.hash
        assert local["subject"] == "alice"
        assert local["end_session"] == "redirected"

        page = browser.get(logout.headers["location"])
        assert page.status_code == 200
        back = confirm_logout(browser, page)
        assert back.status_code == 200
        assert str(back.url) == f"{app.url}/?state={state}"
        assert back.text == NOT_LOGGED_IN
        assert "backchannel.error" not in provider.output()

        # The provider session is over: signing in again asks for a login.
        again = browser.get(app.url + "/login", follow_redirects=True)
        assert again.status_code == 200
        assert urlsplit(str(again.url)).netloc == urlsplit(provider.issuer).netloc
        assert [form.fields.get("prompt") for form in read_forms(again.text)][:1] == ["login"]

        with httpx.Client(timeout=REQUEST_TIMEOUT) as fresh:
            assert fresh.get(app.url + "/", headers=session.cookie).text == NOT_LOGGED_IN
        assert redis_client.exists(session.record_key) == 0
        assert redis_client.exists(session.tombstone_key) == 1


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_rp_initiated_logout_names_a_safe_next_as_the_post_logout_redirect_uri(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """``post_logout_redirect_uri`` is the absolute URL of a safe ``next`` (the provider
    accepts it when registered, and sends the browser there), and the app's ``/`` when
    ``next`` names another site."""
    app = planned_app(framework, post_logout_paths=("/", "/bye"))
    with _running([app], redis_url, end_session=True) as run:
        provider, browser = run.provider, run.browser

        _signed_in(browser, app, provider, redis_client)
        unsafe = _log_out_at(app, browser, next="https://evil.example/")
        query = parse_qs(urlsplit(unsafe.headers["location"]).query)
        assert query["post_logout_redirect_uri"] == [app.url + "/"]
        assert "evil.example" not in unsafe.headers["location"]

        session = _signed_in(browser, app, provider, redis_client)
        logout = _log_out_at(app, browser, next="/bye")
        query = parse_qs(urlsplit(logout.headers["location"]).query)
        assert query["post_logout_redirect_uri"] == [app.url + "/bye"]
        assert query["id_token_hint"] == [session.id_token]
        back = confirm_logout(browser, browser.get(logout.headers["location"]))
        assert str(back.url) == f"{app.url}/bye?state={query['state'][0]}"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_rp_initiated_logout_ends_each_session_once_in_the_audit_trail(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """After an RP-initiated logout the provider back-channels the very app that sent
    the browser (as it does every client of the session). The session ended already: the
    stream must have one ``session_end`` for it (``user_logout``), not a second one with
    ``reason=backchannel``; the provider session's JWTs are still ended by the back
    channel (``api_session_end``)."""
    app = planned_app(framework)
    with _running([app], redis_url, end_session=True) as run:
        provider, browser = run.provider, run.browser
        session = _signed_in(browser, app, provider, redis_client)

        logout = _log_out_at(app, browser)
        back = confirm_logout(browser, browser.get(logout.headers["location"]))
        assert back.text == NOT_LOGGED_IN
        assert provider.output().count("backchannel.success") == 1

        ends = [
            (entry["reason"], entry["type"])
            for entry in _events(redis_client)
            if entry["session_id_hash"] == session.hash
        ]
        assert ends == [("user_logout", "session_end")]
        bearer = [
            entry
            for entry in _events(redis_client, "backchannel")
            if entry["type"] == "api_session_end"
        ]
        assert len(bearer) == 1
        assert bearer[0]["oidc_sid_hash"] == oidc_sid_hash(provider.issuer, session.oidc_sid)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_sign_in_after_an_abandoned_one_is_ended_through_the_back_channel(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """A user who clicked "Log in" before, and left the provider's page (or came back
    with the browser's back button), signs in with the session their first ``GET
    /login`` made: the second ``GET /login`` already carried that cookie, and the
    callback that logs them in is a ``GET`` too. The session must still be indexed under
    its provider ``sid``, so that the provider's logout ends it."""
    app = planned_app(framework)
    with _running([app], redis_url) as run:
        provider, browser = run.provider, run.browser
        abandoned = browser.get(app.url + "/login")  # to the provider, never followed
        assert abandoned.status_code in (302, 303, 307)
        first_id = browser.cookies.get(SESSION_COOKIE, domain=app.host)
        assert first_id

        session = _signed_in(browser, app, provider, redis_client, indexed=False)
        assert session.id == first_id  # Authlib and both session stores keep the id
        _wait_indexed(redis_client, session, provider)

        end_session_at_provider(browser, provider)
        assert provider.output().count("backchannel.success") == 1
        _assert_ended_by_backchannel(redis_client, session, provider)


@pytest.mark.parametrize(
    ("first", "second"),
    [("flask", "fastapi"), ("fastapi", "flask")],
    ids=["at-flask", "at-fastapi"],
)
def test_rp_initiated_logout_at_one_app_ends_the_other_through_the_back_channel(
    first: Framework, second: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """One browser, one provider session, two apps (on two loopback hosts, as cookies
    ignore ports): logging out at one, and confirming at the provider, ends the other's
    session through the provider's back channel."""
    hosts = {first: "127.0.0.1", second: "127.0.0.2"}
    here, there = planned_app(first, hosts[first]), planned_app(second, hosts[second])
    with _running([here, there], redis_url, end_session=True) as run:
        provider, browser = run.provider, run.browser
        mine = _signed_in(browser, here, provider, redis_client)
        other = _signed_in(browser, there, provider, redis_client)
        assert mine.oidc_sid != other.oidc_sid  # one sid per provider session and client
        _assert_alive(redis_client, other)

        logout = _log_out_at(here, browser)
        assert logout.headers["location"].startswith(provider.end_session_endpoint + "?")
        # Only this app's session ended so far.
        _assert_alive(redis_client, other)

        back = confirm_logout(browser, browser.get(logout.headers["location"]))
        assert back.status_code == 200
        assert urlsplit(str(back.url)).netloc == urlsplit(here.url).netloc
        assert back.text == NOT_LOGGED_IN
        assert provider.output().count("backchannel.success") == 2
        assert "backchannel.error" not in provider.output()

        _assert_ended_by_backchannel(redis_client, other, provider)
        assert browser.get(there.url + "/").text == NOT_LOGGED_IN


def test_every_uvicorn_worker_refuses_a_session_ended_through_the_back_channel(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """``uvicorn --workers 2`` behind one Redis: both workers serve the session, the
    provider's back-channel call reaches one of them, and afterwards requests on fresh
    connections, reaching both workers, all find the session ended."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("telling workers apart needs Linux's /proc")
    app = planned_app("fastapi")
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        env = oidc_app_env(provider, app, redis_url, _logout_settings(app, provider))
        master = stack.enter_context(_serve_fastapi_workers(app, env, workers=2)).process
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        session = _signed_in(browser, app, provider, redis_client)

        # Both workers serve the session (each learns it) before the logout.
        before: dict[int, int] = {}
        for _try in range(200):
            body, worker = _get_on_fresh_connection(app.url, session.cookie, master.pid)
            assert body == ALICE
            if worker is not None:
                before[worker] = before.get(worker, 0) + 1
            if len(before) == 2 and min(before.values()) >= 2:
                break
        assert len(before) == 2, f"fresh connections reached workers {before} only"

        end_session_at_provider(browser, provider)
        ended_at = time.monotonic()
        assert provider.output().count("backchannel.success") == 1

        after: dict[int, int] = {}
        stale: list[tuple[int | None, float]] = []
        for _try in range(400):
            body, worker = _get_on_fresh_connection(app.url, session.cookie, master.pid)
            if body != NOT_LOGGED_IN:
                stale.append((worker, time.monotonic() - ended_at))
            elif worker is not None:
                after[worker] = after.get(worker, 0) + 1
            if len(after) == 2 and min(after.values()) >= 5:
                break
        assert set(after) == set(before), f"after the logout: {after}; before: {before}"
        assert min(after.values()) >= 5, after
        # A worker's mirror learns the other's revocation from the stream within a moment.
        assert all(at < STALENESS_LIMIT for _worker, at in stale), stale

        assert redis_client.exists(session.record_key) == 0
        assert redis_client.exists(session.tombstone_key) == 1
        assert len(_backchannel_session_ends(redis_client, session)) == 1


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_receiver_refuses_a_replayed_logout_token(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """A real logout token, captured by a recorder registered as the client's
    ``backchannel_logout_uri``, ends the session when posted to the app's receiver; the
    same token again is ``400 invalid_request`` naming the ``jti``, and changes
    nothing."""
    with contextlib.ExitStack() as stack:
        recorder = stack.enter_context(recording_server())
        app = planned_app(framework, backchannel_logout_uri=f"{recorder.url}/capture")
        run = stack.enter_context(_running([app], redis_url))
        provider, browser = run.provider, run.browser
        session = _signed_in(browser, app, provider, redis_client)

        end_session_at_provider(browser, provider)
        [delivery] = recorder.wait_for(1, timeout=DELIVERY_TIMEOUT)
        [token] = delivery.form()["logout_token"]
        assert jwt.decode(token, options={"verify_signature": False})["sid"] == session.oidc_sid
        # The provider told the recorder, not the app: the session is still there.
        _assert_alive(redis_client, session)

        provider_post = run.client()
        first = provider_post.post(app.receiver, data={"logout_token": token})
        assert first.status_code == 200, first.text
        assert first.headers.get("cache-control") == "no-store"
        assert first.content == b""
        _assert_ended_by_backchannel(redis_client, session, provider)
        entries = len(_events(redis_client))

        replay = provider_post.post(app.receiver, data={"logout_token": token})
        body = _assert_oidc_error(replay)
        assert "jti" in body["error_description"]
        assert len(_events(redis_client)) == entries


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_the_receiver_refuses_bad_requests_and_forged_tokens(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """``GET`` is ``405`` (``Allow: POST``); a ``POST`` that is not a form with one
    ``logout_token``, or whose token the provider did not sign, is ``400`` JSON; none of
    them ends the session signed in with the provider session the forged tokens name."""
    app = planned_app(framework)
    with _running([app], redis_url) as run:
        provider, browser = run.provider, run.browser
        session = _signed_in(browser, app, provider, redis_client)
        client = run.client()

        got = client.get(app.receiver)
        assert got.status_code == 405, got.text
        assert got.headers["allow"] == "POST"

        _assert_oidc_error(client.post(app.receiver))
        _assert_oidc_error(
            client.post(
                app.receiver,
                content=b"",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        )
        _assert_oidc_error(client.post(app.receiver, json={"logout_token": session.id_token}))
        _assert_oidc_error(client.post(app.receiver, data={"logout_token": ""}))
        # An ID token of the provider is signed by it, but is no logout token.
        described = _assert_oidc_error(
            client.post(app.receiver, data={"logout_token": session.id_token})
        )
        assert "events" in described["error_description"]

        for name, (forged, why) in _forged_tokens(provider, session).items():
            response = client.post(app.receiver, data={"logout_token": forged})
            assert response.status_code == 400, (name, response.text)
            assert why in _assert_oidc_error(response)["error_description"], name

        _assert_alive(redis_client, session)
        assert browser.get(app.url + "/").text == ALICE
        assert _events(redis_client) == []
