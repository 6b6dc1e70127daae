"""Cookies: finding the session cookie in a ``Cookie`` header, taking it out, and the
``Set-Cookie`` values that delete cookies with the attributes they were set with.

Parsing of whole headers is werkzeug's (``werkzeug.sansio.http.parse_cookie``); the small
scanners here exist for the per-request hot path, where only one cookie name matters (and
their results are cached by the whole header).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.http import dump_cookie

from ..config import LogoutConfig

__all__ = [
    "cookie_value",
    "cookie_values",
    "expire_cookie",
    "restore_cookie",
    "set_cookie_value",
    "sets_cookie",
    "without_cookie",
]


def cookie_values(header: str, name: str) -> list[str]:
    """The value of every cookie called ``name`` in a ``Cookie`` header (RFC 6265
    section 5.4: ``name=value`` pairs joined by ``; ``), in order, surrounding double
    quotes removed, empty ones left out. A request may carry a name twice (cookies of
    other paths or domains, or a forged copy): which one an app reads is its framework's
    choice."""
    found: list[str] = []
    start = 0
    length = len(name)
    while True:
        at = header.find(name, start)
        if at < 0:
            return found
        end = at + length
        before = header[at - 1] if at else ";"
        if header[end : end + 1] == "=" and (before in "; "):
            stop = header.find(";", end)
            value = _unquoted(header[end + 1 : stop if stop >= 0 else len(header)].strip())
            if value:
                found.append(value)
        start = end


def cookie_value(header: str, name: str) -> str | None:
    """The value of the first cookie called ``name`` in a ``Cookie`` header, or None
    when absent or empty (:func:`cookie_values`). Browsers send the most specific
    cookie first."""
    values = cookie_values(header, name)
    return values[0] if values else None


def _unquoted(value: str) -> str:
    """``value`` without the double quotes RFC 6265 allows around a cookie value."""
    if len(value) > 1 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def without_cookie(header: str, name: str) -> str:
    """The ``Cookie`` header with every cookie called ``name`` removed, the others kept
    in order."""
    kept = [
        part for part in header.split(";") if part.strip() and part.split("=", 1)[0].strip() != name
    ]
    return ";".join(kept).strip()


def set_cookie_value(set_cookie: str, name: str) -> str | None:
    """The value a ``Set-Cookie`` header gives cookie ``name``, or None when it sets
    another cookie (RFC 6265 section 5.2: the name-value pair before the first ``;``)."""
    pair = set_cookie.split(";", 1)[0]
    key, sep, value = pair.partition("=")
    if not sep or key.strip() != name:
        return None
    return _unquoted(value.strip())


def sets_cookie(set_cookies: Iterable[str], name: str) -> bool:
    """Whether any of a response's ``Set-Cookie`` values gives cookie ``name`` a value
    (a deletion, with an empty one, does not count)."""
    return any(set_cookie_value(value, name) for value in set_cookies)


def expire_cookie(name: str, secure: bool, config: LogoutConfig) -> str:
    """A ``Set-Cookie`` value that deletes cookie ``name`` (RFC 6265 section 3.1): empty
    value, ``Max-Age=0``, an ``Expires`` in 1970, and the attributes it was set with
    (``LOGOUT_COOKIE_PATH``, ``_DOMAIN``, ``_SECURE``, ``_SAMESITE``). ``__Host-`` names
    get ``Secure; Path=/`` and no ``Domain``; ``__Secure-`` names and ``SameSite=None``
    get ``Secure`` (RFC 6265bis section 4.1.3), or browsers ignore the deletion.

    :param secure: whether the request came over HTTPS (used when
        ``LOGOUT_COOKIE_SECURE`` is ``auto``).
    """
    return dump_cookie(name, "", max_age=0, expires=0, **_attributes(name, secure, config))


def restore_cookie(name: str, value: str, secure: bool, config: LogoutConfig) -> str:
    """A ``Set-Cookie`` value that sets cookie ``name`` back to ``value`` (an
    impersonator's own session), with the attributes of :func:`expire_cookie` and no
    expiry: a browser-session cookie, which the app renews on its next response."""
    return dump_cookie(name, value, **_attributes(name, secure, config))


def _attributes(name: str, secure: bool, config: LogoutConfig) -> dict[str, Any]:
    """The attributes the app set cookie ``name`` with (``LOGOUT_COOKIE_*``), as
    ``dump_cookie`` keywords; prefixed names get what browsers require of them."""
    path, domain = config.cookie_path, config.cookie_domain
    want_secure = secure if config.cookie_secure is None else config.cookie_secure
    if name.startswith("__Host-"):
        path, domain, want_secure = "/", None, True
    elif name.startswith("__Secure-") or config.cookie_samesite == "None":
        want_secure = True
    return {
        "path": path,
        "domain": domain,
        "secure": want_secure,
        "httponly": True,
        "samesite": config.cookie_samesite,
    }
