"""A real OpenID Provider for tests: node-oidc-provider 9 (tests/oidc/provider.mjs), the
apps of tests/adoption_apps/oidc_*.py as its clients, and helpers that drive them with
httpx the way a browser would.

Set-up and life cycle::

    from tests.oidc_provider import node_modules  # the fixture: npm ci in tests/oidc, once

    @pytest.mark.usefixtures("node_modules")  # skipped when node or npm is absent
    def test_...(redis_url, redis_client):
        app = planned_app("flask")  # http://127.0.0.1:<free port>, and client metadata
        with running([app], redis_url) as run:  # the provider, the app and a browser
            record = signed_in_record(run.browser, app, run.provider, redis_client)
            end_session_at_provider(run.browser, run.provider)  # back-channels every client

Lower down: ``oidc_provider([client])`` (issuer ``http://127.0.0.1:<free port>``),
``oidc_app_env`` and ``serve_oidc_app("flask", url, env)``, ``sign_in(browser, url)``.

The provider has devInteractions (any login name, any password; the name becomes
``sub``), back-channel logout and RP-initiated logout (``/session/end``), a fresh RS256
key and in-memory state per start. It sends back-channel requests to loopback targets
only. Browser and provider share one httpx cookie jar, and cookies ignore ports: the
provider's (``_interaction``, ``_session``, ...) never clash with an app's ``session``,
but two apps on one host would share their ``session`` cookie, so serve apps that one
browser visits on different loopback hosts (``planned_app("flask", "127.0.0.2")``).
"""

from __future__ import annotations

import contextlib
import hashlib
import html.parser
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx
import msgspec
import pytest
import redis

from logout_middleware.testing import free_port
from tests.servers import (
    REQUEST_TIMEOUT,
    SESSION_COOKIE,
    START_TIMEOUT,
    Server,
    answers,
    app_env,
    serve,
    uvicorn,
    waitress,
)

#: The npm package holding the provider (package.json, package-lock.json, provider.mjs).
OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
#: Written into node_modules after a successful ``npm ci``: the hash of the lock file.
STAMP_NAME = ".logout-middleware-lock.sha256"
#: Longest ``npm ci`` may take, seconds.
NPM_CI_TIMEOUT = 300.0
#: The back-channel receiver's path used by :func:`client_metadata` unless told.
DEFAULT_BACKCHANNEL_PATH = "/oidc/backchannel-logout"
#: The callback path of tests/adoption_apps/oidc_*.py.
CALLBACK_PATH = "/auth/callback"
#: Most forms :func:`sign_in` fills in (login and consent, with room to spare).
MAX_FORMS = 5
#: The ``events`` claim of a logout token names this event.
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"

Framework = Literal["flask", "fastapi"]
FRAMEWORKS: tuple[Framework, ...] = ("flask", "fastapi")
#: Where each app keeps a session in Redis, ``{sid}`` standing for the cookie's value.
SESSION_KEYS: dict[Framework, str] = {"flask": "session:{sid}", "fastapi": "starsessions.{sid}"}

__all__ = [
    "BACKCHANNEL_EVENT",
    "CALLBACK_PATH",
    "DEFAULT_BACKCHANNEL_PATH",
    "FRAMEWORKS",
    "SESSION_KEYS",
    "App",
    "Form",
    "Framework",
    "Provider",
    "ProviderError",
    "Running",
    "SignInError",
    "app_base_url",
    "client_metadata",
    "confirm_logout",
    "end_session_at_provider",
    "ensure_node_modules",
    "node_missing_reason",
    "node_modules",
    "oidc_app_env",
    "oidc_provider",
    "planned_app",
    "read_forms",
    "running",
    "serve_oidc_app",
    "session_record",
    "sign_in",
    "signed_in_record",
]


class ProviderError(RuntimeError):
    """The provider could not be installed or started (the message has its output)."""


class SignInError(RuntimeError):
    """A scripted browser step did not go as a browser's would (the message says where)."""


# -- installing ------------------------------------------------------------------------


def node_missing_reason() -> str | None:
    """Why the provider cannot run here (``node`` or ``npm`` not on PATH), or None."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not on PATH: the OpenID provider tests need Node.js"
    return None


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((OIDC_DIR / name).read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """One ``npm ci`` at a time on this machine (two pytest runs may start together)."""
    key = hashlib.sha256(str(OIDC_DIR).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"logout-middleware-npm-ci-{key}.lock"
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_node_modules(*, timeout: float = NPM_CI_TIMEOUT) -> Path | None:
    """Install the provider's npm packages in tests/oidc/node_modules when they are
    missing or older than package-lock.json (``npm ci --no-audit --no-fund``); return
    that folder.

    :returns: None when ``node`` or ``npm`` is absent; :func:`node_missing_reason` says
        which.
    :raises ProviderError: when ``npm ci`` fails or takes longer than ``timeout``.
    """
    if node_missing_reason() is not None:
        return None
    modules = OIDC_DIR / "node_modules"
    stamp = modules / STAMP_NAME
    with _install_lock():
        wanted = _lock_digest()
        if stamp.is_file() and stamp.read_text().strip() == wanted:
            return modules
        npm = shutil.which("npm") or "npm"
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"],
                cwd=OIDC_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ProviderError(f"npm ci in {OIDC_DIR} took over {timeout:g} s") from exc
        if done.returncode != 0:
            raise ProviderError(
                f"npm ci in {OIDC_DIR} failed ({done.returncode}):\n"
                f"{(done.stdout + done.stderr)[-3000:]}"
            )
        stamp.write_text(wanted + "\n")
    return modules


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/oidc/node_modules, installed by ``npm ci`` when missing or stale; skips
    the test when node or npm is absent. A test module uses it by importing it."""
    found = ensure_node_modules()
    if found is None:
        pytest.skip(node_missing_reason() or "node_modules unavailable")
    return found


# -- running ---------------------------------------------------------------------------


@dataclass
class Provider:
    """A running provider (see :func:`oidc_provider`) and its URLs."""

    #: The client metadata it was started with.
    clients: list[dict[str, Any]]
    server: Server = field(repr=False)
    #: ``http://127.0.0.1:<port>``, no trailing slash.
    issuer: str = field(init=False)
    #: ``<issuer>/.well-known/openid-configuration``.
    discovery_url: str = field(init=False)
    #: ``<issuer>/session/end`` (RP-initiated logout; confirm at ``/session/end/confirm``).
    end_session_endpoint: str = field(init=False)
    #: ``<issuer>/jwks``: the public RS256 key signing ID and logout tokens.
    jwks_uri: str = field(init=False)

    def __post_init__(self) -> None:
        self.issuer = self.server.url
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.end_session_endpoint = f"{self.issuer}/session/end"
        self.jwks_uri = f"{self.issuer}/jwks"

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The ``node`` process."""
        return self.server.process

    def output(self) -> str:
        """What the provider printed so far (stdout and stderr; back-channel outcomes are
        logged there as ``backchannel.success`` / ``backchannel.error`` lines). Only inside
        the :func:`oidc_provider` context: the log is removed on exit."""
        return self.server.output()


def _printed_ready(server: Server) -> bool:
    return any(line.startswith("READY ") for line in server.output().splitlines())


@contextlib.contextmanager
def oidc_provider(
    clients: Sequence[Mapping[str, Any]], *, timeout: float = START_TIMEOUT
) -> Iterator[Provider]:
    """Start ``node tests/oidc/provider.mjs`` on a free loopback port with ``clients``
    (client metadata, see :func:`client_metadata`); yield it once it printed ``READY``.
    The process is always stopped on exit, also when the body raises.

    :raises ProviderError: when node/npm are missing, ``npm ci`` fails, or the provider
        does not get ready within ``timeout`` seconds (three tries on fresh ports when
        one was taken).
    """
    if ensure_node_modules() is None:
        raise ProviderError(node_missing_reason() or "node_modules unavailable")
    node = shutil.which("node") or "node"
    listed = [dict(client) for client in clients]

    def env(port: int) -> dict[str, str]:
        return {**os.environ, "OIDC_PORT": str(port), "OIDC_CLIENTS": json.dumps(listed)}

    with serve(
        "OpenID provider",
        lambda _port: [node, str(PROVIDER_SCRIPT)],
        env,
        ready=_printed_ready,
        cwd=OIDC_DIR,
        timeout=timeout,
        retry=lambda output: "EADDRINUSE" in output,
        error=ProviderError,
    ) as server:
        yield Provider(listed, server)


def client_metadata(
    client_id: str,
    app_base_url: str,
    *,
    client_secret: str | None = None,
    backchannel_logout_uri: str | None = None,
    post_logout_redirect_uris: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Client metadata for an app of tests/adoption_apps/oidc_*.py at ``app_base_url``:
    redirect URI ``<app>/auth/callback``; post-logout redirect URIs ``<app>/`` unless
    given; back-channel logout to ``backchannel_logout_uri`` (default
    ``<app>/oidc/backchannel-logout``) with ``backchannel_logout_session_required`` (the
    provider's ``sid`` then reaches the ID token); a random secret unless given.
    """
    base = app_base_url.rstrip("/")
    return {
        "client_id": client_id,
        "client_secret": client_secret or secrets.token_urlsafe(32),
        "redirect_uris": [base + CALLBACK_PATH],
        "post_logout_redirect_uris": list(post_logout_redirect_uris or [base + "/"]),
        "backchannel_logout_uri": backchannel_logout_uri or base + DEFAULT_BACKCHANNEL_PATH,
        "backchannel_logout_session_required": True,
    }


def app_base_url(host: str = "127.0.0.1") -> str:
    """``http://<host>:<free port>``: where to serve an app, chosen before the provider
    starts (its client metadata names the app's URLs). Apps sharing a browser should get
    different loopback hosts (``127.0.0.1``, ``127.0.0.2``, ...): cookies ignore ports,
    and the apps all name their session cookie ``session``."""
    return f"http://{host}:{free_port()}"


@dataclass(frozen=True)
class App:
    """One app of tests/adoption_apps/oidc_*.py: where it is served, and its client at
    the provider."""

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


def planned_app(
    framework: Framework,
    host: str = "127.0.0.1",
    backchannel_logout_uri: str | None = None,
    post_logout_paths: Sequence[str] = ("/",),
) -> App:
    """An app's URL (:func:`app_base_url`) and client metadata (client id
    ``<framework>-app``, post-logout redirect URIs at ``post_logout_paths``), chosen
    before the provider starts."""
    url = app_base_url(host)
    client = client_metadata(
        f"{framework}-app",
        url,
        backchannel_logout_uri=backchannel_logout_uri,
        post_logout_redirect_uris=[url + path for path in post_logout_paths],
    )
    return App(framework, url, client)


def oidc_app_env(
    provider: Provider, app: App, redis_url: str, logout: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of ``app`` (see :func:`tests.servers.app_env`): its
    ``OIDC_ISSUER``, ``OIDC_CLIENT_ID``, ``OIDC_CLIENT_SECRET`` and ``APP_BASE_URL``; the
    middleware's ``LOGOUT_REDIS_URL`` and ``LOGOUT_SESSION_KEYS`` (where the app keeps
    its sessions), and ``logout`` (more ``LOGOUT_*`` settings)."""
    return app_env(
        redis_url,
        OIDC_ISSUER=provider.issuer,
        OIDC_CLIENT_ID=app.client_id,
        OIDC_CLIENT_SECRET=str(app.client["client_secret"]),
        APP_BASE_URL=app.url.rstrip("/"),
        LOGOUT_SESSION_KEYS=SESSION_KEYS[app.framework],
        **(logout or {}),
    )


#: The server of each framework's app, by target.
_TARGETS: dict[Framework, str] = {
    "flask": "tests.adoption_apps.oidc_flask:app",
    "fastapi": "tests.adoption_apps.oidc_fastapi:app",
}


def serve_oidc_app(
    framework: Framework,
    url: str,
    env: Mapping[str, str],
    *options: str,
    ready: Callable[[Server], bool] = answers,
    timeout: float = START_TIMEOUT,
) -> contextlib.AbstractContextManager[Server]:
    """Serve tests/adoption_apps/oidc_flask.py under waitress or oidc_fastapi.py under
    uvicorn (with ``options``, such as ``--workers 2``) at ``url``
    (``http://<loopback host>:<port>``, from :func:`app_base_url`: the URL the
    provider's client metadata names); yield the server once ``ready(server)`` (``GET
    /`` answers). The server is always stopped on exit.

    :raises ProviderError: when it exits or is not ready within ``timeout`` seconds.
    """
    parts = urlsplit(url.rstrip("/"))
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not http://<host>:<port>: {url!r}")
    command = waitress if framework == "flask" else uvicorn
    return serve(
        f"{framework} app",
        command(_TARGETS[framework], *options, host=parts.hostname),
        env,
        host=parts.hostname,
        port=parts.port,
        ready=ready,
        timeout=timeout,
        error=ProviderError,
    )


@dataclass
class Running:
    """The provider and its apps, served (see :func:`running`), and a browser."""

    provider: Provider
    #: A browser: one cookie jar for the provider and every app.
    browser: httpx.Client
    stack: contextlib.ExitStack = field(repr=False)

    def client(self) -> httpx.Client:
        """Another HTTP client (another browser, or the provider's back channel), closed
        when the apps stop."""
        return self.stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))


@contextlib.contextmanager
def running(
    apps: Sequence[App],
    redis_url: str,
    logout: Callable[[App, Provider], Mapping[str, str]] | None = None,
) -> Iterator[Running]:
    """Start a provider whose clients are ``apps``, serve each app (its environment from
    :func:`oidc_app_env`, ``logout(app, provider)`` adding ``LOGOUT_*`` settings), and
    open a browser; everything is stopped and closed on exit."""
    with contextlib.ExitStack() as stack:
        provider = stack.enter_context(oidc_provider([app.client for app in apps]))
        for app in apps:
            env = oidc_app_env(provider, app, redis_url, logout and logout(app, provider))
            served = stack.enter_context(serve_oidc_app(app.framework, app.url, env))
            assert served.url == app.url
        browser = stack.enter_context(httpx.Client(timeout=REQUEST_TIMEOUT))
        yield Running(provider, browser, stack)


def session_record(
    redis_client: redis.Redis, framework: Framework, session_id: str
) -> dict[str, Any] | None:
    """The session record of an app, decoded (Flask-Session: msgpack; starsessions:
    JSON), or None when there is none."""
    raw = redis_client.get(SESSION_KEYS[framework].format(sid=session_id))
    if raw is None:
        return None
    assert isinstance(raw, bytes)
    decoded = msgspec.msgpack.decode(raw) if framework == "flask" else json.loads(raw)
    assert isinstance(decoded, dict)
    return decoded


# -- a browser, scripted ---------------------------------------------------------------


@dataclass
class Form:
    """One HTML form: its ``id``, ``action`` (as written) and named ``<input>`` values."""

    id: str | None
    action: str
    method: str
    fields: dict[str, str]


class _FormParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form":
            self._open = Form(
                id=attributes.get("id"),
                action=attributes.get("action", ""),
                method=attributes.get("method", "get").lower(),
                fields={},
            )
            self.forms.append(self._open)
        elif tag == "input" and self._open is not None and attributes.get("name"):
            self._open.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def read_forms(page: str) -> list[Form]:
    """The forms of an HTML page, in order."""
    parser = _FormParser()
    parser.feed(page)
    parser.close()
    return parser.forms


def _origin(url: str | httpx.URL) -> tuple[str, str, int | None]:
    parts = urlsplit(str(url))
    return parts.scheme, parts.hostname or "", parts.port


def _where(response: httpx.Response) -> str:
    return (
        f"{response.request.method} {response.url} -> {response.status_code}: {response.text[:800]}"
    )


def sign_in(client: httpx.Client, app_base_url: str, login: str = "alice") -> httpx.Response:
    """Sign in to the app at ``app_base_url`` through the provider, as a browser would:
    ``GET <app>/login``, follow the redirects to the provider, fill in its devInteractions
    login form (``login``, any password) and consent form when they are shown, and follow
    the redirects back through ``<app>/auth/callback`` to the app's page.

    ``client`` is the browser: its cookies (the app's and the provider's) are kept. A
    second sign-in in the same client, to another app, reuses the provider's session
    (no login form, a consent form for the new client).

    :returns: the app's last response (after the callback: ``GET /``, ``Logged in as ...``).
    :raises SignInError: when a step fails or the provider does not send the browser back.
    """
    response = client.get(f"{app_base_url.rstrip('/')}/login", follow_redirects=True)
    app = _origin(app_base_url)
    for _step in range(MAX_FORMS):
        if _origin(response.url) == app:
            break
        forms = [form for form in read_forms(response.text) if form.method == "post"]
        if response.status_code != 200 or not forms:
            raise SignInError(f"no form to fill in at the provider: {_where(response)}")
        form = forms[0]
        fields = dict(form.fields)
        if fields.get("prompt") == "login":
            fields.update(login=login, password="any password")
        response = client.post(
            urljoin(str(response.url), form.action), data=fields, follow_redirects=True
        )
    else:
        raise SignInError(f"still at the provider after {MAX_FORMS} forms: {_where(response)}")
    if response.status_code != 200:
        raise SignInError(f"the app's callback failed: {_where(response)}")
    return response


def confirm_logout(client: httpx.Client, page: httpx.Response) -> httpx.Response:
    """Answer the provider's logout confirmation ``page`` (its ``/session/end`` answer)
    with "Yes, sign me out": POST its form (``xsrf``) with ``logout=yes`` and follow the
    redirects (to ``post_logout_redirect_uri?state=...`` when the RP-initiated request
    named one, else to ``/session/end/success``). The provider back-channels every client
    of the session before it answers.

    :returns: the last response.
    :raises SignInError: when ``page`` has no logout form.
    """
    forms = [form for form in read_forms(page.text) if form.id == "op.logoutForm"]
    if page.status_code != 200 or not forms:
        raise SignInError(f"no logout confirmation form: {_where(page)}")
    form = forms[0]
    return client.post(
        urljoin(str(page.url), form.action),
        data={**form.fields, "logout": "yes"},
        follow_redirects=True,
    )


def end_session_at_provider(client: httpx.Client, provider: Provider) -> httpx.Response:
    """Log the browser ``client`` out at the provider itself (no RP involved):
    ``GET /session/end`` then confirm with ``logout=yes`` (:func:`confirm_logout`). The
    provider back-channels every client the session signed in to.

    :returns: the provider's last response (``/session/end/success``, 200).
    :raises SignInError: when the confirmation page is not shown.
    """
    page = client.get(provider.end_session_endpoint, follow_redirects=True)
    return confirm_logout(client, page)


def signed_in_record(
    browser: httpx.Client,
    app: App,
    provider: Provider,
    redis_client: redis.Redis,
    login: str = "alice",
) -> tuple[str, dict[str, Any]]:
    """Sign ``login`` in to ``app`` (:func:`sign_in`) and check what a browser sees (the
    app's ``/`` saying ``Logged in as <login>.``, a ``session`` cookie) and what the app
    keeps (a record whose ``user`` has the ID token's ``sub``, ``aud``, ``iss`` and the
    provider's ``sid``, and whose ``id_token`` is a string).

    :returns: the session id (the cookie's value) and the record.
    """
    page = sign_in(browser, app.url, login)
    assert page.text == f"Logged in as {login}.\n"
    assert urlsplit(str(page.url)).path == "/"
    session_id = browser.cookies.get(SESSION_COOKIE, domain=app.host)
    assert session_id, "no session cookie"
    record = session_record(redis_client, app.framework, session_id)
    assert record is not None, "no session record in Redis"
    user = record["user"]
    assert user["sub"] == login
    assert user["aud"] == app.client_id
    assert user["iss"] == provider.issuer
    assert isinstance(user.get("sid"), str)
    assert user["sid"]
    assert isinstance(record.get("id_token"), str)
    return session_id, record
