"""Faults of one Redis under real servers and mixed traffic.

The stack of each scenario: a private ``redis-server`` that appends every write to its
AOF and fsyncs it before answering (:class:`tests.topologies.RedisProcess`), the FastAPI
example under uvicorn with two workers and the Flask example under waitress, each with
the README's recipe settings plus ``LOGOUT_REDIS_TIMEOUT=0.5``.

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

Scenarios: Redis killed and restarted (logouts answered ``303`` before stay in force;
those answered ``503`` are carried out by the background retry with no further logout);
Redis paused (``SIGSTOP``) and continued (every audit entry id appears once); a mass
logout replayed; and bad configuration refused at start-up by the server commands.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import redis

from examples.demo import set_cookie
from examples.recipes import Recipe, read_recipes
from logout_middleware.testing import free_port
from tests.servers import (
    ROOT,
    Server,
    audit_entries,
    children,
    left_running,
    serve,
    token_key,
    tombstone_key,
    waited,
)
from tests.topologies import AOF, RedisProcess

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


@dataclass
class Stack:
    """A Redis with AOF and both examples served on it."""

    server: RedisProcess
    examples: list[Example]
    servers: list[Server]

    def client(self) -> redis.Redis:
        return self.server.client()

    def tracebacks(self) -> dict[str, int]:
        """How many tracebacks each server printed."""
        return {
            e.name: s.output().count("Traceback")
            for e, s in zip(self.examples, self.servers, strict=True)
        }


def server_env(recipe: Recipe, redis_url: str) -> dict[str, str]:
    env = recipe.env(redis_url)
    env["LOGOUT_REDIS_TIMEOUT"] = str(REDIS_TIMEOUT)
    return env


@contextlib.contextmanager
def fault_stack() -> Iterator[Stack]:
    """:class:`Stack`: everything stopped on exit."""
    fastapi, flask = RECIPES["fastapi"], RECIPES["flask"]
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(RedisProcess(AOF, name="redis (AOF)"))
        served_fastapi = stack.enter_context(
            serve(
                "FastAPI example (uvicorn, 2 workers)",
                lambda port: [*fastapi.command(port), "--workers", "2"],
                server_env(fastapi, server.url),
            )
        )
        served_flask = stack.enter_context(
            serve("Flask example (waitress)", flask.command, server_env(flask, server.url))
        )
        examples = [
            Example("fastapi", served_fastapi.url, "starsessions.{sid}", "/api/me", True),
            Example("flask", served_flask.url, "session:{sid}", "/", False),
        ]
        yield Stack(server, examples, [served_fastapi, served_flask])
        workers = children(served_fastapi.process.pid)
    # Outside the servers' contexts: every process is stopped, uvicorn's workers too.
    assert left_running(workers, f"LOGOUT_REDIS_URL={server.url}") == set()


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


def not_in_force(client: redis.Redis, logouts: Sequence[Logout]) -> list[Logout]:
    """The logouts not carried out in Redis: session record still there, or no
    tombstone, or the token not on the denylist."""
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
        if record or not tombstone or not denied
    ]


def all_in_force(client: redis.Redis, logouts: Sequence[Logout]) -> Callable[[], bool]:
    """A condition for :func:`waited`: every one of ``logouts`` is in force in Redis."""
    return lambda: not not_in_force(client, logouts)


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


def bounded_failures(traffic: Traffic, outage: tuple[float, float]) -> list[str]:
    """What breaks the bounds. A bounded request (:data:`BOUNDED`) must be answered,
    within :data:`LATENCY_BOUND`, never with a 5xx other than 503, and a logout with 303
    or 503. An app request (login, token, page) must be answered with no 5xx unless it
    overlapped the ``outage`` (start, end): then it may fail as the app fails without
    its store (``500``, or a connection reset: uvicorn closes the connection after an
    app's exception, and the client's next request on it is reset)."""
    start, end = outage
    found: list[str] = []
    for sent in traffic.sent:
        what = f"{sent.example} {sent.kind} {sent.status} in {sent.elapsed:.2f} s {sent.error}"
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
            client = stack.client()
            try:
                failed = [lg for lg in traffic.logouts if lg.status == 503]
                retried_after = waited(all_in_force(client, failed), RETRY_WITHIN, 0.05)
            finally:
                client.close()
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
        client = stack.client()
        try:
            failed = [lg for lg in traffic.logouts if lg.status == 503]
            retried_after = waited(all_in_force(client, failed), RETRY_WITHIN, 0.05)
        finally:
            client.close()
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
