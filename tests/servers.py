"""Real servers and a real Redis, as the tests see them. No pytest in here.

* Serving: :func:`serve` runs a server command on a loopback port until it is ready and
  always stops it; :func:`waitress` and :func:`uvicorn` make such commands,
  :func:`app_env` their environment, and :class:`ServedApp` ties the three together for
  an app of tests/adoption_apps or examples. :func:`children`, :func:`runs_with` and
  :func:`left_running` find a server's worker processes (Linux ``/proc``).
* Waiting: :func:`wait_until` and :func:`waited` poll a condition with a deadline
  (:func:`absent`: a key is gone; :func:`wait_indexed`: a subject's sessions are indexed).
* Receiving: :func:`recording_server`, an HTTP server of the test's own that records
  every ``POST`` (say, a back-channel logout) and answers 200; :func:`served_in_thread`
  runs any such server of the tests on a thread until the context ends.
* Settings and credentials: :data:`EVERYWHERE_SETTINGS`, :func:`hs256_token`.
* Redis: the middleware's keys under its default ``LOGOUT_KEY_PREFIX``, spelt out here
  rather than taken from the package so that the tests pin them
  (:func:`tombstone_key`, ...), its audit stream (:func:`audit_entries`), a subject's
  session index (:func:`index_members`), and a session record as Flask-Session writes
  one (:func:`flask_session_record`).
* Cookies: :func:`set_cookies_of` and :func:`assert_expires_cookie` on httpx responses,
  :func:`cookie_attributes` of a ``Set-Cookie`` value.
* The apps' own set-up (imported by tests/adoption_apps, in their server process):
  :func:`flask_app_with_redis_sessions`, :func:`text_response` and
  :func:`add_redis_sessions`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast
from urllib.parse import parse_qs

import httpx
import jwt
import msgspec
import redis

from logout_middleware.testing import free_port, stop_process

if TYPE_CHECKING:
    import flask
    import starlette.applications

_HTTPServer = TypeVar("_HTTPServer", bound=ThreadingHTTPServer)

ROOT = Path(__file__).resolve().parent.parent
#: How long a server may take to get ready, seconds.
START_TIMEOUT = 30.0
#: Tries of :func:`serve` on fresh ports, in case one was taken meanwhile.
START_ATTEMPTS = 3
#: How long the middleware may take with what it does after the app answered, seconds.
SETTLE_TIMEOUT = 5.0
#: Timeout of each HTTP request, seconds.
REQUEST_TIMEOUT = 10.0
#: The cookie every app of the tests keeps its session id in.
SESSION_COOKIE = "session"
#: The URI of logging out everywhere, wherever the tests offer it.
EVERYWHERE_PATH = "/logout/everywhere"
#: The headers of a JSON client.
ACCEPT_JSON = {"Accept": "application/json"}
#: The key of the HS256 JWTs that the in-process tests (tests/harness.py) verify.
JWT_KEY = "jwt-secret-for-tests-0123456789abcdef"
#: The middleware's settings for logging out everywhere: the subject of a session is its
#: ``user``, or a JWT's verified ``sub``.
EVERYWHERE_SETTINGS: dict[str, Any] = {
    "everywhere_path": EVERYWHERE_PATH,
    "session_subject": "user",
    "jwt_key": JWT_KEY,
}

#: The middleware's audit stream.
EVENTS_STREAM = "logout:events"
TOKEN_PREFIX = "logout:revoked:"
TOMBSTONE_PREFIX = "logout:revoked-session:"
NOT_BEFORE_PREFIX = "logout:not-before:"
INDEX_PREFIX = "logout:sessions-of:"

# -- waiting -----------------------------------------------------------------------------


def waited(
    condition: Callable[[], object], timeout: float = SETTLE_TIMEOUT, interval: float = 0.01
) -> float | None:
    """Poll ``condition`` every ``interval`` seconds until it is true: how long that
    took, seconds; None when it was still false once ``timeout`` seconds had passed."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started >= timeout:
            return None
        time.sleep(interval)
    return time.monotonic() - started


def wait_until(
    condition: Callable[[], object], timeout: float = SETTLE_TIMEOUT, interval: float = 0.01
) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds (see :func:`waited`)."""
    return waited(condition, timeout, interval) is not None


# -- serving -----------------------------------------------------------------------------


class ServerError(RuntimeError):
    """A server did not get ready (the message has its output)."""


@dataclass
class Server:
    """A server process that :func:`serve` started."""

    #: ``http://<host>:<port>``, no trailing slash.
    url: str
    port: int
    process: subprocess.Popen[bytes] = field(repr=False)
    log: IO[bytes] = field(repr=False)

    def output(self, tail: int | None = None) -> str:
        """What it printed so far (stdout and stderr), its last ``tail`` characters when
        given. Only inside the :func:`serve` context: the log is removed on exit."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read().decode("utf-8", "replace")
        return text if tail is None else text[-tail:]


def answers(server: Server) -> bool:
    """Whether ``GET /`` gets an answer (any status): the default readiness of
    :func:`serve`."""
    try:
        httpx.get(server.url + "/", timeout=2.0)
    except httpx.TransportError:
        return False
    return True


@contextlib.contextmanager
def serve(
    name: str,
    command: Callable[[int], Sequence[str]],
    env: Mapping[str, str] | Callable[[int], Mapping[str, str]],
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    ready: Callable[[Server], bool] = answers,
    cwd: Path = ROOT,
    timeout: float = START_TIMEOUT,
    retry: Callable[[str], bool] = lambda output: True,
    error: Callable[[str], Exception] = ServerError,
) -> Iterator[Server]:
    """Run ``command(port)`` in ``cwd`` with ``env`` (or ``env(port)``), its output in a
    temporary file, until ``ready(server)``; yield the :class:`Server`. The process is
    always stopped on exit, also when the body raises.

    The port is ``port``, else a free one on ``host``; in that case a server that exits
    before it is ready is started again on a fresh port, :data:`START_ATTEMPTS` times
    at most, when ``retry(its output)`` says so (its port was taken meanwhile).

    :raises: ``error(message)`` (:class:`ServerError` unless told) when it exits or is
        not ready within ``timeout`` seconds; the message has its last output.
    """
    outcome, output, url = "exited", "", ""
    for _attempt in range(1 if port is not None else START_ATTEMPTS):
        chosen = free_port() if port is None else port
        url = f"http://{host}:{chosen}"
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(
                list(command(chosen)),
                cwd=cwd,
                env=dict(env(chosen) if callable(env) else env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            server = Server(url, chosen, process, log)
            try:
                outcome = _until_ready(server, ready, timeout)
                if outcome == "ready":
                    yield server
                    return
            finally:
                stop_process(process)
            output = server.output(3000)
        if outcome == "timeout" or not retry(output):
            break
    why = "exited" if outcome == "exited" else f"was not ready within {timeout:g} s"
    raise error(f"the {name} at {url} {why}. Its output:\n{output}")


def _until_ready(server: Server, ready: Callable[[Server], bool], timeout: float) -> str:
    """``ready``, ``exited`` or ``timeout``."""
    up = wait_until(lambda: server.process.poll() is not None or ready(server), timeout, 0.05)
    if server.process.poll() is not None:
        return "exited"
    return "ready" if up else "timeout"


def waitress(target: str, *options: str, host: str = "127.0.0.1") -> Callable[[int], list[str]]:
    """The command serving the WSGI app ``target`` (``module:name``) under waitress with
    ``options``, on a port."""
    return lambda port: [
        *(sys.executable, "-m", "waitress", f"--host={host}", f"--port={port}"),
        *(*options, target),
    ]


def uvicorn(target: str, *options: str, host: str = "127.0.0.1") -> Callable[[int], list[str]]:
    """The command serving the ASGI app ``target`` (``module:name``) under uvicorn with
    ``options`` (``--workers 2``), on a port, logging warnings only."""
    return lambda port: [
        *(sys.executable, "-m", "uvicorn", target, "--host", host, "--port", str(port)),
        *("--log-level", "warning", *options),
    ]


def app_env(redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of an app served in a subprocess: this one without its
    ``LOGOUT_*`` variables (the test's settings only), the project on ``PYTHONPATH``,
    unbuffered output, the app's ``REDIS_URL`` and the middleware's
    ``LOGOUT_REDIS_URL``, then ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(PYTHONUNBUFFERED="1", REDIS_URL=redis_url, LOGOUT_REDIS_URL=redis_url)
    env.update(settings)
    return env


@dataclass(frozen=True)
class ServedApp:
    """An app served in a subprocess, and where it keeps its sessions in Redis."""

    name: str
    #: The command serving the app on a port (:func:`waitress`, :func:`uvicorn`).
    command: Callable[[int], list[str]]
    #: The Redis key of a session, ``{sid}`` standing for the cookie's value.
    session_key: str
    #: The app's own settings and the ``LOGOUT_*`` ones, beside the Redis URLs.
    env: dict[str, str] = field(default_factory=dict)

    def record(self, sid: str) -> str:
        """The Redis key of the session ``sid``."""
        return self.session_key.replace("{sid}", sid)

    def records(self) -> str:
        """``SCAN MATCH`` pattern for all its sessions."""
        return self.session_key.replace("{sid}", "*")

    def serve(self, redis_url: str) -> contextlib.AbstractContextManager[Server]:
        """Serve it (see :func:`serve`) with Redis at ``redis_url``."""
        return serve(self.name, self.command, app_env(redis_url, **self.env))


def children(pid: int) -> set[int]:
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


def runs_with(pid: int, variable: str) -> bool:
    """Whether process ``pid`` runs with ``variable`` (``NAME=value``) in its
    environment: one of our servers' processes, never a recycled pid."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return variable.encode() in environ.split(b"\0")


def left_running(pids: set[int], variable: str, timeout: float = 10.0) -> set[int]:
    """Which of ``pids`` (workers with ``variable`` in their environment, see
    :func:`runs_with`) still run ``timeout`` seconds after their server stopped; those
    are killed."""

    def running() -> set[int]:
        return {pid for pid in pids if runs_with(pid, variable)}

    wait_until(lambda: not running(), timeout, 0.05)
    alive = running()
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


# -- a recording receiver ----------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """One request the recording server received."""

    method: str
    path: str
    #: Header names in lower case.
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, list[str]]:
        """The body as a form (``application/x-www-form-urlencoded``)."""
        return parse_qs(self.body.decode("ascii"), keep_blank_values=True)


class RecordingServer(ThreadingHTTPServer):
    """Records every ``POST`` it receives and answers 200 (see :func:`recording_server`)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, count: int, timeout: float) -> list[Delivery]:
        """The deliveries once there are ``count`` of them (or all there are after
        ``timeout`` seconds)."""
        with self.changed:
            self.changed.wait_for(lambda: len(self.deliveries) >= count, timeout=timeout)
            return list(self.deliveries)


class _RecordingHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k.lower(): v for k, v in self.headers.items()}
        server = cast("RecordingServer", self.server)
        with server.changed:
            server.deliveries.append(Delivery("POST", self.path, headers, body))
            server.changed.notify_all()
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextlib.contextmanager
def served_in_thread(server: _HTTPServer) -> Iterator[_HTTPServer]:
    """``server`` (already bound to its port) serving on a thread of this process until
    the context ends; then it is shut down and closed."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def recording_server() -> contextlib.AbstractContextManager[RecordingServer]:
    """A :class:`RecordingServer` on a free loopback port, until the context ends."""
    return served_in_thread(RecordingServer())


# -- Redis -------------------------------------------------------------------------------


def sha256_hex(value: str) -> str:
    """The SHA-256 hex digest of ``value``: how the middleware names secrets in Redis."""
    return hashlib.sha256(value.encode()).hexdigest()


def token_key(token: str) -> str:
    """The denylist key of a bearer token."""
    return TOKEN_PREFIX + sha256_hex(token)


def tombstone_key(session_id: str) -> str:
    """The tombstone key of a session, by its id."""
    return TOMBSTONE_PREFIX + sha256_hex(session_id)


def not_before_key(subject: str) -> str:
    """The not-before key of a subject."""
    return NOT_BEFORE_PREFIX + sha256_hex(subject)


def index_key(subject: str) -> str:
    """The session index (sorted set) of a subject."""
    return INDEX_PREFIX + sha256_hex(subject)


def absent(client: redis.Redis, key: str) -> Callable[[], bool]:
    """A condition for :func:`wait_until`: ``key`` does not exist."""
    return lambda: not client.exists(key)


def index_members(client: redis.Redis, subject: str) -> set[str]:
    """The session hashes in ``subject``'s index."""
    return {m.decode() for m in cast("list[bytes]", client.zrange(index_key(subject), 0, -1))}


def wait_indexed(
    client: redis.Redis, subject: str, session_ids: Iterable[str], timeout: float = SETTLE_TIMEOUT
) -> None:
    """Wait until ``subject``'s index holds exactly the sessions ``session_ids`` (the
    middleware indexes a session after the app answered); fail when it does not."""
    expected = {sha256_hex(sid) for sid in session_ids}
    assert wait_until(lambda: index_members(client, subject) == expected, timeout), (
        f"sessions not indexed under {subject!r}: {index_members(client, subject)}"
    )


def audit_entries(client: redis.Redis) -> list[dict[str, str]]:
    """The audit stream's entries, decoded, oldest first."""
    raw = cast("list[tuple[bytes, dict[bytes, bytes]]]", client.xrange(EVENTS_STREAM))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in raw]


def flask_session_record(user: str, **values: Any) -> bytes:
    """A session record of ``user`` as Flask-Session 0.8 writes it (msgpack of the
    session dict)."""
    return msgspec.msgpack.encode({"user": user, **values})


def hs256_token(sub: str, iat: int | None = None, key: str = JWT_KEY, **claims: Any) -> str:
    """A JWT for ``sub`` signed with ``key`` (HS256), issued at ``iat`` (5 seconds ago
    unless given) and valid for 10 minutes, with more ``claims``."""
    iat = int(time.time()) - 5 if iat is None else iat
    return jwt.encode({"sub": sub, "iat": iat, "exp": iat + 600, **claims}, key, "HS256")


# -- cookies -----------------------------------------------------------------------------


def set_cookies_of(response: httpx.Response, name: str = SESSION_COOKIE) -> list[str]:
    """The ``Set-Cookie`` values of ``response`` that set cookie ``name``."""
    return [
        value
        for value in response.headers.get_list("set-cookie")
        if value.split(";", 1)[0].split("=", 1)[0].strip() == name
    ]


def assert_expires_cookie(response: httpx.Response, name: str = SESSION_COOKIE) -> None:
    """``response`` deletes cookie ``name`` (and sets it to nothing else)."""
    found = set_cookies_of(response, name)
    assert len(found) == 1, response.headers.get_list("set-cookie")
    assert found[0].split(";", 1)[0].strip() == f"{name}=", found[0]
    assert "max-age=0" in found[0].lower() or "1970" in found[0], found[0]


def cookie_attributes(set_cookie: str) -> dict[str, str]:
    """The attributes of a ``Set-Cookie`` value, without the cookie itself: names in
    lower case, ``""`` for a flag (``secure``)."""
    parts = [part.strip() for part in set_cookie.split(";")[1:]]
    return {name.lower(): value for name, _, value in (part.partition("=") for part in parts)}


# -- the apps' own set-up ----------------------------------------------------------------


def flask_app_with_redis_sessions(import_name: str) -> flask.Flask:
    """A Flask app keeping its sessions in Redis at ``REDIS_URL`` with Flask-Session
    (keys ``session:<id>``, the bare id in the ``session`` cookie); its ``SECRET_KEY``
    from the environment, else random."""
    from flask import Flask
    from flask_session import Session

    app = Flask(import_name)
    app.config.update(
        SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_hex(32),
        SESSION_TYPE="redis",
        SESSION_REDIS=redis.Redis.from_url(os.environ["REDIS_URL"]),
        SESSION_COOKIE_NAME=SESSION_COOKIE,
    )
    Session(app)
    return app


def text_response(body: str, status: int = 200) -> flask.Response:
    """A Flask ``text/plain`` response of ``body`` and a newline."""
    from flask import Response

    return Response(body + "\n", status=status, mimetype="text/plain")


def add_redis_sessions(
    app: starlette.applications.Starlette,
    *,
    cookie_name: str = SESSION_COOKIE,
    https_only: bool = False,
    same_site: str = "lax",
) -> None:
    """Keep the sessions of a FastAPI (Starlette) app in Redis at ``REDIS_URL`` with
    starsessions (keys ``starsessions.<id>``, the bare id in the ``session`` cookie, an
    hour's lifetime), loaded before every route. The cookie is ``HttpOnly`` and
    ``SameSite=Lax``, its path the server's root path (``/``); ``cookie_name``,
    ``https_only`` (``Secure``) and ``same_site`` set it otherwise."""
    from redis.asyncio import Redis as AsyncRedis
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware
    from starsessions.stores.redis import RedisStore

    app.add_middleware(SessionAutoloadMiddleware)
    app.add_middleware(
        SessionMiddleware,
        store=RedisStore(connection=AsyncRedis.from_url(os.environ["REDIS_URL"])),
        cookie_name=cookie_name,
        cookie_https_only=https_only,
        cookie_same_site=same_site,
        lifetime=3600,
    )
