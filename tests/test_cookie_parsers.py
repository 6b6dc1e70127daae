"""The middleware finds a cookie exactly where the app's framework will: a differential
test against the frameworks' own cookie parsers.

The parsers (``shared/notes/cookie-parsers.md``): Starlette's ``cookie_parser`` (FastAPI,
Starlette), Django's ``parse_cookie``, Werkzeug's ``parse_cookie`` (Flask, Quart; on the
header and on its UTF-8 reading, as a WSGI environ gives it), Litestar's
``parse_cookie_string`` and the standard library's ``SimpleCookie``. Two properties, on a
corpus of known tricks and on Hypothesis-generated headers:

1. every value any parser hands the app for the session cookie or the token cookie is
   one :func:`~logout_middleware.core.cookies.cookie_values` found (so it was checked);
2. through the middleware (both adapters, a real Redis), with one session and one token
   logged out: whatever ``Cookie`` header the app receives, no parser hands it the ended
   session or the revoked token, and a request with two live sessions reaches the app
   with one (every parser reading the same); the answer is the app's, or a ``400`` that
   the app never saw, never a ``5xx``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from http.cookies import CookieError, SimpleCookie
from typing import Any, Literal
from urllib.parse import quote

import pytest
import redis
from django.http.cookie import parse_cookie as django_parse_cookie
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar._parsers import parse_cookie_string as litestar_parse_cookie
from starlette.requests import cookie_parser as starlette_parse_cookie
from werkzeug.sansio.http import parse_cookie as werkzeug_parse_cookie

from logout_middleware import LogoutConfig
from logout_middleware.core import Check, LogoutCore, Verdict
from logout_middleware.core.cookies import cookie_values
from tests.harness import KINDS, Kind, Reply, Seen, adapter, raw_asgi, raw_wsgi

SESSION = "session"
TOKEN = "tok"
#: The ids and tokens of the test: ``ENDED`` and ``REVOKED`` are logged out first.
ENDED, LIVE, OTHER = "ended-session-id", "live-session-id", "other-session-id"
REVOKED, FRESH = "revoked-token", "fresh-token"


def werkzeug_values(header: str, name: str) -> list[str]:
    """Werkzeug's values, on the text as given and as a WSGI environ decodes it."""
    utf8 = header.encode("latin-1", "replace").decode("utf-8", "replace")
    return [
        *werkzeug_parse_cookie(header).getlist(name),
        *werkzeug_parse_cookie(utf8).getlist(name),
    ]


def simple_cookie_values(header: str, name: str) -> list[str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return []
    morsel = jar.get(name)
    return [morsel.value] if morsel is not None else []


def _dict_parser(parse: Callable[[str], dict[str, str]]) -> Callable[[str, str], list[str]]:
    def values(header: str, name: str) -> list[str]:
        found = parse(header).get(name)
        return [found] if found is not None else []

    return values


#: Each framework's parser: the values it may hand the app for a name.
PARSERS: dict[str, Callable[[str, str], list[str]]] = {
    "starlette": _dict_parser(starlette_parse_cookie),
    "django": _dict_parser(django_parse_cookie),
    "litestar": _dict_parser(litestar_parse_cookie),
    "werkzeug": werkzeug_values,
    "simplecookie": simple_cookie_values,
}


def app_values(header: str, name: str) -> set[str]:
    """Every non-empty value any framework's parser hands the app for ``name``."""
    return {value for parse in PARSERS.values() for value in parse(header, name) if value}


#: Known tricks, each with the ended session or revoked token in it somewhere.
CORPUS = [
    f"{SESSION}={ENDED}",
    f"{SESSION}={LIVE}; {SESSION}={ENDED}",
    f"{SESSION}={ENDED}; {SESSION}={LIVE}",
    f"{SESSION}={LIVE};{SESSION}={ENDED}",
    f"{SESSION}=; {SESSION}={ENDED}",
    f"{SESSION} ={ENDED}",
    f"a;{SESSION} ={ENDED}",
    f"{SESSION}\t={ENDED}",
    f" {SESSION}={ENDED}",
    f"{SESSION}= {ENDED}",
    f"{SESSION}\xa0={ENDED}",
    f"{SESSION}\x0b={ENDED}",
    f"{SESSION}\x1c={ENDED}",
    f"\x85{SESSION}={ENDED}",
    f'{SESSION}="{ENDED}"',
    f'{SESSION}="\\{oct(ord(ENDED[0]))[2:]}{ENDED[1:]}"',
    f"{SESSION}={quote(ENDED, safe='')}",
    f"{SESSION}=%{ord(ENDED[0]):02X}{ENDED[1:]}",
    f"x=1, {SESSION}={ENDED}",
    f"x=1 {SESSION}={ENDED}",
    f'x="a; {SESSION}={ENDED}"',
    f'x="a; {SESSION}={ENDED}',
    f"{SESSION.upper()}={ENDED}",
    f"x{SESSION}={ENDED}",
    f"{SESSION}={LIVE}; {SESSION}={OTHER}",
    f"{SESSION}={LIVE}; {SESSION}={OTHER}; {SESSION}={ENDED}",
    f"{SESSION}={LIVE}; {SESSION}={LIVE}",
    f"{SESSION}={ENDED}; " + "a=" + "b" * 8000,
    f"{TOKEN}={REVOKED}",
    f"{TOKEN} ={REVOKED}",
    f"a;{TOKEN} ={REVOKED}",
    f"{TOKEN}\t={REVOKED}",
    f"{TOKEN}=x; {TOKEN}={REVOKED}",
    f'{TOKEN}="{REVOKED}"',
    f"{TOKEN}=%{ord(REVOKED[0]):02X}{REVOKED[1:]}",
    f"x=1, {TOKEN}={REVOKED}",
    f"{TOKEN}={FRESH}; {SESSION}={LIVE}; {TOKEN}={REVOKED}",
    f"{SESSION}=ünïcödé; {SESSION}={ENDED}",
    f"{SESSION}={ENDED}".encode().decode("latin-1") + "; é=\xe9",
]

# -- headers Hypothesis builds from the same pieces ------------------------------------

_SPACES = st.sampled_from(["", " ", "\t", "\xa0", "\x0b", "\x1c", "\x85", "  "])
_NAMES = st.sampled_from([SESSION, TOKEN, "a", "x", "", SESSION.upper(), f"x{SESSION}", "$v"])
_RAW_VALUES = st.sampled_from([ENDED, LIVE, OTHER, REVOKED, FRESH, "", "1", "a b", "é"])


@st.composite
def _values(draw: st.DrawFn) -> str:
    """A value, perhaps quoted, escaped or percent-encoded as some parser undoes."""
    value = draw(_RAW_VALUES)
    how = draw(st.sampled_from(["plain", "quoted", "octal", "percent", "half-quoted"]))
    if how == "quoted":
        return f'"{value}"'
    if how == "octal" and value:
        return f'"\\{oct(ord(value[0]))[2:]}{value[1:]}"'
    if how == "percent" and value:
        return f"%{ord(value[0]):02X}{value[1:]}"
    if how == "half-quoted":
        return f'"{value}'
    return value


@st.composite
def _pairs(draw: st.DrawFn) -> str:
    name = draw(_NAMES)
    if draw(st.booleans()):
        return f"{draw(_SPACES)}{name}{draw(_SPACES)}={draw(_SPACES)}{draw(_values())}"
    return f"{draw(_SPACES)}{name}"  # a chunk without '='


_SEPARATORS = st.sampled_from([";", "; ", ";;", ", ", " ", ",", ";\t"])


@st.composite
def headers(draw: st.DrawFn) -> str:
    """A ``Cookie`` header of pairs joined by separators, some junk among them."""
    pairs = draw(st.lists(_pairs(), min_size=1, max_size=6))
    text = pairs[0]
    for pair in pairs[1:]:
        text += draw(_SEPARATORS) + pair
    if draw(st.booleans()):
        junk = draw(st.text(alphabet=st.characters(max_codepoint=255), max_size=12))
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + junk + text[at:]
    return text


# -- 1. every value a parser hands the app is found -------------------------------------


def assert_found(header: str) -> None:
    for name in (SESSION, TOKEN):
        missed = app_values(header, name) - set(cookie_values(header, name))
        assert not missed, (header, name, missed)


@pytest.mark.parametrize("header", CORPUS)
def test_every_value_a_parser_reads_is_found(header: str) -> None:
    assert_found(header)


@given(headers())
@settings(max_examples=1500, deadline=None)
def test_every_value_a_parser_reads_is_found_in_generated_headers(header: str) -> None:
    assert_found(header)


@given(st.text(alphabet=st.characters(max_codepoint=255), max_size=60))
@settings(max_examples=1500, deadline=None)
def test_every_value_a_parser_reads_is_found_in_any_text(text: str) -> None:
    assert_found(f"{text}{SESSION}={ENDED}{text}")
    assert_found(text)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("session=A; session=B", ("A", "B")),
        ("session =B", ("B",)),
        ("session\t=B", ("B",)),
        ('session="\\101"', ("A",)),
        ("session=%41", ("%41", "A")),
        ("x=1, session=B", ("B",)),
        ("session=; session=B", ("B",)),
        ("Session=B", ()),
        ("xsession=B", ()),
        ("", ()),
    ],
    ids=[
        "repeated",
        "space-before-equals",
        "tab-before-equals",
        "octal-escape",
        "percent-encoded",
        "after-a-comma",
        "empty-first",
        "other-case",
        "suffix",
        "empty",
    ],
)
def test_cookie_values(header: str, expected: tuple[str, ...]) -> None:
    assert cookie_values(header, SESSION) == expected


# -- 2. through the middleware -----------------------------------------------------------


class Stack:
    """One adapter on a real Redis with ``ENDED`` and ``REVOKED`` logged out."""

    def __init__(self, kind: Kind, middleware: Any, portal: Any, seen: Seen) -> None:
        self.kind = kind
        self.middleware = middleware
        self.portal = portal
        self.seen = seen

    def get(self, *cookie_fields: str) -> tuple[Reply, str | None]:
        """``GET /page`` with these ``Cookie`` header fields; the reply and the
        ``Cookie`` header the app received (None when the app was not called)."""
        before = len(self.seen.cookies)
        if self.kind == "asgi":
            headers = [(b"host", b"testserver")]
            headers += [(b"cookie", field.encode("latin-1")) for field in cookie_fields]
            scope = {"method": "GET", "path": "/page", "raw_path": b"/page", "headers": headers}
            reply = raw_asgi(self.middleware, scope, portal=self.portal)
        else:
            environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/page"}
            if cookie_fields:
                environ["HTTP_COOKIE"] = "; ".join(cookie_fields)
            reply = raw_wsgi(self.middleware, environ)
        received = self.seen.cookies[before] if len(self.seen.cookies) > before else None
        return reply, received

    def logout(self, cookie: str) -> None:
        if self.kind == "asgi":
            headers = [(b"host", b"testserver"), (b"cookie", cookie.encode())]
            reply = raw_asgi(self.middleware, {"headers": headers}, portal=self.portal)
        else:
            reply = raw_wsgi(self.middleware, {"HTTP_COOKIE": cookie})
        assert reply.status == 303, reply


def _database(redis_url: str, db: int) -> str:
    """``redis_url`` with another database number (this module's stacks keep their own
    state, which the per-test flush of ``redis_client`` must not wipe)."""
    base, _, last = redis_url.rpartition("/")
    return f"{base}/{db}" if last.isdigit() else f"{redis_url.rstrip('/')}/{db}"


@pytest.fixture(scope="module", params=KINDS)
def stack(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Stack]:
    kind: Kind = request.param
    url = _database(redis_url, 7 if kind == "asgi" else 8)
    client = redis.Redis.from_url(url)
    client.flushdb()
    config = LogoutConfig(redis_url=url, token_cookie=TOKEN)
    seen = Seen()
    with adapter(kind, config, seen) as (middleware, portal):
        found = Stack(kind, middleware, portal, seen)
        found.logout(f"{SESSION}={ENDED}; {TOKEN}={REVOKED}")
        yield found
    client.flushdb()
    client.close()


def assert_app_safe(stack: Stack, *cookie_fields: str) -> None:
    """No framework reads the ended session or the revoked token from what the app got;
    of two live sessions the app gets one; a refusal is a 400 the app never saw."""
    reply, received = stack.get(*cookie_fields)
    assert reply.status in (200, 400), (cookie_fields, reply)
    if reply.status == 400:
        assert received is None, (cookie_fields, received)
        return
    assert received is not None, (cookie_fields, reply)
    sessions = app_values(received, SESSION)
    assert ENDED not in sessions, (cookie_fields, received)
    assert REVOKED not in app_values(received, TOKEN), (cookie_fields, received)
    sent = set(cookie_values("; ".join(cookie_fields), SESSION))
    live = {LIVE, OTHER} & sessions
    if len({LIVE, OTHER} & sent) == 2 and not received.count(","):
        assert len(live) == 1, (cookie_fields, received)


@pytest.mark.parametrize("header", CORPUS)
def test_the_app_never_reads_an_ended_copy(stack: Stack, header: str) -> None:
    assert_app_safe(stack, header)


@pytest.mark.parametrize(
    "fields",
    [
        (f"{SESSION}={LIVE}", f"{SESSION}={ENDED}"),
        (f"{SESSION}={ENDED}", f"{SESSION}={LIVE}"),
        (f"a=1; {SESSION} ={ENDED}", "b=2"),
        (f"{TOKEN}={FRESH}", f"{TOKEN}\t={REVOKED}"),
        (f'x="a; {SESSION}', f'{SESSION}={ENDED}"'),
    ],
    ids=["ended-in-second", "ended-in-first", "space-in-first", "token-in-second", "quote-spans"],
)
def test_cookie_split_over_header_fields(stack: Stack, fields: tuple[str, ...]) -> None:
    assert_app_safe(stack, *fields)


@given(st.lists(headers(), min_size=1, max_size=2))
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_the_app_never_reads_an_ended_copy_of_generated_headers(
    stack: Stack, fields: list[str]
) -> None:
    assert_app_safe(stack, *fields)


@pytest.mark.parametrize(
    ("cookie", "received", "expired"),
    [
        (f"theme=dark; {SESSION}={LIVE}; {SESSION}={ENDED}", f"theme=dark; {SESSION}={LIVE}", None),
        (f"theme=dark; {SESSION} ={ENDED}", "theme=dark", SESSION),
        (f"{SESSION}={OTHER}; a=1; {SESSION}={LIVE}", f"{SESSION}={OTHER}; a=1", None),
        (f"{TOKEN}={FRESH}; a=1; {TOKEN} ={REVOKED}", "a=1", TOKEN),
        (
            f"a=1; {SESSION}={LIVE}; {TOKEN}={FRESH}",
            f"a=1; {SESSION}={LIVE}; {TOKEN}={FRESH}",
            None,
        ),
    ],
    ids=[
        "ended-second-copy-out-live-kept-not-expired",
        "ended-copy-alone-out-and-expired",
        "two-live-the-first-kept",
        "every-token-copy-out-and-expired",
        "one-copy-each-untouched",
    ],
)
def test_what_the_app_gets(stack: Stack, cookie: str, received: str, expired: str | None) -> None:
    reply, got = stack.get(cookie)
    assert (reply.status, got) == (200, received)
    names = [value.split("=", 1)[0] for value in reply.set_cookies]
    assert names == ([expired] if expired else []), reply.set_cookies


@pytest.mark.parametrize(
    "cookie", [f"x=1, {SESSION}={ENDED}", f"x=1 {TOKEN}={REVOKED}"], ids=["comma", "space"]
)
def test_a_copy_that_cannot_be_taken_out_is_refused(stack: Stack, cookie: str) -> None:
    reply, received = stack.get(cookie)
    assert (reply.status, received) == (400, None)


def test_a_logout_ends_every_session_its_cookie_carries(stack: Stack) -> None:
    first, second = f"first-{stack.kind}", f"second-{stack.kind}"
    for sid in (first, second):
        _, received = stack.get(f"{SESSION}={sid}")
        assert received == f"{SESSION}={sid}"  # live before the logout
    stack.logout(f"{SESSION}={first}; {SESSION} ={second}")
    for sid in (first, second):
        reply, received = stack.get(f"a=1; {SESSION}={sid}")
        assert (reply.status, received) == (200, "a=1"), sid


# -- when Redis cannot answer -----------------------------------------------------------


def _run_with_redis_down(flow: Generator[Any, Any, Verdict]) -> Verdict:
    """Drive a check flow as a store does when Redis fails: every check answers None."""
    try:
        request = next(flow)
        while True:
            assert isinstance(request, Check), request
            request = flow.send(None)
    except StopIteration as done:
        verdict: Verdict = done.value
        return verdict


@pytest.mark.parametrize(("on_check_error", "unavailable"), [("deny", True), ("allow", False)])
def test_a_copy_that_cannot_be_checked_follows_on_check_error(
    on_check_error: Literal["allow", "deny"], unavailable: bool
) -> None:
    """The first copy's session is known ended (the mirror says so with Redis down); the
    second copy's cannot be checked: with ``deny`` the request gets ``503``, as a single
    copy that cannot be checked does; with ``allow`` the ended copy is still taken out."""
    config = LogoutConfig(redis_url="redis://127.0.0.1:1/0", on_check_error=on_check_error)
    core = LogoutCore(config, has_store=True)
    checks = core.checks
    found = checks.credentials(f"{SESSION}={ENDED}; {SESSION}={LIVE}", None)
    assert core.mirror is not None
    assert found.session is not None
    core.mirror.add(sessions=(found.session.hash,))
    first = checks.answer(found.session, None, None)
    assert [s.sid for s in first.strip] == [ENDED]
    verdict = _run_with_redis_down(core.check_copies(first, found))
    assert verdict.unavailable is unavailable
    if not unavailable:
        assert [s.sid for s in verdict.strip] == [ENDED]
        assert verdict.keep is not None
        assert verdict.keep.sid == LIVE
