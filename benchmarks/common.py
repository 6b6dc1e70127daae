"""What every benchmark shares: the run's settings, the variants measured (one column
each), and the requests sent (the same headers in-process and over the wire).

Variants: the default configuration (the revocation cache on), on which the targets are
judged, and the same with ``revocation_cache=False``. To compare another configuration,
add a :class:`Variant` to :data:`VARIANTS` (``settings`` are ``LogoutConfig`` keyword
arguments; or give ``asgi``/``wsgi`` factories). Each variant given by settings is also
measured on a Redis Cluster (:data:`CLUSTER_VARIANTS`, named ``<name>-cluster``).

Requests: ``none`` (no credentials), ``cookie`` (a session cookie, not revoked),
``bearer`` (an HS256 JWT, not revoked), ``cookie_post`` (in-process only); a logout
(``POST /logout`` with a unique session and opaque token) and a logout everywhere.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import jwt
import msgspec

from logout_middleware import LogoutConfig, LogoutMiddleware, WSGILogoutMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication
    from starlette.types import ASGIApp


@dataclass(frozen=True)
class Settings:
    """Counts and durations of one run. Server runs alternate variants within a round."""

    smoke: bool
    #: In-process (pyperf): worker processes per benchmark, seconds per value.
    inproc_processes: int
    inproc_min_time: float
    #: Pass-through through a server: rounds, seconds per measured run, seconds of warm-up.
    rounds: int
    duration: float
    warmup: float
    #: Pass-through side by side (bare and variant at once): rounds, seconds per run.
    paired_rounds: int
    paired_duration: float
    #: Keep-alive connections of the load generator (pass-through and logout).
    concurrency: int
    #: Logout: rounds and seconds per measured run (same warm-up as pass-through).
    logout_rounds: int
    logout_duration: float
    #: Scaling: revoked keys in Redis, connections, rounds alone and side by side,
    #: seconds per run.
    scaling_sizes: tuple[int, ...]
    scaling_concurrency: tuple[int, ...]
    scaling_rounds: int
    scaling_paired_rounds: int
    scaling_duration: float
    #: Scaling: sequential ``EXISTS`` calls timed directly with redis-py per size.
    exists_calls: int
    #: Logout everywhere: sessions of the subject (half used on each of two processes).
    everywhere_sessions: int
    #: Revocation mirror: revoked tokens and session tombstones (each) whose memory is
    #: measured, and subjects with a not-before.
    memory_items: int
    memory_subjects: int
    #: Revocation mirror: logouts whose arrival in another process's mirror is timed,
    #: per follower flavour (asyncio task, thread).
    staleness_trials: int
    #: Audit stream throughput (cluster section): concurrent writers, rounds, seconds
    #: per burst.
    stream_writers: tuple[int, ...]
    stream_rounds: int
    stream_duration: float


FULL = Settings(
    smoke=False,
    inproc_processes=3,
    inproc_min_time=0.05,
    rounds=6,
    duration=0.5,
    paired_rounds=8,
    paired_duration=0.5,
    warmup=0.4,
    concurrency=16,
    logout_rounds=6,
    logout_duration=0.7,
    scaling_sizes=(1, 10_000, 1_000_000),
    scaling_concurrency=(1, 8, 64),
    scaling_rounds=2,
    scaling_paired_rounds=4,
    scaling_duration=0.4,
    exists_calls=3000,
    everywhere_sessions=100,
    memory_items=100_000,
    memory_subjects=10_000,
    staleness_trials=300,
    stream_writers=(1, 8, 64),
    stream_rounds=3,
    stream_duration=1.0,
)

SMOKE = Settings(
    smoke=True,
    inproc_processes=1,
    inproc_min_time=0.001,
    rounds=1,
    duration=0.1,
    paired_rounds=1,
    paired_duration=0.1,
    warmup=0.05,
    concurrency=4,
    logout_rounds=1,
    logout_duration=0.1,
    scaling_sizes=(1, 1_000),
    scaling_concurrency=(2,),
    scaling_rounds=1,
    scaling_paired_rounds=1,
    scaling_duration=0.1,
    exists_calls=50,
    everywhere_sessions=100,
    memory_items=5_000,
    memory_subjects=1_000,
    staleness_trials=20,
    stream_writers=(4,),
    stream_rounds=1,
    stream_duration=0.1,
)


@dataclass(frozen=True)
class Variant:
    """One configuration of the middleware.

    :param name: short identifier, used in server names and the JSON (no spaces).
    :param label: how tables and charts name it.
    :param settings: ``LogoutConfig`` keyword arguments besides ``redis_url``.
    :param asgi: optional factory ``(app, redis_url) -> ASGI app``, instead of
        ``LogoutMiddleware(app, LogoutConfig(redis_url=..., **settings))``.
    :param wsgi: the same for WSGI.
    """

    name: str
    label: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    asgi: Callable[[ASGIApp, str], ASGIApp] | None = None
    wsgi: Callable[[WSGIApplication, str], WSGIApplication] | None = None

    def config(self, redis_url: str) -> LogoutConfig:
        """The variant's settings on the Redis at ``redis_url``."""
        return LogoutConfig(redis_url=redis_url, **self.settings)

    @property
    def follows(self) -> bool:
        """Whether each process of this variant keeps a revocation mirror by following
        the audit stream (``revocation_cache`` on, with a stream to follow)."""
        if self.asgi is not None or self.wsgi is not None:
            return False
        config = self.config("redis://127.0.0.1")  # a URL to validate against (a cluster's)
        return config.revocation_cache and bool(config.events_stream)

    def with_settings(self, name: str, label: str, **settings: Any) -> Variant:
        """This variant with more ``LogoutConfig`` settings, under another name."""
        return Variant(name, label, {**self.settings, **settings}, self.asgi, self.wsgi)

    def wrap_asgi(self, app: ASGIApp, redis_url: str) -> ASGIApp:
        """``app`` behind this variant of the ASGI middleware."""
        if self.asgi is not None:
            return self.asgi(app, redis_url)
        return LogoutMiddleware(app, self.config(redis_url))

    def wrap_wsgi(self, app: WSGIApplication, redis_url: str) -> WSGIApplication:
        """``app`` behind this variant of the WSGI middleware."""
        if self.wsgi is not None:
            return self.wsgi(app, redis_url)
        return WSGILogoutMiddleware(app, self.config(redis_url))


#: Every variant measured; the first is the one the targets are judged on.
VARIANTS: tuple[Variant, ...] = (
    Variant("logout", "logout-middleware"),
    Variant(
        "nocache",
        "logout-middleware, without the revocation cache",
        {"revocation_cache": False},
    ),
)


#: What a variant's name gets on the Redis Cluster.
CLUSTER_SUFFIX = "-cluster"


def on_cluster(found: Variant) -> Variant:
    """``found`` on a Redis Cluster (``LOGOUT_REDIS_CLUSTER=true``, given a node's URL),
    named ``<name>-cluster``."""
    return found.with_settings(
        found.name + CLUSTER_SUFFIX, f"{found.label}, Redis Cluster", redis_cluster=True
    )


#: The variants measured on the Redis Cluster too (those given by settings), in order.
CLUSTER_VARIANTS: tuple[Variant, ...] = tuple(
    on_cluster(v) for v in VARIANTS if v.asgi is None and v.wsgi is None
)


def is_cluster_app(name: str) -> bool:
    """Whether the app (or server) called ``name`` talks to the Redis Cluster."""
    return name.removesuffix("-2").endswith(CLUSTER_SUFFIX)


def variant(name: str) -> Variant:
    """The variant called ``name`` (one of :data:`VARIANTS` or :data:`CLUSTER_VARIANTS`).

    :raises KeyError: when there is none.
    """
    for found in (*VARIANTS, *CLUSTER_VARIANTS):
        if found.name == name:
            return found
    raise KeyError(name)


Kind = Literal["none", "cookie", "bearer", "cookie_post"]
#: The kinds of pass-through request measured everywhere. ``cookie_post`` (a ``POST``
#: with the session cookie: the app may have logged someone in, so the middleware reads
#: the session's record again) is counted in-process only.
KINDS: tuple[Kind, ...] = ("none", "cookie", "bearer")

#: The session id of ``cookie`` requests: 43 characters, as
#: ``secrets.token_urlsafe(32)`` makes. Never revoked.
SESSION_ID = "Jx0Qm3b6yJ7aLw2cD9kP4sV8nR1tF5gH6uE0iO3pZ7q"
#: An opaque token of the same shape (scaling and logout requests derive theirs from it).
TOKEN = "vB7kQ2mX9pL4nR8sT1wY6zA3cE5gJ0hU2iK7oM9qS4d"  # noqa: S105 (made up)
#: The user the benchmark's sessions and JWT belong to.
SUBJECT = "bench-user-1"
#: Where a session record keeps its subject (Flask-Login's key): the
#: ``LOGOUT_SESSION_SUBJECT`` of the logout-everywhere section.
SUBJECT_FIELD = "_user_id"
#: The logout-everywhere URI of the logout-everywhere section.
EVERYWHERE_PATH = "/logout/everywhere"
#: The bearer token of ``bearer`` requests: an HS256 JWT of :data:`SUBJECT` (the
#: middleware reads its claims unverified to find the subject's not-before), issued in
#: 2023 and expiring in 2096. Never revoked.
JWT = jwt.encode(
    {"sub": SUBJECT, "iat": 1_700_000_000, "exp": 4_000_000_000, "jti": "bench-jwt-1"},
    "bench-secret-bench-secret-bench-secret",
    algorithm="HS256",
)

_BASE = (
    ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "gzip, deflate, br"),
    ("Connection", "keep-alive"),
)


def headers(
    kind: Kind, host: str, token: str = JWT, session: str = SESSION_ID
) -> list[tuple[str, str]]:
    """The request headers of a pass-through request of ``kind``."""
    found = [("Host", host), *_BASE]
    if kind == "cookie":
        found.append(("Cookie", f"session={session}; theme=dark"))
    elif kind == "bearer":
        found.append(("Authorization", f"Bearer {token}"))
    return found


def _http(method: str, path: str, pairs: list[tuple[str, str]]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in pairs), "", ""]
    return "\r\n".join(lines).encode("latin-1")


def get_request(
    kind: Kind, host: str, path: str = "/", token: str = JWT, session: str = SESSION_ID
) -> bytes:
    """The raw HTTP/1.1 bytes of a pass-through ``GET``."""
    return _http("GET", path, headers(kind, host, token, session))


def session_record(subject: str | None) -> bytes:
    """A session record as Flask-Session 0.8 stores it (msgpack), of a user logged in
    with Flask-Login (``_user_id``), or of an anonymous session."""
    data: dict[str, Any] = {"_permanent": True, "csrf_token": "c" * 40}
    if subject is not None:
        data.update({SUBJECT_FIELD: subject, "_fresh": True})
    return msgspec.msgpack.encode(data)


def session_id(number: int) -> str:
    """The session id of logout number ``number`` (its key is ``session:<id>``)."""
    return f"bench{number:010d}"


def logout_token(number: int, nonce: str = "") -> str:
    """The bearer token that logout number ``number`` revokes (``nonce``: per run)."""
    return f"tok{nonce}{number:012d}{TOKEN[:24]}"


def logout_request(number: int, host: str, path: str = "/logout", nonce: str = "") -> bytes:
    """The raw bytes of logout number ``number``: unique session cookie and token."""
    pairs = [
        ("Host", host),
        *_BASE,
        ("Cookie", f"session={session_id(number)}; theme=dark"),
        ("Authorization", f"Bearer {logout_token(number, nonce)}"),
        ("Content-Length", "0"),
    ]
    return _http("POST", path, pairs)


def everywhere_request(sid: str, host: str) -> bytes:
    """The raw bytes of ``POST`` :data:`EVERYWHERE_PATH` with session ``sid``, asking for
    JSON (so that the answer gives the counts of sessions and tokens ended)."""
    pairs = [
        ("Host", host),
        *(pair for pair in _BASE if pair[0] != "Accept"),
        ("Accept", "application/json"),
        ("Cookie", f"session={sid}; theme=dark"),
        ("Content-Length", "0"),
    ]
    return _http("POST", EVERYWHERE_PATH, pairs)


def asgi_scope(kind: Kind, path: str = "/") -> dict[str, Any]:
    """An ASGI HTTP scope for a pass-through request of ``kind``, as uvicorn builds it."""
    post = kind == "cookie_post"
    kind = "cookie" if post else kind
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "POST" if post else "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in headers(kind, "127.0.0.1:8000")
        ],
        "state": {},
    }


def wsgi_environ(kind: Kind, path: str = "/") -> dict[str, Any]:
    """A WSGI environ for a pass-through request of ``kind``, as waitress builds it."""
    post = kind == "cookie_post"
    kind = "cookie" if post else kind
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST" if post else "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers(kind, "127.0.0.1:8000"):
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ
