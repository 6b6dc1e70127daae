"""The benchmark suite, in smoke mode (tiny counts), runs end to end and writes its outputs.

Nothing here judges timings: the point is that ``python -m benchmarks`` cannot rot. It
checks that every section produced its rows, that every response had the expected
status, and the counts that do not depend on the machine, for the two variants the
suite ships (the default configuration, whose revocation cache is on, and the same
without the cache):

* requests with a session cookie or a bearer JWT: no Redis round trip in steady state
  with the cache, one pipelined check without it; requests without credentials: none
  (a ``POST`` with the session cookie is counted, not judged);
* a logout: one round trip (``MULTI``/``EXEC``) for a session its process served just
  before, two (``GET`` of the record, then ``MULTI``/``EXEC``) for one it never saw;
* a logout everywhere of a subject with 100 sessions: every session ended, and its
  round trips counted (the target, at most two, is judged in the report, not here);
* the mirror's memory and cross-process staleness measured, every revocation seen.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.sections import logout_impls
from benchmarks.variants import VARIANTS

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("none", "cookie", "bearer")
MIDDLEWARES = [v.name for v in VARIANTS]
#: The default configuration (revocation cache on) and the same without the cache.
CACHED, UNCACHED = "logout", "nocache"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    data: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
    return out, data


def rows(data: dict[str, Any], section: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in data[section] if all(r[k] == v for k, v in match.items())]


def test_variants_are_the_default_then_without_the_cache() -> None:
    assert [v.name for v in VARIANTS][:2] == [CACHED, UNCACHED]
    assert dict(VARIANTS[0].settings) == {}
    assert VARIANTS[0].follows
    assert dict(VARIANTS[1].settings) == {"revocation_cache": False}
    assert not VARIANTS[1].follows


def test_writes_report_json_and_charts(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, data = smoke
    for name in ("passthrough.png", "logout.png", "scaling.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (out / "results.md").read_text(encoding="utf-8")
    for heading in (
        "## Machine",
        "## Headline",
        "## Targets",
        "## 1. Pass-through through a real server",
        "## 1b. Pass-through in-process",
        "## 2. Logout",
        "## 2b. Logout everywhere",
        "## 3. Scaling of the revocation check",
        "## 4. Revocation mirror: memory and staleness",
    ):
        assert heading in md
    for text in (
        "Redis round trips per logout, session used first",
        "Redis round trips per logout, session never seen",
        "Starlette BaseHTTPMiddleware",
        "FastAPI route, one pipeline",
        "Flask route, one pipeline",
        "redis-py alone (floor)",
        "floor: path comparison only",
        "A/A control",
        "Mirror memory per revoked item",
        "![passthrough.png](passthrough.png)",
        *(v.label for v in VARIANTS),
    ):
        assert text in md, text
    machine = data["meta"]["machine"]
    assert machine["cpu"]
    assert machine["cores"] >= 1
    assert machine["python"]
    assert "logout-middleware" in machine["packages"]
    assert machine["redis_server"]
    assert {t["status"] for t in data["targets"]} <= {"met", "within noise", "not met"}
    names = " | ".join(t["name"] for t in data["targets"])
    for target in (
        "within 60 ns of the floor",
        "within 1,000 ns of the floor",
        "no Redis round trip per request",
        "Session cookie, uvicorn: at least 0.97",
        "Bearer JWT, uvicorn: at least 0.95",
        "used within the last minute: one Redis round trip",
        "never saw: at most two Redis round trips",
        "Logout everywhere, a subject with 100 sessions: at most 2",
        "Revocation mirror memory",
        "Cross-process staleness",
    ):
        assert target in names, target


def test_passthrough_rows_and_round_trips(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    for stack in ("asgi", "wsgi"):
        for kind in KINDS:
            names = {r["variant"] for r in rows(data, "passthrough", stack=stack, kind=kind)}
            expected = {"bare", *MIDDLEWARES}
            expected |= {"basehttp"} if stack == "asgi" else set()
            expected |= {"bare-aa"} if kind == "none" else set()
            assert names == expected, (stack, kind)
    for row in data["passthrough"]:
        assert row["requests"] > 0
        assert row["unexpected"] == 0, row["label"]
        assert row["rps"] > 0
        assert row["paired_ratio"] > 0, row["label"]
        redis = row["redis"]
        trips = redis["round_trips"]
        checked = row["kind"] != "none"
        if row["variant"] == CACHED or not checked or row["variant"].startswith("bare"):
            # The mirror answers: no round trip (a session's record is read once a
            # minute per process, which a short run does not see after its warm-up).
            assert trips == pytest.approx(0.0, abs=0.01), (row["stack"], row["kind"], row["label"])
        elif row["variant"] == UNCACHED:
            # One pipelined check: the tombstone, or the denylist and the subject's
            # not-before for a JWT.
            assert trips == pytest.approx(1.0, abs=0.01), row["label"]
            assert redis["exists"] == pytest.approx(1.0, abs=0.01), row["label"]
            gets = 1.0 if row["kind"] == "bearer" else 0.0
            assert redis.get("get", 0.0) == pytest.approx(gets, abs=0.01), row["label"]
        elif row["variant"] == "basehttp":
            bearer = 1.0 if row["kind"] == "bearer" else 0.0
            assert trips == pytest.approx(bearer, abs=0.01), row["label"]


def test_inprocess_rows(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    for group in ("asgi", "wsgi", "flask"):
        for kind in KINDS:
            found = rows(data, "inprocess", group=group, kind=kind)
            expected = {"bare", "empty", "floor", *MIDDLEWARES} | (
                {"basehttp"} if group == "asgi" else set()
            )
            assert {r["variant"] for r in found} == expected, (group, kind)
            for row in found:
                assert row["status"] == 200, row
                assert row["ns"] > 0
                assert row["over_floor_ns"] is not None
                if row["variant"] == CACHED and kind != "none":
                    assert row["live"] is True, row
                expected_trips = 0.0
                if kind != "none" and row["variant"] == UNCACHED:
                    expected_trips = 1.0
                if kind == "bearer" and row["variant"] == "basehttp":
                    expected_trips = 1.0
                assert row["round_trips"] == pytest.approx(expected_trips, abs=0.01), row
    # A POST with the session cookie: counted, not judged (the record may be read again
    # after an unsafe request), but never cheaper than the GET's check.
    for group in ("asgi", "wsgi"):
        posts = {r["variant"]: r for r in rows(data, "inprocess", group=group, kind="cookie_post")}
        assert set(posts) == set(MIDDLEWARES), group
        for name, row in posts.items():
            get = rows(data, "inprocess", group=group, kind="cookie", variant=name)[0]
            assert row["status"] == 200, row
            assert row["round_trips"] >= get["round_trips"] - 0.01, row


def test_logout_round_trips(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    by_key = {r["variant"]: r for r in data["logout"]}
    assert set(by_key) == {impl.key for impl in logout_impls()}
    for key, row in by_key.items():
        assert row["requests"] > 0, key
        assert row["unexpected"] == 0, key
        assert row["verified"] is True, key
        if key.endswith(("-route", "-naive")) or key == "floor":
            expected = 3.0 if key.endswith("-naive") else 1.0
            assert row["redis"]["round_trips"] == pytest.approx(expected, abs=0.01), key
    for name in MIDDLEWARES:
        for stack in ("asgi", "wsgi"):
            # The default configuration reads no record (no LOGOUT_SESSION_SUBJECT): one
            # round trip, whether the process saw the session before or not.
            for suffix, trips, gets in (("-seen", 1.0, 0.0), ("", 1.0, 0.0)):
                redis = by_key[f"{name}-{stack}{suffix}"]["redis"]
                where = (name, stack, suffix)
                assert redis["request_round_trips"] == pytest.approx(trips, abs=0.01), where
                assert redis.get("get", 0.0) == pytest.approx(gets, abs=0.01), where
                assert redis["multi"] == redis["exec"] == pytest.approx(1.0), where
                # SET of the revoked token and of the session's tombstone.
                assert redis["set"] == pytest.approx(2.0), where
                assert redis["xadd"] == pytest.approx(1.0), where
                # Counted apart: a follower deleting again records its process knows.
                assert redis["follower_deletes"] <= 1.0 + 0.01, where
                if name == UNCACHED:
                    assert redis["follower_deletes"] == pytest.approx(0.0), where


def test_logout_everywhere(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    found = {(r["stack"], r["case"]): r for r in data["everywhere"]}
    assert set(found) == {(s, c) for s in ("asgi", "wsgi") for c in ("seen", "unseen")}
    for key, row in found.items():
        assert row["sessions"] == 100, key
        assert row["status"] == 200, key
        assert row["sessions_ended"] == 100, key
        assert row["records_left"] == 0, key
        assert row["tombstones"] == 100, key
        assert row["not_before_set"] is True, key
        assert row["index_left"] is False, key
        assert row["stripped"] is True, key
        assert row["verified"] is True, key
        commands = row["commands"]
        assert commands["exec"] == pytest.approx(1.0), key
        assert commands["zrangebyscore"] == pytest.approx(1.0), key
        # The transaction and the index read; the record's GET shares the index read's
        # pipeline when the answering process served the session ("seen"), else it is a
        # round trip of its own.
        own_get = commands.get("get", 0.0) if key[1] == "unseen" else 0.0
        expected = 2.0 + own_get
        assert row["round_trips"] == pytest.approx(expected), key
        assert row["socket_reads"] >= row["round_trips"], key


def test_mirror_memory_and_staleness(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    memory = {r["what"]: r for r in data["memory"]}
    for what in ("revoked token", "session tombstone", "subject not-before"):
        assert memory[what]["items"] > 0, what
        assert memory[what]["bytes_per_item"] > 0, what
        assert memory[what]["claim"] is not None, what
    assert data["absorb_us_per_entry"] > 0
    flavours = {r["flavour"]: r for r in data["staleness"]}
    assert set(flavours) == {"async", "thread"}
    for flavour, row in flavours.items():
        assert row["trials"] > 0, flavour
        assert row["missed"] == 0, flavour
        assert len(row["after_exec_us"]) == row["trials"], flavour
        assert not math.isnan(row["p99_us"]), flavour


def test_scaling_rows(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    settings = data["meta"]["settings"]
    for size in settings["scaling_sizes"]:
        for concurrency in settings["scaling_concurrency"]:
            found = rows(data, "scaling", revoked_keys=size, concurrency=concurrency)
            cases = {(r["variant"], r["kind"]) for r in found}
            expected = {("bare", "miss")}
            expected |= {(name, case) for name in MIDDLEWARES for case in ("miss", "hit")}
            assert cases == expected, (size, concurrency)
            for row in found:
                assert row["unexpected"] == 0, row["label"]
                if row["variant"] == CACHED and row["kind"] == "miss":
                    assert row["redis"]["round_trips"] == pytest.approx(0.0, abs=0.01)
                if row["variant"] == UNCACHED:
                    assert row["redis"]["round_trips"] == pytest.approx(1.0, abs=0.01)
        assert {e["case"] for e in data["exists"] if e["revoked_keys"] == size} == {"miss", "hit"}
        loads = {r["variant"]: r for r in data["mirror_loads"] if r["revoked_keys"] == size}
        assert set(loads) == set(MIDDLEWARES), size
        assert loads[CACHED]["loaded"] is True, size
