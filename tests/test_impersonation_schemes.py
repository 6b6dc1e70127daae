"""Ending an impersonation (RFC 8693 ``act`` tokens; sessions that name their
impersonator, restored to the impersonator's own session) and signing out of chosen
schemes, every test on both adapters against a real Redis."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from itsdangerous import Signer

from .harness import KINDS, Kind, Reply, harness
from .servers import (
    ACCEPT_JSON,
    EVENTS_STREAM,
    EVERYWHERE_PATH,
    EVERYWHERE_SETTINGS,
    JWT_KEY,
    audit_entries,
    flask_session_record,
    hs256_token,
    not_before_key,
    token_key,
    tombstone_key,
)

SID = "sess-customer-1a"
ORIGINAL = "sess-support-2b"
STOP = "/impersonate/stop"
#: django-hijack keeps the impersonators' ids in ``hijack_history`` (the last one acts
#: now); the app keeps the impersonator's own session id beside it.
IMPERSONATION: dict[str, Any] = {
    "session_subject": "user",
    "session_impersonator": "hijack_history",
    "session_original": "original_session",
    "impersonation_path": STOP,
}


def impersonated(by: str = "support", original: str = ORIGINAL) -> bytes:
    return flask_session_record("customer", hijack_history=["admin", by], original_session=original)


def creds(sid: str | None = None, bearer: str | None = None) -> dict[str, str]:
    found = {}
    if sid is not None:
        found["Cookie"] = f"session={sid}"
    if bearer is not None:
        found["Authorization"] = f"Bearer {bearer}"
    return found


def session_cookie(reply: Reply) -> str | None:
    found = [c for c in reply.set_cookies if c.startswith("session=")]
    return found[0] if found else None


# -- schemes -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_scheme_session_keeps_the_token(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    own = hs256_token("ann")
    events: list[Any] = []
    with harness(kind, redis_url, on_logout=events.append, session_subject="user") as h:
        reply = h.post_logout("/logout?scheme=session", headers=creds(SID, own))
        assert reply.status == 303
        assert (session_cookie(reply) or "").startswith("session=;")
        assert redis_client.exists(f"session:{SID}") == 0
        assert h.request("GET", "/api", headers=creds(bearer=own)).status == 200
    assert redis_client.exists(token_key(own)) == 0
    (event,) = events
    assert (event.schemes, event.type, event.tokens_ended, event.token_hash) == (
        ("session",),
        "session_end",
        0,
        None,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_scheme_bearer_keeps_the_session(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    own = hs256_token("ann")
    events: list[Any] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        reply = h.post_logout("/logout?scheme=bearer", headers={**creds(SID, own), **ACCEPT_JSON})
        assert reply.status == 200
        assert reply.set_cookies == []
        assert h.request("GET", "/api", headers=creds(bearer=own)).status == 401
        h.request("GET", "/page", headers=creds(SID))
        assert h.seen.cookies[-1] == f"session={SID}"
    assert redis_client.exists(f"session:{SID}") == 1
    (event,) = events
    assert (event.schemes, event.type, event.session_id_hash, event.cookies) == (
        ("bearer",),
        "api_session_end",
        None,
        (),
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "query",
    [
        "",
        "?scheme=",
        "?scheme=session,bearer",
        "?scheme=bearer&scheme=session",
        "?scheme=BEARER,%20session",
    ],
    ids=["absent", "empty", "comma", "repeated", "case-and-space"],
)
def test_no_or_both_schemes_end_everything(
    kind: Kind, query: str, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    own = hs256_token("ann")
    events: list[Any] = []
    with harness(kind, redis_url, on_logout=events.append) as h:
        assert h.post_logout("/logout" + query, headers=creds(SID, own)).status == 303
    assert redis_client.exists(f"session:{SID}") == 0
    assert redis_client.exists(token_key(own)) == 1
    assert events[0].schemes == ("session", "bearer")


@pytest.mark.parametrize("kind", KINDS)
def test_scheme_from_the_form(kind: Kind, redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    own = hs256_token("ann")
    with harness(kind, redis_url) as h:
        reply = h.post_logout(
            headers={**creds(SID, own), "Content-Type": "application/x-www-form-urlencoded"},
            body=b"scheme=bearer&next=/bye",
        )
    assert reply.status == 303
    assert reply.header("location") == "/bye"
    assert redis_client.exists(f"session:{SID}") == 1
    assert redis_client.exists(token_key(own)) == 1


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("query", ["?scheme=cookies", "?scheme=session,oidc"], ids=["one", "mixed"])
def test_unknown_scheme_is_400_and_changes_nothing(
    kind: Kind, query: str, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    with harness(kind, redis_url) as h:
        reply = h.post_logout("/logout" + query, headers=creds(SID, hs256_token("ann")))
    assert reply.status == 400
    assert reply.json()["error"] == "unknown_scheme"
    assert reply.set_cookies == []
    assert {k.decode() for k in redis_client.scan_iter()} == {f"session:{SID}"}


@pytest.mark.parametrize("kind", KINDS)
def test_everywhere_bearer_ends_tokens_and_keeps_sessions(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    old = hs256_token("ann", int(time.time()) - 30)
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        h.request("GET", "/page", headers=creds(SID))
        reply = h.request(
            "POST", EVERYWHERE_PATH + "?scheme=bearer", headers={**creds(SID), **ACCEPT_JSON}
        )
        assert reply.status == 200
        assert reply.json()["sessions_ended"] == 0
        assert reply.set_cookies == []
        assert h.request("GET", "/api", headers=creds(bearer=old)).status == 401
        h.request("GET", "/page", headers=creds(SID))
        assert h.seen.cookies[-1] == f"session={SID}"
    assert redis_client.exists(f"session:{SID}") == 1
    assert redis_client.exists(not_before_key("ann")) == 1
    assert audit_entries(redis_client)[-1]["type"] == "api_session_end"


@pytest.mark.parametrize("kind", KINDS)
def test_everywhere_session_ends_sessions_and_keeps_tokens(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    redis_client.set(f"session:{ORIGINAL}", flask_session_record("ann"))
    old = hs256_token("ann", int(time.time()) - 30)
    with harness(kind, redis_url, **EVERYWHERE_SETTINGS) as h:
        for sid in (SID, ORIGINAL):
            h.request("GET", "/page", headers=creds(sid))
        reply = h.request(
            "POST", EVERYWHERE_PATH + "?scheme=session", headers={**creds(SID), **ACCEPT_JSON}
        )
        assert reply.json()["sessions_ended"] == 2
        assert reply.json()["not_before"] is None
        assert h.request("GET", "/api", headers=creds(bearer=old)).status == 200
    assert redis_client.exists(f"session:{SID}", f"session:{ORIGINAL}") == 0
    assert redis_client.exists(not_before_key("ann")) == 0


# -- impersonation tokens (RFC 8693 act) ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_act_token_logout_leaves_the_actors_own_token(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    issued = int(time.time()) - 120
    acting = hs256_token("customer", issued, act={"sub": "support", "act": {"sub": "admin"}})
    actors_own = hs256_token("support")
    events: list[Any] = []
    with harness(kind, redis_url, on_logout=events.append, jwt_key=JWT_KEY) as h:
        assert h.post_logout(headers=creds(bearer=acting)).status == 303
        assert h.request("GET", "/api", headers=creds(bearer=acting)).status == 401
        assert h.request("GET", "/api", headers=creds(bearer=actors_own)).status == 200
    (event,) = events
    assert (event.type, event.subject, event.impersonator, event.subject_source) == (
        "impersonation_end",
        "customer",
        "support",
        "jwt",
    )
    assert event.duration is not None
    assert 119 <= event.duration < 150
    assert audit_entries(redis_client)[0]["impersonator"] == "support"


@pytest.mark.parametrize("kind", KINDS)
def test_impersonation_path_ends_only_the_act_token(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """The request's own session is not impersonating: it stays."""
    redis_client.set(f"session:{SID}", flask_session_record("support"))
    acting = hs256_token("customer", act={"sub": "support"})
    with harness(kind, redis_url, **IMPERSONATION) as h:
        reply = h.request("POST", STOP, headers={**creds(SID, acting), **ACCEPT_JSON})
        assert reply.status == 200
        assert reply.set_cookies == []
    assert redis_client.exists(f"session:{SID}") == 1
    assert redis_client.exists(token_key(acting)) == 1
    assert audit_entries(redis_client)[0]["schemes"] == "bearer"


@pytest.mark.parametrize("kind", KINDS)
def test_expired_impersonation_token_is_still_cleaned_up(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """As KeyHippo: an impersonation that has expired still gets ended and recorded."""
    expired = hs256_token("customer", int(time.time()) - 3600, act={"sub": "support"})
    with harness(kind, redis_url, jwt_key=JWT_KEY, **IMPERSONATION) as h:
        reply = h.request("POST", STOP, headers={**creds(bearer=expired), **ACCEPT_JSON})
    assert reply.status == 200
    assert audit_entries(redis_client)[0]["type"] == "impersonation_end"


# -- impersonated sessions ------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", ["/logout", STOP], ids=["logout-uri", "impersonation-uri"])
def test_impersonated_session_restored_to_the_impersonators(
    kind: Kind, path: str, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", impersonated())
    redis_client.set(f"session:{ORIGINAL}", flask_session_record("support"))
    events: list[Any] = []
    with harness(kind, redis_url, on_logout=events.append, **IMPERSONATION) as h:
        reply = h.request("POST", path, headers={**creds(SID), **ACCEPT_JSON})
        assert reply.status == 200
        assert reply.json() == {"success": True, "restored": True}
        restored = session_cookie(reply)
        assert restored is not None
        assert restored.startswith(f"session={ORIGINAL};")
        assert "Max-Age=0" not in restored
        assert "HttpOnly" in restored
        h.request("GET", "/page", headers=creds(ORIGINAL))
        assert h.seen.cookies[-1] == f"session={ORIGINAL}"
        h.request("GET", "/page", headers=creds(SID))
        assert h.seen.cookies[-1] == ""
    assert redis_client.exists(f"session:{SID}") == 0
    assert redis_client.exists(f"session:{ORIGINAL}") == 1
    assert redis_client.exists(tombstone_key(SID)) == 1
    (event,) = events
    assert (event.type, event.subject, event.impersonator, event.restored) == (
        "impersonation_end",
        "customer",
        "support",
        True,
    )
    assert audit_entries(redis_client)[0]["restored"] == "true"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "original",
    ["missing", "revoked", "someone-else", "no-original"],
)
def test_restoration_refused_logs_out_completely(
    kind: Kind, original: str, redis_url: str, redis_client: redis.Redis
) -> None:
    """Never restore to a session that does not exist, is revoked, or is someone
    else's than the recorded impersonator: log out completely and say so."""
    data = impersonated()
    if original == "revoked":
        redis_client.set(f"session:{ORIGINAL}", flask_session_record("support"))
        redis_client.set(tombstone_key(ORIGINAL), b"1")
    elif original == "someone-else":
        redis_client.set(f"session:{ORIGINAL}", flask_session_record("mallory"))
    elif original == "no-original":
        data = flask_session_record("customer", hijack_history=["support"])
    redis_client.set(f"session:{SID}", data)
    events: list[Any] = []
    with harness(kind, redis_url, on_logout=events.append, **IMPERSONATION) as h:
        reply = h.request("POST", "/logout", headers={**creds(SID), **ACCEPT_JSON})
    assert reply.json() == {"success": True, "restored": False}
    assert (session_cookie(reply) or "").startswith("session=;")
    assert redis_client.exists(f"session:{SID}") == 0
    (event,) = events
    assert (event.type, event.impersonator, event.restored) == (
        "impersonation_end",
        "support",
        False,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_signed_cookie_restored_signed(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    """With itsdangerous-signed ids (Flask-Session's signer), the restored cookie is
    signed as the app would sign it."""
    signer = Signer("flask-secret", salt="flask-session", key_derivation="hmac")
    redis_client.set(f"session:{SID}", impersonated())
    redis_client.set(f"session:{ORIGINAL}", flask_session_record("support"))
    cookie = {"Cookie": "session=" + signer.sign(SID).decode()}
    with harness(kind, redis_url, session_secret="flask-secret", **IMPERSONATION) as h:
        reply = h.request("POST", STOP, headers={**cookie, **ACCEPT_JSON})
    restored = session_cookie(reply)
    assert restored is not None
    value = restored.split(";", 1)[0].split("=", 1)[1]
    assert signer.unsign(value).decode() == ORIGINAL


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Cookie": f"session={SID}"}, {"Authorization": f"Bearer {hs256_token('ann')}"}],
    ids=["nothing", "plain-session", "plain-token"],
)
def test_impersonation_path_not_impersonating_is_409(
    kind: Kind, headers: dict[str, str], redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set(f"session:{SID}", flask_session_record("ann"))
    with harness(kind, redis_url, **IMPERSONATION) as h:
        reply = h.request("POST", STOP, headers=headers)
    assert reply.status == 409
    assert reply.json()["error"] == "not_impersonating"
    assert reply.set_cookies == []
    assert redis_client.exists(f"session:{SID}") == 1
    assert redis_client.exists(EVENTS_STREAM) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_impersonation_path_refuses_get_and_cross_site(kind: Kind, redis_url: str) -> None:
    with harness(kind, redis_url, **IMPERSONATION) as h:
        assert h.request("GET", STOP).status == 405
        assert h.request("POST", STOP, headers={"Sec-Fetch-Site": "cross-site"}).status == 403
