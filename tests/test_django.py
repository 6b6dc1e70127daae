"""Django 5.2 adopting the middleware (examples/django_app), on real servers and Redis.

The settings are the README's ``django-asgi`` row (sessions on the ``cache`` engine) and
``django-wsgi`` row (the ``cached_db`` engine), read through
:func:`examples.recipes.read_recipes`; the cache backend (Django's own ``RedisCache`` or
django-redis) and the engine are chosen by the example's ``DJANGO_CACHE`` and
``DJANGO_SESSION_ENGINE``, so that each of the four stores runs under one of the two
servers (uvicorn for ``asgi.py``, waitress for ``wsgi.py``). The tests log in as a
browser does, through Django's login form with its CSRF token, and never import Django.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from examples.recipes import Recipe, read_recipes, serve_recipe
from tests.recipe_apps import browser, page_user, same_origin
from tests.servers import (
    REQUEST_TIMEOUT,
    absent,
    assert_expires_cookie,
    audit_entries,
    set_cookies_of,
    tombstone_key,
    wait_indexed,
    wait_until,
)

RECIPES = read_recipes()
#: Sessions on ``django.contrib.sessions.backends.cache``, served by uvicorn (ASGI).
CACHE_ROW = RECIPES["django-asgi"]
#: Sessions on ``django.contrib.sessions.backends.cached_db``, served by waitress (WSGI).
CACHED_DB_ROW = RECIPES["django-wsgi"]

#: Django's cookies.
SESSION_COOKIE = "sessionid"
CSRF_COOKIE = "csrftoken"
#: The demo users and their password (examples/django_app/database.py).
USER, OTHER_USER = "alice", "bob"
PASSWORD = "logout-demo-password"

_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


@dataclasses.dataclass(frozen=True)
class Store:
    """One way to run the example: its entry point and where its sessions are."""

    #: ``asgi`` (examples.django_app.asgi under uvicorn) or ``wsgi`` (waitress).
    face: str
    #: ``DJANGO_CACHE``: ``redis`` (Django's RedisCache) or ``django-redis``.
    cache: str
    #: ``DJANGO_SESSION_ENGINE``: ``cache`` or ``cached_db``.
    engine: str

    def recipe(self) -> Recipe:
        """The README's settings for this engine, served by this entry point's command."""
        settings_row = CACHE_ROW if self.engine == "cache" else CACHED_DB_ROW
        server_row = CACHE_ROW if self.face == "asgi" else CACHED_DB_ROW
        return dataclasses.replace(settings_row, server=server_row.server)

    def session_key(self, sid: str) -> str:
        """The Redis key of session ``sid``, as the recipe names it."""
        return self.recipe().settings["LOGOUT_SESSION_KEYS"].replace("{sid}", sid)

    def expires_csrf_cookie(self) -> bool:
        """Whether the recipe's ``LOGOUT_COOKIES`` expires Django's CSRF cookie too."""
        return CSRF_COOKIE in self.recipe().settings.get("LOGOUT_COOKIES", "").split(",")

    @property
    def id(self) -> str:
        """The test id: ``asgi-redis-cache``."""
        return f"{self.face}-{self.cache}-{self.engine}"


#: Every cache backend with every engine, and each server with each backend and engine.
STORES = [
    Store("asgi", "redis", "cache"),
    Store("asgi", "django-redis", "cached_db"),
    Store("wsgi", "django-redis", "cache"),
    Store("wsgi", "redis", "cached_db"),
]


@contextlib.contextmanager
def serve_django(store: Store, redis_url: str, db: Path, **settings: str) -> Iterator[str]:
    """Serve the example as ``store`` says, its database at ``db``, with the recipe's
    settings (``settings`` adds or overrides ``LOGOUT_*`` ones); yield its base URL."""
    app_env = {"DJANGO_CACHE": store.cache, "DJANGO_SESSION_ENGINE": store.engine}
    with serve_recipe(store.recipe(), redis_url, DJANGO_DB=str(db), **app_env, **settings) as url:
        yield url


def who(client: httpx.Client) -> str | None:
    """The user ``GET /`` says is logged in, or None for "Not logged in"."""
    return page_user(client.get("/"))


def replay(url: str, sid: str) -> tuple[str | None, httpx.Response]:
    """``GET /`` with nothing but the session cookie ``sid``: who it says is logged in,
    and the response."""
    response = httpx.get(
        f"{url}/", headers={"Cookie": f"{SESSION_COOKIE}={sid}"}, timeout=REQUEST_TIMEOUT
    )
    return page_user(response), response


@contextlib.contextmanager
def logged_in(url: str, user: str) -> Iterator[tuple[httpx.Client, str]]:
    """A browser-like client logged in as ``user`` through Django's form, and its
    session id (the ``sessionid`` cookie)."""
    with browser(url) as client:
        page = client.get("/")
        assert "Not logged in" in page.text
        token = _CSRF_FIELD.search(page.text)
        assert token, page.text
        response = client.post(
            "/login",
            data={"username": user, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
            headers={"Origin": url},
        )
        assert response.status_code == 303, response.text
        assert set_cookies_of(response, SESSION_COOKIE), response.headers
        assert who(client) == user
        yield client, client.cookies[SESSION_COOKIE]


def user_id(db: Path, user: str) -> str:
    """The primary key of ``user`` in the example's database: the subject Django keeps
    at ``_auth_user_id``."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        row = connection.execute("SELECT id FROM auth_user WHERE username = ?", (user,)).fetchone()
    assert row is not None, f"no user {user!r} in {db}"
    return str(row[0])


def session_rows(db: Path, sid: str) -> int:
    """How many rows of ``django_session`` hold session ``sid`` (``cached_db`` writes them)."""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        query = "SELECT COUNT(*) FROM django_session WHERE session_key = ?"
        return int(connection.execute(query, (sid,)).fetchone()[0])


def sessions_in_redis(client: redis.Redis) -> set[str]:
    """Every key Django's session engines wrote in Redis."""
    return {key.decode() for key in client.scan_iter(match="*django.contrib.sessions.*")}


def browser_post(client: httpx.Client, path: str, url: str) -> httpx.Response:
    """``POST path`` as the example's logout form sends it from the page at ``url``."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return client.post(path, headers={**same_origin(url), **form})


def test_the_django_rows_are_the_cache_engine_on_asgi_and_cached_db_on_wsgi() -> None:
    assert "examples.django_app.asgi:application" in CACHE_ROW.server
    assert "examples.django_app.wsgi:application" in CACHED_DB_ROW.server
    for row, prefix in ((CACHE_ROW, "cache"), (CACHED_DB_ROW, "cached_db")):
        assert row.settings["LOGOUT_SESSION_KEYS"] == f":1:django.contrib.sessions.{prefix}{{sid}}"
        assert row.settings["LOGOUT_SESSION_COOKIE"] == SESSION_COOKIE
        assert row.settings["LOGOUT_SESSION_SUBJECT"] == "_auth_user_id"
        assert row.settings["LOGOUT_SESSION_FORMAT"] == "pickle"
    # One row leaves Django's CSRF cookie alone, the other expires it too.
    # (The session cookie is always expired; LOGOUT_COOKIES names the others.)
    assert "LOGOUT_COOKIES" not in CACHE_ROW.settings
    assert CACHED_DB_ROW.settings["LOGOUT_COOKIES"] == CSRF_COOKIE


@pytest.mark.parametrize("store", STORES, ids=[store.id for store in STORES])
def test_a_django_login_is_logged_out_for_good(
    store: Store, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    db = tmp_path / "django.sqlite3"
    with serve_django(store, redis_url, db) as url, logged_in(url, USER) as (client, sid):
        subject = user_id(db, USER)
        key = store.session_key(sid)
        # The recipe names the very key Django wrote, and no other session key exists.
        assert sessions_in_redis(redis_client) == {key}
        assert session_rows(db, sid) == (1 if store.engine == "cached_db" else 0)
        wait_indexed(redis_client, subject, [sid])
        before = len(audit_entries(redis_client))
        # A link, a prefetch or another site's form logs no one out.
        assert client.get("/logout").status_code == 405
        hostile = client.post("/logout", headers={"Sec-Fetch-Site": "cross-site"})
        assert hostile.status_code == 403
        assert redis_client.exists(key)
        assert who(client) == USER

        response = browser_post(client, "/logout", url)

        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/"
        assert_expires_cookie(response, SESSION_COOKIE)
        if store.expires_csrf_cookie():
            assert_expires_cookie(response, CSRF_COOKIE)
        else:
            assert not set_cookies_of(response, CSRF_COOKIE), response.headers
        assert not redis_client.exists(key)
        entries = audit_entries(redis_client)[before:]
        assert len(entries) == 1, entries
        assert entries[0]["type"] == "session_end"
        assert entries[0]["reason"] == "user_logout"
        assert entries[0]["subject"] == subject
        assert entries[0]["subject_source"] == "session"
        assert who(client) is None

        # The old cookie, replayed, never logs in again; with cached_db its database row
        # is still there, but the cookie is taken out before Django could load it.
        user, response = replay(url, sid)
        assert user is None
        assert_expires_cookie(response, SESSION_COOKIE)
        assert session_rows(db, sid) == (1 if store.engine == "cached_db" else 0)
        assert wait_until(absent(redis_client, key))


@pytest.mark.parametrize("store", [STORES[0], STORES[3]], ids=[STORES[0].id, STORES[3].id])
def test_logging_out_everywhere_ends_every_django_session_of_the_user(
    store: Store, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    db = tmp_path / "django.sqlite3"
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(serve_django(store, redis_url, db))
        laptop, laptop_sid = stack.enter_context(logged_in(url, USER))
        phone, phone_sid = stack.enter_context(logged_in(url, USER))
        other, other_sid = stack.enter_context(logged_in(url, OTHER_USER))
        subject = user_id(db, USER)
        wait_indexed(redis_client, subject, [laptop_sid, phone_sid])
        wait_indexed(redis_client, user_id(db, OTHER_USER), [other_sid])
        before = len(audit_entries(redis_client))

        everywhere = CACHE_ROW.settings["LOGOUT_EVERYWHERE_PATH"]
        response = browser_post(laptop, everywhere, url)

        assert response.status_code == 303, response.text
        assert_expires_cookie(response, SESSION_COOKIE)
        for sid in (laptop_sid, phone_sid):
            assert wait_until(absent(redis_client, store.session_key(sid))), sid
        assert who(laptop) is None
        assert who(phone) is None
        # Another user's session is untouched.
        assert who(other) == OTHER_USER
        assert redis_client.exists(store.session_key(other_sid))
        entries = audit_entries(redis_client)[before:]
        assert [entry["reason"] for entry in entries] == ["everywhere"], entries
        assert entries[0]["subject"] == subject
        assert entries[0]["type"] == "session_end"


def test_with_cached_db_only_the_tombstone_keeps_the_database_row_out(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The middleware speaks Redis only: ``cached_db``'s database row outlives the
    logout, and the session tombstone alone keeps its cookie from Django. Were the
    tombstone gone (``LOGOUT_SESSION_TTL`` shorter than ``SESSION_COOKIE_AGE``, or a
    Redis that lost it), the row would log the old cookie in again after a restart:
    what the README's ``django-wsgi`` row warns about."""
    store = Store("wsgi", "django-redis", "cached_db")
    db = tmp_path / "django.sqlite3"
    # Both servers sign the session's auth hash with the same key, as a restart does.
    secret = {"DJANGO_SECRET_KEY": "test-secret-key-" + "0123456789abcdef" * 3}
    with serve_django(store, redis_url, db, **secret) as url, logged_in(url, USER) as (client, sid):
        assert browser_post(client, "/logout", url).status_code == 303
        assert replay(url, sid)[0] is None
    assert session_rows(db, sid) == 1
    assert redis_client.delete(tombstone_key(sid)) == 1
    with serve_django(store, redis_url, db, **secret) as url:
        assert replay(url, sid)[0] == USER
