"""The operator's command line (``logout-middleware``), against a real Redis.

In-process through click's ``CliRunner`` (stdin given with ``input=``), and as real
processes: ``python -m logout_middleware`` and a follower of the audit stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping

import pytest
import redis
from click.testing import CliRunner, Result

from logout_middleware.cli import CLIENT_NAME, cli, redact
from logout_middleware.testing import free_port, stop_process

SUBJECT = "42"
TOKEN = "tok-SECRET-0123456789"
SID = "sid-SECRET-abcdef"

#: A follower's stdout lines.
Lines = queue.Queue[str]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LOGOUT_* from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("LOGOUT_"):
            monkeypatch.delenv(name)


def run(args: list[str], env: Mapping[str, str | None], input: str | None = None) -> Result:
    """Run the command line in-process; an unexpected exception fails the test."""
    return CliRunner().invoke(cli, args, env=dict(env), input=input, catch_exceptions=False)


def env_of(url: str, **extra: str) -> dict[str, str | None]:
    return {"LOGOUT_REDIS_URL": url, **extra}


def text(value: object) -> str:
    assert isinstance(value, bytes)
    return value.decode()


def entries(client: redis.Redis) -> list[tuple[str, dict[str, str]]]:
    """The audit stream's entries (id and fields), oldest first."""
    return [
        (text(entry_id), {text(k): text(v) for k, v in (fields or {}).items()})
        for entry_id, fields in client.xrange("logout:events") or []
    ]


def stream(client: redis.Redis) -> list[dict[str, str]]:
    """The audit stream's entries' fields, oldest first."""
    return [fields for _, fields in entries(client)]


def add_entry(client: redis.Redis, entry_id: str = "*", **fields: str) -> str:
    """Append an entry shaped like the middleware's; return its stream id."""
    values = {
        "id": "0" * 32,
        "at": "2024-05-17T12:30:45.123456+00:00",
        "type": "session_end",
        "reason": "user_logout",
        "subject": "",
        "sessions_ended": "1",
        "tokens_ended": "0",
        "store": "ok",
        **fields,
    }
    return text(client.xadd("logout:events", values, id=entry_id))  # type: ignore[arg-type]


def subprocess_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGOUT_")}
    env["LOGOUT_REDIS_URL"] = url
    return env


def unreachable_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


# revoke


def test_revoke_subject_writes_not_before_and_audit_entry(
    redis_url: str, redis_client: redis.Redis
) -> None:
    before = time.time()
    result = run(["revoke", "--subject", SUBJECT], env_of(redis_url))
    after = time.time()

    assert result.exit_code == 0, result.stderr
    not_before = redis_client.get("logout:not-before:" + sha(SUBJECT))
    assert not_before is not None
    assert before - 1 <= float(not_before) <= after + 1
    [entry] = stream(redis_client)
    assert entry["reason"] == "admin"
    assert entry["subject"] == SUBJECT
    assert entry["store"] == "ok"
    assert result.stdout.startswith(f"revoked subject {SUBJECT}: 0 sessions, 0 tokens; ")
    assert "JWTs issued at or before " in result.stdout
    assert result.stdout.count("\n") == 1


def test_revoke_subject_json_is_the_audit_event(redis_url: str, redis_client: redis.Redis) -> None:
    result = run(["revoke", "--subject", SUBJECT, "--json"], env_of(redis_url))

    assert result.exit_code == 0, result.stderr
    event = json.loads(result.stdout)
    [entry] = stream(redis_client)
    assert event == entry
    assert event["reason"] == "admin"
    assert event["subject_source"] == "admin"
    assert float(event["not_before"]) == float(
        redis_client.get("logout:not-before:" + sha(SUBJECT)) or 0
    )


def test_revoke_token_reads_stdin_and_prints_only_hashes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    result = run(["revoke", "--token"], env_of(redis_url), input=TOKEN + "  \n")

    assert result.exit_code == 0, result.stderr
    key = "logout:revoked:" + sha(TOKEN)
    assert redis_client.exists(key) == 1
    assert 0 < redis_client.ttl(key) <= 3600
    assert result.stdout == f"revoked token sha256:{sha(TOKEN)}: 0 sessions, 1 token\n"
    assert TOKEN not in result.stdout + result.stderr

    as_json = run(["revoke", "--token", "--json"], env_of(redis_url), input=TOKEN + "\n")
    assert as_json.exit_code == 0, as_json.stderr
    event = json.loads(as_json.stdout)
    assert event["token_hash"] == sha(TOKEN)
    assert event["tokens_ended"] == "1"
    assert TOKEN not in as_json.stdout + as_json.stderr
    assert all(TOKEN not in value for entry in stream(redis_client) for value in entry.values())


def test_revoke_session_reads_stdin_tombstones_and_deletes_record(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set("session:" + SID, b"{}")
    redis_client.set("session:other", b"{}")

    result = run(["revoke", "--session"], env_of(redis_url), input=SID + "\n")

    assert result.exit_code == 0, result.stderr
    assert redis_client.exists("logout:revoked-session:" + sha(SID)) == 1
    assert redis_client.exists("session:" + SID) == 0
    assert redis_client.exists("session:other") == 1
    assert result.stdout == f"revoked session sha256:{sha(SID)}: 1 session, 0 tokens\n"
    assert SID not in result.stdout + result.stderr


def test_revoke_combined_reads_session_then_token(
    redis_url: str, redis_client: redis.Redis
) -> None:
    redis_client.set("session:" + SID, b"{}")

    result = run(
        ["revoke", "--subject", SUBJECT, "--session", "--token", "--json"],
        env_of(redis_url),
        input=f"{SID}\n{TOKEN}\n",
    )

    assert result.exit_code == 0, result.stderr
    event = json.loads(result.stdout)
    assert event["session_id_hash"] == sha(SID)
    assert event["token_hash"] == sha(TOKEN)
    assert event["subject"] == SUBJECT
    assert (
        redis_client.exists(
            "logout:revoked-session:" + sha(SID),
            "logout:revoked:" + sha(TOKEN),
            "logout:not-before:" + sha(SUBJECT),
        )
        == 3
    )
    assert len(stream(redis_client)) == 1
    assert SID not in result.stdout
    assert TOKEN not in result.stdout


def test_revoke_nothing_is_a_usage_error(redis_url: str, redis_client: redis.Redis) -> None:
    result = run(["revoke"], env_of(redis_url))

    assert result.exit_code == 2
    assert "--subject" in result.stderr
    assert result.stdout == ""
    assert redis_client.dbsize() == 0


@pytest.mark.parametrize("flag", ["--token", "--session"])
def test_revoke_empty_stdin_is_a_usage_error(
    redis_url: str, redis_client: redis.Redis, flag: str
) -> None:
    result = run(["revoke", flag], env_of(redis_url), input="   \n")

    assert result.exit_code == 2
    assert flag in result.stderr
    assert redis_client.dbsize() == 0


def test_revoke_with_empty_subject_is_a_usage_error(
    redis_url: str, redis_client: redis.Redis
) -> None:
    result = run(["revoke", "--subject", ""], env_of(redis_url))

    assert result.exit_code == 2
    assert "subject" in result.stderr
    assert redis_client.dbsize() == 0


def test_unknown_type_is_a_usage_error(redis_url: str) -> None:
    result = run(["events", "--type", "bogus"], env_of(redis_url))

    assert result.exit_code == 2
    assert "bogus" in result.stderr


# configuration errors


@pytest.mark.parametrize("args", [["revoke", "--subject", "1"], ["events"], ["status"]])
def test_missing_redis_url_exits_2(args: list[str]) -> None:
    result = run(args, {"LOGOUT_REDIS_URL": None})

    assert result.exit_code == 2
    assert "LOGOUT_REDIS_URL" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["revoke", "--subject", "1"], ["events"], ["status"]])
@pytest.mark.parametrize(
    ("variable", "value"),
    [("LOGOUT_REDIS_TIMEOUT", "abc"), ("LOGOUT_TOKEN_TTL", "-5"), ("LOGOUT_GET", "maybe")],
)
def test_bad_setting_exits_2_naming_it(
    redis_url: str, redis_client: redis.Redis, args: list[str], variable: str, value: str
) -> None:
    result = run(args, env_of(redis_url, **{variable: value}))

    assert result.exit_code == 2
    assert variable in result.stderr
    assert result.stdout == ""
    assert redis_client.dbsize() == 0


def test_bad_setting_checked_before_reading_the_secret(redis_url: str) -> None:
    result = run(
        ["revoke", "--token"], env_of(redis_url, LOGOUT_REDIS_TIMEOUT="abc"), input=TOKEN + "\n"
    )

    assert result.exit_code == 2
    assert "LOGOUT_REDIS_TIMEOUT" in result.stderr
    assert TOKEN not in result.stdout + result.stderr


# unreachable Redis


def test_revoke_unreachable_exits_1() -> None:
    result = run(
        ["revoke", "--subject", SUBJECT],
        env_of(unreachable_url(), LOGOUT_REDIS_TIMEOUT="0.5"),
    )

    assert result.exit_code == 1
    assert "revocation failed" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["status"], ["events"]])
def test_status_and_events_unreachable_exit_1_without_password(args: list[str]) -> None:
    url = unreachable_url().replace("redis://", "redis://:hunter2@")

    result = run(args, env_of(url, LOGOUT_REDIS_TIMEOUT="0.5"))

    assert result.exit_code == 1
    assert "Redis at redis://:***@127.0.0.1:" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr


def test_status_json_unreachable_reports_on_stdout_too() -> None:
    result = run(["status", "--json"], env_of(unreachable_url(), LOGOUT_REDIS_TIMEOUT="0.5"))

    assert result.exit_code == 1
    assert "unreachable" in result.stderr
    assert json.loads(result.stdout)["redis"] == "unreachable"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://:pw@localhost:6379/0", "redis://:***@localhost:6379/0"),
        ("rediss://user:pw@host/1", "rediss://user:***@host/1"),
        ("unix:///tmp/redis.sock?db=1", "unix:///tmp/redis.sock?db=1"),
        ("unix:///tmp/r.sock?db=0&password=hunter2", "unix:///tmp/r.sock?db=0&password=***"),
        ("redis+sentinel://:pw@s1:26379,s2:26379/m", "redis+sentinel://:***@s1:26379,s2:26379/m"),
    ],
)
def test_redact(url: str, shown: str) -> None:
    assert redact(url) == shown


# events


def test_events_lists_oldest_first_and_counts_the_last(
    redis_url: str, redis_client: redis.Redis
) -> None:
    for subject in ("alice", "bob", "carol"):
        assert run(["revoke", "--subject", subject], env_of(redis_url)).exit_code == 0

    result = run(["events"], env_of(redis_url))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("subject=")[1].split()[0] for line in lines] == ["alice", "bob", "carol"]
    assert all(" admin " in line and line.endswith("store=ok") for line in lines)

    last_two = run(["events", "--count", "2"], env_of(redis_url))
    assert [line.split("subject=")[1].split()[0] for line in last_two.stdout.splitlines()] == [
        "bob",
        "carol",
    ]
    assert run(["events", "-n", "0"], env_of(redis_url)).stdout == ""


def test_events_filters_by_subject_and_type(redis_url: str, redis_client: redis.Redis) -> None:
    add_entry(redis_client, subject="alice", type="session_end")
    add_entry(redis_client, subject="bob", type="session_end")
    add_entry(redis_client, subject="alice", type="api_session_end")
    add_entry(redis_client, subject="alice", type="session_end", reason="everywhere")

    by_subject = run(["events", "--subject", "alice", "--json"], env_of(redis_url))
    assert [json.loads(line)["type"] for line in by_subject.stdout.splitlines()] == [
        "session_end",
        "api_session_end",
        "session_end",
    ]
    both = run(
        ["events", "--subject", "alice", "--type", "session_end", "--json"], env_of(redis_url)
    )
    assert [json.loads(line)["reason"] for line in both.stdout.splitlines()] == [
        "user_logout",
        "everywhere",
    ]
    by_type = run(["events", "--type", "api_session_end"], env_of(redis_url))
    assert len(by_type.stdout.splitlines()) == 1
    assert "api_session_end" in by_type.stdout
    assert run(["events", "--subject", "nobody"], env_of(redis_url)).stdout == ""


def test_events_filter_pages_back_past_non_matching_entries(
    redis_url: str, redis_client: redis.Redis
) -> None:
    wanted = [add_entry(redis_client, subject="needle", id=f"{i:032x}") for i in range(3)]
    for _ in range(250):
        add_entry(redis_client, subject="hay")

    result = run(["events", "--subject", "needle", "--count", "2", "--json"], env_of(redis_url))

    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["entry_id"] for line in result.stdout.splitlines()] == wanted[1:]


@pytest.mark.parametrize("first", [0, 1])
@pytest.mark.parametrize("explicit_ids", [False, True], ids=["auto-ids", "sequence-0-ids"])
def test_events_filter_across_pages_shows_each_entry_once(
    redis_url: str, redis_client: redis.Redis, first: int, explicit_ids: bool
) -> None:
    ids = [
        add_entry(
            redis_client,
            f"{1000 + i}-0" if explicit_ids else "*",
            subject="needle" if i % 2 == first else "hay",
        )
        for i in range(250)
    ]
    needles = [entry_id for i, entry_id in enumerate(ids) if i % 2 == first]

    result = run(["events", "--subject", "needle", "--count", "120", "--json"], env_of(redis_url))

    assert [json.loads(line)["entry_id"] for line in result.stdout.splitlines()] == needles[-120:]


def test_events_json_lines_parse_with_entry_ids(redis_url: str, redis_client: redis.Redis) -> None:
    run(["revoke", "--subject", "alice"], env_of(redis_url))
    run(["revoke", "--token"], env_of(redis_url), input=TOKEN + "\n")
    ids = [entry_id for entry_id, _ in entries(redis_client)]

    result = run(["events", "--json"], env_of(redis_url))

    assert result.exit_code == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [entry["entry_id"] for entry in printed] == ids
    assert printed[0]["subject"] == "alice"
    assert printed[1]["token_hash"] == sha(TOKEN)
    assert all(entry["store"] == "ok" and entry["reason"] == "admin" for entry in printed)


def test_events_escapes_control_characters(redis_url: str, redis_client: redis.Redis) -> None:
    add_entry(redis_client, subject="\x1b[2Jevil\n")

    result = run(["events"], env_of(redis_url))

    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout
    assert "subject=\\x1b[2Jevil\\n " in result.stdout
    assert result.stdout.count("\n") == 1


def test_events_of_an_empty_stream_prints_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    result = run(["events"], env_of(redis_url))

    assert result.exit_code == 0
    assert result.stdout == ""


def test_events_without_stream_exits_2(redis_url: str) -> None:
    result = run(
        ["events"],
        env_of(redis_url, LOGOUT_EVENTS_STREAM="", LOGOUT_REVOCATION_CACHE="false"),
    )

    assert result.exit_code == 2
    assert "LOGOUT_EVENTS_STREAM" in result.stderr


@contextlib.contextmanager
def following(redis_url: str, *args: str) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """``events --follow *args`` in a real process, and a queue of its stdout lines (read
    by a thread, so that the test can wait with a deadline). SIGINT raises
    KeyboardInterrupt in it, as at a terminal, even if the runner's parent ignores it."""
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from logout_middleware.cli import main; main()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, "events", "--follow", *args],
        env=subprocess_env(redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stdout = process.stdout
    assert stdout is not None
    lines: Lines = queue.Queue()

    def read() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield process, lines
    finally:
        stop_process(process)  # type: ignore[arg-type]
        reader.join(timeout=10)
        stdout.close()


def wait_until_blocked(client: redis.Redis, process: subprocess.Popen[str]) -> None:
    """Until the follower's connection (named CLIENT_NAME) is blocked in ``XREAD``."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, "the follower exited early"
        for found in client.client_list():
            if found.get("name") == CLIENT_NAME and found.get("cmd") == "xread":
                return
        time.sleep(0.05)
    pytest.fail("the follower never blocked in XREAD")


def test_events_follow_prints_new_entries_until_ctrl_c(
    redis_url: str, redis_client: redis.Redis
) -> None:
    env = env_of(redis_url)
    run(["revoke", "--subject", "followed"], env)  # before it starts: --count 0 skips it
    args = ("--count", "0", "--subject", "followed", "--json")
    with following(redis_url, *args) as (process, lines):
        wait_until_blocked(redis_client, process)
        run(["revoke", "--subject", "someone-else"], env)  # filtered out
        result = run(["revoke", "--subject", "followed", "--json"], env)
        assert result.exit_code == 0, result.stderr

        try:
            line = lines.get(timeout=15)
        except queue.Empty:
            pytest.fail("the follower printed nothing")
        entry = json.loads(line)
        assert entry["id"] == json.loads(result.stdout)["id"]
        assert entry["subject"] == "followed"
        newest = entries(redis_client)[-1][0]
        assert entry["entry_id"] == newest

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
        assert lines.empty()


def test_events_follow_prints_the_backlog_first(redis_url: str, redis_client: redis.Redis) -> None:
    env = env_of(redis_url)
    for subject in ("alice", "bob", "carol"):
        run(["revoke", "--subject", subject], env)
    with following(redis_url, "--count", "2") as (process, lines):
        backlog = [lines.get(timeout=15), lines.get(timeout=15)]
        assert ["subject=bob " in backlog[0], "subject=carol " in backlog[1]] == [True, True]
        wait_until_blocked(redis_client, process)
        run(["revoke", "--subject", "dave"], env)
        assert "subject=dave " in lines.get(timeout=15)


# status


def test_status_counts_the_revocation_state(redis_url: str, redis_client: redis.Redis) -> None:
    env = env_of(redis_url)
    run(["revoke", "--token"], env, input="t1\n")
    run(["revoke", "--token"], env, input="t2\n")
    run(["revoke", "--session"], env, input="s1\n")
    run(["revoke", "--subject", "alice"], env)
    run(["revoke", "--subject", "bob"], env)
    run(["revoke", "--subject", "bob"], env)
    redis_client.set("logout:unrelated", b"1")
    redis_client.set("session:s2", b"{}")

    result = run(["status", "--json"], env)

    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    version = found.pop("version")
    persistence = found.pop("persistence")
    assert version.count(".") == 2
    assert persistence in {"aof", "rdb", "aof+rdb", "none", "unknown"}
    assert found == {
        "redis": "ok",
        "url": redis_url,
        "revoked_tokens": 2,
        "session_tombstones": 1,
        "not_before_subjects": 2,
        "events_stream": "logout:events",
        "events": 6,
        "topology": "single",
    }
    human = run(["status"], env)
    assert human.exit_code == 0
    lines = human.stdout.splitlines()
    if persistence == "none":  # the test Redis persists nothing: said, as a warning
        assert lines.pop(1).startswith("warning: neither AOF nor RDB")
    assert lines == [
        f"redis: ok ({redis_url}; single Redis {version}, persistence: {persistence})",
        "revoked tokens: 2",
        "session tombstones: 1",
        "subjects with a not-before: 2",
        "events stream logout:events: 6 entries",
    ]


def test_status_escapes_glob_characters_in_prefixes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    env = env_of(redis_url, LOGOUT_KEY_PREFIX="app[1]:", LOGOUT_DENYLIST_PREFIX="den*:")
    run(["revoke", "--subject", "alice"], env)
    run(["revoke", "--token"], env, input="t1\n")
    # These would match the prefixes read as unescaped globs.
    redis_client.set("app1:not-before:x", b"1")
    redis_client.set("denied:x", b"1")

    result = run(["status", "--json"], env)

    found = json.loads(result.stdout)
    assert found["not_before_subjects"] == 1
    assert found["revoked_tokens"] == 1
    assert found["events"] == 2


def test_status_of_an_empty_database(redis_url: str, redis_client: redis.Redis) -> None:
    result = run(["status", "--json"], env_of(redis_url))

    found = json.loads(result.stdout)
    assert (found["revoked_tokens"], found["session_tombstones"], found["events"]) == (0, 0, 0)


def test_python_dash_m_runs_the_command_line(redis_url: str, redis_client: redis.Redis) -> None:
    redis_client.set("logout:revoked:" + sha("t"), b"1")

    done = subprocess.run(
        [sys.executable, "-m", "logout_middleware", "status"],
        env=subprocess_env(redis_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"redis: ok ({redis_url}; single Redis ")
    assert "revoked tokens: 1" in lines


def test_python_dash_m_exit_codes(redis_url: str) -> None:
    unreachable = subprocess.run(
        [sys.executable, "-m", "logout_middleware", "status"],
        env={**subprocess_env(unreachable_url()), "LOGOUT_REDIS_TIMEOUT": "0.5"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert unreachable.returncode == 1
    assert "unreachable" in unreachable.stderr

    usage = subprocess.run(
        [sys.executable, "-m", "logout_middleware", "revoke"],
        env=subprocess_env(redis_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 2
    assert "Usage: logout-middleware revoke" in usage.stderr
