"""Configuration: one frozen value, built from keyword arguments or ``LOGOUT_*`` variables.

Every setting has an environment variable of the same name in upper case with a
``LOGOUT_`` prefix (``next_uri`` is ``LOGOUT_NEXT_URI``). Values are checked once,
when the configuration is built, so a bad deployment fails at start-up with a
:class:`ConfigError` that names the variable, never on the first logout.

Example::

    config = LogoutConfig(path="/auth/logout", redis_url="redis://localhost:6379/0")
    config = LogoutConfig.from_env()            # reads os.environ
    config = LogoutConfig.from_env({"LOGOUT_PATH": "/bye"})
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from .topology import RedisTarget, hash_tag, redis_target

__all__ = ["ConfigError", "LogoutConfig"]

OnGet = Literal["405", "confirm"]
OnStoreError = Literal["fail", "succeed"]
OnCheckError = Literal["allow", "deny"]
SameSite = Literal["Strict", "Lax", "None"]
SessionFormat = Literal["auto", "json", "msgpack", "pickle"]
#: JWT algorithms PyJWT knows (RFC 7518 section 3.1 and RFC 8037); ``none`` never.
JWT_ALGORITHMS = frozenset(
    {
        "HS256",
        "HS384",
        "HS512",
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES256K",
        "ES384",
        "ES512",
        "EdDSA",
    }
)

#: RFC 6265 section 4.1.1 ``cookie-name`` is an RFC 2616 ``token``.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
#: A Redis key template as we accept one: printable ASCII, no spaces.
_KEY = re.compile(r"[\x21-\x7e]+\Z")
#: A path we can compare and put in a ``Location`` or ``Set-Cookie`` header verbatim.
_PATH = re.compile(r"/[!$&'()*+,\-./0-9:;=@A-Z_a-z~%]*\Z")
#: A DNS host name: dot-separated labels of letters, digits and inner hyphens (RFC 1123).
_NAME = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
#: An allowed host: a host name with an optional port.
_HOST = re.compile(_NAME + r"(?::[0-9]{1,5})?\Z")
#: A cookie ``Domain``: a host name without a port (RFC 6265 section 5.2.3).
_DOMAIN = re.compile(_NAME + r"\Z")
_ORIGIN = re.compile(
    r"https?://[a-z0-9.\-]+(?::[0-9]{1,5})?\Z|https?://\[[0-9a-f:.]+\](?::[0-9]{1,5})?\Z"
)

#: Directives of the Clear-Site-Data header (W3C Clear Site Data, section 3.1).
CLEAR_SITE_DATA_TYPES = frozenset(
    {
        "cache",
        "cookies",
        "storage",
        "executionContexts",
        "clientHints",
        "prefetchCache",
        "prerenderCache",
        "*",
    }
)

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A setting has an invalid value; the message names the ``LOGOUT_*`` variable.

    Raised by :class:`LogoutConfig` (and so by both middlewares) at construction.
    """


#: Fields whose variable, set but empty, turns the feature off (the field becomes "")
#: instead of taking the default.
_EMPTY_TURNS_OFF = frozenset({"events_stream"})
#: Fields whose variable is not simply ``LOGOUT_`` + the upper-cased field name.
_ENV_NAMES = {"on_get": "LOGOUT_GET"}


def _env_name(name: str) -> str:
    return _ENV_NAMES.get(name) or "LOGOUT_" + name.upper()


def _fail(name: str, message: str) -> ConfigError:
    return ConfigError(f"{_env_name(name)}: {message}")


@dataclass(frozen=True, slots=True)
class LogoutConfig:
    """Everything the middleware needs to know, checked once.

    Build it with keyword arguments or with :meth:`from_env`. Sequences may be given as
    any iterable of strings and are stored as tuples. All durations are in seconds,
    all sizes in bytes.

    :raises ConfigError: when any value is invalid; the message starts with the
        name of the environment variable (for example ``LOGOUT_NEXT_URI: ...``).
    """

    # Each field's variable is LOGOUT_ + its name in upper case, except on_get (LOGOUT_GET).

    #: ``LOGOUT_PATH``: the logout URI, relative to the app's mount point (ASGI
    #: ``root_path``, WSGI ``SCRIPT_NAME``). Matched exactly.
    path: str = "/logout"
    #: ``LOGOUT_METHODS``: methods that log out. ``POST`` only by default, as Django's
    #: ``LogoutView`` since 5.0 and Stormpath: a ``GET`` can be sent by a prefetch or a link.
    methods: tuple[str, ...] = ("POST",)
    #: ``LOGOUT_GET``: what a ``GET`` or ``HEAD`` to the logout URI gets: ``405`` (the
    #: default) or ``confirm``, a small HTML page whose form POSTs back.
    on_get: OnGet = "405"
    #: ``LOGOUT_NEXT_PARAM``: the query or form parameter naming where to go after logout.
    next_param: str = "next"
    #: ``LOGOUT_NEXT_URI``: where to go when ``next`` is absent or unsafe (Stormpath's
    #: ``nextUri``). A path such as ``/`` or an absolute http(s) URL.
    next_uri: str = "/"
    #: ``LOGOUT_ALLOWED_HOSTS``: other hosts ``next`` may name, besides the request's own.
    #: ``host`` allows any port; ``host:port`` allows that port only. Exact match.
    allowed_hosts: tuple[str, ...] = ()
    #: ``LOGOUT_TRUSTED_ORIGINS``: origins (``https://app.example.com``) allowed to POST
    #: to the logout URI cross-origin.
    trusted_origins: tuple[str, ...] = ()
    #: ``LOGOUT_COOKIES``: names of further cookies to expire (a CSRF cookie, say). The
    #: session cookie (``LOGOUT_SESSION_COOKIE``) is always expired; by default nothing
    #: else is, so that a non-default session cookie leaves a ``session`` cookie alone.
    cookies: tuple[str, ...] = ()
    #: ``LOGOUT_COOKIE_PATH``: the ``Path`` the cookies were set with (RFC 6265 5.2.4).
    cookie_path: str = "/"
    #: ``LOGOUT_COOKIE_DOMAIN``: the ``Domain`` they were set with, or none (host-only).
    cookie_domain: str | None = None
    #: ``LOGOUT_COOKIE_SECURE``: ``auto`` (None: ``Secure`` on HTTPS requests and for
    #: ``__Secure-``/``__Host-`` names), ``true`` or ``false``.
    cookie_secure: bool | None = None
    #: ``LOGOUT_COOKIE_SAMESITE``: ``Strict``, ``Lax``, ``None`` or unset.
    cookie_samesite: SameSite | None = None
    #: ``LOGOUT_CLEAR_SITE_DATA``: Clear-Site-Data types to send on HTTPS logouts, such
    #: as ``cookies,storage``. Empty by default; ``cache`` is sent only when listed.
    clear_site_data: tuple[str, ...] = ()
    #: ``LOGOUT_REDIS_URL``: the Redis that holds sessions, the denylist and the audit
    #: stream: ``redis://``, ``rediss://``, ``unix://``, or a Sentinel-managed primary,
    #: ``redis+sentinel://host:port[,host:port...]/service[/db]`` (see :mod:`.topology`).
    #: Unset: cookies only, with one warning at start-up.
    redis_url: str | None = None
    #: ``LOGOUT_REDIS_CLUSTER``: ``LOGOUT_REDIS_URL`` names a node of a Redis Cluster.
    redis_cluster: bool = False
    #: ``LOGOUT_REDIS_TIMEOUT``: connect and read timeout of each Redis call, seconds.
    redis_timeout: float = 1.0
    #: ``LOGOUT_SESSION_COOKIE``: the cookie that holds the server-side session id.
    session_cookie: str = "session"
    #: ``LOGOUT_SESSION_KEYS``: Redis key templates of the session, ``{sid}`` standing for
    #: the id. ``session:{sid}`` is Flask-Session's; ``starsessions.{sid}`` starsessions'.
    session_keys: tuple[str, ...] = ("session:{sid}",)
    #: ``LOGOUT_SESSION_SECRET``: set when the cookie holds an itsdangerous-signed id
    #: (Flask-Session's ``SESSION_USE_SIGNER``; the Flask ``SECRET_KEY``).
    session_secret: str | None = field(default=None, repr=False)
    #: ``LOGOUT_SESSION_SALT``: the signer's salt; Flask-Session uses ``flask-session``.
    session_salt: str = "flask-session"
    #: ``LOGOUT_REVOKE_TOKENS``: revoke the logout request's bearer token and refuse
    #: revoked tokens on every later request (needs Redis).
    revoke_tokens: bool = True
    #: ``LOGOUT_REVOCATION_CACHE``: keep a local mirror of the revocation state (revoked
    #: tokens, session tombstones, subjects' not-before) in each process, followed
    #: through the audit stream, so that requests with a session cookie or a bearer token
    #: cost no Redis round trip (see
    #: :class:`~logout_middleware.core.revocation.RevocationMirror`). Off, or without an
    #: audit stream to follow: one pipelined Redis check per such request.
    revocation_cache: bool = True
    #: ``LOGOUT_TOKEN_TTL``: how long an opaque (non-JWT) token stays revoked, seconds.
    token_ttl: int = 3600
    #: ``LOGOUT_TOKEN_MAX_TTL``: upper bound on a revocation's lifetime, seconds, for JWTs
    #: whose ``exp`` is far away (30 days by default).
    token_max_ttl: int = 30 * 24 * 3600
    #: ``LOGOUT_DENYLIST_PREFIX``: prefix of the denylist keys; the rest is a SHA-256.
    denylist_prefix: str = "logout:revoked:"
    #: ``LOGOUT_EVENTS_STREAM``: the Redis stream of logout events (audit trail);
    #: empty to write none.
    events_stream: str = "logout:events"
    #: ``LOGOUT_EVENTS_MAXLEN``: approximate cap on the stream's length (``XADD MAXLEN ~``).
    events_maxlen: int = 100_000
    #: ``LOGOUT_ON_STORE_ERROR``: when Redis fails during a logout, ``fail`` answers 503
    #: (cookies still expired); ``succeed`` answers as if it had worked.
    on_store_error: OnStoreError = "fail"
    #: ``LOGOUT_ON_CHECK_ERROR``: when Redis fails while checking a bearer token on an
    #: ordinary request, ``allow`` passes it to the app, ``deny`` answers 503.
    on_check_error: OnCheckError = "allow"
    #: ``LOGOUT_MAX_BODY``: largest logout request body read, bytes; larger gets 413.
    max_body: int = 64 * 1024
    #: ``LOGOUT_EVERYWHERE_PATH``: the URI that logs the request's subject out of every
    #: session and JWT (for example ``/logout/everywhere``); unset for none.
    everywhere_path: str | None = None
    #: ``LOGOUT_SESSION_SUBJECT``: dotted path to the user id in the session data:
    #: ``_user_id`` (Flask-Login), ``_auth_user_id`` (Django), ``user.id``. Unset: the
    #: middleware does not learn whose sessions are whose.
    session_subject: str | None = None
    #: ``LOGOUT_SESSION_FORMAT``: how session records are encoded: ``auto`` (msgpack,
    #: then JSON: Flask-Session 0.8 and starsessions), ``json``, ``msgpack``, or
    #: ``pickle`` (Django's cache sessions; read without loading any class).
    session_format: SessionFormat = "auto"
    #: ``LOGOUT_SESSION_TTL``: the session store's session lifetime, seconds: how long a
    #: logged-out session's tombstone and a session index entry live (31 days, as
    #: Flask's ``PERMANENT_SESSION_LIFETIME``).
    session_ttl: int = 31 * 24 * 3600
    #: ``LOGOUT_KEY_PREFIX``: prefix of the session tombstones, subjects' not-before
    #: and session index keys.
    key_prefix: str = "logout:"
    #: ``LOGOUT_JWT_KEY``: the key that verifies bearer JWTs: an HMAC secret, or a PEM
    #: public key (``-----BEGIN PUBLIC KEY-----``).
    jwt_key: str | None = field(default=None, repr=False)
    #: ``LOGOUT_JWKS_URL``: an https URL of the issuer's JWKS (RFC 7517), instead of a key.
    jwks_url: str | None = None
    #: ``LOGOUT_JWT_ALGORITHMS``: algorithms accepted for verification. Default: ``HS256``
    #: for an HMAC secret, ``RS256,ES256`` for a PEM key or a JWKS. Never ``none``.
    jwt_algorithms: tuple[str, ...] = ()
    #: ``LOGOUT_JWT_ISSUER``: the ``iss`` that verified JWTs must carry; unset: not checked.
    jwt_issuer: str | None = None
    #: ``LOGOUT_JWT_AUDIENCE``: ``aud`` values accepted; unset: not checked.
    jwt_audience: tuple[str, ...] = ()
    #: ``LOGOUT_JWT_LEEWAY``: clock skew allowed on ``exp``/``nbf``/``iat``, seconds; also
    #: added to a revoked JWT's remaining lifetime.
    jwt_leeway: int = 60
    #: ``LOGOUT_SCHEME_PARAM``: the query or form parameter naming the schemes to sign out
    #: of (``session``, ``bearer``, comma-separated or repeated); absent: all.
    scheme_param: str = "scheme"
    #: ``LOGOUT_SESSION_IMPERSONATOR``: dotted path to who is impersonating, in an
    #: impersonated session's data (django-hijack: ``hijack_history``, whose last entry
    #: is used). Unset: session impersonation is not recognised.
    session_impersonator: str | None = None
    #: ``LOGOUT_SESSION_ORIGINAL``: dotted path to the impersonator's own session id in the
    #: impersonated session's data; when that session still exists, is not revoked and
    #: belongs to the impersonator, ending the impersonation restores it.
    session_original: str | None = None
    #: ``LOGOUT_IMPERSONATION_PATH``: a URI that ends an impersonation only (``409`` when
    #: the request is not impersonating); unset for none.
    impersonation_path: str | None = None
    #: ``LOGOUT_OIDC_ISSUER``: the OpenID provider (``https://id.example.com``); its
    #: metadata comes from ``/.well-known/openid-configuration`` and its keys from the
    #: ``jwks_uri`` there, fetched off the event loop and cached.
    oidc_issuer: str | None = None
    #: ``LOGOUT_OIDC_CLIENT_ID``: this app's client id at the provider.
    oidc_client_id: str | None = None
    #: ``LOGOUT_SESSION_OIDC_SID``: dotted path to the provider's ``sid`` in the session
    #: data (Authlib's clients keep the ID token's claims at ``user``: ``user.sid``).
    session_oidc_sid: str | None = None
    #: ``LOGOUT_SESSION_ID_TOKEN``: dotted path to the raw ID token in the session data,
    #: sent as ``id_token_hint`` (``id_token`` where the app keeps Authlib's token there).
    session_id_token: str | None = None
    #: ``LOGOUT_BACKCHANNEL_PATH``: the URI of the back-channel logout receiver
    #: (OpenID Connect Back-Channel Logout 1.0), e.g. ``/oidc/backchannel-logout``.
    backchannel_path: str | None = None
    #: ``LOGOUT_OIDC_END_SESSION``: after a browser logout, send the browser on to the
    #: provider's ``end_session_endpoint`` (RP-Initiated Logout 1.0).
    oidc_end_session: bool = False
    #: ``LOGOUT_TOKEN_KEYS``: Redis key templates of a token's server-side record,
    #: ``{token}`` standing for the raw token, deleted when the token ends (the bearer
    #: scheme). ``fastapi_users_token:{token}`` is fastapi-users' ``RedisStrategy``
    #: (its ``key_prefix``). Empty by default: tokens have no record.
    token_keys: tuple[str, ...] = ()
    #: ``LOGOUT_TOKEN_COOKIE``: the cookie whose value is a token (fastapi-users'
    #: ``CookieTransport``: ``fastapiusersauth``), ended like the bearer token: its
    #: ``LOGOUT_TOKEN_KEYS`` deleted, revoked (``LOGOUT_REVOKE_TOKENS``), and the cookie
    #: expired, all with the bearer scheme. Unset: no cookie holds a token.
    token_cookie: str | None = None

    def __post_init__(self) -> None:
        def set_(name: str, value: object) -> None:
            object.__setattr__(self, name, value)

        for name in (
            "methods",
            "allowed_hosts",
            "trusted_origins",
            "cookies",
            "clear_site_data",
            "session_keys",
            "jwt_algorithms",
            "jwt_audience",
            "token_keys",
        ):
            value = getattr(self, name)
            if isinstance(value, str):
                raise _fail(name, "give a sequence of strings, not one string")
            set_(name, tuple(value))

        if not _PATH.match(self.path) or "//" in self.path:
            raise _fail("path", f"must be an absolute path such as /logout, got {self.path!r}")
        methods = tuple(m.strip().upper() for m in self.methods)
        if not methods or not all(_TOKEN.match(m) for m in methods):
            raise _fail("methods", f"must list HTTP methods such as POST, got {self.methods!r}")
        if {"GET", "HEAD"} & set(methods):
            raise _fail("methods", "GET and HEAD must not log out (links and prefetches send them)")
        set_("methods", methods)
        _choice("on_get", self.on_get, OnGet)
        if self.on_get == "confirm" and "POST" not in methods:
            raise _fail("on_get", "confirm needs POST in LOGOUT_METHODS (its form POSTs)")
        if not _TOKEN.match(self.next_param):
            raise _fail("next_param", f"must be a parameter name, got {self.next_param!r}")
        if not re.fullmatch(r"[\x21-\x7e]+", self.next_uri) or (
            not (_PATH.match(self.next_uri) and not self.next_uri.startswith("//"))
            and not re.match(r"https?://[^/\\@]+(/.*)?\Z", self.next_uri)
        ):
            raise _fail("next_uri", f"must be a path or an http(s) URL, got {self.next_uri!r}")
        hosts = tuple(h.strip().lower() for h in self.allowed_hosts)
        for host in hosts:
            if not _HOST.match(host):
                raise _fail("allowed_hosts", f"{host!r} is not a host name or host:port")
        set_("allowed_hosts", hosts)
        origins = tuple(o.strip().lower().rstrip("/") for o in self.trusted_origins)
        for origin in origins:
            if not _ORIGIN.match(origin):
                raise _fail("trusted_origins", f"{origin!r} is not an origin like https://host")
        set_("trusted_origins", origins)
        for field_name, names in (
            ("cookies", self.cookies),
            ("session_cookie", (self.session_cookie,)),
        ):
            for name in names:
                if not _TOKEN.match(name):
                    raise _fail(field_name, f"{name!r} is not a valid cookie name (RFC 6265)")
        if not _PATH.match(self.cookie_path):
            raise _fail("cookie_path", f"must be a path such as /, got {self.cookie_path!r}")
        if self.cookie_domain is not None:
            domain = self.cookie_domain.strip().lower()
            if not _DOMAIN.match(domain.lstrip(".")):
                raise _fail("cookie_domain", f"{self.cookie_domain!r} is not a domain (no port)")
            set_("cookie_domain", domain)
        if self.cookie_samesite is not None:
            set_("cookie_samesite", str(self.cookie_samesite).capitalize())
            _choice("cookie_samesite", self.cookie_samesite, SameSite)
        for kind in self.clear_site_data:
            if kind not in CLEAR_SITE_DATA_TYPES:
                allowed = ", ".join(sorted(CLEAR_SITE_DATA_TYPES))
                raise _fail("clear_site_data", f"{kind!r} is not one of {allowed}")
        if self.redis_url is not None:
            try:
                self.redis_target()
            except ValueError as exc:  # a port or db that is not a number, say
                raise _fail("redis_url", str(exc)) from None
        elif self.redis_cluster:
            raise _fail("redis_cluster", "needs LOGOUT_REDIS_URL naming a node of the cluster")
        if not 0 < self.redis_timeout <= 60:
            raise _fail("redis_timeout", f"must be seconds in (0, 60], got {self.redis_timeout}")
        if not self.session_keys:
            raise _fail("session_keys", "name at least one key template")
        for template in self.session_keys:
            if "{sid}" not in template or template == "{sid}":
                raise _fail("session_keys", f"{template!r} needs a constant part and {{sid}}")
        if self.session_secret == "":
            raise _fail("session_secret", "is empty; unset it for unsigned session ids")
        for name in ("token_ttl", "token_max_ttl", "events_maxlen", "max_body"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _fail(name, f"must be a positive whole number, got {value!r}")
        if not self.denylist_prefix:
            raise _fail("denylist_prefix", "must not be empty")
        self._check_subjects()
        self._check_tokens()
        _choice("on_store_error", self.on_store_error, OnStoreError)
        _choice("on_check_error", self.on_check_error, OnCheckError)

    def _check_subjects(self) -> None:
        """The checks of the revocation-state and JWT settings."""
        if self.everywhere_path is not None:
            path = self.everywhere_path
            if not _PATH.match(path) or "//" in path:
                raise _fail("everywhere_path", f"must be an absolute path, got {path!r}")
            if path == self.path:
                raise _fail("everywhere_path", "must differ from LOGOUT_PATH")
        for name in ("session_subject", "session_impersonator", "session_original"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", value):
                raise _fail(name, f"must be a dotted path such as user.id, got {value!r}")
        if self.impersonation_path is not None:
            path = self.impersonation_path
            if not _PATH.match(path) or "//" in path:
                raise _fail("impersonation_path", f"must be an absolute path, got {path!r}")
            if path in (self.path, self.everywhere_path):
                raise _fail("impersonation_path", "must differ from the other logout URIs")
        self._check_oidc()
        if not _TOKEN.match(self.scheme_param) or self.scheme_param == self.next_param:
            raise _fail("scheme_param", f"must be a parameter name, got {self.scheme_param!r}")
        _choice("session_format", self.session_format, SessionFormat)
        if not self.key_prefix:
            raise _fail("key_prefix", "must not be empty")
        spaces = {
            "denylist_prefix": self.denylist_prefix,
            "key_prefix": self.key_prefix + "revoked-session:",
        }
        for own, prefix in spaces.items():
            for other, name in (
                (self.key_prefix + "revoked-oidc-sid:", "key_prefix"),
                (self.key_prefix + "not-before:", "key_prefix"),
                (self.key_prefix + "sessions-of:", "key_prefix"),
                (self.events_stream, "events_stream"),
                *((p, n) for n, p in spaces.items() if n != own),
            ):
                if other and (other.startswith(prefix) or prefix.startswith(other)):
                    raise _fail(
                        own,
                        f"{prefix!r} overlaps {other!r} (LOGOUT_{name.upper()}): the "
                        "revocation cache would read one kind of key as another",
                    )
        if "{" in self.key_prefix or "}" in self.key_prefix:
            raise _fail(
                "key_prefix",
                "must not contain '{' or '}': a hash tag in it would put an audit entry's "
                "write-once marker in another Redis Cluster slot than the stream",
            )
        if "}" in self.events_stream and hash_tag(self.events_stream) is None:
            raise _fail(
                "events_stream",
                "has a '}' outside a {hash tag}: its audit entries' write-once markers "
                "could not share its Redis Cluster slot",
            )
        for name in ("session_ttl",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise _fail(name, f"must be a positive whole number, got {value!r}")
        if (
            isinstance(self.jwt_leeway, bool)
            or not isinstance(self.jwt_leeway, int)
            or not (0 <= self.jwt_leeway <= 3600)
        ):
            raise _fail("jwt_leeway", f"must be seconds in [0, 3600], got {self.jwt_leeway!r}")
        if self.jwt_key is not None and self.jwks_url is not None:
            raise _fail("jwks_url", "set LOGOUT_JWT_KEY or LOGOUT_JWKS_URL, not both")
        if self.jwt_key == "":
            raise _fail("jwt_key", "is empty; unset it to leave tokens unverified")
        if self.jwks_url is not None and not re.match(r"https?://[^\s/]+", self.jwks_url):
            raise _fail("jwks_url", f"must be an http(s) URL, got {self.jwks_url!r}")
        pem = self.jwt_key is not None and self.jwt_key.lstrip().startswith("-----BEGIN")
        algorithms = self.jwt_algorithms
        if not algorithms and (self.jwt_key is not None or self.jwks_url is not None):
            algorithms = ("RS256", "ES256") if pem or self.jwks_url else ("HS256",)
        for algorithm in algorithms:
            if algorithm not in JWT_ALGORITHMS:
                allowed = ", ".join(sorted(JWT_ALGORITHMS))
                raise _fail("jwt_algorithms", f"{algorithm!r} is not one of {allowed}")
            if pem and algorithm.startswith("HS"):
                raise _fail(
                    "jwt_algorithms",
                    f"{algorithm} with a PEM key: a public key "
                    "must never be used as an HMAC secret",
                )
        object.__setattr__(self, "jwt_algorithms", tuple(algorithms))

    def _check_tokens(self) -> None:
        """The checks of the token record settings.

        A template is printable ASCII with a constant prefix, one ``{token}`` and no
        other brace; the prefix must not overlap the middleware's own key spaces, or a
        token chosen by a client could name one of its keys (a revocation, say).
        """
        ours = (
            (self.denylist_prefix, "LOGOUT_DENYLIST_PREFIX"),
            (self.key_prefix, "LOGOUT_KEY_PREFIX"),
            (self.events_stream, "LOGOUT_EVENTS_STREAM"),
        )
        for template in self.token_keys:
            before, placeholder, after = template.partition("{token}")
            if not placeholder or not before:
                raise _fail(
                    "token_keys",
                    f"{template!r} needs a constant prefix and {{token}}, "
                    "such as fastapi_users_token:{token}",
                )
            if any(c in "{}" for c in before + after) or not _KEY.match(template):
                raise _fail(
                    "token_keys",
                    f"{template!r} is malformed: printable ASCII with one {{token}} "
                    "and no other brace",
                )
            for prefix, variable in ours:
                if prefix and (before.startswith(prefix) or prefix.startswith(before)):
                    raise _fail(
                        "token_keys",
                        f"{template!r} overlaps {prefix!r} ({variable}): a client's token "
                        "could name one of the middleware's own keys",
                    )
        if self.token_cookie is not None:
            if not _TOKEN.match(self.token_cookie):
                raise _fail(
                    "token_cookie", f"{self.token_cookie!r} is not a valid cookie name (RFC 6265)"
                )
            if self.token_cookie == self.session_cookie:
                raise _fail(
                    "token_cookie",
                    "must differ from LOGOUT_SESSION_COOKIE: one cookie cannot hold both",
                )

    def _check_oidc(self) -> None:
        """The checks of the OpenID Connect settings."""
        for name in ("session_oidc_sid", "session_id_token"):
            value = getattr(self, name)
            if value is not None and not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", value):
                raise _fail(name, f"must be a dotted path such as user.sid, got {value!r}")
        if self.oidc_issuer is not None:
            issuer = self.oidc_issuer.rstrip("/")
            if not re.match(r"https?://[^\s/?#]+(/[^\s?#]*)?\Z", issuer):
                raise _fail("oidc_issuer", f"must be an http(s) URL, got {self.oidc_issuer!r}")
        if self.backchannel_path is not None:
            path = self.backchannel_path
            if not _PATH.match(path) or "//" in path:
                raise _fail("backchannel_path", f"must be an absolute path, got {path!r}")
            if path in (self.path, self.everywhere_path, self.impersonation_path):
                raise _fail("backchannel_path", "must differ from the other logout URIs")
        if self.backchannel_path is not None or self.oidc_end_session:
            needs = (
                "LOGOUT_BACKCHANNEL_PATH" if self.backchannel_path else "LOGOUT_OIDC_END_SESSION"
            )
            if not self.oidc_issuer:
                raise _fail("oidc_issuer", f"is needed by {needs}")
            if not self.oidc_client_id:
                raise _fail("oidc_client_id", f"is needed by {needs}")

    @property
    def expired_cookies(self) -> tuple[str, ...]:
        """Every cookie a logout expires: ``cookies`` plus ``session_cookie``, in order."""
        return tuple(dict.fromkeys((*self.cookies, self.session_cookie)))

    def redis_target(self) -> RedisTarget:
        """``LOGOUT_REDIS_URL`` and ``LOGOUT_REDIS_CLUSTER`` parsed: which topology, and
        where (:func:`.topology.redis_target`).

        :raises ValueError: when ``redis_url`` is unset or malformed.
        """
        if self.redis_url is None:
            raise ValueError("LOGOUT_REDIS_URL is not set")
        return redis_target(self.redis_url, cluster=self.redis_cluster)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LogoutConfig:
        """Build a configuration from ``LOGOUT_*`` variables.

        :param environ: where to read; ``os.environ`` when None. Unset and empty
            variables take the default, except ``LOGOUT_EVENTS_STREAM``, which when set
            but empty writes no audit stream.
        :param overrides: field values that win over the environment.
        :raises ConfigError: naming the variable whose value is invalid.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(_env_name(f.name))
            if raw is None:
                continue
            raw = raw.strip()
            if raw:
                values[f.name] = _parse(f.name, raw, f.default)
            elif f.name in _EMPTY_TURNS_OFF:
                values[f.name] = ""
        values.update(overrides)
        return cls(**values)


def _choice(name: str, value: object, kind: Any) -> None:
    if value not in get_args(kind):
        options = ", ".join(get_args(kind))
        raise _fail(name, f"must be one of {options}, got {value!r}")


def _parse(name: str, raw: str, default: object) -> object:
    """Turn one variable's text into the field's type, judged by the default's type."""
    if name == "cookie_secure":
        return None if raw.lower() == "auto" else _bool(name, raw)
    if isinstance(default, bool):
        return _bool(name, raw)
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise _fail(name, f"must be a whole number, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise _fail(name, f"must be a number of seconds, got {raw!r}") from None
    if isinstance(default, tuple):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _fail(name, f"must be true or false, got {raw!r}")
