"""OpenID Connect logout: every validation rule of Back-Channel Logout 1.0 section 2.6,
with tokens signed by keys the tests make (RSA and EC), the end-session URL, and the
core's back-channel flow driven without a server."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given
from hypothesis import strategies as st

from logout_middleware.config import LogoutConfig
from logout_middleware.core import LogoutCore, RequestHead
from logout_middleware.core.oidc import (
    BACKCHANNEL_EVENT,
    LogoutTokenClaims,
    LogoutTokenError,
    check_logout_token,
    end_session_url,
)
from logout_middleware.core.ops import (
    Claim,
    Read,
    Reading,
    StoreOps,
    StoreOutcome,
    VerifyLogoutToken,
)
from logout_middleware.core.revocation import oidc_sid_hash, sha256_hex

ISSUER = "https://id.example.com"
CLIENT = "app-1"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    found: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "alice",
        "sid": "sid-1",
        "iat": now,
        "exp": now + 120,
        "jti": uuid.uuid4().hex,
        "events": {BACKCHANNEL_EVENT: {}},
    }
    found.update(changes)
    return {k: v for k, v in found.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = RSA_KEY, alg: str = "RS256", **headers: Any) -> bytes:
    return jwt.encode(
        payload, key, algorithm=alg, headers={"typ": "logout+jwt", **headers}
    ).encode()


def unsigned(payload: dict[str, Any]) -> bytes:
    """An ``alg: none`` token, built by hand (PyJWT will not sign one here)."""
    header = jwt.utils.base64url_encode(b'{"alg":"none","typ":"logout+jwt"}')
    return header + b"." + jwt.utils.base64url_encode(json.dumps(payload).encode()) + b"."


def check(
    token: bytes, key: Any = None, algorithms: tuple[str, ...] = ("RS256", "ES256")
) -> LogoutTokenClaims:
    return check_logout_token(
        token,
        RSA_KEY.public_key() if key is None else key,
        algorithms=algorithms,
        issuer=ISSUER,
        client_id=CLIENT,
        leeway=0,
    )


def test_valid_rsa_token() -> None:
    found = check(sign(claims(jti="j-1")))
    assert (found.iss, found.sub, found.sid, found.jti) == (ISSUER, "alice", "sid-1", "j-1")


def test_valid_ec_token() -> None:
    found = check(sign(claims(), EC_KEY, "ES256"), EC_KEY.public_key())
    assert found.sub == "alice"


@pytest.mark.parametrize(
    ("make", "rule"),
    [
        (lambda: sign(claims(), OTHER_KEY), "signature"),
        (lambda: sign(claims(iss="https://evil.example.com")), "iss"),
        (lambda: sign(claims(aud="other-app")), "aud"),
        (lambda: sign(claims(aud=["a", "b"])), "aud"),
        (lambda: sign(claims(exp=int(time.time()) - 10)), "expired"),
        (lambda: sign(claims(iat=None)), "iat"),
        (lambda: sign(claims(exp=None)), "exp"),
        (lambda: sign(claims(sub=None, sid=None)), "neither sub nor sid"),
        (lambda: sign(claims(events=None)), "events"),
        (lambda: sign(claims(events={"other": {}})), "events"),
        (lambda: sign(claims(events={BACKCHANNEL_EVENT: "yes"})), "events"),
        (lambda: sign(claims(nonce="n-1")), "nonce"),
        (lambda: sign(claims(jti=None)), "jti"),
        (lambda: sign(claims(), typ="JWS+other"), "typ"),
        (lambda: unsigned(claims()), "algorithm"),
        (lambda: b"not.a.jwt", "not a signed JWT"),
        (lambda: b"x" * 20000, "too large"),
    ],
    ids=[
        "wrong-key",
        "wrong-iss",
        "wrong-aud",
        "aud-without-client",
        "expired",
        "no-iat",
        "no-exp",
        "no-sub-no-sid",
        "no-events",
        "other-event",
        "event-not-object",
        "nonce",
        "no-jti",
        "bad-typ",
        "alg-none",
        "garbage",
        "oversized",
    ],
)
def test_each_rule(make: Any, rule: str) -> None:
    with pytest.raises(LogoutTokenError, match=rule):
        check(make())


def test_hmac_with_the_public_key_as_secret_is_refused() -> None:
    """The RS256/HS256 confusion: a token MACed with the provider's public key PEM."""
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = jwt.utils.base64url_encode(b'{"alg":"HS256","typ":"logout+jwt"}')
    payload = jwt.utils.base64url_encode(json.dumps(claims()).encode())
    mac = hmac.new(pem, header + b"." + payload, hashlib.sha256).digest()
    token = header + b"." + payload + b"." + jwt.utils.base64url_encode(mac)
    with pytest.raises(LogoutTokenError, match="algorithm"):
        check(token, algorithms=("RS256", "HS256"))


def test_provider_algorithms_only() -> None:
    with pytest.raises(LogoutTokenError, match="algorithm"):
        check(sign(claims(), EC_KEY, "ES256"), EC_KEY.public_key(), algorithms=("RS256",))


def test_sid_alone_and_sub_alone_are_valid() -> None:
    assert check(sign(claims(sub=None))).sid == "sid-1"
    assert check(sign(claims(sid=None))).sub == "alice"


def test_typ_may_be_absent() -> None:
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256").encode()
    assert check(token).sub == "alice"


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_else(raw: bytes) -> None:
    """Hostile input: any bytes are either refused with a LogoutTokenError or valid."""
    with pytest.raises(LogoutTokenError):
        check(raw)


def test_end_session_url() -> None:
    url = end_session_url(
        "https://id.example.com/session/end",
        client_id="app 1",
        id_token_hint="eyJ.x.y",
        post_logout_redirect_uri="https://app.example.com/bye?x=1",
        state="s1",
    )
    assert url == (
        "https://id.example.com/session/end?client_id=app+1&state=s1&id_token_hint=eyJ.x.y"
        "&post_logout_redirect_uri=https%3A%2F%2Fapp.example.com%2Fbye%3Fx%3D1"
    )
    bare = end_session_url(
        "https://id.example.com/end?v=2",
        client_id="c",
        id_token_hint=None,
        post_logout_redirect_uri=None,
        state="s",
    )
    assert bare == "https://id.example.com/end?v=2&client_id=c&state=s"


# -- the core's back-channel flow ----------------------------------------------------------


def backchannel_core() -> LogoutCore:
    config = LogoutConfig(
        backchannel_path="/oidc/backchannel-logout",
        oidc_issuer=ISSUER,
        oidc_client_id=CLIENT,
        session_subject="user.sub",
        session_oidc_sid="user.sid",
    )
    return LogoutCore(config, has_store=True)


def form_head(
    method: str = "POST", content_type: str = "application/x-www-form-urlencoded"
) -> RequestHead:
    return RequestHead(
        method=method,
        scheme="https",
        host="app.example.com",
        root_path="",
        query_string="",
        content_type=content_type,
    )


def run(
    core: LogoutCore,
    body: bytes,
    verdict: Any,
    *,
    fresh: bool | None = True,
    members: tuple[str, ...] = (),
) -> tuple[Any, tuple[Any, ...], list[Any]]:
    """Drive the back-channel flow, answering each request; return the response, the
    events and the requests seen."""
    seen: list[Any] = []
    flow = core.respond(form_head(), body, "backchannel")
    result: Any = None
    try:
        while True:
            request = flow.send(result)
            seen.append(request)
            if isinstance(request, VerifyLogoutToken):
                result = verdict
            elif isinstance(request, Claim):
                result = fresh
            elif isinstance(request, Read):
                result = Reading(values=(), members=(members,))
            elif isinstance(request, StoreOps):
                result = StoreOutcome("ok")
    except StopIteration as done:
        response, events = done.value
    return response, events, seen


def valid(**changes: Any) -> LogoutTokenClaims:
    fields: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "sid": "sid-1",
        "jti": "j-1",
        "exp": time.time() + 100,
    }
    fields.update(changes)
    return LogoutTokenClaims(**fields)


def test_backchannel_by_sid_ends_indexed_sessions_and_the_sid() -> None:
    core = backchannel_core()
    sessions = (sha256_hex(b"s-1"), sha256_hex(b"s-2"))
    response, events, seen = run(core, b"logout_token=abc", valid(), members=sessions)
    assert response.status == 200
    assert ("Cache-Control", "no-store") in response.headers
    (claim,) = [r for r in seen if isinstance(r, Claim)]
    assert claim.key == core.keys.oidc_jti(ISSUER, "j-1")
    assert 90 <= claim.ttl <= 160
    (read,) = [r for r in seen if isinstance(r, Read)]
    sid_hash = oidc_sid_hash(ISSUER, "sid-1")
    assert read.ranges == (core.keys.oidc_index(sid_hash),)
    (ops,) = [r for r in seen if isinstance(r, StoreOps)]
    assert {key for key, _, _ in ops.sets} == {
        core.keys.session(sessions[0]),
        core.keys.session(sessions[1]),
        core.keys.oidc_sid(sid_hash),
    }
    assert [e.type for e in events] == ["session_end", "session_end", "api_session_end"]
    assert {e.reason for e in events} == {"backchannel"}
    assert [e.session_id_hash for e in events[:2]] == list(sessions)
    assert events[2].oidc_sid_hash == sid_hash
    assert len(ops.extra_entries) == 2


def test_backchannel_by_sub_alone_logs_the_subject_out_everywhere() -> None:
    core = backchannel_core()
    response, events, seen = run(core, b"logout_token=abc", valid(sid=None))
    assert response.status == 200
    (read,) = [r for r in seen if isinstance(r, Read)]
    assert read.ranges == (core.keys.index("alice"),)
    (ops,) = [r for r in seen if isinstance(r, StoreOps)]
    assert [key for key, _, _ in ops.sets] == [core.keys.not_before("alice")]
    assert events[-1].not_before is not None


def test_backchannel_nothing_logged_in_is_success() -> None:
    response, events, _ = run(backchannel_core(), b"logout_token=abc", valid())
    assert response.status == 200
    assert [e.type for e in events] == ["api_session_end"]


@pytest.mark.parametrize(
    ("body", "verdict", "fresh", "status", "description"),
    [
        (b"", valid(), True, 400, "exactly one logout_token"),
        (b"logout_token=a&logout_token=b", valid(), True, 400, "exactly one"),
        (b"logout_token=abc", LogoutTokenError("logout_token has expired"), True, 400, "expired"),
        (b"logout_token=abc", valid(), False, 400, "jti"),
        (b"logout_token=abc", valid(), None, 503, None),
    ],
    ids=["no-token", "two-tokens", "invalid", "replayed", "redis-down"],
)
def test_backchannel_refusals_change_nothing(
    body: bytes, verdict: Any, fresh: bool | None, status: int, description: str | None
) -> None:
    response, events, seen = run(backchannel_core(), body, verdict, fresh=fresh)
    assert response.status == status
    assert events == ()
    assert not [r for r in seen if isinstance(r, StoreOps)]
    if description is not None:
        assert response.headers[0] == ("Cache-Control", "no-store")
        assert description in response.body.decode()
        assert b'"error": "invalid_request"' in response.body


@pytest.mark.parametrize(
    ("method", "content_type", "status"),
    [("GET", "", 405), ("PUT", "", 405), ("POST", "application/json", 400), ("POST", "", 400)],
)
def test_backchannel_admission(method: str, content_type: str, status: int) -> None:
    core = backchannel_core()
    refused = core.admit(form_head(method, content_type), "backchannel")
    assert not isinstance(refused, int)
    assert refused.status == status


def test_backchannel_takes_no_cross_site_check() -> None:
    """A server-to-server call: no Origin rules (the browser logout URI's would refuse)."""
    core = backchannel_core()
    head = RequestHead(
        method="POST",
        scheme="https",
        host="app.example.com",
        root_path="",
        query_string="",
        content_type="application/x-www-form-urlencoded",
        origin="null",
        sec_fetch_site="cross-site",
    )
    assert isinstance(core.admit(head, "backchannel"), int)


# -- RP-initiated logout when the provider cannot be reached ---------------------------------


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_unreachable_provider_still_logs_out_locally(kind: Any, redis_url: str) -> None:
    """The local logout happens, the user lands on the local next URI, and the event
    says the provider could not be reached."""
    from logout_middleware.testing import free_port

    from .harness import harness

    events: list[Any] = []
    with harness(
        kind,
        redis_url,
        on_logout=events.append,
        oidc_issuer=f"http://127.0.0.1:{free_port()}",
        oidc_client_id=CLIENT,
        oidc_end_session=True,
        redis_timeout=0.5,
    ) as h:
        reply = h.post_logout("/logout?next=/bye", headers={"Cookie": "session=s-1"})
    assert reply.status == 303
    assert reply.header("location") == "/bye"
    assert any(c.startswith("session=;") for c in reply.set_cookies)
    (event,) = events
    assert event.end_session == "unavailable"
    assert event.store == "ok"
