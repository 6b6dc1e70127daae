"""Hostile input at the logout URI, on both adapters, against a real Redis.

* Cross-site logout protection (Fetch Metadata and ``Origin``): refused requests get
  ``403`` and change nothing: no Redis write, no cookie expiry, no event.
* The optional ``GET`` confirmation page, and its escaping.
* ``Clear-Site-Data``: quoted, HTTPS only, only the configured types.
* Malformed requests: an explicit table, then Hypothesis over exact bytes (``raw_asgi``,
  ``raw_wsgi``); never a 5xx, never an exception reaching the server.
* Header safety: no control character reaches ``Location`` or ``Set-Cookie``.
* Log hygiene: logs never hold a raw session id or token.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from logout_middleware import LogoutConfig
from logout_middleware.config import ConfigError
from logout_middleware.events import LogoutEvent
from logout_middleware.testing import redis_server

from .harness import KINDS, Harness, Kind, Reply, harness, multipart
from .test_redirects import ALLOWED, Origin, RawClient, lands_safely, raw_client

SESSION = "sid-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4"
TOKEN = "tok-Zm9vYmFyYmF6cXV4cXV1eA-4d2c6e8a0b1f"
SESSION_KEY = f"session:{SESSION}"
TRUSTED = "https://trusted.example.com"
NEXT_URI = "/signed-out"
FORM = "application/x-www-form-urlencoded"
CREDENTIALS = {"Cookie": f"session={SESSION}", "Authorization": f"Bearer {TOKEN}"}

settings.register_profile("hostile-fuzz", max_examples=300, deadline=None)
FUZZ = settings.get_profile("hostile-fuzz")

#: An RFC 9110 header name, and a value of visible ASCII and spaces only.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CLEAN_VALUE = re.compile(r"[\x20-\x7e]*")


def assert_clean_headers(reply: Reply) -> None:
    """No control character, non-ASCII or CR/LF in any response header."""
    for name, value in reply.headers:
        assert _HEADER_NAME.fullmatch(name), name
        assert _CLEAN_VALUE.fullmatch(value), (name, value)
    location = reply.header("location")
    if location is not None:
        assert re.fullmatch(r"[\x21-\x7e]+", location), location


# -- cross-site logout protection --------------------------------------------------------


@dataclass
class Logouts:
    """A harness, the events it emitted, and the Redis it writes to."""

    h: Harness
    events: list[LogoutEvent]
    redis: redis.Redis

    def send(
        self,
        method: str,
        path: str = "/logout",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        """Store the session, then send ``method path`` with its cookie and a bearer token."""
        self.redis.set(SESSION_KEY, b"data")
        return self.h.request(method, path, headers={**CREDENTIALS, **(headers or {})}, **kwargs)

    def post(self, headers: dict[str, str], **kwargs: Any) -> Reply:
        return self.send("POST", headers=headers, **kwargs)

    def assert_nothing_changed(self, reply: Reply) -> None:
        assert reply.set_cookies == []
        assert reply.header("location") is None
        assert reply.header("clear-site-data") is None
        assert self.redis.exists(SESSION_KEY) == 1
        assert self.redis.keys("logout:revoked:*") == []
        assert self.redis.exists("logout:events") == 0
        assert self.events == []

    def assert_logged_out(self, reply: Reply) -> None:
        assert reply.status == 303
        assert any(c.startswith("session=;") for c in reply.set_cookies)
        assert self.redis.exists(SESSION_KEY) == 0
        assert len(self.redis.keys("logout:revoked:*")) == 1
        assert self.redis.xlen("logout:events") == 1
        assert len(self.events) == 1


@contextmanager
def logouts_of(
    kind: Kind, redis_url: str, redis_client: redis.Redis, **settings: Any
) -> Iterator[Logouts]:
    """:class:`Logouts` on a harness of ``kind`` with ``settings``, recording its events."""
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, **settings) as h:
        yield Logouts(h, events, redis_client)


@pytest.fixture(params=KINDS)
def logouts(
    request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis
) -> Iterator[Logouts]:
    with logouts_of(
        request.param,
        redis_url,
        redis_client,
        trusted_origins=(TRUSTED,),
        next_uri=NEXT_URI,
        clear_site_data=("cookies", "storage"),
    ) as it:
        yield it


REFUSED = [
    pytest.param({"Sec-Fetch-Site": "cross-site"}, id="fetch-cross-site"),
    pytest.param({"Sec-Fetch-Site": "CROSS-SITE"}, id="fetch-cross-site-upper"),
    pytest.param(
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://testserver"},
        id="fetch-cross-site-wins-over-own-origin",
    ),
    pytest.param({"Origin": "https://evil.com"}, id="origin-evil"),
    pytest.param({"Origin": "null"}, id="origin-null"),
    pytest.param({"Origin": ""}, id="origin-empty"),
    pytest.param({"Origin": "http://testserver.evil.com"}, id="origin-own-host-prefix"),
    pytest.param({"Origin": "http://eviltestserver"}, id="origin-own-host-suffix"),
    pytest.param({"Origin": "http://sub.testserver"}, id="origin-subdomain"),
    pytest.param({"Origin": "http://testserver:8080"}, id="origin-other-port"),
    pytest.param({"Origin": "http://testserver@evil.com"}, id="origin-userinfo"),
    pytest.param({"Origin": "http://evil.com@testserver"}, id="origin-userinfo-own-host"),
    pytest.param({"Origin": "file://"}, id="origin-file"),
    pytest.param({"Origin": "http://testserver, https://evil.com"}, id="origin-list"),
    pytest.param({"Origin": "https://trusted.example.com.evil.com"}, id="trusted-as-prefix"),
    pytest.param({"Origin": "http://trusted.example.com"}, id="trusted-other-scheme"),
    pytest.param({"Origin": "https://trusted.example.com:8443"}, id="trusted-other-port"),
    pytest.param(
        {"Sec-Fetch-Site": "same-site", "Origin": "http://app.testserver"},
        id="same-site-sibling-origin",
    ),
    pytest.param({"Sec-Fetch-Site": "cross-site", "Accept": "application/json"}, id="json"),
]


@pytest.mark.parametrize("headers", REFUSED)
def test_cross_site_logout_is_refused_and_changes_nothing(
    logouts: Logouts, headers: dict[str, str]
) -> None:
    reply = logouts.post(headers)
    assert reply.status == 403
    assert b"cross-site" in reply.body
    logouts.assert_nothing_changed(reply)
    assert logouts.h.seen.requests == []


def test_cross_site_refused_before_the_body_is_read(logouts: Logouts) -> None:
    """A cross-site POST with an oversized body is a 403, not a 413."""
    reply = logouts.post(
        {"Sec-Fetch-Site": "cross-site", "Content-Type": FORM},
        body=b"next=/a&" + b"x" * 100_000,
    )
    assert reply.status == 403
    logouts.assert_nothing_changed(reply)


def test_cross_site_over_https_sends_no_clear_site_data(logouts: Logouts) -> None:
    reply = logouts.post({"Origin": "https://evil.com"}, scheme="https")
    assert reply.status == 403
    logouts.assert_nothing_changed(reply)


ADMITTED = [
    pytest.param({}, id="neither-header"),
    pytest.param({"Origin": "http://testserver"}, id="own-origin"),
    pytest.param({"Origin": "HTTP://TESTSERVER"}, id="own-origin-upper-case"),
    pytest.param({"Origin": "http://testserver:80"}, id="own-origin-default-port"),
    pytest.param({"Sec-Fetch-Site": "same-origin"}, id="fetch-same-origin"),
    pytest.param(
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://testserver"},
        id="fetch-same-origin-and-own-origin",
    ),
    pytest.param({"Sec-Fetch-Site": "none"}, id="fetch-none-user-initiated"),
    pytest.param({"Origin": TRUSTED}, id="trusted-origin"),
    pytest.param({"Origin": TRUSTED.upper()}, id="trusted-origin-upper-case"),
    pytest.param(
        {"Origin": TRUSTED, "Sec-Fetch-Site": "cross-site"}, id="trusted-origin-cross-site"
    ),
]


@pytest.mark.parametrize("headers", ADMITTED)
def test_same_origin_trusted_and_headerless_requests_log_out(
    logouts: Logouts, headers: dict[str, str]
) -> None:
    reply = logouts.post(headers)
    logouts.assert_logged_out(reply)
    assert reply.header("location") == NEXT_URI


@pytest.mark.parametrize(
    ("scheme", "host", "origin", "status"),
    [
        pytest.param("https", "app.example:8443", "https://app.example:8443", 303, id="port"),
        pytest.param("https", "app.example:8443", "https://app.example", 403, id="port-missing"),
        pytest.param("https", "app.example", "https://app.example", 303, id="https"),
        pytest.param("https", "app.example:443", "https://app.example", 303, id="default-port"),
        pytest.param("http", "[::1]:8000", "http://[::1]:8000", 303, id="ipv6"),
        pytest.param("http", "[::1]:8000", "http://[::2]:8000", 403, id="ipv6-other"),
    ],
)
def test_origin_is_compared_with_the_host_header(
    logouts: Logouts, scheme: str, host: str, origin: str, status: int
) -> None:
    reply = logouts.post({"Origin": origin}, scheme=scheme, host=host)
    assert reply.status == status
    if status == 403:
        logouts.assert_nothing_changed(reply)
    else:
        logouts.assert_logged_out(reply)


@pytest.mark.parametrize("kind", KINDS)
def test_repeated_sec_fetch_site_with_cross_site_is_refused(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """A ``Sec-Fetch-Site`` given twice (a proxy or a non-browser client) is refused when
    any copy says ``cross-site``, as Go's CrossOriginProtection, which reads the first."""
    redis_client.set(SESSION_KEY, b"data")
    config = LogoutConfig(redis_url=redis_url)
    with raw_client(kind, config) as client:
        reply = client.send(
            headers=[
                (b"cookie", f"session={SESSION}".encode()),
                (b"sec-fetch-site", b"cross-site"),
                (b"sec-fetch-site", b"cross-site"),
            ]
        )
    assert reply.status == 403
    assert redis_client.exists(SESSION_KEY) == 1


# -- the GET confirmation page -----------------------------------------------------------


@pytest.fixture(params=KINDS)
def confirm(
    request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis
) -> Iterator[Logouts]:
    with logouts_of(
        request.param,
        redis_url,
        redis_client,
        on_get="confirm",
        next_uri=NEXT_URI,
        allowed_hosts=ALLOWED,
    ) as it:
        yield it


def hidden_next(page: str) -> str | None:
    found = re.search(r'<input type="hidden" name="next" value="([^"]*)">', page)
    return html.unescape(found.group(1)) if found else None


def get_page(confirm: Logouts, query: str = "", **kwargs: Any) -> Reply:
    return confirm.send("GET", "/logout" + query, **kwargs)


def test_confirm_page_is_a_post_form_and_changes_nothing(confirm: Logouts) -> None:
    reply = get_page(confirm)
    assert reply.status == 200
    assert reply.header("content-type") == "text/html; charset=utf-8"
    assert reply.header("cache-control") == "no-store"
    assert reply.header("x-frame-options") == "DENY"
    assert "frame-ancestors 'none'" in (reply.header("content-security-policy") or "")
    page = reply.body.decode()
    assert '<form method="post" action="/logout">' in page
    assert hidden_next(page) is None
    confirm.assert_nothing_changed(reply)


def test_confirm_page_head_has_no_body(confirm: Logouts) -> None:
    reply = confirm.send("HEAD")
    assert reply.status == 200
    assert reply.body == b""
    confirm.assert_nothing_changed(reply)


@pytest.mark.parametrize(
    "target",
    [
        pytest.param("/account?tab=1&x=2", id="query"),
        pytest.param('/a"><script>alert(1)</script>', id="attribute-breakout"),
        pytest.param("/a'onmouseover='alert(1)", id="single-quote"),
        pytest.param("/&lt;script&gt;", id="entities"),
        pytest.param("https://good.com/welcome", id="allowed-host"),
    ],
)
def test_confirm_page_carries_a_safe_next_escaped(confirm: Logouts, target: str) -> None:
    reply = get_page(confirm, "?next=" + quote(target, safe=""))
    page = reply.body.decode()
    assert hidden_next(page) == target
    assert "<script>" not in page
    assert "'onmouseover" not in page
    # posting the form back logs out and goes there
    reply = confirm.h.post_logout(
        headers={"Content-Type": FORM, **CREDENTIALS},
        body=f"next={quote(target, safe='')}".encode(),
    )
    confirm.assert_logged_out(reply)
    assert reply.header("location") == target


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("?next=%2F%2Fevil.com", id="scheme-relative"),
        pytest.param("?next=javascript%3Aalert(1)", id="javascript"),
        pytest.param('?next="><script>alert(1)</script>', id="raw-markup"),
        pytest.param("?next=%22%3E%3Cscript%3Ealert(1)%3C/script%3E", id="encoded-markup"),
        pytest.param("?next=/a&next=/b", id="differing-copies"),
        pytest.param("?next=%2Fa%0d%0aX:1", id="crlf"),
        pytest.param("?next=" + "a=1&" * 300, id="too-many-fields"),
        pytest.param("?next=/signed-out", id="the-default-target"),
    ],
)
def test_confirm_page_drops_an_unsafe_next(confirm: Logouts, query: str) -> None:
    reply = get_page(confirm, query)
    assert reply.status == 200
    page = reply.body.decode()
    assert hidden_next(page) is None
    assert "evil.com" not in page
    assert "<script>" not in page
    assert "javascript" not in page
    confirm.assert_nothing_changed(reply)


def test_get_is_405_by_default(logouts: Logouts) -> None:
    reply = logouts.send("GET", "/logout?next=/a")
    assert reply.status == 405
    assert reply.header("allow") == "POST"
    logouts.assert_nothing_changed(reply)


def test_other_methods_under_confirm_are_405_with_get_allowed(confirm: Logouts) -> None:
    reply = confirm.send("PUT")
    assert reply.status == 405
    assert reply.header("allow") == "POST, GET, HEAD"
    confirm.assert_nothing_changed(reply)


# -- Clear-Site-Data ---------------------------------------------------------------------


def test_clear_site_data_is_quoted_and_sent_on_https(logouts: Logouts) -> None:
    reply = logouts.post({}, scheme="https")
    logouts.assert_logged_out(reply)
    assert reply.all("clear-site-data") == ['"cookies", "storage"']
    assert "cache" not in (reply.header("clear-site-data") or "")
    # explicit deletions are still sent, Secure on HTTPS
    assert any(c.startswith("session=;") and "Secure" in c for c in reply.set_cookies)


def test_clear_site_data_is_sent_to_json_clients_on_https(logouts: Logouts) -> None:
    reply = logouts.post({"Accept": "application/json"}, scheme="https")
    assert reply.status == 200
    assert reply.json() == {"success": True}
    assert reply.header("clear-site-data") == '"cookies", "storage"'
    assert any(c.startswith("session=;") for c in reply.set_cookies)


def test_clear_site_data_is_not_sent_over_http(logouts: Logouts) -> None:
    reply = logouts.post({})
    logouts.assert_logged_out(reply)
    assert reply.header("clear-site-data") is None
    assert any(c.startswith("session=;") for c in reply.set_cookies)


@pytest.mark.parametrize(
    ("types", "expected"),
    [
        pytest.param((), None, id="default-none"),
        pytest.param(("cookies",), '"cookies"', id="cookies"),
        pytest.param(("cache",), '"cache"', id="cache-when-listed"),
        pytest.param(("*",), '"*"', id="wildcard"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_clear_site_data_sends_exactly_the_configured_types(
    kind: Kind, redis_url: str, types: tuple[str, ...], expected: str | None
) -> None:
    with harness(kind, redis_url, clear_site_data=types) as h:
        reply = h.post_logout(scheme="https")
    assert reply.status == 303
    assert reply.header("clear-site-data") == expected
    assert reply.set_cookies


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        pytest.param("GET", [], 405, id="get"),
        pytest.param("POST", [(b"origin", b"https://evil.com")], 403, id="cross-site"),
        pytest.param("POST", [(b"content-length", b"abc")], 400, id="bad-length"),
        pytest.param("POST", [(b"content-length", b"999999999")], 413, id="too-large"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_refusals_send_no_clear_site_data(
    kind: Kind,
    redis_url: str,
    redis_client: redis.Redis,
    method: str,
    headers: list[tuple[bytes, bytes]],
    status: int,
) -> None:
    redis_client.set(SESSION_KEY, b"data")
    config = LogoutConfig(redis_url=redis_url, clear_site_data=("cookies", "storage"))
    credentials = [(k.lower().encode(), v.encode()) for k, v in CREDENTIALS.items()]
    with raw_client(kind, config) as client:
        reply = client.send(method=method, headers=[*credentials, *headers], scheme="https")
    assert reply.status == status
    assert reply.header("clear-site-data") is None
    assert reply.set_cookies == []
    assert redis_client.exists(SESSION_KEY) == 1
    assert redis_client.keys("logout:revoked:*") == []


# -- malformed requests: an explicit table -----------------------------------------------

MAX_BODY = 2048


@pytest.fixture(scope="module", params=KINDS)
def raw(request: pytest.FixtureRequest, redis_url: str) -> Iterator[RawClient]:
    config = LogoutConfig(
        redis_url=redis_url, next_uri=NEXT_URI, allowed_hosts=ALLOWED, max_body=MAX_BODY
    )
    with raw_client(request.param, config) as client:
        yield client


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def jwt_of(header: object, payload: object) -> bytes:
    return b".".join(
        (b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), b"c2ln")
    )


DEEP_JWT = b64url(b"[" * 50_000) + b"." + b64url(b"[" * 50_000) + b".x"
Headers = Sequence[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Malformed:
    id: str
    status: int
    method: str = "POST"
    path: str = "/logout"
    query: bytes = b""
    headers: Headers = ()
    body: bytes = b""


def form(body: bytes) -> Headers:
    return [(b"content-type", FORM.encode()), (b"content-length", str(len(body)).encode())]


MALFORMED = [
    Malformed("method-lower-case", 405, method="post"),
    Malformed("method-mixed-case", 405, method="Post"),
    Malformed("method-latin-1", 405, method="P\xd6ST"),
    Malformed("method-get-lower-case", 405, method="get"),
    Malformed("method-empty-token", 405, method="-"),
    Malformed("content-length-letters", 400, headers=[(b"content-length", b"abc")]),
    Malformed("content-length-negative", 400, headers=[(b"content-length", b"-1")]),
    Malformed("content-length-plus", 400, headers=[(b"content-length", b"+5")]),
    Malformed("content-length-float", 400, headers=[(b"content-length", b"1e3")]),
    Malformed("content-length-hex", 400, headers=[(b"content-length", b"0x10")]),
    Malformed("content-length-superscript", 400, headers=[(b"content-length", b"\xb2")]),
    Malformed("content-length-nul", 400, headers=[(b"content-length", b"1\x00")]),
    Malformed(
        "content-length-repeated",
        400,
        headers=[(b"content-length", b"5"), (b"content-length", b"5")],
        body=b"next=",
    ),
    Malformed("content-length-huge", 413, headers=[(b"content-length", b"9" * 40)]),
    Malformed(
        "content-length-over-max",
        413,
        headers=form(b"x" * (MAX_BODY + 1)),
        body=b"x" * (MAX_BODY + 1),
    ),
    Malformed(
        "chunked-form-over-max",
        413,
        headers=[(b"content-type", FORM.encode())],
        body=b"next=/a&" + b"x" * MAX_BODY,
    ),
    Malformed(
        "chunked-multipart-over-max",
        413,
        headers=[(b"content-type", b"multipart/form-data; boundary=b")],
        body=b"--b\r\n" + b"x" * MAX_BODY,
    ),
    Malformed(
        "content-length-zero-with-body",
        303,
        headers=[(b"content-type", FORM.encode()), (b"content-length", b"0")],
        body=b"next=//evil.com",
    ),
    Malformed(
        "non-form-body-unread",
        303,
        headers=[(b"content-type", b"text/plain")],
        body=b"x" * (MAX_BODY * 4),
    ),
    Malformed(
        "urlencoded-invalid-utf8", 400, headers=form(b"next=\xff\xfe"), body=b"next=\xff\xfe"
    ),
    Malformed("urlencoded-percent-invalid-utf8", 303, headers=form(b"next=%ff"), body=b"next=%ff"),
    Malformed("urlencoded-nul", 303, headers=form(b"next=/a\x00"), body=b"next=/a\x00"),
    Malformed(
        "multipart-no-boundary",
        400,
        headers=[(b"content-type", b"multipart/form-data")],
        body=b"next=/a",
    ),
    Malformed(
        "multipart-garbage",
        400,
        headers=[(b"content-type", b"multipart/form-data; boundary=abc")],
        body=b"garbage",
    ),
    Malformed(
        "multipart-truncated",
        400,
        headers=[(b"content-type", b"multipart/form-data; boundary=b")],
        body=b'--b\r\nContent-Disposition: form-data; name="next"\r\n\r\n/ok',
    ),
    Malformed(
        "multipart-non-latin-1-boundary",
        400,
        headers=[(b"content-type", b"multipart/form-data; boundary*=utf-8''%E2%82%AC")],
        body=b"--\xe2\x82\xac--\r\n",
    ),
    Malformed("query-too-many-fields", 400, query=b"a=1&" * 300),
    Malformed("query-invalid-utf8", 303, query=b"next=%C0%AF%ff"),
    Malformed("query-raw-bytes", 303, query=b"next=/a\x00\xff\r\n&\xfe=\x01"),
    Malformed("content-type-garbage", 303, headers=[(b"content-type", b"\xff;;;boundary=\x00")]),
    Malformed("content-type-params-only", 303, headers=[(b"content-type", b";charset=utf-8")]),
    Malformed("cookie-huge", 303, headers=[(b"cookie", b"session=" + b"a" * 10_000)]),
    Malformed(
        "cookie-garbage",
        303,
        headers=[(b"cookie", b'session="\\777\\x"; \xff\xfe=1;;;=;session')],
    ),
    Malformed(
        "cookie-repeated",
        303,
        headers=[(b"cookie", b"session=a"), (b"cookie", b"session=b\x00")],
    ),
    Malformed("authorization-huge", 303, headers=[(b"authorization", b"Bearer " + b"a" * 10_000)]),
    Malformed("authorization-latin-1", 303, headers=[(b"authorization", b"Bearer \xff\xfe\x00")]),
    Malformed("authorization-empty-bearer", 303, headers=[(b"authorization", b"Bearer ")]),
    Malformed("authorization-deep-jwt", 303, headers=[(b"authorization", b"Bearer " + DEEP_JWT)]),
    Malformed(
        "authorization-jwt-exp-nan",
        303,
        headers=[(b"authorization", b"Bearer " + jwt_of({"alg": "none"}, {"exp": float("nan")}))],
    ),
    Malformed(
        "authorization-jwt-exp-infinite",
        303,
        headers=[(b"authorization", b"Bearer " + jwt_of({"alg": "none"}, {"exp": 1e400}))],
    ),
    Malformed(
        "authorization-jwt-list-payload",
        303,
        headers=[(b"authorization", b"Bearer " + jwt_of([1], ["exp"]))],
    ),
    Malformed(
        "authorization-repeated",
        303,
        headers=[(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")],
    ),
    Malformed("accept-garbage", 303, headers=[(b"accept", b"json;q=nan, */*;q=\xff, ;;")]),
    Malformed("accept-q-out-of-range", 303, headers=[(b"accept", b"application/json;q=1e999")]),
    Malformed("accept-json-repeated", 200, headers=[(b"accept", b"application/json")] * 2),
    Malformed("origin-nul-in-host", 403, headers=[(b"origin", b"http://test\x00server")]),
    Malformed("origin-trailing-whitespace", 303, headers=[(b"origin", b"http://testserver \t")]),
    Malformed("origin-latin-1", 403, headers=[(b"origin", b"http://testserver\xff")]),
    Malformed("sec-fetch-site-garbage", 303, headers=[(b"sec-fetch-site", b"\x00\xff")]),
    Malformed("host-repeated", 303, headers=[(b"host", b"evil.com")]),
    Malformed("user-agent-huge", 303, headers=[(b"user-agent", b"\xff" * 10_000)]),
    Malformed("path-nul", 200, path="/logout\x00"),
    Malformed("path-latin-1", 200, path="/logout\xff"),
    Malformed("path-trailing-slash", 200, path="/logout/"),
    Malformed("path-upper-case", 200, path="/LOGOUT"),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in MALFORMED])
def test_malformed_request_gets_a_clear_answer(raw: RawClient, case: Malformed) -> None:
    reply = raw.send(
        method=case.method, path=case.path, query=case.query, headers=case.headers, body=case.body
    )
    assert reply.status == case.status
    assert_clean_headers(reply)
    if case.path != "/logout":
        assert reply.body == b"app"
    if case.status == 405:
        assert reply.header("allow") == "POST"
    if case.status == 303:
        location = reply.header("location")
        assert location is not None
        assert lands_safely(location)
    if case.status >= 400:
        assert reply.set_cookies == []


@pytest.mark.parametrize("kind", KINDS)
def test_too_many_multipart_parts_is_413(kind: Kind, redis_url: str) -> None:
    content_type, body = multipart([(f"f{i}", "") for i in range(300)])
    assert len(body) < LogoutConfig().max_body
    with harness(kind, redis_url) as h:
        reply = h.post_logout(headers={"Content-Type": content_type}, body=body)
    assert reply.status == 413
    assert reply.set_cookies == []


# -- malformed requests: Hypothesis over exact bytes -------------------------------------

latin1 = st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
METHODS = ["POST", "post", "Post", "GET", "get", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"]
CONTENT_TYPES = [
    FORM,
    FORM.upper(),
    FORM + "; charset=utf-8",
    "multipart/form-data; boundary=b",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    'multipart/form-data; boundary="a b"',
    "multipart/form-data; boundary*=utf-8''%E2%82%AC",
    "text/plain",
    "application/json",
]
SCHEMES = ["http", "https"]
HOSTS = [b"testserver", b"testserver:8000", b"[::1]:8000", b"good.com"]

HEADER_NAMES = [
    *(b"cookie", b"authorization", b"content-type", b"content-length", b"origin"),
    *(b"sec-fetch-site", b"accept", b"host", b"user-agent", b"x-other"),
]
HEADER_VALUES = [
    *(b"http://testserver", b"null", b"https://evil.com", b"cross-site", b"same-origin"),
    *(b"application/json", b"text/html", b"5", b"-1", b"\xb2", b"9" * 30),
]
secret_ids = st.text(alphabet="0123456789abcdef", min_size=20, max_size=32).map(lambda s: "sid" + s)
secret_tokens = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=20
).map(lambda s: "tok" + s)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
jwt_claims = st.dictionaries(
    st.sampled_from(["exp", "iat", "nbf", "aud", "iss", "sub", "kid", "alg", "b64"]), json_values
)


@dataclass
class Hostile:
    """One fuzzed request, and the secrets it carries (which no log may show)."""

    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    scheme: str
    host: bytes
    secrets: list[str]


@st.composite
def hostile_requests(draw: st.DrawFn) -> Hostile:
    secrets: list[str] = []
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.booleans()):
        sid = draw(secret_ids)
        secrets.append(sid)
        junk = draw(st.binary(max_size=20))
        headers.append(
            (b"cookie", draw(st.sampled_from([b"", junk + b"; "])) + b"session=" + sid.encode())
        )
    if draw(st.booleans()):
        token = draw(
            st.one_of(
                secret_tokens.map(str.encode),
                st.builds(jwt_of, jwt_claims, jwt_claims),
                st.binary(min_size=1, max_size=60).map(lambda b: b"tok" + b.strip()),
            )
        )
        secrets.append(token.decode("latin-1"))
        scheme_name = draw(st.sampled_from([b"Bearer ", b"bearer ", b"BEARER  "]))
        headers.append((b"authorization", scheme_name + token))
    name = st.sampled_from(HEADER_NAMES)
    value = st.one_of(
        st.binary(max_size=60),
        st.sampled_from(HEADER_VALUES),
    )
    headers += draw(st.lists(st.tuples(name, value), max_size=5))
    content_type = draw(st.one_of(st.none(), st.sampled_from(CONTENT_TYPES), latin1))
    boundary = "b"
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    fields = st.lists(
        st.tuples(st.sampled_from(["next", "x", ""]), st.text(max_size=30)), max_size=4
    )
    body = draw(
        st.one_of(
            st.just(b""),
            st.binary(max_size=200),
            fields.map(lambda f: "&".join(f"{k}={quote(v)}" for k, v in f).encode()),
            st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=30)), max_size=4).map(
                lambda f: b"&".join(k + b"=" + v for k, v in f)
            ),
            fields.map(lambda f: multipart(f, boundary)[1]),
            fields.map(lambda f: multipart(f, boundary)[1][: len(f) * 7]),
            st.integers(0, 3).map(lambda n: b"x" * (MAX_BODY - 1 + n)),
        )
    )
    length = draw(st.sampled_from(["exact", "exact", "none", "short", "long", "garbage", "huge"]))
    if length == "exact":
        headers.append((b"content-length", str(len(body)).encode()))
    elif length == "short":
        headers.append((b"content-length", str(len(body) // 2).encode()))
    elif length == "long":
        headers.append((b"content-length", str(len(body) + 10).encode()))
    elif length == "garbage":
        headers.append((b"content-length", draw(st.binary(max_size=8))))
    elif length == "huge":
        headers.append((b"content-length", b"1" + b"0" * draw(st.integers(4, 40))))
    query = draw(
        st.one_of(
            st.just(b""),
            st.binary(max_size=80),
            st.text(max_size=40).map(lambda s: b"next=" + quote(s, safe="").encode()),
            st.integers(250, 300).map(lambda n: b"a=1&" * n),
        )
    )
    return Hostile(
        method=draw(st.one_of(st.sampled_from(METHODS), latin1.filter(bool))),
        path=draw(st.sampled_from(["/logout", "/logout", "/logout", "/other"]) | latin1),
        query=query,
        headers=draw(st.permutations(headers)),
        body=body,
        scheme=draw(st.sampled_from(SCHEMES)),
        host=draw(st.sampled_from(HOSTS) | st.binary(max_size=20)),
        secrets=secrets,
    )


@pytest.fixture(
    scope="module",
    params=[("asgi", "405"), ("asgi", "confirm"), ("wsgi", "405"), ("wsgi", "confirm")],
    ids=["asgi-405", "asgi-confirm-signed", "wsgi-405", "wsgi-confirm-signed"],
)
def fuzzed(request: pytest.FixtureRequest, redis_url: str) -> Iterator[RawClient]:
    kind, on_get = request.param
    config = LogoutConfig(
        redis_url=redis_url,
        next_uri=NEXT_URI,
        allowed_hosts=ALLOWED,
        trusted_origins=(TRUSTED,),
        max_body=MAX_BODY,
        on_get=on_get,
        clear_site_data=("cookies", "storage"),
        session_secret="fuzz-secret" if on_get == "confirm" else None,
    )
    with raw_client(kind, config) as client:
        yield client


def effective_host(kind: Kind, request: Hostile) -> str:
    """The Host the adapter sees: repeated headers joined as the adapter (ASGI) or the
    WSGI server does."""
    values = [request.host] + [v for k, v in request.headers if k == b"host"]
    separator = b", " if kind == "asgi" else b","
    return separator.join(values).decode("latin-1")


def check_hostile_reply(client: RawClient, request: Hostile, reply: Reply) -> None:
    assert 200 <= reply.status < 500, reply
    assert_clean_headers(reply)
    if request.path != "/logout":
        # ASGI keeps repeated headers apart: two Authorization headers are refused (400).
        twice = client.kind == "asgi" and sum(k == b"authorization" for k, _ in request.headers) > 1
        # The app, or a token revoked by an earlier example.
        assert reply.status in ({400} if twice else {200, 401}), reply
        assert reply.status in {400, 401} or reply.body == b"app"
        return
    assert reply.status in {200, 303, 400, 403, 405, 413}, reply
    expired = {f"{name}=" for name in client.middleware.config.expired_cookies}
    for cookie in reply.set_cookies:
        assert cookie.split(";", 1)[0] in expired
        assert "Max-Age=0" in cookie
    if reply.status not in {200, 303} or request.method != "POST":
        assert reply.set_cookies == []
        assert reply.header("clear-site-data") is None
    if reply.status == 303:
        location = reply.header("location")
        assert location is not None
        host = effective_host(client.kind, request)
        if Origin.of_request(request.scheme, host) is None:
            host = "host.invalid"  # no browser sent this; a path must still stay on site
        assert location == NEXT_URI or lands_safely(location, scheme=request.scheme, host=host)


def test_hostile_requests_never_5xx_and_never_leak(
    fuzzed: RawClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="logout_middleware")
    secrets: list[str] = []

    @FUZZ
    @given(request=hostile_requests())
    def run(request: Hostile) -> None:
        secrets.extend(request.secrets)
        reply = fuzzed.send(
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            body=request.body,
            scheme=request.scheme,
            host=request.host,
        )
        check_hostile_reply(fuzzed, request, reply)

    run()
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    leaked = [s for s in secrets if len(s) >= 8 and s in caplog.text]
    assert leaked == []


# -- header safety -----------------------------------------------------------------------

INJECTIONS = [
    "/\r\nSet-Cookie: session=attacker",
    "/\nLocation: https://evil.com",
    "/\rX: 1",
    "/a\x00b",
    "/a\x0bb",
    "/a\x1bb",
    "/a\x7fb",
    "/a\u0085b",
    "/a\u2028b",
    "/a\u2029b",
    "http://testserver/\r\n\r\n<html>",
    "\r\n/",
]


@pytest.mark.parametrize("payload", [pytest.param(p, id=repr(p)[1:-1]) for p in INJECTIONS])
@pytest.mark.parametrize("channel", ["query-encoded", "query-raw", "form"])
def test_no_control_character_reaches_a_header(raw: RawClient, payload: str, channel: str) -> None:
    encoded = b"next=" + quote(payload, safe="").encode()
    if channel == "query-encoded":
        reply = raw.send(query=encoded)
    elif channel == "query-raw":
        reply = raw.send(query=b"next=" + payload.encode("utf-8"))
    else:
        reply = raw.send(headers=form(encoded), body=encoded)
    assert reply.status == 303
    assert reply.header("location") == NEXT_URI
    assert_clean_headers(reply)
    assert all("attacker" not in c for c in reply.set_cookies)


@pytest.mark.parametrize(
    "settings_",
    [
        pytest.param({"next_uri": "https://example.com/\x00"}, id="next-uri-nul"),
        pytest.param({"next_uri": "https://example.com/a\x01b"}, id="next-uri-soh"),
        pytest.param({"next_uri": "https://example.com/a\x7f"}, id="next-uri-del"),
        pytest.param({"next_uri": "https://exa\x00mple.com/"}, id="next-uri-nul-in-host"),
        pytest.param({"next_uri": "https://example.com/\r\nX: 1"}, id="next-uri-crlf"),
        pytest.param({"next_uri": "/a\x00"}, id="next-uri-path-nul"),
        pytest.param({"next_uri": "/a\r\nX: 1"}, id="next-uri-path-crlf"),
        pytest.param({"cookies": ("a\r\nb",)}, id="cookie-name-crlf"),
        pytest.param({"session_cookie": "s\x00"}, id="session-cookie-nul"),
        pytest.param({"cookie_path": "/\r\nX: 1"}, id="cookie-path-crlf"),
        pytest.param({"cookie_path": "/a\x00"}, id="cookie-path-nul"),
        pytest.param({"cookie_domain": "example.com\r\n"}, id="cookie-domain-crlf"),
        pytest.param({"cookie_domain": "exa\x00mple.com"}, id="cookie-domain-nul"),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_settings_never_put_control_characters_in_headers(
    kind: Kind, redis_url: str, settings_: dict[str, Any]
) -> None:
    """Location (LOGOUT_NEXT_URI) and Set-Cookie (cookie settings) are built from settings
    verbatim: a control character there is refused at start-up or never reaches a header."""
    try:
        config = LogoutConfig(redis_url=redis_url, **settings_)
    except ConfigError:
        return  # refused at start-up: the safe outcome
    with raw_client(kind, config) as client:
        for scheme in SCHEMES:
            reply = client.send(scheme=scheme)
            assert reply.status == 303
            assert_clean_headers(reply)


@pytest.mark.parametrize("kind", KINDS)
def test_a_latin_1_bearer_token_is_revoked_and_refused_after(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """Arbitrary bytes in Authorization hash the same at logout and on later requests."""
    config = LogoutConfig(redis_url=redis_url)
    authorization = [(b"authorization", b"Bearer tok-\xff\xfe\x80-1")]
    with raw_client(kind, config) as client:
        assert client.send(path="/other", headers=authorization).status == 200
        assert client.send(headers=authorization).status == 303
        reply = client.send(method="GET", path="/other", headers=authorization)
    assert reply.status == 401
    assert reply.json()["error"] == "invalid_token"
    assert len(redis_client.keys("logout:revoked:*")) == 1


# -- log hygiene ---------------------------------------------------------------------------


def secret_free(caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (SESSION, TOKEN):
        assert secret not in text


@pytest.mark.parametrize("kind", KINDS)
def test_logs_hold_no_session_id_or_token(
    kind: Kind, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="logout_middleware")
    redis_client.set(SESSION_KEY, b"data")
    # unsafe next, bad signature, cross-site refusal, malformed body
    with harness(kind, redis_url, session_secret="k") as h:
        h.post_logout("/logout?next=//evil.com", headers=CREDENTIALS)
        h.post_logout(headers={**CREDENTIALS, "Origin": "https://evil.com"})
        h.post_logout(headers={**CREDENTIALS, "Content-Type": FORM}, body=b"next=\xff")
        h.request("GET", "/other", headers=CREDENTIALS)
    assert "unsafe" in caplog.text
    assert "signature" in caplog.text
    secret_free(caplog)


@pytest.mark.parametrize("kind", KINDS)
def test_logs_hold_no_secret_when_redis_fails(kind: Kind, caplog: pytest.LogCaptureFixture) -> None:
    """A real Redis, stopped before the requests: the failure is logged, the secrets not."""
    caplog.set_level(logging.DEBUG, logger="logout_middleware")
    with redis_server() as url:
        pass  # the server is gone once the block exits
    with harness(kind, url, on_store_error="succeed") as h:
        reply = h.post_logout(headers=CREDENTIALS)
        assert reply.status == 303
        # This process knows it revoked that token: refused though Redis is down.
        assert h.request("GET", "/other", headers=CREDENTIALS).status == 401
        # Another token cannot be checked: LOGOUT_ON_CHECK_ERROR=allow lets it through.
        other = {"Authorization": "Bearer another-token-unknown-here"}
        assert h.request("GET", "/other", headers=other).status == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) >= 2  # the failed logout, the failed denylist check
    assert "ConnectionError" in caplog.text
    secret_free(caplog)
