"""The serve factories: ``LOGOUT_APP`` (and ``LOGOUT_ON_LOGOUT``) loaded from an environ."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from logout_middleware import LogoutMiddleware, WSGILogoutMiddleware
from logout_middleware.config import ConfigError
from logout_middleware.serve import asgi, wsgi
from logout_middleware.store import AsyncRedisStore, RedisStore

from . import apps_for_serve

MODULE = "tests.apps_for_serve"
Factory = Callable[..., Any]
FACTORIES: list[tuple[str, Factory, str]] = [
    ("asgi", asgi, f"{MODULE}:asgi_app"),
    ("wsgi", wsgi, f"{MODULE}:wsgi_app"),
]


@pytest.fixture(autouse=True)
def clear_received() -> Iterator[None]:
    apps_for_serve.received.clear()
    yield
    apps_for_serve.received.clear()


def call_wsgi(
    app: WSGILogoutMiddleware, method: str, path: str, **environ: str
) -> tuple[str, dict[str, str], bytes]:
    """Call a WSGI app once; ``(status line, headers, body)``."""
    full: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "example.com",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "example.com",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        **environ,
    }
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started.append((status, headers))
        return lambda data: None

    body = b"".join(app(full, start_response))
    status, headers = started[0]
    return status, {k.lower(): v for k, v in headers}, body


async def call_asgi(
    app: LogoutMiddleware, method: str, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Call an ASGI app once; ``(status, headers, body)``."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"example.com"), *(headers or [])],
        "client": ("203.0.113.7", 50000),
        "server": ("example.com", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    await app(scope, receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), body


# -- LOGOUT_APP missing or bad ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "factory"), [(k, f) for k, f, _ in FACTORIES], ids=["asgi", "wsgi"]
)
@pytest.mark.parametrize(
    "environ",
    [{}, {"LOGOUT_APP": ""}, {"LOGOUT_APP": "   "}, {"OTHER": "x:y", "LOGOUT_PATH": "/bye"}],
    ids=["empty-environ", "empty", "blank", "others-only"],
)
def test_logout_app_unset(kind: str, factory: Factory, environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        factory(environ)
    assert str(caught.value).startswith("LOGOUT_APP: ")


BAD_TARGETS = [
    ("no-colon", MODULE),
    ("no-colon-dotted", f"{MODULE}.asgi_app"),
    ("missing-module", "no_such_module_for_logout_tests:app"),
    ("missing-attribute", f"{MODULE}:no_such_app"),
    ("missing-nested-attribute", f"{MODULE}:Nested.missing"),
    ("empty-module", ":app"),
    ("double-colon", f"{MODULE}::asgi_app"),
    ("empty-attribute", f"{MODULE}:"),
    ("not-callable", f"{MODULE}:NOT_CALLABLE"),
]


@pytest.mark.parametrize(
    ("kind", "factory"), [(k, f) for k, f, _ in FACTORIES], ids=["asgi", "wsgi"]
)
@pytest.mark.parametrize("target", [t for _, t in BAD_TARGETS], ids=[i for i, _ in BAD_TARGETS])
def test_logout_app_bad_import_string(kind: str, factory: Factory, target: str) -> None:
    with pytest.raises(ConfigError) as caught:
        factory({"LOGOUT_APP": target})
    message = str(caught.value)
    assert message.startswith("LOGOUT_APP: ")
    assert repr(target) in message


# -- LOGOUT_APP good -------------------------------------------------------------------


def test_asgi_wraps_app() -> None:
    middleware = asgi({"LOGOUT_APP": f" {MODULE}:asgi_app ", "LOGOUT_PATH": "/bye"})
    assert isinstance(middleware, LogoutMiddleware)
    assert middleware.app is apps_for_serve.asgi_app
    assert middleware.config.path == "/bye"
    assert middleware.store is None
    assert middleware.listeners == ()


def test_wsgi_wraps_app() -> None:
    middleware = wsgi({"LOGOUT_APP": f"{MODULE}:wsgi_app", "LOGOUT_COOKIES": "a,b"})
    assert isinstance(middleware, WSGILogoutMiddleware)
    assert middleware.app is apps_for_serve.wsgi_app
    assert middleware.config.cookies == ("a", "b")
    assert middleware.store is None
    assert middleware.listeners == ()


def test_wsgi_dotted_attribute() -> None:
    middleware = wsgi({"LOGOUT_APP": f"{MODULE}:Nested.app"})
    assert middleware.app is apps_for_serve.Nested.app


@pytest.mark.parametrize(("kind", "factory", "target"), FACTORIES, ids=["asgi", "wsgi"])
def test_reads_os_environ_by_default(
    monkeypatch: pytest.MonkeyPatch, kind: str, factory: Factory, target: str
) -> None:
    monkeypatch.setenv("LOGOUT_APP", target)
    monkeypatch.setenv("LOGOUT_PATH", "/signout")
    monkeypatch.delenv("LOGOUT_REDIS_URL", raising=False)
    monkeypatch.delenv("LOGOUT_ON_LOGOUT", raising=False)
    middleware = factory()
    assert middleware.app is getattr(apps_for_serve, target.split(":")[1])
    assert middleware.config.path == "/signout"


@pytest.mark.parametrize(("kind", "factory", "target"), FACTORIES, ids=["asgi", "wsgi"])
def test_other_settings_validated(kind: str, factory: Factory, target: str) -> None:
    with pytest.raises(ConfigError) as caught:
        factory({"LOGOUT_APP": target, "LOGOUT_TOKEN_TTL": "soon"})
    assert str(caught.value).startswith("LOGOUT_TOKEN_TTL: ")


def test_wsgi_serves_app_and_logout() -> None:
    middleware = wsgi({"LOGOUT_APP": f"{MODULE}:wsgi_app"})
    status, _, body = call_wsgi(middleware, "GET", "/home")
    assert (status, body) == ("200 OK", b"wsgi app")
    status, headers, _ = call_wsgi(middleware, "POST", "/logout")
    assert status.startswith("303")
    assert headers["location"] == "/"
    status, headers, _ = call_wsgi(middleware, "GET", "/logout")
    assert status.startswith("405")


@pytest.mark.anyio
async def test_asgi_serves_app_and_logout() -> None:
    middleware = asgi({"LOGOUT_APP": f"{MODULE}:asgi_app"})
    status, _, body = await call_asgi(middleware, "GET", "/home")
    assert (status, body) == (200, b"asgi app")
    status, headers, _ = await call_asgi(middleware, "POST", "/logout")
    assert status == 303
    assert headers[b"location"] == b"/"


# -- LOGOUT_ON_LOGOUT ------------------------------------------------------------------


def test_wsgi_loads_listener() -> None:
    middleware = wsgi(
        {"LOGOUT_APP": f"{MODULE}:wsgi_app", "LOGOUT_ON_LOGOUT": f"{MODULE}:on_logout"}
    )
    assert middleware.listeners == (apps_for_serve.on_logout,)
    call_wsgi(middleware, "GET", "/home")
    assert apps_for_serve.received == []
    status, _, _ = call_wsgi(middleware, "POST", "/logout", HTTP_USER_AGENT="test-agent")
    assert status.startswith("303")
    (event,) = apps_for_serve.received
    assert event.path == "/logout"
    assert event.user_agent == "test-agent"
    assert event.store == "disabled"


@pytest.mark.anyio
@pytest.mark.parametrize("listener", ["on_logout", "on_logout_async"])
async def test_asgi_loads_listener(listener: str) -> None:
    middleware = asgi(
        {"LOGOUT_APP": f"{MODULE}:asgi_app", "LOGOUT_ON_LOGOUT": f"{MODULE}:{listener}"}
    )
    assert middleware.listeners == (getattr(apps_for_serve, listener),)
    status, _, _ = await call_asgi(middleware, "POST", "/logout")
    assert status == 303
    (event,) = apps_for_serve.received
    assert event.client == "203.0.113.7"


def test_listener_unset_or_empty_means_none() -> None:
    middleware = wsgi({"LOGOUT_APP": f"{MODULE}:wsgi_app", "LOGOUT_ON_LOGOUT": " "})
    assert middleware.listeners == ()


@pytest.mark.parametrize(("kind", "factory", "target"), FACTORIES, ids=["asgi", "wsgi"])
@pytest.mark.parametrize(
    "listener",
    [MODULE, f"{MODULE}:no_such_listener", "no_such_module_for_logout_tests:x"],
    ids=["no-colon", "missing-attribute", "missing-module"],
)
def test_listener_bad_import_string(
    kind: str, factory: Factory, target: str, listener: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        factory({"LOGOUT_APP": target, "LOGOUT_ON_LOGOUT": listener})
    assert str(caught.value).startswith("LOGOUT_ON_LOGOUT: ")


def test_wsgi_refuses_coroutine_listener() -> None:
    environ = {"LOGOUT_APP": f"{MODULE}:wsgi_app", "LOGOUT_ON_LOGOUT": f"{MODULE}:on_logout_async"}
    with pytest.raises((TypeError, ConfigError), match="coroutine function"):
        wsgi(environ)


# -- LOGOUT_REDIS_URL ------------------------------------------------------------------


def test_wsgi_with_redis(redis_url: str, redis_client: redis.Redis) -> None:
    middleware = wsgi(
        {
            "LOGOUT_APP": f"{MODULE}:wsgi_app",
            "LOGOUT_REDIS_URL": redis_url,
            "LOGOUT_ON_LOGOUT": f"{MODULE}:on_logout",
        }
    )
    assert isinstance(middleware.store, RedisStore)
    try:
        redis_client.set("session:abc", b"data")
        status, _, _ = call_wsgi(middleware, "POST", "/logout", HTTP_COOKIE="session=abc")
    finally:
        middleware.store.close()
    assert status.startswith("303")
    assert redis_client.exists("session:abc") == 0
    (event,) = apps_for_serve.received
    assert event.store == "ok"
    assert event.sessions_deleted == 1


@pytest.mark.anyio
async def test_asgi_with_redis(redis_url: str, redis_client: redis.Redis) -> None:
    middleware = asgi({"LOGOUT_APP": f"{MODULE}:asgi_app", "LOGOUT_REDIS_URL": redis_url})
    assert isinstance(middleware.store, AsyncRedisStore)
    try:
        redis_client.set("session:abc", b"data")
        status, _, _ = await call_asgi(middleware, "POST", "/logout", [(b"cookie", b"session=abc")])
    finally:
        await middleware.store.aclose()
    assert status == 303
    assert redis_client.exists("session:abc") == 0
