"""The sans-IO core, table-driven, with no server: RequestHead values built directly,
and the core's flows run by a small driver here that answers each I/O request and
records it, so that tests can assert exactly what a logout asks Redis to do."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import jwt
import msgspec
import pytest
from itsdangerous import Signer

from logout_middleware.config import ConfigError, LogoutConfig
from logout_middleware.core import (
    Delete,
    Flow,
    Index,
    LogoutCore,
    Read,
    Reading,
    RequestHead,
    Response,
    Route,
    StoreOps,
    StoreOutcome,
    Verdict,
    Verify,
    is_safe_next,
    sha256_hex,
)
from logout_middleware.events import LogoutEvent
from logout_middleware.store import drive

from .harness import multipart

T = 1_700_000_000.0
JWT_KEY = "a-test-signing-key-of-at-least-32-bytes"
FORM = "application/x-www-form-urlencoded"
EPOCH = "Expires=Thu, 01 Jan 1970 00:00:00 GMT"
EVERYWHERE = "/logout/everywhere"


def make_core(
    has_store: bool = True, clock: Callable[[], float] = lambda: T, **kw: Any
) -> LogoutCore:
    return LogoutCore(LogoutConfig(**kw), has_store=has_store, clock=clock)


def head(**kw: Any) -> RequestHead:
    values: dict[str, Any] = {
        "method": "POST",
        "scheme": "http",
        "host": "example.com",
        "root_path": "",
        "query_string": "",
    }
    values.update(kw)
    return RequestHead(**values)


def header(response: Response, name: str) -> str | None:
    values = headers(response, name)
    return values[0] if values else None


def headers(response: Response, name: str) -> list[str]:
    return [v for k, v in response.headers if k.lower() == name.lower()]


def cookie_attrs(set_cookie: str) -> tuple[str, str, dict[str, str]]:
    """``(name, value, {attribute lower-case: value})`` of a Set-Cookie header value."""
    first, *rest = [part.strip() for part in set_cookie.split(";")]
    name, _, value = first.partition("=")
    attrs: dict[str, str] = {}
    for part in rest:
        key, _, val = part.partition("=")
        attrs[key.lower()] = val
    return name, value, attrs


def jwt_token(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, JWT_KEY, algorithm="HS256")


# -- a driver that plays Redis ---------------------------------------------------------


@dataclass
class Driver:
    """Answers a core flow's requests and records them.

    ``Verify`` goes to the core's own verifier; ``Read`` is answered from ``records``
    (``GET``) and ``index`` (``ZRANGE ... BYSCORE``); ``StoreOps`` gets ``outcome``.
    """

    core: LogoutCore
    outcome: StoreOutcome = field(default_factory=lambda: StoreOutcome("ok"))
    records: dict[str, bytes] = field(default_factory=dict)
    index: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Every request the flow yielded, in order.
    requests: list[Any] = field(default_factory=list)

    def run(self, flow: Flow[Any]) -> Any:
        result: Any = None
        try:
            while True:
                request = flow.send(result)
                self.requests.append(request)
                if isinstance(request, Verify):
                    result = self.core.verifier.verify(request.token)
                elif isinstance(request, StoreOps):
                    result = self.outcome
                elif isinstance(request, Read):
                    result = Reading(
                        values=tuple(self.records.get(key) for key in request.gets),
                        members=tuple(self.index.get(key, ()) for key in request.ranges),
                    )
                elif isinstance(request, (Index, Delete)):
                    result = None
                else:
                    raise AssertionError(f"unexpected request {request!r}")
        except StopIteration as done:
            return done.value

    def of(self, kind: type[Any]) -> list[Any]:
        return [request for request in self.requests if isinstance(request, kind)]

    @property
    def ops(self) -> StoreOps:
        """The one StoreOps of the logout."""
        (found,) = self.of(StoreOps)
        assert isinstance(found, StoreOps)
        return found


def logout(
    core: LogoutCore,
    request: RequestHead,
    body: bytes = b"",
    route: Route = "logout",
    **driver: Any,
) -> tuple[Response, LogoutEvent | None, Driver]:
    """Run the logout flow to its end; return its response, event and driver."""
    runner = Driver(core, **driver)
    response, event = runner.run(core.logout(request, body, route))
    return response, event, runner


def completed(
    core: LogoutCore, request: RequestHead, body: bytes = b"", **driver: Any
) -> tuple[Response, LogoutEvent, Driver]:
    """A logout that must complete (not be refused)."""
    response, event, runner = logout(core, request, body, **driver)
    assert event is not None, response
    return response, event, runner


# -- helpers ---------------------------------------------------------------------------


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", sha256_hex(b""))


# -- route -----------------------------------------------------------------------------

ROUTE_CASES: list[tuple[str, str, str, str | None, Route | None]] = [
    ("/logout", "/logout", "", None, "logout"),
    ("/logout", "/logout/", "", None, None),
    ("/logout", "/Logout", "", None, None),
    ("/logout", "/logout2", "", None, None),
    ("/logout", "/", "", None, None),
    ("/logout", "", "", None, None),
    ("/logout", "/app/logout", "", None, None),
    ("/logout", "/app/logout", "/app", None, "logout"),
    ("/logout", "/logout", "/app", None, "logout"),
    ("/logout", "/apx/logout", "/app", None, None),
    ("/logout", "/app/logout/", "/app", None, None),
    ("/logout", "/app/other", "/app", None, None),
    ("/logout", "/app", "/app", None, None),
    ("/auth/logout", "/auth/logout", "", None, "logout"),
    ("/auth/logout", "/logout", "", None, None),
    ("/auth/logout", "/api/v1/auth/logout", "/api/v1", None, "logout"),
    ("/auth/logout", "/api/v2/auth/logout", "/api/v1", None, None),
    ("/logout", EVERYWHERE, "", None, None),
    ("/logout", EVERYWHERE, "", EVERYWHERE, "everywhere"),
    ("/logout", "/logout", "", EVERYWHERE, "logout"),
    ("/logout", "/app" + EVERYWHERE, "/app", EVERYWHERE, "everywhere"),
    ("/logout", EVERYWHERE, "/app", EVERYWHERE, "everywhere"),
    ("/logout", EVERYWHERE + "/", "", EVERYWHERE, None),
    ("/logout", "/logout/Everywhere", "", EVERYWHERE, None),
    ("/logout", "/all", "", "/all", "everywhere"),
]


@pytest.mark.parametrize(
    ("own", "path", "root_path", "everywhere", "expected"),
    ROUTE_CASES,
    ids=[
        f"{own}|{path or 'empty'}|root={root or 'none'}|all={every or 'none'}"
        for own, path, root, every, _ in ROUTE_CASES
    ],
)
def test_route(
    own: str, path: str, root_path: str, everywhere: str | None, expected: Route | None
) -> None:
    core = make_core(path=own, everywhere_path=everywhere)
    assert core.route(path, root_path) == expected


# -- the core's own answers --------------------------------------------------------------


def test_revoked_response() -> None:
    """A revoked bearer token gets RFC 6750's ``invalid_token`` (unchanged)."""
    response = make_core().revoked
    assert response.status == 401
    assert header(response, "Cache-Control") == "no-store"
    assert header(response, "WWW-Authenticate") == (
        'Bearer error="invalid_token", error_description="The access token has been revoked"'
    )
    assert header(response, "Content-Type") == "application/json"
    assert header(response, "Content-Length") == str(len(response.body))
    assert json.loads(response.body) == {
        "error": "invalid_token",
        "error_description": "The access token has been revoked",
    }


def test_check_unavailable_response() -> None:
    response = make_core(on_check_error="deny").check_unavailable
    assert response.status == 503
    assert header(response, "Retry-After") == "5"
    assert header(response, "Cache-Control") == "no-store"
    assert response.body == b"Service Unavailable: revocation cannot be checked.\n"


@pytest.mark.parametrize(
    ("has_store", "revoke_tokens", "requests", "tokens"),
    [(True, True, True, True), (False, True, False, False), (True, False, True, False)],
    ids=["store", "no-store", "store-tokens-off"],
)
def test_what_requests_pay(
    has_store: bool, revoke_tokens: bool, requests: bool, tokens: bool
) -> None:
    core = make_core(has_store=has_store, revoke_tokens=revoke_tokens)
    assert core.checks_requests is requests
    assert core.checks.sessions is requests
    assert core.checks.tokens is tokens
    assert (core.mirror is not None) is has_store


# -- admit: methods ------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS", "post"])
def test_admit_refuses_other_methods(method: str) -> None:
    response = make_core().admit(head(method=method))
    assert isinstance(response, Response)
    assert response.status == 405
    assert header(response, "Allow") == "POST"
    assert header(response, "Cache-Control") == "no-store"


def test_admit_post_reads_no_body_without_form() -> None:
    assert make_core().admit(head()) == 0


def test_admit_configured_methods() -> None:
    core = make_core(methods=("POST", "DELETE"))
    assert core.admit(head(method="DELETE")) == 0
    refused = core.admit(head(method="GET"))
    assert isinstance(refused, Response)
    assert refused.status == 405
    assert header(refused, "Allow") == "POST, DELETE"


def test_admit_allow_under_confirm_includes_get_and_head() -> None:
    response = make_core(on_get="confirm").admit(head(method="PUT"))
    assert isinstance(response, Response)
    assert response.status == 405
    assert header(response, "Allow") == "POST, GET, HEAD"


def test_confirm_page_for_get() -> None:
    response = make_core(on_get="confirm").admit(head(method="GET", root_path="/app"))
    assert isinstance(response, Response)
    assert response.status == 200
    assert header(response, "Content-Type") == "text/html; charset=utf-8"
    assert header(response, "Content-Length") == str(len(response.body))
    assert header(response, "Cache-Control") == "no-store"
    assert header(response, "X-Frame-Options") == "DENY"
    assert "frame-ancestors 'none'" in (header(response, "Content-Security-Policy") or "")
    page = response.body.decode()
    assert '<form method="post" action="/app/logout">' in page
    assert 'type="hidden"' not in page


def test_confirm_page_for_head_has_no_body() -> None:
    core = make_core(on_get="confirm")
    get = core.admit(head(method="GET"))
    response = core.admit(head(method="HEAD"))
    assert isinstance(get, Response)
    assert isinstance(response, Response)
    assert response.status == 200
    assert response.body == b""
    assert header(response, "Content-Length") == str(len(get.body))


@pytest.mark.parametrize(
    ("query", "hidden"),
    [
        ("next=/dashboard", '<input type="hidden" name="next" value="/dashboard">'),
        ("next=%2Fa%3Fb%3D1%26c%3D2", '<input type="hidden" name="next" value="/a?b=1&amp;c=2">'),
        ("next=//evil.example", None),
        ("next=https://evil.example/", None),
        ("next=/", None),
        ("next=/a&next=/b", None),
        ("other=/x", None),
    ],
    ids=["safe", "escaped", "scheme-relative", "foreign", "same-as-default", "ambiguous", "absent"],
)
def test_confirm_page_carries_safe_next(query: str, hidden: str | None) -> None:
    response = make_core(on_get="confirm").admit(head(method="GET", query_string=query))
    assert isinstance(response, Response)
    page = response.body.decode()
    if hidden is None:
        assert 'type="hidden"' not in page
    else:
        assert hidden in page


def test_confirm_page_escapes_next() -> None:
    query = "next=/a%22%3E%3Cscript%3Ealert(1)%3C/script%3E"
    response = make_core(on_get="confirm").admit(head(method="GET", query_string=query))
    assert isinstance(response, Response)
    page = response.body.decode()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


# -- admit: cross-site requests --------------------------------------------------------

ORIGIN_CASES: list[tuple[str, dict[str, Any], bool]] = [
    ("no-headers", {}, True),
    ("same-origin", {"origin": "http://example.com", "sec_fetch_site": "same-origin"}, True),
    ("same-site", {"sec_fetch_site": "same-site"}, True),
    ("cross-site", {"sec_fetch_site": "cross-site"}, False),
    ("cross-site-upper", {"sec_fetch_site": "Cross-Site"}, False),
    ("foreign-origin", {"origin": "https://evil.example"}, False),
    ("null-origin", {"origin": "null"}, False),
    ("default-port", {"origin": "https://example.com", "host": "example.com:443"}, True),
    ("other-port", {"origin": "http://example.com:8080"}, False),
    ("trusted", {"origin": "https://app.example.net", "sec_fetch_site": "cross-site"}, True),
    # Sec-Fetch-Site is trusted first (Go's CrossOriginProtection): a same-origin page
    # with Referrer-Policy: no-referrer posts Origin: null, and may log out.
    ("same-origin-null-origin", {"origin": "null", "sec_fetch_site": "same-origin"}, True),
    ("none-null-origin", {"origin": "null", "sec_fetch_site": "none"}, True),
    (
        "same-origin-foreign-origin",
        {"origin": "https://evil.example", "sec_fetch_site": "same-origin"},
        True,
    ),
    ("none-alone", {"sec_fetch_site": "none"}, True),
    ("same-origin-and-none", {"origin": "null", "sec_fetch_site": "same-origin, none"}, True),
    # same-site falls back to the Origin check.
    ("same-site-null-origin", {"origin": "null", "sec_fetch_site": "same-site"}, False),
    ("same-site-own-origin", {"origin": "http://example.com", "sec_fetch_site": "same-site"}, True),
    (
        "same-site-sibling-origin",
        {"origin": "https://shop.example.com", "sec_fetch_site": "same-site"},
        False,
    ),
    # cross-site is refused whatever Origin says, and in any repeat.
    (
        "cross-site-own-origin",
        {"origin": "http://example.com", "sec_fetch_site": "cross-site"},
        False,
    ),
    ("same-origin-and-cross-site", {"sec_fetch_site": "same-origin, cross-site"}, False),
    (
        "same-origin-and-same-site-null",
        {"origin": "null", "sec_fetch_site": "same-origin, same-site"},
        False,
    ),
    ("unknown-value-null-origin", {"origin": "null", "sec_fetch_site": "bogus"}, False),
]


@pytest.mark.parametrize(
    ("extra", "admitted"),
    [(extra, admitted) for _, extra, admitted in ORIGIN_CASES],
    ids=[case_id for case_id, _, _ in ORIGIN_CASES],
)
def test_admit_cross_site(extra: dict[str, Any], admitted: bool) -> None:
    core = make_core(trusted_origins=("https://app.example.net",))
    result = core.admit(head(**extra))
    if admitted:
        assert result == 0
    else:
        assert isinstance(result, Response)
        assert result.status == 403


# -- admit: Content-Length and content type -------------------------------------------

LENGTH_CASES = [
    ("", 0),
    ("0", 0),
    ("10", 0),
    (" 10 ", 0),
    ("1024", 0),
    ("1025", 413),
    ("99999999999999999999", 413),
    ("abc", 400),
    ("-1", 400),
    ("1.5", 400),
    ("+5", 400),
    ("1 2", 400),
    ("\uff11\uff10", 400),
]


@pytest.mark.parametrize(
    ("content_length", "expected"),
    LENGTH_CASES,
    ids=[repr(v) for v, _ in LENGTH_CASES],
)
def test_admit_content_length(content_length: str, expected: int) -> None:
    result = make_core(max_body=1024).admit(head(content_length=content_length))
    if expected == 0:
        assert result == 0
    else:
        assert isinstance(result, Response)
        assert result.status == expected
        assert header(result, "Cache-Control") == "no-store"


CONTENT_TYPE_CASES = [
    ("application/x-www-form-urlencoded", True),
    ("application/x-www-form-urlencoded; charset=utf-8", True),
    ("Application/X-WWW-Form-Urlencoded", True),
    ("multipart/form-data; boundary=xyz", True),
    ("  multipart/form-data ;boundary=xyz", True),
    ("application/json", False),
    ("text/plain", False),
    ("application/octet-stream", False),
    ("", False),
]


@pytest.mark.parametrize(
    ("content_type", "reads_body"),
    CONTENT_TYPE_CASES,
    ids=[v.strip() or "none" for v, _ in CONTENT_TYPE_CASES],
)
def test_admit_content_type_asks_for_body(content_type: str, reads_body: bool) -> None:
    result = make_core(max_body=1024).admit(head(content_type=content_type, content_length="20"))
    assert result == (1024 if reads_body else 0)


# -- logout: sessions ------------------------------------------------------------------

SECRET = "flask-secret-key"


def signed(sid: str, secret: str = SECRET, salt: str = "flask-session") -> str:
    return Signer(secret, salt=salt, key_derivation="hmac").sign(sid).decode()


SESSION_CASES: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("unsigned", {}, "session=abc123", "abc123"),
    ("unsigned-among-others", {}, "theme=dark; session=abc123; x=1", "abc123"),
    ("no-cookie", {}, "", None),
    ("other-cookie-only", {}, "theme=dark", None),
    ("empty-value", {}, "session=", None),
    ("too-long", {}, "session=" + "a" * 513, None),
    ("longest", {}, "session=" + "a" * 512, "a" * 512),
    ("custom-cookie", {"session_cookie": "sid"}, "session=nope; sid=xyz", "xyz"),
    ("signed", {"session_secret": SECRET}, f"session={signed('abc123')}", "abc123"),
    (
        "signed-custom-salt",
        {"session_secret": SECRET, "session_salt": "other"},
        f"session={signed('abc123', salt='other')}",
        "abc123",
    ),
    (
        "signed-wrong-secret",
        {"session_secret": SECRET},
        f"session={signed('abc123', secret='not-the-secret')}",
        None,
    ),
    (
        "signed-wrong-salt",
        {"session_secret": SECRET},
        f"session={signed('abc123', salt='itsdangerous.Signer')}",
        None,
    ),
    ("signed-tampered", {"session_secret": SECRET}, f"session=zzz{signed('abc123')[3:]}", None),
    ("unsigned-under-secret", {"session_secret": SECRET}, "session=abc123", None),
]


@pytest.mark.parametrize(
    ("config", "cookie", "sid"),
    [(config, cookie, sid) for _, config, cookie, sid in SESSION_CASES],
    ids=[case_id for case_id, _, _, _ in SESSION_CASES],
)
def test_logout_session(config: dict[str, Any], cookie: str, sid: str | None) -> None:
    core = make_core(**config)
    _, event, runner = completed(core, head(cookie=cookie))
    ops = runner.ops
    if sid is None:
        assert ops.delete == ()
        assert ops.sets == ()
        assert event.session_id_hash is None
        assert runner.of(Read) == []
        return
    digest = sha256_hex(sid.encode())
    assert ops.delete == (f"session:{sid}",)
    assert ops.sets == (("logout:revoked-session:" + digest, "1", 31 * 24 * 3600),)
    assert event.session_id_hash == digest
    # The record was read first, to learn whose session it is.
    assert runner.of(Read) == []  # no LOGOUT_SESSION_SUBJECT: nothing to learn, one round trip


def test_logout_session_key_templates() -> None:
    core = make_core(session_keys=("session:{sid}", "starsessions.{sid}", "{sid}:meta"))
    _, _, runner = completed(core, head(cookie="session=s1"))
    assert runner.ops.delete == ("session:s1", "starsessions.s1", "s1:meta")
    assert runner.of(Read) == []


def test_logout_session_tombstone_ttl() -> None:
    _, _, runner = completed(make_core(session_ttl=600), head(cookie="session=s1"))
    assert runner.ops.sets == (("logout:revoked-session:" + sha256_hex(b"s1"), "1", 600),)


def test_logout_without_store_has_no_ops() -> None:
    core = make_core(has_store=False)
    _, event, runner = completed(core, head(cookie="session=s1", authorization="Bearer t"))
    assert runner.requests == []
    assert event.store == "disabled"
    assert event.session_id_hash == sha256_hex(b"s1")
    assert event.token_hash == sha256_hex(b"t")


def test_logout_with_drive_and_no_store() -> None:
    """How an adapter without Redis runs the flow: store.drive with no store."""
    core = make_core(has_store=False)
    response, event = drive(
        core.logout(head(cookie="session=s1"), b""), store=None, verifier=core.verifier
    )
    assert response.status == 303
    assert event is not None
    assert event.store == "disabled"


def test_logout_marks_own_revocations_in_mirror_first() -> None:
    """The mirror holds the logout's revocations before its transaction is sent."""
    core = make_core()
    flow = core.logout(head(cookie="session=s1", authorization="Bearer tok"), b"")
    request = flow.send(None)
    while not isinstance(request, StoreOps):
        request = flow.send(Reading(values=(None,), members=()))
    mirror = core.mirror
    assert mirror is not None
    assert mirror.session_revoked(int(sha256_hex(b"s1")[:16], 16)) is True
    assert mirror.token_cleared(int(sha256_hex(b"tok")[:16], 16)) is False
    flow.close()


# -- logout: tokens --------------------------------------------------------------------

TTL_CASES: list[tuple[str, dict[str, Any], str, int]] = [
    ("opaque-default", {}, "opaque-token", 3600),
    ("opaque-configured", {"token_ttl": 120}, "opaque-token", 120),
    ("opaque-capped", {"token_ttl": 5000, "token_max_ttl": 1000}, "opaque-token", 1000),
    ("jwt-exp", {}, jwt_token({"sub": "u", "exp": int(T) + 600}), 660),
    ("jwt-float-exp", {}, jwt_token({"exp": T + 600.9}), 660),
    ("jwt-expired", {}, jwt_token({"exp": int(T) - 3600}), 1),
    ("jwt-just-expired", {}, jwt_token({"exp": int(T) - 30}), 30),
    ("jwt-far-future-capped", {}, jwt_token({"exp": int(T) + 10**9}), 30 * 24 * 3600),
    ("jwt-capped-configured", {"token_max_ttl": 900}, jwt_token({"exp": int(T) + 3600}), 900),
    ("jwt-without-exp", {"token_ttl": 77}, jwt_token({"sub": "u"}), 77),
    ("jwt-string-exp", {"token_ttl": 77}, jwt_token({"exp": "tomorrow"}), 77),
    ("jwt-bool-exp", {"token_ttl": 77}, jwt_token({"exp": True}), 77),
    ("three-parts-not-jwt", {"token_ttl": 77}, "aaa.bbb.ccc", 77),
]


@pytest.mark.parametrize(
    ("config", "token", "ttl"),
    [(config, token, ttl) for _, config, token, ttl in TTL_CASES],
    ids=[case_id for case_id, _, _, _ in TTL_CASES],
)
def test_logout_token_ttl(config: dict[str, Any], token: str, ttl: int) -> None:
    _, event, runner = completed(make_core(**config), head(authorization=f"Bearer {token}"))
    assert event.token_ttl == ttl
    assert event.token_hash == sha256_hex(token.encode())
    assert event.tokens_ended == 1
    assert runner.ops.sets == (("logout:revoked:" + sha256_hex(token.encode()), "1", ttl),)


def test_logout_token_ttl_follows_clock() -> None:
    token = jwt_token({"exp": int(T) + 1000})
    later = make_core(clock=lambda: T + 500)
    _, event, _ = completed(later, head(authorization=f"Bearer {token}"))
    assert event.token_ttl == 560


def test_logout_revoke_key_matches_request_check_key() -> None:
    """The key a logout writes is the key every later request's check asks about."""
    core = make_core(denylist_prefix="deny:")
    _, _, runner = completed(core, head(authorization="bearer tok"))
    known = core.checks.token(b"Bearer tok")
    assert known is not None
    assert runner.ops.sets == ((known.key, "1", 3600),)
    assert known.key == "deny:" + sha256_hex(b"tok")


@pytest.mark.parametrize(
    "authorization",
    ["", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer " + "x" * 8193],
    ids=["none", "basic", "empty-token", "overlong"],
)
def test_logout_without_bearer_token_revokes_nothing(authorization: str) -> None:
    _, event, runner = completed(make_core(), head(authorization=authorization))
    assert runner.ops.sets == ()
    assert event.token_hash is None
    assert event.token_ttl is None
    assert event.tokens_ended == 0


def test_logout_revoke_tokens_off() -> None:
    _, event, runner = completed(make_core(revoke_tokens=False), head(authorization="Bearer tok"))
    assert runner.ops.sets == ()
    assert event.token_hash == sha256_hex(b"tok")
    assert event.tokens_ended == 0


def test_logout_verifies_token_when_a_key_is_set() -> None:
    core = make_core(jwt_key=JWT_KEY)
    token = jwt_token({"sub": "user-1", "iat": int(T)})
    _, event, runner = completed(core, head(authorization=f"Bearer {token}"))
    assert runner.of(Verify) == [Verify(token.encode())]
    assert event.subject == "user-1"
    # The verifier checks exp against the real clock: this token has none, so it holds.
    assert event.subject_source == "jwt"


def test_logout_asks_no_verification_without_a_key() -> None:
    token = jwt_token({"sub": "user-1"})
    _, event, runner = completed(make_core(), head(authorization=f"Bearer {token}"))
    assert runner.of(Verify) == []
    assert event.subject == "user-1"
    assert event.subject_source == "jwt_unverified"


# -- logout: JSON or redirect, and next ------------------------------------------------

ACCEPT_CASES = [
    ("", False),
    ("*/*", False),
    ("text/html", False),
    ("application/json", True),
    ("application/json, text/plain, */*", True),
    ("text/html, application/json;q=0.9", False),
    ("application/json, text/html;q=0.5", True),
    ("text/html;q=0.5, application/json", True),
    ("application/json;q=0, text/html", False),
    ("application/problem+json", False),
    # Media types are case-insensitive (RFC 9110 section 8.3.1).
    ("Application/JSON", True),
]


@pytest.mark.parametrize(
    ("accept", "wants_json"), ACCEPT_CASES, ids=[a or "none" for a, _ in ACCEPT_CASES]
)
def test_logout_json_or_redirect(accept: str, wants_json: bool) -> None:
    response, event, _ = completed(make_core(), head(accept=accept, query_string="next=/bye"))
    assert event.redirect == (None if wants_json else "/bye")
    assert response.status == (200 if wants_json else 303)
    assert header(response, "Location") == event.redirect


#: The boundary of the multipart bodies in NEXT_CASES.
MP_BOUNDARY = "BoUnDaRy"
MP_TYPE, MP_BODY = multipart([("csrf", "x"), ("next", "/from-multipart")], MP_BOUNDARY)
MP_TWO_TYPE, MP_TWO_BODY = multipart([("next", "/a"), ("next", "/b")], MP_BOUNDARY)

NEXT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bytes, str]] = [
    ("absent", {}, {}, b"", "/"),
    ("absent-custom-default", {"next_uri": "/bye"}, {}, b"", "/bye"),
    ("query", {}, {"query_string": "next=/dashboard"}, b"", "/dashboard"),
    ("query-encoded", {}, {"query_string": "next=%2Fa%3Fx%3D1"}, b"", "/a?x=1"),
    ("query-unsafe", {}, {"query_string": "next=//evil.example"}, b"", "/"),
    ("query-unsafe-custom", {"next_uri": "/bye"}, {"query_string": "next=//evil"}, b"", "/bye"),
    ("query-foreign-host", {}, {"query_string": "next=https://evil.example/"}, b"", "/"),
    (
        "query-own-host",
        {},
        {"query_string": "next=http://example.com/x"},
        b"",
        "http://example.com/x",
    ),
    (
        "query-allowed-host",
        {"allowed_hosts": ("accounts.example.org",)},
        {"query_string": "next=https://accounts.example.org/signed-out"},
        b"",
        "https://accounts.example.org/signed-out",
    ),
    ("query-empty", {}, {"query_string": "next="}, b"", "/"),
    (
        "custom-param",
        {"next_param": "return_to"},
        {"query_string": "return_to=/r&next=/n"},
        b"",
        "/r",
    ),
    ("form", {}, {"content_type": FORM}, b"csrf=x&next=%2Fhome", "/home"),
    ("form-unsafe", {}, {"content_type": FORM}, b"next=javascript%3Aalert(1)", "/"),
    # admit() reads the body of a mixed-case form type, so logout() must parse it.
    (
        "form-mixed-case-type",
        {},
        {"content_type": "Application/X-WWW-Form-Urlencoded"},
        b"next=%2Fhome",
        "/home",
    ),
    ("multipart", {}, {"content_type": MP_TYPE}, MP_BODY, "/from-multipart"),
    ("repeated-same", {}, {"query_string": "next=/a&next=/a"}, b"", "/a"),
    ("repeated-differing", {}, {"query_string": "next=/a&next=/b"}, b"", "/"),
    (
        "query-and-form-same",
        {},
        {"query_string": "next=/a", "content_type": FORM},
        b"next=/a",
        "/a",
    ),
    (
        "query-and-form-differing",
        {},
        {"query_string": "next=/a", "content_type": FORM},
        b"next=/b",
        "/",
    ),
    ("multipart-differing", {}, {"content_type": MP_TWO_TYPE}, MP_TWO_BODY, "/"),
    (
        "repeated-differing-custom-default",
        {"next_uri": "/bye"},
        {"query_string": "next=/a&next=/b"},
        b"",
        "/bye",
    ),
]


@pytest.mark.parametrize(
    ("config", "request_fields", "body", "expected"),
    [(c, r, b, e) for _, c, r, b, e in NEXT_CASES],
    ids=[case_id for case_id, _, _, _, _ in NEXT_CASES],
)
def test_logout_next(
    config: dict[str, Any], request_fields: dict[str, Any], body: bytes, expected: str
) -> None:
    response, event, _ = completed(make_core(**config), head(**request_fields), body)
    assert event.redirect == expected
    assert header(response, "Location") == expected


def test_logout_https_refuses_http_next() -> None:
    _, event, _ = completed(
        make_core(), head(scheme="https", query_string="next=http://example.com/x")
    )
    assert event.redirect == "/"


@pytest.mark.parametrize(
    ("request_fields", "body", "status"),
    [
        ({"content_type": FORM}, b"next=" + b"a" * 1100, 413),
        ({"content_type": "multipart/form-data; boundary=xyz"}, b"garbage", 400),
        ({"content_type": "multipart/form-data"}, b"garbage", 400),
        ({"query_string": "&".join(["a=1"] * 300)}, b"", 400),
    ],
    ids=["body-too-large", "malformed-multipart", "multipart-no-boundary", "too-many-fields"],
)
def test_logout_refuses_bad_body(request_fields: dict[str, Any], body: bytes, status: int) -> None:
    core = make_core(max_body=1024)
    response, event, runner = logout(core, head(cookie="session=s1", **request_fields), body)
    assert event is None
    assert response.status == status
    assert header(response, "Cache-Control") == "no-store"
    assert runner.requests == []  # nothing read, nothing changed


# -- logout: event and ops -------------------------------------------------------------


def test_logout_event_fields() -> None:
    token = "raw-token-value-456"
    core = make_core(cookies=("session", "remember"), events_stream="audit", events_maxlen=50)
    _, event, runner = completed(
        core,
        head(
            root_path="/app",
            cookie="session=raw-session-id-123",
            authorization=f"Bearer {token}",
            user_agent="UA/" + "x" * 400,
            client="203.0.113.7",
            query_string="next=/bye",
        ),
        outcome=StoreOutcome("ok", sessions_deleted=1),
    )
    assert re.fullmatch(r"[0-9a-f]{32}", event.id)
    assert event.at == datetime.fromtimestamp(T, timezone.utc)
    assert event.method == "POST"
    assert event.path == "/app/logout"
    assert event.cookies == ("session", "remember")
    assert event.session_id_hash == sha256_hex(b"raw-session-id-123")
    assert event.token_hash == sha256_hex(token.encode())
    assert event.token_ttl == 3600
    assert event.client == "203.0.113.7"
    assert event.user_agent == ("UA/" + "x" * 400)[:256]
    assert event.redirect == "/bye"
    assert event.store == "ok"
    assert event.store_error is None
    assert event.sessions_deleted == 1
    assert event.type == "session_end"
    assert event.reason == "user_logout"
    assert event.subject is None
    assert event.subject_source is None
    assert event.impersonator is None
    assert event.duration is None
    assert event.sessions_ended == 1
    assert event.tokens_ended == 1
    assert event.ended_session_hashes == ()
    assert event.not_before is None
    ops = runner.ops
    assert ops.stream == "audit"
    assert ops.maxlen == 50
    assert ops.entry == tuple(event.to_fields().items())
    assert ops.delete == ("session:raw-session-id-123",)  # the key itself needs the id
    assert ops.unindex == ()  # the record named no subject
    assert ops.discard == ()
    for text in (repr(event), repr(ops.entry), repr(ops.sets)):
        assert "raw-session-id-123" not in text
        assert token not in text


def test_logout_event_ids_differ() -> None:
    core = make_core()
    assert completed(core, head())[1].id != completed(core, head())[1].id


def test_logout_empty_user_agent_and_client() -> None:
    _, event, _ = completed(make_core(), head())
    assert event.user_agent is None
    assert event.client is None


def test_logout_no_stream_when_disabled() -> None:
    _, _, runner = completed(make_core(events_stream="", revocation_cache=False), head())
    assert runner.ops.stream is None


def flask_record(data: dict[str, Any]) -> bytes:
    """A session record as Flask-Session 0.8 stores it."""
    return msgspec.msgpack.encode(data)


def test_logout_learns_subject_from_the_record() -> None:
    core = make_core(session_subject="_user_id")
    index = core.keys.index("42")
    _, event, runner = completed(
        core,
        head(cookie="session=s1"),
        records={"session:s1": flask_record({"_user_id": "42"})},
    )
    assert event.subject == "42"
    assert event.subject_source == "session"
    assert runner.ops.unindex == ((index, sha256_hex(b"s1")),)
    assert runner.ops.discard == ()
    assert not any("not-before" in key for key, _, _ in runner.ops.sets)


def test_logout_duration_from_starsessions_metadata() -> None:
    core = make_core(session_subject="user.id", session_keys=("starsessions.{sid}",))
    record = json.dumps({"user": {"id": 7}, "__metadata__": {"created": T - 90.5}}).encode()
    _, event, _ = completed(core, head(cookie="session=s1"), records={"starsessions.s1": record})
    assert event.subject == "7"
    assert event.duration == 90.5
    assert event.to_fields()["duration"] == "90.500"


def test_logout_duration_from_jwt_iat() -> None:
    token = jwt_token({"sub": "u", "iat": int(T) - 30})
    _, event, _ = completed(make_core(), head(authorization=f"Bearer {token}"))
    assert event.duration == 30.0


# -- event type and reason ---------------------------------------------------------------

TYPE_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("nothing", {}, "anon_context_end"),
    ("session", {"cookie": "session=s1"}, "session_end"),
    ("opaque-token", {"authorization": "Bearer tok"}, "api_session_end"),
    ("jwt", {"authorization": "Bearer " + jwt_token({"sub": "u"})}, "api_session_end"),
    (
        "session-and-token",
        {"cookie": "session=s1", "authorization": "Bearer tok"},
        "session_end",
    ),
    (
        "impersonation",
        {"authorization": "Bearer " + jwt_token({"sub": "u", "act": {"sub": "admin"}})},
        "impersonation_end",
    ),
    (
        "impersonation-with-session",
        {
            "cookie": "session=s1",
            "authorization": "Bearer " + jwt_token({"sub": "u", "act": {"sub": "admin"}}),
        },
        "impersonation_end",
    ),
    (
        "act-without-sub",
        {"authorization": "Bearer " + jwt_token({"sub": "u", "act": {"iss": "x"}})},
        "api_session_end",
    ),
]


@pytest.mark.parametrize("has_store", [True, False], ids=["store", "no-store"])
@pytest.mark.parametrize(
    ("request_fields", "event_type"),
    [(fields, event_type) for _, fields, event_type in TYPE_CASES],
    ids=[case_id for case_id, _, _ in TYPE_CASES],
)
def test_event_type(request_fields: dict[str, Any], event_type: str, has_store: bool) -> None:
    _, event, _ = completed(make_core(has_store=has_store), head(**request_fields))
    assert event.type == event_type
    assert event.reason == "user_logout"
    assert event.to_fields()["type"] == event_type


def test_event_impersonator() -> None:
    token = jwt_token({"sub": "u", "act": {"sub": "support-7"}})
    _, event, _ = completed(make_core(), head(authorization=f"Bearer {token}"))
    assert event.impersonator == "support-7"
    assert event.subject == "u"
    assert event.to_fields()["impersonator"] == "support-7"


# -- the response ----------------------------------------------------------------------


def finish(
    core: LogoutCore, request: RequestHead, outcome: StoreOutcome | None = None
) -> tuple[Response, LogoutEvent]:
    response, event, _ = completed(core, request, outcome=outcome or StoreOutcome("ok"))
    return response, event


def test_response_redirects() -> None:
    response, event = finish(make_core(), head(query_string="next=/bye"))
    assert response.status == 303
    assert header(response, "Location") == "/bye"
    assert header(response, "Content-Length") == "0"
    assert header(response, "Cache-Control") == "no-store"
    assert response.body == b""
    assert event.redirect == "/bye"


def test_response_json() -> None:
    response, event = finish(make_core(), head(accept="application/json"))
    assert response.status == 200
    assert json.loads(response.body) == {"success": True}
    assert header(response, "Content-Type") == "application/json"
    assert header(response, "Content-Length") == str(len(response.body))
    assert header(response, "Cache-Control") == "no-store"
    assert header(response, "Location") is None
    assert event.redirect is None


def test_response_expires_every_cookie() -> None:
    core = make_core(
        cookies=("session", "remember", "csrftoken"),
        session_cookie="sid",
        cookie_path="/app",
        cookie_domain="example.com",
    )
    response, event = finish(core, head())
    cookies = [cookie_attrs(v) for v in headers(response, "Set-Cookie")]
    assert [name for name, _, _ in cookies] == ["session", "remember", "csrftoken", "sid"]
    assert event.cookies == ("session", "remember", "csrftoken", "sid")
    for raw in headers(response, "Set-Cookie"):
        assert EPOCH in raw
    for _, value, attrs in cookies:
        assert value == ""
        assert attrs["max-age"] == "0"
        assert attrs["expires"] == "Thu, 01 Jan 1970 00:00:00 GMT"
        assert attrs["path"] == "/app"
        assert attrs["domain"] == "example.com"
        assert "httponly" in attrs
        assert "secure" not in attrs


@pytest.mark.parametrize("cookie_secure", [None, False], ids=["auto", "secure-false"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_response_prefixed_cookies(scheme: str, cookie_secure: bool | None) -> None:
    core = make_core(
        cookies=("__Host-session", "__Secure-remember", "plain"),
        cookie_path="/app",
        cookie_domain="example.com",
        cookie_secure=cookie_secure,
    )
    response, _ = finish(core, head(scheme=scheme))
    found = {name: attrs for name, _, attrs in map(cookie_attrs, headers(response, "Set-Cookie"))}
    host = found["__Host-session"]
    assert "secure" in host
    assert host["path"] == "/"
    assert "domain" not in host
    secure = found["__Secure-remember"]
    assert "secure" in secure
    assert secure["path"] == "/app"
    assert secure["domain"] == "example.com"
    assert ("secure" in found["plain"]) is (scheme == "https" and cookie_secure is None)
    assert found["plain"]["max-age"] == "0"


@pytest.mark.parametrize(
    ("cookie_secure", "scheme", "secure"),
    [
        (None, "http", False),
        (None, "https", True),
        (True, "http", True),
        (True, "https", True),
        (False, "http", False),
        (False, "https", False),
    ],
    ids=["auto-http", "auto-https", "true-http", "true-https", "false-http", "false-https"],
)
def test_response_cookie_secure(cookie_secure: bool | None, scheme: str, secure: bool) -> None:
    response, _ = finish(make_core(cookie_secure=cookie_secure), head(scheme=scheme))
    (raw,) = headers(response, "Set-Cookie")
    assert ("secure" in cookie_attrs(raw)[2]) is secure


@pytest.mark.parametrize(
    ("samesite", "secure"), [("Strict", False), ("Lax", False), ("None", True)]
)
def test_response_cookie_samesite(samesite: str, secure: bool) -> None:
    response, _ = finish(make_core(cookie_samesite=samesite), head())
    (raw,) = headers(response, "Set-Cookie")
    attrs = cookie_attrs(raw)[2]
    assert attrs["samesite"] == samesite
    assert ("secure" in attrs) is secure


@pytest.mark.parametrize(
    ("clear", "scheme", "expected"),
    [
        (("cookies", "storage"), "https", '"cookies", "storage"'),
        (("cookies", "storage"), "http", None),
        (("*",), "https", '"*"'),
        ((), "https", None),
    ],
    ids=["https", "http", "wildcard", "none-configured"],
)
def test_response_clear_site_data(
    clear: tuple[str, ...], scheme: str, expected: str | None
) -> None:
    response, _ = finish(make_core(clear_site_data=clear), head(scheme=scheme))
    assert header(response, "Clear-Site-Data") == expected


def test_response_store_failed_under_fail() -> None:
    core = make_core(clear_site_data=("cookies",))
    outcome = StoreOutcome("failed", error="ConnectionError: refused")
    response, event = finish(core, head(scheme="https", query_string="next=/bye"), outcome)
    assert response.status == 503
    assert header(response, "Retry-After") == "5"
    assert header(response, "Cache-Control") == "no-store"
    assert header(response, "Location") is None
    assert header(response, "Clear-Site-Data") == '"cookies"'
    body = json.loads(response.body)
    assert body["success"] is False
    assert body["error"] == "session_store_unavailable"
    (raw,) = headers(response, "Set-Cookie")
    assert cookie_attrs(raw)[2]["max-age"] == "0"
    assert event.store == "failed"
    assert event.store_error == "ConnectionError: refused"
    assert event.redirect is None
    assert event.sessions_deleted == 0


@pytest.mark.parametrize(
    ("accept", "status"), [("", 303), ("application/json", 200)], ids=["redirect", "json"]
)
def test_response_store_failed_under_succeed(accept: str, status: int) -> None:
    core = make_core(on_store_error="succeed")
    outcome = StoreOutcome("failed", error="TimeoutError: slow")
    response, event = finish(core, head(accept=accept), outcome)
    assert response.status == status
    assert header(response, "Retry-After") is None
    assert header(response, "Cache-Control") == "no-store"
    assert headers(response, "Set-Cookie")
    assert event.store == "failed"
    assert event.store_error == "TimeoutError: slow"


@pytest.mark.parametrize(
    "outcome",
    [StoreOutcome("ok", sessions_deleted=2), StoreOutcome("disabled")],
    ids=["ok", "disabled"],
)
def test_response_event_takes_outcome(outcome: StoreOutcome) -> None:
    core = make_core()
    response, event = finish(core, head(cookie="session=s", authorization="Bearer t"), outcome)
    assert response.status == 303
    assert event.store == outcome.status
    assert event.sessions_deleted == outcome.sessions_deleted
    assert event.store_error is None
    assert event.store_ok is (outcome.status == "ok")
    assert event.session_id_hash == sha256_hex(b"s")
    assert event.token_hash == sha256_hex(b"t")


def test_every_response_is_no_store() -> None:
    core = make_core(on_get="confirm", max_body=10)
    responses: list[Response | int] = [
        core.admit(head(method="PUT")),
        core.admit(head(method="GET")),
        core.admit(head(sec_fetch_site="cross-site")),
        core.admit(head(content_length="11")),
        core.admit(head(content_length="x")),
        logout(core, head(content_type=FORM), b"x" * 11)[0],
        logout(make_core(everywhere_path=EVERYWHERE), head(), route="everywhere")[0],
        finish(core, head(accept="application/json"))[0],
        finish(core, head())[0],
        core.revoked,
        core.check_unavailable,
        core.internal_error,
        core.bad_request,
    ]
    for found in responses:
        assert isinstance(found, Response)
        assert header(found, "Cache-Control") == "no-store", found


# -- the everywhere URI ----------------------------------------------------------------

NO_SUBJECT = {
    "error": "unknown_subject",
    "error_description": "Logging out everywhere needs a logged-in session "
    "or a verified bearer token; nothing was changed.",
}


def everywhere_core(**kw: Any) -> LogoutCore:
    settings: dict[str, Any] = {"everywhere_path": EVERYWHERE, "session_subject": "user"}
    settings.update(kw)
    return make_core(**settings)


def everywhere(
    core: LogoutCore, request: RequestHead, **driver: Any
) -> tuple[Response, LogoutEvent | None, Driver]:
    return logout(core, request, route="everywhere", **driver)


UNTRUSTED_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, bytes], int]] = [
    ("no-credentials", {}, {}, {}, 0),
    ("session-without-record", {}, {"cookie": "session=s1"}, {}, 1),
    (
        "record-without-subject",
        {},
        {"cookie": "session=s1"},
        {"session:s1": msgspec.msgpack.encode({"other": "x"})},
        1,
    ),
    (
        "record-subject-not-configured",
        {"session_subject": None},
        {"cookie": "session=s1"},
        {"session:s1": msgspec.msgpack.encode({"user": "u1"})},
        1,
    ),
    (
        "undecodable-record",
        {},
        {"cookie": "session=s1"},
        {"session:s1": b"\xc1 not a record"},
        1,
    ),
    (
        "unverified-jwt",
        {},
        {"authorization": "Bearer " + jwt_token({"sub": "u1", "iat": int(T)})},
        {},
        0,
    ),
    (
        "jwt-failing-verification",
        {"jwt_key": "another-key-that-is-at-least-32-bytes-long"},
        {"authorization": "Bearer " + jwt_token({"sub": "u1", "iat": int(T)})},
        {},
        1,
    ),
    ("opaque-token", {}, {"authorization": "Bearer opaque"}, {}, 0),
    (
        "verified-jwt-without-sub",
        {"jwt_key": JWT_KEY},
        {"authorization": "Bearer " + jwt_token({"iat": int(T)})},
        {},
        1,
    ),
]


@pytest.mark.parametrize(
    ("config", "request_fields", "records", "reads"),
    [case[1:] for case in UNTRUSTED_CASES],
    ids=[case[0] for case in UNTRUSTED_CASES],
)
def test_everywhere_without_trusted_subject(
    config: dict[str, Any],
    request_fields: dict[str, Any],
    records: dict[str, bytes],
    reads: int,
) -> None:
    """Nothing is changed: no StoreOps, no event, a 400 JSON error, cookies kept."""
    core = everywhere_core(**config)
    response, event, runner = everywhere(core, head(**request_fields), records=records)
    assert event is None
    assert response.status == 400
    assert json.loads(response.body) == NO_SUBJECT
    assert header(response, "Content-Type") == "application/json"
    assert header(response, "Cache-Control") == "no-store"
    assert headers(response, "Set-Cookie") == []
    assert runner.of(StoreOps) == []
    assert len(runner.of(Read)) + len(runner.of(Verify)) == reads
    mirror = core.mirror
    assert mirror is not None
    assert mirror.state.tokens == set()
    assert mirror.state.sessions == set()
    assert mirror.state.not_before == {}


def h(name: str) -> str:
    return sha256_hex(name.encode())


def test_everywhere_for_a_session_seen_before_reads_once() -> None:
    """In steady state (the process read the session before), logging out everywhere
    reads the record and the subject's index in one round trip, then writes in one."""
    core = everywhere_core()
    record = msgspec.msgpack.encode({"user": "u1"})
    session = core.checks.session("session=s1")
    assert session is not None
    Driver(core, records={"session:s1": record}).run(core.settle(session))
    index = core.keys.index("u1")
    _, event, runner = everywhere(
        core,
        head(cookie="session=s1"),
        records={"session:s1": record},
        index={index: (h("s2"), h("s1"))},
    )
    assert event is not None
    assert runner.of(Read) == [Read(gets=("session:s1",), ranges=(index,), now=T)]
    assert event.ended_session_hashes == (h("s2"),)


def test_everywhere_by_session_subject() -> None:
    core = everywhere_core(events_stream="audit")
    own, other, third = h("s1"), h("s2"), h("s3")
    index = core.keys.index("u1")
    response, event, runner = everywhere(
        core,
        head(cookie="session=s1", accept="application/json"),
        records={"session:s1": msgspec.msgpack.encode({"user": "u1", "_fresh": True})},
        index={index: (other, own, third)},
        outcome=StoreOutcome("ok", sessions_deleted=1),
    )
    assert event is not None
    # Two reads: the session's record (its subject), then the subject's index.
    assert runner.of(Read) == [Read(gets=("session:s1",), now=T), Read(ranges=(index,), now=T)]
    ttl = 31 * 24 * 3600
    assert runner.ops == StoreOps(
        delete=("session:s1",),
        sets=(
            (core.keys.session(own), "1", ttl),
            (core.keys.session(other), "1", ttl),
            (core.keys.session(third), "1", ttl),
            (core.keys.not_before("u1"), repr(T), 30 * 24 * 3600),
        ),
        unindex=((index, own),),
        discard=(index,),
        stream="audit",
        maxlen=100_000,
        entry=tuple(event.to_fields().items()),
    )
    assert event.reason == "everywhere"
    assert event.type == "session_end"
    assert event.path == EVERYWHERE
    assert event.subject == "u1"
    assert event.subject_source == "session"
    assert event.sessions_ended == 3
    assert event.tokens_ended == 0
    assert event.ended_session_hashes == (other, third)
    assert event.not_before == T
    assert event.sessions_deleted == 1
    fields = event.to_fields()
    assert fields["ended_sessions"] == f"{other},{third}"
    assert fields["not_before"] == repr(T)
    assert fields["subject"] == "u1"
    assert fields["subject_source"] == "session"
    assert fields["reason"] == "everywhere"
    assert response.status == 200
    assert json.loads(response.body) == {
        "success": True,
        "sessions_ended": 3,
        "tokens_ended": 0,
        "not_before": T,
    }
    assert len(headers(response, "Set-Cookie")) == 1
    # The mirror holds all of it before the transaction went out.
    mirror = core.mirror
    assert mirror is not None
    for digest in (own, other, third):
        assert mirror.session_revoked(int(digest[:16], 16)) is True
    assert mirror.not_before("u1") == T


def test_everywhere_redirects_browsers() -> None:
    core = everywhere_core()
    response, event, _ = everywhere(
        core,
        head(cookie="session=s1", query_string="next=/signed-out"),
        records={"session:s1": msgspec.msgpack.encode({"user": "u1"})},
    )
    assert event is not None
    assert response.status == 303
    assert header(response, "Location") == "/signed-out"


def test_everywhere_deletes_records_this_process_knows() -> None:
    """Sessions of the subject seen by this process have their records deleted in the
    same transaction; the others are tombstoned (their records go when their processes
    see the stream)."""
    core = everywhere_core(session_keys=("session:{sid}", "meta:{sid}"))
    core.checks.session("session=s2")  # a request of this process carried session s2
    index = core.keys.index("u1")
    _, event, runner = everywhere(
        core,
        head(cookie="session=s1"),
        records={"session:s1": msgspec.msgpack.encode({"user": "u1"})},
        index={index: (h("s1"), h("s2"), h("s3"))},
    )
    assert event is not None
    assert runner.ops.delete == ("session:s1", "meta:s1", "session:s2", "meta:s2")
    assert {key for key, _, _ in runner.ops.sets} >= {
        core.keys.session(h("s2")),
        core.keys.session(h("s3")),
    }


def test_everywhere_by_verified_jwt() -> None:
    core = everywhere_core(jwt_key=JWT_KEY)
    token = jwt_token({"sub": "u1", "iat": int(T) - 10})
    index = core.keys.index("u1")
    response, event, runner = everywhere(
        core,
        head(authorization=f"Bearer {token}", accept="application/json"),
        index={index: (h("s7"),)},
    )
    assert event is not None
    assert runner.of(Verify) == [Verify(token.encode())]
    assert runner.of(Read) == [Read(ranges=(index,), now=T)]
    assert runner.ops.delete == ()
    assert runner.ops.sets == (
        (core.keys.token(sha256_hex(token.encode())), "1", 3600),
        (core.keys.session(h("s7")), "1", 31 * 24 * 3600),
        (core.keys.not_before("u1"), repr(T), 30 * 24 * 3600),
    )
    assert runner.ops.unindex == ()
    assert runner.ops.discard == (index,)
    assert event.subject_source == "jwt"
    assert event.type == "session_end"  # a session of the subject ended
    assert event.sessions_ended == 1
    assert event.tokens_ended == 1
    assert json.loads(response.body) == {
        "success": True,
        "sessions_ended": 1,
        "tokens_ended": 1,
        "not_before": T,
    }


def test_everywhere_by_verified_jwt_with_empty_index() -> None:
    core = everywhere_core(jwt_key=JWT_KEY)
    token = jwt_token({"sub": "u1"})
    _, event, runner = everywhere(core, head(authorization=f"Bearer {token}"))
    assert event is not None
    assert event.type == "api_session_end"
    assert event.sessions_ended == 0
    assert event.ended_session_hashes == ()
    assert runner.ops.discard == (core.keys.index("u1"),)


def test_everywhere_session_subject_wins_over_jwt() -> None:
    core = everywhere_core(jwt_key=JWT_KEY)
    token = jwt_token({"sub": "from-jwt"})
    _, event, runner = everywhere(
        core,
        head(cookie="session=s1", authorization=f"Bearer {token}"),
        records={"session:s1": msgspec.msgpack.encode({"user": "from-session"})},
    )
    assert event is not None
    assert event.subject == "from-session"
    assert event.subject_source == "session"
    assert runner.ops.discard == (core.keys.index("from-session"),)


def test_everywhere_index_read_failed_still_sets_not_before() -> None:
    """When the index cannot be read, the request's own credentials and the subject's
    JWTs still end; the other sessions are not found."""
    core = everywhere_core()
    runner = Driver(core, records={"session:s1": msgspec.msgpack.encode({"user": "u1"})})
    flow = core.logout(head(cookie="session=s1"), b"", "everywhere")
    request = flow.send(None)
    assert request == Read(gets=("session:s1",), now=T)
    request = flow.send(Reading(values=(runner.records["session:s1"],), members=()))
    assert request == Read(ranges=(core.keys.index("u1"),), now=T)
    ops = flow.send(None)  # Redis failed
    assert isinstance(ops, StoreOps)
    assert (core.keys.not_before("u1"), repr(T), 30 * 24 * 3600) in ops.sets
    with pytest.raises(StopIteration) as done:
        flow.send(StoreOutcome("ok"))
    _, event = done.value.value
    assert event.sessions_ended == 1


def test_everywhere_without_store_stops_at_start_up() -> None:
    """Logging out everywhere cannot be done without Redis: a configuration error at
    start-up, naming the variable, rather than a URI that answers success and ends
    nothing."""
    with pytest.raises(ConfigError, match=r"^LOGOUT_EVERYWHERE_PATH: .*LOGOUT_REDIS_URL"):
        everywhere_core(has_store=False, jwt_key=JWT_KEY)


def test_everywhere_is_admitted_like_logout() -> None:
    core = everywhere_core()
    refused = core.admit(head(sec_fetch_site="cross-site"), "everywhere")
    assert isinstance(refused, Response)
    assert refused.status == 403
    assert core.admit(head(), "everywhere") == 0


def test_everywhere_confirm_page() -> None:
    core = everywhere_core(on_get="confirm")
    page = core.admit(head(method="GET", root_path="/app"), "everywhere")
    assert isinstance(page, Response)
    assert f'action="/app{EVERYWHERE}"' in page.body.decode()
    assert "every device" in page.body.decode()


# -- end(): an operator's revocation ---------------------------------------------------


def test_end_by_admin_subject() -> None:
    core = everywhere_core()
    index = core.keys.index("u9")
    runner = Driver(core, index={index: (h("a"), h("b"))})
    ended = runner.run(core.end(subject="u9", everywhere=True, reason="admin"))
    event = ended.event
    assert ended.no_subject is False
    assert event is not None
    assert event.reason == "admin"
    assert event.subject == "u9"
    assert event.subject_source == "admin"
    assert event.type == "session_end"
    assert event.sessions_ended == 2
    assert event.cookies == ()  # no HTTP request, no cookies expired
    assert event.method == ""
    assert runner.of(Read) == [Read(ranges=(index,), now=T)]
    assert runner.ops.sets == (
        (core.keys.session(h("a")), "1", 31 * 24 * 3600),
        (core.keys.session(h("b")), "1", 31 * 24 * 3600),
        (core.keys.not_before("u9"), repr(T), 30 * 24 * 3600),
    )
    assert runner.ops.discard == (index,)


def test_end_everywhere_without_subject_changes_nothing() -> None:
    core = everywhere_core()
    runner = Driver(core)
    ended = runner.run(core.end(everywhere=True, reason="admin"))
    assert ended.no_subject is True
    assert ended.event is None
    assert runner.requests == []


def test_end_one_session_by_id() -> None:
    core = everywhere_core()
    runner = Driver(core)
    ended = runner.run(core.end(session_id="s1", reason="admin"))
    assert ended.event is not None
    assert ended.event.reason == "admin"
    assert ended.event.type == "session_end"
    assert runner.ops.delete == ("session:s1",)


# -- after the app: settle -------------------------------------------------------------


def test_settle_learns_and_indexes_the_subject() -> None:
    core = everywhere_core(session_ttl=600)
    session = core.checks.session("session=s1")
    assert session is not None
    assert core.unsettled(session, "GET") is True
    runner = Driver(core, records={"session:s1": msgspec.msgpack.encode({"user": "u1"})})
    runner.run(core.settle(session))
    assert runner.requests == [
        Read(gets=("session:s1",)),
        Index(
            key=core.keys.index("u1"),
            member=h("s1"),
            expires_at=T + 600,
            now=T,
            ttl=600,
            previous=None,
        ),
    ]
    assert session.subject == "u1"
    # Read at most once a SESSION_REREAD per process.
    assert core.unsettled(session, "GET") is False
    again = Driver(core)
    again.run(core.settle(session))
    assert again.requests == []


def test_settle_moves_the_session_to_a_new_subject() -> None:
    clock = [1000.0]
    core = LogoutCore(
        LogoutConfig(session_subject="user"),
        has_store=True,
        clock=lambda: T,
        monotonic=lambda: clock[0],
    )
    session = core.checks.session("session=s1")
    assert session is not None
    Driver(core, records={"session:s1": msgspec.msgpack.encode({"user": "u1"})}).run(
        core.settle(session)
    )
    clock[0] += 61
    runner = Driver(core, records={"session:s1": msgspec.msgpack.encode({"user": "u2"})})
    runner.run(core.settle(session))
    (index,) = runner.of(Index)
    assert index.key == core.keys.index("u2")
    assert index.previous == core.keys.index("u1")


@pytest.mark.parametrize(
    ("method", "reads_again"),
    [("GET", False), ("HEAD", False), ("OPTIONS", False), ("POST", True), ("PUT", True)],
)
def test_settle_reads_again_after_unsafe_request(method: str, reads_again: bool) -> None:
    """A login (or a switch of user) that keeps the session id is an unsafe request:
    the record is read again after each one (not only once a minute); the session is
    indexed again only when its subject changed."""
    core = everywhere_core()
    session = core.checks.session("session=s1")
    assert session is not None
    anonymous = Driver(core, records={"session:s1": msgspec.msgpack.encode({"cart": 1})})
    anonymous.run(core.settle(session, "GET"))
    assert session.subject is None
    assert core.unsettled(session, method) is reads_again
    logged_in = Driver(core, records={"session:s1": msgspec.msgpack.encode({"user": "u1"})})
    logged_in.run(core.settle(session, method))
    assert session.subject == ("u1" if reads_again else None)
    assert len(logged_in.of(Index)) == int(reads_again)
    if reads_again:
        again = Driver(core, records={"session:s1": msgspec.msgpack.encode({"user": "u1"})})
        again.run(core.settle(session, method))
        assert len(again.of(Read)) == 1
        assert again.of(Index) == []  # the same subject: the index entry is fresh
        switched = Driver(core, records={"session:s1": msgspec.msgpack.encode({"user": "u2"})})
        switched.run(core.settle(session, method))
        (index,) = switched.of(Index)
        assert (index.key, index.previous) == (core.keys.index("u2"), core.keys.index("u1"))


def test_settle_without_subject_indexes_nothing() -> None:
    core = everywhere_core()
    session = core.checks.session("session=s1")
    assert session is not None
    runner = Driver(core, records={"session:s1": msgspec.msgpack.encode({"other": 1})})
    runner.run(core.settle(session))
    assert runner.requests == [Read(gets=("session:s1",))]
    assert session.subject is None


def test_settle_deletes_a_record_saved_after_revocation() -> None:
    core = everywhere_core(session_keys=("session:{sid}", "meta:{sid}"))
    session = core.checks.session("session=s1")
    assert session is not None
    core.checks.mark_read(session)
    assert core.unsettled(session, "GET") is False
    mirror = core.mirror
    assert mirror is not None
    mirror.add(sessions=[session.hash])  # revoked while its request was in the app
    assert core.unsettled(session, "GET") is True
    runner = Driver(core)
    runner.run(core.settle(session))
    assert runner.requests == [Delete(("session:s1", "meta:s1"))]


def test_records_of() -> None:
    core = everywhere_core(session_keys=("session:{sid}", "meta:{sid}"))
    known = core.checks.session("session=s1")
    assert known is not None
    unknown = int(h("nobody")[:16], 16)
    assert core.records_of([known.member, unknown]) == ("session:s1", "meta:s1")
    assert core.records_of([]) == ()


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        ("session=s1", ""),
        ("a=1; session=s1; b=2", "a=1; b=2"),
        ("session=s1; session=s2; a=1", "a=1"),
        ("a=1", "a=1"),
        ("xsession=1; session=s1", "xsession=1"),
    ],
    ids=["alone", "middle", "repeated", "absent", "suffix-name-kept"],
)
def test_without_session_cookie(cookie: str, expected: str) -> None:
    strip = make_core().checks.known_session("s1")
    assert make_core().without_cookies(cookie, Verdict(strip=(strip,))) == expected


@pytest.mark.parametrize(
    ("set_cookies", "expires"),
    [
        ([], True),
        (["theme=dark; Path=/"], True),
        (["session=new-id; Path=/; HttpOnly"], False),
        (['session="new-id"'], False),
        (["session=; Max-Age=0"], True),
    ],
    ids=["none", "other-cookie", "new-session", "quoted-new-session", "app-expires-it"],
)
def test_expiry_for(set_cookies: list[str], expires: bool) -> None:
    core = make_core()
    verdict = Verdict(strip=(core.checks.known_session("s1"),))
    found = core.expiries_for(set_cookies, secure=True, verdict=verdict)
    if not expires:
        assert found == []
        return
    (expiry,) = found
    name, value, attrs = cookie_attrs(expiry)
    assert (name, value) == ("session", "")
    assert attrs["max-age"] == "0"
    assert "secure" in attrs


# -- is_safe_next ----------------------------------------------------------------------

SAFE_CASES = [
    ("/", True),
    ("/dashboard?tab=1#top", True),
    ("http://example.com/x", True),
    ("https://example.com/x", True),
    ("HTTPS://EXAMPLE.COM/x", True),
    ("http://example.com:80/x", True),
    ("https://accounts.example.org/", True),
    ("https://cdn.example.org:8443/", True),
    ("https://cdn.example.org:9443/", False),
    ("//evil.example", False),
    ("/\\evil.example", False),
    ("\\\\evil.example", False),
    ("/%2f%2fevil.example", False),
    ("/a%5cb", False),
    ("https:evil.example", False),
    ("https://evil.example/", False),
    ("https://example.com.evil.example/", False),
    ("https://user@example.com/", False),
    ("javascript:alert(1)", False),
    ("data:text/html,x", False),
    ("/a b", False),
    ("/a\tb", False),
    ("/caf\u00e9", False),
    ("https://example\u3002com/", False),
    ("", False),
    ("relative", False),
    ("/" + "a" * 2048, False),
    ("https://example.com:99999/", False),
    ("http://[::1/", False),
]


@pytest.mark.parametrize(("url", "safe"), SAFE_CASES, ids=[repr(u[:40]) for u, _ in SAFE_CASES])
def test_is_safe_next(url: str, safe: bool) -> None:
    allowed = ("accounts.example.org", "cdn.example.org:8443")
    assert is_safe_next(url, host="example.com", scheme="http", allowed_hosts=allowed) is safe
