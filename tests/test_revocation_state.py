"""Logged out stays logged out: session tombstones, subjects, the everywhere URI, and
what ordinary requests pay, every test on both adapters against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

import msgspec
import pytest
import redis

from logout_middleware import LogoutConfig, revoke
from logout_middleware import store as logout_store

from .harness import KINDS, Harness, Kind, harness
from .servers import (
    ACCEPT_JSON,
    EVERYWHERE_PATH,
    EVERYWHERE_SETTINGS,
    INDEX_PREFIX,
    audit_entries,
    flask_session_record,
    hs256_token,
    index_key,
    index_members,
    not_before_key,
    sha256_hex,
    tombstone_key,
    wait_until,
)

SID = "s3ss10n-a-1d"
OTHER_SID = "s3ss10n-b-2e"


def record(user: str) -> bytes:
    """A session record as Flask-Session 0.8 writes it (msgpack of the session dict)."""
    return flask_session_record(user, _permanent=True)


def cookie(sid: str, *others: str) -> dict[str, str]:
    return {"Cookie": "; ".join((f"session={sid}", *others))}


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def calls(client: redis.Redis) -> dict[str, int]:
    stats = cast("dict[str, dict[str, Any]]", client.info("commandstats"))
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def sessions_of_ann(h: Harness, redis_client: redis.Redis, *sids: str) -> None:
    """Ann's session records at ``sids``, each seen once by the middleware (which indexes
    them under her)."""
    for sid in sids:
        redis_client.set(f"session:{sid}", record("ann"))
        h.request("GET", "/page", headers=cookie(sid))


def live(h: Harness) -> bool:
    mirror = h.middleware.core.mirror
    return bool(mirror is not None and mirror.live)


def expired_session(reply_cookies: Iterable[str]) -> bool:
    return any(c.startswith("session=;") and "Max-Age=0" in c for c in reply_cookies)


# -- session tombstones ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_session_cookie_is_taken_out_and_its_record_deleted(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """After a logout, a late save re-creates the record (as Flask-Session and
    starsessions do); the old cookie then reaches the app without the session, the
    response expires it, and the record is deleted again."""
    redis_client.set(f"session:{SID}", record("ann"))
    with harness(kind, redis_url) as h:
        assert h.post_logout(headers=cookie(SID)).status == 303
        assert redis_client.exists(tombstone_key(SID)) == 1
        redis_client.set(f"session:{SID}", record("ann"))  # the late save
        reply = h.request("GET", "/page", headers=cookie(SID, "theme=dark"))
        assert reply.status == 200
        assert h.seen.cookies[-1] == "theme=dark"
        assert expired_session(reply.set_cookies)
        assert wait_until(lambda: redis_client.exists(f"session:{SID}") == 0)


@pytest.mark.parametrize("kind", KINDS)
def test_only_cookie_revoked_reaches_app_without_cookie_header(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    with harness(kind, redis_url) as h:
        h.post_logout(headers=cookie(SID))
        h.request("GET", "/page", headers=cookie(SID))
    assert h.seen.cookies[-1] == ""


@pytest.mark.parametrize("kind", KINDS)
def test_new_session_set_by_the_app_is_kept(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """The app, seeing no session, may start a new one: its cookie is not expired."""
    with harness(kind, redis_url) as h:
        h.post_logout(headers=cookie(SID))
        h.seen.set_cookie = "session=fresh-one; Path=/; HttpOnly"
        reply = h.request("GET", "/page", headers=cookie(SID))
    assert reply.set_cookies == ["session=fresh-one; Path=/; HttpOnly"]


@pytest.mark.parametrize("kind", KINDS)
def test_other_sessions_pass_untouched(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{OTHER_SID}", record("bob"))
    with harness(kind, redis_url) as h:
        h.post_logout(headers=cookie(SID))
        reply = h.request("GET", "/page", headers=cookie(OTHER_SID))
    assert h.seen.cookies[-1] == f"session={OTHER_SID}"
    assert reply.set_cookies == []
    assert redis_client.exists(f"session:{OTHER_SID}") == 1


# -- subjects and the session index ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_subject_learned_once_and_session_indexed(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """The record is read after the app answers, at most once a minute per process,
    and the session indexed under its subject, scored by when the entry expires."""
    redis_client.set(f"session:{SID}", record("ann"))
    with harness(kind, redis_url, session_subject="user", session_ttl=3600) as h:
        redis_client.config_resetstat()
        for _ in range(3):
            assert h.request("GET", "/page", headers=cookie(SID)).status == 200
        assert calls(redis_client).get("get") == 1
    assert index_members(redis_client, "ann") == {sha256_hex(SID)}
    score = cast("float", redis_client.zscore(index_key("ann"), sha256_hex(SID)))
    assert time.time() + 3500 < score <= time.time() + 3600
    assert 3500 < int(redis_client.ttl(index_key("ann"))) <= 3600


@pytest.mark.parametrize("kind", KINDS)
def test_logout_event_says_who_and_unindexes(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", record("ann"))
    events: list[Any] = []
    with harness(kind, redis_url, on_logout=events.append, session_subject="user") as h:
        h.request("GET", "/page", headers=cookie(SID))
        assert index_members(redis_client, "ann") == {sha256_hex(SID)}
        h.post_logout(headers=cookie(SID))
    (event,) = events
    assert (event.type, event.reason, event.subject, event.subject_source) == (
        "session_end",
        "user_logout",
        "ann",
        "session",
    )
    assert event.sessions_ended == 1
    assert index_members(redis_client, "ann") == set()


# -- everywhere ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_everywhere_ends_every_session_and_earlier_jwts(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    old = hs256_token("ann", int(time.time()) - 30)
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        sessions_of_ann(h, redis_client, SID, OTHER_SID)
        assert index_members(redis_client, "ann") == {sha256_hex(SID), sha256_hex(OTHER_SID)}
        assert h.request("GET", "/api", headers=bearer(old)).status == 200
        reply = h.request("POST", EVERYWHERE_PATH, headers={**cookie(SID), **ACCEPT_JSON})
        assert reply.status == 200
        body = reply.json()
        assert body["success"] is True
        assert (body["sessions_ended"], body["tokens_ended"]) == (2, 0)
        not_before = float(body["not_before"])
        assert expired_session(reply.set_cookies)
        # Both records are gone (this process knew both ids), the index is dropped.
        assert redis_client.exists(f"session:{SID}", f"session:{OTHER_SID}") == 0
        assert index_members(redis_client, "ann") == set()
        # The other client is logged out on its next request.
        h.request("GET", "/page", headers=cookie(OTHER_SID))
        assert h.seen.cookies[-1] == ""
        # A JWT issued before is refused; one issued in a later second works.
        refused = h.request("GET", "/api", headers=bearer(old))
        assert refused.status == 401
        assert refused.json()["error"] == "invalid_token"
        newer = hs256_token("ann", int(not_before) + 1)
        assert h.request("GET", "/api", headers=bearer(newer)).status == 200
        same_second = hs256_token("ann", int(not_before))
        assert h.request("GET", "/api", headers=bearer(same_second)).status == 401


@pytest.mark.parametrize("kind", KINDS)
def test_everywhere_entry_says_who_and_what(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        sessions_of_ann(h, redis_client, SID, OTHER_SID)
        assert h.request("POST", EVERYWHERE_PATH, headers=cookie(SID)).status == 303
    (entry,) = audit_entries(redis_client)
    assert entry["type"] == "session_end"
    assert entry["reason"] == "everywhere"
    assert entry["subject"] == "ann"
    assert entry["subject_source"] == "session"
    assert entry["sessions_ended"] == "2"
    assert entry["session_id_hash"] == sha256_hex(SID)
    assert entry["ended_sessions"] == sha256_hex(OTHER_SID)
    assert float(entry["not_before"]) > 0
    assert SID not in str(entry)
    assert OTHER_SID not in str(entry)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Cookie": f"session={SID}"},  # a session with no record: no subject
        bearer(hs256_token("ann", 1_700_000_000, "not-the-configured-key-0123456789abcdef")),
    ],
    ids=["nothing", "session-without-subject", "unverified-jwt"],
)
def test_everywhere_without_trusted_subject_is_400_and_changes_nothing(
    kind: Kind, headers: dict[str, str], redis_url: str, redis_client: redis.Redis
) -> None:
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        reply = h.request("POST", EVERYWHERE_PATH, headers=headers)
    assert reply.status == 400
    assert reply.json()["error"] == "unknown_subject"
    assert reply.set_cookies == []
    assert [k for k in redis_client.scan_iter() if not k.startswith(INDEX_PREFIX.encode())] == []


@pytest.mark.parametrize("kind", KINDS)
def test_everywhere_with_verified_jwt(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    own = hs256_token("ann", int(time.time()) - 5)
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        reply = h.request("POST", EVERYWHERE_PATH, headers={**bearer(own), **ACCEPT_JSON})
        assert reply.status == 200
        assert reply.json()["tokens_ended"] == 1
        assert h.request("GET", "/api", headers=bearer(own)).status == 401
    assert redis_client.exists(not_before_key("ann")) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_everywhere_get_is_405(kind: Kind, redis_url: str) -> None:
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        reply = h.request("GET", EVERYWHERE_PATH)
    assert reply.status == 405


@pytest.mark.parametrize("kind", KINDS)
def test_everywhere_cross_site_is_403(kind: Kind, redis_url: str) -> None:
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        reply = h.request(
            "POST", EVERYWHERE_PATH, headers={**cookie(SID), "Sec-Fetch-Site": "cross-site"}
        )
    assert reply.status == 403


# -- what ordinary requests pay -------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_steady_state_costs_no_round_trip(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """With the revocation cache (the default), requests with a session cookie and a
    bearer JWT are answered from the mirror once it is live: no Redis command at all
    besides the follower's blocking XREAD."""
    redis_client.set(f"session:{SID}", record("ann"))
    headers = {**cookie(SID), **bearer(hs256_token("ann", int(time.time())))}
    with harness(kind, redis_url, session_subject="user") as h:
        assert h.request("GET", "/page", headers=headers).status == 200
        assert wait_until(lambda: live(h))
        h.request("GET", "/page", headers=headers)
        before = calls(redis_client)
        for _ in range(20):
            assert h.request("GET", "/page", headers=headers).status == 200
        after = calls(redis_client)
    changed = {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}
    changed.pop("info", None)
    changed.pop("xread", None)
    assert changed == {}


@pytest.mark.parametrize("kind", KINDS)
def test_without_cache_one_pipelined_check(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """Without the cache, each request with a session cookie and a JWT asks Redis in one
    pipeline: the tombstone, the denylist key and the subject's not-before."""
    headers = {**cookie(SID), **bearer(hs256_token("ann", int(time.time())))}
    with harness(kind, redis_url, revocation_cache=False) as h:
        h.request("GET", "/page", headers=headers)
        before = calls(redis_client)
        assert h.request("GET", "/page", headers=headers).status == 200
        after = calls(redis_client)
    assert after.get("exists", 0) - before.get("exists", 0) == 2
    assert after.get("get", 0) - before.get("get", 0) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_revoked_session_without_cache_is_still_taken_out(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """A tombstone written by another process, seen through Redis (no mirror)."""
    with harness(kind, redis_url, revocation_cache=False) as h:
        redis_client.set(tombstone_key(SID), b"1")
        reply = h.request("GET", "/page", headers=cookie(SID, "a=b"))
    assert h.seen.cookies[-1] == "a=b"
    assert expired_session(reply.set_cookies)


# -- revoke() from code, seen by a running middleware ----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_revoke_from_code_reaches_running_middleware(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", record("ann"))
    old = hs256_token("ann", int(time.time()) - 5)
    opaque = "opaque-token-to-revoke"
    with harness(kind, redis_url, session_subject="user") as h:
        h.request("GET", "/page", headers={**cookie(SID), **bearer(old)})
        assert wait_until(lambda: live(h))
        event = revoke(subject="ann", token=opaque, config=LogoutConfig(redis_url=redis_url))
        assert (event.reason, event.subject_source, event.sessions_ended) == ("admin", "admin", 1)
        assert event.tokens_ended == 1
        # The stream delivers it to this middleware's mirror: no Redis check needed.
        assert wait_until(lambda: h.request("GET", "/api", headers=bearer(old)).status == 401)
        assert h.request("GET", "/api", headers=bearer(opaque)).status == 401
        h.request("GET", "/page", headers=cookie(SID))
        assert h.seen.cookies[-1] == ""
    assert wait_until(lambda: redis_client.exists(f"session:{SID}") == 0)


def test_forked_worker_does_not_trust_its_parents_mirror(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A worker forked from a process with a live mirror has no follower thread: its
    copy of the mirror may go stale, so it is marked not live and a follower started."""
    with harness("wsgi", redis_url) as h:
        h.request("GET", "/page", headers=cookie(SID))
        assert wait_until(lambda: live(h))
        store = h.middleware.store
        before = store._follower
        logout_store._forked()  # what os.register_at_fork runs in a forked child
        store.follow()
        assert not h.middleware.core.mirror.live
        assert store._follower_pid == logout_store._generation[0]
        assert wait_until(lambda: live(h))
    # Closing ends every follower the store started, the one from "before the fork"
    # too (in one process both run: left alive, it would act on later logouts).
    assert before is not None
    assert not before.is_alive()


@pytest.mark.parametrize("kind", KINDS)
def test_login_in_an_anonymous_session_is_learned_at_once(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """A session is read again after an unsafe request (a login that kept the session
    id, as Flask-Session does), not a minute later; a switch of user moves it from one
    subject's index to the other's."""
    redis_client.set(f"session:{SID}", msgspec.msgpack.encode({"cart": 1}))
    with harness(kind, redis_url, session_subject="user") as h:
        h.request("GET", "/page", headers=cookie(SID))
        assert index_members(redis_client, "ann") == set()
        redis_client.set(f"session:{SID}", record("ann"))  # what POST /login saves
        h.request("GET", "/page", headers=cookie(SID))  # a safe request: not read again
        assert index_members(redis_client, "ann") == set()
        h.request("POST", "/login", headers=cookie(SID))
        assert index_members(redis_client, "ann") == {sha256_hex(SID)}
        redis_client.set(f"session:{SID}", record("bob"))  # bob logs in on the same browser
        h.request("POST", "/login", headers=cookie(SID))
        assert index_members(redis_client, "ann") == set()
        assert index_members(redis_client, "bob") == {sha256_hex(SID)}


@pytest.mark.parametrize("kind", KINDS)
def test_get_that_saves_an_anonymous_session_is_learned_at_once(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """An OpenID Connect callback logs the user in with a GET: when the response to a
    safe request sets the cookie of a session read as anonymous, it is read again."""
    redis_client.set(f"session:{SID}", msgspec.msgpack.encode({"state": "x"}))
    with harness(kind, redis_url, session_subject="user") as h:
        h.request("GET", "/login", headers=cookie(SID))
        redis_client.set(f"session:{SID}", record("ann"))  # what the callback saves
        h.request("GET", "/other", headers=cookie(SID))  # sets no cookie: not read
        assert index_members(redis_client, "ann") == set()
        h.seen.set_cookie = f"session={SID}; Path=/; HttpOnly"
        h.request("GET", "/auth/callback", headers=cookie(SID))
        assert wait_until(lambda: index_members(redis_client, "ann") == {sha256_hex(SID)})
        # Known now: a response setting the cookie again costs no read.
        before = calls(redis_client).get("get", 0)
        h.request("GET", "/page", headers=cookie(SID))
        assert calls(redis_client).get("get", 0) == before


@pytest.mark.parametrize("kind", KINDS)
def test_own_logout_is_not_deleted_twice_by_the_follower(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """The logging-out process deletes the record in its transaction; its follower,
    seeing the entry come back through the stream, sends no second DEL (a record put
    back behind the middleware's back is left alone, where a follower that knew the id
    from another process's logout would delete it)."""
    redis_client.set(f"session:{SID}", record("ann"))
    with harness(kind, redis_url) as h:
        h.request("GET", "/page", headers=cookie(SID))
        assert wait_until(lambda: live(h))
        h.post_logout(headers=cookie(SID))
        redis_client.set(f"session:{SID}", record("ann"))
        time.sleep(0.3)  # time for the follower to absorb the entry
        assert redis_client.exists(f"session:{SID}") == 1


# -- sessions issued by a login ---------------------------------------------------------------


@pytest.mark.parametrize("before", [{}, {"Cookie": "csrftoken=c5rf"}], ids=["no-cookie", "csrf"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_login_response_indexes_the_session_it_issues(
    kind: Kind, before: dict[str, str], redis_url: str, redis_client: redis.Redis
) -> None:
    """A login (an unsafe request with no session cookie yet: no cookie at all, or only
    Django's CSRF cookie) whose response sets a new session id: the middleware reads that
    session's record and indexes it under its user right after the response, so that
    logging out everywhere ends it even if it never makes another request."""
    issued = "1ssued-by-l0gin"
    redis_client.set(f"session:{issued}", record("ann"))
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        h.seen.set_cookie = f"session={issued}; Path=/; HttpOnly"
        assert h.request("POST", "/login", headers=before).status == 200
        h.seen.set_cookie = None
        assert sha256_hex(issued) in index_members(redis_client, "ann")
        sessions_of_ann(h, redis_client, SID)
        answer = h.request("POST", EVERYWHERE_PATH, headers={**cookie(SID), **ACCEPT_JSON})
        assert answer.status == 200
        assert answer.json()["sessions_ended"] == 2
    assert not redis_client.exists(f"session:{issued}")
    assert redis_client.exists(tombstone_key(issued))


@pytest.mark.parametrize("kind", KINDS)
def test_a_renewed_session_id_is_indexed_and_a_deleted_cookie_is_not(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """A login that renews the id (Django, starsessions' regenerate_session_id) gets the
    new id indexed; a response that only deletes the session cookie reads nothing."""
    renewed = "r3newed-at-l0gin"
    redis_client.set(f"session:{OTHER_SID}", record("ann"))
    redis_client.set(f"session:{renewed}", record("ann"))
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        h.seen.set_cookie = f"session={renewed}; Path=/"
        assert h.request("POST", "/login", headers=cookie(OTHER_SID)).status == 200
        assert sha256_hex(renewed) in index_members(redis_client, "ann")
        h.seen.set_cookie = "session=; Max-Age=0; Path=/"
        before = calls(redis_client)
        assert h.request("POST", "/bye").status == 200
        assert calls(redis_client).get("get", 0) == before.get("get", 0)
