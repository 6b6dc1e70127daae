"""Faults of Redis (one server, a Sentinel group, a Cluster) under real servers and
mixed traffic.

The stack of each scenario: the middleware's Redis, whose servers append every write
to their AOF and fsync it before answering (tests/topologies.py), the FastAPI example
under uvicorn with two workers and the Flask example under waitress, each with the
README's recipe settings plus ``LOGOUT_REDIS_TIMEOUT=0.5`` (the revocation cache left
on, its default).

* One Redis: the apps keep their sessions on it too (``REDIS_URL`` is
  ``LOGOUT_REDIS_URL``), so a logout deletes the session record there.
* Sentinel (``redis+sentinel://``) and Cluster (``LOGOUT_REDIS_CLUSTER=true``): the
  examples' own session stores are plain redis-py clients on ``REDIS_URL``, which can
  follow neither, so the apps keep their sessions on a separate single Redis that never
  fails, and the middleware keeps its state (denylist, tombstones, audit stream) on the
  topology. A logout there deletes no session record (none is on the topology); what
  ends the session is its tombstone: every server refuses the old cookie (the app sees
  no session) from then on. What these scenarios prove about sessions is that path,
  and about tokens the denylist; the record's ``DEL`` is proven on one Redis.

Traffic, per example: a login thread (``POST /login``, and ``POST /token`` for the
FastAPI example's JWT), a browsing thread (``GET /`` with the cookies of sessions kept
for browsing), and user threads (:data:`USERS`) that each take a logged-in session from
the stock, call the API with its bearer token only (the FastAPI example's JWT on
``/api/me``; an opaque token on the Flask example's ``/``) and log out with the cookie
and the token.

What is bounded: the requests the middleware answers (logouts) and those whose answer
needs no Redis of the app's own (bearer-token calls without a cookie) answer within
:data:`LATENCY_BOUND` and never with a 5xx other than ``503``. The others (logins,
pages with a session cookie) wait on the app's own session store, whose redis-py
client has no timeout and retries with backoff; while Redis is down they may take
longer and answer ``500``: that is the app's answer, counted and printed, not judged,
except that it must come, and outside the outage be a success.

Scenarios on one Redis: killed and restarted (logouts answered ``303`` before stay in
force; those answered ``503`` are carried out by the background retry with no further
logout); paused (``SIGSTOP``) and continued (every audit entry id appears once); a mass
logout replayed; and bad configuration refused at start-up by the server commands.

On Sentinel and Cluster, a primary killed under traffic (on a cluster, the one holding
the audit stream's slot, and one that does not): the answers stay bounded; logouts
stop shortly after the kill, before any replica can be promoted, so that those answered
``503`` are carried out by the background retry alone; logouts answered ``303`` before
and after are in force on the new primary; each audit entry id appears once and each
logout has exactly one entry; and a token revoked through one server afterwards is
refused by the other from its revocation cache (no revocation check reaches Redis):
every process's follower found the new primary. There the apps' own store never fails,
so every request is held to the bound and the apps' requests must all succeed; and
credentials are replayed on each process of each server (each of uvicorn's workers has
its own revocation cache). On the Cluster also: a logout written in part (its audit
entry on a live shard, its denylist key on one just killed) and retried later reaches
every process's revocation cache; the audit stream's slot and some denylist keys' slots
moved live to other primaries (``CLUSTER SETSLOT`` and ``MIGRATE``) under traffic,
nothing lost and the followers following the stream to its new shard; and a mass
logout of bearer tokens, every replay refused.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import itertools
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, cast

import httpx
import jwt
import pytest
import redis
from redis.cluster import RedisCluster as ClusterClient
from redis.crc import key_slot

from examples.demo import set_cookie
from examples.recipes import Recipe, read_recipes
from logout_middleware.testing import free_port
from tests.servers import (
    EVENTS_STREAM,
    ROOT,
    Server,
    audit_entries,
    children,
    left_running,
    serve,
    sha256_hex,
    token_key,
    tombstone_key,
    waited,
)
from tests.topologies import AOF, RedisCluster, RedisProcess, SentinelGroup

pytestmark = pytest.mark.faults

_T = TypeVar("_T")
_R = TypeVar("_R")

RECIPES = read_recipes()
#: ``LOGOUT_REDIS_TIMEOUT`` of every server here, seconds.
REDIS_TIMEOUT = 0.5
#: The longest a bounded request may take, seconds: each Redis round trip of the
#: middleware is a connect and a read of at most ``LOGOUT_REDIS_TIMEOUT`` each, tried
#: twice, and a logout makes at most two (the session record's read, the transaction):
#: 4 x the timeout, plus 2 s of slack for two busy cores.
LATENCY_BOUND = 4 * REDIS_TIMEOUT + 2.0
#: How soon after Redis is back the logouts answered ``503`` must be in force, seconds.
RETRY_WITHIN = 5.0
#: Traffic before the fault, the fault's length, and traffic after a pause, seconds.
BEFORE_FAULT = 1.5
OUTAGE = 3.0
AFTER_PAUSE = 2.0
#: User threads per example. The Flask example's two, with its login and browsing
#: threads, make 4, as many as waitress's default threads, so that no request queues
#: behind one stuck on the app's Redis; uvicorn queues none.
USERS = {"fastapi": 4, "flask": 2}
#: Logged-in sessions ready for each user thread before the traffic starts.
STOCK = 30
#: Sessions the browsing thread keeps loading, per example (never logged out).
BROWSED = 4
#: Pause between two iterations of a traffic thread, seconds.
PACE = 0.05
#: Client timeout of every request: an app request stuck on its own Redis must still
#: get an answer within it, seconds.
REQUEST_TIMEOUT = 30.0
#: Sessions (and bearer tokens) of the mass logout, per example.
MASS = 1000
#: How long logouts go on after a primary is killed, seconds: less than a Sentinel's
#: ``down-after-milliseconds`` and a Cluster's ``cluster-node-timeout`` (1 s each), so
#: that no replica can have been promoted when they stop.
INTO_FAILOVER = 0.6
#: Traffic after a failover or a resharding, seconds.
AFTER_FAULT = 2.0
#: How soon a token revoked through one server must be refused by the other from its
#: revocation cache, seconds.
CACHE_WITHIN = 3.0
#: Requests of one probe of a revocation cache, to each process of a server.
CACHE_PROBES = 5
#: The commands of a revocation check or a session record's read: a server whose
#: revocation cache is live sends none of them for a bearer token.
CHECK_COMMANDS = ("exists", "get", "mget", "zrangebyscore")
#: The audit stream's hash slot.
STREAM_SLOT = key_slot(EVENTS_STREAM.encode())
#: Denylist keys (of tokens revoked before) whose slots the resharding moves.
DENYLIST_MOVES = 3
#: Bearer tokens of the mass logout on the Cluster (half through each example).
CLUSTER_MASS = 2000


# -- the examples ------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One served example, as the traffic uses it."""

    name: str
    url: str
    #: The Redis key of a session, ``{sid}`` standing for its id.
    session_key: str
    #: Where a bearer-token call goes (no cookie sent: the app needs no Redis for it).
    api: str
    #: Whether the app issues JWTs (``POST /token``); else the tokens are opaque.
    issues_jwts: bool

    def record(self, sid: str) -> str:
        return self.session_key.replace("{sid}", sid)


@dataclass(frozen=True)
class Session:
    """A logged-in session and its bearer token."""

    example: Example
    user: str
    sid: str
    token: str


@dataclass(frozen=True)
class Sent:
    """One request and its answer (``status`` 0: none, the client gave up)."""

    example: str
    kind: str
    status: int
    started: float
    elapsed: float
    #: Why there was no answer (``status`` 0).
    error: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


@dataclass(frozen=True)
class Logout:
    """A logout the traffic sent, and its answer."""

    session: Session
    status: int
    started: float
    elapsed: float


#: Kinds of request whose answer does not wait on the app's own Redis client.
BOUNDED = ("logout", "api")


class Client:
    """An httpx client for one thread: it sends exactly the cookie and token given
    (the jar is emptied after each answer) and records every request in ``log``."""

    def __init__(self, example: Example, log: list[Sent]) -> None:
        self.example = example
        self.log = log
        self.http = httpx.Client(
            base_url=example.url, follow_redirects=False, timeout=REQUEST_TIMEOUT
        )

    def send(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        cookie: str | None = None,
        token: str | None = None,
        form: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        headers = {}
        if cookie is not None:
            headers["Cookie"] = f"session={cookie}"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        response: httpx.Response | None = None
        error = ""
        try:
            response = self.http.request(method, path, headers=headers, data=form)
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
        finally:
            self.http.cookies.clear()
        elapsed = time.monotonic() - started
        status = 0 if response is None else response.status_code
        self.log.append(Sent(self.example.name, kind, status, started, elapsed, error))
        return response

    def login(self, user: str) -> Session | None:
        """Log in as ``user`` (and get a JWT where the app issues them); None when the
        app could not."""
        response = self.send("login", "POST", "/login", form={"username": user})
        cookie = set_cookie(response) if response is not None else None
        if response is None or response.status_code != 303 or cookie is None:
            return None
        if not self.example.issues_jwts:
            return Session(self.example, user, cookie.value, "opaque-" + secrets.token_hex(16))
        issued = self.send("token", "POST", "/token", cookie=cookie.value)
        if issued is None or issued.status_code != 200:
            return None
        return Session(self.example, user, cookie.value, str(issued.json()["access_token"]))

    def close(self) -> None:
        self.http.close()


#: The middleware's Redis.
Topology = RedisProcess | SentinelGroup | RedisCluster
TopologyKind = Literal["single", "sentinel", "cluster"]


@dataclass
class Stack:
    """The middleware's Redis (``topology``), the apps' own session store (``server``:
    the same Redis on one server) and both examples served on them."""

    server: RedisProcess
    examples: list[Example]
    servers: list[Server]
    topology: Topology
    #: The FastAPI example's ``JWT_SECRET``, to mint tokens it accepts.
    jwt_secret: str

    @property
    def records_here(self) -> bool:
        """Whether the session records are on the middleware's Redis (one server), where
        a logout deletes them."""
        return self.topology is self.server

    def client(self) -> redis.Redis:
        """A client on the apps' session store (the middleware's Redis on one server)."""
        return self.server.client()

    @contextlib.contextmanager
    def state(self) -> Iterator[redis.Redis]:
        """A client on the middleware's Redis: the server, the Sentinel's primary now, or
        a cluster client (typed as ``redis.Redis``: only single-key commands are sent)."""
        topology = self.topology
        client: redis.Redis
        if isinstance(topology, RedisCluster):
            client = cast(
                "redis.Redis",
                ClusterClient.from_url(
                    topology.url, socket_timeout=2.0, socket_connect_timeout=2.0
                ),
            )
        elif isinstance(topology, SentinelGroup):
            client = topology.primary().client()
        else:
            client = topology.client()
        try:
            yield client
        finally:
            client.close()

    def processes(self, example: Example) -> list[int]:
        """The processes that serve ``example``'s requests: uvicorn's workers (the
        children holding its listening socket), waitress's one process."""
        server = self.servers[self.examples.index(example)]
        listening = _socket_inodes(server.port, None)
        found = [
            pid
            for pid in sorted({server.process.pid, *children(server.process.pid)})
            if _holds(pid, listening)
        ]
        if len(found) > 1:  # uvicorn's main process listens, its workers accept
            found.remove(server.process.pid)
        return found

    def primaries(self) -> list[RedisProcess]:
        """The servers of the middleware's Redis that take writes now."""
        topology = self.topology
        if isinstance(topology, RedisCluster):
            return topology.primaries()
        if isinstance(topology, SentinelGroup):
            return [topology.primary()]
        return [topology]

    def tracebacks(self) -> dict[str, int]:
        """How many tracebacks each server printed."""
        return {
            e.name: s.output().count("Traceback")
            for e, s in zip(self.examples, self.servers, strict=True)
        }


def server_env(recipe: Recipe, redis_url: str, **extra: str) -> dict[str, str]:
    """The recipe's environment on ``redis_url``, ``LOGOUT_REDIS_TIMEOUT`` and ``extra``;
    ``LOGOUT_REVOCATION_CACHE`` is left at its default (on)."""
    env = recipe.env(redis_url)
    env["LOGOUT_REDIS_TIMEOUT"] = str(REDIS_TIMEOUT)
    env.update(extra)
    assert "LOGOUT_REVOCATION_CACHE" not in env
    return env


@contextlib.contextmanager
def fault_stack(kind: TopologyKind = "single") -> Iterator[Stack]:
    """:class:`Stack` on one Redis with AOF, a Sentinel group or a 3 x 1 Cluster (their
    servers with AOF; the apps' sessions on a Redis of their own): everything stopped
    on exit."""
    fastapi, flask = RECIPES["fastapi"], RECIPES["flask"]
    with contextlib.ExitStack() as stack:
        topology: Topology
        if kind == "sentinel":
            topology = stack.enter_context(SentinelGroup(options=AOF))
        elif kind == "cluster":
            topology = stack.enter_context(RedisCluster(options=AOF))
        else:
            topology = stack.enter_context(RedisProcess(AOF, name="redis (AOF)"))
        server = (
            topology
            if isinstance(topology, RedisProcess)
            else stack.enter_context(RedisProcess(name="the apps' sessions"))
        )
        url = topology.url
        extra = {"REDIS_URL": server.url}
        if kind == "cluster":
            extra["LOGOUT_REDIS_CLUSTER"] = "true"
        fastapi_env = server_env(fastapi, url, **extra)
        served_fastapi = stack.enter_context(
            serve(
                "FastAPI example (uvicorn, 2 workers)",
                lambda port: [*fastapi.command(port), "--workers", "2"],
                fastapi_env,
            )
        )
        served_flask = stack.enter_context(
            serve("Flask example (waitress)", flask.command, server_env(flask, url, **extra))
        )
        examples = [
            Example("fastapi", served_fastapi.url, "starsessions.{sid}", "/api/me", True),
            Example("flask", served_flask.url, "session:{sid}", "/", False),
        ]
        servers = [served_fastapi, served_flask]
        yield Stack(server, examples, servers, topology, fastapi_env["JWT_SECRET"])
        workers = children(served_fastapi.process.pid)
    # Outside the servers' contexts: every process is stopped, uvicorn's workers too.
    assert left_running(workers, f"LOGOUT_REDIS_URL={url}") == set()


# -- every process of a server ------------------------------------------------------------


def _socket_inodes(port: int, peer: int | None) -> set[str]:
    """The ``socket:[inode]`` names of the loopback TCP sockets on local ``port``:
    connected to ``peer``, or listening when ``peer`` is None (Linux ``/proc``)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if int(local.rsplit(":", 1)[1], 16) != port:
                    continue
                listens = state == "0A"
                if (peer is None and listens) or (
                    peer is not None and not listens and int(remote.rsplit(":", 1)[1], 16) == peer
                ):
                    found.add(f"socket:[{fields[9]}]")
    return found


def _holds(pid: int, sockets: set[str]) -> bool:
    """Whether process ``pid`` has one of ``sockets`` open."""
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in sockets:
                    return True
    return False


@dataclass
class ProcessConnection:
    """A keep-alive HTTP connection served by one process (``pid``) of an example."""

    example: Example
    pid: int
    connection: http.client.HTTPConnection

    def get(self, path: str, headers: dict[str, str], method: str = "GET") -> tuple[int, str]:
        """``GET path`` (or ``method``) with ``headers``: the status and the body."""
        self.connection.request(method, path, headers=headers)
        response = self.connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")


@contextlib.contextmanager
def connection_to_each_process(
    stack: Stack, example: Example, timeout: float = 10.0
) -> Iterator[list[ProcessConnection]]:
    """One keep-alive connection to each process serving ``example`` (found by which
    process holds the server side of the connection), so that a request can be sent
    to a chosen uvicorn worker. Use them at once: uvicorn closes a connection idle for
    5 seconds."""
    pids = stack.processes(example)
    host, port = example.url.removeprefix("http://").rsplit(":", 1)
    found: dict[int, ProcessConnection] = {}
    opened: list[http.client.HTTPConnection] = []
    try:
        deadline = time.monotonic() + timeout
        while len(found) < len(pids):
            assert time.monotonic() < deadline, f"{example.name}: reached {found} of {pids}"
            batch = [
                http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT)
                for _ in range(4)
            ]
            opened += batch
            for connection in batch:  # all sent before any is read: the workers share them
                connection.request("GET", example.api)
            for connection in batch:
                connection.getresponse().read()
                assert connection.sock is not None
                served = _socket_inodes(int(port), connection.sock.getsockname()[1])
                pid = next((pid for pid in pids if _holds(pid, served)), None)
                if pid is not None and pid not in found:
                    found[pid] = ProcessConnection(example, pid, connection)
        yield [found[pid] for pid in pids]
    finally:
        for connection in opened:
            connection.close()


# -- traffic -----------------------------------------------------------------------------


class Traffic:
    """Mixed traffic on the examples of a :class:`Stack` (see the module docstring)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.sent: list[Sent] = []
        self.logouts: list[Logout] = []
        self.stock: dict[str, collections.deque[Session]] = {}
        self.browsed: dict[str, list[Session]] = {}
        self._users_stop = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._user_threads: list[threading.Thread] = []
        self._names = itertools.count()
        self.errors: list[BaseException] = []

    def user_name(self) -> str:
        return f"user{next(self._names)}"

    def prepare(self) -> None:
        """Log in :data:`STOCK` sessions for each user thread and :data:`BROWSED` for
        browsing (on a healthy Redis: each must succeed)."""
        for example in self.stack.examples:
            wanted = STOCK * USERS[example.name] + BROWSED
            names = [self.user_name() for _ in range(wanted)]
            made = parallel(example, names, Client.login)
            sessions = [s for s in made if s is not None]
            assert len(sessions) == wanted, f"{example.name}: {len(sessions)} of {wanted} logins"
            self.browsed[example.name] = sessions[:BROWSED]
            self.stock[example.name] = collections.deque(sessions[BROWSED:])

    def start(self) -> None:
        for example in self.stack.examples:
            roles: list[Callable[[Client], None]] = [self._logins, self._browsing]
            roles += [self._user] * USERS[example.name]
            for role in roles:
                self._spawn(role, example)

    def _spawn(self, role: Callable[[Client], None], example: Example) -> None:
        thread = threading.Thread(target=self._run, args=(role, example), daemon=True)
        self._threads.append(thread)
        if role == self._user:
            self._user_threads.append(thread)
        thread.start()

    def _run(self, role: Callable[[Client], None], example: Example) -> None:
        client = Client(example, self.sent)
        try:
            role(client)
        except BaseException as exc:  # reported by stop()
            self.errors.append(exc)
        finally:
            client.close()

    def _logins(self, client: Client) -> None:
        while not self._stop.is_set():
            session = client.login(self.user_name())
            if session is not None:
                self.stock[client.example.name].append(session)
            self._stop.wait(PACE)

    def _browsing(self, client: Client) -> None:
        while not self._stop.is_set():
            for session in self.browsed[client.example.name]:
                client.send("page", "GET", "/", cookie=session.sid)
            self._stop.wait(PACE)

    def _user(self, client: Client) -> None:
        stock = self.stock[client.example.name]
        while not self._users_stop.is_set():
            try:
                session = stock.popleft()
            except IndexError:
                self._users_stop.wait(PACE)
                continue
            client.send("api", "GET", client.example.api, token=session.token)
            started = time.monotonic()
            response = client.send(
                "logout", "POST", "/logout", cookie=session.sid, token=session.token
            )
            status = 0 if response is None else response.status_code
            self.logouts.append(Logout(session, status, started, time.monotonic() - started))
            self._users_stop.wait(PACE)

    def stop_logouts(self) -> None:
        """Stop the user threads: no logout is sent once this returns."""
        self._users_stop.set()
        for thread in self._user_threads:
            thread.join(REQUEST_TIMEOUT + 5)

    def resume_logouts(self) -> None:
        """Start the user threads again after :meth:`stop_logouts`."""
        self._users_stop.clear()
        for example in self.stack.examples:
            for _ in range(USERS[example.name]):
                self._spawn(self._user, example)

    def stop(self) -> None:
        """Stop every thread; raise what any of them raised."""
        self._users_stop.set()
        self._stop.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT + 5)
        assert not any(thread.is_alive() for thread in self._threads)
        if self.errors:
            raise self.errors[0]

    # -- figures ---------------------------------------------------------------------

    def statuses(self) -> dict[str, dict[int, int]]:
        """Answers by ``example kind`` and status."""
        found: dict[str, collections.Counter[int]] = collections.defaultdict(collections.Counter)
        for sent in self.sent:
            found[f"{sent.example} {sent.kind}"][sent.status] += 1
        return {key: dict(sorted(counts.items())) for key, counts in sorted(found.items())}

    def max_latency(self, kinds: Sequence[str] | None = None) -> float:
        chosen = [s.elapsed for s in self.sent if kinds is None or s.kind in kinds]
        return max(chosen, default=0.0)

    def report(self, title: str, **more: object) -> None:
        lines = [f"{title}: {len(self.sent)} requests, {len(self.logouts)} logouts"]
        for key, counts in self.statuses().items():
            lines.append(f"  {key:16} {counts}")
        lines.append(
            f"  max latency: bounded kinds {self.max_latency(BOUNDED):.3f} s "
            f"(bound {LATENCY_BOUND:.1f} s), all {self.max_latency():.3f} s"
        )
        lines += [f"  {name}: {value}" for name, value in more.items()]
        print("\n".join(lines), flush=True)


def parallel(
    example: Example, items: Sequence[_T], work: Callable[[Client, _T], _R], threads: int = 16
) -> list[_R]:
    """``work(client, item)`` for each of ``items``, on ``threads`` threads with a
    client each; the results in the order of ``items``."""
    local = threading.local()
    clients: list[Client] = []
    log: list[Sent] = []

    def one(item: _T) -> _R:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = Client(example, log)
            clients.append(client)
        return work(client, item)

    try:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(one, items))
    finally:
        for client in clients:
            client.close()


# -- what must hold ----------------------------------------------------------------------


def not_in_force(
    client: redis.Redis, logouts: Sequence[Logout], *, records: bool = True
) -> list[Logout]:
    """The logouts not carried out in the middleware's Redis: no tombstone, or the token
    not on the denylist, or (with ``records``: the session records are there too) the
    session record still there."""
    pipe = client.pipeline(transaction=False)
    for logout in logouts:
        session = logout.session
        pipe.exists(session.example.record(session.sid))
        pipe.exists(tombstone_key(session.sid))
        pipe.exists(token_key(session.token))
    replies = pipe.execute()
    return [
        logout
        for logout, (record, tombstone, denied) in zip(
            logouts, zip(*[iter(replies)] * 3, strict=True), strict=True
        )
        if (record and records) or not tombstone or not denied
    ]


def retried_within(stack: Stack, traffic: Traffic, *, records: bool = True) -> float | None:
    """How long, in seconds, until every logout the traffic saw answered ``503`` was in
    force in the middleware's Redis (the background retry's work); None when that took
    more than :data:`RETRY_WITHIN` seconds. ``records``: also their session records gone
    (only where the apps' sessions live in the same Redis)."""
    failed = [lg for lg in traffic.logouts if lg.status == 503]
    with stack.state() as client:
        return waited(all_in_force(client, failed, records=records), RETRY_WITHIN, 0.05)


def all_in_force(
    client: redis.Redis, logouts: Sequence[Logout], *, records: bool = True
) -> Callable[[], bool]:
    """A condition for :func:`waited`: every one of ``logouts`` is in force in Redis (a
    Redis error, mid-failover, counts as not yet)."""

    def in_force() -> bool:
        try:
            return not not_in_force(client, logouts, records=records)
        except (redis.RedisError, OSError):
            return False

    return in_force


def replays_accepted(logouts: Sequence[Logout]) -> list[str]:
    """Replay each logged-out session's cookie (``GET /``) and token (its API, no
    cookie); what was accepted: a page that shows the user, or a token answered 200."""
    accepted: list[str] = []

    def replay(client: Client, logout: Logout) -> None:
        session = logout.session
        page = client.send("replay", "GET", "/", cookie=session.sid)
        if page is None or page.status_code != 200 or "Not logged in." not in page.text:
            status = None if page is None else page.status_code
            accepted.append(f"{session.example.name} cookie of {session.user}: {status}")
        api = client.send("replay", "GET", session.example.api, token=session.token)
        if api is None or api.status_code != 401:
            status = None if api is None else api.status_code
            accepted.append(f"{session.example.name} token of {session.user}: {status}")

    by_example: dict[Example, list[Logout]] = collections.defaultdict(list)
    for logout in logouts:
        by_example[logout.session.example].append(logout)
    for example, group in by_example.items():
        parallel(example, group, replay)
    return accepted


def refused_everywhere(stack: Stack, logouts: Sequence[Logout]) -> list[str]:
    """Replay each logout's token on every process of every server (whichever server
    logged it out) and its cookie on every process of its own server, so that every
    process's revocation cache is asked; what was accepted (the token: any answer but
    401; the cookie: a page that shows the user)."""
    accepted: list[str] = []
    with contextlib.ExitStack() as opened:
        connections = {
            example.name: opened.enter_context(connection_to_each_process(stack, example))
            for example in stack.examples
        }
        for logout in logouts:
            session = logout.session
            replays = [
                (connection, "token", connection.example.api, f"Bearer {session.token}")
                for example in stack.examples
                for connection in connections[example.name]
            ]
            replays += [
                (connection, "cookie", "/", f"session={session.sid}")
                for connection in connections[session.example.name]
            ]
            for connection, kind, path, value in replays:
                header = "Authorization" if kind == "token" else "Cookie"
                status, text = connection.get(path, {header: value})
                if (kind == "token" and status != 401) or (
                    kind == "cookie" and (status != 200 or "Not logged in." not in text)
                ):
                    accepted.append(
                        f"{connection.example.name} (pid {connection.pid}) accepted the {kind} "
                        f"of {session.user} (logged out on {session.example.name}, answered "
                        f"{logout.status}): {status}"
                    )
    return accepted


def bounded_failures(traffic: Traffic, outage: tuple[float, float] | None) -> list[str]:
    """What breaks the bounds. A bounded request (:data:`BOUNDED`) must be answered,
    within :data:`LATENCY_BOUND`, never with a 5xx other than 503, and a logout with 303
    or 503. An app request (login, token, page) must be answered with no 5xx unless it
    overlapped the ``outage`` (start, end): then it may fail as the app fails without
    its store (``500``, or a connection reset: uvicorn closes the connection after an
    app's exception, and the client's next request on it is reset). With ``outage``
    None (the apps' own store never failed: the Sentinel and Cluster stacks) every
    request is bounded, and app requests are never answered 5xx."""
    start, end = outage if outage is not None else (float("inf"), float("-inf"))
    found: list[str] = []
    for sent in traffic.sent:
        what = f"{sent.example} {sent.kind} {sent.status} in {sent.elapsed:.2f} s {sent.error}"
        if outage is None and sent.kind not in BOUNDED and sent.elapsed > LATENCY_BOUND:
            found.append(f"too slow: {what}")
        if sent.kind in BOUNDED:
            if sent.status == 0:
                found.append(f"unanswered: {what}")
            if sent.elapsed > LATENCY_BOUND:
                found.append(f"too slow: {what}")
            if sent.status >= 500 and sent.status != 503:
                found.append(f"5xx: {what}")
            if sent.kind == "logout" and sent.status not in (303, 503):
                found.append(f"logout answered: {what}")
        elif (sent.status == 0 or sent.status >= 500) and (
            sent.ended < start or sent.started > end
        ):
            found.append(f"failed outside the outage: {what}")
    return found


def assert_unique_audit_ids(client: redis.Redis) -> None:
    """Each audit entry id appears once in the stream."""
    entries = audit_entries(client)
    counts = collections.Counter(entry["id"] for entry in entries)
    duplicated = {entry_id: n for entry_id, n in counts.items() if n > 1}
    print(
        f"audit stream: {len(entries)} entries, {len(counts)} ids, "
        f"{len(duplicated)} ids written more than once "
        f"({sum(duplicated.values()) - len(duplicated)} extra entries)",
        flush=True,
    )
    assert not duplicated, f"audit entry ids written more than once: {duplicated}"


# -- a: Redis killed and restarted -------------------------------------------------------


@dataclass
class Run:
    """What one fault scenario saw."""

    stack: Stack
    traffic: Traffic
    #: When the fault began and when Redis answered again (``time.monotonic()``).
    outage: tuple[float, float]
    #: How long after Redis was back the logouts answered 503 were all in force,
    #: seconds; None when they were not within :data:`RETRY_WITHIN`.
    retried_after: float | None = None

    def logouts(self, status: int) -> list[Logout]:
        return [logout for logout in self.traffic.logouts if logout.status == status]

    def retry_figure(self) -> str:
        waited = "not" if self.retried_after is None else f"{self.retried_after:.2f} s"
        return f"{waited} (within {RETRY_WITHIN:g} s)"


@pytest.fixture(scope="class")
def killed() -> Iterator[Run]:
    with kill_scenario() as run:
        yield run


@contextlib.contextmanager
def kill_scenario() -> Iterator[Run]:
    """Redis killed (``SIGKILL``) under traffic for :data:`OUTAGE` seconds; the logouts
    stop; Redis restarted on its AOF; then, with no logout sent, how long until the
    logouts answered 503 are in force."""
    with fault_stack() as stack:
        traffic = Traffic(stack)
        traffic.prepare()
        traffic.start()
        try:
            time.sleep(BEFORE_FAULT)  # traffic on a healthy Redis
            fault = time.monotonic()
            stack.server.kill()
            time.sleep(OUTAGE)
            traffic.stop_logouts()
            stack.server.restart()
            back = time.monotonic()
            retried_after = retried_within(stack, traffic)
        finally:
            traffic.stop()
        run = Run(stack, traffic, (fault, back), retried_after)
        traffic.report(
            "Redis killed and restarted",
            outage=f"{back - fault:.2f} s",
            logouts_503=len(run.logouts(503)),
            logouts_503_in_force_after_redis_was_back=run.retry_figure(),
            server_tracebacks=stack.tracebacks(),
        )
        yield run


class TestRedisKilledAndRestarted:
    def test_logouts_answered_before_the_kill_stay_in_force_and_answers_are_bounded(
        self, killed: Run
    ) -> None:
        done = killed.logouts(303)
        assert done, "no logout before the kill"
        assert killed.logouts(503), "no logout during the outage"
        assert bounded_failures(killed.traffic, killed.outage) == []
        client = killed.stack.client()
        try:
            assert not_in_force(client, done) == []
        finally:
            client.close()
        assert replays_accepted(done) == []
        print(f"{len(done)} logouts answered 303: all in force after the restart", flush=True)

    def test_logouts_answered_503_are_in_force_soon_after_redis_is_back(self, killed: Run) -> None:
        """With no further logout: the background retry carries them out."""
        failed = killed.logouts(503)
        assert failed
        client = killed.stack.client()
        try:
            missing = not_in_force(client, failed)
        finally:
            client.close()
        assert killed.retried_after is not None, (
            f"{len(missing)} of {len(failed)} logouts answered 503 not in force "
            f"{RETRY_WITHIN:g} s after Redis was back"
        )
        assert replays_accepted(failed) == []
        print(
            f"{len(failed)} logouts answered 503: in force {killed.retry_figure()} "
            "after Redis was back, with no logout sent since",
            flush=True,
        )


# -- b: Redis paused and continued -------------------------------------------------------


@pytest.fixture(scope="class")
def paused() -> Iterator[Run]:
    with pause_scenario() as run:
        yield run


@contextlib.contextmanager
def pause_scenario() -> Iterator[Run]:
    """Redis stopped (``SIGSTOP``) under traffic for :data:`OUTAGE` seconds, continued,
    and :data:`AFTER_PAUSE` seconds more traffic."""
    with fault_stack() as stack:
        traffic = Traffic(stack)
        traffic.prepare()
        traffic.start()
        try:
            time.sleep(BEFORE_FAULT)
            fault = time.monotonic()
            stack.server.pause()
            time.sleep(OUTAGE)
            stack.server.resume()
            back = time.monotonic()
            time.sleep(AFTER_PAUSE)
        finally:
            traffic.stop()
        retried_after = retried_within(stack, traffic)
        run = Run(stack, traffic, (fault, back), retried_after)
        traffic.report(
            "Redis paused and continued",
            pause=f"{back - fault:.2f} s",
            logouts_503=len(run.logouts(503)),
            logouts_503_in_force_after_the_traffic=run.retry_figure(),
            server_tracebacks=stack.tracebacks(),
        )
        yield run


class TestRedisPausedAndContinued:
    def test_answers_are_bounded_and_every_logout_is_in_force(self, paused: Run) -> None:
        assert paused.logouts(303), "no logout answered"
        assert bounded_failures(paused.traffic, paused.outage) == []
        logouts = paused.logouts(303) + paused.logouts(503)
        client = paused.stack.client()
        try:
            assert not_in_force(client, logouts) == []
        finally:
            client.close()
        assert replays_accepted(logouts) == []
        print(f"{len(logouts)} logouts answered 303 or 503: all in force", flush=True)

    def test_no_audit_entry_is_written_twice(self, paused: Run) -> None:
        """A transaction that timed out while Redis was stopped ran when it continued;
        its retry must not append the same audit entry again."""
        assert paused.logouts(503), "the pause caught no logout: nothing was retried"
        client = paused.stack.client()
        try:
            assert_unique_audit_ids(client)
        finally:
            client.close()


# -- c: mass logout and replay -----------------------------------------------------------


def test_mass_logout_then_replay_accepts_nothing() -> None:
    """:data:`MASS` sessions and bearer tokens per example logged out, each logout with
    a cookie and a token; then every old cookie and token replayed: none accepted."""
    with fault_stack() as stack:
        started = time.monotonic()
        sessions: list[Session] = []
        for example in stack.examples:
            names = [f"mass-{example.name}-{n}" for n in range(MASS)]
            sessions += [s for s in parallel(example, names, Client.login) if s is not None]
        assert len(sessions) == MASS * len(stack.examples)
        logged_in = time.monotonic()

        def log_out(client: Client, session: Session) -> Logout:
            begun = time.monotonic()
            response = client.send(
                "logout", "POST", "/logout", cookie=session.sid, token=session.token
            )
            status = 0 if response is None else response.status_code
            return Logout(session, status, begun, time.monotonic() - begun)

        logouts: list[Logout] = []
        for example in stack.examples:
            logouts += parallel(example, [s for s in sessions if s.example is example], log_out)
        logged_out = time.monotonic()
        statuses = collections.Counter(logout.status for logout in logouts)
        assert statuses == {303: len(sessions)}

        accepted = replays_accepted(logouts)
        replayed = time.monotonic()
        client = stack.client()
        try:
            missing = not_in_force(client, logouts)
        finally:
            client.close()
        print(
            f"mass logout: {len(sessions)} sessions and {len(sessions)} tokens over "
            f"{len(stack.examples)} examples; logins {logged_in - started:.1f} s, "
            f"logouts {logged_out - logged_in:.1f} s "
            f"({len(logouts) / (logged_out - logged_in):.0f}/s, statuses {dict(statuses)}), "
            f"replays {replayed - logged_out:.1f} s: {len(accepted)} accepted, "
            f"{len(missing)} not in force in Redis",
            flush=True,
        )
        assert accepted == []
        assert missing == []


# -- d: bad configuration ----------------------------------------------------------------


BAD_SETTINGS = [
    ("LOGOUT_REDIS_URL", "redis://127.0.0.1:notaport/0"),
    ("LOGOUT_REDIS_TIMEOUT", "abc"),
    ("LOGOUT_GET", "sometimes"),
]


#: The console scripts users run, beside this Python: the server, its arguments on a
#: port, and the example's recipe (for its settings).
SERVER_COMMANDS: dict[str, tuple[Callable[[int], list[str]], str]] = {
    "uvicorn": (lambda port: ["uvicorn", "examples.fastapi_app:app", f"--port={port}"], "fastapi"),
    "waitress-serve": (
        lambda port: ["waitress-serve", f"--port={port}", "examples.flask_app:app"],
        "flask",
    ),
}


@pytest.mark.parametrize("server", list(SERVER_COMMANDS))
@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS, ids=[v for v, _ in BAD_SETTINGS])
def test_bad_configuration_stops_the_server_naming_the_variable(
    server: str, variable: str, value: str
) -> None:
    """The server command (``uvicorn``, ``waitress-serve``) with the example's recipe
    settings and one bad ``LOGOUT_*`` value exits non-zero at start-up, its output
    naming the variable."""
    arguments, recipe = SERVER_COMMANDS[server]
    env = RECIPES[recipe].env(f"redis://127.0.0.1:{free_port()}/0")
    env[variable] = value
    command = arguments(free_port())
    command[0] = str(Path(sys.executable).parent / command[0])
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{server} with {variable}={value} kept running: {exc}")
    output = done.stdout + done.stderr
    print(f"{server} with {variable}={value}: exit {done.returncode}", flush=True)
    assert done.returncode != 0, output
    assert variable in output, output


# -- the revocation cache, from outside ------------------------------------------------


def mint_jwt(secret: str, user: str) -> str:
    """A JWT as the FastAPI example issues them (``POST /token``), signed with its
    ``JWT_SECRET``: valid for 5 minutes."""
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 300, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer_token_for(stack: Stack, example: Example) -> str:
    """A bearer token ``example`` accepts (200 on its API): a JWT for the FastAPI
    example, an opaque token for the Flask one."""
    if example.issues_jwts:
        return mint_jwt(stack.jwt_secret, f"follow-{secrets.token_hex(4)}")
    return "opaque-" + secrets.token_hex(16)


def bearer_status(example: Example, token: str) -> int:
    """The status of ``example``'s API for ``token`` alone, on a new connection."""
    with httpx.Client(base_url=example.url, timeout=REQUEST_TIMEOUT) as client:
        return client.get(example.api, headers={"Authorization": f"Bearer {token}"}).status_code


def check_calls(stack: Stack) -> int:
    """How many :data:`CHECK_COMMANDS` the middleware's primaries have run so far."""
    total = 0
    for node in stack.primaries():
        stats = node.info("commandstats")
        for command in CHECK_COMMANDS:
            total += int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))
    return total


@dataclass(frozen=True)
class Followed:
    """A token revoked through one server, as the other server's revocation cache saw it."""

    revoked_on: str
    refused_on: str
    #: Its status on ``refused_on`` before the logout (200: accepted).
    before: int
    #: The logout's status on ``revoked_on``.
    logout: int
    #: Seconds from the logout's answer until a probe (:data:`CACHE_PROBES` requests to
    #: each process of ``refused_on``) was all 401 with no check command reaching Redis;
    #: None when not within :data:`CACHE_WITHIN`.
    after: float | None
    #: The last probe's statuses and the check commands Redis ran during it.
    statuses: tuple[int, ...]
    checks: int

    def figure(self) -> str:
        waited = "not" if self.after is None else f"{self.after:.2f} s"
        return (
            f"revoked on {self.revoked_on} ({self.logout}), refused by {self.refused_on}'s "
            f"cache {waited} after (within {CACHE_WITHIN:g} s): {len(self.statuses)} requests "
            f"{dict(collections.Counter(self.statuses))}, {self.checks} Redis checks"
        )


def follow(stack: Stack, revoke: Example, refuse: Example) -> Followed:
    """Revoke a token ``refuse`` accepts through ``revoke``'s logout (bearer only), then
    probe every process of ``refuse`` until its revocation cache refuses it: every
    request 401 and no revocation check on any primary (a live cache answers a bearer
    token alone)."""
    token = bearer_token_for(stack, refuse)
    bearer = {"Authorization": f"Bearer {token}"}
    before = bearer_status(refuse, token)
    with httpx.Client(base_url=revoke.url, timeout=REQUEST_TIMEOUT) as client:
        logout = client.post("/logout", headers=bearer).status_code
    probe: tuple[tuple[int, ...], int] = ((), -1)
    with connection_to_each_process(stack, refuse) as connections:

        def by_cache() -> bool:
            nonlocal probe
            calls = check_calls(stack)
            statuses = tuple(
                connection.get(refuse.api, bearer)[0]
                for connection in connections
                for _ in range(CACHE_PROBES)
            )
            probe = (statuses, check_calls(stack) - calls)
            return set(statuses) == {401} and probe[1] == 0

        after = waited(by_cache, CACHE_WITHIN, 0.05)
    return Followed(revoke.name, refuse.name, before, logout, after, *probe)


def followed_both_ways(stack: Stack) -> list[Followed]:
    fastapi, flask = stack.examples
    return [follow(stack, fastapi, flask), follow(stack, flask, fastapi)]


def assert_followed(followed: Sequence[Followed]) -> None:
    for seen in followed:
        print(seen.figure(), flush=True)
    for seen in followed:
        assert (seen.before, seen.logout) == (200, 303), seen
        assert seen.after is not None, seen


def assert_one_entry_per_logout(client: redis.Redis, logouts: Sequence[Logout]) -> None:
    """Each audit entry id appears once, and each of ``logouts`` (answered 303 or 503)
    has exactly one entry, found by its token's hash: none lost, none written twice."""
    assert_unique_audit_ids(client)
    counts = collections.Counter(entry["token_hash"] for entry in audit_entries(client))
    wrong = {
        logout.session.user: counts[sha256_hex(logout.session.token)]
        for logout in logouts
        if counts[sha256_hex(logout.session.token)] != 1
    }
    print(f"{len(logouts)} logouts: {len(wrong)} without exactly one audit entry", flush=True)
    assert wrong == {}, f"entries per logout (user: entries): {wrong}"


# -- e, f: a primary killed on Sentinel and on Cluster ---------------------------------


@dataclass
class Failover:
    """What a failover scenario saw (see :func:`failover_scenario`)."""

    stack: Stack
    traffic: Traffic
    #: When the primary was killed, when the logouts stopped, when the failover was
    #: complete, and when the logouts started again (``time.monotonic()``).
    fault: float
    stopped: float
    promoted: float
    resumed: float
    #: The replica's role once the logouts had stopped (``slave``: not promoted yet).
    role_when_stopped: str
    #: How long after the failover the logouts answered 503 were all in force, with no
    #: logout sent; None when not within :data:`RETRY_WITHIN`.
    retried_after: float | None
    followed: list[Followed]

    def logouts(self, status: int, phase: str) -> list[Logout]:
        """The logouts answered ``status`` that started ``before`` the kill, ``during``
        the failover (before the logouts resumed) or ``after`` it."""
        bounds = {
            "before": (float("-inf"), self.fault),
            "during": (self.fault, self.resumed),
            "after": (self.resumed, float("inf")),
        }
        start, end = bounds[phase]
        return [
            logout
            for logout in self.traffic.logouts
            if logout.status == status and start <= logout.started < end
        ]

    def answered(self) -> list[Logout]:
        """Every logout answered 303 or 503."""
        return [lg for lg in self.traffic.logouts if lg.status in (303, 503)]


def failover_scenario(
    stack: Stack, title: str, fail: Callable[[], RedisProcess], replica: RedisProcess
) -> Failover:
    """Traffic; ``fail()`` kills a primary and waits until ``replica`` took over; the
    logouts go on for :data:`INTO_FAILOVER` seconds and stop (before any promotion);
    once the failover is complete, with no logout sent, how long until the logouts
    answered 503 are in force; then :data:`AFTER_FAULT` seconds more logouts, and each
    server's revocation cache checked from the other server."""
    traffic = Traffic(stack)
    traffic.prepare()
    traffic.start()
    try:
        time.sleep(BEFORE_FAULT)
        fault = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            failing = pool.submit(fail)
            time.sleep(INTO_FAILOVER)
            traffic.stop_logouts()
            stopped = time.monotonic()
            role = str(replica.info("replication")["role"])
            failing.result()
        promoted = time.monotonic()
        retried_after = retried_within(stack, traffic, records=False)
        traffic.resume_logouts()
        resumed = time.monotonic()
        time.sleep(AFTER_FAULT)
    finally:
        traffic.stop()
    run = Failover(stack, traffic, fault, stopped, promoted, resumed, role, retried_after, [])
    run.followed = followed_both_ways(stack)
    waited_for = "not" if retried_after is None else f"{retried_after:.2f} s"
    by_phase = {
        phase: {status: len(run.logouts(status, phase)) for status in (303, 503)}
        for phase in ("before", "during", "after")
    }
    traffic.report(
        title,
        failover=f"{promoted - fault:.2f} s (logouts stopped after {stopped - fault:.2f} s, "
        f"the replica then a {role})",
        logouts_by_phase=by_phase,
        logouts_503_in_force_after_the_failover=f"{waited_for} (within {RETRY_WITHIN:g} s)",
        server_tracebacks=stack.tracebacks(),
    )
    return run


def check_failover_bounded_and_in_force(run: Failover) -> None:
    """No 5xx but the middleware's 503, nothing past the bound, the apps' requests never
    failed; logouts answered 303 before the kill and after the failover are in force on
    the new primary, and their old cookies and tokens are refused."""
    before, after = run.logouts(303, "before"), run.logouts(303, "after")
    assert before, "no logout before the kill"
    assert run.logouts(503, "during"), "no logout answered 503 during the failover"
    assert bounded_failures(run.traffic, None) == []
    assert after, "no logout after the failover"
    assert run.logouts(503, "after") == [], "logouts still failing after the failover"
    with run.stack.state() as client:
        assert not_in_force(client, before + after, records=False) == []
    assert replays_accepted(before + after) == []
    print(
        f"{len(before)} logouts answered 303 before the kill, {len(after)} after the "
        "failover: all in force on the new primary, replays refused",
        flush=True,
    )


def check_failover_retried(run: Failover) -> None:
    """The logouts answered 503 are in force soon after the failover, carried out by
    the background retry: the logouts had stopped while the replica was not promoted
    yet, and none was sent until they were all in force. And every server refuses their
    tokens and cookies: each process's revocation cache has them, though on a cluster
    a logout that failed on one shard may have written its audit entry on another, and
    its retry then appends none (the entry id was written once)."""
    failed = [lg for lg in run.traffic.logouts if lg.status == 503]
    assert failed
    assert run.role_when_stopped == "slave", "the failover was complete before logouts stopped"
    assert run.retried_after is not None, (
        f"logouts answered 503 not in force {RETRY_WITHIN:g} s after the failover"
    )
    with run.stack.state() as client:
        assert not_in_force(client, failed, records=False) == []
    assert refused_everywhere(run.stack, failed) == []
    print(
        f"{len(failed)} logouts answered 503: in force {run.retried_after:.2f} s after the "
        "failover, with no logout sent since",
        flush=True,
    )


@pytest.fixture(scope="class")
def sentinel_failover() -> Iterator[Failover]:
    """The Sentinel's primary killed under traffic; the sentinels promote its replica."""
    with fault_stack("sentinel") as stack:
        group = cast("SentinelGroup", stack.topology)
        group.wait_synced()
        yield failover_scenario(
            stack, "Sentinel: the primary killed", group.failover, group.replica()
        )


class TestSentinelFailover:
    def test_answers_are_bounded_and_logouts_answered_303_are_in_force(
        self, sentinel_failover: Failover
    ) -> None:
        check_failover_bounded_and_in_force(sentinel_failover)

    def test_logouts_answered_503_are_in_force_soon_after_the_failover(
        self, sentinel_failover: Failover
    ) -> None:
        check_failover_retried(sentinel_failover)

    def test_each_servers_revocation_cache_follows_the_new_primary(
        self, sentinel_failover: Failover
    ) -> None:
        assert_followed(sentinel_failover.followed)

    def test_each_logout_has_one_audit_entry(self, sentinel_failover: Failover) -> None:
        with sentinel_failover.stack.state() as client:
            assert_one_entry_per_logout(client, sentinel_failover.answered())


@pytest.fixture(scope="module")
def cluster_stack() -> Iterator[Stack]:
    """One Cluster stack for the Cluster scenarios, in order: each heals what the one
    before broke (:func:`heal`)."""
    with fault_stack("cluster") as stack:
        yield stack


def heal(cluster: RedisCluster) -> None:
    """Restart the nodes a failover killed (each comes back as a replica) and wait until
    the cluster is settled and every replica has caught up."""
    for node in cluster.nodes:
        if not node.running:
            node.restart()
    cluster.wait_ok()
    cluster.wait_synced()


#: Which primary the Cluster failover kills: the one serving the audit stream's slot, or
#: one that does not (the last slots').
VICTIMS = {"the-streams-primary": STREAM_SLOT, "another-primary": 16383}


@pytest.fixture(scope="class", params=list(VICTIMS))
def cluster_failover(request: pytest.FixtureRequest, cluster_stack: Stack) -> Failover:
    """A Cluster primary killed under traffic; its replica takes over its slots."""
    cluster = cast("RedisCluster", cluster_stack.topology)
    heal(cluster)
    victim = cluster.owner(VICTIMS[request.param])
    assert (victim is cluster.owner(STREAM_SLOT)) == (request.param == "the-streams-primary")
    return failover_scenario(
        cluster_stack,
        f"Cluster: {request.param.replace('-', ' ')} killed ({victim.name})",
        lambda: cluster.failover(victim),
        cluster.replica_of(victim),
    )


class TestClusterFailover:
    def test_answers_are_bounded_and_logouts_answered_303_are_in_force(
        self, cluster_failover: Failover
    ) -> None:
        check_failover_bounded_and_in_force(cluster_failover)

    def test_logouts_answered_503_are_in_force_soon_after_the_failover(
        self, cluster_failover: Failover
    ) -> None:
        check_failover_retried(cluster_failover)

    def test_each_servers_revocation_cache_follows_the_new_primary(
        self, cluster_failover: Failover
    ) -> None:
        assert_followed(cluster_failover.followed)

    def test_each_audit_entry_id_appears_once_and_each_logout_has_one(
        self, cluster_failover: Failover
    ) -> None:
        """Logouts whose writes failed on the dead shard only were retried whole: the
        retry's audit entry is appended once (its write-once marker), never twice."""
        with cluster_failover.stack.state() as client:
            assert_one_entry_per_logout(client, cluster_failover.answered())


def test_a_logout_written_in_part_on_a_failing_cluster_reaches_every_revocation_cache(
    cluster_stack: Stack,
) -> None:
    """On a cluster a logout's key writes go one batch per shard, and its audit entry
    only after all of them succeeded. Just after the primary holding a token's denylist
    key is killed, the token's logout through the FastAPI example fails to write the
    denylist key (``503``, kept for the background retry) and so appends no entry, though
    the stream's shard is alive. The uvicorn processes are then paused (``SIGSTOP``: a
    process starved or throttled) until the failover is over and the Flask example's
    revocation cache has reloaded (``SCAN`` of every primary, the new one included) and
    is live again; continued, the retry writes the denylist key and then the one entry
    (``store=retried``). Every process of both servers must then refuse the token: the
    Flask example's live cache answers without asking Redis, so it must have learnt of
    the revocation from that entry. (Before the entry came last, it was appended at
    once, announced a revocation the reloading cache could not see, and was never
    appended again: the Flask example accepted the token.)"""
    cluster = cast("RedisCluster", cluster_stack.topology)
    heal(cluster)
    fastapi, flask = cluster_stack.examples
    victim = cluster.owner(VICTIMS["another-primary"])
    assert victim is not cluster.owner(STREAM_SLOT)
    replica = cluster.replica_of(victim)
    on_victim = (
        token
        for token in (mint_jwt(cluster_stack.jwt_secret, "half") for _ in itertools.count())
        if cluster.owner(key_slot(token_key(token).encode())) is victim
    )
    token = next(on_victim)
    assert (bearer_status(fastapi, token), bearer_status(flask, token)) == (200, 200)
    uvicorn = cluster_stack.servers[0].process.pid
    paused = [uvicorn, *cluster_stack.processes(fastapi)]
    random_bearer = {"Authorization": f"Bearer never-revoked-{secrets.token_hex(8)}"}

    def flask_reloaded() -> bool:
        """The promoted primary was scanned (only the Flask example's follower runs:
        the FastAPI example is paused) and the Flask example's cache is live: a token
        it does not hold is answered with no check reaching Redis."""
        scans = replica.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)
        calls = check_calls(cluster_stack)
        status = bearer_status(flask, random_bearer["Authorization"][7:])
        return bool(scans) and status == 200 and check_calls(cluster_stack) == calls

    with (
        connection_to_each_process(cluster_stack, fastapi) as workers,
        ThreadPoolExecutor(1) as pool,
    ):
        for worker in workers:  # each worker's cluster client has a connection to each shard
            other = {"Authorization": f"Bearer {next(on_victim)}"}
            assert worker.get("/logout", other, "POST")[0] == 303
        failing = pool.submit(cluster.failover, victim)
        assert waited(lambda: not victim.running, 5.0) is not None
        logout = workers[0].get("/logout", {"Authorization": f"Bearer {token}"}, "POST")[0]
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        try:
            assert failing.result() is replica
            reloaded = waited(flask_reloaded, 10.0, 0.1)
        finally:
            for pid in paused:
                os.kill(pid, signal.SIGCONT)
    with cluster_stack.state() as client:
        retried = waited(lambda: client.exists(token_key(token)), RETRY_WITHIN, 0.05)
        entries = [e for e in audit_entries(client) if e["token_hash"] == sha256_hex(token)]
    refused: dict[str, list[int]] = {}
    for example in (flask, fastapi):
        with connection_to_each_process(cluster_stack, example) as connections:
            refused[example.name] = [
                c.get(example.api, {"Authorization": f"Bearer {token}"})[0] for c in connections
            ]
    print(
        f"logout on a failing shard: {logout}; entries {[e['store'] for e in entries]}; "
        f"the Flask example's cache reloaded and live "
        f"{'not' if reloaded is None else f'{reloaded:.2f} s'} after the failover; "
        f"denylist key written {'not' if retried is None else f'{retried:.2f} s'} after "
        f"uvicorn continued; the token, per process: {refused}",
        flush=True,
    )
    assert logout == 503
    assert [e["store"] for e in entries] == ["retried"], "one entry, after the keys"
    assert reloaded is not None, "the Flask example's cache did not reload after the failover"
    assert retried is not None
    assert refused == {"flask": [401], "fastapi": [401, 401]}


# -- g: Cluster resharding --------------------------------------------------------------


@dataclass(frozen=True)
class Move:
    """One slot moved by :meth:`RedisCluster.migrate_slot`."""

    what: str
    slot: int
    source: RedisProcess
    target: RedisProcess
    keys: int
    seconds: float


@dataclass
class Resharding:
    stack: Stack
    traffic: Traffic
    moves: list[Move]
    #: Tokens revoked before the moves, whose denylist keys' slots were moved.
    moved_tokens: list[str]
    retried_after: float | None
    followed: list[Followed]


def reshard_scenario(stack: Stack) -> Resharding:
    """Traffic; the audit stream's slot and the denylist slots of :data:`DENYLIST_MOVES`
    tokens revoked before each moved to the next primary, one after the other, under
    traffic; :data:`AFTER_FAULT` seconds more; then the logouts stop and, with none
    sent, how long until those answered 503 are in force."""
    cluster = cast("RedisCluster", stack.topology)
    heal(cluster)
    traffic = Traffic(stack)
    traffic.prepare()
    traffic.start()
    moves: list[Move] = []
    try:
        time.sleep(BEFORE_FAULT)
        revoked = [lg.session.token for lg in traffic.logouts if lg.status == 303]
        moved_tokens = revoked[:DENYLIST_MOVES]
        slots = {STREAM_SLOT: "the audit stream"}
        for token in moved_tokens:
            slots.setdefault(key_slot(token_key(token).encode()), "a denylist key")
        for slot, what in slots.items():
            source = cluster.owner(slot)
            primaries = cluster.primaries()
            target = primaries[(primaries.index(source) + 1) % len(primaries)]
            started = time.monotonic()
            keys = cluster.migrate_slot(slot, target)
            moves.append(Move(what, slot, source, target, keys, time.monotonic() - started))
        time.sleep(AFTER_FAULT)
        traffic.stop_logouts()
        retried_after = retried_within(stack, traffic, records=False)
    finally:
        traffic.stop()
    run = Resharding(stack, traffic, moves, moved_tokens, retried_after, [])
    run.followed = followed_both_ways(stack)
    traffic.report(
        "Cluster: slots moved under traffic",
        moves="; ".join(
            f"{m.what} (slot {m.slot}) {m.source.name} -> {m.target.name}: "
            f"{m.keys} keys in {m.seconds:.2f} s"
            for m in moves
        ),
        logouts_503_in_force_after_the_traffic=(
            "not" if retried_after is None else f"{retried_after:.2f} s"
        ),
        server_tracebacks=stack.tracebacks(),
    )
    return run


@pytest.fixture(scope="class")
def resharded(cluster_stack: Stack) -> Resharding:
    return reshard_scenario(cluster_stack)


class TestClusterResharding:
    def test_nothing_is_lost(self, resharded: Resharding) -> None:
        """Answers bounded; every logout (303, or 503 then retried) in force with exactly
        one audit entry; the moved slots served by their new primaries, the denylist
        keys moved with them still refusing their tokens."""
        cluster = cast("RedisCluster", resharded.stack.topology)
        assert len(resharded.moves) >= 2
        assert resharded.moves[0].keys > 0, "the audit stream's slot held no key"
        for move in resharded.moves:
            assert cluster.owner(move.slot) is move.target, move
        assert bounded_failures(resharded.traffic, None) == []
        answered = [lg for lg in resharded.traffic.logouts if lg.status in (303, 503)]
        assert answered
        assert resharded.retried_after is not None
        with resharded.stack.state() as client:
            assert not_in_force(client, answered, records=False) == []
            assert all(client.exists(token_key(token)) for token in resharded.moved_tokens)
            assert_one_entry_per_logout(client, answered)
        assert replays_accepted(answered) == []

    def test_each_servers_revocation_cache_follows_the_stream_to_its_new_primary(
        self, resharded: Resharding
    ) -> None:
        assert_followed(resharded.followed)


# -- h: a mass logout on the Cluster ------------------------------------------------------


def test_mass_logout_on_a_cluster_then_replay_accepts_nothing(cluster_stack: Stack) -> None:
    """:data:`CLUSTER_MASS` bearer tokens (JWTs as the FastAPI example issues them, which
    the Flask example's middleware takes as opaque tokens) logged out, half through each
    server; then each replayed on both servers: none accepted, each on the denylist (its
    keys on every shard) with one audit entry."""
    cluster = cast("RedisCluster", cluster_stack.topology)
    heal(cluster)
    fastapi, flask = cluster_stack.examples
    tokens = [mint_jwt(cluster_stack.jwt_secret, f"mass-{n}") for n in range(CLUSTER_MASS)]

    def status(client: Client, token: str) -> int:
        response = client.send("replay", "GET", client.example.api, token=token)
        return 0 if response is None else response.status_code

    def log_out(client: Client, token: str) -> int:
        response = client.send("logout", "POST", "/logout", token=token)
        return 0 if response is None else response.status_code

    for example in (fastapi, flask):  # a sample is accepted before
        assert set(parallel(example, tokens[:20], status)) == {200}
    started = time.monotonic()
    statuses = collections.Counter(parallel(fastapi, tokens[0::2], log_out))
    statuses += collections.Counter(parallel(flask, tokens[1::2], log_out))
    logged_out = time.monotonic()
    replayed = {example.name: parallel(example, tokens, status) for example in (fastapi, flask)}
    done = time.monotonic()
    accepted = {
        name: collections.Counter(s for s in found if s != 401) for name, found in replayed.items()
    }
    with cluster_stack.state() as client:
        pipe = client.pipeline(transaction=False)
        for token in tokens:
            pipe.exists(token_key(token))
        denied = sum(pipe.execute())
        entries = collections.Counter(entry["token_hash"] for entry in audit_entries(client))
    shards = collections.Counter(
        cluster.owner(key_slot(token_key(token).encode())).name for token in tokens[:200]
    )
    once = sum(entries[sha256_hex(token)] == 1 for token in tokens)
    print(
        f"mass logout on the cluster: {len(tokens)} bearer tokens, logouts "
        f"{logged_out - started:.1f} s ({len(tokens) / (logged_out - started):.0f}/s, "
        f"statuses {dict(statuses)}), {2 * len(tokens)} replays {done - logged_out:.1f} s: "
        f"accepted {accepted}; {denied} on the denylist (first 200 by shard: "
        f"{dict(shards)}); {once} with exactly one audit entry",
        flush=True,
    )
    assert statuses == {303: len(tokens)}
    assert accepted == {"fastapi": {}, "flask": {}}
    assert denied == len(tokens)
    assert len(shards) == 3
    assert once == len(tokens)
