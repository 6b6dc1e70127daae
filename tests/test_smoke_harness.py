from __future__ import annotations

import pytest
import redis

from .harness import KINDS, Kind, harness


@pytest.mark.parametrize("kind", KINDS)
def test_logout_deletes_session_and_redirects(
    kind: Kind, redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set("session:abc", b"x")
    with harness(kind, redis_url) as h:
        reply = h.post_logout(headers={"Cookie": "session=abc"})
        assert reply.status == 303
        assert reply.header("location") == "/"
        assert redis_client.exists("session:abc") == 0
        assert h.request("GET", "/other").body == b"app"
