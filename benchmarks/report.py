"""Results: machine details, targets, the Markdown report, the JSON and the charts."""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .inprocess import GROUPS, InprocessRow
from .sections import STACK_LABELS, ExistsRow, ServerRow
from .stats import median, paired_ratio
from .variants import VARIANTS

__all__ = ["Results", "Target", "machine", "write"]

Row = TypeVar("Row", ServerRow, InprocessRow)

#: Packages whose versions the report gives.
PACKAGES = (
    "logout-middleware",
    "redis",
    "starlette",
    "fastapi",
    "flask",
    "werkzeug",
    "uvicorn",
    "h11",
    "httptools",
    "uvloop",
    "waitress",
    "matplotlib",
)
KIND_LABELS = {"none": "no credentials", "cookie": "session cookie", "bearer": "bearer token"}
#: Largest slowdown of requests without credentials through a server that meets the target.
NO_CREDENTIALS_LIMIT = 0.97
#: Largest added in-process work per request without credentials that meets the target.
ADDED_NS_LIMIT = 1000.0
#: Largest change of req/s (relative to the bare app) counted as flat.
FLAT_LIMIT = 0.10
#: Logout throughput ratio to a hand-written route counted as "within noise".
NOISE = 0.03


@dataclass
class Target:
    """One target of the issue, judged on the first variant."""

    name: str
    status: str  # "met", "within noise", "not met", "not measured"
    detail: str


@dataclass
class Results:
    """Everything one run measured."""

    meta: dict[str, Any]
    inprocess: list[InprocessRow] = field(default_factory=list)
    passthrough: list[ServerRow] = field(default_factory=list)
    logout: list[ServerRow] = field(default_factory=list)
    scaling: list[ServerRow] = field(default_factory=list)
    exists: list[ExistsRow] = field(default_factory=list)


# -- machine ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine(redis_version: str, uvicorn_http: str) -> dict[str, Any]:
    """CPU, cores, OS, Python, library and Redis versions, load average."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    http = uvicorn_http
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(affinity) if affinity is not None else os.cpu_count(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {p: v for p in PACKAGES if (v := _version(p)) is not None},
        "redis_server": redis_version,
        "uvicorn_http": http,
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# -- formatting --------------------------------------------------------------------------


def _x(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}×"  # noqa: RUF001


def _ms(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.2f}"


def _num(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _ns(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 10_000:
        return f"{value / 1000:+,.1f} µs"
    return f"{value:+,.0f} ns"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _find(rows: Iterable[Row], **match: Any) -> Row | None:
    for row in rows:
        if all(getattr(row, k) == v for k, v in match.items()):
            return row
    return None


def _vs(a: ServerRow | None, b: ServerRow | None) -> float:
    if a is None or b is None:
        return math.nan
    return paired_ratio(a.rps_rounds, b.rps_rounds)


def _rt(row: ServerRow | None) -> float:
    return math.nan if row is None else row.redis.get("round_trips", math.nan)


# -- targets and headline ------------------------------------------------------------


def targets(results: Results) -> list[Target]:
    """The issue's targets, judged on the first variant."""
    v = VARIANTS[0].name
    found: list[Target] = []
    pt = results.passthrough
    ratios = {s: _find(pt, stack=s, kind="none", variant=v) for s in ("asgi", "wsgi")}
    controls = {s: _find(pt, stack=s, kind="none", variant="bare-aa") for s in ("asgi", "wsgi")}
    if all(ratios.values()):
        worst = min(r.side_ratio for r in ratios.values() if r is not None)
        noise = ", ".join(
            f"{s.upper()} {_x(c.side_ratio)} side by side, {_x(c.ratio)} alone"
            for s, c in controls.items()
            if c is not None
        )
        found.append(
            Target(
                "No credentials, real server: ≤ 3% fewer requests/s than the bare app",
                "met" if worst >= NO_CREDENTIALS_LIMIT else "not met",
                "; ".join(
                    f"{s.upper()} {_x(r.side_ratio)} side by side ({_x(r.ratio)} alone, "
                    f"server CPU per request {_x(r.paired_cpu_ratio)})"
                    for s, r in ratios.items()
                    if r
                )
                + (f"; A/A control (bare vs bare): {noise}" if noise else ""),
            )
        )
    added = {g: _find(results.inprocess, group=g, kind="none", variant=v) for g in GROUPS}
    raw = [added[g] for g in ("asgi", "wsgi") if added.get(g) is not None]
    if raw:
        worst_ns = max(r.added_cpu_ns for r in raw if r is not None)
        found.append(
            Target(
                "No credentials, in-process: well under 1 µs of added work (CPU) per request",
                "met" if worst_ns < ADDED_NS_LIMIT else "not met",
                ", ".join(
                    f"{GROUPS[r.group]} {_ns(r.added_cpu_ns)} (wall {_ns(r.added_ns)})"
                    for r in raw
                    if r is not None
                )
                + _empty_note(results),
            )
        )
    bearer = {s: _find(pt, stack=s, kind="bearer", variant=v) for s in ("asgi", "wsgi")}
    if all(bearer.values()):
        rts = [_rt(r) for r in bearer.values()]
        found.append(
            Target(
                "Bearer token: at most one Redis round trip per request",
                "met" if max(rts) <= 1.01 else "not met",
                "; ".join(
                    f"{s.upper()} {_rt(r):.2f} round trips/request, "
                    f"{_x(r.side_ratio)} the bare app's req/s side by side ({_x(r.ratio)} alone), "
                    "server CPU per request "
                    f"{_x(r.cpu_ratio)} ({_added_cpu(pt, r)})"
                    for s, r in bearer.items()
                    if r is not None
                ),
            )
        )
    lo = results.logout
    mine = {s: _find(lo, variant=f"{v}-{s}") for s in ("asgi", "wsgi")}
    if all(mine.values()):
        rts = [_rt(r) for r in mine.values()]
        one_trip = all(abs(x - 1.0) <= 0.01 for x in rts)
        verified = all(r is not None and r.verified for r in mine.values())
        found.append(
            Target(
                "Logout: one Redis round trip",
                "met" if one_trip and verified else "not met",
                ", ".join(f"{s.upper()} {_rt(r):.2f}" for s, r in mine.items() if r is not None)
                + " round trips/logout (MULTI/EXEC pipeline); sessions deleted and tokens "
                + ("revoked as checked" if verified else "NOT all verified"),
            )
        )
        pairs = [
            ("asgi", "fastapi-route", "FastAPI"),
            ("wsgi", "flask-route", "Flask"),
            ("asgi", "fastapi-naive", "FastAPI, a call per command"),
            ("wsgi", "flask-naive", "Flask, a call per command"),
        ]
        versus = [(label, _vs(mine[s], _find(lo, variant=other))) for s, other, label in pairs]
        main = [r for _, r in versus[:2]]
        status = (
            "met" if min(main) >= 1.0 else "within noise" if min(main) >= 1.0 - NOISE else "not met"
        )
        found.append(
            Target(
                "Logout throughput at least that of hand-written routes",
                status,
                ", ".join(f"vs {label} {_x(r)}" for label, r in versus),
            )
        )
    found += _scaling_targets(results)
    return found


def _added_cpu(rows: list[ServerRow], row: ServerRow) -> str:
    """The server CPU per request ``row`` adds over the bare app's row of its kind."""
    bare = _find(rows, stack=row.stack, kind=row.kind, variant="bare")
    if bare is None or math.isnan(row.cpu_us) or math.isnan(bare.cpu_us):
        return "CPU n/a"
    return f"+{row.cpu_us - bare.cpu_us:,.0f} µs of {bare.cpu_us:,.0f}"


def _scaling_targets(results: Results) -> list[Target]:
    """Flat in revoked keys and in connections, judged on req/s relative to the bare app
    (measured in the same rounds, so the machine's drift cancels), median over cases."""
    sc = results.scaling
    if not sc:
        return []
    v = VARIANTS[0].name
    sizes = sorted({r.revoked_keys or 0 for r in sc})
    concs = sorted({r.concurrency for r in sc})

    def rel(case: str, size: int, conc: int) -> float:
        row = _find(sc, variant=v, kind=case, concurrency=conc, revoked_keys=size)
        return math.nan if row is None else row.side_ratio

    by_size = [
        (case, c, rel(case, sizes[-1], c) / rel(case, sizes[0], c) - 1)
        for case in ("miss", "hit")
        for c in concs
    ]
    by_size = [x for x in by_size if not math.isnan(x[2])]
    usec = [e for e in results.exists if e.case == "miss"]
    trip = [e for e in results.exists if e.revoked_keys == sizes[0] and e.case == "miss"]
    found: list[Target] = []
    if by_size:
        change = median([x[2] for x in by_size])
        found.append(
            Target(
                f"Revocation check flat from {sizes[0]:,} to {sizes[-1]:,} revoked keys",
                "met" if abs(change) <= FLAT_LIMIT else "not met",
                f"req/s relative to the bare app changes by {change:+.0%} (median; "
                + ", ".join(f"{case} c={c} {x:+.0%}" for case, c, x in by_size)
                + "); Redis's own time per EXISTS: "
                + ", ".join(f"{e.revoked_keys:,} keys {e.redis_usec:.2f} µs" for e in usec)
                + (f", against a {trip[0].client_us:.0f} µs round trip" if trip else ""),
            )
        )
    if len(concs) >= 2:
        # From the first saturating level (the second, when there are three or more) up:
        # a single connection is latency-bound, a different regime.
        low = concs[1] if len(concs) >= 3 else concs[0]
        by_conc = [
            (case, size, rel(case, size, concs[-1]) / rel(case, size, low) - 1)
            for case in ("miss", "hit")
            for size in sizes
        ]
        by_conc = [x for x in by_conc if not math.isnan(x[2])]
        if by_conc:
            change = median([x[2] for x in by_conc])
            found.append(
                Target(
                    f"Revocation check flat from {low} to {concs[-1]} connections",
                    "met" if abs(change) <= FLAT_LIMIT else "not met",
                    f"req/s relative to the bare app changes by {change:+.0%} (median; "
                    + ", ".join(f"{case} {size:,} keys {x:+.0%}" for case, size, x in by_conc)
                    + ")",
                )
            )
    return found


def _empty_note(results: Results) -> str:
    """What an empty middleware adds, for comparison."""
    parts = []
    for group in ("asgi", "wsgi"):
        row = _find(results.inprocess, group=group, kind="none", variant="empty")
        if row is not None:
            parts.append(f"{group.upper()} {_ns(row.added_cpu_ns)}")
    return f"; an empty middleware adds {', '.join(parts)}" if parts else ""


def headline(results: Results) -> list[str]:
    """The headline table: one row per measure, one column per variant."""
    pt, lo, sc = results.passthrough, results.logout, results.scaling
    header = [
        "Measure (ratios in the same run, median of rounds; server req/s side by side)",
        *(v.label for v in VARIANTS),
    ]
    rows: list[list[str]] = []
    for stack in ("asgi", "wsgi"):
        for kind in ("none", "cookie", "bearer"):
            cells = []
            for v in VARIANTS:
                row = _find(pt, stack=stack, kind=kind, variant=v.name)
                cell = (
                    "n/a"
                    if row is None
                    else f"{_x(row.side_ratio)} (alone {_x(row.ratio)}; "
                    f"CPU/request {_x(row.paired_cpu_ratio)})"
                )
                if row is not None and kind == "bearer":
                    cell += f", {_rt(row):.2f} Redis round trips"
                cells.append(cell)
            rows.append([f"{STACK_LABELS[stack]}: req/s vs bare app, {KIND_LABELS[kind]}", *cells])
    for kind in ("none", "bearer"):
        cells = []
        for v in VARIANTS:
            parts = []
            for group in ("asgi", "wsgi"):
                found = _find(results.inprocess, group=group, kind=kind, variant=v.name)
                if found is None:
                    continue
                if kind == "bearer":
                    parts.append(
                        f"{group.upper()} {_ns(found.added_ns)} (CPU {_ns(found.added_cpu_ns)})"
                    )
                else:
                    parts.append(f"{group.upper()} {_ns(found.added_cpu_ns)}")
            cells.append(", ".join(parts) or "n/a")
        what = "CPU" if kind == "none" else "wall time"
        rows.append([f"In-process, added {what} per request, {KIND_LABELS[kind]}", *cells])
    for label, other in (
        ("FastAPI route (one pipeline)", "fastapi-route"),
        ("Flask route (one pipeline)", "flask-route"),
    ):
        stack = "asgi" if other.startswith("fastapi") else "wsgi"
        cells = [
            _x(_vs(_find(lo, variant=f"{v.name}-{stack}"), _find(lo, variant=other)))
            for v in VARIANTS
        ]
        rows.append([f"Logout req/s vs hand-written {label}", *cells])
    cells = []
    for v in VARIANTS:
        a, w = _find(lo, variant=f"{v.name}-asgi"), _find(lo, variant=f"{v.name}-wsgi")
        cells.append(f"ASGI {_rt(a):.2f}, WSGI {_rt(w):.2f}")
    rows.append(["Redis round trips per logout", *cells])
    # Every cached server process reads each revocation once (fewer when batched),
    # whichever server handled the logout: one figure for the whole run.
    measured = [r for r in lo if r.redis.get("round_trips") is not None]
    follower = sum(r.redis.get("follower_reads", 0.0) for r in measured) / max(1, len(measured))
    if follower > 0:
        label = "Follower reads per logout (revocation caches in other processes catching up)"
        rows.append([label, *[f"{follower:.2f}" for _ in VARIANTS]])
    if sc:
        sizes = sorted({r.revoked_keys or 0 for r in sc})
        conc = sorted({r.concurrency for r in sc})
        middle = conc[len(conc) // 2]
        cells = []
        for v in VARIANTS:
            low = _find(sc, variant=v.name, kind="miss", concurrency=middle, revoked_keys=sizes[0])
            high = _find(
                sc, variant=v.name, kind="miss", concurrency=middle, revoked_keys=sizes[-1]
            )
            ratio = (
                high.side_ratio / low.side_ratio if low and high and low.side_ratio else math.nan
            )
            cells.append(_x(ratio))
        rows.append(
            [
                f"Bearer req/s (relative to bare) with {sizes[-1]:,} vs {sizes[0]:,} revoked keys "
                f"({middle} connections)",
                *cells,
            ]
        )
    lines = _table(header, rows)
    extra = []
    base = _find(pt, stack="asgi", kind="none", variant="basehttp")
    if base is not None:
        extra.append(
            f"Starlette `BaseHTTPMiddleware` doing the same, no credentials: {_x(base.side_ratio)}"
        )
    for stack in ("asgi", "wsgi"):
        control = _find(pt, stack=stack, kind="none", variant="bare-aa")
        if control is not None:
            extra.append(f"{stack.upper()} A/A control (bare vs bare): {_x(control.side_ratio)}")
    if extra:
        lines += ["", "For scale: " + "; ".join(extra) + "."]
    lines += [
        "",
        "Bearer-token requests wait for Redis, and a server that waits leaves the shared CPU "
        "to its pair: for them, read the *alone* ratio and the CPU per request as the cost.",
    ]
    return lines


# -- Markdown ------------------------------------------------------------------------


def markdown(results: Results, charts: Sequence[str]) -> str:
    meta = results.meta
    m = meta["machine"]
    s = meta["settings"]
    out: list[str] = ["# logout-middleware benchmarks", ""]
    out += [
        f"Run {meta['started']} with `{meta['command']}`"
        f"{' (SMOKE MODE: tiny counts, numbers meaningless)' if s['smoke'] else ''}; "
        f"took {meta['elapsed_s']:.0f} s. Absolute numbers depend on the machine; compare "
        "the ratios, measured side by side in the same run.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable)",
        f"- OS: {m['os']}",
        f"- Python: {m['python']}",
        f"- Redis server: {m['redis_server']}; uvicorn HTTP: {m['uvicorn_http']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- CPU placement: {meta['placement']}",
        f"- Load average (1, 5, 15 min) at start: {_loads(m.get('loadavg_start'))}, "
        f"at end: {_loads(m.get('loadavg_end'))}",
        "",
        "## Headline",
        "",
        *headline(results),
        "",
        "## Targets",
        "",
    ]
    for target in targets(results):
        out.append(f"- **{target.status.upper()}**: {target.name}. {target.detail}.")
    out += [""]
    for chart in charts:
        out += [f"![{chart}]({chart})", ""]
    out += _passthrough_section(results) + _inprocess_section(results)
    out += _logout_section(results) + _scaling_section(results) + _method(meta)
    return "\n".join(out) + "\n"


def _loads(values: Sequence[float] | None) -> str:
    return "n/a" if not values else ", ".join(f"{x:.2f}" for x in values)


def _passthrough_section(results: Results) -> list[str]:
    if not results.passthrough:
        return []
    s = results.meta["settings"]
    out = [
        "## 1. Pass-through through a real server",
        "",
        f"Closed loop, {s['concurrency']} keep-alive connections per server. *Alone*: "
        f"{s['rounds']} rounds of {s['duration']} s per server, servers taking turns (req/s, "
        "latency, server CPU time per request, Redis round trips). *Side by side*: "
        f"{s['paired_rounds']} rounds of {s['paired_duration']} s in which the bare app's "
        "server and the other are loaded at the same time on the one server CPU, so that "
        "whatever disturbs the machine disturbs both; their req/s ratio (median) and CPU "
        "time per request ratio.",
        "",
    ]
    header = [
        "Server",
        "Request",
        "App",
        "req/s alone",
        "vs bare",
        "vs bare, side by side",
        "CPU µs/req",
        "vs bare",
        "CPU vs bare, side by side",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "Redis RT/req",
    ]
    rows = [
        [
            STACK_LABELS[r.stack],
            KIND_LABELS[r.kind],
            r.label,
            _num(r.rps),
            _x(r.ratio),
            _x(r.paired_ratio),
            _num(r.cpu_us, 1),
            _x(r.cpu_ratio),
            _x(r.paired_cpu_ratio),
            _ms(r.p50_ms),
            _ms(r.p90_ms),
            _ms(r.p99_ms),
            f"{_rt(r):.2f}",
        ]
        for r in results.passthrough
    ]
    return [*out, *_table(header, rows), ""]


def _inprocess_section(results: Results) -> list[str]:
    if not results.inprocess:
        return []
    s = results.meta["settings"]
    out = [
        "## 1b. Pass-through in-process",
        "",
        f"The app called directly, {s['inproc_rounds']} rounds of ~{s['inproc_batch_s']} s "
        "per variant, lowest round (wall clock and thread CPU time). Bearer requests "
        "include the real Redis round trip: in wall time, not in CPU time.",
        "",
    ]
    header = [
        "App",
        "Request",
        "Variant",
        "ns/request",
        "vs bare",
        "added",
        "CPU ns/request",
        "added CPU",
        "calls/round",
    ]
    rows = [
        [
            GROUPS[r.group],
            KIND_LABELS[r.kind],
            r.label,
            _num(r.ns),
            _x(r.ratio),
            _ns(r.added_ns),
            _num(r.cpu_ns),
            _ns(r.added_cpu_ns),
            f"{r.calls_per_round:,}",
        ]
        for r in results.inprocess
    ]
    return [*out, *_table(header, rows), ""]


def _logout_section(results: Results) -> list[str]:
    if not results.logout:
        return []
    s = results.meta["settings"]
    out = [
        "## 2. Logout",
        "",
        f"`POST /logout` with a session cookie and a bearer token, each unique; "
        f"{s['concurrency']} connections, {s['logout_rounds']} rounds of "
        f"{s['logout_duration']} s, "
        "implementations alternating. Round trips: Redis socket reads per logout; "
        "verified: sampled sessions deleted and tokens revoked.",
        "",
    ]
    header = [
        "Implementation",
        "Server",
        "req/s",
        "vs floor",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "CPU µs/logout",
        "Redis RT/logout",
        "commands/logout",
        "MULTI+EXEC",
        "verified",
    ]
    rows = []
    for r in results.logout:
        multi = r.redis.get("multi", 0.0) + r.redis.get("exec", 0.0)
        rows.append(
            [
                r.label,
                STACK_LABELS[r.stack],
                _num(r.rps),
                _x(r.ratio),
                _ms(r.p50_ms),
                _ms(r.p90_ms),
                _ms(r.p99_ms),
                _num(r.cpu_us, 1),
                f"{_rt(r):.2f}",
                f"{r.redis.get('commands', 0.0):.2f}",
                f"{multi:.2f}",
                "yes" if r.verified else "NO",
            ]
        )
    return [*out, *_table(header, rows), ""]


def _scaling_section(results: Results) -> list[str]:
    if not results.scaling:
        return []
    s = results.meta["settings"]
    out = [
        "## 3. Scaling of the revocation check",
        "",
        f"ASGI (uvicorn), bearer requests; {s['scaling_rounds']} rounds of "
        f"{s['scaling_duration']} s per case alone, {s['scaling_paired_rounds']} side by side "
        "with the bare app's server (as in section 1). `miss`: token not revoked (passed to "
        "the app); `hit`: revoked (401). Ratios against the bare app given the same requests.",
        "",
    ]
    header = [
        "Revoked keys",
        "Connections",
        "Case",
        "req/s alone",
        "vs bare",
        "vs bare, side by side",
        "p50 ms",
        "p99 ms",
        "Redis µs/EXISTS",
    ]
    rows = [
        [
            f"{r.revoked_keys or 0:,}",
            str(r.concurrency),
            r.label,
            _num(r.rps),
            _x(r.ratio),
            _x(r.paired_ratio),
            _ms(r.p50_ms),
            _ms(r.p99_ms),
            _num(r.redis_usec_per_exists, 2),
        ]
        for r in results.scaling
    ]
    out += [*_table(header, rows), ""]
    if results.exists:
        out += ["`EXISTS` from redis-py directly, sequential:", ""]
        out += _table(
            ["Revoked keys", "Key", "round trip µs", "Redis µs/EXISTS"],
            [
                [f"{e.revoked_keys:,}", e.case, _num(e.client_us, 1), _num(e.redis_usec, 2)]
                for e in results.exists
            ],
        )
        out += [""]
    return out


def _method(meta: dict[str, Any]) -> list[str]:
    return [
        "## Method",
        "",
        "- Servers: one process each (uvicorn, no workers, access log off; waitress, 4 "
        "threads), pinned to one CPU; the load generator (asyncio protocols, keep-alive) and "
        "Redis on the other. See `benchmarks/README.md`.",
        "- Variants take turns within each round, in rotating order; ratios are medians "
        "of per-round ratios, so drift of a shared machine cancels out. Side by side: the "
        "bare app's server and the other loaded at the same time on the server CPU.",
        "- Redis work is counted from `INFO stats` (`total_reads_processed`: one per "
        "round trip) and `INFO commandstats`, deltas around each run.",
        "",
    ]


# -- JSON and charts -------------------------------------------------------------------


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def as_json(results: Results) -> dict[str, Any]:
    data: dict[str, Any] = {
        "meta": results.meta,
        "targets": [dataclasses.asdict(t) for t in targets(results)],
        "inprocess": [dataclasses.asdict(r) for r in results.inprocess],
        "passthrough": [dataclasses.asdict(r) for r in results.passthrough],
        "logout": [dataclasses.asdict(r) for r in results.logout],
        "scaling": [dataclasses.asdict(r) for r in results.scaling],
        "exists": [dataclasses.asdict(r) for r in results.exists],
    }
    cleaned: dict[str, Any] = _clean(data)
    return cleaned


def write(results: Results, out: Path) -> list[Path]:
    """Write ``results.json``, the charts and ``results.md`` into ``out``."""
    from .charts import draw

    out.mkdir(parents=True, exist_ok=True)
    written = draw(results, out)
    (out / "results.json").write_text(json.dumps(as_json(results), indent=1) + "\n")
    md = markdown(results, [p.name for p in written])
    (out / "results.md").write_text(md, encoding="utf-8")
    return [out / "results.md", out / "results.json", *written]


def python_command() -> str:
    return "python -m benchmarks " + " ".join(sys.argv[1:])


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
