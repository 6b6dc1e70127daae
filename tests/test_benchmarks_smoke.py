"""The benchmark suite, in smoke mode (tiny counts), runs end to end and writes its outputs.

Nothing here judges timings: the point is that ``python -m benchmarks`` cannot rot. It
checks that every section produced its rows, that every response had the expected
status, and the counts that do not depend on the machine: Redis round trips per logout
(one), per bearer-token request (one) and per request without one (none).
"""

from __future__ import annotations

import json
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
        "## 3. Scaling of the revocation check",
    ):
        assert heading in md
    for text in (
        "Redis round trips per logout",
        "Starlette BaseHTTPMiddleware",
        "FastAPI route, one pipeline",
        "Flask route, one pipeline",
        "redis-py alone (floor)",
        "A/A control",
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
    assert len(data["targets"]) >= 6


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
        trips = row["redis"]["round_trips"]
        if row["kind"] == "bearer" and row["variant"] == "cached":
            # The revocation cache answers unrevoked tokens with no round trip.
            assert trips < 0.1, row["label"]
        elif row["kind"] == "bearer" and row["variant"] not in ("bare", "bare-aa"):
            assert trips == pytest.approx(1.0, abs=0.01), row["label"]
            assert row["redis"]["exists"] == pytest.approx(1.0, abs=0.01)
        else:
            assert trips == 0, (row["stack"], row["kind"], row["label"])


def test_inprocess_rows(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    for group in ("asgi", "wsgi", "flask"):
        for kind in KINDS:
            found = rows(data, "inprocess", group=group, kind=kind)
            expected = {"bare", "empty", *MIDDLEWARES} | (
                {"basehttp"} if group == "asgi" else set()
            )
            assert {r["variant"] for r in found} == expected, (group, kind)
            for row in found:
                assert row["status"] == 200, row
                assert row["ns"] > 0


def test_logout_one_round_trip(smoke: tuple[Path, dict[str, Any]]) -> None:
    _, data = smoke
    by_key = {r["variant"]: r for r in data["logout"]}
    assert set(by_key) == {impl.key for impl in logout_impls()}
    for key, row in by_key.items():
        assert row["requests"] > 0, key
        assert row["unexpected"] == 0, key
        assert row["verified"] is True, key
        expected = 3.0 if key.endswith("-naive") else 1.0
        assert row["redis"]["round_trips"] == pytest.approx(expected, abs=0.01), key
    for name in MIDDLEWARES:
        for stack in ("asgi", "wsgi"):
            redis = by_key[f"{name}-{stack}"]["redis"]
            assert redis["round_trips"] == pytest.approx(1.0, abs=0.01)
            assert redis["multi"] == redis["exec"] == pytest.approx(1.0)
            for command in ("del", "set", "xadd"):
                assert redis[command] == pytest.approx(1.0), command


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
        assert {e["case"] for e in data["exists"] if e["revoked_keys"] == size} == {"miss", "hit"}
