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
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from .common import VARIANTS, variant
from .everywhere import EverywhereRow
from .inprocess import COUNTED_CALLS, GROUPS, InprocessRow
from .load import STACK_LABELS, ServerRow, nan_median
from .mirror import MemoryRow
from .redisutil import NOT_COMMANDS
from .scaling import ExistsRow, MirrorLoadRow
from .staleness import StalenessRow
from .stream import BATCH, TOPOLOGIES, StreamRow
from .stream import KINDS as STREAM_KINDS

__all__ = ["SECTION_FIELDS", "Results", "Target", "load", "machine", "merge", "write"]

Row = TypeVar("Row", ServerRow, InprocessRow, EverywhereRow, MirrorLoadRow)

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
KIND_LABELS = {
    "none": "no credentials",
    "cookie": "session cookie",
    "bearer": "bearer JWT",
    "cookie_post": "session cookie, POST",
}
KIND_TITLES = {"none": "No credentials", "cookie": "Session cookie", "bearer": "Bearer JWT"}
#: Least req/s relative to the bare app (side by side, uvicorn) that meets each target.
SERVER_LIMITS = {"none": 0.97, "cookie": 0.97, "bearer": 0.95}
NO_CREDENTIALS_LIMIT = SERVER_LIMITS["none"]
#: Largest added in-process work per request without credentials that meets the target.
ADDED_NS_LIMIT = 1000.0
#: Largest in-process work over the floor (CPU ns, ASGI) that meets each target.
FLOOR_LIMITS = {"none": 60.0, "cookie": 1000.0}
#: Most Redis round trips of a logout everywhere (session seen) that meets the target.
EVERYWHERE_LIMIT = 2.0
#: Largest p99 staleness of a mirror across processes that meets the target, µs.
STALENESS_LIMIT_US = 1000.0
#: How far above the documented bytes per item a mirror may be and still be "about" it.
MEMORY_SLACK = 1.25
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
    loads: list[MirrorLoadRow] = field(default_factory=list)
    everywhere: list[EverywhereRow] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    #: CPU µs to take in one audit-stream entry (every process, every revocation).
    absorb_us: float = math.nan
    staleness: list[StalenessRow] = field(default_factory=list)
    #: Cluster section: bearer requests and logouts on each variant's single-Redis
    #: server and its cluster twin (``section == "cluster"``).
    cluster: list[ServerRow] = field(default_factory=list)
    #: Cluster section: the audit stream's throughput at many writers.
    stream: list[StreamRow] = field(default_factory=list)
    #: Cluster section: the cluster measured (nodes, version, the stream's shard).
    cluster_info: dict[str, Any] = field(default_factory=dict)


#: The :class:`Results` fields each section fills (``--only`` names sections).
SECTION_FIELDS: dict[str, tuple[str, ...]] = {
    "inprocess": ("inprocess",),
    "passthrough": ("passthrough",),
    "logout": ("logout",),
    "everywhere": ("everywhere",),
    "mirror": ("memory", "absorb_us", "staleness"),
    "scaling": ("scaling", "exists", "loads"),
    "cluster": ("cluster", "stream", "cluster_info"),
}
#: Each :class:`Results` field: its key in ``results.json`` and its rows' class (None
#: for a plain value).
_JSON_FIELDS: dict[str, tuple[str, type[Any] | None]] = {
    "inprocess": ("inprocess", InprocessRow),
    "passthrough": ("passthrough", ServerRow),
    "logout": ("logout", ServerRow),
    "scaling": ("scaling", ServerRow),
    "exists": ("exists", ExistsRow),
    "loads": ("mirror_loads", MirrorLoadRow),
    "everywhere": ("everywhere", EverywhereRow),
    "memory": ("memory", MemoryRow),
    "absorb_us": ("absorb_us_per_entry", None),
    "staleness": ("staleness", StalenessRow),
    "cluster": ("cluster", ServerRow),
    "stream": ("stream", StreamRow),
    "cluster_info": ("cluster_info", None),
}


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


def code_version(root: Path) -> str:
    """The git commit the measured code is at (``+ changes`` when the tree is dirty), or
    ``unknown`` outside a git checkout."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" + uncommitted changes in src/ or benchmarks/" if dirty else "")


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


def _x3(value: float) -> str:
    """A ratio judged against a threshold such as 0.97: three decimals."""
    return "n/a" if math.isnan(value) else f"{value:.3f}×"  # noqa: RUF001


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
    pairs = zip(a.rps_rounds, b.rps_rounds, strict=False)
    return nan_median([x / y for x, y in pairs if y > 0])


def _rt(row: ServerRow | None) -> float:
    return math.nan if row is None else row.redis.get("round_trips", math.nan)


# -- targets and headline ------------------------------------------------------------


def _status(ok: bool) -> str:
    return "met" if ok else "not met"


def targets(results: Results) -> list[Target]:
    """The issue's targets, judged on the first variant (the default configuration)."""
    v = VARIANTS[0].name
    found: list[Target] = []
    found += _server_targets(results, v)
    found += _inprocess_targets(results, v)
    found += _round_trip_targets(results, v)
    found += _logout_targets(results, v)
    found += _everywhere_targets(results)
    found += _mirror_targets(results)
    found += _scaling_targets(results)
    return found


def _other_variants(text: Any) -> str:
    """``text(variant)`` for the variants besides the first, as a parenthesis."""
    parts = [f"{w.label}: {text(w.name)}" for w in VARIANTS[1:]]
    return f" ({'; '.join(parts)})" if parts else ""


def _server_targets(results: Results, v: str) -> list[Target]:
    pt = results.passthrough
    found: list[Target] = []
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
                _status(worst >= NO_CREDENTIALS_LIMIT),
                "; ".join(
                    f"{s.upper()} {_x3(r.side_ratio)} side by side ({_x(r.ratio)} alone, "
                    f"server CPU per request {_x(r.paired_cpu_ratio)})"
                    for s, r in ratios.items()
                    if r
                )
                + (f"; A/A control (bare vs bare): {noise}" if noise else ""),
            )
        )
    for kind in ("cookie", "bearer"):
        row = _find(pt, stack="asgi", kind=kind, variant=v)
        if row is None:
            continue
        limit = SERVER_LIMITS[kind]
        wsgi = _find(pt, stack="wsgi", kind=kind, variant=v)
        found.append(
            Target(
                f"{KIND_TITLES[kind]}, uvicorn: at least {limit:.2f}× the bare "  # noqa: RUF001
                "app's requests/s (side by side)",
                _status(row.side_ratio >= limit),
                f"{_x3(row.side_ratio)} side by side ({_x(row.ratio)} alone, server CPU per "
                f"request {_x(row.paired_cpu_ratio)}, {_added_cpu(pt, row)}), "
                f"{_rt(row):.2f} Redis round trips/request"
                + (
                    f"; WSGI (waitress + Flask) {_x3(wsgi.side_ratio)} side by side"
                    if wsgi is not None
                    else ""
                )
                + _other_variants(
                    lambda name, kind=kind: _server_cell(
                        _find(pt, stack="asgi", kind=kind, variant=name)
                    )
                ),
            )
        )
    return found


def _server_cell(row: ServerRow | None) -> str:
    if row is None:
        return "n/a"
    return f"{_x(row.side_ratio)} side by side, {_rt(row):.2f} round trips"


def _inprocess_targets(results: Results, v: str) -> list[Target]:
    ip = results.inprocess
    found: list[Target] = []
    added = {g: _find(ip, group=g, kind="none", variant=v) for g in GROUPS}
    raw = [added[g] for g in ("asgi", "wsgi") if added.get(g) is not None]
    if raw:
        worst_ns = max(r.added_cpu_ns for r in raw if r is not None)
        found.append(
            Target(
                "No credentials, in-process: well under 1 µs of added work (CPU) per request",
                _status(worst_ns < ADDED_NS_LIMIT),
                ", ".join(
                    f"{GROUPS[r.group]} {_ns(r.added_cpu_ns)} (wall {_ns(r.added_ns)})"
                    for r in raw
                    if r is not None
                )
                + _empty_note(results),
            )
        )
    for kind, what in (("none", "No credentials"), ("cookie", "Session cookie")):
        row = _find(ip, group="asgi", kind=kind, variant=v)
        if row is None or math.isnan(row.over_floor_cpu_ns):
            continue
        limit = FLOOR_LIMITS[kind]
        floor = _find(ip, group="asgi", kind=kind, variant="floor")
        wsgi = _find(ip, group="wsgi", kind=kind, variant=v)
        against = _num(floor.cpu_ns) if floor is not None else "n/a"
        detail = (
            f"ASGI {_ns(row.over_floor_cpu_ns)} over the floor (CPU; wall "
            f"{_ns(row.over_floor_ns)}): {_num(row.cpu_ns)} ns against {against} ns"
        )
        if wsgi is not None:
            detail += f"; WSGI {_ns(wsgi.over_floor_cpu_ns)} over its floor"
        if kind != "none":
            detail += f"; Redis round trips/request {row.round_trips:.2f}"
        detail += _other_variants(
            lambda name, kind=kind: _floor_cell(_find(ip, group="asgi", kind=kind, variant=name))
        )
        found.append(
            Target(
                f"{what}, in-process (ASGI): within {limit:,.0f} ns of the floor (a pure ASGI "
                "class comparing the path)",
                _status(row.over_floor_cpu_ns <= limit),
                detail,
            )
        )
    return found


def _floor_cell(row: InprocessRow | None) -> str:
    if row is None:
        return "n/a"
    return (
        f"{_ns(row.over_floor_cpu_ns)} CPU, {_ns(row.over_floor_ns)} wall, "
        f"{row.round_trips:.2f} round trips"
    )


def _round_trip_targets(results: Results, v: str) -> list[Target]:
    """Steady state: a session cookie or a bearer JWT costs no Redis round trip."""
    cells: list[tuple[str, float]] = []
    for stack in ("asgi", "wsgi"):
        for kind in ("cookie", "bearer"):
            row = _find(results.passthrough, stack=stack, kind=kind, variant=v)
            if row is not None:
                cells.append((f"{stack.upper()} server {KIND_LABELS[kind]}", _rt(row)))
    for group in ("asgi", "wsgi"):
        for kind in ("cookie", "bearer"):
            found = _find(results.inprocess, group=group, kind=kind, variant=v)
            if found is not None:
                cells.append((f"{group.upper()} in-process {KIND_LABELS[kind]}", found.round_trips))
    if not cells:
        return []

    def others(name: str) -> str:
        values = [
            _rt(_find(results.passthrough, stack=s, kind=k, variant=name))
            for s in ("asgi", "wsgi")
            for k in ("cookie", "bearer")
        ]
        known = [x for x in values if not math.isnan(x)]
        return f"{min(known):.2f} to {max(known):.2f} per request" if known else "n/a"

    posts = [r for r in results.inprocess if r.kind == "cookie_post" and r.variant == v]
    post_note = ""
    if posts:
        post_note = (
            " (GET requests; a POST with the session cookie costs "
            + ", ".join(f"{r.group.upper()} {r.round_trips:.2f}" for r in posts)
            + " round trips: the record is read again after every unsafe request)"
        )
    return [
        Target(
            "Session cookie and bearer JWT, steady state: no Redis round trip per request",
            _status(all(x <= 0.01 for _, x in cells)),
            ", ".join(f"{label} {x:.2f}" for label, x in cells)
            + post_note
            + _other_variants(others),
        )
    ]


def _logout_cell(row: ServerRow | None) -> str:
    if row is None:
        return "n/a"
    r = row.redis
    return (
        f"{r.get('request_round_trips', math.nan):.2f} (+{r.get('follower_deletes', 0.0):.2f} "
        f"follower DEL; GET {r.get('get', 0.0):.2f}, MULTI/EXEC {r.get('exec', 0.0):.2f})"
    )


def _logout_targets(results: Results, v: str) -> list[Target]:
    lo = results.logout
    found: list[Target] = []
    for seen, expected, name in (
        (True, 1.0, "Logout of a session used within the last minute: one Redis round trip"),
        (
            False,
            2.0,
            "Logout of a session the process never saw: at most two Redis round trips (a GET "
            "of the record first only with LOGOUT_SESSION_SUBJECT, then MULTI/EXEC)",
        ),
    ):
        suffix = "-seen" if seen else ""
        mine = {s: _find(lo, variant=f"{v}-{s}{suffix}") for s in ("asgi", "wsgi")}
        if not all(mine.values()):
            continue
        trips = [r.redis.get("request_round_trips", math.nan) for r in mine.values() if r]
        verified = all(r is not None and r.verified for r in mine.values())
        follower = [r.redis.get("follower_deletes", 0.0) for r in mine.values() if r]
        found.append(
            Target(
                name,
                _status(all(x <= expected + 0.01 for x in trips) and verified),
                "; ".join(f"{s.upper()} {_logout_cell(r)}" for s, r in mine.items())
                + "; sessions deleted and tokens revoked "
                + ("as checked" if verified else "NOT all verified")
                + (
                    "; the follower's DEL (the logging-out process deleting again the record "
                    "it deleted in its transaction, once per wake-up) is extra work for Redis, "
                    "off the request's path"
                    if max(follower, default=0.0) > 0.01
                    else ""
                )
                + _other_variants(
                    lambda name, suffix=suffix: ", ".join(
                        f"{s.upper()} {_logout_cell(_find(lo, variant=f'{name}-{s}{suffix}'))}"
                        for s in ("asgi", "wsgi")
                    )
                ),
            )
        )
    pairs = [
        ("asgi", "fastapi-route", "FastAPI"),
        ("wsgi", "flask-route", "Flask"),
        ("asgi", "fastapi-naive", "FastAPI, a call per command"),
        ("wsgi", "flask-naive", "Flask, a call per command"),
    ]
    for seen, what in ((True, "session used first"), (False, "session never seen")):
        suffix = "-seen" if seen else ""
        mine = {s: _find(lo, variant=f"{v}-{s}{suffix}") for s in ("asgi", "wsgi")}
        if not all(mine.values()):
            continue
        versus = [(label, _vs(mine[s], _find(lo, variant=other))) for s, other, label in pairs]
        main = [r for _, r in versus[:2]]
        status = (
            "met" if min(main) >= 1.0 else "within noise" if min(main) >= 1.0 - NOISE else "not met"
        )
        cpu = []
        for s, other, label in pairs[:2]:
            route, own = _find(lo, variant=other), mine[s]
            if route is not None and own is not None:
                cpu.append(
                    f"{s.upper()} {_num(own.cpu_us)} µs vs the {label} route's "
                    f"{_num(route.cpu_us)} µs"
                )
        cause = ""
        if status == "not met" and not seen:
            cause = "; cause: the extra round trip (GET of the record, to learn the subject)"
        found.append(
            Target(
                f"Logout throughput at least that of hand-written routes ({what})",
                status,
                ", ".join(f"vs {label} {_x(r)}" for label, r in versus)
                + (f"; server CPU per logout: {', '.join(cpu)}" if cpu else "")
                + cause,
            )
        )
    return found


def _everywhere_targets(results: Results) -> list[Target]:
    ew = results.everywhere
    seen = [r for r in ew if r.case == "seen"]
    if not seen:
        return []
    unseen = [r for r in ew if r.case == "unseen"]
    ok = all(r.round_trips <= EVERYWHERE_LIMIT + 0.01 and r.verified for r in seen)
    sessions = max(r.sessions for r in seen)

    def cell(r: EverywhereRow) -> str:
        get = r.commands.get("get", 0.0)
        return (
            f"{r.stack.upper()} {r.round_trips:.0f} (GET {get:.0f}, ZRANGEBYSCORE "
            f"{r.commands.get('zrangebyscore', 0.0):.0f}, MULTI/EXEC "
            f"{r.commands.get('exec', 0.0):.0f}; {r.socket_reads:.0f} socket reads; "
            f"+{r.follower_deletes:.0f} follower DEL; {r.sessions_ended} sessions ended, "
            f"verified {'yes' if r.verified else 'NO'})"
        )

    cause = ""
    if not ok and all(r.commands.get("get", 0.0) >= 1 for r in seen):
        cause = (
            "; cause: the session's record is read afresh for every logout everywhere (to "
            "trust its subject), even when the process read it within the minute, then the "
            "subject's index (its key needs the subject), then the transaction"
        )
    return [
        Target(
            f"Logout everywhere, a subject with {sessions} sessions: at most "
            f"{EVERYWHERE_LIMIT:.0f} Redis round trips",
            _status(ok),
            "session served by the answering process: "
            + ", ".join(cell(r) for r in seen)
            + (
                "; session that process never saw: " + ", ".join(cell(r) for r in unseen)
                if unseen
                else ""
            )
            + cause,
        )
    ]


def _mirror_targets(results: Results) -> list[Target]:
    found: list[Target] = []
    claimed = [r for r in results.memory if r.claim is not None]
    if claimed:
        ok = all(
            r.claim is not None and r.bytes_per_item <= r.claim * MEMORY_SLACK for r in claimed
        )
        found.append(
            Target(
                "Revocation mirror memory: about 70 bytes per revoked token or session, 100 per "
                "subject (as RevocationMirror's docstring says)",
                _status(ok),
                ", ".join(
                    f"{r.what} {r.bytes_per_item:.0f} B (sys.getsizeof "
                    f"{r.getsizeof_per_item:.0f} B; {r.items:,} items)"
                    for r in claimed
                )
                + _memory_note(results),
            )
        )
    if results.staleness:
        ok = all(r.p99_us < STALENESS_LIMIT_US and r.missed == 0 for r in results.staleness)
        found.append(
            Target(
                "Cross-process staleness of the mirror: well under a millisecond (as the "
                "store's docstring says)",
                _status(ok),
                "; ".join(
                    f"{r.label}: p50 {r.p50_us:.0f} µs, p99 {r.p99_us:.0f} µs after EXEC returned "
                    f"(from the call: p50 {r.call_p50_us:.0f} µs, p99 {r.call_p99_us:.0f} µs), "
                    f"{r.trials - r.missed}/{r.trials} seen"
                    for r in results.staleness
                ),
            )
        )
    return found


def _memory_note(results: Results) -> str:
    own = [r for r in results.memory if r.what.startswith("logout written")]
    note = ""
    if own:
        note += (
            f"; a logout written by the process itself holds {own[0].bytes_per_item:.0f} B "
            "until the mirror's next reload (up to 300 s)"
        )
    big = [
        r
        for r in results.loads
        if r.follows and r.revoked_keys == max(x.revoked_keys for x in results.loads)
    ]
    small = [
        r
        for r in results.loads
        if r.follows and r.revoked_keys == min(x.revoked_keys for x in results.loads)
    ]
    if big and small and big[0].revoked_keys > small[0].revoked_keys:
        note += (
            f"; a server process with {big[0].revoked_keys:,} revoked tokens mirrored: "
            f"+{big[0].rss_mib - small[0].rss_mib:,.0f} MiB RSS, loaded in {big[0].load_s:.1f} s"
        )
    return note


def _added_cpu(rows: list[ServerRow], row: ServerRow) -> str:
    """The server CPU per request ``row`` adds over the bare app's row of its kind."""
    bare = _find(rows, stack=row.stack, kind=row.kind, variant="bare")
    if bare is None or math.isnan(row.cpu_us) or math.isnan(bare.cpu_us):
        return "CPU n/a"
    return f"{row.cpu_us - bare.cpu_us:+,.0f} µs of {bare.cpu_us:,.0f}"


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
        change = nan_median([x[2] for x in by_size])
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
            change = nan_median([x[2] for x in by_conc])
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
    pt, lo, sc, ip = results.passthrough, results.logout, results.scaling, results.inprocess
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
                if row is not None and kind != "none":
                    cell += f", {_rt(row):.2f} Redis round trips"
                cells.append(cell)
            rows.append([f"{STACK_LABELS[stack]}: req/s vs bare app, {KIND_LABELS[kind]}", *cells])
    for kind in ("none", "cookie", "bearer"):
        cells = []
        for v in VARIANTS:
            parts = []
            for group in ("asgi", "wsgi"):
                found = _find(ip, group=group, kind=kind, variant=v.name)
                if found is None:
                    continue
                part = f"{group.upper()} {_ns(found.over_floor_cpu_ns)}"
                if abs(found.over_floor_ns - found.over_floor_cpu_ns) > 1000:
                    part += f" (wall {_ns(found.over_floor_ns)})"
                parts.append(part)
            cells.append(", ".join(parts) or "n/a")
        rows.append([f"In-process, CPU per request over the floor, {KIND_LABELS[kind]}", *cells])
    if any(r.kind == "cookie_post" for r in ip):
        cells = []
        for v in VARIANTS:
            parts = [
                f"{r.group.upper()} {r.round_trips:.2f}"
                for r in ip
                if r.kind == "cookie_post" and r.variant == v.name
            ]
            cells.append(", ".join(parts) or "n/a")
        rows.append(["Redis round trips per POST with a session cookie (in-process)", *cells])
    for seen, what in ((True, "session used first"), (False, "session never seen")):
        suffix = "-seen" if seen else ""
        cells = []
        for v in VARIANTS:
            a, w = (
                _find(lo, variant=f"{v.name}-asgi{suffix}"),
                _find(lo, variant=f"{v.name}-wsgi{suffix}"),
            )
            cells.append(f"ASGI {_short_trips(a)}, WSGI {_short_trips(w)}")
        rows.append([f"Redis round trips per logout, {what}", *cells])
    for label, other in (
        ("FastAPI route (one pipeline)", "fastapi-route"),
        ("Flask route (one pipeline)", "flask-route"),
    ):
        stack = "asgi" if other.startswith("fastapi") else "wsgi"
        route = _find(lo, variant=other)
        cells = [
            f"used first {_x(_vs(_find(lo, variant=f'{v.name}-{stack}-seen'), route))}, "
            f"never seen {_x(_vs(_find(lo, variant=f'{v.name}-{stack}'), route))}"
            for v in VARIANTS
        ]
        rows.append([f"Logout req/s vs hand-written {label}", *cells])
    # Every cached server process reads each revocation once (fewer when batched),
    # whichever server handled the logout: one figure for the whole run.
    measured = [r for r in lo if r.redis.get("round_trips") is not None]
    follower = sum(r.redis.get("follower_reads", 0.0) for r in measured) / max(1, len(measured))
    if follower > 0:
        label = "Follower reads per logout (revocation caches in other processes catching up)"
        rows.append([label, *[f"{follower:.2f}" if v.follows else "none" for v in VARIANTS]])
    if results.everywhere:
        served = [r for r in results.everywhere if r.case == "seen"]
        unseen = [r for r in results.everywhere if r.case == "unseen"]
        cell = ", ".join(f"{r.stack.upper()} {r.round_trips:.0f}" for r in served)
        if unseen:
            cell += (
                " (session never seen: "
                + ", ".join(f"{r.stack.upper()} {r.round_trips:.0f}" for r in unseen)
                + ")"
            )
        sessions = max(r.sessions for r in results.everywhere)
        rows.append(
            [
                f"Logout everywhere, {sessions} sessions: Redis round trips",
                cell,
                *["not measured" for _ in VARIANTS[1:]],
            ]
        )
    if results.memory:
        claimed = [r for r in results.memory if r.claim is not None]
        cell = ", ".join(f"{r.what} {r.bytes_per_item:.0f} B" for r in claimed)
        rows.append(
            [
                "Mirror memory per revoked item",
                *[cell if v.follows else "no mirror followed" for v in VARIANTS],
            ]
        )
    if results.staleness:
        cell = ", ".join(
            f"{r.flavour} p50 {r.p50_us:.0f} µs / p99 {r.p99_us:.0f} µs" for r in results.staleness
        )
        rows.append(
            [
                "Another process's revocation seen after its EXEC",
                *[cell if v.follows else "at once (asks Redis)" for v in VARIANTS],
            ]
        )
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
            cell = _x(ratio)
            loads = {r.revoked_keys: r for r in results.loads if r.variant == v.name}
            if v.follows and sizes[-1] in loads and sizes[0] in loads:
                big, small = loads[sizes[-1]], loads[sizes[0]]
                cell += (
                    f"; mirror +{big.rss_mib - small.rss_mib:,.0f} MiB RSS, "
                    f"loaded in {big.load_s:.1f} s"
                )
            cells.append(cell)
        rows.append(
            [
                f"Bearer req/s (relative to bare) with {sizes[-1]:,} vs {sizes[0]:,} revoked keys "
                f"({middle} connections)",
                *cells,
            ]
        )
    rows += _cluster_headline(results)
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
    floor = _find(ip, group="asgi", kind="none", variant="floor")
    bare = _find(ip, group="asgi", kind="none", variant="bare")
    if floor is not None and bare is not None:
        extra.append(
            f"the in-process floor (ASGI) itself costs {_ns(floor.cpu_ns - bare.cpu_ns)} over the "
            "bare app"
        )
    if extra:
        lines += ["", "For scale: " + "; ".join(extra) + "."]
    lines += [
        "",
        "Requests that wait for Redis leave the shared server CPU to their pair in the "
        "side-by-side rounds: for them, read the *alone* ratio and the CPU per request as the "
        "cost. Round trips of a logout are the request's own; a follower's `DEL` of records "
        "its process already deleted is counted apart.",
    ]
    return lines


def _twin(rows: list[ServerRow], row: ServerRow) -> ServerRow | None:
    """The single-Redis row a cluster row was measured against."""
    return _find(rows, stack=row.stack, kind=row.kind, variant=row.baseline)


def _cluster_rows(results: Results, kind: str) -> list[tuple[ServerRow, ServerRow]]:
    """``(one Redis, Cluster)`` row pairs of the cluster section, of ``kind``."""
    found = []
    for row in results.cluster:
        if row.kind == kind and row.variant != row.baseline:
            twin = _twin(results.cluster, row)
            if twin is not None:
                found.append((twin, row))
    return found


def _request_trips(row: ServerRow) -> float:
    """The request's own Redis round trips (on a cluster: shard reads)."""
    return row.redis.get("request_round_trips", _rt(row))


def _cluster_headline(results: Results) -> list[list[str]]:
    """Headline rows of the cluster section: one column per variant, as the others."""
    if not results.cluster and not results.stream:
        return []
    rows: list[list[str]] = []
    bearer = _cluster_rows(results, "bearer")
    if bearer:
        cells = []
        for v in VARIANTS:
            parts = [
                f"{one.stack.upper()} {_x(cl.side_ratio)} (alone {_x(cl.ratio)}; CPU/request "
                f"{_x(cl.cpu_ratio)})"
                for one, cl in bearer
                if one.variant == v.name
            ]
            trips = [
                f"{_rt(cl):.2f} shard reads (one Redis: {_rt(one):.2f} round trips)"
                for one, cl in bearer
                if one.variant == v.name and one.stack == "asgi"
            ]
            cells.append(", ".join(parts + trips) or "not measured")
        rows.append(
            ["Redis Cluster (3 primaries) vs one Redis: bearer JWT req/s, side by side", *cells]
        )
    logouts = _cluster_rows(results, "logout")
    if logouts:
        first = VARIANTS[0].name

        def cell() -> str:
            parts = []
            for seen, what in ((True, "used first"), (False, "never seen")):
                found = [
                    f"{one.stack.upper()} {_x(cl.ratio)}"
                    for one, cl in logouts
                    if one.variant.endswith("-seen") == seen
                ]
                parts.append(f"{what} {', '.join(found)}")
            trips = [
                f"{_request_trips(cl):.2f}" for one, cl in logouts if one.variant == f"{first}-asgi"
            ]
            return "; ".join(parts) + (
                f"; {trips[0]} shard reads per logout (one Redis: 1 round trip)" if trips else ""
            )

        rows.append(
            [
                "Redis Cluster vs one Redis: logout req/s",
                *[cell() if v.name == first else "not measured" for v in VARIANTS],
            ]
        )
    top = max((r.writers for r in results.stream), default=0)
    found = {
        (r.topology, r.kind): r for r in results.stream if r.writers == top and r.kind == "logout"
    }
    cluster = found.get(("cluster", "logout"))
    single = found.get(("single", "logout"))
    if cluster is not None:
        text = (
            f"one Redis {_num(single.rate) if single else 'n/a'}/s, Cluster "
            f"{_num(cluster.rate)}/s; the stream's shard {cluster.stream_cpu_us:.0f} µs CPU per "
            f"logout, {cluster.stream_busy:.0%} busy: ceiling ≈ "
            f"{_num(round(cluster.ceiling, -3))}/s"
        )
        rows.append(
            [
                f"Audit stream (one shard), {top} concurrent writers: logouts/s",
                *[text if v.name == VARIANTS[0].name else "not measured" for v in VARIANTS],
            ]
        )
    return rows


def _short_trips(row: ServerRow | None) -> str:
    if row is None:
        return "n/a"
    r = row.redis
    text = f"{r.get('request_round_trips', _rt(row)):.2f}"
    deletes = r.get("follower_deletes", 0.0)
    if deletes > 0.005:
        text += f" (+{deletes:.2f} follower DEL)"
    return text


# -- Markdown ------------------------------------------------------------------------


def markdown(results: Results, charts: Sequence[str]) -> str:
    """``results.md``: machine, headline, targets, charts (file names) and each section's
    tables."""
    meta = results.meta
    m = meta["machine"]
    s = meta["settings"]
    out: list[str] = ["# logout-middleware benchmarks", ""]
    out += [
        f"Run {meta['started']} with `{meta['command']}`"
        f"{' (SMOKE MODE: tiny counts, numbers meaningless)' if s['smoke'] else ''}; "
        f"took {meta['elapsed_s']:.0f} s. Absolute numbers depend on the machine; compare "
        "the ratios, measured side by side in the same run.",
        *(["", f"**Note:** {meta['note']}"] if meta.get("note") else []),
        *_kept(meta),
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable)",
        f"- OS: {m['os']}",
        f"- Python: {m['python']}",
        f"- Redis server: {m['redis_server']}; uvicorn HTTP: {m['uvicorn_http']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- CPU placement: {meta['placement']}",
        f"- Code: {meta.get('code', 'unknown')}",
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
    out += _logout_section(results) + _everywhere_section(results)
    out += _scaling_section(results) + _mirror_section(results) + _cluster_section(results)
    out += _method(meta)
    return "\n".join(out) + "\n"


def _kept(meta: dict[str, Any]) -> list[str]:
    """Which sections come from earlier runs (a run of some sections keeps the others)."""
    kept = meta.get("kept") or []
    if not kept:
        return []
    out = [
        "",
        f"**Sections from earlier runs.** This run measured {', '.join(meta['sections'])}; "
        "the others are kept from the last run that measured them:",
        "",
    ]
    for run in kept:
        note = f"; note: {run['note']}" if run.get("note") else ""
        out.append(
            f"- {', '.join(run['sections'])}: run {run.get('started')} with "
            f"`{run.get('command')}` (code {run.get('code')}){note}"
        )
    return out


def _loads(values: Sequence[float] | None) -> str:
    return "n/a" if not values else ", ".join(f"{x:.2f}" for x in values)


def _passthrough_section(results: Results) -> list[str]:
    if not results.passthrough:
        return []
    s = results.meta["settings"]
    out = [
        "## 1. Pass-through through a real server",
        "",
        f"wrk, closed loop, {s['concurrency']} keep-alive connections per server. *Alone*: "
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
        "The app called directly, timed by pyperf (`bench_time_func`: "
        f"{s['inproc_processes']} worker processes of 3 values of at least "
        f"{s['inproc_min_time']} s each, pinned to the server CPU; the median); rows that "
        "reach Redis are timed a second time in thread CPU time. pyperf's JSON is "
        "`inprocess.pyperf.json` (`python -m pyperf compare_to --table` compares two runs). "
        "The *floor* is a "
        "minimal middleware that compares the path and passes on (the least a logout "
        "middleware does); the *empty middleware* only adds a call. Variants with the "
        "revocation cache are timed with their mirror live (steady state). Requests that "
        "reach Redis include the real round trip: in wall time, not in CPU time. Redis "
        f"round trips per request are counted on a separate batch of {COUNTED_CALLS} calls.",
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
        "CPU over floor",
        "Redis RT/req",
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
            _ns(r.over_floor_cpu_ns),
            _num(r.round_trips, 2),
            f"{r.calls_per_round:,}",
        ]
        for r in results.inprocess
        if r.kind != "cookie_post"
    ]
    out += [*_table(header, rows), ""]
    posts = [r for r in results.inprocess if r.kind == "cookie_post"]
    if posts:
        out += [
            "Unsafe requests: a `POST` with the session cookie (the app may have logged "
            "someone in, so the middleware reads the session's record again after it "
            f"answers), one counted batch of {COUNTED_CALLS}, Redis round trips included "
            "in the time:",
            "",
        ]
        out += _table(
            ["App", "Variant", "ns/request", "Redis RT/req", "commands/req"],
            [
                [
                    GROUPS[r.group],
                    r.label,
                    _num(r.ns),
                    _num(r.round_trips, 2),
                    ", ".join(
                        f"{k.upper()} {v:.2f}"
                        for k, v in r.commands_by_name.items()
                        if k not in ("round_trips", "commands", "follower_reads") and v > 0
                    )
                    or "none",
                ]
                for r in posts
            ],
        )
        out += [""]
    return out


def _logout_section(results: Results) -> list[str]:
    if not results.logout:
        return []
    s = results.meta["settings"]
    out = [
        "## 2. Logout",
        "",
        f"`POST /logout` with a session cookie and an opaque bearer token, each unique; "
        f"{s['concurrency']} connections, {s['logout_rounds']} rounds of "
        f"{s['logout_duration']} s, "
        "implementations alternating. *Session never seen*: the process never served that "
        "session, so it reads its record first (to learn the subject). *Session used first*: "
        "each session made a `GET` on the same process just before (not measured), as a "
        'browser does before its user clicks "log out"; such a run stops after as many '
        "logouts as sessions were used. Round trips: Redis socket reads per logout, the "
        "request's own; *follower DEL*: the `DEL` the logging-out process's follower sends, "
        "when the audit entry comes back, for the records of sessions it knows ended (here "
        "deleted already), counted apart. Verified: sampled sessions deleted and tokens "
        "revoked.",
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
        "follower DEL",
        "GET",
        "commands/logout",
        "MULTI+EXEC",
        "verified",
    ]
    rows = []
    for r in results.logout:
        multi = r.redis.get("multi", 0.0) + r.redis.get("exec", 0.0)
        deletes = r.redis.get("follower_deletes")
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
                f"{r.redis.get('request_round_trips', _rt(r)):.2f}",
                "—" if deletes is None else f"{deletes:.2f}",
                f"{r.redis.get('get', 0.0):.2f}",
                f"{r.redis.get('commands', 0.0):.2f}",
                f"{multi:.2f}",
                "yes" if r.verified else "NO",
            ]
        )
    return [*out, *_table(header, rows), ""]


def _everywhere_section(results: Results) -> list[str]:
    if not results.everywhere:
        return []
    out = [
        "## 2b. Logout everywhere",
        "",
        "A subject with N sessions (records as Flask-Session stores them, the user at "
        "`_user_id`), half used (a `GET`) on each of two server processes of the first "
        "variant with `LOGOUT_EVERYWHERE_PATH` and `LOGOUT_SESSION_SUBJECT` set, which index "
        "them under the subject. Then one `POST` to the everywhere URI on the first process, "
        "with a session it served, or with one only the second served. Round trips: the "
        "request's own exchanges with Redis (each read and the transaction is sent alone "
        "and awaited); *socket reads*: the reads Redis made for them (a transaction of "
        "100 tombstones is about 12 KB, which redis-py writes in pieces of at most 6 KB, "
        "and Redis may read in two); *follower DEL*: the `DEL`s the "
        "two processes' followers send for the records of ended sessions they know "
        "(the second process's are the only deletion of its sessions' records). Verified: "
        "the answer's count, every record gone, every session tombstoned, the subject's "
        "not-before set and index dropped, and another ended session's cookie taken out "
        "and expired on the second process.",
        "",
    ]
    header = [
        "Case",
        "status",
        "sessions ended",
        "Redis RT",
        "socket reads",
        "follower DEL",
        "follower reads",
        "GET",
        "ZRANGEBYSCORE",
        "MULTI/EXEC",
        "records left",
        "tombstones",
        "not-before",
        "cookie taken out",
        "verified",
    ]
    rows = [
        [
            r.label,
            str(r.status),
            "n/a" if r.sessions_ended is None else str(r.sessions_ended),
            f"{r.round_trips:.0f}",
            f"{r.socket_reads:.0f}",
            f"{r.follower_deletes:.0f}",
            f"{r.follower_reads:.0f}",
            f"{r.commands.get('get', 0.0):.0f}",
            f"{r.commands.get('zrangebyscore', 0.0):.0f}",
            f"{r.commands.get('exec', 0.0):.0f}",
            str(r.records_left),
            f"{r.tombstones}/{r.sessions}",
            "yes" if r.not_before_set else "NO",
            "yes" if r.stripped else "NO",
            "yes" if r.verified else "NO",
        ]
        for r in results.everywhere
    ]
    return [*out, *_table(header, rows), ""]


def _mirror_section(results: Results) -> list[str]:
    if not results.memory and not results.staleness:
        return []
    out = ["## 4. Revocation mirror: memory and staleness", ""]
    if results.memory:
        out += [
            "Memory a process holds per item (tracemalloc: every allocation still alive "
            "afterwards; `sys.getsizeof`: containers plus members). The mirror's kinds are "
            "given as every process receives them, through the audit stream; a set's table "
            "doubles as it fills, so the bytes per item vary with the count. The checks' "
            "caches are bounded (they empty when full).",
            "",
        ]
        out += _table(
            ["Item", "items", "bytes/item (tracemalloc)", "bytes/item (getsizeof)", "documented"],
            [
                [
                    r.what,
                    f"{r.items:,}",
                    _num(r.bytes_per_item),
                    _num(r.getsizeof_per_item),
                    "—" if r.claim is None else f"about {r.claim:.0f}",
                ]
                for r in results.memory
            ],
        )
        out += [""]
        if not math.isnan(results.absorb_us):
            out += [
                f"Taking in one audit-stream entry (a logout's fields): {results.absorb_us:.2f} "
                "µs of CPU in every following process, per revocation anywhere.",
                "",
            ]
    if results.staleness:
        out += [
            "Cross-process staleness: the time from one process's revocation (the "
            "middleware's own `MULTI`/`EXEC`, `SET` and audit entry) until another process's "
            "mirror holds it, that process idle and polling (`CLOCK_MONOTONIC`, shared by "
            "both). *After EXEC*: from `execute()`'s return; *from the call*: from its call "
            "(an upper bound).",
            "",
        ]
        out += _table(
            [
                "Follower",
                "trials",
                "seen",
                "p50 µs after EXEC",
                "p99 µs",
                "max µs",
                "p50 µs from the call",
                "p99 µs from the call",
                "execute() p50 µs",
            ],
            [
                [
                    r.label,
                    str(r.trials),
                    str(r.trials - r.missed),
                    _num(r.p50_us),
                    _num(r.p99_us),
                    _num(r.max_us),
                    _num(r.call_p50_us),
                    _num(r.call_p99_us),
                    _num(r.exec_p50_us),
                ]
                for r in results.staleness
            ],
        )
        out += [""]
    return out


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
        "the app); `hit`: revoked (401). Ratios against the bare app given the same requests. "
        "After each fill the middleware's servers are restarted, so that a mirror holds the "
        "whole denylist, as after a reload.",
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
        "Redis RT/req",
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
            f"{_rt(r):.2f}",
            _num(r.redis_usec_per_exists, 2),
        ]
        for r in results.scaling
    ]
    out += [*_table(header, rows), ""]
    if results.loads:
        out += [
            "Server processes restarted at each size: the time from the first checked "
            "request (which starts the follower) until the follower parked with the mirror "
            "loaded, and the process's resident memory then:",
            "",
        ]
        out += _table(
            ["Revoked keys", "Variant", "mirror", "load s", "RSS MiB"],
            [
                [
                    f"{r.revoked_keys:,}",
                    r.label,
                    ("loaded" if r.loaded else "NOT loaded") if r.follows else "none",
                    _num(r.load_s, 2),
                    _num(r.rss_mib, 1),
                ]
                for r in results.loads
            ],
        )
        out += [""]
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


def _shards(row: ServerRow, stream: int | None) -> str:
    """A cluster row's reads per request on each primary (the stream's marked ``*``)."""
    parts = [
        f"{shard.get('round_trips', 0.0):.2f}" + ("*" if i == stream else "")
        for i, shard in enumerate(row.redis_shards)
    ]
    return " + ".join(parts)


def _cluster_request(row: ServerRow) -> str:
    """What a cluster-section row's requests were."""
    if row.kind == "bearer":
        found = variant(row.baseline)
        return "bearer JWT, " + ("cache on" if found.follows else "cache off")
    seen = row.variant.endswith("-seen")
    return f"logout, session {'used first' if seen else 'never seen'}"


def _cluster_section(results: Results) -> list[str]:
    if not results.cluster and not results.stream:
        return []
    info = results.cluster_info
    s = results.meta["settings"]
    stream = info.get("stream_shard")
    out = [
        "## 5. Redis Cluster",
        "",
        f"A local Redis Cluster of {info.get('primaries', 3)} primaries with "
        f"{info.get('replicas_per_primary', 1)} replica each (redis-server "
        f"{info.get('redis_server', '?')}, the binary the single Redis runs; formed by "
        "`redis-cli --cluster create`, nothing persisted), on the Redis CPU like the "
        "single Redis. The single Redis has no replica: a primary's replication is part "
        f"of its CPU time here. The audit stream `{info.get('stream', '?')}` (slot "
        f"{info.get('stream_slot', '?')}) lives on primary {(stream or 0) + 1} of "
        f"{info.get('primaries', 3)} (marked * below).",
        "",
        "**Counted on the cluster:** `INFO stats` `total_reads_processed` and `INFO "
        "commandstats` on every primary, summed (the replicas' `REPLCONF ACK` removed). "
        "*Shard reads* per request = the batches it sent, one per shard each of its "
        "pipelines touched: redis-py writes every shard's batch of a pipeline before it "
        "reads any reply, so a pipeline waits about one round trip however many shards it "
        "touches. The single Redis's *round "
        "trips* are its reads, as everywhere in this report. Redis CPU: `INFO cpu` (user + "
        "system) deltas, summed over the primaries.",
        "",
    ]
    pairs = _cluster_rows(results, "bearer") + _cluster_rows(results, "logout")
    if pairs:
        out += [
            "### 5a. Bearer check and logout: the Cluster column",
            "",
            "*What this shows:* what a request with a bearer JWT, and a logout, cost when "
            "the middleware's Redis is the Cluster instead of one Redis: each variant's "
            "server on one Redis and its twin on the Cluster (`LOGOUT_REDIS_CLUSTER=true`) "
            "take turns in the same rounds (bearer: "
            f"{s['rounds']} rounds of {s['duration']} s alone, {s['paired_rounds']} of "
            f"{s['paired_duration']} s side by side; logout: {s['logout_rounds']} rounds of "
            f"{s['logout_duration']} s, as section 2), so *Cluster vs one Redis* is a median "
            "of per-round ratios. With the revocation cache a bearer check asks no Redis on "
            "either; without it, one pipelined check whose two keys (the denylist's, the "
            "subject's not-before) may live on two shards. A logout on the Cluster is two "
            "pipelines: its key writes (the session's record, the revoked token, the "
            "tombstone: a batch to each of the one to three shards holding them, in "
            "parallel), then, once all succeeded, its audit entry with its write-once "
            "marker on the stream's shard; on one Redis, one `MULTI`/`EXEC`.",
            "",
        ]
        header = [
            "Request",
            "Server",
            "Configuration",
            "req/s, one Redis",
            "req/s, Cluster",
            "Cluster vs one Redis (alone)",
            "side by side",
            "server CPU µs/req (one → Cluster)",
            "p99 ms (one → Cluster)",
            "Redis round trips, one Redis",
            "Cluster shard reads (per primary)",
            "Redis CPU µs/req (one → Cluster)",
            "verified",
        ]
        rows = []
        for one, cl in pairs:
            request = _cluster_request(one)
            config = variant(one.variant).label if one.kind == "bearer" else VARIANTS[0].label
            verified = "—" if one.verified is None else "yes" if one.verified else "NO"
            if cl.verified is not None:
                verified += " / " + ("yes" if cl.verified else "NO")
            follower = cl.redis.get("follower_deletes", 0.0)
            rows.append(
                [
                    request,
                    STACK_LABELS[one.stack],
                    config,
                    _num(one.rps),
                    _num(cl.rps),
                    _x(cl.ratio),
                    _x(cl.paired_ratio),
                    f"{_num(one.cpu_us, 1)} → {_num(cl.cpu_us, 1)}",
                    f"{_ms(one.p99_ms)} → {_ms(cl.p99_ms)}",
                    f"{_request_trips(one):.2f}",
                    f"{_request_trips(cl):.2f} ({_shards(cl, stream)})"
                    + (f" +{follower:.2f} follower DEL" if follower > 0.005 else ""),
                    f"{_num(one.redis.get('redis_cpu_us', math.nan), 1)} → "
                    f"{_num(cl.redis.get('redis_cpu_us', math.nan), 1)}",
                    verified,
                ]
            )
        out += [*_table(header, rows), ""]
        out += [
            "Commands per request on the Cluster (summed over the primaries; `COMMAND`: "
            "the `COMMAND GETKEYS` redis-py sends before each follower's `XREAD`, counted "
            "with the followers' reads): "
            + "; ".join(
                f"{_cluster_request(cl)}, {STACK_LABELS[cl.stack].split(',')[0]}: "
                + (
                    ", ".join(
                        f"{k.upper()} {v:.2f}"
                        for k, v in cl.redis.items()
                        if k not in NOT_COMMANDS
                        and k not in ("follower_deletes", "request_round_trips")
                        and v >= 0.005
                    )
                    or "none"
                )
                for _one, cl in pairs
            )
            + ".",
            "",
        ]
    if results.stream:
        out += _stream_section(results, stream)
    return out


def _stream_section(results: Results, stream: int | None) -> list[str]:
    s = results.meta["settings"]
    out = [
        "### 5b. The audit stream at many writers",
        "",
        "*What this shows:* whether the one audit stream (every process follows it in "
        "order with one blocking `XREAD`) makes its shard a hot spot, and how much headroom "
        "that shard has. Concurrent writers (asyncio tasks in one process on the server "
        "CPU, each with one operation in flight on its own connection) append to the "
        f"stream, {s['stream_rounds']} rounds of {s['stream_duration']} s, the rows of a "
        "writer count taking turns. *A logout*: the middleware's own "
        "`AsyncRedisStore.execute()` of the writes its core plans for a logout (a "
        "session and a bearer token: one `MULTI`/`EXEC` on one Redis; on the Cluster its "
        "key writes, a batch per shard, then its entry on the stream's shard); *plain "
        "XADD*: the same entry's fields with `XADD ... MAXLEN ~` from "
        f"redis-py; *pipelined*: {BATCH} such `XADD`s per pipeline, the nearest a client "
        "comes to the shard's own limit. Entries: `XADD` calls Redis counted on the "
        "stream's node. *Busy*: that node's CPU time over the wall time (100% = one core "
        "saturated). *Ceiling*: the entries per second the stream's node would take at one "
        "full core at the CPU time per entry measured here (an estimate; Redis's "
        "per-read overhead is shared by more entries as the load grows, so the ceiling "
        "rises with it). *Headroom*: ceiling ÷ entries/s measured.",
        "",
    ]
    header = [
        "Redis",
        "Writers",
        "Each writer sends",
        "logouts/s",
        "entries/s",
        "stream shard CPU µs/entry",
        "stream shard busy",
        "ceiling, entries/s",
        "headroom",
        "all primaries CPU µs/op",
        "writers' CPU µs/op",
        "p50 ms",
        "p99 ms",
        "stream shard: reads, commands per op",
        "failed",
    ]
    rows = []
    for r in results.stream:
        commands = ", ".join(
            f"{k.upper()} {v:.2f}" for k, v in r.stream_commands.items() if v >= 0.005
        )
        rows.append(
            [
                TOPOLOGIES.get(r.topology, r.topology),
                str(r.writers),
                STREAM_KINDS.get(r.kind, r.kind),
                _num(r.rate) if r.kind == "logout" else "—",
                _num(r.entries_per_s),
                _num(r.stream_cpu_us, 1),
                "n/a" if math.isnan(r.stream_busy) else f"{r.stream_busy:.0%}",
                _num(round(r.ceiling, -2)),
                _x(r.ceiling / r.entries_per_s if r.entries_per_s else math.nan),
                _num(r.redis_cpu_us, 1),
                _num(r.client_cpu_us),
                _ms(r.p50_ms),
                _ms(r.p99_ms),
                f"{r.stream_reads:.2f}; {commands}",
                str(r.failed),
            ]
        )
    out += [*_table(header, rows), ""]
    out += _stream_summary(results)
    return out


def _stream_summary(results: Results) -> list[str]:
    """The stream's headroom in words, from the largest writer count."""
    top = max(r.writers for r in results.stream)
    at = {(r.topology, r.kind): r for r in results.stream if r.writers == top}
    logout, batch = at.get(("cluster", "logout")), at.get(("cluster", "xadd-batch"))
    if logout is None:
        return []
    text = (
        f"At {top} writers the Cluster took {_num(logout.rate)} logouts/s; the stream's "
        f"shard spent {logout.stream_cpu_us:.1f} µs of CPU per logout and was "
        f"{logout.stream_busy:.0%} busy, so one shard would take about "
        f"{_num(round(logout.ceiling, -3))} logouts/s at one full core "
        f"({_x(logout.ceiling / logout.rate if logout.rate else math.nan)} what these "
        f"writers sent; their own process used {_num(logout.client_cpu_us)} µs of CPU per "
        "logout: the writers, not the shard, were the limit here)."
    )
    if batch is not None:
        text += (
            f" Pipelined plain `XADD`s reached {_num(batch.entries_per_s)} entries/s at "
            f"{batch.stream_busy:.0%} busy ({batch.stream_cpu_us:.1f} µs per entry: about "
            f"{_num(round(batch.ceiling, -3))} entries/s at one core), what the shard does "
            "for bare entries."
        )
    single = at.get(("single", "logout"))
    if single is not None:
        text += (
            f" One Redis, for comparison: {_num(single.rate)} logouts/s, "
            f"{single.stream_cpu_us:.1f} µs of its CPU per logout (every key of the logout "
            "is its own)."
        )
    return [text, ""]


def _method(meta: dict[str, Any]) -> list[str]:
    return [
        "## Method",
        "",
        "- Servers: one process each (uvicorn, no workers, access log off; waitress, 4 "
        "threads), pinned to one CPU; the load generator (wrk, one thread, keep-alive) and "
        "Redis on the other; in-process timing by pyperf. See `benchmarks/README.md`.",
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
    """Everything in ``results`` as JSON values (NaN written as null)."""
    data: dict[str, Any] = {
        "meta": results.meta,
        "targets": [dataclasses.asdict(t) for t in targets(results)],
    }
    for name, (key, row_class) in _JSON_FIELDS.items():
        value = getattr(results, name)
        data[key] = [dataclasses.asdict(r) for r in value] if row_class is not None else value
    cleaned: dict[str, Any] = _clean(data)
    return cleaned


def _restore(hint: Any, value: Any) -> Any:
    """A JSON value back as the type ``hint`` names: null as NaN where a float is due."""
    if value is None:
        return math.nan if hint is float else None
    origin = get_origin(hint)
    if origin is list and isinstance(value, list):
        return [_restore(get_args(hint)[0], v) for v in value]
    if origin is dict and isinstance(value, dict):
        return {k: _restore(get_args(hint)[1], v) for k, v in value.items()}
    return value


def _row(row_class: type[Any], data: dict[str, Any]) -> Any:
    hints = get_type_hints(row_class)
    return row_class(
        **{
            f.name: _restore(hints[f.name], data[f.name])
            for f in dataclasses.fields(row_class)
            if f.name in data
        }
    )


def load(path: Path) -> Results | None:
    """The results a run wrote to ``path`` (a ``results.json``), or None when there is
    none or it cannot be read back."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        results = Results(dict(data["meta"]))
        for name, (key, row_class) in _JSON_FIELDS.items():
            if key not in data:
                continue
            if row_class is None:
                value = data[key]
                setattr(results, name, math.nan if value is None else value)
            else:
                setattr(results, name, [_row(row_class, row) for row in data[key]])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return results


def merge(results: Results, previous: Results) -> list[str]:
    """Copy into ``results`` the sections it did not measure from ``previous`` (an earlier
    run's, of the same mode: full or smoke), noting in ``results.meta["kept"]`` which run
    each comes from; returns the sections copied."""
    meta, old = results.meta, previous.meta
    if bool(meta["settings"]["smoke"]) != bool(old.get("settings", {}).get("smoke")):
        return []
    measured = set(meta["sections"])
    kept: list[dict[str, Any]] = []
    for run in [*old.get("kept", []), {**old, "kept": None}]:
        sections = [s for s in run.get("sections", []) if s in SECTION_FIELDS]
        sections = [s for s in sections if s not in measured]
        if not sections:
            continue
        for section in sections:
            for name in SECTION_FIELDS[section]:
                setattr(results, name, getattr(previous, name))
        measured |= set(sections)
        kept.append(
            {
                "sections": sorted(sections),
                **{
                    k: run.get(k)
                    for k in ("started", "command", "note", "code", "elapsed_s", "settings")
                },
            }
        )
    if kept:
        meta["kept"] = kept
    return sorted(s for run in kept for s in run["sections"])


def write(results: Results, out: Path, charts: Sequence[Path]) -> list[Path]:
    """Write ``results.json`` and ``results.md`` (naming ``charts``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(as_json(results), indent=1) + "\n")
    md = markdown(results, [p.name for p in charts])
    (out / "results.md").write_text(md, encoding="utf-8")
    return [out / "results.md", out / "results.json", *charts]


def python_command() -> str:
    """The command line of this run, as the report quotes it."""
    return "python -m benchmarks " + " ".join(sys.argv[1:])


def now() -> str:
    """The current time in UTC, to the minute, as the report prints it."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
