"""The sans-IO core: every decision of the middleware, with no sockets and no framework.

The adapters (:mod:`logout_middleware.asgi`, :mod:`logout_middleware.wsgi`) translate a
request into a :class:`RequestHead`, then drive :class:`LogoutCore` through its steps and
render the :class:`Response` it returns. Nothing here reads a socket or talks to Redis:
the core says which Redis writes to make (:class:`StoreOps`) and the adapter's store
makes them, in one round trip, and reports back a :class:`StoreOutcome`.

The steps of a logout, in order::

    core.matches(path, root_path)      # is this the logout URI?
    core.admit(head)                   # -> Response (refusal) | int (body bytes to read)
    core.plan(head, body)              # -> Response (bad body) | LogoutPlan
    store.execute(plan.ops)            # the adapter's I/O -> StoreOutcome
    core.finish(plan, outcome)         # -> (Response, LogoutEvent)

and of every other request carrying ``Authorization: Bearer``::

    key = core.revocation_key(header)  # None when the header is not a bearer token
    core.revocation_response(store.is_revoked(key))   # None: pass to the app
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

import jwt
from itsdangerous import BadSignature, Signer
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import dump_cookie, parse_accept_header, parse_options_header
from werkzeug.sansio.http import parse_cookie

from .config import LogoutConfig
from .events import LogoutEvent, StoreStatus

__all__ = [
    "LogoutCore",
    "LogoutPlan",
    "RequestHead",
    "Response",
    "StoreOps",
    "StoreOutcome",
    "bearer_token",
    "is_safe_next",
    "sha256_hex",
]

logger = logging.getLogger("logout_middleware")

#: Longest ``next`` value considered, characters; longer ones fall back to the next URI.
MAX_NEXT_LENGTH = 2048
#: Longest session id accepted from a cookie, characters.
MAX_SESSION_ID_LENGTH = 512
#: Longest bearer token hashed or revoked, bytes (RFC 6750 sets no limit; servers do).
MAX_TOKEN_LENGTH = 8192
#: Most query or form fields parsed on a logout request.
MAX_FIELDS = 256
#: Clock-skew allowance added to a JWT's remaining lifetime, seconds.
JWT_LEEWAY = 60

_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
#: Anything but printable ASCII, or a backslash (browsers read ``\\`` as ``/``).
_UNSAFE_NEXT = re.compile(r"[^\x21-\x7e]|\\")
#: A percent-encoded slash, backslash or control character in a path.
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|[01][0-9a-f]|7f)", re.IGNORECASE)
_HOSTNAME = re.compile(
    r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?)*\Z"
)
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]\Z")
_SESSION_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_SESSION_ID_LENGTH}}}\Z")
_ORIGIN = re.compile(r"(https?)://([^/?#@\s]+)\Z")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def sha256_hex(value: bytes) -> str:
    """The lower-case SHA-256 hex digest of ``value`` (64 characters).

    How session ids and tokens appear in keys, events and logs: never raw.
    """
    return hashlib.sha256(value).hexdigest()


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP response the middleware sends itself.

    ``headers`` are ``(name, value)`` text pairs, latin-1 safe; ``body`` is bytes.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the core needs to know of a request to the logout URI, as text.

    Adapters fill it from the ASGI ``scope`` or the WSGI ``environ``; header values are
    latin-1 decoded, repeated headers joined with ``", "`` (``"; "`` for ``Cookie``),
    and absent headers are ``""``, except ``origin`` and ``sec_fetch_site`` which are
    None when absent.
    """

    method: str
    #: ``http`` or ``https``, as the server saw it (ASGI ``scheme``, ``wsgi.url_scheme``).
    scheme: str
    #: The ``Host`` header, or the server's name and port when the request had none.
    host: str
    #: The mount point: ASGI ``root_path`` or WSGI ``SCRIPT_NAME``.
    root_path: str
    query_string: str
    cookie: str = ""
    authorization: str = ""
    accept: str = ""
    content_type: str = ""
    content_length: str = ""
    user_agent: str = ""
    origin: str | None = None
    sec_fetch_site: str | None = None
    #: The client's address, or None when the server does not say.
    client: str | None = None


@dataclass(frozen=True, slots=True)
class StoreOps:
    """The server-side writes of one logout, made by a store in one transaction.

    ``delete``: session keys to delete. ``revoke``: ``(denylist key, ttl seconds)`` or
    None. ``stream``: the audit stream's name, or None to write no entry; ``entry`` its
    fields; ``maxlen`` the approximate cap on its length.
    """

    delete: tuple[str, ...]
    revoke: tuple[str, int] | None
    stream: str | None
    maxlen: int
    entry: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class StoreOutcome:
    """What a store reports after :class:`StoreOps`: status, session keys that existed
    and were deleted, and the error text on failure (the exception's class and message)."""

    status: StoreStatus
    sessions_deleted: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LogoutPlan:
    """A logout decided but not yet carried out.

    ``ops`` is None when no Redis is configured. ``redirect`` is the safe target, or None
    when the client asked for JSON. ``event`` is complete but for the store's outcome.
    """

    scheme: str
    ops: StoreOps | None
    redirect: str | None
    event: LogoutEvent


def _authority(host: str, scheme: str) -> str:
    """``host[:port]`` lower-cased, without the scheme's default port."""
    host = host.strip().lower()
    default = _DEFAULT_PORTS.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return host


def is_safe_next(
    url: str,
    *,
    host: str,
    scheme: str,
    allowed_hosts: tuple[str, ...] | frozenset[str] = (),
) -> bool:
    """Whether ``url`` is a safe place to redirect to after logout.

    Safe means one of:

    * a path rooted at ``/`` (not ``//``), made only of printable ASCII, with no
      backslash and no percent-encoded slash, backslash or control character in its
      path part; its query and fragment are kept;
    * an absolute ``http://`` or ``https://`` URL with no userinfo, whose authority is
      the request's own (``host``) or is listed in ``allowed_hosts``, where ``name``
      allows any port and ``name:port`` that port only. Matching is exact: never a
      prefix or a suffix. An ``http`` URL is refused when the request came over HTTPS.

    Everything else is unsafe: scheme-relative ``//host``, backslash and mixed-slash
    forms, ``https:host``, other schemes, whitespace or control characters anywhere,
    non-ASCII (look-alike dots and slashes), malformed IPv6 hosts and bad ports, and
    anything longer than :data:`MAX_NEXT_LENGTH`. This is stricter than Django's
    ``url_has_allowed_host_and_scheme``, which it follows in spirit.

    :param url: the ``next`` value, already percent-decoded once by query/form parsing.
    :param host: the request's ``Host`` header.
    :param scheme: the request's scheme, ``http`` or ``https``.
    :param allowed_hosts: lower-case ``name`` or ``name:port`` entries.
    """
    if not url or len(url) > MAX_NEXT_LENGTH or _UNSAFE_NEXT.search(url):
        return False
    if url[0] == "/":
        if url[1:2] == "/":
            return False
        path = url.split("?", 1)[0].split("#", 1)[0]
        return not _ENCODED_SEPARATOR.search(path)
    head = url[:8].lower()
    if head.startswith("https://"):
        target_scheme = "https"
    elif head.startswith("http://"):
        target_scheme = "http"
    else:
        return False
    if scheme == "https" and target_scheme == "http":
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    hostname = parts.hostname
    if not hostname or "@" in parts.netloc or "%" in parts.netloc:
        return False
    if ":" in hostname:  # urlsplit strips the brackets of an IPv6 literal
        if not _IPV6.match(f"[{hostname}]"):
            return False
        hostname = f"[{hostname}]"
    elif not _HOSTNAME.match(hostname):
        return False
    authority = hostname if port is None else f"{hostname}:{port}"
    authority = _authority(authority, target_scheme)
    if authority == _authority(host, scheme):
        return True
    return authority in allowed_hosts or hostname in allowed_hosts


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


class LogoutCore:
    """Every decision of the middleware, precomputed where it can be.

    :param config: the checked configuration.
    :param has_store: whether a Redis store is attached; without one, a logout plans no
        server-side writes and bearer tokens are not checked.
    :param clock: seconds since the epoch; ``time.time`` unless a test needs another.
    """

    def __init__(
        self,
        config: LogoutConfig,
        *,
        has_store: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.has_store = has_store
        #: Whether ordinary requests must be checked against the denylist.
        self.checks_tokens = has_store and config.revoke_tokens
        self._clock = clock
        self._path = config.path
        self._methods = frozenset(config.methods)
        self._allowed_hosts = frozenset(config.allowed_hosts)
        self._trusted_origins = frozenset(config.trusted_origins)
        self._denylist_prefix = config.denylist_prefix
        self._signer = (
            Signer(config.session_secret, salt=config.session_salt, key_derivation="hmac")
            if config.session_secret
            else None
        )
        allow = list(config.methods)
        if config.on_get == "confirm":
            allow += ["GET", "HEAD"]
        self._allow = ", ".join(allow)
        # Cookie deletions, rendered once for plain and for secure requests.
        self._cookie_headers = {
            secure: tuple(
                ("Set-Cookie", self._expire_cookie(name, secure)) for name in config.expired_cookies
            )
            for secure in (False, True)
        }
        clear = ", ".join(f'"{kind}"' for kind in config.clear_site_data)
        self._clear_site_data = (("Clear-Site-Data", clear),) if clear else ()
        self._not_allowed = self._text(
            405,
            f"Method Not Allowed: log out with {' or '.join(config.methods)}.\n",
            ("Allow", self._allow),
        )
        self._forbidden = self._text(403, "Forbidden: cross-site logout refused.\n")
        self._too_large = self._text(413, f"Payload Too Large: at most {config.max_body} bytes.\n")
        #: Answer to a malformed logout request (bad ``Content-Length``, form, or body).
        self.bad_request = self._text(400, "Bad Request: malformed logout request.\n")
        #: Answer when the middleware itself failed; no detail reaches the client.
        self.internal_error = self._text(500, "Internal Server Error: logout failed.\n")
        #: Answer to a request whose bearer token is revoked (RFC 6750 section 3.1).
        revoked_body = (
            b'{"error": "invalid_token", "error_description": "The access token has been revoked"}'
        )
        self.revoked = Response(
            401,
            (
                (
                    "WWW-Authenticate",
                    'Bearer error="invalid_token", '
                    'error_description="The access token has been revoked"',
                ),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(revoked_body))),
                ("Cache-Control", "no-store"),
            ),
            revoked_body,
        )
        #: Answer when the denylist cannot be read and ``on_check_error`` is ``deny``.
        self.check_unavailable = self._text(
            503, "Service Unavailable: token revocation cannot be checked.\n", ("Retry-After", "5")
        )

    # -- every request -------------------------------------------------------------

    def matches(self, path: str, root_path: str) -> bool:
        """Whether ``path`` is the logout URI, with or without the mount point.

        ASGI servers disagree on whether ``scope["path"]`` includes ``root_path``; both
        forms match. WSGI adapters pass ``PATH_INFO``, which never includes it.
        """
        own = self._path
        if path == own:
            return True
        return (
            bool(root_path)
            and len(path) == len(root_path) + len(own)
            and path.startswith(root_path)
            and path.endswith(own)
        )

    def revocation_key(self, authorization: bytes) -> str | None:
        """The denylist key for an ``Authorization`` header value, or None when it does
        not carry a bearer token (RFC 6750 section 2.1; the scheme is case-insensitive).

        The key is ``LOGOUT_DENYLIST_PREFIX`` + SHA-256 hex of the token.
        """
        token = bearer_token(authorization)
        if token is None:
            return None
        return self._denylist_prefix + hashlib.sha256(token).hexdigest()

    def revocation_response(self, revoked: bool | None) -> Response | None:
        """The answer for a checked bearer token: ``401`` when revoked; when the check
        failed (``None``), ``503`` under ``LOGOUT_ON_CHECK_ERROR=deny``; else None (pass)."""
        if revoked:
            return self.revoked
        if revoked is None and self.config.on_check_error == "deny":
            return self.check_unavailable
        return None

    # -- the logout URI ------------------------------------------------------------

    def admit(self, head: RequestHead) -> Response | int:
        """Refuse the request, or say how many body bytes to read (0: none).

        Refusals change nothing: ``405`` (with ``Allow``) for other methods, or the
        confirmation page for ``GET``/``HEAD`` under ``LOGOUT_GET=confirm``; ``403`` for
        a cross-site request; ``413`` when ``Content-Length`` exceeds the cap; ``400``
        for a malformed ``Content-Length``. Adapters read at most the returned number
        plus one byte, so that :meth:`plan` can tell an oversized chunked body.
        """
        if head.method not in self._methods:
            if head.method in ("GET", "HEAD") and self.config.on_get == "confirm":
                return self._confirm_page(head)
            return self._not_allowed
        if not self._same_origin(head):
            return self._forbidden
        length = head.content_length.strip()
        if length:
            if not length.isdigit() or not length.isascii():
                return self.bad_request
            if int(length) > self.config.max_body:
                return self._too_large
        mimetype = head.content_type.split(";", 1)[0].strip().lower()
        return self.config.max_body if mimetype in _FORM_TYPES else 0

    def plan(self, head: RequestHead, body: bytes) -> LogoutPlan | Response:
        """Decide the logout: where to go, what to write, what event to emit.

        :param body: the request body as read (empty when :meth:`admit` returned 0).
        :returns: a :class:`LogoutPlan`, or a ``413``/``400`` :class:`Response` for an
            oversized or malformed form body.
        """
        if len(body) > self.config.max_body:
            return self._too_large
        try:
            candidates = self._next_values(head, body)
        except RequestEntityTooLarge:
            return self._too_large
        except ValueError:
            return self.bad_request
        redirect = self._redirect(candidates, head) if not self._wants_json(head.accept) else None

        # Header bytes arrive latin-1 decoded; cookie text is UTF-8, and bytes that are not
        # (planted by a sibling subdomain, say) must not stop a logout.
        cookies = parse_cookie(head.cookie.encode("latin-1", "replace").decode("utf-8", "replace"))
        sid = self._session_id(cookies.get(self.config.session_cookie))
        token = bearer_token(head.authorization.encode("latin-1", "replace"))
        now = self._clock()
        ttl = self._token_ttl(token, now) if token is not None else None
        event = LogoutEvent(
            id=uuid.uuid4().hex,
            at=datetime.fromtimestamp(now, timezone.utc),
            method=head.method,
            path=head.root_path + self._path,
            cookies=self.config.expired_cookies,
            session_id_hash=sha256_hex(sid.encode()) if sid else None,
            sessions_deleted=0,
            token_hash=sha256_hex(token) if token is not None else None,
            token_ttl=ttl,
            client=head.client,
            user_agent=head.user_agent[:256] or None,
            redirect=redirect,
            store="disabled",
        )
        ops = None
        if self.has_store:
            revoke = None
            if token is not None and ttl is not None and self.config.revoke_tokens:
                revoke = (self._denylist_prefix + (event.token_hash or ""), ttl)
            ops = StoreOps(
                delete=tuple(t.replace("{sid}", sid) for t in self.config.session_keys)
                if sid
                else (),
                revoke=revoke,
                stream=self.config.events_stream or None,
                maxlen=self.config.events_maxlen,
                entry=tuple(event.to_fields().items()),
            )
        return LogoutPlan(scheme=head.scheme, ops=ops, redirect=redirect, event=event)

    def finish(self, plan: LogoutPlan, outcome: StoreOutcome) -> tuple[Response, LogoutEvent]:
        """The response to send and the event to emit, given what the store did.

        Cookies are expired in every case. When the store failed and
        ``LOGOUT_ON_STORE_ERROR`` is ``fail``, the answer is ``503`` with
        ``Retry-After``; else ``303`` to the plan's target, or ``200``
        ``{"success": true}`` for JSON clients. All carry ``Cache-Control: no-store``.
        """
        secure = plan.scheme == "https"
        headers: list[tuple[str, str]] = [("Cache-Control", "no-store")]
        headers += self._cookie_headers[secure]
        if secure:
            headers += self._clear_site_data
        failed = outcome.status == "failed" and self.config.on_store_error == "fail"
        redirect = None if failed else plan.redirect
        event = replace(
            plan.event,
            store=outcome.status,
            sessions_deleted=outcome.sessions_deleted,
            store_error=outcome.error,
            redirect=redirect,
        )
        if failed:
            body: dict[str, object] = {
                "success": False,
                "error": "session_store_unavailable",
                "message": "Cookies were cleared, but the server-side session could not be "
                "ended. Try again.",
            }
            headers += [("Retry-After", "5")]
            return self._json(503, body, headers), event
        if redirect is None:
            return self._json(200, {"success": True}, headers), event
        headers += [("Location", redirect), ("Content-Length", "0")]
        return Response(303, tuple(headers)), event

    # -- helpers -------------------------------------------------------------------

    def _expire_cookie(self, name: str, secure: bool) -> str:
        """A ``Set-Cookie`` value that deletes cookie ``name`` (RFC 6265 section 3.1):
        empty value, ``Max-Age=0``, an ``Expires`` in 1970, and the attributes it was set
        with. ``__Host-`` names get ``Secure; Path=/`` and no ``Domain``; ``__Secure-``
        names get ``Secure`` (RFC 6265bis section 4.1.3), or browsers ignore it."""
        config = self.config
        path, domain = config.cookie_path, config.cookie_domain
        want_secure = secure if config.cookie_secure is None else config.cookie_secure
        if name.startswith("__Host-"):
            path, domain, want_secure = "/", None, True
        elif name.startswith("__Secure-") or config.cookie_samesite == "None":
            want_secure = True
        return dump_cookie(
            name,
            "",
            max_age=0,
            expires=0,
            path=path,
            domain=domain,
            secure=want_secure,
            httponly=True,
            samesite=config.cookie_samesite,
        )

    def _same_origin(self, head: RequestHead) -> bool:
        """Fetch Metadata and ``Origin`` checks, as Go's ``CrossOriginProtection``.

        Refused: ``Sec-Fetch-Site: cross-site``, and an ``Origin`` whose host is not the
        request's ``Host`` (``null`` included); both unless the origin is trusted.
        Requests with neither header (non-browser clients) pass.
        """
        origin = head.origin.strip().lower() if head.origin is not None else None
        if origin is not None and origin in self._trusted_origins:
            return True
        if head.sec_fetch_site is not None and any(
            value.strip().lower() == "cross-site" for value in head.sec_fetch_site.split(",")
        ):
            return False
        if origin is None:
            return True
        match = _ORIGIN.match(origin)
        if match is None:
            return False
        scheme = match.group(1)
        return _authority(match.group(2), scheme) == _authority(head.host, scheme)

    def _next_values(self, head: RequestHead, body: bytes) -> list[str]:
        """Every ``next`` value of the query string and the form body, in that order.

        :raises ValueError: on a malformed body or too many fields.
        :raises RequestEntityTooLarge: when the form exceeds the cap.
        """
        name = self.config.next_param
        values = [
            value
            for key, value in parse_qsl(
                head.query_string, keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
            if key == name
        ]
        if body:
            mimetype, options = parse_options_header(head.content_type)
            mimetype = mimetype.lower()
            parser = FormDataParser(
                max_form_memory_size=self.config.max_body,
                max_content_length=self.config.max_body,
                max_form_parts=MAX_FIELDS,
                silent=False,
            )
            _, form, files = parser.parse(io.BytesIO(body), mimetype, len(body), options)
            for upload in files.values():
                upload.close()
            values += form.getlist(name)
        return values

    def _redirect(self, candidates: list[str], head: RequestHead) -> str:
        """The ``next`` target when it is given once (or always the same) and safe, else
        ``LOGOUT_NEXT_URI``. Differing repeated values are ambiguous, so none is used."""
        if not candidates or any(value != candidates[0] for value in candidates):
            return self.config.next_uri
        target = candidates[0]
        if is_safe_next(
            target, host=head.host, scheme=head.scheme, allowed_hosts=self._allowed_hosts
        ):
            return target
        logger.info("logout: unsafe %s parameter ignored", self.config.next_param)
        return self.config.next_uri

    @staticmethod
    def _wants_json(accept: str) -> bool:
        """Whether the client prefers ``application/json`` to ``text/html``."""
        if "json" not in accept.lower():
            return False
        best = parse_accept_header(accept, MIMEAccept).best_match(["text/html", "application/json"])
        return best == "application/json"

    def _session_id(self, value: str | None) -> str | None:
        """The session id in the cookie value; with a secret, only if its signature holds."""
        if not value:
            return None
        if self._signer is not None:
            try:
                value = self._signer.unsign(value).decode("ascii")
            except (BadSignature, UnicodeError):
                logger.info("logout: session cookie with a bad signature; no session deleted")
                return None
        return value if _SESSION_ID.match(value) else None

    def _token_ttl(self, token: bytes, now: float) -> int:
        """How long to keep ``token`` revoked, seconds: until its JWT ``exp`` (plus
        :data:`JWT_LEEWAY`), capped at ``LOGOUT_TOKEN_MAX_TTL``; ``LOGOUT_TOKEN_TTL`` for
        opaque tokens and JWTs without a usable ``exp``. The signature is not checked:
        revoking a forged token is harmless."""
        ttl = self.config.token_ttl
        if token.count(b".") == 2:
            try:
                claims = jwt.decode(token, options={"verify_signature": False})
                exp = claims.get("exp")
                if isinstance(exp, (int, float)) and not isinstance(exp, bool):
                    ttl = int(exp - now) + JWT_LEEWAY
            except (jwt.PyJWTError, ValueError, TypeError, OverflowError):
                pass
        return max(1, min(ttl, self.config.token_max_ttl))

    def _confirm_page(self, head: RequestHead) -> Response:
        """A minimal page whose form POSTs back here, carrying a safe ``next``."""
        action = html.escape(head.root_path + self._path)
        hidden = ""
        try:
            values = [
                v
                for k, v in parse_qsl(head.query_string, max_num_fields=MAX_FIELDS)
                if k == self.config.next_param
            ]
        except ValueError:
            values = []
        target = self._redirect(values, head) if values else None
        if target is not None and target != self.config.next_uri:
            hidden = (
                f'<input type="hidden" name="{html.escape(self.config.next_param)}" '
                f'value="{html.escape(target)}">'
            )
        page = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="robots" content="noindex"><title>Log out</title></head><body>'
            f'<form method="post" action="{action}">{hidden}'
            '<p>Do you want to log out?</p><button type="submit">Log out</button>'
            "</form></body></html>\n"
        ).encode()
        headers = (
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(page))),
            ("Cache-Control", "no-store"),
            (
                "Content-Security-Policy",
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
            ),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
        )
        return Response(200, headers, b"" if head.method == "HEAD" else page)

    @staticmethod
    def _text(status: int, text: str, *extra: tuple[str, str]) -> Response:
        body = text.encode()
        headers = (
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *extra,
        )
        return Response(status, headers, body)

    @staticmethod
    def _json(status: int, payload: dict[str, object], headers: list[tuple[str, str]]) -> Response:
        body = json.dumps(payload).encode()
        headers = [
            *headers,
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ]
        return Response(status, tuple(headers), body)
