"""Who may log out: the cross-site check and the choice between JSON and a redirect.

The cross-site check follows Go's ``net/http.CrossOriginProtection`` (Go 1.25), itself
after Filippo Valsorda's "CSRF" analysis: ``Sec-Fetch-Site`` (W3C Fetch Metadata) is
trusted first; ``Origin`` is compared with ``Host`` only when the browser sent no
``Sec-Fetch-Site``; requests with neither header (non-browser clients) pass.
"""

from __future__ import annotations

import re

from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from .redirects import authority

__all__ = ["same_origin", "wants_json"]

_ORIGIN = re.compile(r"(https?)://([^/?#@\s]+)\Z")
#: ``Sec-Fetch-Site`` values that a browser sends only for its own origin or the user.
_OWN = frozenset({"same-origin", "none"})


def same_origin(
    *, origin: str | None, sec_fetch_site: str | None, host: str, trusted: frozenset[str]
) -> bool:
    """Whether a state-changing request may proceed.

    * An ``Origin`` in ``trusted`` (``LOGOUT_TRUSTED_ORIGINS``) passes.
    * ``Sec-Fetch-Site: cross-site`` (in any repeat) is refused.
    * ``Sec-Fetch-Site`` of only ``same-origin`` or ``none`` (typed, or a bookmark) passes
      whatever ``Origin`` says: a page sent with ``Referrer-Policy: no-referrer``, whose
      same-origin form posts ``Origin: null``, can still log out.
    * Otherwise (``same-site``, or no ``Sec-Fetch-Site``): an ``Origin`` whose host is not
      the request's ``Host`` (``null`` included) is refused; no ``Origin`` passes.

    :param origin: the ``Origin`` header, or None when absent.
    :param sec_fetch_site: the ``Sec-Fetch-Site`` header (repeats joined by ``,``), or None.
    :param host: the request's ``Host``.
    :param trusted: lower-case origins such as ``https://app.example.com``.
    """
    lowered = origin.strip().lower() if origin is not None else None
    if lowered is not None and lowered in trusted:
        return True
    if sec_fetch_site is not None:
        values = {value.strip().lower() for value in sec_fetch_site.split(",")}
        if "cross-site" in values:
            return False
        if values <= _OWN:
            return True
    if lowered is None:
        return True
    match = _ORIGIN.match(lowered)
    if match is None:
        return False
    scheme = match.group(1)
    return authority(match.group(2), scheme) == authority(host, scheme)


def wants_json(accept: str) -> bool:
    """Whether the client prefers ``application/json`` to ``text/html`` (a tie redirects)."""
    if "json" not in accept.lower():
        return False
    best = parse_accept_header(accept, MIMEAccept).best_match(["text/html", "application/json"])
    return best == "application/json"
