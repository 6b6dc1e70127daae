"""OpenID Connect logout: the back-channel ``logout_token`` (Back-Channel Logout 1.0) and
the provider's ``end_session_endpoint`` (RP-Initiated Logout 1.0).

:func:`check_logout_token` validates a logout token in the order of Back-Channel Logout
1.0 section 2.6, each failure a :class:`LogoutTokenError` naming the rule, as Spring
Security's ``OidcBackChannelLogoutTokenValidator`` and Authlib's claim validators do:

1. signature, with the provider's keys and only the provider's algorithms (never
   ``none``, never an HMAC algorithm);
2. ``iss``, ``aud`` (contains the client id), ``iat``, ``exp``, as for an ID token;
3. ``sub`` or ``sid`` present;
4. ``events`` holds the member ``http://schemas.openid.net/event/backchannel-logout``;
5. ``nonce`` absent;
6. ``jti`` present (its reuse is refused by the caller, across processes, in Redis).

A ``typ`` header, when present, must be ``logout+jwt`` (or ``JWT``). :class:`OIDCProvider`
fetches the provider's metadata and keys (blocking: the drivers run it off the event
loop) and validates with them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt

from ..config import LogoutConfig
from .tokens import JwksKeys

__all__ = [
    "BACKCHANNEL_EVENT",
    "LogoutTokenClaims",
    "LogoutTokenError",
    "OIDCProvider",
    "check_logout_token",
    "end_session_url",
]

logger = logging.getLogger("logout_middleware")

#: The ``events`` member that makes a JWT a logout token (section 2.4).
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: Signature algorithms accepted when the provider's metadata names none (section 2.6
#: refers to ID token validation, whose default is RS256).
DEFAULT_ALGORITHMS = ("RS256",)
#: How long the provider's metadata is used before it is fetched again, seconds.
METADATA_LIFESPAN = 3600.0
#: Least time between two metadata fetches after a failure, seconds.
METADATA_RETRY = 30.0
#: Largest logout token accepted, bytes.
MAX_LOGOUT_TOKEN = 16384
_ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class LogoutTokenError(ValueError):
    """A logout token failed a validation rule; the message says which (and is safe to
    return to the provider as ``error_description``)."""


@dataclass(frozen=True, slots=True)
class LogoutTokenClaims:
    """The claims of a valid logout token that logout acts on."""

    iss: str
    sub: str | None
    sid: str | None
    jti: str
    #: ``exp``, seconds since the epoch: how long its ``jti`` must be remembered.
    exp: float


def _text(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if 0 < len(text) <= 1024 else None


def check_logout_token(
    token: bytes,
    key: Any,
    *,
    algorithms: tuple[str, ...],
    issuer: str,
    client_id: str,
    leeway: int,
) -> LogoutTokenClaims:
    """Validate a logout token (Back-Channel Logout 1.0 section 2.6, in its order).

    :param key: the provider's key for the token's ``kid``.
    :param algorithms: the provider's signing algorithms; ``none`` and HMAC are dropped.
    :raises LogoutTokenError: naming the first rule that fails.
    """
    allowed = [a for a in algorithms if a in _ASYMMETRIC]
    if len(token) > MAX_LOGOUT_TOKEN:
        raise LogoutTokenError("logout_token is too large")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise LogoutTokenError("logout_token is not a signed JWT") from None
    if header.get("alg") not in allowed:
        raise LogoutTokenError("logout_token algorithm not accepted")
    typ = header.get("typ")
    if typ is not None and str(typ).lower() not in ("logout+jwt", "jwt"):
        raise LogoutTokenError("logout_token typ must be logout+jwt")
    if key is None:
        raise LogoutTokenError("no provider key for the logout_token's kid")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=allowed,
            issuer=issuer,
            audience=client_id,
            leeway=leeway,
            options={"require": ["iss", "aud", "iat", "exp"]},
        )
    except jwt.InvalidSignatureError:
        raise LogoutTokenError("logout_token signature is invalid") from None
    except jwt.InvalidIssuerError:
        raise LogoutTokenError("logout_token iss is not the provider") from None
    except jwt.InvalidAudienceError:
        raise LogoutTokenError("logout_token aud does not contain the client id") from None
    except jwt.ExpiredSignatureError:
        raise LogoutTokenError("logout_token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise LogoutTokenError(f"logout_token lacks the {exc.claim} claim") from None
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise LogoutTokenError(f"logout_token is invalid ({type(exc).__name__})") from None
    sub, sid = _text(claims.get("sub")), _text(claims.get("sid"))
    if sub is None and sid is None:
        raise LogoutTokenError("logout_token has neither sub nor sid")
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(BACKCHANNEL_EVENT), dict):
        raise LogoutTokenError("logout_token events lacks the back-channel logout event")
    if "nonce" in claims:
        raise LogoutTokenError("logout_token must not contain nonce")
    jti = _text(claims.get("jti"))
    if jti is None:
        raise LogoutTokenError("logout_token lacks the jti claim")
    return LogoutTokenClaims(iss=issuer, sub=sub, sid=sid, jti=jti, exp=float(claims.get("exp", 0)))


def end_session_url(
    endpoint: str,
    *,
    client_id: str,
    id_token_hint: str | None,
    post_logout_redirect_uri: str | None,
    state: str,
) -> str:
    """The URL that sends the browser to the provider's ``end_session_endpoint``
    (RP-Initiated Logout 1.0 section 2) with ``id_token_hint`` when known, ``client_id``
    always, ``post_logout_redirect_uri`` and ``state``."""
    params = {"client_id": client_id, "state": state}
    if id_token_hint:
        params["id_token_hint"] = id_token_hint
    if post_logout_redirect_uri:
        params["post_logout_redirect_uri"] = post_logout_redirect_uri
    separator = "&" if "?" in endpoint else "?"
    return endpoint + separator + urlencode(params)


class OIDCProvider:
    """The provider named by ``LOGOUT_OIDC_ISSUER``: its metadata (from
    ``/.well-known/openid-configuration``, kept :data:`METADATA_LIFESPAN` seconds) and
    its keys (:class:`~.tokens.JwksKeys`, refreshed for an unknown ``kid`` with a
    cool-down). Every method blocks while it fetches and never raises for an
    unreachable provider; thread-safe.

    :param config: ``LOGOUT_OIDC_ISSUER``, ``LOGOUT_OIDC_CLIENT_ID`` and
        ``LOGOUT_JWT_LEEWAY`` are used; ``LOGOUT_REDIS_TIMEOUT`` times 5 bounds a fetch.
    """

    def __init__(self, config: LogoutConfig) -> None:
        if config.oidc_issuer is None or config.oidc_client_id is None:
            raise ValueError("OIDCProvider needs LOGOUT_OIDC_ISSUER and LOGOUT_OIDC_CLIENT_ID")
        self.issuer = config.oidc_issuer.rstrip("/")
        self.client_id = config.oidc_client_id
        self._leeway = config.jwt_leeway
        self._timeout = max(1.0, config.redis_timeout * 5)
        self._lock = threading.Lock()
        self._metadata: Mapping[str, Any] | None = None
        self._fetched = float("-inf")
        self._keys: JwksKeys | None = None

    def metadata(self) -> Mapping[str, Any] | None:
        """The provider's metadata, or None when it cannot be fetched (logged)."""
        with self._lock:
            now = time.monotonic()
            age = now - self._fetched
            if self._metadata is not None and age < METADATA_LIFESPAN:
                return self._metadata
            if self._metadata is None and age < METADATA_RETRY:
                return None
            self._fetched = now
            url = self.issuer + "/.well-known/openid-configuration"
            try:
                with urllib.request.urlopen(url, timeout=self._timeout) as reply:  # noqa: S310
                    found = json.loads(reply.read(1 << 20))
            except (OSError, ValueError) as exc:
                logger.warning("OpenID provider metadata unavailable: %s", exc)
                return self._metadata
            if not isinstance(found, dict) or found.get("issuer", "").rstrip("/") != self.issuer:
                logger.warning("OpenID provider metadata does not name issuer %s", self.issuer)
                return self._metadata
            self._metadata = found
            jwks_uri = found.get("jwks_uri")
            self._keys = JwksKeys(jwks_uri, self._timeout) if isinstance(jwks_uri, str) else None
            return found

    def end_session_endpoint(self) -> str | None:
        """The provider's ``end_session_endpoint``, or None."""
        metadata = self.metadata()
        endpoint = metadata.get("end_session_endpoint") if metadata else None
        return endpoint if isinstance(endpoint, str) else None

    def verify_logout_token(self, token: bytes) -> LogoutTokenClaims | LogoutTokenError:
        """Validate a logout token with the provider's keys and algorithms
        (:func:`check_logout_token`); the error, never raised, when it fails."""
        metadata = self.metadata()
        if metadata is None or self._keys is None:
            return LogoutTokenError("the provider's keys are unavailable")
        found = metadata.get("id_token_signing_alg_values_supported")
        algorithms = tuple(found) if isinstance(found, list) else DEFAULT_ALGORITHMS
        try:
            key = self._keys.key_for(token)
            return check_logout_token(
                token,
                key,
                algorithms=algorithms,
                issuer=self.issuer,
                client_id=self.client_id,
                leeway=self._leeway,
            )
        except LogoutTokenError as exc:
            return exc
        except jwt.PyJWTError:
            return LogoutTokenError("logout_token is not a signed JWT")
