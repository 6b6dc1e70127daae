"""The command line: ``python -m benchmarks [--smoke] [--out DIR] ...``."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis

from . import charts, report
from .apps import EVERYWHERE
from .cluster import cluster
from .common import CLUSTER_VARIANTS, FULL, SMOKE, VARIANTS
from .everywhere import everywhere
from .inprocess import run_inprocess
from .load import Bench, Servers, Stack, pin
from .logout import logout
from .mirror import measure_memory
from .passthrough import passthrough
from .redisutil import (
    LocalCluster,
    RedisCounter,
    RedisSide,
    bench_cluster,
    bench_redis,
    pin_pid,
    single_side,
)
from .report import Results
from .scaling import scaling
from .staleness import staleness
from .stream import stream_throughput
from .wrk import require_wrk

__all__ = ["DEFAULT_OUT", "SECTIONS", "main"]

SECTIONS = ("inprocess", "passthrough", "logout", "everywhere", "mirror", "cluster", "scaling")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parent / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


_T0 = time.monotonic()


def _log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def _placement(enabled: bool) -> tuple[int | None, int | None, str]:
    """``(server CPU, client CPU, description)``; None when not pinning."""
    if not enabled or not hasattr(os, "sched_getaffinity"):
        return None, None, "not pinned"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, "not pinned (one usable CPU)"
    server, client = cpus[0], cpus[1]
    return (
        server,
        client,
        f"servers (and in-process runs) on CPU {server}; load generator and Redis on CPU {client}",
    )


def _servers_needed(sections: set[str]) -> list[tuple[Stack, str]]:
    wanted: list[tuple[Stack, str]] = []
    if "passthrough" in sections:
        wanted += [("asgi", "bare"), ("asgi", "bare-aa"), ("asgi", "basehttp")]
        wanted += [("wsgi", "bare"), ("wsgi", "bare-aa")]
    if {"passthrough", "logout", "scaling"} & sections:
        wanted += [("asgi", v.name) for v in VARIANTS]
    if {"passthrough", "logout"} & sections:
        wanted += [("wsgi", v.name) for v in VARIANTS]
    if "logout" in sections:
        wanted += [(stack, f"{v.name}-2") for stack in ("asgi", "wsgi") for v in VARIANTS]
        wanted += [("asgi", "fastapi-routes"), ("wsgi", "flask-routes")]
    if "everywhere" in sections:
        names = (EVERYWHERE.name, f"{EVERYWHERE.name}-2")
        wanted += [(stack, name) for stack in ("asgi", "wsgi") for name in names]
    if "cluster" in sections:
        singles = [*(v.name for v in VARIANTS), f"{VARIANTS[0].name}-2"]
        wanted += [(stack, name) for stack in ("asgi", "wsgi") for name in singles]
    if "scaling" in sections:
        wanted += [("asgi", "bare")]
    return list(dict.fromkeys(wanted))


def _cluster_servers() -> list[tuple[Stack, str]]:
    """The servers on the Redis Cluster: each variant's twin, and a second process of the
    first (for logouts of sessions it served)."""
    if not CLUSTER_VARIANTS:
        return []
    names = [*(v.name for v in CLUSTER_VARIANTS), f"{CLUSTER_VARIANTS[0].name}-2"]
    return [(stack, name) for stack in ("asgi", "wsgi") for name in names]


def _cluster_side(
    local: LocalCluster, url: str, cpu: int | None
) -> tuple[RedisSide, dict[str, Any]]:
    """The cluster's :class:`RedisSide` (every node pinned to ``cpu``, like the single
    Redis, and emptied) and what the report says of it."""
    stream = VARIANTS[0].config(url).events_stream
    if cpu is not None:
        for pid in local.pids():
            pin_pid(pid, cpu)
    side = local.side(stream)
    side.flush()
    client: Any = local.client
    info = {
        "primaries": len(side.nodes),
        "replicas_per_primary": 1,
        "redis_server": local.version,
        "nodes": len(local.nodes),
        "stream": stream,
        "stream_slot": int(client.keyslot(stream)),
        "stream_shard": side.stream_node,
    }
    return side, info


def _scaling_servers() -> set[tuple[Stack, str]]:
    return {("asgi", "bare"), *(("asgi", v.name) for v in VARIANTS)}


def update_readme(md: str, readme: Path = README) -> bool:
    """Replace the README's results block with the headline, targets and first chart."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        return False
    lines = md.splitlines()
    keep: list[str] = []
    taking = False
    for line in lines:
        if line.startswith("## Headline"):
            taking = True
            continue
        if line.startswith("## 1."):
            break
        if taking:
            if line.startswith("![passthrough.png]"):
                keep.append("![pass-through overhead](results/passthrough.png)")
            elif not line.startswith("!["):
                keep.append(line.replace("## Targets", "### Targets"))
    block = "\n".join(keep).strip()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{START}\n{block}\n{END}{tail}", encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks``: run the chosen sections and write the report; returns
    the exit code, 0."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure logout-middleware against bare apps and hand-written logout.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks it runs")
    parser.add_argument("--out", type=Path, default=None, help=f"default: {DEFAULT_OUT}")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated: {','.join(SECTIONS)}"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto, h11, httptools)")
    parser.add_argument(
        "--update-readme", action="store_true", help="copy the headline into benchmarks/README.md"
    )
    parser.add_argument(
        "--note", default="", help="a remark for the report (say, what else ran on the machine)"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="write only this run's sections (by default, the sections not run are kept "
        "from the results.json already in --out)",
    )
    args = parser.parse_args(argv)
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    settings = SMOKE if args.smoke else FULL
    out: Path = args.out or DEFAULT_OUT
    began = time.monotonic()
    server_cpu, client_cpu, placement = _placement(not args.no_pin)
    if sections - {"inprocess", "mirror"}:
        require_wrk()

    with contextlib.ExitStack() as stack:
        url, owned = stack.enter_context(bench_redis())
        local = stack.enter_context(bench_cluster()) if "cluster" in sections else None
        admin = redis.Redis.from_url(url)
        admin.flushdb()
        if owned and client_cpu is not None:
            pin_pid(int(admin.info("server")["process_id"]), client_cpu)
        meta: dict[str, Any] = {
            "started": report.now(),
            "command": report.python_command(),
            "settings": dataclasses.asdict(settings),
            "sections": sorted(sections),
            "placement": placement,
            "variants": [
                {"name": v.name, "label": v.label, "settings": dict(v.settings)} for v in VARIANTS
            ],
            "note": args.note,
            "code": report.code_version(README.parent.parent),
            "machine": report.machine(str(admin.info("server")["redis_version"]), args.http),
        }
        results = Results(meta)
        _log(f"logout-middleware benchmarks ({'smoke' if settings.smoke else 'full'}) -> {out}")
        cluster_side: RedisSide | None = None
        if local is not None:
            cluster_side, results.cluster_info = _cluster_side(local, url, client_cpu)
            _log(f"Redis Cluster: {local.url}, stream on primary {cluster_side.stream_node + 1}")
        if "inprocess" in sections:
            _log("in-process pass-through ...")
            pin(server_cpu)
            out.mkdir(parents=True, exist_ok=True)
            pyperf_json = out / "inprocess.pyperf.json"
            results.inprocess = run_inprocess(settings, url, _log, server_cpu, pyperf_json)
        if "mirror" in sections:
            _log("revocation mirror: memory ...")
            pin(server_cpu)
            results.memory, results.absorb_us = measure_memory(settings)
            for row in results.memory:
                _log(f"  memory {row.what}: {row.bytes_per_item:.0f} B/item")
        pin(client_cpu)
        if "mirror" in sections:
            # Before the servers start: the helper alone on the server CPU.
            _log("revocation mirror: cross-process staleness ...")
            results.staleness = staleness(settings, url, server_cpu, _log)
        if cluster_side is not None:
            # Before the servers start: the writers alone on the server CPU.
            _log("audit stream throughput ...")
            single = single_side(url, admin, RedisCounter(admin))
            results.stream = stream_throughput(settings, [single, cluster_side], server_cpu, _log)
            for side in (single, cluster_side):  # the revocations written: not the servers'
                side.flush()
        server_sections = sections - {"inprocess", "mirror"}
        if not CLUSTER_VARIANTS:
            server_sections.discard("cluster")
        if server_sections:
            with Servers(url, cpu=server_cpu, http=args.http) as servers:
                _log("starting servers ...")
                servers.start(_servers_needed(server_sections))
                if cluster_side is not None and "cluster" in server_sections:
                    servers.start(_cluster_servers(), cluster_side.url)
                bench = Bench(
                    settings,
                    url,
                    admin,
                    RedisCounter(admin),
                    servers,
                    server_cpu,
                    client_cpu,
                    _log,
                    cluster=cluster_side,
                )
                if "passthrough" in sections:
                    _log("pass-through through servers ...")
                    results.passthrough = passthrough(bench)
                if "logout" in sections:
                    _log("logout ...")
                    results.logout = logout(bench)
                if "everywhere" in sections:
                    _log("logout everywhere ...")
                    results.everywhere = everywhere(bench)
                if "cluster" in server_sections:
                    _log("Redis Cluster vs one Redis: bearer check and logout ...")
                    results.cluster = cluster(bench)
                if "scaling" in sections:
                    # Only the scaling's servers stay: the others would reload 10^6 keys.
                    for key in set(servers.servers) - _scaling_servers():
                        servers.stop(*key)
                    _log("scaling ...")
                    results.scaling, results.exists, results.loads = scaling(bench)
        admin.flushdb()
        admin.close()
    meta["elapsed_s"] = time.monotonic() - began
    if hasattr(os, "getloadavg"):
        meta["machine"]["loadavg_end"] = list(os.getloadavg())
    if not args.fresh and set(SECTIONS) - sections:
        previous = report.load(out / "results.json")
        kept = report.merge(results, previous) if previous is not None else []
        if kept:
            _log(f"kept from the last results in {out}: {', '.join(kept)}")
    out.mkdir(parents=True, exist_ok=True)
    written = report.write(results, out, charts.draw(results, out))
    if args.update_readme and update_readme((out / "results.md").read_text(encoding="utf-8")):
        _log(f"updated {README}")
    _log(f"done in {meta['elapsed_s']:.0f} s; wrote " + ", ".join(str(p) for p in written))
    for target in report.targets(results):
        _log(f"  {target.status.upper():13} {target.name}: {target.detail}")
    return 0
