"""Behaviour of the logout middleware, every test on both adapters (ASGI and WSGI).

Everything runs against a real Redis server (``redis_url``/``redis_client`` fixtures);
"Redis unreachable" is a closed loopback port.
"""

from __future__ import annotations

import hashlib
import io
import logging
import socket
import time
from collections.abc import Iterable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import anyio
import anyio.lowlevel
import httpx
import jwt
import pytest
import redis
import webtest
from itsdangerous import Signer

from logout_middleware import (
    LogoutConfig,
    LogoutEvent,
    LogoutMiddleware,
    WSGILogoutMiddleware,
)

from .harness import CLIENT_ADDRESS, KINDS, Kind, Reply, harness, raw_asgi, raw_wsgi
from .servers import tombstone_key

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

TOKEN = "opaque-token-7f3a9c1e5b"
OTHER_TOKEN = "another-token-0d2b4f6a8c"
SID = "s3ss10n-1d-4bc"
STREAM = "logout:events"
UA = "TestBrowser/1.0 (logout tests)"
LOGGER = "logout_middleware"


# -- helpers ---------------------------------------------------------------------------


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def denylist_key(token: str) -> str:
    return "logout:revoked:" + sha(token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def dead_redis_url() -> str:
    """A Redis URL on a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def keys(client: redis.Redis) -> set[str]:
    return {k.decode() for k in cast("Iterable[bytes]", client.scan_iter())}


def stream_len(client: redis.Redis, name: str = STREAM) -> int:
    return int(client.xlen(name))


def stream_entries(client: redis.Redis, name: str = STREAM) -> list[dict[str, str]]:
    raw = cast("list[tuple[bytes, dict[bytes, bytes]]]", client.xrange(name))
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in raw]


def ttl_of(client: redis.Redis, key: str) -> int:
    return int(client.ttl(key))


def everything_in_redis(client: redis.Redis) -> bytes:
    """Every key and every value (strings, streams, hashes, lists, sets) as one blob."""
    parts: list[bytes] = []
    for key in cast("Iterable[bytes]", client.scan_iter()):
        parts.append(key)
        kind = cast("bytes", client.type(key))
        if kind == b"string":
            parts.append(cast("bytes", client.get(key)) or b"")
        elif kind == b"stream":
            for entry_id, fields in cast(
                "list[tuple[bytes, dict[bytes, bytes]]]", client.xrange(key)
            ):
                parts.append(entry_id)
                for name, value in fields.items():
                    parts += [name, value]
        elif kind == b"hash":
            for name, value in cast("dict[bytes, bytes]", client.hgetall(key)).items():
                parts += [name, value]
        elif kind == b"list":
            parts += cast("list[bytes]", client.lrange(key, 0, -1))
        elif kind == b"set":
            parts += list(cast("set[bytes]", client.smembers(key)))
        elif kind == b"zset":
            parts += cast("list[bytes]", client.zrange(key, 0, -1))
    return b"\n".join(parts)


def parse_set_cookie(value: str) -> tuple[str, str, dict[str, str]]:
    """``name``, ``value`` and attributes (lower-case names; flags map to "")."""
    first, *rest = [part.strip() for part in value.split(";")]
    name, _, cookie_value = first.partition("=")
    attrs: dict[str, str] = {}
    for part in rest:
        if part:
            attr, _, attr_value = part.partition("=")
            attrs[attr.strip().lower()] = attr_value.strip()
    return name, cookie_value, attrs


def expired_cookies(set_cookies: list[str]) -> dict[str, dict[str, str]]:
    """The cookies a response deletes, each with its attributes; asserts each is expired."""
    found: dict[str, dict[str, str]] = {}
    for header in set_cookies:
        name, value, attrs = parse_set_cookie(header)
        assert value == "", header
        assert attrs.get("max-age") == "0", header
        assert "expires" in attrs, header
        assert parsedate_to_datetime(attrs["expires"]).timestamp() < time.time() - 86400, header
        found[name] = attrs
    return found


def cmdstat_calls(client: redis.Redis, command: str) -> int:
    stats = cast("dict[str, dict[str, int]]", client.info("commandstats"))
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def revoked_answer_ok(reply: Reply) -> None:
    assert reply.status == 401
    www = reply.header("www-authenticate")
    assert www is not None
    assert www.startswith('Bearer error="invalid_token"')
    assert "," in www


# -- matching --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_exact_logout_path_is_handled(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", b"x")
    with harness(kind, redis_url) as h:
        reply = h.post_logout(headers={"Cookie": f"session={SID}"})
        assert reply.status == 303
        assert redis_client.exists(f"session:{SID}") == 0
        assert h.seen.requests == []


@pytest.mark.parametrize("kind", KINDS)
def test_custom_logout_path(kind: Kind, redis_url: str, redis_client: redis.Redis) -> None:
    with harness(kind, redis_url, path="/auth/bye") as h:
        assert h.post_logout("/auth/bye").status == 303
        reply = h.post_logout("/logout")
        assert reply.status == 200
        assert reply.body == b"app"
        assert h.seen.requests == [("POST", "/logout", None)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/logout/", "/logoutx", "/Logout", "/x/logout", "/"])
def test_near_miss_paths_pass_through(
    kind: Kind, path: str, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", b"x")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        reply = h.post_logout(path, headers={"Cookie": f"session={SID}"})
        assert reply.status == 200
        assert reply.body == b"app"
        assert reply.set_cookies == []
        assert h.seen.requests == [("POST", path, None)]
    assert redis_client.exists(f"session:{SID}") == 1
    assert events == []
    assert stream_len(redis_client) == 0


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_prefix", [True, False])
def test_mount_point_is_respected(
    kind: Kind, with_prefix: bool, redis_url: str, redis_client: redis.Redis
) -> None:
    """ASGI ``root_path`` (path with or without the prefix) / WSGI ``SCRIPT_NAME``."""
    redis_client.set(f"session:{SID}", b"x")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        cookie = f"session={SID}".encode()
        if kind == "asgi":
            path = "/app/logout" if with_prefix else "/logout"
            reply = raw_asgi(
                h.middleware,
                {
                    "root_path": "/app",
                    "path": path,
                    "raw_path": path.encode(),
                    "headers": [(b"host", b"testserver"), (b"cookie", cookie)],
                },
                portal=h._portal,
            )
        else:
            # PATH_INFO never includes SCRIPT_NAME; with_prefix=False mounts at the root.
            script_name = "/app" if with_prefix else ""
            reply = raw_wsgi(
                h.middleware,
                {
                    "SCRIPT_NAME": script_name,
                    "PATH_INFO": "/logout",
                    "HTTP_COOKIE": cookie.decode(),
                },
            )
        assert reply.status == 303
        assert h.seen.requests == []
    assert redis_client.exists(f"session:{SID}") == 0
    assert len(events) == 1
    expected_path = "/app/logout" if (kind == "asgi" or with_prefix) else "/logout"
    assert events[0].path == expected_path


@pytest.mark.parametrize("kind", KINDS)
def test_mount_point_near_misses_pass_through(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    with harness(kind, redis_url) as h:
        if kind == "asgi":
            for path in ("/app/logout/", "/app/logoutx", "/other/logout", "/app/app/logout"):
                reply = raw_asgi(
                    h.middleware,
                    {"root_path": "/app", "path": path, "raw_path": path.encode()},
                    portal=h._portal,
                )
                assert reply.status == 200, path
                assert reply.body == b"app", path
        else:
            for path_info in ("/logout/", "/logoutx", "/app/logout"):
                reply = raw_wsgi(h.middleware, {"SCRIPT_NAME": "/app", "PATH_INFO": path_info})
                assert reply.status == 200, path_info
                assert reply.body == b"app", path_info
        assert len(h.seen.requests) == (4 if kind == "asgi" else 3)
    assert stream_len(redis_client) == 0


def handshake(
    redis_url: str, headers: list[tuple[bytes, bytes]], extensions: dict[str, Any] | None = None
) -> tuple[list[Any], list[dict[str, Any]]]:
    """One websocket handshake with ``headers`` through the ASGI middleware on a real
    Redis: the scopes the app was called with, and what the middleware sent itself."""
    reached: list[Any] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope)

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "subprotocols": [],
        "headers": headers,
        "extensions": extensions or {},
    }

    async def go() -> None:
        middleware = LogoutMiddleware(app, LogoutConfig(redis_url=redis_url))
        try:
            await middleware(scope, receive, send)
        finally:
            assert middleware.store is not None
            await middleware.store.aclose()

    anyio.run(go)
    return reached, sent


@pytest.mark.parametrize(
    ("extensions", "expected"),
    [
        pytest.param(
            {},
            [{"type": "websocket.close", "code": 1008, "reason": "invalid_token"}],
            id="close-1008",
        ),
        pytest.param(
            {"websocket.http.response": {}},
            ["websocket.http.response.start", "websocket.http.response.body"],
            id="http-401",
        ),
    ],
)
def test_websocket_with_revoked_token_is_refused(
    extensions: dict[str, Any], expected: list[Any], redis_url: str, redis_client: redis.Redis
) -> None:
    """A websocket handshake carrying a revoked token never reaches the app: a 401 where
    the server offers websocket.http.response, else a close before accept (403)."""
    redis_client.set(denylist_key(TOKEN), b"1")
    headers = [(b"host", b"testserver"), (b"authorization", f"Bearer {TOKEN}".encode())]
    reached, sent = handshake(redis_url, headers, extensions)
    assert reached == []
    if extensions:
        assert [m["type"] for m in sent] == expected
        assert sent[0]["status"] == 401
        assert (
            b"www-authenticate",
            b'Bearer error="invalid_token", error_description="The access token has been revoked"',
        ) in sent[0]["headers"]
    else:
        assert sent == expected


def test_websocket_with_a_logged_out_session_reaches_the_app_anonymous(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A websocket handshake carrying a logged-out session's cookie (in any copy) reaches
    the app without it, other cookies kept: the app sees an anonymous handshake."""
    redis_client.set(tombstone_key(SID), b"1")
    headers = [(b"host", b"testserver"), (b"cookie", f"a=1; session ={SID}".encode())]
    reached, sent = handshake(redis_url, headers)
    assert sent == []
    (seen,) = reached
    assert [v for k, v in seen["headers"] if k == b"cookie"] == [b"a=1"]


@pytest.mark.parametrize("kind", KINDS)
def test_non_http_scopes_pass_through_untouched(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """ASGI lifespan and websocket scopes reach the app as they are (even at /logout, and
    with a token that is not revoked); the WSGI environ of a non-logout request reaches it
    unchanged."""
    redis_client.set(denylist_key(TOKEN), b"1")
    config = LogoutConfig(redis_url=redis_url)
    if kind == "asgi":
        got: list[tuple[Any, Any, Any]] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            got.append((scope, receive, send))

        async def receive() -> dict[str, Any]:
            return {"type": "lifespan.startup"}

        async def send(message: Any) -> None:
            raise AssertionError(f"middleware sent {message!r}")

        lifespan = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        websocket = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": "/logout",
            "raw_path": b"/logout",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"authorization", b"Bearer not-revoked")],
            "subprotocols": [],
        }
        before = (repr(lifespan), repr(websocket))

        async def go() -> None:
            middleware = LogoutMiddleware(app, config)
            try:
                await middleware(lifespan, receive, send)
                await middleware(websocket, receive, send)
            finally:
                assert middleware.store is not None
                await middleware.store.aclose()

        anyio.run(go)
        assert len(got) == 2
        assert got[0][0] is lifespan
        assert got[1][0] is websocket
        assert all(r is receive and s is send for _, r, s in got)
        assert (repr(lifespan), repr(websocket)) == before
    else:
        seen: list[WSGIEnvironment] = []

        def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            seen.append(environ)
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"app"]

        middleware = WSGILogoutMiddleware(wsgi_app, config)
        try:
            environ: dict[str, Any] = {
                "REQUEST_METHOD": "POST",
                "SCRIPT_NAME": "",
                "PATH_INFO": "/logout/",
                "QUERY_STRING": "",
                "SERVER_NAME": "testserver",
                "SERVER_PORT": "80",
                "HTTP_HOST": "testserver",
                "HTTP_COOKIE": f"session={SID}",
                "wsgi.url_scheme": "http",
                "wsgi.input": io.BytesIO(b"next=/x"),
            }
            untouched = dict(environ)

            def start_response(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Any:
                return lambda data: None

            body = b"".join(middleware(environ, start_response))
        finally:
            assert middleware.store is not None
            middleware.store.close()
        assert body == b"app"
        assert len(seen) == 1
        assert seen[0] is environ
        assert environ == untouched
        assert environ["wsgi.input"].read() == b"next=/x"


# -- methods ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405_and_change_nothing(
    kind: Kind, method: str, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", b"data")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        reply = h.request(
            method, "/logout?next=/bye", headers={"Cookie": f"session={SID}", **bearer(TOKEN)}
        )
        assert reply.status == 405
        allow = reply.header("allow")
        assert allow is not None
        assert [m.strip() for m in allow.split(",")] == ["POST"]
        assert reply.set_cookies == []
        assert reply.header("location") is None
        assert h.seen.requests == []
        # The token was not revoked: it still reaches the app.
        assert h.request("GET", "/api", headers=bearer(TOKEN)).status == 200
    assert redis_client.get(f"session:{SID}") == b"data"
    assert redis_client.exists(denylist_key(TOKEN)) == 0
    assert redis_client.exists(STREAM) == 0
    assert keys(redis_client) == {f"session:{SID}"}
    assert events == []


@pytest.mark.parametrize("kind", KINDS)
def test_configured_methods_log_out(kind: Kind, redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.set(f"session:{SID}", b"data")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, methods=("POST", "DELETE")) as h:
        put = h.request("PUT", "/logout", headers={"Cookie": f"session={SID}"})
        assert put.status == 405
        allow = put.header("allow")
        assert allow is not None
        assert {m.strip() for m in allow.split(",")} == {"POST", "DELETE"}
        assert redis_client.exists(f"session:{SID}") == 1

        reply = h.request("DELETE", "/logout", headers={"Cookie": f"session={SID}"})
        assert reply.status == 303
        assert redis_client.exists(f"session:{SID}") == 0
        assert "session" in expired_cookies(reply.set_cookies)

        assert h.request("POST", "/logout").status == 303
    assert [e.method for e in events] == ["DELETE", "POST"]
    assert stream_len(redis_client) == 2


# -- cookies ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_default_session_cookie_expired(kind: Kind, redis_url: str) -> None:
    with harness(kind, redis_url) as h:
        reply = h.post_logout()
    cookies = expired_cookies(reply.set_cookies)
    assert set(cookies) == {"session"}
    assert cookies["session"]["path"] == "/"
    assert "domain" not in cookies["session"]
    assert "secure" not in cookies["session"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_cookie_expired_with_its_attributes(kind: Kind, scheme: str, redis_url: str) -> None:
    with harness(
        kind,
        redis_url,
        cookies=("remember", "csrftoken", "__Host-x", "__Secure-x"),
        session_cookie="sid",
        cookie_path="/app",
        cookie_domain="example.com",
    ) as h:
        reply = h.post_logout(scheme=scheme, host="www.example.com")
    assert reply.status == 303
    cookies = expired_cookies(reply.set_cookies)
    assert set(cookies) == {"remember", "csrftoken", "__Host-x", "__Secure-x", "sid"}
    assert len(reply.set_cookies) == 5
    for name in ("remember", "csrftoken", "sid", "__Secure-x"):
        assert cookies[name]["path"] == "/app", name
        assert cookies[name]["domain"].lstrip(".") == "example.com", name
    for name in ("remember", "csrftoken", "sid"):
        assert ("secure" in cookies[name]) == (scheme == "https"), name
    host = cookies["__Host-x"]
    assert "secure" in host
    assert host["path"] == "/"
    assert "domain" not in host
    assert "secure" in cookies["__Secure-x"]


# -- server-side session ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "templates",
    [("session:{sid}",), ("starsessions.{sid}",), ("session:{sid}", "starsessions.{sid}")],
)
def test_session_keys_deleted(
    kind: Kind, templates: tuple[str, ...], redis_url: str, redis_client: redis.Redis
) -> None:
    wanted = [t.replace("{sid}", SID) for t in templates]
    bystanders = ["session:other", "starsessions.other", f"unrelated:{SID}", SID]
    for key in [*wanted, *bystanders]:
        redis_client.set(key, b"v")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, session_keys=templates) as h:
        reply = h.post_logout(headers={"Cookie": f"theme=dark; session={SID}"})
    assert reply.status == 303
    for key in wanted:
        assert redis_client.exists(key) == 0, key
    for key in bystanders:
        assert redis_client.exists(key) == 1, key
    assert len(events) == 1
    assert events[0].sessions_deleted == len(wanted)
    assert events[0].session_id_hash == sha(SID)


@pytest.mark.parametrize("kind", KINDS)
def test_no_session_cookie_deletes_nothing(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", b"v")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        reply = h.post_logout(headers={"Cookie": f"other={SID}"})
    assert reply.status == 303
    assert redis_client.exists(f"session:{SID}") == 1
    assert events[0].session_id_hash is None
    assert events[0].sessions_deleted == 0


@pytest.mark.parametrize("kind", KINDS)
def test_signed_session_id(kind: Kind, redis_url: str, redis_client: redis.Redis) -> None:
    secret = "flask-secret-key"
    signed = Signer(secret, salt="flask-session", key_derivation="hmac").sign(SID).decode()
    assert signed != SID
    redis_client.set(f"session:{SID}", b"v")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, session_secret=secret) as h:
        reply = h.post_logout(headers={"Cookie": f"session={signed}"})
    assert reply.status == 303
    assert redis_client.exists(f"session:{SID}") == 0
    assert events[0].sessions_deleted == 1
    assert events[0].session_id_hash == sha(SID)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("signer_secret", ["wrong-secret", None])
def test_bad_signature_deletes_nothing(
    kind: Kind, signer_secret: str | None, redis_url: str, redis_client: redis.Redis
) -> None:
    secret = "flask-secret-key"
    if signer_secret is None:
        value = SID  # unsigned id where a signed one is expected
    else:
        signer = Signer(signer_secret, salt="flask-session", key_derivation="hmac")
        value = signer.sign(SID).decode()
    redis_client.set(f"session:{SID}", b"v")
    redis_client.set(f"session:{value}", b"v")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, session_secret=secret) as h:
        reply = h.post_logout(headers={"Cookie": f"session={value}"})
    assert reply.status == 303
    assert reply.header("location") == "/"
    assert "session" in expired_cookies(reply.set_cookies)
    assert redis_client.exists(f"session:{SID}") == 1
    assert redis_client.exists(f"session:{value}") == 1
    assert events[0].sessions_deleted == 0
    assert events[0].store == "ok"


# -- bearer tokens ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_opaque_token_revoked_with_token_ttl(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, token_ttl=1234) as h:
        reply = h.post_logout(headers=bearer(TOKEN))
        assert reply.status == 303
    key = denylist_key(TOKEN)
    assert redis_client.exists(key) == 1
    assert 1200 <= ttl_of(redis_client, key) <= 1234
    assert events[0].token_hash == sha(TOKEN)
    assert events[0].token_ttl == 1234
    assert TOKEN.encode() not in everything_in_redis(redis_client)
    assert [k for k in keys(redis_client) if k.startswith("logout:revoked:")] == [key]


@pytest.mark.parametrize("kind", KINDS)
def test_jwt_revoked_until_exp_plus_leeway(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    exp = int(time.time()) + 600
    token = jwt.encode({"sub": "ann", "exp": exp}, "jwt-signing-key-of-32-bytes-or-more!!", "HS256")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, token_ttl=5) as h:
        assert h.post_logout(headers=bearer(token)).status == 303
        revoked_answer_ok(h.request("GET", "/api", headers=bearer(token)))
        assert h.seen.requests == []
    expected = exp - int(time.time()) + 60
    ttl = ttl_of(redis_client, denylist_key(token))
    assert expected - 30 <= ttl <= expected + 1
    assert events[0].token_ttl is not None
    assert expected - 30 <= events[0].token_ttl <= expected + 1
    assert token.encode() not in everything_in_redis(redis_client)


@pytest.mark.parametrize("kind", KINDS)
def test_far_jwt_exp_capped_at_token_max_ttl(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    token = jwt.encode({"exp": int(time.time()) + 10**7}, "k" * 32, "HS256")
    with harness(kind, redis_url, token_max_ttl=900) as h:
        assert h.post_logout(headers=bearer(token)).status == 303
    assert 870 <= ttl_of(redis_client, denylist_key(token)) <= 900


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_token_refused_everywhere_others_pass(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    with harness(kind, redis_url) as h:
        assert h.request("GET", "/api", headers=bearer(TOKEN)).status == 200
        assert h.seen.requests == [("GET", "/api", f"Bearer {TOKEN}")]
        h.seen.requests.clear()

        assert h.post_logout(headers={**bearer(TOKEN), "Cookie": f"session={SID}"}).status == 303
        assert redis_client.exists(denylist_key(TOKEN)) == 1

        for method, path in [
            ("GET", "/api"),
            ("POST", "/api/items"),
            ("DELETE", "/x"),
            ("GET", "/"),
        ]:
            reply = h.request(method, path, headers=bearer(TOKEN))
            revoked_answer_ok(reply)
            assert reply.body != b"app"
        revoked_answer_ok(h.request("GET", "/api", headers={"Authorization": f"bearer {TOKEN}"}))
        assert h.seen.requests == []

        ok_other = h.request("GET", "/api", headers=bearer(OTHER_TOKEN))
        ok_none = h.request("GET", "/api")
        ok_basic = h.request("GET", "/api", headers={"Authorization": "Basic YTpi"})
        for reply in (ok_other, ok_none, ok_basic):
            assert reply.status == 200
            assert reply.body == b"app"
        assert h.seen.requests == [
            ("GET", "/api", f"Bearer {OTHER_TOKEN}"),
            ("GET", "/api", None),
            ("GET", "/api", "Basic YTpi"),
        ]
    assert TOKEN.encode() not in everything_in_redis(redis_client)
    assert SID.encode() not in everything_in_redis(redis_client)


@pytest.mark.parametrize("kind", KINDS)
def test_revoke_tokens_false_disables_revocation_and_checks(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    # A token already on the denylist is not refused either.
    redis_client.set(denylist_key(OTHER_TOKEN), b"1")
    with harness(kind, redis_url, revoke_tokens=False) as h:
        assert h.post_logout(headers=bearer(TOKEN)).status == 303
        assert h.request("GET", "/api", headers=bearer(TOKEN)).status == 200
        assert h.request("GET", "/api", headers=bearer(OTHER_TOKEN)).status == 200
        assert len(h.seen.requests) == 2
    assert redis_client.exists(denylist_key(TOKEN)) == 0
    assert [k for k in keys(redis_client) if k.startswith("logout:revoked:")] == [
        denylist_key(OTHER_TOKEN)
    ]
    assert stream_len(redis_client) == 1


# -- one round trip --------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_logout_is_one_multi_exec(kind: Kind, redis_url: str, redis_client: redis.Redis) -> None:
    """One transaction per logout; before it, with LOGOUT_SESSION_SUBJECT, one read of
    the session record when this process has not read it within the last minute (to
    learn whose session it is)."""
    redis_client.set(f"session:{SID}", b"v")
    with harness(kind, redis_url, session_subject="user") as h:
        redis_client.config_resetstat()
        headers = {"Cookie": f"session={SID}", **bearer(TOKEN)}
        assert h.post_logout(headers=headers).status == 303
        assert cmdstat_calls(redis_client, "get") == 1
        assert cmdstat_calls(redis_client, "multi") == 1
        assert cmdstat_calls(redis_client, "exec") == 1
        assert cmdstat_calls(redis_client, "del") == 1
        # The token, the session tombstone, and the audit entry's write-once claim.
        assert cmdstat_calls(redis_client, "set") == 3
        assert cmdstat_calls(redis_client, "xadd") == 1
        assert cmdstat_calls(redis_client, "exists") == 0
        assert h.post_logout(headers=headers).status == 303
        assert cmdstat_calls(redis_client, "get") == 1  # read a moment ago: not again
        assert cmdstat_calls(redis_client, "multi") == 2
        assert cmdstat_calls(redis_client, "exec") == 2
        assert cmdstat_calls(redis_client, "xadd") == 2


# -- events ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_listener_gets_one_event_without_secrets(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", b"v")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        reply = h.post_logout(
            "/logout?next=/bye",
            headers={"Cookie": f"session={SID}", "User-Agent": UA, **bearer(TOKEN)},
        )
    assert reply.status == 303
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, LogoutEvent)
    assert event.method == "POST"
    assert event.path == "/logout"
    assert event.session_id_hash == sha(SID)
    assert event.token_hash == sha(TOKEN)
    assert event.sessions_deleted == 1
    assert event.client == CLIENT_ADDRESS
    assert event.user_agent == UA
    assert event.redirect == "/bye"
    assert event.store == "ok"
    assert event.store_error is None
    assert "session" in event.cookies
    assert len(event.id) == 32
    assert event.at.tzinfo is not None
    assert abs(event.at.timestamp() - time.time()) < 300
    assert SID not in repr(event)
    assert TOKEN not in repr(event)

    entries = stream_entries(redis_client)
    assert len(entries) == 1
    entry = entries[0]
    assert entry["id"] == event.id
    assert entry["token_hash"] == sha(TOKEN)
    assert entry["session_id_hash"] == sha(SID)
    assert entry["client"] == CLIENT_ADDRESS
    assert entry["user_agent"] == UA
    assert entry["redirect"] == "/bye"
    assert entry["store"] == "ok"
    blob = everything_in_redis(redis_client)
    assert TOKEN.encode() not in blob
    assert SID.encode() not in blob


@pytest.mark.parametrize("kind", KINDS)
def test_raising_listener_is_logged_and_others_run(
    kind: Kind, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client.set(f"session:{SID}", b"v")
    before: list[LogoutEvent] = []
    after: list[LogoutEvent] = []

    def boom(event: LogoutEvent) -> None:
        raise RuntimeError("listener exploded")

    with (
        harness(kind, redis_url, on_logout=[before.append, boom, after.append]) as h,
        caplog.at_level(logging.ERROR, logger=LOGGER),
    ):
        reply = h.post_logout(headers={"Cookie": f"session={SID}"})
    assert reply.status == 303
    assert "session" in expired_cookies(reply.set_cookies)
    assert redis_client.exists(f"session:{SID}") == 0
    assert len(before) == 1
    assert len(after) == 1
    assert before[0] is after[0]
    failures = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert isinstance(failures[0].exc_info[1], RuntimeError)
    assert stream_len(redis_client) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_coroutine_listeners(kind: Kind, redis_url: str, redis_client: redis.Redis) -> None:
    """ASGI awaits coroutine listeners (one raising does not stop the rest); WSGI refuses
    them with TypeError at construction."""
    got: list[LogoutEvent] = []

    async def record(event: LogoutEvent) -> None:
        await anyio.lowlevel.checkpoint()
        got.append(event)

    async def explode(event: LogoutEvent) -> None:
        raise RuntimeError("async listener exploded")

    if kind == "wsgi":
        with pytest.raises(TypeError, match="coroutine"):
            WSGILogoutMiddleware(lambda e, s: [b""], LogoutConfig(), on_logout=record)
        with pytest.raises(TypeError, match="coroutine"):
            WSGILogoutMiddleware(lambda e, s: [b""], LogoutConfig(), on_logout=[got.append, record])
        return
    sync_got: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=[explode, record, sync_got.append]) as h:
        assert h.post_logout().status == 303
    assert len(got) == 1
    assert sync_got == got


@pytest.mark.parametrize("kind", KINDS)
def test_not_callable_listener_refused(kind: Kind) -> None:
    factory: Any = LogoutMiddleware if kind == "asgi" else WSGILogoutMiddleware
    with pytest.raises(TypeError):
        factory(lambda *a: None, LogoutConfig(), on_logout=["not callable"])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stream", ["logout:events", "audit:logouts"])
def test_one_stream_entry_per_logout(
    kind: Kind, stream: str, redis_url: str, redis_client: redis.Redis
) -> None:
    with harness(kind, redis_url, events_stream=stream) as h:
        for n in range(1, 4):
            assert h.post_logout().status == 303
            assert stream_len(redis_client, stream) == n
        # Refused and passed-through requests write nothing.
        assert h.request("GET", "/logout").status == 405
        assert h.request("POST", "/elsewhere").status == 200
    assert stream_len(redis_client, stream) == 3
    streams = {k.decode() for k in cast("Iterable[bytes]", redis_client.scan_iter(_type="stream"))}
    assert streams == {stream}


@pytest.mark.parametrize("kind", KINDS)
def test_empty_events_stream_writes_none(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", b"v")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, events_stream="") as h:
        reply = h.post_logout(headers={"Cookie": f"session={SID}", **bearer(TOKEN)})
    assert reply.status == 303
    assert list(cast("Iterable[bytes]", redis_client.scan_iter(_type="stream"))) == []
    assert keys(redis_client) == {denylist_key(TOKEN), f"logout:revoked-session:{sha(SID)}"}
    assert events[0].store == "ok"


# -- response --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("target", ["/bye", "/dashboard?tab=1#top", "http://testserver/home", "/"])
def test_safe_next_from_query(kind: Kind, target: str, redis_url: str) -> None:
    with harness(kind, redis_url) as h:
        reply = h.post_logout(f"/logout?next={quote(target, safe='')}")
    assert reply.status == 303
    assert reply.header("location") == target
    assert reply.header("cache-control") == "no-store"


@pytest.mark.parametrize("kind", KINDS)
def test_safe_next_from_form_body(kind: Kind, redis_url: str) -> None:
    with harness(kind, redis_url) as h:
        reply = h.post_logout(
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            body=b"csrf=abc&next=%2Fsee-you%3Fx%3D1",
        )
    assert reply.status == 303
    assert reply.header("location") == "/see-you?x=1"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "http://testserver.evil.example/",
        "javascript:alert(1)",
        "/\\evil.example",
        "https:evil.example",
        "http://user@testserver/",
        " /x",
    ],
)
@pytest.mark.parametrize("where", ["query", "form"])
def test_unsafe_next_falls_back(kind: Kind, target: str, where: str, redis_url: str) -> None:
    with harness(kind, redis_url) as h:
        if where == "query":
            reply = h.post_logout(f"/logout?next={quote(target, safe='')}")
        else:
            reply = h.post_logout(
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                body=f"next={quote(target, safe='')}".encode(),
            )
    assert reply.status == 303
    assert reply.header("location") == "/"


@pytest.mark.parametrize("kind", KINDS)
def test_custom_next_uri(kind: Kind, redis_url: str) -> None:
    with harness(kind, redis_url, next_uri="/signed-out") as h:
        plain = h.post_logout()
        unsafe = h.post_logout("/logout?next=//evil.example")
        safe = h.post_logout("/logout?next=/elsewhere")
    assert plain.header("location") == "/signed-out"
    assert unsafe.header("location") == "/signed-out"
    assert safe.header("location") == "/elsewhere"


@pytest.mark.parametrize("kind", KINDS)
def test_json_client_gets_200(kind: Kind, redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.set(f"session:{SID}", b"v")
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        reply = h.post_logout(
            "/logout?next=/bye",
            headers={"Accept": "application/json", "Cookie": f"session={SID}"},
        )
    assert reply.status == 200
    assert reply.json() == {"success": True}
    content_type = reply.header("content-type")
    assert content_type is not None
    assert content_type.startswith("application/json")
    assert reply.header("location") is None
    assert reply.header("cache-control") == "no-store"
    assert "session" in expired_cookies(reply.set_cookies)
    assert redis_client.exists(f"session:{SID}") == 0
    assert events[0].redirect is None


@pytest.mark.parametrize("kind", KINDS)
def test_cache_control_no_store_on_logout_responses(kind: Kind, redis_url: str) -> None:
    with harness(kind, redis_url) as h:
        replies = [
            h.post_logout(),
            h.post_logout(headers={"Accept": "application/json"}),
            h.request("GET", "/logout"),
        ]
    assert [r.status for r in replies] == [303, 200, 405]
    for reply in replies:
        assert reply.header("cache-control") == "no-store"


# -- Redis unreachable -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_store_down_fail_answers_503(kind: Kind) -> None:
    events: list[LogoutEvent] = []
    with harness(kind, dead_redis_url(), on_logout=events.append, redis_timeout=0.3) as h:
        reply = h.post_logout(
            "/logout?next=/bye", headers={"Cookie": f"session={SID}", **bearer(TOKEN)}
        )
        assert h.seen.requests == []
    assert reply.status == 503
    assert "session" in expired_cookies(reply.set_cookies)
    assert reply.header("cache-control") == "no-store"
    assert reply.header("location") is None
    text = reply.body.decode()
    assert "could not be ended" in text
    if (reply.header("content-type") or "").startswith("application/json"):
        assert reply.json()["success"] is False
    assert len(events) == 1
    assert events[0].store == "failed"
    assert events[0].store_error
    assert events[0].sessions_deleted == 0


@pytest.mark.parametrize("kind", KINDS)
def test_store_down_succeed_answers_303(kind: Kind) -> None:
    events: list[LogoutEvent] = []
    with harness(
        kind,
        dead_redis_url(),
        on_logout=events.append,
        redis_timeout=0.3,
        on_store_error="succeed",
    ) as h:
        reply = h.post_logout("/logout?next=/bye", headers={"Cookie": f"session={SID}"})
    assert reply.status == 303
    assert reply.header("location") == "/bye"
    assert "session" in expired_cookies(reply.set_cookies)
    assert len(events) == 1
    assert events[0].store == "failed"
    assert events[0].redirect == "/bye"


@pytest.mark.parametrize("kind", KINDS)
def test_store_down_json_client_gets_503_json(kind: Kind) -> None:
    with harness(kind, dead_redis_url(), redis_timeout=0.3) as h:
        reply = h.post_logout(headers={"Accept": "application/json"})
    assert reply.status == 503
    assert reply.json()["success"] is False
    assert "could not be ended" in reply.body.decode()


@pytest.mark.parametrize("kind", KINDS)
def test_store_down_bearer_check_allow(kind: Kind) -> None:
    with harness(kind, dead_redis_url(), redis_timeout=0.3, on_check_error="allow") as h:
        reply = h.request("GET", "/api", headers=bearer(TOKEN))
        assert reply.status == 200
        assert reply.body == b"app"
        assert h.seen.requests == [("GET", "/api", f"Bearer {TOKEN}")]


@pytest.mark.parametrize("kind", KINDS)
def test_store_down_bearer_check_deny(kind: Kind) -> None:
    with harness(kind, dead_redis_url(), redis_timeout=0.3, on_check_error="deny") as h:
        reply = h.request("GET", "/api", headers=bearer(TOKEN))
        assert reply.status == 503
        assert h.seen.requests == []
        # Requests without a bearer token are not checked at all.
        assert h.request("GET", "/api").status == 200
        assert h.seen.requests == [("GET", "/api", None)]


# -- without Redis ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_without_redis_cookies_only(
    kind: Kind, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    redis_client.set(f"session:{SID}", b"v")
    events: list[LogoutEvent] = []
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        harness(kind, None, on_logout=events.append) as h,
    ):
        warnings = [r for r in caplog.records if r.name == LOGGER]
        assert len(warnings) == 1
        assert warnings[0].levelno == logging.WARNING
        assert "LOGOUT_REDIS_URL" in warnings[0].getMessage()
        reply = h.post_logout(headers={"Cookie": f"session={SID}", **bearer(TOKEN)})
        assert reply.status == 303
        assert reply.header("location") == "/"
        assert "session" in expired_cookies(reply.set_cookies)
        # Tokens are neither revoked nor checked.
        assert h.request("GET", "/api", headers=bearer(TOKEN)).status == 200
    assert redis_client.exists(f"session:{SID}") == 1
    assert keys(redis_client) == {f"session:{SID}"}
    assert len(events) == 1
    assert events[0].store == "disabled"


# -- real frameworks -------------------------------------------------------------------


@pytest.fixture
def env_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    for name in ("LOGOUT_PATH", "LOGOUT_METHODS", "LOGOUT_COOKIES", "LOGOUT_SESSION_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOGOUT_REDIS_URL", redis_url)


def _fastapi_round(redis_client: redis.Redis) -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/me")
    async def me() -> dict[str, str]:
        return {"user": "ann"}

    app.add_middleware(LogoutMiddleware)

    async def go() -> None:
        transport = httpx.ASGITransport(app=app, client=(CLIENT_ADDRESS, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            try:
                first = await client.get("/me", headers=bearer(TOKEN))
                assert first.status_code == 200
                assert first.json() == {"user": "ann"}
                out = await client.post(
                    "/logout?next=/bye",
                    headers={**bearer(TOKEN), "Cookie": f"session={SID}"},
                )
                assert out.status_code == 303
                assert out.headers["location"] == "/bye"
                assert "session=;" in out.headers["set-cookie"]
                again = await client.get("/me", headers=bearer(TOKEN))
                assert again.status_code == 401
                assert again.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
                assert (await client.get("/me")).status_code == 200
                assert (await client.get("/logout")).status_code == 405
            finally:
                await _close_asgi_store(app)

    anyio.run(go)


async def _close_asgi_store(app: Any) -> None:
    layer: Any = getattr(app, "middleware_stack", None)
    found = False
    while layer is not None:
        if isinstance(layer, LogoutMiddleware):
            found = True
            if layer.store is not None:
                await layer.store.aclose()
        layer = getattr(layer, "app", None)
    assert found, "LogoutMiddleware not in the FastAPI middleware stack"


def _flask_round(redis_client: redis.Redis) -> None:
    from flask import Flask, session
    from flask_session import Session

    app = Flask(__name__)
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis_client, SECRET_KEY="k" * 32)
    Session(app)

    @app.post("/login")
    def login() -> str:
        session["user"] = "ann"
        return "in"

    @app.get("/me")
    def me() -> str:
        return str(session.get("user", "nobody"))

    middleware = WSGILogoutMiddleware(app.wsgi_app)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    try:
        client = webtest.TestApp(app)
        logged_in = client.post("/login")
        assert logged_in.status_int == 200
        sid = client.cookies["session"]
        assert sid
        assert redis_client.exists(f"session:{sid}") == 1
        assert client.get("/me").text == "ann"
        out = client.post("/logout", headers=bearer(TOKEN), status=303)
        assert out.headers["Location"].endswith("/")
        assert redis_client.exists(f"session:{sid}") == 0
        assert client.get("/me", headers={"Cookie": f"session={sid}"}).text == "nobody"
        denied = client.get("/me", headers=bearer(TOKEN), status=401)
        assert denied.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        client.get("/logout", status=405)
    finally:
        assert middleware.store is not None
        middleware.store.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.usefixtures("env_redis")
def test_real_framework_integration(kind: Kind, redis_client: redis.Redis) -> None:
    """FastAPI: ``app.add_middleware(LogoutMiddleware)``; Flask (with Flask-Session on
    the same Redis): ``app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)``; both
    configured from ``LOGOUT_*`` only."""
    redis_client.set(f"session:{SID}", b"v")
    if kind == "asgi":
        _fastapi_round(redis_client)
        assert redis_client.exists(f"session:{SID}") == 0
    else:
        _flask_round(redis_client)
    assert redis_client.exists(denylist_key(TOKEN)) == 1
    assert stream_len(redis_client) == 1


def test_two_authorization_headers_are_refused(redis_url: str) -> None:
    """ASGI keeps repeated headers apart: a request with two ``Authorization`` headers
    (one of them a revoked token, the other not) gets ``400 invalid_request`` and never
    reaches the app, whichever of the two the app would have read."""
    with harness("asgi", redis_url) as h:
        assert h.post_logout(headers=bearer(TOKEN)).status == 303
        for pair in ((TOKEN, "fresh"), ("fresh", TOKEN)):
            reply = raw_asgi(
                h.middleware,
                {
                    "method": "GET",
                    "path": "/api",
                    "raw_path": b"/api",
                    "headers": [
                        (b"host", b"testserver"),
                        *((b"authorization", f"Bearer {t}".encode()) for t in pair),
                    ],
                },
                portal=h._portal,
            )
            assert reply.status == 400
            assert reply.header("www-authenticate") == 'Bearer error="invalid_request"'
        assert all(path != "/api" for _method, path, _auth in h.seen.requests)
