"""The fastapi-users recipe (examples/fastapi_users_app.py) under uvicorn on a real
Redis, with exactly the settings of the README's ``fastapi-users`` row.

fastapi-users' ``RedisStrategy`` keeps each token server-side, ``fastapi_users_token:
<token>`` holding the user's id; its bearer transport sends the token in
``Authorization``, its cookie transport in the ``fastapiusersauth`` cookie. A logout
with either must delete that record in its own transaction, expire the cookie, leave the
token refused, and write an audit entry that names the token only by its SHA-256.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import cast

import httpx
import pytest
import redis

from examples.fastapi_users_app import DEMO_EMAIL, DEMO_PASSWORD
from examples.recipes import read_recipes
from tests import recipe_apps
from tests.recipe_apps import browser, same_origin, served_fixture
from tests.servers import audit_entries, set_cookies_of, sha256_hex, token_key

RECIPE = read_recipes()["fastapi-users"]
#: The Redis key of a token's record, ``{token}`` standing for the token.
TOKEN_KEY = RECIPE.settings["LOGOUT_TOKEN_KEYS"]
COOKIE = RECIPE.settings["LOGOUT_TOKEN_COOKIE"]

served = served_fixture(RECIPE)
client = recipe_apps.client


@pytest.fixture
def http(served: str) -> Iterator[httpx.Client]:
    """A client whose requests carry only the credentials the test gives them (its
    cookie jar is emptied after each login)."""
    with browser(served) as found:
        yield found


def record_key(token: str) -> str:
    return TOKEN_KEY.replace("{token}", token)


def on_page(http: httpx.Client) -> dict[str, str]:
    """What a browser sends with a form ``POST`` on the page of ``http``'s app."""
    return same_origin(str(http.base_url))


def register(http: httpx.Client) -> tuple[str, str]:
    """A new user through fastapi-users' ``/auth/register``: email and password."""
    email, password = f"user-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(12)
    response = http.post("/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    return email, password


def log_in_bearer(http: httpx.Client, email: str, password: str) -> str:
    response = http.post("/auth/bearer/login", data={"username": email, "password": password})
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "bearer"
    token: str = response.json()["access_token"]
    return token


def log_in_cookie(http: httpx.Client, email: str, password: str) -> str:
    response = http.post("/auth/cookie/login", data={"username": email, "password": password})
    assert response.status_code == 204, response.text
    (set_cookie,) = set_cookies_of(response, COOKIE)
    token = set_cookie.split(";", 1)[0].split("=", 1)[1]
    assert token
    http.cookies.clear()
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token}"}


def entry_of(client: redis.Redis, token: str) -> dict[str, str]:
    """The one audit entry naming ``token`` (by its hash); asserts the raw token is in
    no field of it."""
    (entry,) = [e for e in audit_entries(client) if e.get("token_hash") == sha256_hex(token)]
    for name, value in entry.items():
        assert token not in f"{name}={value}", name
    return entry


def assert_expired(response: httpx.Response, name: str) -> None:
    (set_cookie,) = set_cookies_of(response, name)
    assert set_cookie.split(";", 1)[0] == f"{name}=", set_cookie
    assert "max-age=0" in set_cookie.lower(), set_cookie


def refused_by_the_middleware(response: httpx.Response) -> bool:
    return response.status_code == 401 and 'error="invalid_token"' in response.headers.get(
        "www-authenticate", ""
    )


def test_demo_user_logs_in_on_both_transports(http: httpx.Client, client: redis.Redis) -> None:
    for token in (
        log_in_bearer(http, DEMO_EMAIL, DEMO_PASSWORD),
        log_in_cookie(http, DEMO_EMAIL, DEMO_PASSWORD),
    ):
        user_id = cast("bytes | None", client.get(record_key(token)))
        assert user_id is not None
        for headers in (bearer(token), cookie(token)):  # one strategy behind both
            me = http.get("/me", headers=headers)
            assert me.status_code == 200, me.text
            assert me.json() == {"id": user_id.decode(), "email": DEMO_EMAIL}
    assert "Logged in as demo@example.com." in http.get("/", headers=cookie(token)).text
    assert "Not logged in." in http.get("/").text


def test_bearer_logout_deletes_the_token_record(http: httpx.Client, client: redis.Redis) -> None:
    email, password = register(http)
    token = log_in_bearer(http, email, password)
    other = log_in_bearer(http, email, password)  # another client of the same user
    assert client.exists(record_key(token))

    response = http.post("/logout", headers={**bearer(token), "Accept": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    # Gone when the logout answers: deleted in its transaction, not after.
    assert not client.exists(record_key(token))
    assert client.exists(token_key(token))
    assert_expired(response, COOKIE)

    assert refused_by_the_middleware(http.get("/me", headers=bearer(token)))
    refused = http.get("/me", headers=cookie(token))
    assert refused.status_code == 401  # fastapi-users: its record is gone
    assert http.get("/me", headers=bearer(other)).status_code == 200  # the other client
    assert client.exists(record_key(other))

    entry = entry_of(client, token)
    assert (entry["store"], entry["type"], entry["tokens_ended"]) == ("ok", "api_session_end", "1")
    assert entry["schemes"] == "session,bearer"


def test_cookie_logout_deletes_the_record_and_expires_the_cookie(
    http: httpx.Client, client: redis.Redis
) -> None:
    email, password = register(http)
    token = log_in_cookie(http, email, password)
    assert client.exists(record_key(token))
    assert f"Logged in as {email}." in http.get("/", headers=cookie(token)).text

    response = http.post("/logout", headers={**cookie(token), **on_page(http)})
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/"
    assert not client.exists(record_key(token))
    assert client.exists(token_key(token))
    assert_expired(response, COOKIE)

    # The browser's old cookie, replayed: fastapi-users finds no record.
    assert http.get("/me", headers=cookie(token)).status_code == 401
    assert "Not logged in." in http.get("/", headers=cookie(token)).text
    # The same token as a bearer token: refused by the middleware (it was revoked).
    assert refused_by_the_middleware(http.get("/me", headers=bearer(token)))

    entry = entry_of(client, token)
    assert entry["store"] == "ok"
    assert COOKIE in entry["cookies"].split(",")


def test_scheme_session_leaves_the_token_alone(http: httpx.Client, client: redis.Redis) -> None:
    """The token records belong to the bearer scheme: ``scheme=session`` keeps them,
    ``scheme=bearer`` ends them."""
    email, password = register(http)
    token = log_in_cookie(http, email, password)
    response = http.post("/logout?scheme=session", headers={**cookie(token), **on_page(http)})
    assert response.status_code == 303, response.text
    assert set_cookies_of(response, COOKIE) == []
    assert http.get("/me", headers=cookie(token)).status_code == 200
    assert client.exists(record_key(token))

    response = http.post("/logout?scheme=bearer", headers={**cookie(token), **on_page(http)})
    assert response.status_code == 303, response.text
    assert_expired(response, COOKIE)
    assert not client.exists(record_key(token))
    assert http.get("/me", headers=cookie(token)).status_code == 401
