"""Logged out stays logged out: a session that a slow request saves after the logout
does not come back.

The race, on real servers over loopback and a real Redis: a user logs in, starts
``GET /slow`` (which loads the session, waits ``SLOW_SECONDS``, then saves it again),
and logs out while it waits. Before the fix, the slow request's save re-created the
record the logout had deleted, and the old cookie was logged in again (50 times out of
50). Now the logout leaves a tombstone, the middleware deletes a record re-created
after it (the slow request's own process, once the app has answered; across processes
the audit stream's follower), and a request with the old cookie reaches the app
without it and gets the cookie expired.

The apps are :mod:`tests.adoption_apps.race_flask` (Flask + Flask-Session under
waitress with several threads) and :mod:`tests.adoption_apps.race_fastapi` (FastAPI +
starsessions under uvicorn), configured by ``LOGOUT_*`` variables only. Each trial also
checks that it was a real race: the slow request loaded the session before the logout
(it answers "Logged in as"), and the logout was answered before the slow request could
have saved (less than ``SLOW_SECONDS`` after it started).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import httpx
import pytest
import redis

from logout_middleware.testing import free_port, stop_process

ROOT = Path(__file__).resolve().parent.parent
#: How long a server may take to answer its first request, seconds.
START_TIMEOUT = 30.0
#: Trials per stack, each a complete race.
TRIALS = 30
#: Trials of the race against logging out everywhere, per stack.
EVERYWHERE_TRIALS = 15
#: Trials across two uvicorn workers.
CROSS_PROCESS_TRIALS = 10
#: Extra attempts allowed when a trial's timing did not make a race (a loaded machine).
SPARE_ATTEMPTS = 15
#: Time budget of one stack's trials, seconds (pytest's own timeout is 120).
TRIALS_BUDGET = 80.0
#: How long ``GET /slow`` holds the loaded session (the apps' ``SLOW_SECONDS``).
SLOW_SECONDS = 0.3
#: When the logout is sent after ``GET /slow``, seconds: the session is loaded by then.
LOGOUT_AFTER = 0.1
#: How long a re-created record may live after the slow request was answered, seconds.
SETTLE_TIMEOUT = 3.0
#: Timeout of each HTTP request, seconds.
REQUEST_TIMEOUT = 10.0
SESSION_COOKIE = "session"
EVENTS = "logout:events"
TOMBSTONE_PREFIX = "logout:revoked-session:"
INDEX_PREFIX = "logout:sessions-of:"
EVERYWHERE = "/logout/everywhere"


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# -- real servers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """One app, its server command, and where its sessions live."""

    name: str
    #: ``python -m`` arguments serving the app on a port.
    command: Callable[[int], list[str]]
    #: The Redis key of a session, ``{sid}`` standing for the cookie's value.
    session_key: str
    #: ``LOGOUT_*`` settings beside ``LOGOUT_REDIS_URL``.
    logout_env: dict[str, str] = field(default_factory=dict)

    def record(self, sid: str) -> str:
        return self.session_key.replace("{sid}", sid)

    def pattern(self) -> str:
        return self.session_key.replace("{sid}", "*")


def _waitress(target: str) -> Callable[[int], list[str]]:
    return lambda port: [
        "waitress",
        "--host=127.0.0.1",
        f"--port={port}",
        "--threads=8",
        target,
    ]


def _uvicorn(target: str, *extra: str) -> Callable[[int], list[str]]:
    return lambda port: [
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *extra,
    ]


#: What every stack adds: the middleware learns whose sessions are whose, and offers
#: logging out everywhere.
EVERYWHERE_ENV = {
    "LOGOUT_SESSION_SUBJECT": "user",
    "LOGOUT_EVERYWHERE_PATH": EVERYWHERE,
}
FLASK = Stack(
    name="flask",
    command=_waitress("tests.adoption_apps.race_flask:app"),
    # Flask-Session's cookie and keys are the middleware's defaults.
    session_key="session:{sid}",
    logout_env=EVERYWHERE_ENV,
)
FASTAPI = Stack(
    name="fastapi",
    command=_uvicorn("tests.adoption_apps.race_fastapi:app"),
    session_key="starsessions.{sid}",
    logout_env={"LOGOUT_SESSION_KEYS": "starsessions.{sid}", **EVERYWHERE_ENV},
)
FASTAPI_TWO_WORKERS = Stack(
    name="fastapi --workers 2",
    command=_uvicorn("tests.adoption_apps.race_fastapi:app", "--workers", "2"),
    session_key="starsessions.{sid}",
    logout_env={"LOGOUT_SESSION_KEYS": "starsessions.{sid}", **EVERYWHERE_ENV},
)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        """The server's output so far (its last 4000 characters)."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-4000:]


def server_env(stack: Stack, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        PYTHONUNBUFFERED="1",
        REDIS_URL=redis_url,
        LOGOUT_REDIS_URL=redis_url,
        SLOW_SECONDS=str(SLOW_SECONDS),
    )
    env.update(stack.logout_env)
    return env


@contextlib.contextmanager
def serving(stack: Stack, redis_url: str) -> Iterator[Server]:
    """Serve ``stack`` on a free loopback port until it answers; always stop it."""
    env = server_env(stack, redis_url)
    with tempfile.TemporaryFile() as log:
        for _attempt in range(3):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            process = subprocess.Popen(
                [sys.executable, "-m", *stack.command(port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                deadline = time.monotonic() + START_TIMEOUT
                while time.monotonic() < deadline and process.poll() is None:
                    try:
                        httpx.get(url + "/", timeout=1.0)
                    except httpx.TransportError:
                        time.sleep(0.1)
                        continue
                    yield Server(url, process, log)
                    return
            finally:
                stop_process(process)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")[-3000:]
    pytest.fail(f"the {stack.name} server did not start. Its output:\n{output}")


# -- one race ------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one trial saw."""

    #: Whether the timing made a real race (see the module's docstring).
    raced: bool
    #: How long the record outlived the slow request's answer, seconds.
    lingered: float
    #: How many sessions the trial ended.
    sessions: int = 1


def set_cookies_of(response: httpx.Response, name: str = SESSION_COOKIE) -> list[str]:
    """The ``Set-Cookie`` values of ``response`` that set cookie ``name``."""
    return [
        value
        for value in response.headers.get_list("set-cookie")
        if value.split(";", 1)[0].split("=", 1)[0].strip() == name
    ]


def assert_expires_session_cookie(response: httpx.Response) -> None:
    """The response deletes the session cookie (and does not set it to anything)."""
    found = set_cookies_of(response)
    assert len(found) == 1, response.headers.get_list("set-cookie")
    value = found[0]
    assert value.split(";", 1)[0].strip() == f"{SESSION_COOKIE}=", value
    assert "max-age=0" in value.lower() or "1970" in value, value


def wait_gone(client: redis.Redis, key: str, timeout: float) -> float | None:
    """Poll until ``key`` does not exist; how long that took, or None if it stayed."""
    start = time.monotonic()
    while True:
        if not client.exists(key):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.01)


def pid_of(client: httpx.Client) -> int:
    """The process id of the worker serving this client's (kept-alive) connection."""
    response = client.get("/pid")
    assert response.status_code == 200, response.text
    pid: int = response.json()["pid"]
    return pid


def index_members(client: redis.Redis, index: str) -> set[str]:
    """The session hashes in a subject's index."""
    return {m.decode() for m in cast("list[bytes]", client.zrange(index, 0, -1))}


def pinned_pair(url: str, clients: contextlib.ExitStack) -> tuple[httpx.Client, httpx.Client]:
    """Two clients whose kept-alive connections reach two different workers."""
    first = clients.enter_context(httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT))
    first_pid = pid_of(first)
    for _try in range(60):
        candidate = clients.enter_context(httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT))
        if pid_of(candidate) != first_pid:
            return first, candidate
    pytest.fail(f"60 connections all reached worker {first_pid}")


def ours(pid: int, redis_url: str) -> bool:
    """Whether process ``pid`` is still one of our server's workers: it runs, and its
    environment has our ``LOGOUT_REDIS_URL`` (so a recycled pid is never taken for it)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"LOGOUT_REDIS_URL={redis_url}".encode() in environ.split(b"\0")


def still_alive(pids: set[int], redis_url: str, timeout: float = 10.0) -> set[int]:
    """The workers of ``pids`` still running after at most ``timeout`` seconds (their
    server was stopped); those are killed."""
    deadline = time.monotonic() + timeout
    alive = {pid for pid in pids if ours(pid, redis_url)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {pid for pid in alive if ours(pid, redis_url)}
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return alive


def race(
    server: Server,
    stack: Stack,
    redis_client: redis.Redis,
    user: str,
    *,
    slow_client: httpx.Client | None = None,
    logout_client: httpx.Client | None = None,
    everywhere: bool = False,
) -> Outcome:
    """Log in, start ``GET /slow``, log out while it waits, and check the aftermath.

    With ``everywhere``, the logout is another browser of the same user logging out
    everywhere (``logout_client``, logged in for the purpose), instead of the slow
    request's own browser logging out. ``slow_client`` and ``logout_client``, when
    given, are clients whose kept-alive connections reach known workers (the request
    goes over them); else fresh ones."""
    url = server.url
    with contextlib.ExitStack() as stack_of_clients:
        browser = stack_of_clients.enter_context(
            httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)
        )
        slow_client = slow_client or stack_of_clients.enter_context(
            httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)
        )
        if logout_client is None:
            logout_client = browser
            if everywhere:
                logout_client = stack_of_clients.enter_context(
                    httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT)
                )

        login = browser.post("/login", data={"username": user})
        assert login.status_code == 200, login.text
        assert login.text == f"Logged in as {user}.\n"
        sid = browser.cookies.get(SESSION_COOKIE)
        assert sid, login.headers
        key = stack.record(sid)
        assert redis_client.exists(key) == 1
        cookie = {"Cookie": f"{SESSION_COOKIE}={sid}"}
        other_sid = None
        if everywhere:
            # A second browser of the same user; one request from each indexes both.
            assert logout_client.post("/login", data={"username": user}).status_code == 200
            other_sid = logout_client.cookies.get(SESSION_COOKIE)
            assert other_sid
            assert browser.get("/").text == f"Logged in as {user}.\n"
            assert logout_client.get("/").text == f"Logged in as {user}.\n"
            expected = {sha256_hex(sid), sha256_hex(other_sid)}
            deadline = time.monotonic() + SETTLE_TIMEOUT
            while index_members(redis_client, INDEX_PREFIX + sha256_hex(user)) != expected:
                assert time.monotonic() < deadline, f"sessions of {user} not indexed"
                time.sleep(0.01)

        slow: dict[str, object] = {}

        def run_slow() -> None:
            try:
                slow["response"] = slow_client.get("/slow", headers=cookie)
            except Exception as exc:  # reported by the main thread
                slow["error"] = exc

        thread = threading.Thread(target=run_slow, name="slow request", daemon=True)
        slow_started = time.monotonic()
        thread.start()
        time.sleep(LOGOUT_AFTER)
        if everywhere:
            logout = logout_client.post(EVERYWHERE, headers={"Accept": "application/json"})
        else:
            logout = logout_client.post("/logout", headers=cookie)
        logout_answered = time.monotonic() - slow_started
        thread.join(REQUEST_TIMEOUT + 1)
        assert not thread.is_alive(), "GET /slow did not finish"
        assert "error" not in slow, slow.get("error")
        slow_response = slow["response"]
        assert isinstance(slow_response, httpx.Response)

        # The logout worked as always.
        if everywhere:
            assert logout.status_code == 200, logout.text
            assert logout.json()["sessions_ended"] == 2
        else:
            assert logout.status_code == 303, logout.text
        assert_expires_session_cookie(logout)

        # The slow request had loaded the session before the logout, and saved it
        # (its own Set-Cookie says so) after its wait.
        assert slow_response.status_code == 200, slow_response.text
        assert slow_response.text == f"Logged in as {user}; hits=1.\n", server.output()
        raced = logout_answered < SLOW_SECONDS

        # The record the slow request wrote back is gone, soon after it was answered ...
        lingered = wait_gone(redis_client, key, SETTLE_TIMEOUT)
        assert lingered is not None, (
            f"{stack.name}: the session record of {user} came back after the logout and "
            f"stayed for {SETTLE_TIMEOUT} s\n{server.output()}"
        )
        # ... and the logout's tombstone is there, with a lifetime.
        tombstone = TOMBSTONE_PREFIX + sha256_hex(sid)
        assert redis_client.exists(tombstone) == 1
        assert redis_client.ttl(tombstone) > 0

        # The old cookie is nobody's: the app never sees it, and the answer expires it.
        replay = httpx.get(url + "/", headers=cookie, timeout=REQUEST_TIMEOUT)
        assert replay.status_code == 200, replay.text
        assert replay.text == "Not logged in.\n"
        assert_expires_session_cookie(replay)
        # The slow answer handed the old cookie back to its client, as it would to a
        # browser after the logout's expiry; that client's next request is logged out
        # too (on the slow route as well), and its cookie expired for good.
        assert slow_client.cookies.get(SESSION_COOKIE) == sid
        again = slow_client.get("/slow")
        assert again.status_code == 200, again.text
        assert again.text == "Not logged in.\n"
        assert_expires_session_cookie(again)
        assert SESSION_COOKIE not in slow_client.cookies

        # Nothing brought the record back, nor left the other browser's.
        assert redis_client.exists(key) == 0
        if other_sid is not None:
            assert wait_gone(redis_client, stack.record(other_sid), SETTLE_TIMEOUT) is not None
    return Outcome(raced=raced, lingered=lingered, sessions=2 if everywhere else 1)


def run_trials(
    server: Server,
    stack: Stack,
    redis_client: redis.Redis,
    trial: Callable[[int], Outcome],
    trials: int = TRIALS,
) -> list[Outcome]:
    """Run ``trial`` until ``trials`` of them were real races (every one, raced or not,
    must pass its checks); fail when the timing never allowed enough races."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + TRIALS_BUDGET
    attempt = 0
    while sum(o.raced for o in outcomes) < trials:
        assert attempt < trials + SPARE_ATTEMPTS, (
            f"only {sum(o.raced for o in outcomes)} of {attempt} attempts were races: "
            "the logout took longer than the slow request's wait (machine overloaded?)"
        )
        assert time.monotonic() < deadline, f"{len(outcomes)} trials took {TRIALS_BUDGET} s"
        outcomes.append(trial(attempt))
        attempt += 1

    # Every trial left nothing behind: no session record at all, one audit entry each,
    # and a tombstone per ended session.
    assert list(redis_client.scan_iter(match=stack.pattern())) == [], server.output()
    assert redis_client.xlen(EVENTS) == len(outcomes)
    tombstones = len(list(redis_client.scan_iter(match=TOMBSTONE_PREFIX + "*")))
    assert tombstones == sum(o.sessions for o in outcomes)
    return outcomes


# -- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [FLASK, FASTAPI], ids=lambda s: s.name)
def test_a_session_saved_after_logout_stays_logged_out(
    stack: Stack, redis_url: str, redis_client: redis.Redis
) -> None:
    with serving(stack, redis_url) as server:
        run_trials(
            server,
            stack,
            redis_client,
            lambda n: race(server, stack, redis_client, f"user{n}"),
        )


@pytest.mark.parametrize("stack", [FLASK, FASTAPI], ids=lambda s: s.name)
def test_a_session_saved_after_logout_everywhere_stays_logged_out(
    stack: Stack, redis_url: str, redis_client: redis.Redis
) -> None:
    """The same race, ended by the user's other browser logging out everywhere."""
    with serving(stack, redis_url) as server:
        run_trials(
            server,
            stack,
            redis_client,
            lambda n: race(server, stack, redis_client, f"user{n}", everywhere=True),
            trials=EVERYWHERE_TRIALS,
        )


@pytest.mark.parametrize("everywhere", [False, True], ids=["logout", "everywhere"])
def test_across_two_uvicorn_workers_a_session_saved_after_logout_stays_logged_out(
    everywhere: bool, redis_url: str, redis_client: redis.Redis
) -> None:
    """``uvicorn --workers 2``: the slow request runs in one worker, the logout (or the
    other browser's logout everywhere) in the other, so the slow request's process
    learns of it only through the audit stream (its follower), and deletes the record
    it saved once the app has answered. Each client's kept-alive connection is pinned
    to a known worker (``GET /pid`` before and after the race)."""
    stack = FASTAPI_TWO_WORKERS
    workers: set[int] = set()
    with serving(stack, redis_url) as server:

        def cross_process(n: int) -> Outcome:
            with contextlib.ExitStack() as clients:
                slow_client, logout_client = pinned_pair(server.url, clients)
                slow_pid, logout_pid = pid_of(slow_client), pid_of(logout_client)
                workers.update((slow_pid, logout_pid))
                outcome = race(
                    server,
                    stack,
                    redis_client,
                    f"user{n}",
                    slow_client=slow_client,
                    logout_client=logout_client,
                    everywhere=everywhere,
                )
                # Still the same workers: the race really crossed processes.
                assert pid_of(slow_client) == slow_pid
                assert pid_of(logout_client) == logout_pid
                return outcome

        run_trials(server, stack, redis_client, cross_process, trials=CROSS_PROCESS_TRIALS)
    assert len(workers) == 2
    assert not still_alive(workers, redis_url), (
        "uvicorn workers left running after the server stopped"
    )


def test_across_two_uvicorn_workers_everywhere_deletes_the_other_workers_record(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Logging out everywhere in one worker ends a session that only the other worker
    has seen: the logging-out worker cannot name its record (no session id is stored),
    so the other worker's follower deletes it when the audit entry arrives."""
    stack = FASTAPI_TWO_WORKERS
    index = "logout:sessions-of:" + sha256_hex("alice")
    with serving(stack, redis_url) as server, contextlib.ExitStack() as clients:
        here, there = pinned_pair(server.url, clients)
        workers = {pid_of(here), pid_of(there)}
        sids: list[str] = []
        for client in (here, there):
            assert client.post("/login", data={"username": "alice"}).status_code == 200
            sid = client.cookies.get(SESSION_COOKIE)
            assert sid
            sids.append(sid)
            assert client.get("/").text == "Logged in as alice.\n"
        expected = {sha256_hex(sid) for sid in sids}
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while index_members(redis_client, index) != expected:
            assert time.monotonic() < deadline, "the two sessions were not indexed"
            time.sleep(0.02)

        answer = here.post("/logout/everywhere", headers={"Accept": "application/json"})
        assert answer.status_code == 200, answer.text
        assert answer.json()["sessions_ended"] == 2
        for sid in sids:
            assert wait_gone(redis_client, stack.record(sid), SETTLE_TIMEOUT) is not None, (
                f"record of a session ended everywhere still there\n{server.output()}"
            )
        # The other worker's browser is logged out on its next request, cookie expired.
        replay = there.get("/")
        assert replay.text == "Not logged in.\n"
        assert_expires_session_cookie(replay)
        assert {pid_of(here), pid_of(there)} == workers  # each stayed on its worker
        entries: Any = redis_client.xrange(EVENTS)
        (entry,) = [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in entries]
        assert entry["reason"] == "everywhere"
        assert entry["sessions_ended"] == "2"
    assert not still_alive(workers, redis_url), (
        "uvicorn workers left running after the server stopped"
    )
