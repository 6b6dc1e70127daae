"""A real OpenID Provider for tests: node-oidc-provider 9 (tests/oidc/provider.mjs), and
helpers that drive it with httpx the way a browser would. No pytest in here.

Set-up and life cycle::

    if ensure_node_modules() is None:          # npm ci in tests/oidc, once
        pytest.skip(node_missing_reason())
    url = app_base_url()                       # http://127.0.0.1:<free port>
    client = client_metadata("flask-app", url)
    with oidc_provider([client]) as provider:  # issuer http://127.0.0.1:<free port>
        env = oidc_app_env(provider, client, url, redis_url, {"LOGOUT_...": ...})
        with serve_oidc_app("flask", url, env), httpx.Client(timeout=10) as browser:
            page = sign_in(browser, url, login="alice")    # "Logged in as alice."
            end_session_at_provider(browser, provider)     # back-channels every client

The provider has devInteractions (any login name, any password; the name becomes
``sub``), back-channel logout and RP-initiated logout (``/session/end``), a fresh RS256
key and in-memory state per start. It sends back-channel requests to loopback targets
only. Browser and provider share one httpx cookie jar, and cookies ignore ports: the
provider's (``_interaction``, ``_session``, ...) never clash with an app's ``session``,
but two apps on one host would share their ``session`` cookie, so serve apps that one
browser visits on different loopback hosts (``app_base_url("127.0.0.2")``).
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
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from logout_middleware.testing import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
#: The npm package holding the provider (package.json, package-lock.json, provider.mjs).
OIDC_DIR = Path(__file__).resolve().parent / "oidc"
PROVIDER_SCRIPT = OIDC_DIR / "provider.mjs"
#: Written into node_modules after a successful ``npm ci``: the hash of the lock file.
STAMP_NAME = ".logout-middleware-lock.sha256"
#: Longest ``npm ci`` may take, seconds.
NPM_CI_TIMEOUT = 300.0
#: Longest the provider or an app may take to start, seconds.
START_TIMEOUT = 30.0
#: The back-channel receiver's path used by :func:`client_metadata` unless told.
DEFAULT_BACKCHANNEL_PATH = "/oidc/backchannel-logout"
#: The callback path of tests/adoption_apps/oidc_*.py.
CALLBACK_PATH = "/auth/callback"
#: Most forms :func:`sign_in` fills in (login and consent, with room to spare).
MAX_FORMS = 5

Framework = Literal["flask", "fastapi"]

__all__ = [
    "CALLBACK_PATH",
    "DEFAULT_BACKCHANNEL_PATH",
    "Form",
    "Framework",
    "Provider",
    "ProviderError",
    "SignInError",
    "app_base_url",
    "client_metadata",
    "confirm_logout",
    "end_session_at_provider",
    "ensure_node_modules",
    "node_missing_reason",
    "oidc_app_env",
    "oidc_provider",
    "read_forms",
    "serve_oidc_app",
    "sign_in",
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


# -- running ---------------------------------------------------------------------------


@dataclass
class Provider:
    """A running provider (see :func:`oidc_provider`)."""

    #: ``http://127.0.0.1:<port>``, no trailing slash.
    issuer: str
    port: int
    #: The client metadata it was started with.
    clients: list[dict[str, Any]]
    process: subprocess.Popen[bytes] = field(repr=False)
    log: IO[bytes] = field(repr=False)

    @property
    def discovery_url(self) -> str:
        """``<issuer>/.well-known/openid-configuration``."""
        return f"{self.issuer}/.well-known/openid-configuration"

    @property
    def authorization_endpoint(self) -> str:
        """``<issuer>/auth``."""
        return f"{self.issuer}/auth"

    @property
    def end_session_endpoint(self) -> str:
        """``<issuer>/session/end`` (RP-initiated logout; confirm at ``/session/end/confirm``)."""
        return f"{self.issuer}/session/end"

    @property
    def jwks_uri(self) -> str:
        """``<issuer>/jwks``: the public RS256 key signing ID and logout tokens."""
        return f"{self.issuer}/jwks"

    def output(self) -> str:
        """What the provider printed so far (stdout and stderr; back-channel outcomes are
        logged there as ``backchannel.success`` / ``backchannel.error`` lines). Only inside
        the :func:`oidc_provider` context: the log is removed on exit."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL after 5 s); safe to call twice."""
        stop_process(self.process)


def _wait_ready(process: subprocess.Popen[bytes], log: IO[bytes], timeout: float) -> str:
    """``ready``, ``exited`` or ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log.seek(0)
        if any(line.startswith(b"READY ") for line in log.read().splitlines()):
            return "ready"
        if process.poll() is not None:
            return "exited"
        time.sleep(0.05)
    return "timeout"


@contextlib.contextmanager
def oidc_provider(
    clients: Sequence[Mapping[str, Any]], *, timeout: float = START_TIMEOUT
) -> Iterator[Provider]:
    """Start ``node tests/oidc/provider.mjs`` on a free loopback port with ``clients``
    (client metadata, see :func:`client_metadata`); yield it once it printed ``READY``.
    The process is always stopped on exit, also when the body raises.

    :raises ProviderError: when node/npm are missing, ``npm ci`` fails, or the provider
        does not get ready within ``timeout`` seconds (three tries on fresh ports).
    """
    if ensure_node_modules() is None:
        raise ProviderError(node_missing_reason() or "node_modules unavailable")
    node = shutil.which("node") or "node"
    listed = [dict(client) for client in clients]
    output = ""
    outcome = "exited"
    for _attempt in range(3):
        port = free_port()
        env = {**os.environ, "OIDC_PORT": str(port), "OIDC_CLIENTS": json.dumps(listed)}
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                [node, str(PROVIDER_SCRIPT)],
                cwd=OIDC_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                outcome = _wait_ready(process, log, timeout)
                if outcome == "ready":
                    provider = Provider(f"http://127.0.0.1:{port}", port, listed, process, log)
                    yield provider
                    return
            finally:
                stop_process(process)
            log.seek(0)
            output = log.read().decode("utf-8", "replace")[-3000:]
        if outcome == "timeout" or "EADDRINUSE" not in output:
            break
    why = "exited" if outcome == "exited" else f"was not ready within {timeout:g} s"
    raise ProviderError(f"the OpenID provider {why}. Its output:\n{output}")


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


def oidc_app_env(
    provider: Provider,
    client: Mapping[str, Any],
    app_base_url: str,
    redis_url: str,
    logout: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of an app of tests/adoption_apps/oidc_*.py: this one without its
    ``LOGOUT_*`` variables, plus ``OIDC_ISSUER``, ``OIDC_CLIENT_ID``,
    ``OIDC_CLIENT_SECRET``, ``REDIS_URL``, ``APP_BASE_URL``, and ``logout`` (the
    middleware's ``LOGOUT_*`` settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(
        OIDC_ISSUER=provider.issuer,
        OIDC_CLIENT_ID=str(client["client_id"]),
        OIDC_CLIENT_SECRET=str(client["client_secret"]),
        REDIS_URL=redis_url,
        APP_BASE_URL=app_base_url.rstrip("/"),
    )
    env.update(logout or {})
    return env


def app_base_url(host: str = "127.0.0.1") -> str:
    """``http://<host>:<free port>``: where to serve an app, chosen before the provider
    starts (its client metadata names the app's URLs). Apps sharing a browser should get
    different loopback hosts (``127.0.0.1``, ``127.0.0.2``, ...): cookies ignore ports,
    and the apps all name their session cookie ``session``."""
    return f"http://{host}:{free_port()}"


def _app_command(framework: Framework, host: str, port: int) -> list[str]:
    if framework == "flask":
        target = "tests.adoption_apps.oidc_flask:app"
        return [sys.executable, "-m", "waitress", f"--host={host}", f"--port={port}", target]
    target = "tests.adoption_apps.oidc_fastapi:app"
    return [
        *(sys.executable, "-m", "uvicorn", target),
        *("--host", host, "--port", str(port), "--log-level", "warning"),
    ]


@contextlib.contextmanager
def serve_oidc_app(
    framework: Framework, url: str, env: Mapping[str, str], *, timeout: float = START_TIMEOUT
) -> Iterator[str]:
    """Serve tests/adoption_apps/oidc_flask.py under waitress or oidc_fastapi.py under
    uvicorn at ``url`` (``http://<loopback host>:<port>``, from :func:`app_base_url`: the
    URL the provider's client metadata names); yield it once ``GET /`` answers. The
    server is always stopped on exit.

    :raises ProviderError: when it exits or does not answer within ``timeout`` seconds.
    """
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not http://<host>:<port>: {url!r}")
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            _app_command(framework, parts.hostname, parts.port),
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
                    up = True
                except httpx.TransportError:
                    time.sleep(0.1)
            if up:
                yield url
                return
        finally:
            stop_process(process)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")[-3000:]
    raise ProviderError(f"the {framework} app did not answer at {url}. Its output:\n{output}")


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
