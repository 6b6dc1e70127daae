"""Logging out in a real browser: headless Debian Chromium, driven by Playwright, on the
examples under their real servers (Flask under waitress, FastAPI under uvicorn) and a
real Redis.

What only a browser can show: that the cookie is gone from its jar (a deletion the
browser ignores, for a wrong ``Path``, ``Domain`` or ``Secure``, leaves it there), what
it sends by itself (``Sec-Fetch-Site``, ``Origin: null`` under ``Referrer-Policy:
no-referrer``, ``SameSite`` rules), and what a hostile page can make it do (images,
prefetches, links, auto-submitted forms, ``no-cors`` fetches).

* The logout button logs out: cookie gone from the jar, session record gone from Redis,
  the page says so, one audit entry.
* A page on another site cannot log the user out, by form or by ``fetch``: ``403`` from
  the middleware, no audit entry, still logged in. The examples' cookies are
  ``SameSite=Lax``, which the browser withholds cross-site anyway, so the HTTPS app
  repeats it with a ``SameSite=None`` cookie that the forged form does carry.
* ``GET`` cannot log out: an ``<img>``, a prefetch and a clicked link on a page of the
  app's own origin get ``405``, with the cookie sent, and change nothing.
* ``LOGOUT_GET=confirm``: the confirmation page's button logs out, though Chromium posts
  it with ``Origin: null`` (the page is ``Referrer-Policy: no-referrer``).
* A logout form on a page served with ``Referrer-Policy: no-referrer`` logs out.
* A ``__Host-`` session cookie over HTTPS (self-signed certificate) is removed from the
  jar: the deletion carried ``Secure``, ``Path=/`` and no ``Domain``.

The module skips, with the reason, where ``/usr/bin/chromium`` or Playwright is missing.
One browser serves the module; each test gets a fresh context (an empty cookie jar).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import redis

from examples.recipes import Recipe, read_recipes, serve_recipe
from tests.browser import (
    ACTION_TIMEOUT_MS,
    HostileSite,
    assert_text,
    hostile_site,
    jar_cookie,
    launch,
    self_signed_certificate,
    sent_headers,
    serve_https,
    unavailable,
)
from tests.servers import app_env, audit_entries, cookie_attributes, serve, uvicorn, waitress

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Response

if reason := unavailable():
    pytest.skip(reason, allow_module_level=True)

pytestmark = pytest.mark.browser

RECIPES = read_recipes()
#: The examples of the README's recipes table that have a login form on ``/``.
EXAMPLES = ("flask", "fastapi")
#: The session cookie of the HTTPS app (tests/adoption_apps/browser_https.py).
HOST_COOKIE = "__Host-session"


@dataclass(frozen=True)
class App:
    """An app served for the browser, and where it keeps a session."""

    name: str
    #: ``http(s)://127.0.0.1:<port>``, no trailing slash.
    url: str
    cookie: str
    #: The Redis key of a session, ``{sid}`` standing for the cookie's value.
    session_key: str
    #: The session cookie's ``SameSite``: ``none`` is sent on a cross-site ``POST`` too.
    same_site: str = "lax"

    @property
    def logout(self) -> str:
        """The logout URI (the middleware's default ``LOGOUT_PATH``)."""
        return self.url + "/logout"

    def record(self, sid: str) -> str:
        """The Redis key of session ``sid``."""
        return self.session_key.replace("{sid}", sid)


def _recipe_app(recipe: Recipe, url: str) -> App:
    """The :class:`App` of ``recipe`` served at ``url``: its cookie and the first key of
    its ``LOGOUT_SESSION_KEYS`` (the one holding the record)."""
    keys = recipe.settings.get("LOGOUT_SESSION_KEYS", "session:{sid}")
    cookie = recipe.settings.get("LOGOUT_SESSION_COOKIE", "session")
    return App(recipe.name, url, cookie, keys.split(",")[0].strip())


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = launch(playwright)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh context (empty cookie jar) that accepts the self-signed certificate."""
    fresh = browser.new_context(ignore_https_errors=True)
    fresh.set_default_timeout(ACTION_TIMEOUT_MS)
    try:
        yield fresh
    finally:
        fresh.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A tab of the context."""
    return context.new_page()


@pytest.fixture
def store(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the Redis the apps use (not flushed: the servers outlive a test)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


#: The examples behind ``Referrer-Policy: no-referrer``: recipe, and server command.
NO_REFERRER = {
    "flask": waitress("tests.adoption_apps.browser_no_referrer:flask_app", "--call"),
    "fastapi": uvicorn("tests.adoption_apps.browser_no_referrer:fastapi_app", "--factory"),
}
#: The HTTPS app's name for the :func:`app` fixture.
HTTPS = "https"


def examples_as(variant: str = "") -> list[object]:
    """The parameters of the :func:`app` fixture serving each of :data:`EXAMPLES` as
    ``variant`` says (``confirm``, ``no-referrer``; none: by its recipe), each with the
    example's name as its id."""
    return [pytest.param(f"{name}-{variant}" if variant else name, id=name) for name in EXAMPLES]


@pytest.fixture(scope="module")
def app(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    """The app a test's indirect ``app`` parameter names, served once for the module:

    * ``flask``, ``fastapi``: the example by its recipe's command with its settings;
    * ``flask-confirm``, ...: the same, plus ``LOGOUT_GET=confirm``;
    * ``flask-no-referrer``, ...: the example with its recipe's settings, every response
      of it sent with ``Referrer-Policy: no-referrer``
      (tests/adoption_apps/browser_no_referrer.py);
    * :data:`HTTPS`: tests/adoption_apps/browser_https.py under uvicorn over HTTPS with
      a fresh self-signed certificate; its ``__Host-session`` cookie is
      ``SameSite=None``.
    """
    name: str = request.param
    example, _, variant = name.partition("-")
    if name == HTTPS:
        key, certificate = self_signed_certificate(tmp_path_factory.mktemp("tls"))
        env = app_env(
            redis_url,
            BROWSER_SAMESITE="none",
            LOGOUT_SESSION_COOKIE=HOST_COOKIE,
            LOGOUT_SESSION_KEYS="starsessions.{sid}",
        )
        target = "tests.adoption_apps.browser_https:app"
        with serve_https("HTTPS app", target, env, key, certificate) as https:
            yield App(HTTPS, https.url, HOST_COOKIE, "starsessions.{sid}", same_site="none")
    elif variant == "no-referrer":
        recipe = RECIPES[example]
        title, command = f"{recipe.title}, no-referrer", NO_REFERRER[example]
        with serve(title, command, recipe.env(redis_url)) as server:
            yield _recipe_app(recipe, server.url)
    else:
        recipe = RECIPES[example]
        settings = {"LOGOUT_GET": "confirm"} if variant == "confirm" else {}
        with serve_recipe(recipe, redis_url, **settings) as url:
            yield _recipe_app(recipe, url)


@pytest.fixture(scope="module")
def other_site() -> Iterator[HostileSite]:
    """Pages on ``localhost``: another site than the apps' ``127.0.0.1``."""
    with hostile_site() as site:
        yield site


# -- steps ---------------------------------------------------------------------------


def shows(page: Page, text: str) -> None:
    """The page says ``text`` about who is logged in (the examples' ``<p id="user">``),
    once it has loaded."""
    assert_text(page.locator("#user"), text)


def log_in(page: Page, context: BrowserContext, store: redis.Redis, app: App, user: str) -> str:
    """Log in as ``user`` through the app's form, checking that the page then shows
    ``user`` and that the record is in Redis; the session id (the cookie in the jar)."""
    page.goto(app.url + "/")
    shows(page, "Not logged in.")
    page.get_by_label("User name").fill(user)
    page.get_by_role("button", name="Log in").click()
    shows(page, f"Logged in as {user}.")
    sid = jar_cookie(context, app.url, app.cookie)
    assert sid, f"no {app.cookie} cookie in the jar: {context.cookies()}"
    assert_record(store, app, sid)
    return sid


def assert_record(store: redis.Redis, app: App, sid: str) -> None:
    """The session's record is in Redis."""
    assert store.exists(app.record(sid)), f"the session record {app.record(sid)} is gone"


def assert_logged_in(
    page: Page, context: BrowserContext, store: redis.Redis, app: App, sid: str, user: str
) -> None:
    """The jar still holds the session cookie, Redis the record, and the app's page,
    loaded afresh, still shows ``user``."""
    assert jar_cookie(context, app.url, app.cookie) == sid, context.cookies()
    assert_record(store, app, sid)
    page.goto(app.url + "/")
    shows(page, f"Logged in as {user}.")


def assert_logged_out(
    page: Page, context: BrowserContext, store: redis.Redis, app: App, sid: str
) -> None:
    """The page the logout led to says no one is logged in, the jar has no session
    cookie, and Redis no record (the logout deletes it before it answers)."""
    shows(page, "Not logged in.")
    assert page.url == app.url + "/"
    assert jar_cookie(context, app.url, app.cookie) is None, context.cookies()
    assert not store.exists(app.record(sid)), f"the session record {app.record(sid)} is left"


def click_log_out(page: Page, app: App, button: str = "Log out") -> dict[str, str]:
    """Click the page's ``button``; the headers the browser sent with the logout ``POST``,
    after checking it was answered ``303``."""
    with page.expect_response(lambda r: r.url == app.logout) as answer:
        page.get_by_role("button", name=button).click()
    assert answer.value.request.method == "POST"
    assert answer.value.status == 303, answer.value.text()
    return sent_headers(answer.value)


# -- the logout button ---------------------------------------------------------------


@pytest.mark.parametrize("app", examples_as(), indirect=True)
def test_the_logout_button_logs_out(
    app: App, page: Page, context: BrowserContext, store: redis.Redis
) -> None:
    sid = log_in(page, context, store, app, "alice")
    assert_logged_in(page, context, store, app, sid, "alice")
    before = len(audit_entries(store))

    sent = click_log_out(page, app)

    assert sent["sec-fetch-site"] == "same-origin"
    assert_logged_out(page, context, store, app, sid)
    entries = audit_entries(store)
    assert len(entries) == before + 1
    assert entries[-1]["type"] == "session_end"
    assert entries[-1]["subject"] == "alice"


# -- another site --------------------------------------------------------------------


def forged_form(target: str) -> str:
    """A page that auto-submits a form ``POST`` to ``target``."""
    return (
        f'<form id="f" method="post" action="{target}">'
        '<input type="hidden" name="next" value="/"></form>'
        '<script>document.getElementById("f").submit()</script>'
    )


def forged_fetch(target: str) -> str:
    """A page that ``POST``s to ``target`` with ``fetch``, credentials included, in
    ``no-cors`` mode (no preflight; the answer is opaque to the page)."""
    return (
        f'<script>fetch("{target}", {{method: "POST", credentials: "include", '
        'mode: "no-cors"}).then(() => { document.title = "sent"; }, '
        "(e) => { document.title = String(e); })</script>"
    )


def attack(page: Page, site: HostileSite, app: App, kind: str) -> dict[str, str]:
    """Open ``site``'s page that forges a logout of ``app`` by ``kind`` (``form`` or
    ``fetch``); the headers the browser sent with the forged ``POST``, after checking
    that the middleware answered ``403``."""
    path = f"/{app.name}-{kind}"
    site.pages[path] = (forged_form if kind == "form" else forged_fetch)(app.logout)
    with page.expect_response(lambda r: r.url == app.logout) as answer:
        page.goto(site.url + path)
    assert answer.value.request.method == "POST"
    assert answer.value.status == 403
    if kind == "form":
        page.wait_for_url(app.logout)
        assert "cross-site logout refused" in page.locator("body").inner_text()
    else:
        page.wait_for_function("document.title !== ''")
        assert page.title() == "sent"
    return sent_headers(answer.value)


@pytest.mark.parametrize("kind", ["form", "fetch"])
@pytest.mark.parametrize("app", [*examples_as(), HTTPS], indirect=True)
def test_a_page_of_another_site_cannot_log_out(
    app: App,
    kind: str,
    other_site: HostileSite,
    page: Page,
    context: BrowserContext,
    store: redis.Redis,
) -> None:
    """The examples' ``SameSite=Lax`` cookie the browser withholds cross-site anyway;
    the HTTPS app's ``SameSite=None`` cookie a forged form carries."""
    sid = log_in(page, context, store, app, "bob")
    before = audit_entries(store)

    sent = attack(page, other_site, app, kind)

    assert sent["sec-fetch-site"] == "cross-site"
    if app.same_site == "none" and kind == "form":
        # The browser sent the session cookie: only the middleware stood in the way.
        assert f"{app.cookie}={sid}" in sent.get("cookie", ""), sent
    # Refused by the middleware: an admitted logout writes an audit entry even when the
    # browser withheld the cookie.
    assert audit_entries(store) == before
    assert_logged_in(page, context, store, app, sid, "bob")


# -- GET -----------------------------------------------------------------------------

#: Content of a page of the app's own origin (a user's post, say) that GETs the logout
#: URI by itself (image, prefetch) and offers a link to it.
HOSTILE_CONTENT = """<!doctype html><html><body>
<img src="/logout" alt="">
<link rel="prefetch" href="/logout">
<a id="link" href="/logout">Cute cats</a>
</body></html>"""


@pytest.mark.parametrize("app", examples_as(), indirect=True)
def test_get_requests_cannot_log_out(
    app: App,
    page: Page,
    context: BrowserContext,
    store: redis.Redis,
) -> None:
    sid = log_in(page, context, store, app, "dave")
    before = audit_entries(store)
    # The examples have no page of user content: Playwright serves one at their origin,
    # so its subresources and link go to the real server with the session cookie.
    hostile = app.url + "/posts/1"
    page.route(hostile, lambda route: route.fulfill(body=HOSTILE_CONTENT, content_type="text/html"))

    def to_logout(kind: str) -> Callable[[Response], bool]:
        """The response to a request of the logout URI for ``kind`` (Chromium's resource
        type: ``image``, ``other`` for a prefetch, ``document`` for a navigation)."""
        return lambda r: r.url == app.logout and r.request.resource_type == kind

    with (
        page.expect_response(to_logout("image")) as image,
        page.expect_response(to_logout("other")) as prefetch,
    ):
        page.goto(hostile)
    with page.expect_response(to_logout("document")) as link:
        page.locator("#link").click()

    answers = {"image": image.value, "prefetch": prefetch.value, "link": link.value}
    for kind, answer in answers.items():
        assert answer.request.method == "GET", kind
        assert answer.status == 405, kind
        assert f"{app.cookie}={sid}" in sent_headers(answer).get("cookie", ""), kind
    page.wait_for_url(app.logout)
    assert "Method Not Allowed" in page.locator("body").inner_text()
    assert audit_entries(store) == before
    assert_logged_in(page, context, store, app, sid, "dave")


# -- Origin: null --------------------------------------------------------------------


def log_out_with_origin_null(
    page: Page, context: BrowserContext, store: redis.Redis, app: App, sid: str
) -> None:
    """Click the page's logout button, which Chromium posts with ``Origin: null`` beside
    ``Sec-Fetch-Site: same-origin``; session ``sid`` is logged out all the same."""
    sent = click_log_out(page, app)

    # What made this a 403 before core/admission.py trusted Sec-Fetch-Site first:
    assert sent.get("origin") == "null", sent
    assert sent["sec-fetch-site"] == "same-origin"
    assert_logged_out(page, context, store, app, sid)


@pytest.mark.parametrize("app", examples_as("confirm"), indirect=True)
def test_the_confirmation_page_logs_out(
    app: App, page: Page, context: BrowserContext, store: redis.Redis
) -> None:
    sid = log_in(page, context, store, app, "erin")

    shown = page.goto(app.logout)
    assert shown is not None
    assert shown.status == 200
    assert shown.headers["referrer-policy"] == "no-referrer"
    assert "Do you want to log out?" in page.locator("body").inner_text()
    assert_record(store, app, sid)
    log_out_with_origin_null(page, context, store, app, sid)


@pytest.mark.parametrize("app", examples_as("no-referrer"), indirect=True)
def test_a_logout_form_on_a_no_referrer_page_logs_out(
    app: App, page: Page, context: BrowserContext, store: redis.Redis
) -> None:
    sid = log_in(page, context, store, app, "frank")
    log_out_with_origin_null(page, context, store, app, sid)


# -- __Host- over HTTPS --------------------------------------------------------------


@pytest.mark.parametrize("app", [HTTPS], indirect=True)
def test_a_host_prefixed_cookie_is_removed_from_the_jar(
    app: App, page: Page, context: BrowserContext, store: redis.Redis
) -> None:
    sid = log_in(page, context, store, app, "grace")
    (kept,) = [c for c in context.cookies(app.url) if c.get("name") == HOST_COOKIE]
    assert kept.get("secure") is True
    assert kept.get("path") == "/"

    with page.expect_response(lambda r: r.url == app.logout) as answer:
        page.get_by_role("button", name="Log out").click()

    assert answer.value.status == 303
    set_cookies = answer.value.header_values("set-cookie")
    deletions = [line for line in set_cookies if line.startswith(HOST_COOKIE + "=")]
    assert len(deletions) == 1, set_cookies
    attributes = cookie_attributes(deletions[0])
    assert "secure" in attributes, deletions
    assert attributes.get("path") == "/", deletions
    assert "domain" not in attributes, deletions
    assert_logged_out(page, context, store, app, sid)
