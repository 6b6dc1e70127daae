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
* the mirror's memory and cross-process staleness measured, every revocation seen;
* the Redis Cluster column (a local 3-primary cluster): a bearer JWT with the cache asks
  no shard, without it one pipelined check (its two keys on one or two shards); a logout
  on the cluster sends its key writes, a batch to each shard holding them (one to
  three), then its audit entry, appended by the script in the stream's shard; every
  logout verified;
* the audit stream's throughput: every operation taken (none failed), the entries Redis
  counted on the stream's node equal to those sent, one read per logout there on one
  Redis (one or two on the cluster: the entry, and the key writes that live there).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.cluster import cluster_logout_impls, cluster_pairs
from benchmarks.common import CLUSTER_VARIANTS, VARIANTS
from benchmarks.logout import logout_impls

ROOT = Path(__file__).resolve().parent.parent
#: The smoke run (the module's fixture, in the first test) starts ~30 server processes,
#: a local Redis Cluster and pyperf: more than pytest-timeout's 120 s on a busy machine.
pytestmark = pytest.mark.timeout(300)
KINDS = ("none", "cookie", "bearer")
MIDDLEWARES = [v.name for v in VARIANTS]
#: The default configuration (revocation cache on) and the same without the cache.
CACHED, UNCACHED = "logout", "nocache"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    if shutil.which("wrk") is None:
        pytest.skip("no wrk on PATH, which loads the servers (Debian: apt-get install wrk)")
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


def test_cluster_twins() -> None:
    assert [c.name for c in CLUSTER_VARIANTS] == [f"{v.name}-cluster" for v in VARIANTS]
    assert [c.follows for c in CLUSTER_VARIANTS] == [v.follows for v in VARIANTS]
    assert all(dict(c.settings)["redis_cluster"] is True for c in CLUSTER_VARIANTS)


def test_writes_report_json_and_charts(smoke: tuple[Path, dict[str, Any]]) -> None:
    out, data = smoke
    for name in ("passthrough.png", "logout.png", "scaling.png", "cluster.png"):
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
        "## 5. Redis Cluster",
        "### 5a. Bearer check and logout: the Cluster column",
        "### 5b. The audit stream at many writers",
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
        "Redis Cluster (3 primaries) vs one Redis: bearer JWT req/s",
        "Redis Cluster vs one Redis: logout req/s",
        "Audit stream (one shard)",
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
                # SET of the revoked token and of the session's tombstone; the audit
                # entry's script: SET NX of its write-once marker, then XADD.
                assert redis["set"] == pytest.approx(3.0), where
                assert redis["eval"] == pytest.approx(1.0), where
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


def test_cluster_column(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    info = data["cluster_info"]
    assert (info["primaries"], info["nodes"]) == (3, 6)
    stream = info["stream_shard"]
    by = {(r["stack"], r["kind"], r["variant"]): r for r in data["cluster"]}
    for stack in ("asgi", "wsgi"):
        for single, twin in cluster_pairs():
            one, cluster = by[stack, "bearer", single], by[stack, "bearer", twin]
            assert cluster["baseline"] == single
            for row in (one, cluster):
                assert row["requests"] > 0, row["label"]
                assert row["unexpected"] == 0, row["label"]
            assert len(cluster["redis_shards"]) == 3
            trips = cluster["redis"]["round_trips"]
            shards = sum(shard.get("round_trips", 0.0) for shard in cluster["redis_shards"])
            assert shards == pytest.approx(trips, abs=0.01), (stack, twin)
            if single == CACHED:
                assert one["redis"]["round_trips"] == pytest.approx(0.0, abs=0.02), stack
                assert trips == pytest.approx(0.0, abs=0.02), stack
            else:
                # EXISTS of the token's key and GET of the subject's not-before: one
                # pipeline, a batch to each of the (one or two) shards holding them.
                assert one["redis"]["round_trips"] == pytest.approx(1.0, abs=0.02), stack
                assert cluster["redis"]["exists"] == pytest.approx(1.0, abs=0.01), stack
                assert cluster["redis"]["get"] == pytest.approx(1.0, abs=0.01), stack
                assert 1.0 - 0.02 <= trips <= 2.0 + 0.02, (stack, trips)
    impls = cluster_logout_impls()
    assert {i.key for i in impls} == {
        f"{v}-{stack}{seen}"
        for v in cluster_pairs()[0]
        for stack in ("asgi", "wsgi")
        for seen in ("", "-seen")
    }
    for impl in impls:
        row = by[impl.stack, "logout", impl.key]
        redis = row["redis"]
        assert row["requests"] > 0, impl.key
        assert row["unexpected"] == 0, impl.key
        assert row["verified"] is True, impl.key
        # The audit entry: one script (SET NX of its marker, then XADD); the revoked
        # token's and the session's tombstone's SET; the record's DEL.
        assert redis["eval"] == pytest.approx(1.0), impl.key
        assert redis["xadd"] == pytest.approx(1.0), impl.key
        assert redis["set"] == pytest.approx(3.0), impl.key
        if impl.app.removesuffix("-2") == CACHED:
            assert redis["multi"] == redis["exec"] == pytest.approx(1.0), impl.key
            assert redis["request_round_trips"] == pytest.approx(1.0, abs=0.01), impl.key
        else:
            # No transaction across shards: the key writes, a batch to each of the one to
            # three shards holding them, then the entry on the stream's shard.
            assert redis.get("exec", 0.0) == pytest.approx(0.0), impl.key
            assert 2.0 - 0.02 <= redis["request_round_trips"] <= 4.0 + 0.1, impl.key
            assert row["redis_shards"][stream]["eval"] == pytest.approx(1.0), impl.key


def test_stream_throughput(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    writers = data["meta"]["settings"]["stream_writers"]
    found = {(r["topology"], r["kind"], r["writers"]): r for r in data["stream"]}
    expected = {
        (topology, kind, count)
        for topology in ("single", "cluster")
        for count in writers
        for kind in ("logout", "xadd", *(("xadd-batch",) if count == writers[-1] else ()))
    }
    assert set(found) == expected
    for key, row in found.items():
        assert row["ops"] > 0, key
        assert row["failed"] == 0, key
        # Every entry sent is counted by Redis on the stream's node, and nothing else.
        assert row["entries"] == row["ops"] * row["batch"], key
        assert row["stream_cpu_us"] > 0, key
        assert row["ceiling"] > 0, key
        commands = row["stream_commands"]
        assert commands["xadd"] == pytest.approx(row["batch"]), key
        if row["kind"] == "xadd" or (row["kind"], row["topology"]) == ("logout", "single"):
            # One exchange with the stream's node per operation.
            assert row["stream_reads"] == pytest.approx(1.0, abs=0.05), key
        if row["kind"] == "logout":
            assert commands["eval"] == pytest.approx(1.0), key
            if row["topology"] == "single":
                assert commands["exec"] == pytest.approx(1.0), key
                assert row["reads"] == pytest.approx(1.0, abs=0.05), key
            else:
                # The entry, and the batch of key writes when one lives there too.
                assert 1.0 - 0.05 <= row["stream_reads"] <= 2.0 + 0.05, key
                assert 2.0 - 0.05 <= row["reads"] <= 4.0 + 0.05, key
