"""The requests the suite sends: the same headers in-process and over the wire.

Three kinds of pass-through request, each a typical browser-like GET:

* ``none``: no credentials;
* ``cookie``: a session cookie whose session is not revoked (checked against the
  session tombstones: from the process's mirror with the revocation cache, else one
  ``EXISTS``);
* ``bearer``: ``Authorization: Bearer`` with a JWT that is not revoked (checked against
  the denylist and its subject's not-before: from the mirror, else one pipelined
  ``EXISTS`` + ``GET``).

and the logout request, a ``POST /logout`` with a session cookie and an opaque bearer
token, each unique per request so that every logout deletes a real session key and
revokes a new token; and the logout-everywhere request, a ``POST`` to
:data:`EVERYWHERE_PATH` asking for JSON (the counts of what it ended).
"""

from __future__ import annotations

import io
from typing import Any, Literal

import jwt
import msgspec

__all__ = [
    "EVERYWHERE_PATH",
    "JWT",
    "KINDS",
    "SESSION_ID",
    "SUBJECT",
    "SUBJECT_FIELD",
    "TOKEN",
    "Kind",
    "asgi_scope",
    "everywhere_request",
    "get_request",
    "headers",
    "logout_request",
    "logout_token",
    "session_id",
    "session_record",
    "wsgi_environ",
]

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
