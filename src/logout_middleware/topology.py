"""Where Redis is: one server, a Sentinel-managed primary, or a Redis Cluster.

``LOGOUT_REDIS_URL`` names one of three topologies, each served by redis-py's own client
(sync and ``redis.asyncio``); nothing here speaks the cluster or Sentinel protocol
itself:

* **one Redis**: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS),
  ``unix:///path/to/redis.sock[?db=N]``; redis-py's ``Redis.from_url``.
* **Sentinel**: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``,
  the form Celery and kombu users know. The sentinels are asked for the primary of
  ``service`` (redis-py's ``Sentinel.master_for``); the credentials are the primary's.
  After a failover, the next connection goes to the new primary.
* **Cluster**: ``LOGOUT_REDIS_CLUSTER=true`` with ``redis://`` or ``rediss://`` naming
  any node; redis-py's ``RedisCluster.from_url`` discovers the others and follows
  ``MOVED``/``ASK`` and failovers.

:func:`redis_target` parses and validates a URL (the configuration calls it, so a bad
URL stops the app at start-up); :func:`make_client` builds the client of a flavour with
the timeouts the stores use; :func:`probe` and :func:`start_probe` are the start-up
check: does Redis answer, and does it persist what it is told (a Redis without AOF and
without RDB snapshots forgets every revocation when it restarts).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import RedisClusterException
from redis.retry import Retry

__all__ = [
    "REDIS_ERRORS",
    "LazyClient",
    "RedisHealth",
    "RedisTarget",
    "aclose_client",
    "close_client",
    "hash_tag",
    "make_client",
    "probe",
    "redact_url",
    "redis_target",
    "start_probe",
]

logger = logging.getLogger("logout_middleware")

Kind = Literal["single", "sentinel", "cluster"]

#: What a failing Redis raises: redis-py's errors (a cluster client's own too) and the OS's.
REDIS_ERRORS = (redis.RedisError, OSError, RedisClusterException)

_SENTINEL_SCHEME = "redis+sentinel://"
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-_]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class RedisTarget:
    """A parsed ``LOGOUT_REDIS_URL`` (with ``LOGOUT_REDIS_CLUSTER``).

    :param kind: ``single``, ``sentinel`` or ``cluster``.
    :param url: the URL as given (``single``, ``cluster``).
    :param sentinels: ``(host, port)`` of each sentinel (``sentinel``).
    :param service: the Sentinel service (master) name (``sentinel``).
    :param db: the database number of the primary (``sentinel``).
    :param username: the primary's user, or None (``sentinel``).
    :param password: the primary's password, or None (``sentinel``).
    """

    kind: Kind
    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The URL with any password replaced by ``***``, for logs: in the user part
        and in the query (redis-py's ``?password=``, the form ``unix://`` URLs use)."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: after ``user:`` and in a
    ``password=`` query parameter."""
    url = re.sub(r"(://[^/@]*?:)[^/@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def hash_tag(key: str) -> str | None:
    """The hash tag of ``key`` as Redis Cluster reads it (the text between the first
    ``{`` and the first ``}`` after it, when not empty), or None: then the whole key is
    hashed to pick its slot."""
    start = key.find("{")
    end = key.find("}", start + 1) if start >= 0 else -1
    return key[start + 1 : end] if end > start + 1 else None


def redis_target(url: str, *, cluster: bool = False) -> RedisTarget:
    """Parse ``url`` into a :class:`RedisTarget`.

    :raises ValueError: a message saying what is wrong (an unknown scheme, a port that is
        not a number, a Sentinel URL without a service, a cluster on a Unix socket).
    """
    if url.startswith(_SENTINEL_SCHEME):
        if cluster:
            raise ValueError("a redis+sentinel:// URL cannot also be a cluster")
        return _sentinel_target(url)
    if not re.match(r"(rediss?|unix)://", url):
        raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")
    if cluster and url.startswith("unix://"):
        raise ValueError("a Redis Cluster is reached over TCP: use redis:// or rediss://")
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"cannot be parsed: {exc}") from None
    return RedisTarget("cluster" if cluster else "single", url)


def _sentinel_target(url: str) -> RedisTarget:
    parts = urlsplit("redis://" + url[len(_SENTINEL_SCHEME) :])
    credentials, _, hosts = parts.netloc.rpartition("@")
    sentinels: list[tuple[str, int]] = []
    for host in hosts.split(","):
        found = _HOST_PORT.match(host.strip())
        if not found or not 0 < int(found.group(2)) < 65536:
            raise ValueError(f"sentinel {host!r} is not host:port")
        sentinels.append((found.group(1).strip("[]"), int(found.group(2))))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("needs the service name after the sentinels: .../service[/db]")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError(f"the database {path[1]!r} is not a number")
    username = password = None
    if credentials:
        user, has_password, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    return RedisTarget(
        "sentinel",
        url,
        sentinels=tuple(sentinels),
        service=unquote(path[0]),
        db=int(path[1]) if len(path) == 2 else 0,
        username=username,
        password=password,
    )


def _options(target: RedisTarget, timeout: float) -> dict[str, Any]:
    """Timeouts that fail fast: ``timeout`` seconds to connect and to read, TCP
    keep-alive (not on Unix sockets), idle connections checked after 30 seconds."""
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 30,
    }
    if not target.url.startswith("unix://"):
        options["socket_keepalive"] = True
    return options


def make_client(
    target: RedisTarget,
    *,
    asyncio: bool,
    timeout: float,
    read_timeout: float | None = None,
    retries: int = 1,
    max_connections: int | None = None,
    client_name: str | None = None,
) -> Any:
    """A redis-py client for ``target``: ``redis.Redis``, ``redis.cluster.RedisCluster``
    or a Sentinel's ``master_for`` client (their ``redis.asyncio`` twins when
    ``asyncio``), never decoding responses.

    :param timeout: seconds to connect, and to read unless ``read_timeout`` is given.
    :param retries: retries of a command after a connection error, with no back-off (1
        replaces a stale pooled connection; 0 for the revocation cache's follower, whose
        own loop reconnects).
    :param max_connections: a bound on the connection pool (not for a cluster, whose
        client keeps a pool per node), or None.
    :param client_name: the connections' ``CLIENT SETNAME``, or None.
    """
    options = _options(target, timeout)
    if client_name is not None:
        options["client_name"] = client_name
    if read_timeout is not None:
        options["socket_timeout"] = read_timeout
    retry = (AsyncRetry if asyncio else Retry)(NoBackoff(), retries)
    if target.kind == "cluster":
        if asyncio:  # connects at its first command
            return redis.asyncio.cluster.RedisCluster.from_url(target.url, retry=retry, **options)
        return LazyClient(
            lambda: redis.cluster.RedisCluster.from_url(target.url, retry=retry, **options)
        )
    if target.kind == "sentinel":
        sentinel_class = redis.asyncio.sentinel.Sentinel if asyncio else redis.sentinel.Sentinel
        sentinel = sentinel_class(
            list(target.sentinels),
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
            socket_connect_timeout=timeout,
        )
        client_class: Any = redis.asyncio.Redis if asyncio else redis.Redis
        if max_connections is not None:
            options["max_connections"] = max_connections
        return sentinel.master_for(
            target.service,
            redis_class=client_class,
            db=target.db,
            username=target.username,
            password=target.password,
            retry=retry,
            **options,
        )
    client_class = redis.asyncio.Redis if asyncio else redis.Redis
    if max_connections is not None:
        options["max_connections"] = max_connections
    return client_class.from_url(target.url, retry=retry, **options)


class LazyClient:
    """A synchronous ``RedisCluster``, built at its first use rather than at start-up:
    redis-py's connects to the cluster in its constructor, and an app must start (and
    answer ``503`` for logouts) while the cluster is unreachable. Each use retries the
    construction until it succeeds; until then every command raises
    ``RedisClusterException``, as the built client would."""

    #: Not built yet, it has no pool: ``getattr(client, "connection_pool", None)``
    #: (asked of any client) must not connect.
    connection_pool = None

    def __init__(self, build: Any) -> None:
        self._build = build
        self._client: Any = None
        self._lock = threading.Lock()

    def built(self) -> Any:
        """The client, built now if it was not.

        :raises redis.exceptions.RedisClusterException: when no node answers.
        """
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._build()
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.built(), name)

    def close(self) -> None:
        """Close the client if it was built."""
        if self._client is not None:
            self._client.close()


def close_client(client: Any, *, own_pool: bool = True) -> None:
    """Close a synchronous client of :func:`make_client`; with ``own_pool`` also its
    connection pool (which a client made on a pool does not close) and, for a
    Sentinel's client, the connections to the sentinels that found its primary. Nothing
    it raises escapes (a cluster client may raise anything while it reinitializes)."""
    with contextlib.suppress(Exception):
        client.close()
        pool = getattr(client, "connection_pool", None)
        if own_pool and pool is not None:
            pool.disconnect()
        for sentinel in _sentinels_of(client):
            sentinel.close()


async def aclose_client(client: Any, *, own_pool: bool = True) -> None:
    """:func:`close_client` for a ``redis.asyncio`` client."""
    with contextlib.suppress(Exception):
        await client.aclose()
        pool = getattr(client, "connection_pool", None)
        if own_pool and pool is not None:
            await pool.disconnect()
        for sentinel in _sentinels_of(client):
            await sentinel.aclose()


def _sentinels_of(client: Any) -> list[Any]:
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    return list(getattr(manager, "sentinels", ()))


@dataclass(frozen=True)
class RedisHealth:
    """What the start-up check found.

    :param answers: whether Redis answered ``PING``.
    :param cause: why not, in words (``wrong password``, ``connection refused``,
        ``timed out``, ``TLS handshake failed``...), or "".
    :param version: the server's ``redis_version``, or "".
    :param persistence: ``aof``, ``rdb``, ``aof+rdb``, ``none``, or ``unknown`` where
        ``INFO``/``CONFIG`` are not allowed.
    """

    answers: bool
    cause: str = ""
    version: str = ""
    persistence: str = "unknown"


def _cause(target: RedisTarget, exc: BaseException) -> str:
    """A short cause for a failed connection, as an operator would name it, with the
    error's own words (at most 300 characters in all)."""
    return _named_cause(target, exc)[:300]


def _named_cause(target: RedisTarget, exc: BaseException) -> str:
    text = str(exc).lower()
    if isinstance(exc, redis.AuthenticationError) or "auth" in text or "wrongpass" in text:
        return f"wrong password or user ({exc})"
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        return f"no sentinel answered with a primary for {target.service!r}"
    tls = target.url.startswith("rediss://")
    if "ssl" in text or "tls" in text or "wrong version number" in text:
        return f"TLS handshake failed; does the port speak TLS? ({exc})"
    if isinstance(exc, redis.TimeoutError) or "timed out" in text or "timeout" in text:
        hint = "; TLS to a port that does not speak TLS?" if tls else ""
        return f"timed out{hint} ({exc})"
    if "refused" in text:
        return f"connection refused ({exc})"
    if "name or service not known" in text or "nodename" in text:
        return f"unknown host ({exc})"
    if "cluster" in text:
        return f"not a usable cluster ({exc})"
    return f"{type(exc).__name__}: {exc}"


def _persistence(client: Any) -> str:
    """``aof``/``rdb``/``aof+rdb``/``none`` from ``INFO persistence`` and
    ``CONFIG GET save``; ``unknown`` where either is refused."""
    try:
        info = client.info("persistence")
        if isinstance(info, dict) and info and "aof_enabled" not in info:
            info = next(iter(info.values()))  # a cluster answers per node
        aof = str(info.get("aof_enabled", "0")) == "1"
        saves = client.config_get("save")
        if isinstance(saves, dict) and "save" not in saves and saves:
            saves = next(iter(saves.values()))
        save = saves.get("save", b"") if isinstance(saves, dict) else b""
        rdb = bool(save.decode() if isinstance(save, bytes) else save)
    except (*REDIS_ERRORS, AttributeError, StopIteration):
        return "unknown"
    return "+".join(name for name, on in (("aof", aof), ("rdb", rdb)) if on) or "none"


def probe(target: RedisTarget, *, timeout: float) -> RedisHealth:
    """Ask Redis once: ``PING``, its version and its persistence. Never raises for
    Redis trouble: the answer says what went wrong."""
    try:
        client = make_client(target, asyncio=False, timeout=timeout, retries=0)
    except REDIS_ERRORS as exc:
        return RedisHealth(False, _cause(target, exc))
    try:
        client.ping()
        server = client.info("server")
        if isinstance(server, dict) and "redis_version" not in server and server:
            server = next(iter(server.values()))
        version = str(server.get("redis_version", "")) if isinstance(server, dict) else ""
        return RedisHealth(True, version=version, persistence=_persistence(client))
    except REDIS_ERRORS as exc:
        return RedisHealth(False, _cause(target, exc))
    finally:
        close_client(client)


def report(target: RedisTarget, health: RedisHealth) -> None:
    """Log the start-up check's result once: ``INFO`` when Redis answers and persists,
    ``WARNING`` when it persists nothing (a restart un-revokes every token) or may not,
    ``ERROR`` with the cause when it does not answer."""
    where = f"{target.kind} Redis at {target.shown}"
    if not health.answers:
        logger.error(
            "logout-middleware: %s does not answer: %s. Until it does, logouts answer 503 "
            "and are retried in the background, and credentials this process has not seen "
            "revoked follow LOGOUT_ON_CHECK_ERROR",
            where,
            health.cause,
        )
    elif health.persistence == "none":
        logger.warning(
            "logout-middleware: %s (v%s) answers but persists nothing (neither AOF nor RDB): "
            "a restart of Redis un-revokes every token and forgets every logout",
            where,
            health.version,
        )
    else:
        logger.info(
            "logout-middleware: %s (v%s) answers; persistence: %s",
            where,
            health.version,
            health.persistence,
        )


def start_probe(target: RedisTarget, *, timeout: float) -> threading.Thread:
    """Run :func:`probe` and :func:`report` in a daemon thread, so that start-up does not
    wait for a Redis that does not answer; returns the thread (tests join it)."""
    thread = threading.Thread(
        target=lambda: report(target, probe(target, timeout=timeout)),
        name="logout-redis-check",
        daemon=True,
    )
    thread.start()
    return thread
