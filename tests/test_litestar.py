"""The Litestar recipe (examples/litestar_app.py) under uvicorn on a real Redis, with
exactly the settings of the README's ``litestar`` row.

Litestar keeps server-side sessions in its ``RedisStore``: the record of a session is
the key the row names (``LITESTAR_sessions:{sid}``), JSON bytes; it writes a record for
every visitor, and keeps the session id across a login. The middleware wraps the whole
app; listed in ``Litestar(middleware=[...])`` it would never see ``/logout``, which no
route matches (the last test shows both).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import httpx
import pytest
import redis
from litestar import Litestar, get
from litestar.middleware import DefineMiddleware

from examples.demo import walk_everywhere
from examples.recipes import read_recipes, serve_recipe
from logout_middleware import LogoutConfig, LogoutMiddleware
from tests.servers import (
    REQUEST_TIMEOUT,
    absent,
    audit_entries,
    set_cookies_of,
    sha256_hex,
    wait_indexed,
    wait_until,
)

RECIPE = read_recipes()["litestar"]
COOKIE = RECIPE.settings["LOGOUT_SESSION_COOKIE"]
#: The Redis key of a session's record, ``{sid}`` standing for its id.
SESSION_KEY = RECIPE.settings["LOGOUT_SESSION_KEYS"]
EVERYWHERE_PATH = RECIPE.settings["LOGOUT_EVERYWHERE_PATH"]
CROSS_SITE = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}


@pytest.fixture(scope="module")
def served(redis_url: str) -> Iterator[str]:
    """The example, served once for this module's tests (each uses its own users)."""
    with serve_recipe(RECIPE, redis_url) as url:
        yield url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A Redis client that does not flush: the module's server keeps running."""
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


def record_key(sid: str) -> str:
    return SESSION_KEY.replace("{sid}", sid)


def same_origin(url: str) -> dict[str, str]:
    """What a browser sends with a form POST on the page's own origin."""
    return {"Origin": url, "Sec-Fetch-Site": "same-origin"}


def attributes(set_cookie: str) -> dict[str, str]:
    """The attributes of a ``Set-Cookie`` value, names in lower case, without its value."""
    parts = [part.strip() for part in set_cookie.split(";")[1:]]
    return {name.lower(): value for name, _, value in (part.partition("=") for part in parts)}


def page_user(response: httpx.Response) -> str | None:
    """Who the page says is logged in (None: "Not logged in.")."""
    assert response.status_code == 200, response.text
    if "Not logged in." in response.text:
        return None
    start = response.text.index("Logged in as ") + len("Logged in as ")
    return response.text[start : response.text.index(".</p>", start)]


def log_in(browser: httpx.Client, user: str) -> tuple[str, str]:
    """Log in through the page's form as a browser does; the session id and the
    ``Set-Cookie`` that carried it."""
    form_page = browser.get("/")
    assert 'action="/login"' in form_page.text
    response = browser.post(
        "/login", data={"username": user}, headers=same_origin(str(browser.base_url))
    )
    assert response.status_code == 303, response.text
    (set_cookie,) = set_cookies_of(response, COOKIE)
    assert page_user(browser.get(response.headers["location"])) == user
    return browser.cookies[COOKIE], set_cookie


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)


def test_logout_ends_the_litestar_session(served: str, client: redis.Redis) -> None:
    user = f"ada-{secrets.token_hex(4)}"
    with browser(served) as first:
        anonymous = first.get("/")
        assert page_user(anonymous) is None
        (anonymous_cookie,) = set_cookies_of(anonymous, COOKIE)
        anonymous_sid = first.cookies[COOKIE]
        assert client.get(record_key(anonymous_sid)) == b"{}"  # a record for every visitor

        sid, login_cookie = log_in(first, user)
        assert sid == anonymous_sid  # Litestar keeps the id across the login
        assert json.loads(client.get(record_key(sid)) or b"null") == {"user": user}
        # The middleware read the record again after the login: it knows the user.
        wait_indexed(client, user, [sid])

        response = first.post("/logout", headers=same_origin(served))
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/"
        (expired,) = set_cookies_of(response, COOKIE)
        assert expired.split(";")[0] == f"{COOKIE}="
        deletion, login = attributes(expired), attributes(login_cookie)
        assert deletion["max-age"] == "0"
        assert deletion["path"] == login["path"] == attributes(anonymous_cookie)["path"]
        assert "domain" not in deletion
        assert "domain" not in login
        assert not client.exists(record_key(sid))

    (entry,) = [e for e in audit_entries(client) if e["session_id_hash"] == sha256_hex(sid)]
    assert {name: entry[name] for name in ("type", "subject", "subject_source", "reason")} == {
        "type": "session_end",
        "subject": user,
        "subject_source": "session",
        "reason": "user_logout",
    }

    with browser(served) as replay:
        response = replay.get("/", headers={"Cookie": f"{COOKIE}={sid}"})
        assert page_user(response) is None
        # Litestar, not seeing the cookie, starts a new session: never the old id again.
        assert all(f"{COOKIE}={sid}" not in value for value in set_cookies_of(response, COOKIE))
    assert wait_until(absent(client, record_key(sid)))


def test_get_and_cross_site_logouts_change_nothing(served: str, client: redis.Redis) -> None:
    user = f"bo-{secrets.token_hex(4)}"
    with browser(served) as first:
        sid, _ = log_in(first, user)

        refused = first.get("/logout")
        assert refused.status_code == 405
        assert "POST" in refused.headers["allow"]
        forged = first.post("/logout", headers=CROSS_SITE)
        assert forged.status_code == 403
        assert not set_cookies_of(forged, COOKIE)

        assert client.exists(record_key(sid))
        assert page_user(first.get("/")) == user
    assert not [e for e in audit_entries(client) if e["session_id_hash"] == sha256_hex(sid)]


def test_logging_out_everywhere_ends_both_litestar_sessions(
    served: str, redis_url: str, client: redis.Redis
) -> None:
    # The demo's walk: two browsers log in as one user, the first posts to the
    # everywhere URI; both records go, one audit entry, the second is logged out.
    lines: list[str] = []
    assert EVERYWHERE_PATH == "/logout/everywhere"
    walk_everywhere(
        served,
        redis_url,
        session_keys=SESSION_KEY,
        with_token=False,
        out=lines.append,
        user=f"cy-{secrets.token_hex(4)}",
    )
    assert any("both sessions are gone from Redis" in line for line in lines), lines


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
