"""Token records (``LOGOUT_TOKEN_KEYS``) and the token cookie (``LOGOUT_TOKEN_COOKIE``):
fastapi-users' ``RedisStrategy`` keeps ``fastapi_users_token:<token>`` in Redis, and its
``CookieTransport`` carries the token in a cookie. The core's plan first (no server),
then both adapters on a real Redis."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import pytest
import redis

from logout_middleware.core import LogoutCore, StoreOps, StoreOutcome
from logout_middleware.core.revocation import member
from logout_middleware.core.tokens import MAX_TOKEN_LENGTH, cookie_token, token_records
from logout_middleware.events import LogoutEvent

from .harness import KINDS, Harness, Kind, harness
from .servers import (
    ACCEPT_JSON,
    EVENTS_STREAM,
    JWT_KEY,
    audit_entries,
    hs256_token,
    sha256_hex,
    token_key,
    wait_until,
)
from .test_core import Driver, head, make_core
from .test_middleware import cmdstat_calls, dead_redis_url, everything_in_redis, expired_cookies

#: Tokens as fastapi-users makes them (``secrets.token_urlsafe(32)``).
TOKEN = "Jx3q0dF2mWmH5Vw9sQzY1bT7uKcRnE8aPgL4oXiC6hA"
OTHER = "pR7vN2kD9sWq4ZtB1yXe6LcM3jHf8UaGo5VnQ0iKwEs"
COOKIE = "fastapiusersauth"
RECORD = "fastapi_users_token:{token}"
TEMPLATES = (RECORD, "app:token-meta:{token}:v1")
#: The middleware's settings of the fastapi-users recipe.
SETTINGS: dict[str, Any] = {"token_keys": (RECORD,), "token_cookie": COOKIE}


def records_of(token: str, templates: tuple[str, ...] = TEMPLATES) -> tuple[str, ...]:
    return tuple(t.replace("{token}", token) for t in templates)


def without_records(ops: StoreOps, *tokens: str) -> StoreOps:
    """``ops`` without the tokens' own records (the keys the app's library chose)."""
    keys = {key for token in tokens for key in records_of(token)}
    return dataclasses.replace(ops, discard=tuple(k for k in ops.discard if k not in keys))


def logout_core(**settings: Any) -> LogoutCore:
    return make_core(**{"token_keys": TEMPLATES, "token_cookie": COOKIE, **settings})


def run_logout(core: LogoutCore, **request: Any) -> tuple[Driver, Any, tuple[LogoutEvent, ...]]:
    driver = Driver(core)
    response, events = driver.run(core.respond(head(**request), b"", "logout"))
    return driver, response, events


def set_cookie_names(response: Any) -> list[str]:
    return [v.split("=", 1)[0] for k, v in response.headers if k.lower() == "set-cookie"]


# -- the pieces --------------------------------------------------------------------------


def test_token_records_fill_each_template() -> None:
    assert token_records(TOKEN.encode(), TEMPLATES) == records_of(TOKEN)
    assert token_records(TOKEN.encode(), ()) == ()


@pytest.mark.parametrize(
    "token",
    [b"t\xf6k", b"has space", b"tab\there", b"\x00nul"],
    ids=["latin-1", "space", "tab", "nul"],
)
def test_a_token_that_is_not_printable_ascii_names_no_record(token: bytes) -> None:
    assert token_records(token, TEMPLATES) == ()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        (TOKEN, TOKEN.encode()),
        (f" {TOKEN} ", TOKEN.encode()),
        ("x" * MAX_TOKEN_LENGTH, b"x" * MAX_TOKEN_LENGTH),
        ("x" * (MAX_TOKEN_LENGTH + 1), None),
    ],
    ids=["absent", "empty", "blank", "token", "padded", "longest", "too-long"],
)
def test_cookie_token(value: str | None, expected: bytes | None) -> None:
    assert cookie_token(value) == expected


# -- the core's plan ------------------------------------------------------------------------


def test_bearer_token_records_go_in_the_one_transaction() -> None:
    driver, _, (event,) = run_logout(logout_core(), authorization=f"Bearer {TOKEN}")
    ops = driver.ops  # exactly one StoreOps: one MULTI/EXEC
    assert set(records_of(TOKEN)) <= set(ops.discard)
    assert not set(records_of(TOKEN)) & set(ops.delete)  # not counted as session records
    assert ("logout:revoked:" + sha256_hex(TOKEN), "1", 3600) in ops.sets
    assert event.token_hash == sha256_hex(TOKEN)
    assert (event.tokens_ended, event.sessions_deleted) == (1, 0)


def test_cookie_token_alone_is_the_request_token() -> None:
    core = logout_core()
    driver, response, (event,) = run_logout(core, cookie=f"{COOKIE}={TOKEN}; other=1")
    ops = driver.ops
    assert set(records_of(TOKEN)) <= set(ops.discard)
    assert ("logout:revoked:" + sha256_hex(TOKEN), "1", 3600) in ops.sets
    assert (event.token_hash, event.type, event.tokens_ended) == (
        sha256_hex(TOKEN),
        "api_session_end",
        1,
    )
    assert event.cookies == ("session", COOKIE)
    assert set_cookie_names(response) == ["session", COOKIE]
    assert core.mirror is not None
    assert member(sha256_hex(TOKEN)) in core.mirror.state.tokens
    assert ops.extra_entries == ()


def test_same_token_in_header_and_cookie_is_one_context() -> None:
    driver, _, events = run_logout(
        logout_core(), authorization=f"Bearer {TOKEN}", cookie=f"{COOKIE}={TOKEN}"
    )
    assert len(events) == 1
    assert driver.ops.extra_entries == ()
    assert driver.ops.discard == records_of(TOKEN)


def test_a_different_cookie_token_ends_too_with_an_entry_of_its_own() -> None:
    """Both tokens end in the one transaction; the cookie's gets its own audit entry, so
    that every process's revocation cache learns it from the stream."""
    core = logout_core()
    driver, response, (first, second) = run_logout(
        core, authorization=f"Bearer {TOKEN}", cookie=f"{COOKIE}={OTHER}"
    )
    ops = driver.ops
    assert ops.discard == records_of(TOKEN) + records_of(OTHER)
    denied = {key for key, _, _ in ops.sets}
    assert {"logout:revoked:" + sha256_hex(t) for t in (TOKEN, OTHER)} <= denied
    (extra,) = ops.extra_entries
    assert dict(extra)["token_hash"] == sha256_hex(OTHER)
    assert dict(extra)["id"] == second.id != first.id
    assert (first.token_hash, second.token_hash) == (sha256_hex(TOKEN), sha256_hex(OTHER))
    assert (second.type, second.schemes, second.cookies, second.tokens_ended) == (
        "api_session_end",
        ("bearer",),
        (),
        1,
    )
    assert second.redirect == first.redirect == "/"
    assert second.store == first.store == "ok"
    assert set_cookie_names(response) == ["session", COOKIE]
    assert core.mirror is not None
    assert {member(sha256_hex(t)) for t in (TOKEN, OTHER)} <= core.mirror.state.tokens
    # logout() gives the request's own event; respond() (the adapters) gives both.
    _, only = Driver(core).run(
        core.logout(head(authorization=f"Bearer {TOKEN}", cookie=f"{COOKIE}={OTHER}"), b"")
    )
    assert only.token_hash == sha256_hex(TOKEN)


def test_cookie_token_jwt_gives_the_second_event_its_claims() -> None:
    issued = int(time.time()) - 100
    jwt_token = hs256_token("ann", iat=issued, key=JWT_KEY)
    _, _, (_, second) = run_logout(
        logout_core(jwt_key=JWT_KEY, clock=lambda: issued + 100.0),
        authorization=f"Bearer {TOKEN}",
        cookie=f"{COOKIE}={jwt_token}",
    )
    assert (second.subject, second.subject_source, second.duration) == ("ann", "jwt", 100.0)
    assert second.token_ttl == 600 - 100 + 60


@pytest.mark.parametrize(
    ("scheme", "records", "revoked", "cookies"),
    [
        ("", True, True, ["session", COOKIE]),
        ("session,bearer", True, True, ["session", COOKIE]),
        ("bearer", True, True, [COOKIE]),
        ("session", False, False, ["session"]),
    ],
    ids=["all", "both", "bearer", "session"],
)
def test_token_records_and_cookie_belong_to_the_bearer_scheme(
    scheme: str, records: bool, revoked: bool, cookies: list[str]
) -> None:
    for credentials in (
        {"authorization": f"Bearer {TOKEN}", "cookie": "session=s1d"},
        {"cookie": f"session=s1d; {COOKIE}={TOKEN}"},
    ):
        driver, response, (event,) = run_logout(
            logout_core(), query_string=f"scheme={scheme}", **credentials
        )
        ops = driver.ops
        assert (set(records_of(TOKEN)) <= set(ops.discard)) is records, credentials
        denied = ("logout:revoked:" + sha256_hex(TOKEN), "1", 3600) in ops.sets
        assert denied is revoked, credentials
        assert set_cookie_names(response) == cookies, credentials
        assert list(event.cookies) == cookies, credentials


def test_records_are_deleted_without_revocation() -> None:
    """``LOGOUT_REVOKE_TOKENS=false`` keeps the denylist out of it; the token's records
    are still its logout."""
    driver, _, events = run_logout(
        logout_core(revoke_tokens=False),
        authorization=f"Bearer {TOKEN}",
        cookie=f"{COOKIE}={OTHER}",
    )
    assert driver.ops.discard == records_of(TOKEN) + records_of(OTHER)
    assert not [key for key, _, _ in driver.ops.sets if key.startswith("logout:revoked:")]
    assert [e.tokens_ended for e in events] == [0, 0]
    assert [e.token_hash for e in events] == [sha256_hex(TOKEN), sha256_hex(OTHER)]


def test_token_cookie_is_expired_even_when_it_is_listed_once() -> None:
    _, response, _ = run_logout(
        logout_core(cookies=("session", COOKIE)), cookie=f"{COOKIE}={TOKEN}"
    )
    assert set_cookie_names(response) == ["session", COOKIE]
    _, response, _ = run_logout(
        logout_core(cookies=("session", COOKIE)),
        cookie=f"{COOKIE}={TOKEN}",
        query_string="scheme=bearer",
    )
    assert set_cookie_names(response) == [COOKIE]


def test_without_a_store_only_the_cookies_go() -> None:
    core = logout_core(has_store=False)
    driver, response, (event,) = run_logout(core, cookie=f"{COOKIE}={TOKEN}")
    assert driver.of(StoreOps) == []
    assert set_cookie_names(response) == ["session", COOKIE]
    assert (event.store, event.tokens_ended) == ("disabled", 0)


def test_without_a_token_cookie_setting_the_cookie_is_no_token() -> None:
    driver, response, (event,) = run_logout(
        make_core(token_keys=TEMPLATES), cookie=f"{COOKIE}={TOKEN}"
    )
    assert driver.ops.discard == ()
    assert event.token_hash is None
    assert set_cookie_names(response) == ["session"]


def test_admin_revocation_deletes_the_token_records() -> None:
    core = logout_core()
    driver = Driver(core)
    ended = driver.run(core.end(token=TOKEN.encode(), reason="admin"))
    assert driver.ops.discard == records_of(TOKEN)
    assert ended.event.cookies == ()


@pytest.mark.parametrize(
    ("bearer_acts", "cookie_acts", "ended", "expires_cookie"),
    [
        (False, True, "cookie", True),
        (True, False, "bearer", False),
        (True, True, "both", True),
    ],
    ids=["cookie-impersonates", "bearer-impersonates", "both-impersonate"],
)
def test_impersonation_uri_ends_only_the_impersonating_token(
    bearer_acts: bool, cookie_acts: bool, ended: str, expires_cookie: bool
) -> None:
    def token(sub: str, acts: bool) -> str:
        claims = {"act": {"sub": "support-3"}} if acts else {}
        return hs256_token(sub, iat=1_699_999_000, key=JWT_KEY, **claims)

    own, in_cookie = token("ann", bearer_acts), token("bob", cookie_acts)
    core = logout_core(jwt_key=JWT_KEY, impersonation_path="/impersonate/stop")
    driver = Driver(core)
    response, events = driver.run(
        core.respond(
            head(authorization=f"Bearer {own}", cookie=f"{COOKIE}={in_cookie}"),
            b"",
            "impersonation",
        )
    )
    expected = {"cookie": [in_cookie], "bearer": [own], "both": [own, in_cookie]}[ended]
    assert [e.token_hash for e in events] == [sha256_hex(t) for t in expected]
    assert all(e.type == "impersonation_end" for e in events)
    assert driver.ops.discard == tuple(k for t in expected for k in records_of(t))
    assert (COOKIE in set_cookie_names(response)) is expires_cookie


def test_the_raw_token_is_only_in_its_records() -> None:
    """Events, audit entries and every other part of the transaction name tokens by
    their SHA-256; the raw tokens appear only in the keys the app's library chose."""
    driver, _, events = run_logout(
        logout_core(),
        authorization=f"Bearer {TOKEN}",
        cookie=f"{COOKIE}={OTHER}; session=s1d",
    )
    everything_else = repr(without_records(driver.ops, TOKEN, OTHER))
    for raw in (TOKEN, OTHER):
        assert raw not in everything_else
        for event in events:
            assert raw not in repr(event)
            assert raw not in repr(event.to_fields())


def test_failed_store_keeps_both_events_failed() -> None:
    core = logout_core()
    driver = Driver(core, outcome=StoreOutcome("failed", error="ConnectionError: down"))
    response, events = driver.run(
        core.respond(
            head(authorization=f"Bearer {TOKEN}", cookie=f"{COOKIE}={OTHER}"), b"", "logout"
        )
    )
    assert response.status == 503
    assert [e.store for e in events] == ["failed", "failed"]
    assert [e.redirect for e in events] == [None, None]


def test_everywhere_counts_both_tokens() -> None:
    token = hs256_token("ann", key=JWT_KEY)
    core = logout_core(jwt_key=JWT_KEY, everywhere_path="/logout/everywhere", clock=time.time)
    response, events = Driver(core).run(
        core.respond(
            head(
                authorization=f"Bearer {token}",
                cookie=f"{COOKIE}={OTHER}",
                accept="application/json",
            ),
            b"",
            "everywhere",
        )
    )
    assert len(events) == 2
    assert b'"tokens_ended":2' in response.body.replace(b" ", b"")


# -- both adapters, real Redis --------------------------------------------------------------


def seed(client: redis.Redis, *tokens: str) -> None:
    """The records fastapi-users' RedisStrategy writes at login: the user's id."""
    for token in tokens:
        client.set(RECORD.replace("{token}", token), b"4f1c2a52-0000-4000-8000-000000000001")


def record_exists(client: redis.Redis, token: str) -> bool:
    return bool(client.exists(RECORD.replace("{token}", token)))


@pytest.mark.parametrize("kind", KINDS)
def test_bearer_logout_deletes_the_record_in_its_transaction(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    seed(redis_client, TOKEN, OTHER)
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, **SETTINGS) as h:
        execs = cmdstat_calls(redis_client, "exec")
        reply = h.post_logout(headers={"Authorization": f"Bearer {TOKEN}", **ACCEPT_JSON})
        assert reply.status == 200
        assert cmdstat_calls(redis_client, "exec") == execs + 1
        assert not record_exists(redis_client, TOKEN)
        assert record_exists(redis_client, OTHER)
        assert redis_client.exists(token_key(TOKEN))
        assert h.request("GET", "/me", headers={"Authorization": f"Bearer {TOKEN}"}).status == 401
        assert h.seen.requests == []
    (event,) = events
    assert (event.store, event.token_hash, event.tokens_ended) == ("ok", sha256_hex(TOKEN), 1)
    assert set(expired_cookies(reply.set_cookies)) == {"session", COOKIE}


@pytest.mark.parametrize("kind", KINDS)
def test_cookie_logout_deletes_the_record_and_expires_the_cookie(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    seed(redis_client, TOKEN)
    events: list[LogoutEvent] = []
    with harness(kind, redis_url, on_logout=events.append, **SETTINGS) as h:
        reply = h.post_logout(headers={"Cookie": f"{COOKIE}={TOKEN}"})
        assert reply.status == 303
        assert not record_exists(redis_client, TOKEN)
        assert set(expired_cookies(reply.set_cookies)) == {"session", COOKIE}
        # Revoked as a bearer token is: refused when it comes as one.
        assert h.request("GET", "/me", headers={"Authorization": f"Bearer {TOKEN}"}).status == 401
    (event,) = events
    assert (event.token_hash, event.cookies) == (sha256_hex(TOKEN), ("session", COOKIE))
    (entry,) = audit_entries(redis_client)
    assert entry["token_hash"] == sha256_hex(TOKEN)


@pytest.mark.parametrize("kind", KINDS)
def test_scheme_session_keeps_the_token_record_and_cookie(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    seed(redis_client, TOKEN)
    with harness(kind, redis_url, **SETTINGS) as h:
        reply = h.post_logout(
            "/logout?scheme=session", headers={"Cookie": f"session=s1d; {COOKIE}={TOKEN}"}
        )
        assert reply.status == 303
        assert set(expired_cookies(reply.set_cookies)) == {"session"}
        assert record_exists(redis_client, TOKEN)
        assert not redis_client.exists(token_key(TOKEN))
        reply = h.post_logout(
            "/logout?scheme=bearer", headers={"Cookie": f"session=s1d; {COOKIE}={TOKEN}"}
        )
        assert set(expired_cookies(reply.set_cookies)) == {COOKIE}
        assert not record_exists(redis_client, TOKEN)
        assert redis_client.exists(token_key(TOKEN))


def live(h: Harness) -> bool:
    mirror = h.middleware.core.mirror
    return bool(mirror is not None and mirror.live)


@pytest.mark.parametrize("kind", KINDS)
def test_second_token_reaches_other_processes_through_the_stream(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """A logout with a bearer token and a different token cookie writes two audit
    entries; another process's revocation cache learns both and refuses each."""
    seed(redis_client, TOKEN, OTHER)
    events: list[LogoutEvent] = []
    with (
        harness(kind, redis_url, **SETTINGS) as other,
        harness(kind, redis_url, on_logout=events.append, **SETTINGS) as h,
    ):
        assert other.request("GET", "/me", headers={"Authorization": "Bearer warm-up"}).status
        assert wait_until(lambda: live(other))
        reply = h.post_logout(
            headers={"Authorization": f"Bearer {TOKEN}", "Cookie": f"{COOKIE}={OTHER}"}
        )
        assert reply.status == 303
        assert not record_exists(redis_client, TOKEN)
        assert not record_exists(redis_client, OTHER)
        assert other.middleware.core.mirror is not None
        state = other.middleware.core.mirror.state
        assert wait_until(lambda: member(sha256_hex(OTHER)) in state.tokens)
        assert member(sha256_hex(TOKEN)) in state.tokens
        for token in (TOKEN, OTHER):
            assert (
                other.request("GET", "/me", headers={"Authorization": f"Bearer {token}"}).status
                == 401
            )
    assert [e.token_hash for e in events] == [sha256_hex(TOKEN), sha256_hex(OTHER)]
    assert [e["token_hash"] for e in audit_entries(redis_client)] == [
        sha256_hex(TOKEN),
        sha256_hex(OTHER),
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_no_raw_token_in_events_audit_or_logs(
    kind: Kind, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """After a logout with both tokens, the raw tokens are nowhere in Redis (their
    records are gone), in the events, or in the log, whether Redis answered or not."""
    seed(redis_client, TOKEN, OTHER)
    caplog.set_level(logging.DEBUG)
    events: list[LogoutEvent] = []
    credentials = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"{COOKIE}={OTHER}"}
    with harness(kind, redis_url, on_logout=events.append, **SETTINGS) as h:
        assert h.post_logout(headers=credentials).status == 303
    with harness(kind, dead_redis_url(), on_logout=events.append, **SETTINGS) as h:
        assert h.post_logout(headers=credentials).status == 503
    assert [e.store for e in events] == ["ok", "ok", "failed", "failed"]
    stored = everything_in_redis(redis_client)
    assert redis_client.xlen(EVENTS_STREAM) == 2
    for raw in (TOKEN, OTHER):
        assert raw.encode() not in stored
        for event in events:
            assert raw not in repr(event)
        assert raw not in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_a_refused_delete_names_no_token(
    kind: Kind, redis_url: str, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that keeps the middleware out of the app's token keys makes Redis refuse
    the logout's transaction (``NOPERM``): the logout fails (503), and says so without
    the token."""
    if "@" in redis_url or not redis_url.startswith("redis://"):
        pytest.skip("needs a Redis URL without credentials, to add a user of our own")
    user = "logout-mw-no-token-keys"
    redis_client.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        reset_keys=True,
        keys=["logout:*", "session:*"],
        commands=["+@all"],
    )
    caplog.set_level(logging.DEBUG)
    events: list[LogoutEvent] = []
    try:
        limited = redis_url.replace("redis://", f"redis://{user}:pw@", 1)
        with harness(kind, limited, on_logout=events.append, **SETTINGS) as h:
            reply = h.post_logout(headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        redis_client.acl_deluser(user)
    assert reply.status == 503
    (event,) = events
    assert event.store == "failed"
    assert TOKEN not in (event.store_error or "")
    assert TOKEN not in caplog.text


# -- the token cookie on later requests --------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_revoked_token_cookie_is_taken_out_and_expired(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """After a logout, a request still carrying the token cookie (a copy of it, or a
    browser that missed the expiry) reaches the app without it, logged out, and its
    response expires it; the same token as a bearer header gets 401. A token cookie never
    revoked, and other cookies, pass untouched."""
    jwt_token = hs256_token("ann", int(time.time()))
    with harness(kind, redis_url, **SETTINGS) as h:
        assert h.post_logout(headers={"Cookie": f"{COOKIE}={jwt_token}"}).status == 303
        reply = h.request("GET", "/me", headers={"Cookie": f"theme=dark; {COOKIE}={jwt_token}"})
        assert reply.status == 200
        assert h.seen.cookies[-1] == "theme=dark"
        assert any(c.startswith(f"{COOKIE}=;") for c in reply.set_cookies)
        assert (
            h.request("GET", "/me", headers={"Authorization": f"Bearer {jwt_token}"}).status == 401
        )
        fresh = h.request("GET", "/me", headers={"Cookie": f"{COOKIE}={OTHER}"})
        assert fresh.status == 200
        assert h.seen.cookies[-1] == f"{COOKIE}={OTHER}"
        assert not fresh.set_cookies


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_token_cookie_set_by_the_app_is_not_expired(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """The app logs the browser in again in the same response: its new token cookie
    stands."""
    with harness(kind, redis_url, **SETTINGS) as h:
        assert h.post_logout(headers={"Cookie": f"{COOKIE}={TOKEN}"}).status == 303
        h.seen.set_cookie = f"{COOKIE}={OTHER}; Path=/; HttpOnly"
        reply = h.request("POST", "/auth/cookie/login", headers={"Cookie": f"{COOKIE}={TOKEN}"})
        assert reply.set_cookies == [f"{COOKIE}={OTHER}; Path=/; HttpOnly"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_revoked_token_cookie_is_taken_out_beside_a_bearer_token_or_a_second_copy(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """The token cookie is checked whatever else the request carries: beside a bearer
    token that is not revoked (an app may try each transport in turn), and in every copy
    of a cookie sent twice (the framework, not the middleware, picks which copy the app
    reads): a revoked copy takes every copy out."""
    jwt_token = hs256_token("ann", int(time.time()))
    with harness(kind, redis_url, **SETTINGS) as h:
        assert h.post_logout(headers={"Cookie": f"{COOKIE}={jwt_token}"}).status == 303
        for headers in (
            {"Cookie": f"{COOKIE}={jwt_token}", "Authorization": f"Bearer {OTHER}"},
            {"Cookie": f"{COOKIE}=junk; {COOKIE}={jwt_token}"},
            {"Cookie": f"{COOKIE}={jwt_token}; theme=dark; {COOKIE}={OTHER}"},
        ):
            reply = h.request("GET", "/me", headers=headers)
            assert reply.status == 200
            assert COOKIE not in h.seen.cookies[-1], headers
            assert any(c.startswith(f"{COOKIE}=;") for c in reply.set_cookies)
        fresh = {"Cookie": f"{COOKIE}=junk; {COOKIE}={OTHER}"}
        assert h.request("GET", "/me", headers=fresh).status == 200
        assert h.seen.cookies[-1] == fresh["Cookie"]
