"""Cookies: finding the session cookie in a ``Cookie`` header, taking it out, and the
``Set-Cookie`` values that delete cookies with the attributes they were set with.

Which values an app may read for a cookie is decided by its framework's parser, and the
parsers disagree (repeated names, spaces around ``=``, quoting, commas): every value any
of them would hand the app is found (:func:`cookie_values`, with the parsers' own code
where it is public: Werkzeug's ``parse_cookie``, the standard library's
``SimpleCookie`` and ``_unquote``). Callers cache the result by the whole header.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie, _unquote
from typing import Any
from urllib.parse import unquote

from werkzeug.http import dump_cookie
from werkzeug.sansio.http import parse_cookie

from ..config import LogoutConfig

__all__ = [
    "Expiries",
    "cookie_value",
    "cookie_values",
    "copy_values",
    "expire_cookie",
    "restore_cookie",
    "set_cookie_value",
    "sets_cookie",
    "without_cookie",
]


def cookie_values(header: str, name: str) -> tuple[str, ...]:
    """Every value that an app's framework may read for the cookie called ``name`` in a
    ``Cookie`` header, in order of first appearance, each once, empty ones left out.

    The frameworks disagree (``shared/notes/cookie-parsers.md``), so this is the union
    of what each of their parsers hands the app:

    * Starlette, Django and Litestar split the header on ``;``, the name from the value
      at the first ``=``, strip both with :meth:`str.strip` (every Unicode space, so
      ``name =v``, ``name\t=v`` and ``name\xa0=v`` are the cookie ``name``) and undo the
      standard library's quoting (``"..."`` with backslash and octal escapes); Starlette
      and Django keep the last copy. Litestar also percent-decodes the value.
    * Werkzeug (Flask, Quart) keeps every copy and reads the first; its header is the
      WSGI text decoded again as UTF-8.
    * The standard library's :class:`http.cookies.SimpleCookie` also takes spaces and
      commas between pairs (``x=1, name=v``) and keeps the last copy.

    ``header`` is the request's ``Cookie`` header fields joined with ``; `` (RFC 9113
    section 8.2.3), as latin-1 text. A request may carry a name twice (cookies of other
    paths or domains, or a forged copy): which copy an app reads is its framework's
    choice, so every copy must be checked.
    """
    if name not in header:  # no parser changes a cookie's name
        return ()
    found: dict[str, None] = {}
    # Starlette, Django and Litestar call the standard library's ``_unquote`` themselves.
    for chunk in header.split(";"):
        key, sep, value = chunk.partition("=")
        if sep and key.strip() == name:
            found.update(dict.fromkeys(copy_values(value)))
    for text in _werkzeug_texts(header):
        for value in parse_cookie(text).getlist(name):
            found[value] = None
    jar: SimpleCookie = SimpleCookie()
    with contextlib.suppress(CookieError):
        jar.load(header)
    morsel = jar.get(name)
    if morsel is not None:
        found[morsel.value] = None
    found.pop("", None)
    return tuple(found)


def _werkzeug_texts(header: str) -> tuple[str, ...]:
    """The header as Werkzeug parses it: as given, and (when not ASCII) decoded again as
    UTF-8 the way Werkzeug decodes a WSGI environ's text."""
    if header.isascii():
        return (header,)
    return (header, header.encode("latin-1", "replace").decode("utf-8", "replace"))


def cookie_value(header: str, name: str) -> str | None:
    """The first of :func:`cookie_values`, or None when there is none."""
    values = cookie_values(header, name)
    return values[0] if values else None


def _unquoted(value: str) -> str:
    """``value`` without the double quotes RFC 6265 allows around a cookie value."""
    if len(value) > 1 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def copy_values(chunk_value: str) -> tuple[str, ...]:
    """The values one ``name=value`` chunk gives the cookie in the splitting parsers
    (Starlette, Django, Litestar): ``chunk_value`` is the text after the first ``=``."""
    value = _unquote(chunk_value.strip())
    if "%" in value:
        return (value, unquote(value))
    return (value,)


def without_cookie(
    header: str, name: str, keep: Callable[[tuple[str, ...]], bool] | None = None
) -> str:
    """The ``Cookie`` header with every copy of the cookie called ``name`` removed, the
    other cookies kept in order: every ``;``-separated chunk whose name is ``name`` once
    stripped (as the splitting parsers see it; :func:`cookie_values`).

    :param keep: when given, the first copy whose values (:func:`copy_values`) it
        accepts stays, in its place; every other copy goes.
    """
    kept: list[str] = []
    keeping = keep is not None
    for chunk in header.split(";"):
        if not chunk.strip():
            continue
        key, sep, value = chunk.partition("=")
        if key.strip() != name:
            kept.append(chunk)
        elif keeping and sep and keep is not None and keep(copy_values(value)):
            kept.append(chunk)
            keeping = False
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


class Expiries:
    """The ``Set-Cookie`` deletions the middleware sends, rendered once for plain and
    for secure requests (``secure``: the request came over HTTPS).

    :param config: the cookies (``LOGOUT_SESSION_COOKIE``, ``LOGOUT_COOKIES``,
        ``LOGOUT_TOKEN_COOKIE``) and their attributes (:func:`expire_cookie`).
    """

    def __init__(self, config: LogoutConfig) -> None:
        both = (False, True)
        #: ``Set-Cookie`` headers deleting every cookie a logout expires, by ``secure``.
        self.logout: dict[bool, tuple[tuple[str, str], ...]] = {
            secure: tuple(
                ("Set-Cookie", expire_cookie(name, secure, config))
                for name in config.expired_cookies
            )
            for secure in both
        }
        #: The session cookie's deletion, by ``secure``.
        self.session = {
            secure: expire_cookie(config.session_cookie, secure, config) for secure in both
        }
        token_cookie = config.token_cookie
        #: The token cookie's deletion, by ``secure`` ("" without a token cookie).
        self.token_cookie = {
            secure: expire_cookie(token_cookie, secure, config) if token_cookie else ""
            for secure in both
        }
