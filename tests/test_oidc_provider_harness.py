"""The OpenID Connect test harness works: a real provider (node-oidc-provider 9, from
npm), real servers (waitress for Flask, uvicorn for FastAPI), a real Redis.

* A sign-in through the provider on tests/adoption_apps/oidc_flask.py and oidc_fastapi.py
  (Authlib, each wrapped by the middleware) ends with ``Logged in as alice``, and the
  session record in Redis holds the ID token's claims (``sub``, the provider's ``sid``)
  and the raw ID token, signed by the provider.
* Ending the session at the provider makes it POST a logout token to every client's
  ``backchannel_logout_uri`` (here a recording server of the test's own on loopback): a
  form with ``logout_token`` only, an RS256 JWT of ``typ`` ``logout+jwt`` with exactly
  ``iss``, ``aud``, ``sub``, ``sid``, ``events``, ``jti``, ``iat``, ``exp``, whose
  ``sid`` is the one in the app's session.
* An RP-initiated logout (``id_token_hint``, ``post_logout_redirect_uri``) confirmed on
  the provider's page comes back to the app with the ``state``.
* The provider process is stopped even when the test body raises.

Skipped, with the reason, when node or npm is not on PATH.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
import redis

from tests.oidc_provider import (
    BACKCHANNEL_EVENT,
    FRAMEWORKS,
    App,
    Framework,
    Provider,
    confirm_logout,
    end_session_at_provider,
    node_modules,  # noqa: F401 (a fixture)
    oidc_provider,
    planned_app,
    running,
    signed_in_record,
)
from tests.servers import REQUEST_TIMEOUT, SESSION_COOKIE, recording_server

LOGOUT_TOKEN_CLAIMS = {"iss", "aud", "sub", "sid", "events", "jti", "iat", "exp"}
#: Longest a back-channel delivery may take to arrive once logout is confirmed, seconds.
DELIVERY_TIMEOUT = 5.0

pytestmark = pytest.mark.usefixtures("node_modules")


def _verified(
    token: str, provider: Provider, audience: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a JWT signed by the provider (its JWKS) for ``audience``."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKClient(provider.jwks_uri, cache_keys=False, timeout=10).get_signing_key(
        str(header["kid"])
    )
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=provider.issuer,
        options={"require": ["iat", "exp"]},
    )
    return header, claims


def _signed_in(
    browser: httpx.Client,
    app: App,
    provider: Provider,
    redis_client: redis.Redis,
    login: str = "alice",
) -> dict[str, Any]:
    """Sign ``login`` in to ``app`` through the provider; check the page, the session
    record and its ID token; return the record."""
    _session_id, record = signed_in_record(browser, app, provider, redis_client, login)
    assert browser.get(app.url + "/").text == f"Logged in as {login}.\n"
    user = record["user"]
    id_token = record["id_token"]
    assert id_token.count(".") == 2
    header, claims = _verified(id_token, provider, app.client_id)
    assert header["alg"] == "RS256"
    assert claims["sub"] == login
    assert claims["sid"] == user["sid"]
    assert claims["nonce"] == user["nonce"]
    return record


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_sign_in_through_the_provider(
    framework: Framework, redis_url: str, redis_client: redis.Redis
) -> None:
    app = planned_app(framework)
    with running([app], redis_url) as run:
        stranger = run.client()

        assert run.browser.get(app.url + "/").text == "Not logged in.\n"
        _signed_in(run.browser, app, run.provider, redis_client)
        # Another browser has no session with the app, nor with the provider.
        assert stranger.get(app.url + "/").text == "Not logged in.\n"


def test_ending_the_provider_session_back_channels_every_client(
    redis_url: str, redis_client: redis.Redis
) -> None:
    with recording_server() as recorder:
        # Two loopback hosts: cookies ignore ports, and both apps' cookies are "session".
        apps = [
            planned_app("flask", "127.0.0.1", f"{recorder.url}/flask"),
            planned_app("fastapi", "127.0.0.2", f"{recorder.url}/fastapi"),
        ]
        with running(apps, redis_url) as run:
            provider, browser = run.provider, run.browser
            # One browser, one provider session, two apps (the second sign-in needs no login).
            sids = {
                app.client_id: _signed_in(browser, app, provider, redis_client)["user"]["sid"]
                for app in apps
            }
            # One sid per provider session and client; each app has a session of its own.
            assert len(set(sids.values())) == 2
            cookies = {browser.cookies.get(SESSION_COOKIE, domain=app.host) for app in apps}
            assert len(cookies) == 2
            assert all(cookies)
            assert recorder.wait_for(1, timeout=0) == []

            started = time.monotonic()
            done = end_session_at_provider(browser, provider)
            assert done.status_code == 200
            assert str(done.url) == f"{provider.end_session_endpoint}/success"
            deliveries = recorder.wait_for(2, timeout=DELIVERY_TIMEOUT)
            assert time.monotonic() - started < DELIVERY_TIMEOUT

            assert sorted(delivery.path for delivery in deliveries) == ["/fastapi", "/flask"]
            for delivery in deliveries:
                client_id = f"{delivery.path.strip('/')}-app"
                assert delivery.method == "POST"
                content_type = delivery.headers["content-type"]
                assert content_type.startswith("application/x-www-form-urlencoded")
                form = delivery.form()
                assert list(form) == ["logout_token"]
                assert len(form["logout_token"]) == 1

                header, claims = _verified(form["logout_token"][0], provider, client_id)
                assert header["alg"] == "RS256"
                assert header["typ"] == "logout+jwt"
                assert header.get("kid")
                assert set(claims) == LOGOUT_TOKEN_CLAIMS
                assert claims["iss"] == provider.issuer
                assert claims["aud"] == client_id
                assert claims["sub"] == "alice"
                assert claims["sid"] == sids[client_id]
                assert claims["events"] == {BACKCHANNEL_EVENT: {}}
                assert claims["jti"]
                assert claims["exp"] > claims["iat"]
            assert provider.output().count("backchannel.success") == 2


def test_rp_initiated_logout_comes_back_to_the_app(
    redis_url: str, redis_client: redis.Redis
) -> None:
    with recording_server() as recorder:
        app = planned_app("fastapi", backchannel_logout_uri=f"{recorder.url}/fastapi")
        with running([app], redis_url) as run:
            provider, browser = run.provider, run.browser
            record = _signed_in(browser, app, provider, redis_client)

            query = urlencode(
                {
                    "id_token_hint": record["id_token"],
                    "post_logout_redirect_uri": app.url + "/",
                    "state": "s-123",
                }
            )
            page = browser.get(f"{provider.end_session_endpoint}?{query}")
            assert page.status_code == 200
            back = confirm_logout(browser, page)
            assert back.status_code == 200
            assert str(back.url) == f"{app.url}/?state=s-123"
            assert len(recorder.wait_for(1, timeout=DELIVERY_TIMEOUT)) == 1


def _raise_inside_provider(started: list[Provider]) -> None:
    """Start a provider, check it answers, and raise from the body of its context."""
    with oidc_provider([]) as provider:
        started.append(provider)
        metadata = httpx.get(provider.discovery_url, timeout=REQUEST_TIMEOUT).json()
        assert metadata["issuer"] == provider.issuer
        assert metadata["end_session_endpoint"] == provider.end_session_endpoint
        raise RuntimeError("boom")


def test_the_provider_is_stopped_when_the_body_raises() -> None:
    started: list[Provider] = []
    with pytest.raises(RuntimeError, match="boom"):
        _raise_inside_provider(started)
    [provider] = started
    assert provider.process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(provider.discovery_url, timeout=REQUEST_TIMEOUT)
