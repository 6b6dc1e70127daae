"""The Litestar recipe (examples/litestar_app.py) under uvicorn on a real Redis, with
exactly the settings of the README's ``litestar`` row.

Litestar keeps server-side sessions in its ``RedisStore``: the record of a session is
the key the row names (``LITESTAR_sessions:{sid}``), JSON bytes; it writes a record for
every visitor, and keeps the session id across a login. The middleware wraps the whole
app; listed in ``Litestar(middleware=[...])`` it would never see ``/logout``, which no
route matches (the last test shows both).
"""

from __future__ import annotations

import secrets

import httpx
import pytest
import redis
from litestar import Litestar, get
from litestar.middleware import DefineMiddleware

from examples.recipes import read_recipes
from logout_middleware import LogoutConfig, LogoutMiddleware
from tests import recipe_apps
from tests.recipe_apps import (
    SessionRecipe,
    assert_user_logout_entry,
    browser,
    page_user,
    served_fixture,
)
from tests.servers import absent, cookie_attributes, set_cookies_of, wait_until

RECIPE = read_recipes()["litestar"]
APP = SessionRecipe(RECIPE)
COOKIE = APP.cookie

served = served_fixture(RECIPE)
client = recipe_apps.client


def test_logout_ends_the_litestar_session(served: str, client: redis.Redis) -> None:
    user = f"ada-{secrets.token_hex(4)}"
    with browser(served) as first:
        anonymous = first.get("/")
        assert page_user(anonymous) is None
        (anonymous_cookie,) = set_cookies_of(anonymous, COOKIE)
        anonymous_sid = first.cookies[COOKIE]
        assert client.get(APP.record(anonymous_sid)) == b"{}"  # a record for every visitor

        sid, login_cookie = APP.log_in(first, user)
        assert sid == anonymous_sid  # Litestar keeps the id across the login
        # The middleware read the record again after the login: it knows the user.
        APP.assert_record_of(client, sid, user)

        deletion, login = APP.log_out(first, client, sid, login_cookie)
        assert deletion["path"] == login["path"] == cookie_attributes(anonymous_cookie)["path"]

    assert_user_logout_entry(client, sid, user)

    with browser(served) as replay:
        response = replay.get("/", headers={"Cookie": f"{COOKIE}={sid}"})
        assert page_user(response) is None
        # Litestar, not seeing the cookie, starts a new session: never the old id again.
        assert all(f"{COOKIE}={sid}" not in value for value in set_cookies_of(response, COOKIE))
    assert wait_until(absent(client, APP.record(sid)))


def test_get_and_cross_site_logouts_change_nothing(served: str, client: redis.Redis) -> None:
    APP.assert_get_and_cross_site_logouts_change_nothing(
        served, client, f"bo-{secrets.token_hex(4)}"
    )


def test_logging_out_everywhere_ends_both_litestar_sessions(served: str, redis_url: str) -> None:
    # The demo's walk: two browsers log in as one user, the first posts to the
    # everywhere URI; both records go, one audit entry, the second is logged out.
    APP.walk_everywhere(served, redis_url, f"cy-{secrets.token_hex(4)}")


@get("/", sync_to_thread=False)
def hello() -> str:
    """The one route of the in-process apps below."""
    return "hello"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("adoption", "logout_status"),
    [
        pytest.param("wrapped", 303, id="wrapping-the-app"),
        pytest.param("listed", 404, id="in-the-middleware-list"),
    ],
)
async def test_only_the_wrapped_app_answers_the_logout_uri(
    adoption: str, logout_status: int
) -> None:
    # Cookies only (no Redis): enough to see who answers POST /logout.
    config = LogoutConfig()
    if adoption == "wrapped":
        app: object = LogoutMiddleware(
            Litestar(route_handlers=[hello], logging_config=None),
            config=config,
        )
    else:
        app = Litestar(
            route_handlers=[hello],
            middleware=[DefineMiddleware(LogoutMiddleware, config=config)],
            logging_config=None,
        )
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post("/logout", headers={"Cookie": f"{COOKIE}=made-up"})
        assert response.status_code == logout_status
        assert bool(set_cookies_of(response, COOKIE)) is (adoption == "wrapped")
        assert (await http.get("/")).text == "hello"
