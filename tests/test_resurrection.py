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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.servers import (
    ACCEPT_JSON,
    EVENTS_STREAM,
    EVERYWHERE_PATH,
    REQUEST_TIMEOUT,
    SESSION_COOKIE,
    TOMBSTONE_PREFIX,
    ServedApp,
    Server,
    absent,
    assert_expires_cookie,
    audit_entries,
    left_running,
    tombstone_key,
    uvicorn,
    wait_indexed,
    waited,
    waitress,
)

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


# -- real servers ------------------------------------------------------------------------


#: What every stack adds: how long ``GET /slow`` waits, and the middleware learns whose
#: sessions are whose, and offers logging out everywhere.
SETTINGS = {
    "SLOW_SECONDS": str(SLOW_SECONDS),
    "LOGOUT_SESSION_SUBJECT": "user",
    "LOGOUT_EVERYWHERE_PATH": EVERYWHERE_PATH,
}
FLASK = ServedApp(
    name="flask",
    command=waitress("tests.adoption_apps.race_flask:app", "--threads=8"),
    # Flask-Session's cookie and keys are the middleware's defaults.
    session_key="session:{sid}",
    env=SETTINGS,
)
FASTAPI = ServedApp(
    name="fastapi",
    command=uvicorn("tests.adoption_apps.race_fastapi:app"),
    session_key="starsessions.{sid}",
    env={"LOGOUT_SESSION_KEYS": "starsessions.{sid}", **SETTINGS},
)
FASTAPI_TWO_WORKERS = ServedApp(
    name="fastapi --workers 2",
    command=uvicorn("tests.adoption_apps.race_fastapi:app", "--workers", "2"),
    session_key="starsessions.{sid}",
    env={"LOGOUT_SESSION_KEYS": "starsessions.{sid}", **SETTINGS},
)


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


def log_in(client: httpx.Client, user: str) -> str:
    """Log in as ``user``; the session cookie's value."""
    login = client.post("/login", data={"username": user})
    assert login.status_code == 200, login.text
    assert login.text == f"Logged in as {user}.\n"
    sid = client.cookies.get(SESSION_COOKIE)
    assert sid, login.headers
    return sid


def pid_of(client: httpx.Client) -> int:
    """The process id of the worker serving this client's (kept-alive) connection."""
    response = client.get("/pid")
    assert response.status_code == 200, response.text
    pid: int = response.json()["pid"]
    return pid


def client_of(url: str, clients: contextlib.ExitStack) -> httpx.Client:
    """A new client of the server at ``url`` (its own cookie jar and connection), closed
    with ``clients``."""
    return clients.enter_context(httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT))


def pinned_pair(url: str, clients: contextlib.ExitStack) -> tuple[httpx.Client, httpx.Client]:
    """Two clients whose kept-alive connections reach two different workers."""
    first = client_of(url, clients)
    first_pid = pid_of(first)
    for _try in range(60):
        candidate = client_of(url, clients)
        if pid_of(candidate) != first_pid:
            return first, candidate
    pytest.fail(f"60 connections all reached worker {first_pid}")


def workers_left_running(workers: set[int], redis_url: str) -> set[int]:
    """Which of our server's ``workers`` (their environment has our
    ``LOGOUT_REDIS_URL``) still run after it stopped (see
    :func:`tests.servers.left_running`)."""
    return left_running(workers, f"LOGOUT_REDIS_URL={redis_url}")


def race(
    server: Server,
    stack: ServedApp,
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
        browser = client_of(url, stack_of_clients)
        slow_client = slow_client or client_of(url, stack_of_clients)
        if logout_client is None:
            logout_client = client_of(url, stack_of_clients) if everywhere else browser

        sid = log_in(browser, user)
        key = stack.record(sid)
        assert redis_client.exists(key) == 1
        cookie = {"Cookie": f"{SESSION_COOKIE}={sid}"}
        other_sid = None
        if everywhere:
            # A second browser of the same user; one request from each indexes both.
            other_sid = log_in(logout_client, user)
            assert browser.get("/").text == f"Logged in as {user}.\n"
            assert logout_client.get("/").text == f"Logged in as {user}.\n"
            wait_indexed(redis_client, user, (sid, other_sid), SETTLE_TIMEOUT)

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
            logout = logout_client.post(EVERYWHERE_PATH, headers=ACCEPT_JSON)
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
        assert_expires_cookie(logout)

        # The slow request had loaded the session before the logout, and saved it
        # (its own Set-Cookie says so) after its wait.
        assert slow_response.status_code == 200, slow_response.text
        assert slow_response.text == f"Logged in as {user}; hits=1.\n", server.output(4000)
        raced = logout_answered < SLOW_SECONDS

        # The record the slow request wrote back is gone, soon after it was answered ...
        lingered = waited(absent(redis_client, key), SETTLE_TIMEOUT)
        assert lingered is not None, (
            f"{stack.name}: the session record of {user} came back after the logout and "
            f"stayed for {SETTLE_TIMEOUT} s\n{server.output(4000)}"
        )
        # ... and the logout's tombstone is there, with a lifetime.
        tombstone = tombstone_key(sid)
        assert redis_client.exists(tombstone) == 1
        assert redis_client.ttl(tombstone) > 0

        # The old cookie is nobody's: the app never sees it, and the answer expires it.
        replay = httpx.get(url + "/", headers=cookie, timeout=REQUEST_TIMEOUT)
        assert replay.status_code == 200, replay.text
        assert replay.text == "Not logged in.\n"
        assert_expires_cookie(replay)
        # The slow answer handed the old cookie back to its client, as it would to a
        # browser after the logout's expiry; that client's next request is logged out
        # too (on the slow route as well), and its cookie expired for good.
        assert slow_client.cookies.get(SESSION_COOKIE) == sid
        again = slow_client.get("/slow")
        assert again.status_code == 200, again.text
        assert again.text == "Not logged in.\n"
        assert_expires_cookie(again)
        assert SESSION_COOKIE not in slow_client.cookies

        # Nothing brought the record back, nor left the other browser's.
        assert redis_client.exists(key) == 0
        if other_sid is not None:
            assert waited(absent(redis_client, stack.record(other_sid)), SETTLE_TIMEOUT) is not None
    return Outcome(raced=raced, lingered=lingered, sessions=2 if everywhere else 1)


def run_trials(
    server: Server,
    stack: ServedApp,
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
    assert list(redis_client.scan_iter(match=stack.records())) == [], server.output(4000)
    assert redis_client.xlen(EVENTS_STREAM) == len(outcomes)
    tombstones = len(list(redis_client.scan_iter(match=TOMBSTONE_PREFIX + "*")))
    assert tombstones == sum(o.sessions for o in outcomes)
    return outcomes


# -- the tests ----------------------------------------------------------------------------


@pytest.mark.parametrize("stack", [FLASK, FASTAPI], ids=lambda s: s.name)
@pytest.mark.parametrize(
    ("everywhere", "trials"),
    [(False, TRIALS), (True, EVERYWHERE_TRIALS)],
    ids=["logout", "everywhere"],
)
def test_a_session_saved_after_logout_stays_logged_out(
    stack: ServedApp, everywhere: bool, trials: int, redis_url: str, redis_client: redis.Redis
) -> None:
    """The race, ended by the slow request's own browser logging out, or (``everywhere``)
    by the user's other browser logging out everywhere."""
    with stack.serve(redis_url) as server:
        run_trials(
            server,
            stack,
            redis_client,
            lambda n: race(server, stack, redis_client, f"user{n}", everywhere=everywhere),
            trials=trials,
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
    with stack.serve(redis_url) as server:

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
    assert not workers_left_running(workers, redis_url), (
        "uvicorn workers left running after the server stopped"
    )


def test_across_two_uvicorn_workers_everywhere_deletes_the_other_workers_record(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Logging out everywhere in one worker ends a session that only the other worker
    has seen: the logging-out worker cannot name its record (no session id is stored),
    so the other worker's follower deletes it when the audit entry arrives."""
    stack = FASTAPI_TWO_WORKERS
    with stack.serve(redis_url) as server, contextlib.ExitStack() as clients:
        here, there = pinned_pair(server.url, clients)
        workers = {pid_of(here), pid_of(there)}
        sids: list[str] = []
        for client in (here, there):
            sids.append(log_in(client, "alice"))
            assert client.get("/").text == "Logged in as alice.\n"
        wait_indexed(redis_client, "alice", sids, SETTLE_TIMEOUT)

        answer = here.post(EVERYWHERE_PATH, headers=ACCEPT_JSON)
        assert answer.status_code == 200, answer.text
        assert answer.json()["sessions_ended"] == 2
        for sid in sids:
            assert waited(absent(redis_client, stack.record(sid)), SETTLE_TIMEOUT) is not None, (
                f"record of a session ended everywhere still there\n{server.output(4000)}"
            )
        # The other worker's browser is logged out on its next request, cookie expired.
        replay = there.get("/")
        assert replay.text == "Not logged in.\n"
        assert_expires_cookie(replay)
        assert {pid_of(here), pid_of(there)} == workers  # each stayed on its worker
        (entry,) = audit_entries(redis_client)
        assert entry["reason"] == "everywhere"
        assert entry["sessions_ended"] == "2"
    assert not workers_left_running(workers, redis_url), (
        "uvicorn workers left running after the server stopped"
    )
