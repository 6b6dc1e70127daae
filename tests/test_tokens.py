"""Bearer tokens and JWTs: extraction, unverified claims, revocation lifetimes, and
verification with an HMAC secret, a PEM public key, and a JWKS served over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from logout_middleware.config import LogoutConfig
from logout_middleware.core import tokens
from logout_middleware.core.tokens import (
    MAX_TOKEN_LENGTH,
    TokenClaims,
    TokenVerifier,
    bearer_token,
    read_claims,
    token_ttl,
)

T = 1_700_000_000.0
SECRET = "a-test-signing-key-long-enough-for-hs512-which-wants-64-bytes-0123"
OTHER_SECRET = "another-signing-key-long-enough-for-hs512-which-wants-64-bytes-01"


def hmac_token(claims: dict[str, Any], key: str = SECRET, algorithm: str = "HS256") -> bytes:
    return jwt.encode(claims, key, algorithm=algorithm).encode()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> bytes:
    """A JWT assembled by hand (PyJWT refuses to make the hostile ones): HS256 over
    ``key``, or no signature at all when ``key`` is None."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = ""
    if key is not None:
        signature = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature}".encode()


# -- bearer_token ----------------------------------------------------------------------


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
        (b"Digest username=x", None),
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
        "digest",
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


# -- read_claims -----------------------------------------------------------------------

NO_CLAIMS = TokenClaims(
    sub=None, sid=None, iat=None, exp=None, jti=None, actor=None, verified=False
)

CLAIM_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "all",
        {
            "sub": "user-1",
            "sid": "op-session",
            "iat": int(T),
            "exp": int(T) + 600,
            "jti": "token-id",
            "act": {"sub": "admin-7"},
        },
        {
            "sub": "user-1",
            "sid": "op-session",
            "iat": int(T),
            "exp": T + 600,
            "jti": "token-id",
            "actor": "admin-7",
        },
    ),
    ("none", {}, {}),
    ("int-sub", {"sub": 42}, {"sub": "42"}),
    ("bool-sub", {"sub": True}, {}),
    ("float-sub", {"sub": 4.5}, {}),
    ("empty-sub", {"sub": ""}, {}),
    ("longest-sub", {"sub": "u" * 1024}, {"sub": "u" * 1024}),
    ("overlong-sub", {"sub": "u" * 1025}, {}),
    ("list-sid", {"sid": ["a"]}, {}),
    ("float-iat", {"iat": T + 0.9}, {"iat": int(T)}),
    ("bool-iat", {"iat": True}, {}),
    ("string-iat", {"iat": "yesterday"}, {}),
    ("huge-iat", {"iat": 10**13}, {}),
    ("float-exp", {"exp": T + 0.5}, {"exp": T + 0.5}),
    ("string-exp", {"exp": "tomorrow"}, {}),
    ("int-jti", {"jti": 9}, {"jti": "9"}),
    ("act-without-sub", {"act": {"iss": "x"}}, {}),
    ("act-not-object", {"act": "admin"}, {}),
    ("nested-act", {"act": {"sub": "a", "act": {"sub": "b"}}}, {"actor": "a"}),
]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(payload, expected) for _, payload, expected in CLAIM_CASES],
    ids=[case_id for case_id, _, _ in CLAIM_CASES],
)
def test_read_claims(payload: dict[str, Any], expected: dict[str, Any]) -> None:
    assert read_claims(hmac_token(payload)) == replace(NO_CLAIMS, **expected)


def test_read_claims_ignores_the_signature() -> None:
    forged = hmac_token({"sub": "victim"}, key=OTHER_SECRET)
    claims = read_claims(forged)
    assert claims is not None
    assert claims.sub == "victim"
    assert claims.verified is False


@pytest.mark.parametrize(
    "token",
    [
        b"opaque-token",
        b"aaa.bbb.ccc",
        b"a.b",
        b"a.b.c.d",
        b"..",
        b"\xff\xfe.\x00\x01.\x80",
        (b64(b'{"alg":"HS256"}') + "." + b64(b"[1, 2]") + ".sig").encode(),
        (b64(b'{"alg":"HS256"}') + "." + b64(b'"text"') + ".sig").encode(),
        (b64(b'{"alg":"HS256"}') + "." + b64(b"{not json") + ".sig").encode(),
        (b64(b"[]") + "." + b64(b'{"sub":"u"}') + ".sig").encode(),
    ],
    ids=[
        "opaque",
        "three-parts-not-base64-json",
        "two-parts",
        "four-parts",
        "empty-parts",
        "garbage-bytes",
        "array-payload",
        "string-payload",
        "broken-json",
        "array-header",
    ],
)
def test_read_claims_not_a_jwt(token: bytes) -> None:
    assert read_claims(token) is None


# -- token_ttl -------------------------------------------------------------------------


def claims_with(exp: float | None) -> TokenClaims:
    return TokenClaims(sub=None, sid=None, iat=None, exp=exp, jti=None, actor=None, verified=False)


TTL_CASES: list[tuple[str, dict[str, Any], TokenClaims | None, int]] = [
    ("opaque", {}, None, 3600),
    ("opaque-configured", {"token_ttl": 120}, None, 120),
    ("opaque-capped", {"token_ttl": 5000, "token_max_ttl": 1000}, None, 1000),
    ("jwt-without-exp", {"token_ttl": 77}, claims_with(None), 77),
    ("exp-plus-leeway", {}, claims_with(T + 600), 660),
    ("exp-custom-leeway", {"jwt_leeway": 5}, claims_with(T + 600), 605),
    ("exp-no-leeway", {"jwt_leeway": 0}, claims_with(T + 600.9), 600),
    ("just-expired", {}, claims_with(T - 30), 30),
    ("long-expired", {}, claims_with(T - 3600), 1),
    ("far-future-capped", {}, claims_with(T + 10**9), 30 * 24 * 3600),
    ("capped-configured", {"token_max_ttl": 900}, claims_with(T + 3600), 900),
    ("absurd-exp-ignored", {"token_ttl": 77}, claims_with(1e13), 77),
]


@pytest.mark.parametrize(
    ("config", "claims", "ttl"),
    [(config, claims, ttl) for _, config, claims, ttl in TTL_CASES],
    ids=[case_id for case_id, _, _, _ in TTL_CASES],
)
def test_token_ttl(config: dict[str, Any], claims: TokenClaims | None, ttl: int) -> None:
    assert token_ttl(claims, T, LogoutConfig(**config)) == ttl


# -- TokenVerifier: an HMAC secret -----------------------------------------------------


def test_verifier_disabled_without_key() -> None:
    verifier = TokenVerifier(LogoutConfig())
    assert verifier.enabled is False
    assert verifier.fetches is False
    assert verifier.verify(hmac_token({"sub": "u"})) is None


def now_claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "user-1", "iat": now, "exp": now + 600, **extra}


HS_CASES: list[tuple[str, dict[str, Any], Callable[[], bytes], bool]] = [
    ("good", {}, lambda: hmac_token(now_claims()), True),
    ("bad-signature", {}, lambda: hmac_token(now_claims(), key=OTHER_SECRET), False),
    ("wrong-alg", {}, lambda: hmac_token(now_claims(), algorithm="HS512"), False),
    ("alg-none", {}, lambda: handmade({"alg": "none", "typ": "JWT"}, now_claims(), None), False),
    (
        "alg-none-signed-anyway",
        {},
        lambda: handmade({"alg": "none", "typ": "JWT"}, now_claims(), SECRET.encode()),
        False,
    ),
    (
        "hs512-allowed",
        {"jwt_algorithms": ("HS512",)},
        lambda: hmac_token(now_claims(), algorithm="HS512"),
        True,
    ),
    ("expired", {}, lambda: hmac_token(now_claims(exp=int(T))), False),
    (
        "expired-within-leeway",
        {},
        lambda: hmac_token({**now_claims(), "exp": now_claims()["iat"] - 30}),
        True,
    ),
    (
        "expired-beyond-custom-leeway",
        {"jwt_leeway": 10},
        lambda: hmac_token({**now_claims(), "exp": now_claims()["iat"] - 30}),
        False,
    ),
    ("not-yet-valid", {}, lambda: hmac_token(now_claims(nbf=now_claims()["iat"] + 3600)), False),
    ("no-exp", {}, lambda: hmac_token({"sub": "u"}), True),
    (
        "issuer-match",
        {"jwt_issuer": "https://id.example"},
        lambda: hmac_token(now_claims(iss="https://id.example")),
        True,
    ),
    (
        "issuer-mismatch",
        {"jwt_issuer": "https://id.example"},
        lambda: hmac_token(now_claims(iss="https://evil.example")),
        False,
    ),
    (
        "issuer-missing",
        {"jwt_issuer": "https://id.example"},
        lambda: hmac_token(now_claims()),
        False,
    ),
    ("issuer-unchecked", {}, lambda: hmac_token(now_claims(iss="https://anyone.example")), True),
    (
        "audience-match",
        {"jwt_audience": ("api", "web")},
        lambda: hmac_token(now_claims(aud="web")),
        True,
    ),
    (
        "audience-list-match",
        {"jwt_audience": ("api",)},
        lambda: hmac_token(now_claims(aud=["x", "api"])),
        True,
    ),
    (
        "audience-mismatch",
        {"jwt_audience": ("api",)},
        lambda: hmac_token(now_claims(aud="other")),
        False,
    ),
    ("audience-missing", {"jwt_audience": ("api",)}, lambda: hmac_token(now_claims()), False),
    ("audience-unchecked", {}, lambda: hmac_token(now_claims(aud="whatever")), True),
    ("opaque", {}, lambda: b"opaque-token", False),
    ("garbage", {}, lambda: b"\xff.\xfe.\xfd", False),
]


@pytest.mark.parametrize(
    ("config", "make", "valid"),
    [(config, make, valid) for _, config, make, valid in HS_CASES],
    ids=[case_id for case_id, _, _, _ in HS_CASES],
)
def test_verifier_hmac(config: dict[str, Any], make: Callable[[], bytes], valid: bool) -> None:
    verifier = TokenVerifier(LogoutConfig(jwt_key=SECRET, **config))
    assert verifier.enabled is True
    assert verifier.fetches is False
    token: bytes = make()
    claims = verifier.verify(token)
    if not valid:
        assert claims is None
        return
    assert claims is not None
    assert claims.verified is True
    unverified = read_claims(token)
    assert unverified is not None
    assert claims == replace(unverified, verified=True)


def test_verifier_logs_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = hmac_token(now_claims(), key=OTHER_SECRET)
    with caplog.at_level("INFO", logger="logout_middleware"):
        assert TokenVerifier(LogoutConfig(jwt_key=SECRET)).verify(token) is None
    assert "InvalidSignatureError" in caplog.text
    assert token.decode() not in caplog.text


# -- TokenVerifier: a PEM public key ---------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


PEM_CASES = ["good", "other-key", "rs512-not-allowed", "hmac-with-public-key", "alg-none"]


@pytest.mark.parametrize("case", PEM_CASES)
def test_verifier_pem(case: str, rsa_key: rsa.RSAPrivateKey, other_rsa_key: Any) -> None:
    pem = public_pem(rsa_key)
    verifier = TokenVerifier(LogoutConfig(jwt_key=pem))
    assert verifier.enabled is True
    claims = now_claims(act={"sub": "support-agent"})
    token = {
        "good": lambda: jwt.encode(claims, rsa_key, algorithm="RS256").encode(),
        "other-key": lambda: jwt.encode(claims, other_rsa_key, algorithm="RS256").encode(),
        "rs512-not-allowed": lambda: jwt.encode(claims, rsa_key, algorithm="RS512").encode(),
        # The classic confusion: the public key, which anyone has, as an HMAC secret.
        "hmac-with-public-key": lambda: handmade(
            {"alg": "HS256", "typ": "JWT"}, claims, pem.encode()
        ),
        "alg-none": lambda: handmade({"alg": "none", "typ": "JWT"}, claims, None),
    }[case]()
    found = verifier.verify(token)
    if case == "good":
        assert found is not None
        assert found.verified is True
        assert found.sub == "user-1"
        assert found.actor == "support-agent"
    else:
        assert found is None


# -- TokenVerifier: a JWKS over HTTP ---------------------------------------------------


class JwksServer:
    """A real HTTP server on 127.0.0.1 serving ``keys`` as a JWKS, counting requests."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"

    def serve(self, *pairs: tuple[str, rsa.RSAPrivateKey]) -> None:
        self.keys = [
            {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256"}
            for kid, key in pairs
        ]


@pytest.fixture
def jwks(monkeypatch: pytest.MonkeyPatch) -> Iterator[JwksServer]:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = JwksServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()
    server.thread.join(5)


def signed(key: rsa.RSAPrivateKey, kid: str | None, sub: str = "user-1") -> bytes:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(now_claims(sub=sub), key, algorithm="RS256", headers=headers).encode()


def test_jwks_verifies_and_caches(jwks: JwksServer, rsa_key: rsa.RSAPrivateKey) -> None:
    jwks.serve(("k1", rsa_key))
    verifier = TokenVerifier(LogoutConfig(jwks_url=jwks.url))
    assert verifier.enabled is True
    assert verifier.fetches is True
    for sub in ("a", "b", "c"):
        claims = verifier.verify(signed(rsa_key, "k1", sub))
        assert claims is not None
        assert claims.verified is True
        assert claims.sub == sub
    assert jwks.requests == 1


def test_jwks_token_without_kid_uses_a_served_key(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks.serve(("k1", rsa_key))
    verifier = TokenVerifier(LogoutConfig(jwks_url=jwks.url))
    assert verifier.verify(signed(rsa_key, None)) is not None


def test_jwks_unknown_kid_refetches_at_most_once_per_cooldown(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks.serve(("k1", rsa_key))
    verifier = TokenVerifier(LogoutConfig(jwks_url=jwks.url))
    assert verifier.verify(signed(rsa_key, "k1")) is not None
    assert jwks.requests == 1

    # Forged kids: the first one costs one refetch, the rest nothing.
    for kid in ("forged-1", "forged-2", "forged-3", "forged-1"):
        assert verifier.verify(signed(other_rsa_key, kid)) is None
    assert jwks.requests == 2

    # The issuer rotates to a new key within the cool-down: not fetched yet.
    jwks.serve(("k1", rsa_key), ("k2", other_rsa_key))
    assert verifier.verify(signed(other_rsa_key, "k2")) is None
    assert jwks.requests == 2
    # The known key still verifies from the cache.
    assert verifier.verify(signed(rsa_key, "k1")) is not None
    assert jwks.requests == 2


def test_jwks_rotation_picked_up_after_cooldown(
    jwks: JwksServer,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    jwks.serve(("k1", rsa_key))
    verifier = TokenVerifier(LogoutConfig(jwks_url=jwks.url))
    assert verifier.verify(signed(rsa_key, "k1")) is not None
    monkeypatch.setattr(tokens, "JWKS_COOLDOWN", 0.0)
    jwks.serve(("k2", other_rsa_key))
    claims = verifier.verify(signed(other_rsa_key, "k2"))
    assert claims is not None
    assert claims.verified is True
    assert jwks.requests == 2


def test_jwks_first_fetch_with_unknown_kid(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    """A forged kid on a cold verifier: the first fetch and one refetch, never more."""
    jwks.serve(("k1", rsa_key))
    verifier = TokenVerifier(LogoutConfig(jwks_url=jwks.url))
    for _ in range(5):
        assert verifier.verify(signed(other_rsa_key, "forged")) is None
    assert jwks.requests == 2


def test_jwks_wrong_key_for_kid(
    jwks: JwksServer, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks.serve(("k1", rsa_key))
    verifier = TokenVerifier(LogoutConfig(jwks_url=jwks.url))
    assert verifier.verify(signed(other_rsa_key, "k1")) is None


def test_jwks_unreachable_is_unverified(
    rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    verifier = TokenVerifier(
        LogoutConfig(jwks_url=f"http://127.0.0.1:{port}/jwks.json", redis_timeout=0.2)
    )
    with caplog.at_level("WARNING", logger="logout_middleware"):
        assert verifier.verify(signed(rsa_key, "k1")) is None
    assert "JWKS unavailable" in caplog.text
