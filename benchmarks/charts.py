"""PNG charts of a run (matplotlib, Agg backend): pass-through, logout, scaling, the
Redis Cluster."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from .common import VARIANTS, variant
from .inprocess import FLOOR_LABEL, GROUPS
from .load import STACK_LABELS
from .report import Results

__all__ = ["draw"]

KIND_SHORT = {"none": "no creds", "cookie": "cookie", "bearer": "bearer"}
COLORS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3"]


def draw(results: Results, out: Path) -> list[Path]:
    """Draw every chart there is data for; return their paths."""
    written: list[Path] = []
    if results.passthrough or results.inprocess:
        written.append(_passthrough(results, out / "passthrough.png"))
    if results.logout:
        written.append(_logout(results, out / "logout.png"))
    if results.scaling:
        written.append(_scaling(results, out / "scaling.png"))
    if results.cluster or results.stream:
        written.append(_cluster(results, out / "cluster.png"))
    return written


def _color(label: str) -> str:
    """One colour per app label, the same in every panel."""
    order = [*(v.label for v in VARIANTS), "Starlette BaseHTTPMiddleware", FLOOR_LABEL]
    if label in order:
        return COLORS[order.index(label) % len(COLORS)]
    return "#999999"


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _passthrough(results: Results, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    rows = [r for r in results.passthrough if r.variant not in ("bare", "bare-aa")]
    groups = [(s, k) for s in ("asgi", "wsgi") for k in ("none", "cookie", "bearer")]
    groups = [g for g in groups if any((r.stack, r.kind) == g for r in rows)]
    labels = list(dict.fromkeys(r.label for r in rows))
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        xs, ys = [], []
        for j, (stack, kind) in enumerate(groups):
            for r in rows:
                if r.label == label and (r.stack, r.kind) == (stack, kind):
                    xs.append(j + (i - (len(labels) - 1) / 2) * width)
                    ys.append(r.side_ratio)
        left.bar(xs, ys, width, label=label, color=_color(label))
    left.axhspan(0.97, 1.03, color="#999999", alpha=0.2, label="±3% of bare")
    left.axhline(1.0, color="black", linewidth=0.8)
    controls = [r for r in results.passthrough if r.variant == "bare-aa"]
    for control in controls:
        if (control.stack, "none") in groups:
            at = groups.index((control.stack, "none"))
            left.plot([at - 0.45, at + 0.45], [control.side_ratio] * 2, "k:", linewidth=1)
    left.set_xticks(range(len(groups)))
    left.set_xticklabels(
        [f"{STACK_LABELS[s].split(',')[0]}\n{KIND_SHORT[k]}" for s, k in groups], fontsize=9
    )
    left.set_ylabel("requests/s relative to the bare app (side by side)")
    left.set_title("Through a real server (dotted: A/A control)")
    left.set_ylim(0, max([1.15, *(r.side_ratio + 0.05 for r in results.passthrough)]))
    left.legend(fontsize=8, loc="lower left")

    inproc = [r for r in results.inprocess if r.variant != "bare"]
    igroups = [(g, k) for g in GROUPS for k in ("none", "cookie", "bearer")]
    igroups = [g for g in igroups if any((r.group, r.kind) == g for r in inproc)]
    ilabels = list(dict.fromkeys(r.label for r in inproc))
    iwidth = 0.8 / max(1, len(ilabels))
    floor = 0.005
    for i, label in enumerate(ilabels):
        xs, ys = [], []
        for j, (group, kind) in enumerate(igroups):
            for one in inproc:
                if one.label == label and (one.group, one.kind) == (group, kind):
                    x = j + (i - (len(ilabels) - 1) / 2) * iwidth
                    added = one.added_cpu_ns if kind == "none" else one.added_ns
                    if added / 1000 >= floor:
                        xs.append(x)
                        ys.append(added / 1000)
                    else:
                        right.text(x, floor * 1.2, "≈0", ha="center", fontsize=7)
        right.bar(xs, ys, iwidth, label=label, color=_color(label))
    right.axhline(1.0, color="#C44E52", linewidth=0.8, linestyle="--", label="1 µs")
    right.set_yscale("log")
    right.set_ylim(floor, 5e4)
    right.set_xticks(range(len(igroups)))
    right.set_xticklabels(
        [f"{GROUPS[g].replace(', ', chr(10))}\n{KIND_SHORT[k]}" for g, k in igroups], fontsize=8
    )
    right.set_ylabel("added µs per request (log)")
    right.set_title("In-process: added time (no creds: CPU; others: wall, incl. Redis)")
    right.legend(fontsize=8, loc="upper left", ncol=2)
    return _save(fig, path)


def _logout(results: Results, path: Path) -> Path:
    rows = results.logout
    fig, ax = plt.subplots(figsize=(14, 0.5 * len(rows) + 1.6))
    ys = list(range(len(rows)))[::-1]
    colors = [
        COLORS[0] if r.stack == "asgi" else COLORS[1] if r.stack == "wsgi" else "#777777"
        for r in rows
    ]
    ax.barh(ys, [r.rps for r in rows], color=colors)
    top = max((r.rps for r in rows), default=1.0)
    for y, r in zip(ys, rows, strict=True):
        rt = r.redis.get("request_round_trips", r.redis.get("round_trips", math.nan))
        deletes = r.redis.get("follower_deletes", 0.0)
        extra = f" (+{deletes:.2f} follower DEL)" if deletes > 0.005 else ""
        ax.text(
            r.rps + top * 0.01,
            y,
            f"{r.rps:,.0f} req/s · p99 {r.p99_ms:.1f} ms · {rt:.2f} Redis RT{extra}",
            va="center",
            fontsize=8,
        )
    ax.set_yticks(ys)
    servers = {"asgi": "uvicorn", "wsgi": "waitress", "redis-py": "no HTTP"}
    ax.set_yticklabels([f"{r.label} ({servers.get(r.stack, r.stack)})" for r in rows], fontsize=8)
    ax.set_xlim(0, top * 1.7)
    ax.set_xlabel("POST /logout requests/s (higher is better)")
    ax.set_title("Logout: this middleware vs hand-written routes vs redis-py alone")
    return _save(fig, path)


def _scaling(results: Results, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.6))
    rows = [r for r in results.scaling if r.variant != "bare"]
    series = sorted({(r.label, r.concurrency) for r in rows}, key=lambda x: (x[1], x[0]))
    labels = list(dict.fromkeys(r.label for r in rows))
    markers = ["o", "s", "^", "D", "v"]
    concurrencies = sorted({r.concurrency for r in rows})
    for label, concurrency in series:
        points = sorted(
            (r.revoked_keys or 1, r.side_ratio)
            for r in rows
            if r.label == label and r.concurrency == concurrency
        )
        li, ci = labels.index(label), concurrencies.index(concurrency)
        left.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker=markers[ci % len(markers)],
            color=COLORS[li % len(COLORS)],
            linestyle=["-", "--", ":", "-."][ci % 4],
            label=f"{label}, {concurrency} conn.",
        )
    left.set_xscale("log")
    left.set_xlabel("revoked tokens in Redis")
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_ylabel("req/s relative to the bare app, side by side (ASGI)")
    left.set_ylim(0, 1.1)
    left.set_title("Bearer requests as the denylist grows (flat is good)")
    left.legend(fontsize=7)
    for case, color in (("miss", COLORS[0]), ("hit", COLORS[1])):
        measured = sorted(
            (e.revoked_keys or 1, e.redis_usec, e.client_us)
            for e in results.exists
            if e.case == case
        )
        right.plot(
            [p[0] for p in measured],
            [p[1] for p in measured],
            "o-",
            color=color,
            label=f"Redis time per EXISTS ({case})",
        )
        right.plot(
            [p[0] for p in measured],
            [p[2] for p in measured],
            "s--",
            color=color,
            label=f"redis-py round trip ({case})",
        )
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("revoked tokens in Redis")
    right.set_ylabel("µs (log)")
    right.set_title("One EXISTS, measured directly")
    right.legend(fontsize=8)
    return _save(fig, path)


def _cluster(results: Results, path: Path) -> Path:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    pairs = []
    for row in results.cluster:
        if row.variant == row.baseline:
            continue
        twin = next(
            (
                r
                for r in results.cluster
                if (r.stack, r.kind, r.variant) == (row.stack, row.kind, row.baseline)
            ),
            None,
        )
        if twin is not None:
            pairs.append((twin, row))
    ys = list(range(len(pairs)))[::-1]
    labels = []
    for y, (one, row) in zip(ys, pairs, strict=True):
        server = STACK_LABELS[row.stack].split(",")[0]
        if row.kind == "bearer":
            what = "bearer, cache " + ("on" if variant(one.variant).follows else "off")
        else:
            what = "logout, " + ("used first" if one.variant.endswith("-seen") else "never seen")
        labels.append(f"{server} {what}")
        color = COLORS[0] if row.kind == "bearer" else COLORS[1]
        left.barh(y, row.ratio, color=color)
        if not math.isnan(row.paired_ratio):
            left.plot([row.paired_ratio], [y], "k|", markersize=14)
        left.text(row.ratio + 0.01, y, f"{row.ratio:.2f}×", va="center", fontsize=8)  # noqa: RUF001
    left.axvline(1.0, color="black", linewidth=0.8)
    left.set_yticks(ys)
    left.set_yticklabels(labels, fontsize=8)
    left.set_xlim(0, 1.3)
    left.set_xlabel("req/s on the Cluster ÷ on one Redis (bar: alone; tick: side by side)")
    left.set_title("Redis Cluster (3 primaries) vs one Redis, same rounds")

    series = sorted({(r.topology, r.kind) for r in results.stream})
    styles = {"single": "--", "cluster": "-"}
    kinds = ["logout", "xadd", "xadd-batch"]
    for topology, kind in series:
        points = sorted(
            (r.writers, r.entries_per_s)
            for r in results.stream
            if (r.topology, r.kind) == (topology, kind)
        )
        color = COLORS[kinds.index(kind) % len(COLORS)] if kind in kinds else "#999999"
        right.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            linestyle=styles.get(topology, ":"),
            color=color,
            label=f"{topology}, {kind}",
        )
    top = max((r.writers for r in results.stream), default=0)
    for r in results.stream:
        shown = r.topology == "cluster" and r.kind in ("logout", "xadd-batch")
        if r.writers == top and shown and not math.isnan(r.ceiling):
            right.axhline(
                r.ceiling,
                color=COLORS[kinds.index(r.kind)],
                linewidth=0.8,
                linestyle=":",
                label=f"stream shard ceiling, {r.kind} (at one core)",
            )
    if results.stream:
        right.set_xscale("log")
        right.set_yscale("log")
        right.set_xticks(sorted({r.writers for r in results.stream}))
        right.set_xticklabels([str(w) for w in sorted({r.writers for r in results.stream})])
        right.legend(fontsize=7)
    right.set_xlabel("concurrent writers")
    right.set_ylabel("audit entries/s (log)")
    right.set_title("The audit stream: entries/s and its shard's ceiling")
    return _save(fig, path)
