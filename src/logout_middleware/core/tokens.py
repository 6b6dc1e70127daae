"""Bearer tokens and their claims: RFC 6750 extraction, JWT claims (RFC 7519), the
actor of an impersonation (RFC 8693 section 4.1, ``act``), and signature verification
with a configured key or a JWKS (RFC 7517), all through PyJWT.

Two kinds of claims, kept apart by :attr:`TokenClaims.verified`:

* unverified claims (the token's payload, read without checking the signature) may
  refuse the token itself (a forged token can only get itself refused) and may label
  an event;
* verified claims (signature, ``iss``, ``aud``, ``exp``, ``nbf`` checked) may also drive
  a subject-wide action such as logging a user out everywhere.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt

from ..config import LogoutConfig

__all__ = [
    "JWKS_COOLDOWN",
    "MAX_TOKEN_LENGTH",
    "JwksKeys",
    "TokenClaims",
    "TokenVerifier",
    "bearer_token",
    "cookie_token",
    "read_claims",
    "token_records",
    "token_ttl",
]

logger = logging.getLogger("logout_middleware")

#: Longest bearer token hashed or revoked, bytes (RFC 6750 sets no limit; servers do).
MAX_TOKEN_LENGTH = 8192
#: Least time between two JWKS fetches caused by an unknown ``kid``, seconds.
JWKS_COOLDOWN = 60.0
#: How long fetched JWKS keys are used before they are fetched again, seconds.
JWKS_LIFESPAN = 300


def bearer_token(authorization: bytes) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` value (RFC 6750 section 2.1; the
    scheme name is case-insensitive), or None for other schemes, an empty token, or one
    longer than :data:`MAX_TOKEN_LENGTH` bytes."""
    if authorization[:7].lower() != b"bearer ":
        return None
    token = authorization[7:].strip()
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


def cookie_token(value: str | None) -> bytes | None:
    """The token a token cookie (``LOGOUT_TOKEN_COOKIE``, fastapi-users'
    ``CookieTransport``) carries, as the bytes an ``Authorization: Bearer`` header would
    carry it (so both hash alike); None when absent, empty, or longer than
    :data:`MAX_TOKEN_LENGTH` bytes."""
    token = value.strip().encode("utf-8") if value else b""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


#: A token that may be put in a key: printable ASCII (RFC 6750's ``b64token`` and
#: every token scheme we know: fastapi-users' are ``secrets.token_urlsafe``).
_KEYABLE = re.compile(rb"[\x21-\x7e]+\Z")


def token_records(token: bytes, templates: tuple[str, ...]) -> tuple[str, ...]:
    """The Redis keys of a token's server-side records: each ``LOGOUT_TOKEN_KEYS``
    template with ``{token}`` replaced by the raw token (as fastapi-users'
    ``RedisStrategy`` names ``fastapi_users_token:<token>``). Empty for a token that is
    not printable ASCII: no store names a key after one.

    These keys are the only place the raw token goes: chosen by the app's library, never
    logged or written anywhere else by the middleware.
    """
    if not templates or not _KEYABLE.match(token):
        return ()
    text = token.decode("ascii")
    return tuple(template.replace("{token}", text) for template in templates)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The claims of a JWT that logout cares about; each None when absent or of the
    wrong type."""

    #: ``sub``: the subject (the user), as text.
    sub: str | None
    #: ``sid``: the OpenID Connect session id, as text.
    sid: str | None
    #: ``iat``: when it was issued, whole seconds since the epoch.
    iat: int | None
    #: ``exp``: when it expires, seconds since the epoch.
    exp: float | None
    #: ``jti``: the token's own id.
    jti: str | None
    #: ``act.sub`` (RFC 8693 section 4.1): who acts as ``sub``, for an impersonation.
    actor: str | None
    #: Whether the signature and registered claims were checked.
    verified: bool
    #: ``iss``: who issued it, as text.
    iss: str | None = None


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if 0 < len(text) <= 1024 else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _claims(payload: dict[str, Any], verified: bool) -> TokenClaims:
    iat = _number(payload.get("iat"))
    act = payload.get("act")
    return TokenClaims(
        sub=_text(payload.get("sub")),
        sid=_text(payload.get("sid")),
        iat=int(iat) if iat is not None and abs(iat) < 1e12 else None,
        exp=_number(payload.get("exp")),
        jti=_text(payload.get("jti")),
        actor=_text(act.get("sub")) if isinstance(act, dict) else None,
        verified=verified,
        iss=_text(payload.get("iss")),
    )


def read_claims(token: bytes) -> TokenClaims | None:
    """The token's claims without checking its signature, or None when it is not a JWT
    (three dot-separated parts whose payload is a JSON object)."""
    if token.count(b".") != 2:
        return None
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
        return None
    return _claims(payload, verified=False)


def token_ttl(claims: TokenClaims | None, now: float, config: LogoutConfig) -> int:
    """How long to keep a token revoked, seconds: until its ``exp`` plus
    ``LOGOUT_JWT_LEEWAY`` (clock skew), at most ``LOGOUT_TOKEN_MAX_TTL``;
    ``LOGOUT_TOKEN_TTL`` for opaque tokens and JWTs without a usable ``exp``; at least 1."""
    ttl = config.token_ttl
    if claims is not None and claims.exp is not None and abs(claims.exp) < 1e12:
        ttl = int(claims.exp - now) + config.jwt_leeway
    return max(1, min(ttl, config.token_max_ttl))


class JwksKeys:
    """The signing keys at a JWKS URL (RFC 7517), through PyJWT's ``PyJWKClient``: kept
    :data:`JWKS_LIFESPAN` seconds, and fetched again for an unknown ``kid`` at most once
    every :data:`JWKS_COOLDOWN` seconds (so forged ``kid``s cannot make us hammer the
    issuer). Blocks while it fetches; thread-safe.

    :param url: the JWKS URL.
    :param timeout: seconds to wait for the issuer.
    """

    def __init__(self, url: str, timeout: float) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_keys=False, lifespan=JWKS_LIFESPAN, timeout=int(max(1, timeout))
        )
        self._lock = threading.Lock()
        self._refreshed = float("-inf")

    def key_for(self, token: bytes) -> Any:
        """The key for the token's ``kid`` (any key when it names none), or None when
        there is none or the JWKS cannot be fetched (logged).

        :raises jwt.DecodeError: when the token's header cannot be read.
        """
        kid = jwt.get_unverified_header(token).get("kid")
        with self._lock:
            try:
                key = self._find(self._client.get_jwk_set(), kid)
                now = time.monotonic()
                if key is None and now - self._refreshed >= JWKS_COOLDOWN:
                    self._refreshed = now
                    key = self._find(self._client.get_jwk_set(refresh=True), kid)
            except jwt.PyJWKClientError as exc:
                logger.warning("JWKS unavailable: %s", exc)
                return None
        return key

    @staticmethod
    def _find(keys: jwt.PyJWKSet, kid: object) -> Any:
        for jwk in keys.keys:
            if kid is None or jwk.key_id == kid:
                return jwk.key
        return None


class TokenVerifier:
    """Checks JWTs with ``LOGOUT_JWT_KEY`` or the keys at ``LOGOUT_JWKS_URL``
    (:class:`JwksKeys`).

    Only ``LOGOUT_JWT_ALGORITHMS`` are accepted, never ``none``; ``iss`` and ``aud`` are
    checked when ``LOGOUT_JWT_ISSUER`` and ``LOGOUT_JWT_AUDIENCE`` are set, ``exp`` and
    ``nbf`` when present, each with ``LOGOUT_JWT_LEEWAY`` seconds of skew (RFC 7519
    section 4.1). :meth:`verify` blocks while it fetches a JWKS: the ASGI adapter runs it
    in a worker thread when :attr:`fetches` is True.

    :param config: the settings; :attr:`enabled` is False without a key or JWKS URL.
    """

    def __init__(self, config: LogoutConfig) -> None:
        self._config = config
        self._key: Any = None
        self._jwks: JwksKeys | None = None
        if config.jwt_key is not None:
            key = config.jwt_key
            self._key = key if key.lstrip().startswith("-----BEGIN") else key.encode()
        elif config.jwks_url is not None:
            self._jwks = JwksKeys(config.jwks_url, config.redis_timeout * 5)
        #: Whether any key is configured (else every token is unverified).
        self.enabled = self._key is not None or self._jwks is not None
        #: Whether :meth:`verify` may fetch over the network.
        self.fetches = self._jwks is not None

    def verify(self, token: bytes) -> TokenClaims | None:
        """The token's claims if its signature and registered claims hold, else None
        (logged at INFO, without the token). Never raises for a bad token or an
        unreachable JWKS."""
        if not self.enabled:
            return None
        config = self._config
        try:
            key = self._key if self._jwks is None else self._jwks.key_for(token)
            if key is None:
                return None
            payload = jwt.decode(
                token,
                key,
                algorithms=list(config.jwt_algorithms),
                issuer=config.jwt_issuer,
                audience=list(config.jwt_audience) or None,
                leeway=config.jwt_leeway,
                options={"verify_aud": bool(config.jwt_audience)},
            )
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            logger.info("bearer token not verified: %s", type(exc).__name__)
            return None
        return _claims(payload, verified=True)
