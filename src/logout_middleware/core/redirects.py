"""Where a logout may send the browser next: the ``next`` parameter and its safety rule.

The rule follows Django's ``url_has_allowed_host_and_scheme`` in spirit and is stricter
(see :func:`is_safe_next`); the parameter and the fallback follow Stormpath's ``next``
and ``nextUri``.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

__all__ = ["MAX_NEXT_LENGTH", "authority", "choose_next", "is_safe_next"]

logger = logging.getLogger("logout_middleware")

#: Longest ``next`` value considered, characters; longer ones fall back to the next URI.
MAX_NEXT_LENGTH = 2048

#: Anything but printable ASCII, or a backslash (browsers read ``\\`` as ``/``).
_UNSAFE_NEXT = re.compile(r"[^\x21-\x7e]|\\")
#: A percent-encoded slash, backslash or control character in a path.
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|[01][0-9a-f]|7f)", re.IGNORECASE)
_HOSTNAME = re.compile(
    r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?)*\Z"
)
_IPV6 = re.compile(r"\[[0-9a-f:.]+\]\Z")
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}


def authority(host: str, scheme: str) -> str:
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
    target = hostname if port is None else f"{hostname}:{port}"
    target = authority(target, target_scheme)
    if target == authority(host, scheme):
        return True
    return target in allowed_hosts or hostname in allowed_hosts


def choose_next(
    candidates: list[str],
    *,
    host: str,
    scheme: str,
    allowed_hosts: frozenset[str],
    fallback: str,
) -> str:
    """The ``next`` target when it is given once (or always the same) and safe, else
    ``fallback`` (``LOGOUT_NEXT_URI``). Differing repeated values are ambiguous, so none
    is used (HTTP parameter pollution)."""
    if not candidates or any(value != candidates[0] for value in candidates):
        return fallback
    target = candidates[0]
    if is_safe_next(target, host=host, scheme=scheme, allowed_hosts=allowed_hosts):
        return target
    logger.info("logout: unsafe next parameter ignored")
    return fallback
