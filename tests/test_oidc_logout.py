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
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import msgspec
import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from logout_middleware.config import LogoutConfig
from logout_middleware.core.revocation import RevocationKeys, oidc_sid_hash, sha256_hex
from logout_middleware.testing import stop_process
from tests.oidc_provider import (
    DEFAULT_BACKCHANNEL_PATH,
    Framework,
    Provider,
    ProviderError,
    app_base_url,
    client_metadata,
    confirm_logout,
    end_session_at_provider,
    ensure_node_modules,
    node_missing_reason,
    oidc_app_env,
    oidc_provider,
    read_forms,
    serve_oidc_app,
    sign_in,
)

ROOT = Path(__file__).resolve().parent.parent
#: Where each app keeps a session in Redis, ``{sid}`` standing for the cookie's value.
SESSION_KEYS: dict[Framework, str] = {"flask": "session:{sid}", "fastapi": "starsessions.{sid}"}
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
EVENTS_STREAM = "logout:events"
#: The middleware's Redis keys under its default ``LOGOUT_KEY_PREFIX``.
KEYS = RevocationKeys(LogoutConfig())
#: Timeout of each HTTP request, seconds.
REQUEST_TIMEOUT = 10.0
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

pytestmark = pytest.mark.timeout(TEST_TIMEOUT)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    """tests/oidc/node_modules, installed by ``npm ci`` when missing or stale; skips
    the test when node or npm is absent."""
    found = ensure_node_modules()
    if found is None:
        pytest.skip(node_missing_reason() or "node_modules unavailable")
    return found


# -- the apps --------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    """One OIDC app: where it is served, and its client at the provider."""

    framework: Framework
    url: str
    client: dict[str, Any]

    @property
    def client_id(self) -> str:
        """The app's client id at the provider."""
        return str(self.client["client_id"])

    @property
    def host(self) -> str:
        """The loopback host it is served on (the cookie jar's domain for it)."""
        return urlsplit(self.url).hostname or ""

    @property
    def receiver(self) -> str:
        """The URL of its back-channel logout receiver."""
        return self.url + DEFAULT_BACKCHANNEL_PATH


def _planned(
    framework: Framework, host: str = "127.0.0.1", backchannel_logout_uri: str | None = None
) -> App:
    """An app's URL and client metadata, chosen before the provider starts."""
    url = app_base_url(host)
    client = client_metadata(f"{framework}-app", url, backchannel_logout_uri=backchannel_logout_uri)
    return App(framework, url, client)


def _env(
    app: App, provider: Provider, redis_url: str, *, end_session: bool = False
) -> dict[str, str]:
    """The app's environment: the middleware configured for single logout (by
    environment only)."""
    logout = {
        "LOGOUT_REDIS_URL": redis_url,
        "LOGOUT_SESSION_KEYS": SESSION_KEYS[app.framework],
        "LOGOUT_OIDC_ISSUER": provider.issuer,
        "LOGOUT_OIDC_CLIENT_ID": app.client_id,
        "LOGOUT_SESSION_OIDC_SID": "user.sid",
        "LOGOUT_SESSION_ID_TOKEN": "id_token",
        "LOGOUT_SESSION_SUBJECT": "user.sub",
        "LOGOUT_BACKCHANNEL_PATH": DEFAULT_BACKCHANNEL_PATH,
        "LOGOUT_OIDC_END_SESSION": "true" if end_session else "false",
    }
    return oidc_app_env(provider, app.client, app.url, redis_url, logout)


def _serve(
    stack: contextlib.ExitStack,
    app: App,
    provider: Provider,
    redis_url: str,
    *,
    end_session: bool = False,
) -> None:
    """Serve ``app`` (waitress or uvicorn) until the stack closes."""
    env = _env(app, provider, redis_url, end_session=end_session)
    assert stack.enter_context(serve_oidc_app(app.framework, app.url, env)) == app.url


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
        return sha256_hex(self.id.encode())

    @property
    def record_key(self) -> str:
        """The app's session record in Redis."""
        return SESSION_KEYS[self.app.framework].format(sid=self.id)

    @property
    def tombstone_key(self) -> str:
        """The middleware's tombstone of the session."""
        return KEYS.session(self.hash)

    def index_key(self, provider: Provider) -> str:
        """The middleware's index of the sessions signed in with this provider session."""
        return KEYS.oidc_index(oidc_sid_hash(provider.issuer, self.oidc_sid))

    @property
    def cookie(self) -> dict[str, str]:
        """A ``Cookie`` header with the session cookie, for a client without a jar."""
        return {"Cookie": f"session={self.id}"}


def _record(redis_client: redis.Redis, app: App, session_id: str) -> dict[str, Any] | None:
    """The session record at the app, decoded (Flask-Session: msgpack; starsessions:
    JSON), or None when there is none."""
    raw = redis_client.get(SESSION_KEYS[app.framework].format(sid=session_id))
    if raw is None:
        return None
    assert isinstance(raw, bytes)
    decoded = msgspec.msgpack.decode(raw) if app.framework == "flask" else json.loads(raw)
    assert isinstance(decoded, dict)
    return decoded


def _wait_indexed(redis_client: redis.Redis, session: Session, provider: Provider) -> float:
    """Poll until the middleware indexed ``session`` under its provider ``sid`` (the
    write follows the response under uvicorn); how long that took, seconds."""
    key = session.index_key(provider)
    started = time.monotonic()
    while redis_client.zscore(key, session.hash) is None:
        waited = time.monotonic() - started
        assert waited < INDEX_TIMEOUT, f"session not indexed under its sid after {waited:.1f} s"
        time.sleep(0.005)
    return time.monotonic() - started


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
    page = sign_in(browser, app.url, "alice")
    assert page.text == ALICE
    session_id = browser.cookies.get("session", domain=app.host)
    assert session_id, "no session cookie"
    record = _record(redis_client, app, session_id)
    assert record is not None, "no session record in Redis"
    user = record["user"]
    assert user["sub"] == "alice"
    assert user["aud"] == app.client_id
    assert isinstance(user.get("sid"), str)
    assert isinstance(record.get("id_token"), str)
    session = Session(app, session_id, user["sid"], record["id_token"])
    if indexed:
        _wait_indexed(redis_client, session, provider)
    return session


def _events(redis_client: redis.Redis, reason: str | None = None) -> list[dict[str, str]]:
    """The audit stream's entries, decoded, oldest first; only ``reason``'s when given."""
    entries = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]", redis_client.xrange(EVENTS_STREAM, "-", "+")
    )
    decoded = [
        {key.decode(): value.decode() for key, value in fields.items()} for _id, fields in entries
    ]
    return [entry for entry in decoded if reason is None or entry["reason"] == reason]


def _backchannel_session_ends(redis_client: redis.Redis, session: Session) -> list[dict[str, str]]:
    """The stream's back-channel ``session_end`` entries for ``session``."""
    return [
        entry
        for entry in _events(redis_client, "backchannel")
        if entry["type"] == "session_end" and entry["session_id_hash"] == session.hash
    ]


def _assert_expires_session_cookie(response: httpx.Response) -> None:
    """``response`` deletes the ``session`` cookie (and sets it to nothing else)."""
    found = [
        value
        for value in response.headers.get_list("set-cookie")
        if value.split(";", 1)[0].split("=", 1)[0].strip() == "session"
    ]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    assert found[0].split(";", 1)[0].strip() == "session=", found[0]
    assert "max-age=0" in found[0].lower() or "1970" in found[0], found[0]


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
        _assert_expires_session_cookie(page)
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


# -- a recording back-channel receiver ------------------------------------------------


class _Recorder(ThreadingHTTPServer):
    """Records the ``logout_token`` of every form POST it receives and answers 200."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecorderHandler)
        self.tokens: list[str] = []
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, count: int, timeout: float) -> list[str]:
        """The tokens once there are ``count`` of them (or all there are after
        ``timeout`` seconds)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.tokens) >= count, timeout=timeout)
            return list(self.tokens)


class _RecorderHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server = cast("_Recorder", self.server)
        with server.changed:
            server.tokens += parse_qs(body.decode("ascii")).get("logout_token", [])
            server.changed.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextlib.contextmanager
def _recorder() -> Iterator[_Recorder]:
    """A recording back-channel receiver on a free loopback port."""
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- several workers -------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid``."""
    found: set[int] = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:
            found.add(int(stat.parent.name))
    return found


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
        worker = _socket_owner(parts.port, client_port, _children(master))
    finally:
        connection.close()
    return body, worker


def _ours(pid: int, url: str) -> bool:
    """Whether ``pid`` still runs with our app's environment (never a recycled pid)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"APP_BASE_URL={url}".encode() in environ.split(b"\0")


@contextlib.contextmanager
def _serve_fastapi_workers(
    url: str, env: Mapping[str, str], workers: int, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Serve tests/adoption_apps/oidc_fastapi.py under ``uvicorn --workers`` at ``url``;
    yield the master process once ``GET /`` answers and ``workers`` children run. The
    server is always stopped on exit, and its workers must be gone then."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    command = [
        *(sys.executable, "-m", "uvicorn", "tests.adoption_apps.oidc_fastapi:app"),
        *("--host", parts.hostname, "--port", str(parts.port)),
        *("--workers", str(workers), "--log-level", "warning"),
    ]
    seen: set[int] = set()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + timeout
            up = False
            while not up and time.monotonic() < deadline and process.poll() is None:
                try:
                    httpx.get(url + "/", timeout=2.0)
                    seen = {pid for pid in _children(process.pid) if _ours(pid, url)}
                    up = len(seen) >= workers
                except httpx.TransportError:
                    pass
                if not up:
                    time.sleep(0.1)
            if up:
                yield process
                return
        finally:
            seen |= {pid for pid in _children(process.pid) if _ours(pid, url)}
            stop_process(process)
            left = _left_running(seen, url)
            if left:
                pytest.fail(f"uvicorn workers {sorted(left)} still ran after the server stopped")
        log.seek(0)
        output = log.read().decode("utf-8", "replace")[-3000:]
    raise ProviderError(f"uvicorn --workers {workers} did not answer at {url}:\n{output}")


def _left_running(pids: set[int], url: str, timeout: float = 10.0) -> set[int]:
    """Which of ``pids`` (our workers) still run ``timeout`` seconds after their server
    stopped; those are killed."""
    deadline = time.monotonic() + timeout
    alive = {pid for pid in pids if _ours(pid, url)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {pid for pid in alive if _ours(pid, url)}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    return alive


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


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_logging_out_at_the_provider_ends_the_app_session_through_the_back_channel(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """The provider's own logout (no app involved) back-channels the app, which ends the
    session signed in with that provider session."""
    app = _planned(framework)
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
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
        assert browser.cookies.get("session", domain=app.host) is None
        # Only back-channel entries were written.
        assert {entry["reason"] for entry in _events(redis_client)} == {"backchannel"}


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_rp_initiated_logout_ends_the_provider_session_too(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """``POST /logout`` with ``LOGOUT_OIDC_END_SESSION=true``: the local logout, then
    ``303`` to the provider's ``end_session_endpoint`` with the session's raw ID token as
    ``id_token_hint``; confirmed there, the provider session is over and the browser is
    back at the ``post_logout_redirect_uri`` with the ``state``."""
    app = _planned(framework)
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url, end_session=True)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        session = _signed_in(browser, app, provider, redis_client)

        logout = browser.post(app.url + "/logout", headers={"Origin": app.url})
        assert logout.status_code == 303, logout.text
        assert logout.headers.get("cache-control") == "no-store"
        _assert_expires_session_cookie(logout)
        assert browser.cookies.get("session", domain=app.host) is None
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


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_rp_initiated_logout_names_a_safe_next_as_the_post_logout_redirect_uri(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """``post_logout_redirect_uri`` is the absolute URL of a safe ``next`` (the provider
    accepts it when registered, and sends the browser there), and the app's ``/`` when
    ``next`` names another site."""
    planned = _planned(framework)
    url = planned.url
    client = client_metadata(
        planned.client_id, url, post_logout_redirect_uris=[url + "/", url + "/bye"]
    )
    app = App(framework, url, client)
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url, end_session=True)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))

        _signed_in(browser, app, provider, redis_client)
        unsafe = browser.post(
            app.url + "/logout",
            data={"next": "https://evil.example/"},
            headers={"Origin": app.url},
        )
        assert unsafe.status_code == 303, unsafe.text
        query = parse_qs(urlsplit(unsafe.headers["location"]).query)
        assert query["post_logout_redirect_uri"] == [app.url + "/"]
        assert "evil.example" not in unsafe.headers["location"]

        session = _signed_in(browser, app, provider, redis_client)
        logout = browser.post(
            app.url + "/logout", data={"next": "/bye"}, headers={"Origin": app.url}
        )
        assert logout.status_code == 303, logout.text
        query = parse_qs(urlsplit(logout.headers["location"]).query)
        assert query["post_logout_redirect_uri"] == [app.url + "/bye"]
        assert query["id_token_hint"] == [session.id_token]
        back = confirm_logout(browser, browser.get(logout.headers["location"]))
        assert str(back.url) == f"{app.url}/bye?state={query['state'][0]}"


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_an_rp_initiated_logout_ends_each_session_once_in_the_audit_trail(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """After an RP-initiated logout the provider back-channels the very app that sent
    the browser (as it does every client of the session). The session ended already: the
    stream must have one ``session_end`` for it (``user_logout``), not a second one with
    ``reason=backchannel``; the provider session's JWTs are still ended by the back
    channel (``api_session_end``)."""
    app = _planned(framework)
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url, end_session=True)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        session = _signed_in(browser, app, provider, redis_client)

        logout = browser.post(app.url + "/logout", headers={"Origin": app.url})
        assert logout.status_code == 303, logout.text
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


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_a_sign_in_after_an_abandoned_one_is_ended_through_the_back_channel(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """A user who clicked "Log in" before, and left the provider's page (or came back
    with the browser's back button), signs in with the session their first ``GET
    /login`` made: the second ``GET /login`` already carried that cookie, and the
    callback that logs them in is a ``GET`` too. The session must still be indexed under
    its provider ``sid``, so that the provider's logout ends it."""
    app = _planned(framework)
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        abandoned = browser.get(app.url + "/login")  # to the provider, never followed
        assert abandoned.status_code in (302, 303, 307)
        first_id = browser.cookies.get("session", domain=app.host)
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
@pytest.mark.usefixtures("node_modules")
def test_rp_initiated_logout_at_one_app_ends_the_other_through_the_back_channel(
    first: Framework, second: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """One browser, one provider session, two apps (on two loopback hosts, as cookies
    ignore ports): logging out at one, and confirming at the provider, ends the other's
    session through the provider's back channel."""
    hosts = {first: "127.0.0.1", second: "127.0.0.2"}
    here, there = _planned(first, hosts[first]), _planned(second, hosts[second])
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([here.client, there.client]))
        for app in (here, there):
            _serve(stack, app, provider, redis_url, end_session=True)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        mine = _signed_in(browser, here, provider, redis_client)
        other = _signed_in(browser, there, provider, redis_client)
        assert mine.oidc_sid != other.oidc_sid  # one sid per provider session and client
        _assert_alive(redis_client, other)

        logout = browser.post(here.url + "/logout", headers={"Origin": here.url})
        assert logout.status_code == 303, logout.text
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


@pytest.mark.usefixtures("node_modules")
def test_every_uvicorn_worker_refuses_a_session_ended_through_the_back_channel(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """``uvicorn --workers 2`` behind one Redis: both workers serve the session, the
    provider's back-channel call reaches one of them, and afterwards requests on fresh
    connections, reaching both workers, all find the session ended."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("telling workers apart needs Linux's /proc")
    app = _planned("fastapi")
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        master = stack.enter_context(
            _serve_fastapi_workers(app.url, _env(app, provider, redis_url), workers=2)
        )
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


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_the_receiver_refuses_a_replayed_logout_token(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """A real logout token, captured by a recorder registered as the client's
    ``backchannel_logout_uri``, ends the session when posted to the app's receiver; the
    same token again is ``400 invalid_request`` naming the ``jti``, and changes
    nothing."""
    with contextlib.ExitStack() as stack:
        recorder = stack.enter_context(_recorder())
        app = _planned(framework, backchannel_logout_uri=f"{recorder.url}/capture")
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        session = _signed_in(browser, app, provider, redis_client)

        end_session_at_provider(browser, provider)
        [token] = recorder.wait_for(1, timeout=DELIVERY_TIMEOUT)
        assert jwt.decode(token, options={"verify_signature": False})["sid"] == session.oidc_sid
        # The provider told the recorder, not the app: the session is still there.
        _assert_alive(redis_client, session)

        provider_post = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
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


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_the_receiver_refuses_bad_requests_and_forged_tokens(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    """``GET`` is ``405`` (``Allow: POST``); a ``POST`` that is not a form with one
    ``logout_token``, or whose token the provider did not sign, is ``400`` JSON; none of
    them ends the session signed in with the provider session the forged tokens name."""
    app = _planned(framework)
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        session = _signed_in(browser, app, provider, redis_client)
        client = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))

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
