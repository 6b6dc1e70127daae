"""The OpenID Connect test harness works: a real provider (node-oidc-provider 9, from
npm), real servers (waitress for Flask, uvicorn for FastAPI), a real Redis.

* A sign-in through the provider on tests/adoption_apps/oidc_flask.py and oidc_fastapi.py
  (Authlib, each wrapped by the middleware) ends with ``Logged in as alice``, and the
  session record in Redis holds the ID token's claims (``sub``, the provider's ``sid``)
  and the raw ID token, signed by the provider.
* Ending the session at the provider makes it POST a logout token to every client's
  ``backchannel_logout_uri`` (here a recording server of the test's own on loopback): a
  form with ``logout_token`` only, an RS256 JWT of ``typ`` ``logout+jwt`` with exactly
  ``iss``, ``aud``, ``sub``, ``sid``, ``events``, ``jti``, ``iat``, ``exp``, whose
  ``sid`` is the one in the app's session.
* An RP-initiated logout (``id_token_hint``, ``post_logout_redirect_uri``) confirmed on
  the provider's page comes back to the app with the ``state``.
* The provider process is stopped even when the test body raises.

Skipped, with the reason, when node or npm is not on PATH.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import msgspec
import pytest
import redis

from tests.oidc_provider import (
    Framework,
    Provider,
    app_base_url,
    client_metadata,
    confirm_logout,
    end_session_at_provider,
    ensure_node_modules,
    node_missing_reason,
    oidc_app_env,
    oidc_provider,
    serve_oidc_app,
    sign_in,
)

#: Where each app keeps a session in Redis, ``{sid}`` standing for the cookie's value.
SESSION_KEYS: dict[Framework, str] = {"flask": "session:{sid}", "fastapi": "starsessions.{sid}"}
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LOGOUT_TOKEN_CLAIMS = {"iss", "aud", "sub", "sid", "events", "jti", "iat", "exp"}
#: Timeout of each HTTP request, seconds.
REQUEST_TIMEOUT = 10.0
#: Longest a back-channel delivery may take to arrive once logout is confirmed, seconds.
DELIVERY_TIMEOUT = 5.0


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/oidc/node_modules, installed by ``npm ci`` when missing or stale; skips
    the test when node or npm is absent."""
    found = ensure_node_modules()
    if found is None:
        pytest.skip(node_missing_reason() or "node_modules unavailable")
    return found


# -- the apps --------------------------------------------------------------------------


@dataclass(frozen=True)
class RunningApp:
    """One OIDC app, served, and its client at the provider."""

    framework: Framework
    url: str
    client: dict[str, Any]

    @property
    def client_id(self) -> str:
        return str(self.client["client_id"])


def _logout_env(framework: Framework, redis_url: str) -> dict[str, str]:
    """The middleware's settings: Redis, and where the app keeps its sessions."""
    return {"LOGOUT_REDIS_URL": redis_url, "LOGOUT_SESSION_KEYS": SESSION_KEYS[framework]}


def _planned(
    framework: Framework, host: str = "127.0.0.1", backchannel_logout_uri: str | None = None
) -> RunningApp:
    """An app's URL and client metadata, chosen before the provider starts."""
    url = app_base_url(host)
    client = client_metadata(f"{framework}-app", url, backchannel_logout_uri=backchannel_logout_uri)
    return RunningApp(framework, url, client)


def _serve(stack: ExitStack, app: RunningApp, provider: Provider, redis_url: str) -> None:
    env = oidc_app_env(
        provider, app.client, app.url, redis_url, _logout_env(app.framework, redis_url)
    )
    assert stack.enter_context(serve_oidc_app(app.framework, app.url, env)) == app.url


def _session_id(browser: httpx.Client, app: RunningApp) -> str:
    """The value of the browser's ``session`` cookie for the app's host."""
    sid = browser.cookies.get("session", domain=urlsplit(app.url).hostname or "")
    assert sid, "no session cookie"
    return sid


def _session_record(
    redis_client: redis.Redis, app: RunningApp, browser: httpx.Client
) -> dict[str, Any]:
    """The browser's session record at the app, decoded (Flask-Session: msgpack;
    starsessions: JSON)."""
    framework = app.framework
    raw = redis_client.get(SESSION_KEYS[framework].format(sid=_session_id(browser, app)))
    assert isinstance(raw, bytes), "no session record in Redis"
    decoded = msgspec.msgpack.decode(raw) if framework == "flask" else json.loads(raw)
    assert isinstance(decoded, dict)
    return decoded


def _verified(
    token: str, provider: Provider, audience: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT signed by the provider (its JWKS) for ``audience``."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKClient(provider.jwks_uri, cache_keys=False, timeout=10).get_signing_key(
        str(header["kid"])
    )
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=provider.issuer,
        options={"require": ["iat", "exp"]},
    )
    return header, claims


def _signed_in(
    browser: httpx.Client,
    app: RunningApp,
    provider: Provider,
    redis_client: redis.Redis,
    login: str = "alice",
) -> dict[str, Any]:
    """Sign ``login`` in to ``app`` through the provider; check the page, the session
    record and its ID token; return the record."""
    page = sign_in(browser, app.url, login)
    assert page.text == f"Logged in as {login}.\n"
    assert urlsplit(str(page.url)).path == "/"
    assert browser.get(app.url + "/").text == f"Logged in as {login}.\n"

    record = _session_record(redis_client, app, browser)
    user = record["user"]
    assert user["sub"] == login
    assert isinstance(user.get("sid"), str)
    assert user["sid"]
    assert user["aud"] == app.client_id
    assert user["iss"] == provider.issuer

    id_token = record["id_token"]
    assert isinstance(id_token, str)
    assert id_token.count(".") == 2
    header, claims = _verified(id_token, provider, app.client_id)
    assert header["alg"] == "RS256"
    assert claims["sub"] == login
    assert claims["sid"] == user["sid"]
    assert claims["nonce"] == user["nonce"]
    return record


# -- a recording back-channel receiver ------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One request the recorder received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, count: int, timeout: float) -> list[Delivery]:
        """The deliveries once there are ``count`` of them (or all there are after
        ``timeout`` seconds)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout)
            return list(self.deliveries)


class _RecordingHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        server = cast(_RecordingServer, self.server)
        with server.changed:
            server.deliveries.append(
                Delivery("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            server.changed.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def recording_server() -> Iterator[_RecordingServer]:
    """An HTTP server on a free loopback port that records every POST and answers 200."""
    server = _RecordingServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("framework", ["flask", "fastapi"])
@pytest.mark.usefixtures("node_modules")
def test_sign_in_through_the_provider(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    app = _planned(framework)
    with ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        stranger = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))

        assert browser.get(app.url + "/").text == "Not logged in.\n"
        _signed_in(browser, app, provider, redis_client)
        # Another browser has no session with the app, nor with the provider.
        assert stranger.get(app.url + "/").text == "Not logged in.\n"


@pytest.mark.usefixtures("node_modules")
def test_ending_the_provider_session_back_channels_every_client(
    redis_url: str, redis_client: redis.Redis
) -> None:
    with ExitStack() as stack:
        recorder = stack.enter_context(recording_server())
        # Two loopback hosts: cookies ignore ports, and both apps' cookies are "session".
        apps = [
            _planned("flask", "127.0.0.1", f"{recorder.url}/flask"),
            _planned("fastapi", "127.0.0.2", f"{recorder.url}/fastapi"),
        ]
        provider = stack.enter_context(oidc_provider([app.client for app in apps]))
        for app in apps:
            _serve(stack, app, provider, redis_url)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))

        # One browser, one provider session, two apps (the second sign-in needs no login).
        sids = {
            app.client_id: _signed_in(browser, app, provider, redis_client)["user"]["sid"]
            for app in apps
        }
        # One sid per provider session and client; each app has a session of its own.
        assert len(set(sids.values())) == 2
        assert len({_session_id(browser, app) for app in apps}) == 2
        assert recorder.wait_for(1, timeout=0) == []

        started = time.monotonic()
        done = end_session_at_provider(browser, provider)
        assert done.status_code == 200
        assert str(done.url) == f"{provider.end_session_endpoint}/success"
        deliveries = recorder.wait_for(2, timeout=DELIVERY_TIMEOUT)
        assert time.monotonic() - started < DELIVERY_TIMEOUT

        assert sorted(delivery.path for delivery in deliveries) == ["/fastapi", "/flask"]
        for delivery in deliveries:
            client_id = f"{delivery.path.strip('/')}-app"
            assert delivery.method == "POST"
            assert delivery.headers["content-type"].startswith("application/x-www-form-urlencoded")
            form = parse_qs(delivery.body.decode("ascii"), keep_blank_values=True)
            assert list(form) == ["logout_token"]
            assert len(form["logout_token"]) == 1

            header, claims = _verified(form["logout_token"][0], provider, client_id)
            assert header["alg"] == "RS256"
            assert header["typ"] == "logout+jwt"
            assert header.get("kid")
            assert set(claims) == LOGOUT_TOKEN_CLAIMS
            assert claims["iss"] == provider.issuer
            assert claims["aud"] == client_id
            assert claims["sub"] == "alice"
            assert claims["sid"] == sids[client_id]
            assert claims["events"] == {BACKCHANNEL_EVENT: {}}
            assert claims["jti"]
            assert claims["exp"] > claims["iat"]
        assert provider.output().count("backchannel.success") == 2


@pytest.mark.usefixtures("node_modules")
def test_rp_initiated_logout_comes_back_to_the_app(
    redis_url: str, redis_client: redis.Redis
) -> None:
    with ExitStack() as stack:
        recorder = stack.enter_context(recording_server())
        app = _planned("fastapi", backchannel_logout_uri=f"{recorder.url}/fastapi")
        provider = stack.enter_context(oidc_provider([app.client]))
        _serve(stack, app, provider, redis_url)
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        record = _signed_in(browser, app, provider, redis_client)

        query = urlencode(
            {
                "id_token_hint": record["id_token"],
                "post_logout_redirect_uri": app.url + "/",
                "state": "s-123",
            }
        )
        page = browser.get(f"{provider.end_session_endpoint}?{query}")
        assert page.status_code == 200
        back = confirm_logout(browser, page)
        assert back.status_code == 200
        assert str(back.url) == f"{app.url}/?state=s-123"
        assert len(recorder.wait_for(1, timeout=DELIVERY_TIMEOUT)) == 1


def _raise_inside_provider(started: list[Provider]) -> None:
    """Start a provider, check it answers, and raise from the body of its context."""
    with oidc_provider([]) as provider:
        started.append(provider)
        metadata = httpx.get(provider.discovery_url, timeout=REQUEST_TIMEOUT).json()
        assert metadata["issuer"] == provider.issuer
        assert metadata["end_session_endpoint"] == provider.end_session_endpoint
        raise RuntimeError("boom")


@pytest.mark.usefixtures("node_modules")
def test_the_provider_is_stopped_when_the_body_raises() -> None:
    started: list[Provider] = []
    with pytest.raises(RuntimeError, match="boom"):
        _raise_inside_provider(started)
    [provider] = started
    assert provider.process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(provider.discovery_url, timeout=REQUEST_TIMEOUT)
