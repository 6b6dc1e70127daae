"""The sans-IO core, table-driven, with no server: RequestHead values built directly."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import jwt
import pytest
from itsdangerous import Signer

from logout_middleware.config import LogoutConfig
from logout_middleware.core import (
    MAX_TOKEN_LENGTH,
    LogoutCore,
    LogoutPlan,
    RequestHead,
    Response,
    StoreOutcome,
    bearer_token,
    is_safe_next,
    sha256_hex,
)

from .harness import multipart

T = 1_700_000_000.0
JWT_KEY = "a-test-signing-key-of-at-least-32-bytes"
FORM = "application/x-www-form-urlencoded"
EPOCH = "Expires=Thu, 01 Jan 1970 00:00:00 GMT"


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


def plan_of(core: LogoutCore, request: RequestHead, body: bytes = b"") -> LogoutPlan:
    plan = core.plan(request, body)
    assert isinstance(plan, LogoutPlan), plan
    return plan


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


# -- helpers -------------------------------------------------------------------------


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", sha256_hex(b""))


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        (b"Bearer abc", b"abc"),
        (b"bearer abc", b"abc"),
        (b"BEARER abc", b"abc"),
        (b"BeArEr abc", b"abc"),
        (b"Bearer   abc  ", b"abc"),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Token abc", None),
        (b"Bearerabc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (b"Bearer    ", None),
        (b"", None),
        (b"Bearer " + b"t" * MAX_TOKEN_LENGTH, b"t" * MAX_TOKEN_LENGTH),
        (b"Bearer " + b"t" * (MAX_TOKEN_LENGTH + 1), None),
    ],
    ids=[
        "bearer",
        "lower",
        "upper",
        "mixed",
        "padded",
        "basic",
        "token-scheme",
        "no-space",
        "scheme-only",
        "empty-token",
        "blank-token",
        "empty-header",
        "longest",
        "overlong",
    ],
)
def test_bearer_token(authorization: bytes, expected: bytes | None) -> None:
    assert bearer_token(authorization) == expected


# -- matches -------------------------------------------------------------------------

MATCH_CASES = [
    ("/logout", "/logout", "", True),
    ("/logout", "/logout/", "", False),
    ("/logout", "/Logout", "", False),
    ("/logout", "/logout2", "", False),
    ("/logout", "/", "", False),
    ("/logout", "", "", False),
    ("/logout", "/app/logout", "", False),
    ("/logout", "/app/logout", "/app", True),
    ("/logout", "/logout", "/app", True),
    ("/logout", "/apx/logout", "/app", False),
    ("/logout", "/app/logout/", "/app", False),
    ("/logout", "/app/other", "/app", False),
    ("/logout", "/app", "/app", False),
    ("/auth/logout", "/auth/logout", "", True),
    ("/auth/logout", "/logout", "", False),
    ("/auth/logout", "/api/v1/auth/logout", "/api/v1", True),
    ("/auth/logout", "/api/v2/auth/logout", "/api/v1", False),
]


@pytest.mark.parametrize(
    ("own", "path", "root_path", "expected"),
    MATCH_CASES,
    ids=[f"{own}|{path or 'empty'}|root={root or 'none'}" for own, path, root, _ in MATCH_CASES],
)
def test_matches(own: str, path: str, root_path: str, expected: bool) -> None:
    assert make_core(path=own).matches(path, root_path) is expected


# -- revocation_key / revocation_response ---------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "token"),
    [
        (b"Bearer abc.def", b"abc.def"),
        (b"bearer abc.def", b"abc.def"),
        (b"BEARER abc.def", b"abc.def"),
        (b"Basic abc", None),
        (b"Digest username=x", None),
        (b"", None),
        (b"Bearer ", None),
        (b"Bearer " + b"x" * (MAX_TOKEN_LENGTH + 1), None),
    ],
    ids=["bearer", "lower", "upper", "basic", "digest", "empty", "empty-token", "overlong"],
)
def test_revocation_key(authorization: bytes, token: bytes | None) -> None:
    key = make_core().revocation_key(authorization)
    if token is None:
        assert key is None
    else:
        assert key == "logout:revoked:" + hashlib.sha256(token).hexdigest()


def test_revocation_key_custom_prefix_and_no_raw_token() -> None:
    key = make_core(denylist_prefix="deny:").revocation_key(b"Bearer sekrit-token")
    assert key == "deny:" + sha256_hex(b"sekrit-token")
    assert "sekrit-token" not in (key or "")


def test_revocation_key_same_for_any_scheme_case() -> None:
    core = make_core()
    assert core.revocation_key(b"Bearer t") == core.revocation_key(b"bEARER t")


@pytest.mark.parametrize(
    ("on_check_error", "revoked", "status"),
    [
        ("allow", True, 401),
        ("deny", True, 401),
        ("allow", False, None),
        ("deny", False, None),
        ("allow", None, None),
        ("deny", None, 503),
    ],
    ids=[
        "allow-revoked",
        "deny-revoked",
        "allow-clean",
        "deny-clean",
        "allow-unknown",
        "deny-unknown",
    ],
)
def test_revocation_response(on_check_error: str, revoked: bool | None, status: int | None) -> None:
    response = make_core(on_check_error=on_check_error).revocation_response(revoked)
    if status is None:
        assert response is None
        return
    assert response is not None
    assert response.status == status
    assert header(response, "Cache-Control") == "no-store"
    if status == 401:
        assert 'error="invalid_token"' in (header(response, "WWW-Authenticate") or "")
        assert json.loads(response.body)["error"] == "invalid_token"
    else:
        assert header(response, "Retry-After") == "5"


def test_checks_tokens() -> None:
    assert make_core(has_store=True).checks_tokens is True
    assert make_core(has_store=False).checks_tokens is False
    assert make_core(has_store=True, revoke_tokens=False).checks_tokens is False


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


# -- plan: sessions --------------------------------------------------------------------

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
def test_plan_session(config: dict[str, Any], cookie: str, sid: str | None) -> None:
    plan = plan_of(make_core(**config), head(cookie=cookie))
    assert plan.ops is not None
    if sid is None:
        assert plan.ops.delete == ()
        assert plan.event.session_id_hash is None
    else:
        assert plan.ops.delete == (f"session:{sid}",)
        assert plan.event.session_id_hash == sha256_hex(sid.encode())


def test_plan_session_key_templates() -> None:
    core = make_core(session_keys=("session:{sid}", "starsessions.{sid}", "{sid}:meta"))
    plan = plan_of(core, head(cookie="session=s1"))
    assert plan.ops is not None
    assert plan.ops.delete == ("session:s1", "starsessions.s1", "s1:meta")


def test_plan_without_store_has_no_ops() -> None:
    plan = plan_of(make_core(has_store=False), head(cookie="session=s1", authorization="Bearer t"))
    assert plan.ops is None
    assert plan.event.store == "disabled"
    assert plan.event.session_id_hash == sha256_hex(b"s1")
    assert plan.event.token_hash == sha256_hex(b"t")


# -- plan: tokens ----------------------------------------------------------------------

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
def test_plan_token_ttl(config: dict[str, Any], token: str, ttl: int) -> None:
    plan = plan_of(make_core(**config), head(authorization=f"Bearer {token}"))
    assert plan.event.token_ttl == ttl
    assert plan.event.token_hash == sha256_hex(token.encode())
    assert plan.ops is not None
    assert plan.ops.revoke == ("logout:revoked:" + sha256_hex(token.encode()), ttl)


def test_plan_token_ttl_follows_clock() -> None:
    token = jwt_token({"exp": int(T) + 1000})
    later = make_core(clock=lambda: T + 500)
    assert plan_of(later, head(authorization=f"Bearer {token}")).event.token_ttl == 560


def test_plan_revoke_key_matches_revocation_key() -> None:
    core = make_core(denylist_prefix="deny:")
    plan = plan_of(core, head(authorization="bearer tok"))
    assert plan.ops is not None
    assert plan.ops.revoke is not None
    assert plan.ops.revoke[0] == core.revocation_key(b"Bearer tok")


@pytest.mark.parametrize(
    "authorization",
    ["", "Basic dXNlcjpwYXNz", "Bearer ", "Bearer " + "x" * (MAX_TOKEN_LENGTH + 1)],
    ids=["none", "basic", "empty-token", "overlong"],
)
def test_plan_without_bearer_token_revokes_nothing(authorization: str) -> None:
    plan = plan_of(make_core(), head(authorization=authorization))
    assert plan.ops is not None
    assert plan.ops.revoke is None
    assert plan.event.token_hash is None
    assert plan.event.token_ttl is None


def test_plan_revoke_tokens_off() -> None:
    plan = plan_of(make_core(revoke_tokens=False), head(authorization="Bearer tok"))
    assert plan.ops is not None
    assert plan.ops.revoke is None
    assert plan.event.token_hash == sha256_hex(b"tok")


# -- plan: JSON or redirect, and next --------------------------------------------------

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
def test_plan_json_or_redirect(accept: str, wants_json: bool) -> None:
    plan = plan_of(make_core(), head(accept=accept, query_string="next=/bye"))
    assert plan.redirect == (None if wants_json else "/bye")
    assert plan.event.redirect == plan.redirect


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
    # admit() reads the body of a mixed-case form type, so plan() must parse it.
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
def test_plan_next(
    config: dict[str, Any], request_fields: dict[str, Any], body: bytes, expected: str
) -> None:
    plan = plan_of(make_core(**config), head(**request_fields), body)
    assert plan.redirect == expected


def test_plan_https_refuses_http_next() -> None:
    plan = plan_of(make_core(), head(scheme="https", query_string="next=http://example.com/x"))
    assert plan.redirect == "/"


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
def test_plan_refuses_bad_body(request_fields: dict[str, Any], body: bytes, status: int) -> None:
    result = make_core(max_body=1024).plan(head(**request_fields), body)
    assert isinstance(result, Response)
    assert result.status == status
    assert header(result, "Cache-Control") == "no-store"


# -- plan: event and ops ---------------------------------------------------------------


def test_plan_event_fields() -> None:
    token = "raw-token-value-456"
    core = make_core(cookies=("session", "remember"), events_stream="audit", events_maxlen=50)
    plan = plan_of(
        core,
        head(
            root_path="/app",
            cookie="session=raw-session-id-123",
            authorization=f"Bearer {token}",
            user_agent="UA/" + "x" * 400,
            client="203.0.113.7",
            query_string="next=/bye",
        ),
    )
    event = plan.event
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
    assert event.store == "disabled"
    assert event.sessions_deleted == 0
    assert plan.scheme == "http"
    ops = plan.ops
    assert ops is not None
    assert ops.stream == "audit"
    assert ops.maxlen == 50
    assert ops.entry == tuple(event.to_fields().items())
    assert ops.delete == ("session:raw-session-id-123",)  # the key itself needs the id
    for text in (repr(event), repr(ops.entry), repr(ops.revoke)):
        assert "raw-session-id-123" not in text
        assert token not in text


def test_plan_event_ids_differ() -> None:
    core = make_core()
    assert plan_of(core, head()).event.id != plan_of(core, head()).event.id


def test_plan_empty_user_agent_and_client() -> None:
    event = plan_of(make_core(), head()).event
    assert event.user_agent is None
    assert event.client is None


def test_plan_no_stream_when_disabled() -> None:
    plan = plan_of(make_core(events_stream=""), head())
    assert plan.ops is not None
    assert plan.ops.stream is None


# -- finish ----------------------------------------------------------------------------


def finish(
    core: LogoutCore, request: RequestHead, outcome: StoreOutcome | None = None
) -> tuple[Response, Any]:
    plan = plan_of(core, request)
    return core.finish(plan, outcome or StoreOutcome("ok"))


def test_finish_redirects() -> None:
    response, event = finish(make_core(), head(query_string="next=/bye"))
    assert response.status == 303
    assert header(response, "Location") == "/bye"
    assert header(response, "Content-Length") == "0"
    assert header(response, "Cache-Control") == "no-store"
    assert response.body == b""
    assert event.redirect == "/bye"


def test_finish_json() -> None:
    response, event = finish(make_core(), head(accept="application/json"))
    assert response.status == 200
    assert json.loads(response.body) == {"success": True}
    assert header(response, "Content-Type") == "application/json"
    assert header(response, "Content-Length") == str(len(response.body))
    assert header(response, "Cache-Control") == "no-store"
    assert header(response, "Location") is None
    assert event.redirect is None


def test_finish_expires_every_cookie() -> None:
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
def test_finish_prefixed_cookies(scheme: str, cookie_secure: bool | None) -> None:
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
def test_finish_cookie_secure(cookie_secure: bool | None, scheme: str, secure: bool) -> None:
    response, _ = finish(make_core(cookie_secure=cookie_secure), head(scheme=scheme))
    (raw,) = headers(response, "Set-Cookie")
    assert ("secure" in cookie_attrs(raw)[2]) is secure


@pytest.mark.parametrize(
    ("samesite", "secure"), [("Strict", False), ("Lax", False), ("None", True)]
)
def test_finish_cookie_samesite(samesite: str, secure: bool) -> None:
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
def test_finish_clear_site_data(clear: tuple[str, ...], scheme: str, expected: str | None) -> None:
    response, _ = finish(make_core(clear_site_data=clear), head(scheme=scheme))
    assert header(response, "Clear-Site-Data") == expected


def test_finish_store_failed_under_fail() -> None:
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
def test_finish_store_failed_under_succeed(accept: str, status: int) -> None:
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
def test_finish_event_takes_outcome(outcome: StoreOutcome) -> None:
    core = make_core()
    plan = plan_of(core, head(cookie="session=s", authorization="Bearer t"))
    response, event = core.finish(plan, outcome)
    assert response.status == 303
    assert event == replace(
        plan.event, store=outcome.status, sessions_deleted=outcome.sessions_deleted
    )
    assert event.store_ok is (outcome.status == "ok")
    assert event.session_id_hash == sha256_hex(b"s")
    assert event.token_hash == sha256_hex(b"t")


def test_every_response_is_no_store() -> None:
    core = make_core(on_get="confirm", max_body=10)
    responses: list[Response | int | LogoutPlan] = [
        core.admit(head(method="PUT")),
        core.admit(head(method="GET")),
        core.admit(head(sec_fetch_site="cross-site")),
        core.admit(head(content_length="11")),
        core.admit(head(content_length="x")),
        core.plan(head(content_type=FORM), b"x" * 11),
        core.revoked,
        core.check_unavailable,
        core.internal_error,
        core.bad_request,
    ]
    for found in responses:
        assert isinstance(found, Response)
        assert header(found, "Cache-Control") == "no-store", found


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
