"""The Quart recipe (examples/quart_app.py) under uvicorn on a real Redis, with exactly
the settings of the README's ``quart`` row.

Quart-Session 3.0 keeps a session at the key the row names (``session:{sid}``), the id
a UUID in the bare cookie, the record Quart's tagged JSON (never pickle: the recipe
reads it as ``LOGOUT_SESSION_FORMAT=json``). It writes a session only when it changed,
so a visitor gets a cookie and a record at the login, under an id the middleware has
not seen yet: the middleware learns the user at the next request with that cookie.
The middleware wraps ``app.asgi_app``.
"""

from __future__ import annotations

import secrets

import redis

from examples.recipes import read_recipes
from tests import recipe_apps
from tests.recipe_apps import (
    SessionRecipe,
    assert_user_logout_entry,
    browser,
    page_user,
    served_fixture,
)
from tests.servers import absent, assert_expires_cookie, set_cookies_of, wait_until

RECIPE = read_recipes()["quart"]
APP = SessionRecipe(RECIPE)
COOKIE = APP.cookie

served = served_fixture(RECIPE)
client = recipe_apps.client


def test_logout_ends_the_quart_session(served: str, client: redis.Redis) -> None:
    user = f"ada-{secrets.token_hex(4)}"
    with browser(served) as first:
        anonymous = first.get("/")
        assert page_user(anonymous) is None
        assert not set_cookies_of(anonymous, COOKIE)  # no session until the login

        sid, login_cookie = APP.log_in(first, user)
        # Learned after the page the login redirected to, the first request with the id.
        APP.assert_record_of(client, sid, user)

        deletion, login = APP.log_out(first, client, sid, login_cookie)
        assert deletion["path"] == login["path"] == "/"

    assert_user_logout_entry(client, sid, user)

    with browser(served) as replay:
        response = replay.get("/", headers={"Cookie": f"{COOKIE}={sid}"})
        assert page_user(response) is None
        # Quart-Session saw no cookie and starts no session: the middleware expires it.
        assert_expires_cookie(response, COOKIE)
    assert wait_until(absent(client, APP.record(sid)))


def test_get_and_cross_site_logouts_change_nothing(served: str, client: redis.Redis) -> None:
    APP.assert_get_and_cross_site_logouts_change_nothing(
        served, client, f"bo-{secrets.token_hex(4)}"
    )


def test_logging_out_everywhere_ends_both_quart_sessions(served: str, redis_url: str) -> None:
    # The demo's walk: two browsers log in as one user, the first posts to the
    # everywhere URI (the walk's path is the recipe's); both records go, one audit
    # entry, the second browser is logged out.
    APP.walk_everywhere(served, redis_url, f"cy-{secrets.token_hex(4)}")
