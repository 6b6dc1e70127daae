"""A real browser for the tests: Debian's Chromium driven by Playwright for Python. No
pytest in here (tests/test_browser.py holds the fixtures).

* Launching: :func:`unavailable` says why no browser can be launched here (no
  ``/usr/bin/chromium``, or no ``playwright``), :func:`launch` starts a headless one with
  :data:`LAUNCH_ARGS`. Playwright's own browser download is never used: the environment
  gets ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1`` and the executable is always given.
* What the browser did: :func:`sent_headers` gives a request's headers as sent
  (``Cookie``, ``Origin``, ``Sec-Fetch-Site``), :func:`jar_cookie` a cookie of the
  context's jar; :func:`assert_text` waits for a page to show a text.
* Another site: :func:`hostile_site` serves fixed pages on ``localhost`` while the apps
  are reached as ``127.0.0.1``; a browser counts those as two sites.
* HTTPS: :func:`self_signed_certificate` writes a key and certificate for ``127.0.0.1``
  and ``localhost``; :func:`serve_https` runs a uvicorn app with them.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import httpx

from tests.servers import Server, serve, served_in_thread, uvicorn

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Playwright, Response

#: Debian's Chromium (``apt-get install chromium``), the only browser these tests run.
CHROMIUM = Path("/usr/bin/chromium")
#: Headless, as root, on a closed network: without the background-networking switches
#: Chromium's own connections (updates, sync, QUIC) are refused here and slow it down.
LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
#: How long one browser action (a click, a navigation, an event) may take, milliseconds.
ACTION_TIMEOUT_MS = 15_000

# Playwright never fetches a browser of its own, in this process or any it starts.
os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install playwright)"
    return None


def launch(playwright: Playwright) -> Browser:
    """A headless Chromium from :data:`CHROMIUM` with a fresh profile."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=list(LAUNCH_ARGS), timeout=30_000
    )


# -- what the browser did ------------------------------------------------------------


def sent_headers(response: Response) -> dict[str, str]:
    """The headers of ``response``'s request as the browser sent them on the wire
    (``cookie``, ``origin``, ``sec-fetch-site``; names in lower case)."""
    return response.request.all_headers()


def assert_text(locator: Locator, text: str) -> None:
    """``locator``'s text is ``text``, or becomes it within :data:`ACTION_TIMEOUT_MS`
    (Playwright's polling assertion: a page still loading is waited for)."""
    from playwright.sync_api import expect

    expect(locator).to_have_text(text, timeout=ACTION_TIMEOUT_MS)


def jar_cookie(context: BrowserContext, url: str, name: str) -> str | None:
    """The value of cookie ``name`` that ``context`` would send to ``url``, or None."""
    for cookie in context.cookies(url):
        if cookie.get("name") == name:
            return cookie.get("value")
    return None


# -- another site --------------------------------------------------------------------


class HostileSite(ThreadingHTTPServer):
    """Serves :attr:`pages` (path to HTML) on loopback; reach it as :attr:`url`."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _PageHandler)
        #: The HTML of each path; other paths get 404.
        self.pages: dict[str, str] = {}

    @property
    def url(self) -> str:
        """``http://localhost:<port>``: another site than ``127.0.0.1``'s."""
        return f"http://localhost:{self.server_address[1]}"


class _PageHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        page = cast("HostileSite", self.server).pages.get(self.path.split("?", 1)[0])
        body = (page or "not found").encode()
        self.send_response(200 if page is not None else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def hostile_site() -> contextlib.AbstractContextManager[HostileSite]:
    """A :class:`HostileSite` on a free port until the context ends."""
    return served_in_thread(HostileSite())


# -- HTTPS ---------------------------------------------------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a fresh EC key and a self-signed certificate for ``127.0.0.1`` and
    ``localhost`` (valid for a day) into ``directory``; their paths (key, certificate)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@dataclass(frozen=True)
class HTTPSServer:
    """An app served over HTTPS by :func:`serve_https`."""

    #: ``https://127.0.0.1:<port>``, no trailing slash.
    url: str
    server: Server


def _answers_https(certificate: Path) -> Callable[[Server], bool]:
    """Readiness for :func:`~tests.servers.serve`: ``GET /`` over HTTPS gets an answer
    (any status) from the server holding ``certificate``."""
    trusted = ssl.create_default_context(cafile=str(certificate))

    def ready(server: Server) -> bool:
        try:
            httpx.get(f"https://127.0.0.1:{server.port}/", verify=trusted, timeout=2.0)
        except httpx.TransportError:
            return False
        return True

    return ready


@contextlib.contextmanager
def serve_https(
    name: str, target: str, env: Mapping[str, str], key: Path, certificate: Path
) -> Iterator[HTTPSServer]:
    """Serve the ASGI app ``target`` (``module:name``) under uvicorn over HTTPS with
    ``key`` and ``certificate``, in environment ``env``, until the context ends."""
    command = uvicorn(target, "--ssl-keyfile", str(key), "--ssl-certfile", str(certificate))
    with serve(name, command, env, ready=_answers_https(certificate)) as server:
        yield HTTPSServer(f"https://127.0.0.1:{server.port}", server)
