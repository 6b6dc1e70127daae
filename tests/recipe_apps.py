"""The examples of the README's recipes table under their real servers, as each
framework's own test module drives them (tests/test_litestar.py, test_quart.py,
test_fastapi_users.py, test_django.py).

* Fixtures: :func:`served_fixture` makes a module's ``served`` fixture (its recipe,
  served once for the module); :func:`client` is a Redis client that does not flush
  (the module's server keeps running). A module takes them by assignment
  (``served = served_fixture(RECIPE)``, ``client = recipe_apps.client``).
* A browser, in httpx: :func:`browser` (a client on the served app), the headers it
  sends with a form ``POST`` (:func:`same_origin`, :data:`CROSS_SITE`), and who a page
  says is logged in (:func:`page_user`, from the examples' ``<p id="user">``).
* :class:`SessionRecipe`: an example keeping its sessions in Redis under a session
  cookie, as its recipe says (Litestar, Quart): log in through its form, log out with
  its button, and the checks its test modules share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from examples.demo import walk_everywhere
from examples.recipes import Recipe, serve_recipe
from tests.servers import (
    EVERYWHERE_PATH,
    REQUEST_TIMEOUT,
    audit_entries,
    cookie_attributes,
    set_cookies_of,
    sha256_hex,
    wait_indexed,
)

#: What a browser sends with a form ``POST`` from a page of another site.
CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}

_WHO = re.compile(r'<p id="user">(?:Logged in as (.+?)|Not logged in)\.</p>')


# -- fixtures ------------------------------------------------------------------------


def served_fixture(recipe: Recipe) -> Any:
    """A module-scoped fixture serving ``recipe`` by its command with its settings, once
    for the module's tests (each uses its own users); it yields the base URL. Assign it
    to the module's ``served``."""

    @pytest.fixture(scope="module")
    def served(redis_url: str) -> Iterator[str]:
        with serve_recipe(recipe, redis_url) as url:
            yield url

    return served


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client that does not flush: the module's server keeps running."""
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


# -- a browser -----------------------------------------------------------------------


def browser(url: str) -> httpx.Client:
    """A client on the app at ``url``, keeping its cookies as a browser does."""
    return httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)


def same_origin(url: str) -> dict[str, str]:
    """What a browser sends with a form ``POST`` on the page's own origin, ``url`` (a
    trailing ``/`` is not part of an origin)."""
    return {"Origin": url.rstrip("/"), "Sec-Fetch-Site": "same-origin"}


def page_user(response: httpx.Response) -> str | None:
    """Who the page says is logged in (None: "Not logged in.")."""
    assert response.status_code == 200, response.text
    found = _WHO.search(response.text)
    assert found, response.text
    return found.group(1)


# -- an example with sessions in Redis -----------------------------------------------


@dataclass(frozen=True)
class SessionRecipe:
    """An example whose recipe names its session cookie (``LOGOUT_SESSION_COOKIE``) and
    the Redis key of a session's record (``LOGOUT_SESSION_KEYS``), its subject the
    ``user`` of the record, with a login form on ``/`` and a logout button."""

    recipe: Recipe

    @property
    def cookie(self) -> str:
        return self.recipe.settings["LOGOUT_SESSION_COOKIE"]

    @property
    def session_key(self) -> str:
        """The Redis key of a session's record, ``{sid}`` standing for its id."""
        return self.recipe.settings["LOGOUT_SESSION_KEYS"]

    def record(self, sid: str) -> str:
        """The Redis key of session ``sid``'s record."""
        return self.session_key.replace("{sid}", sid)

    def log_in(self, browser: httpx.Client, user: str) -> tuple[str, str]:
        """Log in through the page's form as a browser does (the form, its ``POST``, the
        page it redirects to); the session id and the ``Set-Cookie`` that carried it."""
        form_page = browser.get("/")
        assert 'action="/login"' in form_page.text
        response = browser.post(
            "/login", data={"username": user}, headers=same_origin(str(browser.base_url))
        )
        assert response.status_code == 303, response.text
        (set_cookie,) = set_cookies_of(response, self.cookie)
        assert page_user(browser.get(response.headers["location"])) == user
        return browser.cookies[self.cookie], set_cookie

    def assert_record_of(self, client: redis.Redis, sid: str, user: str) -> None:
        """Session ``sid``'s record holds ``user`` (JSON), and the middleware indexed
        the session under ``user``."""
        assert json.loads(client.get(self.record(sid)) or b"null") == {"user": user}
        wait_indexed(client, user, [sid])

    def log_out(
        self, browser: httpx.Client, client: redis.Redis, sid: str, login_cookie: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Press the logout button of session ``sid``, which ``login_cookie`` set; check
        that the logout redirects to ``/``, expires the cookie with no ``Domain``, as it
        was set, and has deleted the record by the time it answers. The attributes of
        the expiring ``Set-Cookie`` and of ``login_cookie``."""
        response = browser.post("/logout", headers=same_origin(str(browser.base_url)))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/"
        (expired,) = set_cookies_of(response, self.cookie)
        assert expired.split(";")[0] == f"{self.cookie}="
        deletion, login = cookie_attributes(expired), cookie_attributes(login_cookie)
        assert deletion["max-age"] == "0"
        assert "domain" not in deletion
        assert "domain" not in login
        assert not client.exists(self.record(sid))
        return deletion, login

    def assert_get_and_cross_site_logouts_change_nothing(
        self, url: str, client: redis.Redis, user: str
    ) -> None:
        """Logged in as ``user`` at ``url``: ``GET /logout`` gets ``405``, another
        site's ``POST`` ``403`` with no cookie expired; the session, its record and its
        audit trail stay as they were."""
        with browser(url) as first:
            sid, _ = self.log_in(first, user)

            refused = first.get("/logout")
            assert refused.status_code == 405
            assert "POST" in refused.headers["allow"]
            forged = first.post("/logout", headers=CROSS_SITE)
            assert forged.status_code == 403
            assert not set_cookies_of(forged, self.cookie)

            assert client.exists(self.record(sid))
            assert page_user(first.get("/")) == user
        assert not session_entries(client, sid)

    def walk_everywhere(self, url: str, redis_url: str, user: str) -> None:
        """The demo's walk (:func:`examples.demo.walk_everywhere`) on the app at ``url``:
        two browsers log in as ``user``, the first posts to the everywhere URI (the
        walk's path is the recipe's); both records go, one audit entry, the second
        browser is logged out."""
        assert self.recipe.settings["LOGOUT_EVERYWHERE_PATH"] == EVERYWHERE_PATH
        lines: list[str] = []
        walk_everywhere(
            url,
            redis_url,
            session_keys=self.session_key,
            with_token=False,
            out=lines.append,
            user=user,
        )
        assert any("both sessions are gone from Redis" in line for line in lines), lines


def session_entries(client: redis.Redis, sid: str) -> list[dict[str, str]]:
    """The audit entries naming session ``sid`` (by its hash)."""
    return [e for e in audit_entries(client) if e.get("session_id_hash") == sha256_hex(sid)]


def assert_user_logout_entry(client: redis.Redis, sid: str, user: str) -> None:
    """The audit stream has one entry for session ``sid``: ``user``'s own logout, the
    subject read from the session."""
    (entry,) = session_entries(client, sid)
    assert {name: entry[name] for name in ("type", "subject", "subject_source", "reason")} == {
        "type": "session_end",
        "subject": user,
        "subject_source": "session",
        "reason": "user_logout",
    }
