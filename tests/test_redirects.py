"""Redirect safety of ``next``, proven on a corpus of open-redirect payloads and by property.

Three layers:

* ``CORPUS``: a table of named payloads (every known open-redirect family) and good
  targets, checked on :func:`is_safe_next` directly and end to end, as ``?next=`` and as
  a form field, through both adapters (httpx for ASGI, webtest for WSGI).
* An oracle, :func:`browser_origin`, that resolves a ``Location`` the way a WHATWG URL
  parser does (it strips leading/trailing C0 controls and spaces, drops tabs and
  newlines anywhere, reads ``\\`` as ``/`` in http(s) URLs, skips any run of slashes
  before an authority, resolves ``http:path`` against a same-scheme base, takes the host
  after the last ``@``, and maps IDNA look-alike dots). It is checked against the
  payloads it must see through.
* Hypothesis properties: for any string, the redirect chosen is ``LOGOUT_NEXT_URI`` or a
  URL the oracle resolves to the request's own host (same port, or the scheme's default
  port when upgraded to https) or an allowed host. Checked on :func:`is_safe_next` and
  through both adapters with the value percent-encoded once, as query parsing decodes it,
  and with raw, undecoded query bytes.
"""

from __future__ import annotations

import io
import ipaddress
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logout_middleware import LogoutConfig
from logout_middleware.core import MAX_NEXT_LENGTH, is_safe_next

from .harness import (
    KINDS,
    Harness,
    Kind,
    Reply,
    Seen,
    adapter,
    harness,
    multipart,
    raw_asgi,
    raw_wsgi,
)

HOST = "testserver"
#: ``LOGOUT_ALLOWED_HOSTS`` of every middleware here: one name (any port), one name:port.
ALLOWED = ("good.com", "api.good.com:8443")
#: ``LOGOUT_NEXT_URI``, distinct from every good payload so a fallback is visible.
NEXT_URI = "/signed-out"
FORM = "application/x-www-form-urlencoded"

settings.register_profile("redirects-direct", max_examples=500, deadline=None)
settings.register_profile("redirects-adapters", max_examples=200, deadline=None)
DIRECT = settings.get_profile("redirects-direct")
ADAPTERS = settings.get_profile("redirects-adapters")


# -- the oracle: where a browser goes --------------------------------------------------

DEFAULT_PORTS = {"http": 80, "https": 443}
_C0_OR_SPACE = "".join(chr(c) for c in range(0x21))
_TAB_OR_NEWLINE = re.compile("[\t\n\r]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
#: WHATWG "forbidden domain code points" (C0 controls and DEL are checked apart).
_FORBIDDEN_DOMAIN = frozenset(" #%/:<>?@[\\]^|")


@dataclass(frozen=True)
class Origin:
    """An http(s) origin: scheme, lower-case host (``[v6]`` bracketed), numeric port."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of_request(cls, scheme: str, host_header: str) -> Origin | None:
        """The origin a browser used to reach a request with this ``Host``; None when
        the header is not a host a browser could have sent."""
        found = _host_and_port(host_header.lower(), scheme)
        return None if found is None else cls(scheme, *found)

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}/logout"


def _host_and_port(authority: str, scheme: str) -> tuple[str, int] | None:
    """WHATWG host and port states on ``authority`` (userinfo already removed)."""
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None
        try:
            host = f"[{ipaddress.IPv6Address(authority[1:close]).compressed}]"
        except ValueError:
            return None
        rest = authority[close + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        name, _, port_text = authority.partition(":")
        try:
            host = unquote(name, errors="strict")
            if not host.isascii():  # UTS 46 mapping: look-alike dots, full-width letters
                host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
        host = host.lower()
        if not host or any(c in _FORBIDDEN_DOMAIN or c < " " or c == "\x7f" for c in host):
            return None
    if not port_text:
        return host, DEFAULT_PORTS[scheme]
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        return None
    return host, int(port_text)


def browser_origin(location: str, base: Origin) -> Origin | None:
    """The origin a WHATWG-conformant browser navigates to when a page at ``base``
    answers ``Location: location``; None when the URL fails to parse or its scheme is
    not http(s) (``javascript:``, ``data:``, ``ftp:``...), which is never ``base``."""
    url = _TAB_OR_NEWLINE.sub("", location.strip(_C0_OR_SPACE))
    match = _SCHEME.match(url)
    if match is not None:
        scheme = match.group()[:-1].lower()
        if scheme not in DEFAULT_PORTS:
            return None
        rest = url[match.end() :].replace("\\", "/")  # special scheme: \ is /
        if scheme == base.scheme and not rest.startswith("//"):
            return _relative(rest, base)  # "http:path", "http:/path" from an http page
        # special authority (ignore) slashes state: any run of slashes, then the host
        return _authority(scheme, rest.lstrip("/"))
    rest = url.replace("\\", "/")  # the base is http(s), so \ is / here too
    if rest.startswith("//"):
        return _authority(base.scheme, rest.lstrip("/"))
    return _relative(rest, base)


def _authority(scheme: str, text: str) -> Origin | None:
    """The origin of ``scheme://text``: the authority ends at ``/``, ``?`` or ``#``,
    and its host follows the last ``@``."""
    authority = re.split(r"[/?#]", text, maxsplit=1)[0].rpartition("@")[2]
    found = _host_and_port(authority, scheme)
    return None if found is None else Origin(scheme, *found)


def _relative(reference: str, base: Origin) -> Origin | None:
    """A path, query or fragment reference, resolved against ``base`` (RFC 3986 5.2)."""
    try:
        target = urlsplit(urljoin(base.url, reference))
    except ValueError:
        return None
    return _authority(target.scheme, target.netloc)


def lands_safely(
    location: str,
    *,
    scheme: str = "http",
    host: str = HOST,
    allowed: Sequence[str] = ALLOWED,
) -> bool:
    """Whether a browser sent to ``location`` stays on the request's own host (same
    port, or default ports on an upgrade to https; never a downgrade to http) or goes to
    an allowed ``name`` (any port) or ``name:port``."""
    base = Origin.of_request(scheme, host)
    assert base is not None, host
    target = browser_origin(location, base)
    if target is None or (base.scheme == "https" and target.scheme == "http"):
        return False
    if target.host == base.host and (
        target.port == base.port
        or (
            target.scheme != base.scheme
            and target.port == DEFAULT_PORTS[target.scheme]
            and base.port == DEFAULT_PORTS[base.scheme]
        )
    ):
        return True
    return target.host in allowed or f"{target.host}:{target.port}" in allowed


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        pytest.param("/account", "testserver", id="path"),
        pytest.param("/.//evil.com", "testserver", id="dot-segment-path"),
        pytest.param("http:evil.com", "testserver", id="same-scheme-relative"),
        pytest.param("//evil.com", "evil.com", id="scheme-relative"),
        pytest.param("/\\evil.com", "evil.com", id="slash-backslash"),
        pytest.param("\\\\evil.com", "evil.com", id="double-backslash"),
        pytest.param("http:\\\\evil.com", "evil.com", id="http-backslashes"),
        pytest.param("https:evil.com", "evil.com", id="https-no-slashes"),
        pytest.param("https:/\\/evil.com", "evil.com", id="https-mixed-slashes"),
        pytest.param("http:////evil.com", "evil.com", id="http-four-slashes"),
        pytest.param(" //evil.com", "evil.com", id="leading-space"),
        pytest.param("\x00\x1f//evil.com", "evil.com", id="leading-c0"),
        pytest.param("/\t/evil.com", "evil.com", id="tab-between-slashes"),
        pytest.param("ht\ntps://evil.com", "evil.com", id="newline-in-scheme"),
        pytest.param("http://good.com@evil.com", "evil.com", id="userinfo"),
        pytest.param("http://evil.com\\@good.com", "evil.com", id="backslash-ends-authority"),
        pytest.param("http://evil\u3002com", "evil.com", id="ideographic-dot"),
        pytest.param("http://evil%2ecom", "evil.com", id="percent-dot"),
        pytest.param("http://\uff45\uff56\uff49\uff4c.com", "evil.com", id="full-width-letters"),
        pytest.param("HTTP://EVIL.COM", "evil.com", id="upper-case"),
        pytest.param("http://[::1]:8000/", "[::1]", id="ipv6"),
    ],
)
def test_oracle_sees_through_the_known_tricks(location: str, expected: str) -> None:
    target = browser_origin(location, Origin("http", HOST, 80))
    assert target is not None
    assert target.host == expected


@pytest.mark.parametrize(
    "location",
    [
        "javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,x",
        "ftp://testserver/",
        "http://[::1/",
        "http://evil.c\u2100.com",
        "http://testserver:99999/",
        "http://testserver:8o/",
        "//",
    ],
)
def test_oracle_refuses_what_a_browser_would_not_follow_here(location: str) -> None:
    assert browser_origin(location, Origin("http", HOST, 80)) is None


# -- the corpus ------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    url: str
    safe: bool
    scheme: str = "http"
    host: str = HOST


def bad(id: str, url: str, scheme: str = "http", host: str = HOST) -> Case:
    return Case(id, url, False, scheme, host)


def good(id: str, url: str, scheme: str = "http", host: str = HOST) -> Case:
    return Case(id, url, True, scheme, host)


BAD = [
    # scheme-relative
    bad("scheme-relative", "//evil.com"),
    bad("scheme-relative-path", "//evil.com/account"),
    bad("scheme-relative-triple-slash", "///evil.com"),
    bad("scheme-relative-quad-slash", "////evil.com/"),
    bad("scheme-relative-own-host", "//testserver/account"),
    bad("scheme-relative-allowed-host", "//good.com/"),
    bad("scheme-relative-port", "//evil.com:443"),
    bad("scheme-relative-userinfo", "//testserver@evil.com"),
    bad("scheme-relative-ipv4", "//127.0.0.1"),
    bad("scheme-relative-ipv6", "//[::1]/"),
    # backslash and mixed slashes
    bad("slash-backslash", "/\\evil.com"),
    bad("backslash-slash", "\\/evil.com"),
    bad("double-backslash", "\\\\evil.com"),
    bad("single-backslash", "\\evil.com"),
    bad("slash-backslash-slash", "/\\/evil.com"),
    bad("slash-double-backslash", "/\\\\evil.com"),
    bad("slash-backslash-slash-backslash", "/\\/\\evil.com"),
    bad("http-double-backslash", "http:\\\\evil.com"),
    bad("https-double-backslash", "https:\\\\evil.com"),
    bad("http-slash-backslash", "http:/\\evil.com"),
    bad("http-backslash-slash", "http:\\/evil.com"),
    bad("https-slash-backslash-slash", "https:/\\/evil.com"),
    bad("http-slashes-backslash", "http://\\evil.com"),
    bad("own-host-backslash-at-evil", "http://testserver\\@evil.com"),
    bad("allowed-host-backslash-at-evil", "http://good.com\\@evil.com"),
    bad("evil-backslash-at-allowed", "http://evil.com\\@good.com"),
    bad("own-host-backslash-dot-evil", "http://testserver\\.evil.com"),
    bad("path-backslash-traversal", "/a\\..\\..\\evil"),
    bad("path-trailing-backslash", "/account\\"),
    # scheme without its slashes, odd slash counts, case
    bad("https-no-slash", "https:evil.com"),
    bad("http-no-slash", "http:evil.com"),
    bad("https-no-slash-own-host", "https:testserver"),
    bad("https-one-slash", "https:/evil.com"),
    bad("http-one-slash", "http:/evil.com"),
    bad("https-three-slashes", "https:///evil.com"),
    bad("http-four-slashes", "http:////evil.com"),
    bad("http-colon-only", "http:"),
    bad("http-empty-authority", "http://"),
    bad("http-empty-authority-path", "http:///"),
    bad("upper-case-scheme-evil", "HTTPS://EVIL.COM/"),
    bad("mixed-case-scheme-evil", "hTtP://evil.com"),
    # userinfo
    bad("userinfo-own-at-evil", "http://testserver@evil.com/"),
    bad("userinfo-allowed-at-evil", "http://good.com@evil.com"),
    bad("userinfo-user-pass-evil", "https://user:pass@evil.com"),
    bad("userinfo-on-own-host", "http://user@testserver/"),
    bad("userinfo-on-allowed-host", "https://user:pw@good.com/"),
    bad("userinfo-own-port-at-evil", "http://testserver:80@evil.com"),
    bad("userinfo-empty", "http://@evil.com"),
    bad("userinfo-double-at", "http://testserver@good.com@evil.com"),
    bad("userinfo-percent-at", "http://testserver%40evil.com/"),
    bad("userinfo-semicolon", "http://evil.com;@testserver/"),
    bad("userinfo-colon-at", "http://testserver:@evil.com"),
    bad("fragment-hides-evil-host", "http://evil.com#@testserver"),
    bad("query-hides-evil-host", "http://evil.com?@testserver"),
    # whitespace and control characters
    bad("leading-space", " //evil.com"),
    bad("leading-tab", "\t//evil.com"),
    bad("leading-newline", "\n//evil.com"),
    bad("leading-crlf", "\r\n//evil.com"),
    bad("leading-space-own-path", " /account"),
    bad("trailing-space", "/account "),
    bad("tab-between-slashes", "/\t/evil.com"),
    bad("newline-between-slashes", "/\n/evil.com"),
    bad("cr-between-slashes", "/\r/evil.com"),
    bad("tab-in-scheme", "ht\ttp://evil.com"),
    bad("newline-in-scheme", "http\n://evil.com"),
    bad("tab-in-javascript-scheme", "java\tscript:alert(1)"),
    bad("newline-in-javascript-scheme", "java\nscript:alert(1)"),
    bad("cr-in-own-host", "https://test\rserver/"),
    bad("vertical-tab", "\x0b//evil.com"),
    bad("form-feed", "\x0c//evil.com"),
    bad("escape-char", "\x1b//evil.com"),
    bad("delete-char", "/\x7f/evil.com"),
    bad("crlf-header-injection", "/\r\nSet-Cookie: session=attacker"),
    bad("lf-header-injection", "/ok\nLocation: http://evil.com"),
    bad("crlf-after-own-url", "http://testserver/\r\nX-Injected: 1"),
    bad("space-in-host", "http://testserver .evil.com/"),
    bad("no-break-space-leading", "\u00a0//evil.com"),
    bad("line-separator-leading", "\u2028//evil.com"),
    bad("byte-order-mark-leading", "\ufeff//evil.com"),
    bad("zero-width-space-in-host", "http://testserver\u200b.evil.com"),
    bad("right-to-left-override", "/\u202emoc.live//"),
    # percent-encoded separators
    bad("encoded-double-slash", "/%2f%2fevil.com"),
    bad("encoded-double-slash-upper", "/%2F%2Fevil.com"),
    bad("encoded-slash-leading", "%2f%2fevil.com"),
    bad("encoded-slash-leading-upper", "%2F%2Fevil.com"),
    bad("encoded-slash-after-slash", "/%2F/evil.com"),
    bad("encoded-backslash", "/%5cevil.com"),
    bad("encoded-backslash-upper", "/%5C%5Cevil.com"),
    bad("encoded-slash-mid-path", "/a/%2f/evil.com"),
    bad("encoded-traversal", "/%2e%2e%2f%2e%2e%2fevil"),
    bad("encoded-nul-path", "/%00/evil.com"),
    bad("encoded-tab-path", "/%09/evil.com"),
    bad("encoded-crlf-path", "/%0d%0aSet-Cookie:%20a=b"),
    bad("encoded-delete-path", "/%7f"),
    bad("encoded-dot-host", "http://evil%2ecom"),
    bad("encoded-ideographic-dot-host", "http://evil%E3%80%82com"),
    bad("encoded-ideographic-dot-after-own-host", "http://testserver%E3%80%82evil.com"),
    bad("encoded-letter-own-host", "http://%74estserver/"),
    bad("encoded-colon-javascript", "javascript%3Aalert(1)"),
    # Unicode look-alike separators and dots
    bad("ideographic-dot-host", "http://evil\u3002com"),
    bad("ideographic-dot-after-own-host", "http://testserver\u3002evil.com"),
    bad("full-width-dot-host", "http://evil\uff0ecom"),
    bad("half-width-dot-host", "http://evil\uff61com"),
    bad("ideographic-dot-path", "/\u3002evil.com"),
    bad("full-width-solidus-pair", "\uff0f\uff0fevil.com"),
    bad("slash-full-width-solidus", "/\uff0fevil.com"),
    bad("https-full-width-solidus", "https:\uff0f\uff0fevil.com"),
    bad("slash-full-width-backslash", "/\uff3cevil.com"),
    bad("account-of-in-host", "http://evil.c\u2100.testserver"),
    bad("account-of-after-own-host", "http://testserver\u2100evil.com"),
    bad("division-slash", "/\u2215evil.com"),
    bad("fraction-slash", "/\u2044evil.com"),
    bad("cyrillic-own-host", "http://t\u0435stserver/"),
    bad("cyrillic-allowed-host", "http://g\u043e\u043ed.com/"),
    bad("full-width-own-host", "http://\uff54estserver/"),
    bad("unicode-path", "/caf\u00e9"),
    bad("full-width-port-digits", "http://testserver:\uff18\uff10/"),
    # NUL bytes
    bad("nul-only", "\x00"),
    bad("nul-scheme-relative", "\x00//evil.com"),
    bad("slash-nul-slash", "/\x00/evil.com"),
    bad("nul-in-own-host", "http://testserver\x00.evil.com/"),
    bad("nul-after-path", "/account\x00"),
    bad("nul-before-javascript", "\x00javascript:alert(1)"),
    # other schemes
    bad("javascript", "javascript:alert(1)"),
    bad("javascript-upper", "JAVASCRIPT:alert(1)"),
    bad("javascript-fake-host", "javascript://testserver/%0aalert(1)"),
    bad("javascript-comment", "javascript://%0aalert(document.domain)"),
    bad("data-html", "data:text/html,<script>alert(1)</script>"),
    bad("data-base64", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="),
    bad("ftp", "ftp://evil.com/"),
    bad("ftp-own-host", "ftp://testserver/"),
    bad("vbscript", "vbscript:msgbox(1)"),
    bad("file", "file:///etc/passwd"),
    bad("mailto", "mailto:victim@evil.com"),
    bad("websocket-own-host", "ws://testserver/"),
    bad("blob", "blob:http://testserver/0000"),
    bad("about-blank", "about:blank"),
    bad("view-source", "view-source:http://evil.com"),
    bad("tel", "tel:+15555555555"),
    bad("httpx-scheme", "httpx://testserver/"),
    bad("http-plus-unix", "http+unix://%2Fsocket/"),
    # references not rooted at /
    bad("empty", ""),
    bad("bare-host", "evil.com"),
    bad("bare-host-path", "evil.com/account"),
    bad("dot-slash", "./account"),
    bad("dot-dot", "../evil"),
    bad("query-only", "?x=1"),
    bad("fragment-only", "#top"),
    # malformed IPv6 hosts
    bad("ipv6-unclosed", "http://[::1/"),
    bad("ipv6-unopened", "http://::1]/"),
    bad("ipv6-double-close", "http://[::1]]/"),
    bad("ipv6-name-in-brackets", "http://[evil.com]/"),
    bad("ipv6-trailing-junk", "http://[::1]evil.com/"),
    bad("ipv6-zone-id", "http://[fe80::1%25eth0]/"),
    bad("ipv6-empty", "http://[]/"),
    bad("ipv6-too-many-groups", "http://[1:2:3:4:5:6:7:8:9]/"),
    bad("ipv6-future-format", "http://[v1.evil]/"),
    bad("ipv6-not-own-host", "http://[::1]/"),
    bad("ipv6-other-port", "http://[::1]/", host="[::1]:8000"),
    # ports
    bad("port-out-of-range", "http://testserver:99999/"),
    bad("port-negative", "http://testserver:-1/"),
    bad("port-letters", "http://testserver:abc/"),
    bad("port-plus-sign", "http://testserver:+80/"),
    bad("port-other", "http://testserver:8080/"),
    bad("port-https-on-80", "https://testserver:80/"),
    bad("port-double-colon", "http://testserver:80:evil.com/"),
    bad("port-allowed-name-port-wrong", "https://api.good.com:8444/"),
    bad("port-allowed-name-port-missing", "https://api.good.com/"),
    bad("ipv4-other-port", "http://127.0.0.1/", host="127.0.0.1:8000"),
    bad("ipv4-hex-form", "http://0x7f.0.0.1:8000/", host="127.0.0.1:8000"),
    # absurd lengths
    bad("too-long-path", "/" + "a" * MAX_NEXT_LENGTH),
    bad("too-long-own-url", "http://testserver/" + "a" * 3000),
    bad("huge-path", "/a" * 5000),
    bad("host-label-too-long", "http://" + "a" * 64 + ".testserver/"),
    # exact host matching: never a prefix or a suffix
    bad("allowed-host-suffix-attack", "http://good.com.evil.com/"),
    bad("allowed-host-prefix-attack", "http://evilgood.com/"),
    bad("allowed-host-dash-prefix", "http://evil-good.com/"),
    bad("allowed-host-subdomain", "http://sub.good.com/"),
    bad("allowed-host-trailing-dot", "http://good.com./"),
    bad("allowed-host-truncated", "http://good.co/"),
    bad("allowed-host-underscore", "http://good_com/"),
    bad("own-host-suffix-attack", "http://testserver.evil.com/"),
    bad("own-host-prefix-attack", "http://eviltestserver/"),
    bad("own-host-trailing-dot", "http://testserver./"),
    bad("other-host", "https://evil.com/"),
    # no downgrade from an HTTPS request
    bad("https-request-http-own-host", "http://testserver/", scheme="https"),
    bad("https-request-http-allowed-host", "http://good.com/", scheme="https"),
    bad("https-request-scheme-relative", "//evil.com", scheme="https"),
    bad("https-request-no-slash", "https:evil.com", scheme="https"),
]

GOOD = [
    good("root", "/"),
    good("path", "/account"),
    good("nested-path", "/a/b/c/"),
    good("path-query", "/search?q=1&page=2"),
    good("query-encoded-slashes", "/search?next=%2F%2Fevil.com"),
    good("query-absolute-url", "/go?url=http://evil.com/"),
    good("query-encoded-crlf", "/a?x=%0d%0a"),
    good("query-double-slash", "/a?//evil.com"),
    good("fragment", "/docs#section-2"),
    good("query-and-fragment", "/a?b=c#d"),
    good("fragment-double-slash", "/a#//evil.com"),
    good("empty-query", "/?"),
    good("empty-fragment", "/#"),
    good("tilde", "/~user/"),
    good("path-params", "/path;jsessionid=1"),
    good("colon-in-path", "/a:b"),
    good("at-in-path", "/@evil.com"),
    good("host-like-path", "/evil.com"),
    good("dot-segment-double-slash", "/.//evil.com"),
    good("dot-dot-double-slash", "/..//evil.com"),
    good("encoded-letter", "/%41ccount"),
    good("double-encoded-slash", "/%252f%252fevil.com"),
    good("encoded-unicode-dot-path", "/%E3%80%82evil.com"),
    good("encoded-full-width-solidus-path", "/%EF%BC%8Fevil.com"),
    good("literal-percent", "/100%"),
    good("unreserved", "/a-b_c.d~e"),
    good("sub-delims", "/a!$&'()*+,;=b"),
    good("html-special", '/a"<b>`{c}|^'),
    good("max-length", "/" + "a" * (MAX_NEXT_LENGTH - 1)),
    good("own-absolute", "http://testserver/"),
    good("own-absolute-no-path", "http://testserver"),
    good("own-upper-case", "HTTP://TESTSERVER/Account"),
    good("own-default-port", "http://testserver:80/x"),
    good("own-zero-padded-port", "http://testserver:0080/x"),
    good("own-empty-port", "http://testserver:/x"),
    good("own-upgrade-https", "https://testserver/x"),
    good("own-upgrade-https-443", "https://testserver:443/x"),
    good("own-query", "http://testserver/a?b=c"),
    good("own-fragment", "http://testserver/#frag"),
    good("own-fragment-at-evil", "http://testserver#@evil.com"),
    good("own-query-at-evil", "http://testserver?@evil.com"),
    good("allowed", "http://good.com/"),
    good("allowed-https-query", "https://good.com/welcome?x=1"),
    good("allowed-any-port", "http://good.com:8080/"),
    good("allowed-upper-case", "https://GOOD.COM/"),
    good("allowed-name-port", "https://api.good.com:8443/v1"),
    good("allowed-name-port-http", "http://api.good.com:8443/"),
    good("https-request-own", "https://testserver/", scheme="https"),
    good("https-request-allowed", "https://good.com/", scheme="https"),
    good("https-request-path", "/account?tab=1", scheme="https"),
    good("ipv6-own-host", "http://[::1]:8000/x", host="[::1]:8000"),
    good("ipv4-own-host", "http://127.0.0.1:8000/", host="127.0.0.1:8000"),
    good("own-host-with-port", "http://testserver:8000/", host="testserver:8000"),
]

CORPUS = [*BAD, *GOOD]
CASES = [pytest.param(case, id=f"{'good' if case.safe else 'bad'}-{case.id}") for case in CORPUS]


def test_corpus_is_large_and_named_uniquely() -> None:
    assert len(CORPUS) >= 150
    assert len(BAD) >= 100
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CASES)
def test_is_safe_next(case: Case) -> None:
    verdict = is_safe_next(case.url, host=case.host, scheme=case.scheme, allowed_hosts=ALLOWED)
    assert verdict is case.safe


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in GOOD])
def test_every_good_case_lands_on_an_allowed_origin(case: Case) -> None:
    """The oracle agrees with the corpus, so the properties below test something."""
    assert lands_safely(case.url, scheme=case.scheme, host=case.host)


# -- end to end through both adapters ---------------------------------------------------


@pytest.fixture(scope="module", params=KINDS)
def client(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Harness]:
    with harness(request.param, redis_url, next_uri=NEXT_URI, allowed_hosts=ALLOWED) as h:
        yield h


def expected_location(case: Case) -> str:
    return case.url if case.safe else NEXT_URI


@pytest.mark.parametrize("case", CASES)
def test_next_in_query_end_to_end(client: Harness, case: Case) -> None:
    reply = client.post_logout(
        f"/logout?next={quote(case.url, safe='')}", scheme=case.scheme, host=case.host
    )
    assert reply.status == 303
    assert reply.header("location") == expected_location(case)


@pytest.mark.parametrize("case", CASES)
def test_next_in_form_end_to_end(client: Harness, case: Case) -> None:
    reply = client.post_logout(
        headers={"Content-Type": FORM},
        body=f"next={quote(case.url, safe='')}".encode(),
        scheme=case.scheme,
        host=case.host,
    )
    assert reply.status == 303
    assert reply.header("location") == expected_location(case)


def test_next_in_multipart_form(client: Harness) -> None:
    content_type, body = multipart([("next", "/account?tab=2")])
    reply = client.post_logout(headers={"Content-Type": content_type}, body=body)
    assert reply.header("location") == "/account?tab=2"
    content_type, body = multipart([("next", "//evil.com")])
    reply = client.post_logout(headers={"Content-Type": content_type}, body=body)
    assert reply.header("location") == NEXT_URI


def test_form_content_type_is_case_insensitive(client: Harness) -> None:
    """Media types are case-insensitive (RFC 9110 section 8.3.1)."""
    reply = client.post_logout(
        headers={"Content-Type": "Application/X-WWW-Form-Urlencoded"}, body=b"next=/account"
    )
    assert reply.header("location") == "/account"


@pytest.mark.parametrize(
    ("query", "form", "expected"),
    [
        pytest.param("next=/a", "", "/a", id="query-once"),
        pytest.param("", "next=/a", "/a", id="form-once"),
        pytest.param("next=/a&next=/a", "", "/a", id="query-twice-identical"),
        pytest.param("next=/a&next=/b", "", NEXT_URI, id="query-twice-different"),
        pytest.param("", "next=/a&next=/a", "/a", id="form-twice-identical"),
        pytest.param("", "next=/a&next=/b", NEXT_URI, id="form-twice-different"),
        pytest.param("next=/a", "next=/a", "/a", id="query-and-form-identical"),
        pytest.param("next=/a", "next=/b", NEXT_URI, id="query-and-form-different"),
        pytest.param("next=/a", "next=%2F%2Fevil.com", NEXT_URI, id="query-safe-form-evil"),
        pytest.param("next=%2F%2Fevil.com", "next=/a", NEXT_URI, id="query-evil-form-safe"),
        pytest.param("next=//evil.com", "next=//evil.com", NEXT_URI, id="both-evil-identical"),
        pytest.param("next=&next=/a", "", NEXT_URI, id="empty-and-safe"),
        pytest.param("next=", "", NEXT_URI, id="empty"),
        pytest.param("next", "", NEXT_URI, id="no-equals-sign"),
        pytest.param("next=/a&next=%2Fa", "", "/a", id="same-after-decoding"),
        pytest.param("nExt=/a&next_=/b", "", NEXT_URI, id="other-names-ignored"),
        pytest.param("x=1&next=/a%3Fb%3Dc&y=2", "", "/a?b=c", id="query-kept-on-target"),
    ],
)
def test_next_given_twice(client: Harness, query: str, form: str, expected: str) -> None:
    """All copies identical: used. Any difference: none is, LOGOUT_NEXT_URI applies."""
    reply = client.post_logout(
        f"/logout?{query}" if query else "/logout",
        headers={"Content-Type": FORM} if form else None,
        body=form.encode(),
    )
    assert reply.status == 303
    assert reply.header("location") == expected


# -- properties ------------------------------------------------------------------------

#: Pieces of URLs that matter to parsers; concatenated at random they hit the edge cases.
TOKENS = [
    *("http", "https", "HTTP", "hTTps", "javascript", "data", "ftp"),
    *(":", "/", "//", "\\", "@", ".", "?", "#", "%", ";", "&", "=", "+", "-", "_"),
    *("%2f", "%2F", "%5c", "%40", "%2e", "%00", "%0a", "%0d", "%09", "%25", "%3a", "%E3%80%82"),
    *("[", "]", "::1", "[::1]", ":80", ":443", ":8443", ":8080", ":0", ":", ":+1"),
    *("testserver", "TESTSERVER", "good.com", "api.good.com", "evil.com", "good.com.evil"),
    *("127.0.0.1", "0x7f.1", "xn--e1afmkfd", "localhost", "a", "0"),
    *("\t", "\n", "\r", " ", "\x00", "\x0b", "\x1f", "\x7f", "\u00a0", "\u2028", "\ufeff"),
    *("\u3002", "\uff0e", "\uff61", "\uff0f", "\uff3c", "\u2100", "\u2215", "\u200b"),
]
PREFIXES = [
    *("", "/", "//", "///", "\\\\", "/\\", "\\/", " /", "\t//"),
    *("http://", "https://", "http:", "https:", "http:/", "https:/", "http:\\\\", "HTTPS://"),
    *("http:///", "javascript:", "//\\", "/%2f"),
]
HOSTS = [
    *("testserver", "testserver:80", "testserver:443", "testserver:8000", "TestServer"),
    *("good.com", "good.com:1", "api.good.com:8443", "api.good.com", "evil.com"),
    *("good.com@evil.com", "evil.com@good.com", "testserver@evil.com", "evil.com\\@testserver"),
    *("testserver.evil.com", "good.com.evil.com", "evilgood.com", "[::1]", "[::1]:8000"),
]

token_soup = st.lists(st.sampled_from(TOKENS), max_size=14).map("".join)
shaped = st.builds(
    lambda prefix, host, suffix: prefix + host + suffix,
    st.sampled_from(PREFIXES),
    st.sampled_from(HOSTS),
    token_soup,
)
#: Mostly well-formed: many are accepted, so the property checks acceptances too.
plausible = st.builds(
    lambda prefix, host, tail: prefix + host + tail,
    st.sampled_from(["http://", "https://", "HTTPS://", "/", ""]),
    st.sampled_from(HOSTS),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=24),
)
well_formed = st.builds(
    lambda prefix, host, tail: prefix + host + tail,
    st.sampled_from(["http://", "https://", "//", "/"]),
    st.sampled_from(HOSTS),
    st.sampled_from(["", "/", "/p?x=1", ":80/", ":443/", ":8443/", ":0/", "#@evil.com", "?@e"]),
)
any_next = st.one_of(
    well_formed,
    plausible,
    shaped,
    token_soup,
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="ascii"), max_size=60),
)
request_origins = st.sampled_from(
    [("http", HOST), ("https", HOST), ("http", "testserver:8000"), ("http", "[::1]:8000")]
)


@DIRECT
@given(url=any_next, origin=request_origins)
def test_property_is_safe_next_only_accepts_what_lands_safely(
    url: str, origin: tuple[str, str]
) -> None:
    scheme, host = origin
    if is_safe_next(url, host=host, scheme=scheme, allowed_hosts=ALLOWED):
        assert lands_safely(url, scheme=scheme, host=host), url


@dataclass
class RawClient:
    """One adapter called directly with exact bytes (no HTTP client in between)."""

    kind: Kind
    middleware: Any
    seen: Seen
    portal: Any = None
    sent: list[bytes] = field(default_factory=list)

    def send(
        self,
        *,
        method: str = "POST",
        path: str = "/logout",
        query: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
        body: bytes = b"",
        scheme: str = "http",
        host: bytes = b"testserver",
    ) -> Reply:
        """Send one request; ``headers`` may repeat names (WSGI joins them, as servers do)."""
        all_headers = [(b"host", host), *headers]
        if self.kind == "asgi":
            scope = {
                "method": method,
                "scheme": scheme,
                "path": path,
                "raw_path": path.encode("latin-1", "replace"),
                "query_string": query,
                "headers": [(name.lower(), value) for name, value in all_headers],
            }
            return raw_asgi(self.middleware, scope, body, self.portal)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query.decode("latin-1"),
            "wsgi.url_scheme": scheme,
            "wsgi.input": io.BytesIO(body),
            # a body without Content-Length is read to its end, as a chunked request is
            "wsgi.input_terminated": True,
        }
        for name, value in all_headers:
            key = name.decode("latin-1").upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            text = value.decode("latin-1")
            separator = "; " if key == "HTTP_COOKIE" else ","
            environ[key] = environ[key] + separator + text if key in environ else text
        return raw_wsgi(self.middleware, environ)


@contextmanager
def raw_client(kind: Kind, config: LogoutConfig, **kwargs: Any) -> Iterator[RawClient]:
    """A :class:`RawClient` around the recording app, with ``config``."""
    seen = Seen()
    with adapter(kind, config, seen, **kwargs) as (middleware, portal):
        yield RawClient(kind, middleware, seen, portal)


@pytest.fixture(scope="module", params=KINDS)
def raw(request: pytest.FixtureRequest, redis_url: str) -> Iterator[RawClient]:
    config = LogoutConfig(redis_url=redis_url, next_uri=NEXT_URI, allowed_hosts=ALLOWED)
    with raw_client(request.param, config) as client:
        yield client


def assert_redirect_is_safe(reply: Reply, scheme: str, host: str) -> str:
    assert reply.status == 303, reply
    location = reply.header("location")
    assert location is not None
    assert re.fullmatch(r"[\x21-\x7e]+", location), location
    if location != NEXT_URI:
        assert lands_safely(location, scheme=scheme, host=host), location
    return location


@ADAPTERS
@given(url=any_next, origin=request_origins, in_form=st.booleans())
def test_property_adapters_redirect_only_where_it_lands_safely(
    raw: RawClient, url: str, origin: tuple[str, str], in_form: bool
) -> None:
    """``next`` percent-encoded once, as a browser sends it: the adapters decode it back
    to ``url``, then redirect to exactly ``url`` when it is safe, else to NEXT_URI."""
    scheme, host = origin
    encoded = b"next=" + quote(url, safe="").encode("ascii")
    if in_form:
        reply = raw.send(
            headers=[(b"content-type", FORM.encode())],
            body=encoded,
            scheme=scheme,
            host=host.encode(),
        )
    else:
        reply = raw.send(query=encoded, scheme=scheme, host=host.encode())
    location = assert_redirect_is_safe(reply, scheme, host)
    safe = is_safe_next(url, host=host, scheme=scheme, allowed_hosts=ALLOWED)
    assert location == (url if safe else NEXT_URI)


@ADAPTERS
@given(
    query=st.one_of(
        st.binary(max_size=80),
        st.builds(lambda b: b"next=" + b, st.binary(max_size=80)),
        st.builds(lambda s: b"next=" + s.encode("utf-8"), any_next),
    ),
    origin=request_origins,
)
def test_property_raw_query_bytes_never_redirect_off_site(
    raw: RawClient, query: bytes, origin: tuple[str, str]
) -> None:
    """Undecoded bytes in the query (``+``, ``&``, raw controls, invalid UTF-8)."""
    scheme, host = origin
    reply = raw.send(query=query, scheme=scheme, host=host.encode())
    assert_redirect_is_safe(reply, scheme, host)
