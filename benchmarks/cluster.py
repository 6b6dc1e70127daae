"""The Redis Cluster column: each variant on the single Redis and its twin on a local
cluster (3 primaries), in the same rounds: a bearer JWT (alone and side by side) and
logouts of the first variant (never seen, used first); each primary's work kept."""

from __future__ import annotations

from .common import CLUSTER_VARIANTS, VARIANTS, get_request
from .load import Bench, Series, ServerRow, Stack
from .logout import LogoutImpl, measure_logouts
from .wrk import Requests

__all__ = ["cluster", "cluster_logout_impls", "cluster_pairs"]


def cluster_logout_impls() -> list[LogoutImpl]:
    """The logouts compared on the single Redis and on the cluster: the first variant and
    its cluster twin, each stack, for a session never seen and one used first."""
    if not CLUSTER_VARIANTS:
        return []
    found: list[LogoutImpl] = []
    for stack in ("asgi", "wsgi"):
        for seen in (False, True):
            for v in (VARIANTS[0], CLUSTER_VARIANTS[0]):
                suffix = "-seen" if seen else ""
                found.append(
                    LogoutImpl(
                        f"{v.name}-{stack}{suffix}",
                        f"{v.label}, {stack.upper()}, session "
                        + ("used first" if seen else "never seen"),
                        stack,
                        f"{v.name}-2" if seen else v.name,
                        "/logout",
                        seen=seen,
                        middleware=True,
                    )
                )
    return found


def cluster_pairs() -> list[tuple[str, str]]:
    """``(variant on the single Redis, its twin on the cluster)`` names, in order."""
    singles = [v for v in VARIANTS if v.asgi is None and v.wsgi is None]
    return [(v.name, c.name) for v, c in zip(singles, CLUSTER_VARIANTS, strict=True)]


def cluster(bench: Bench) -> list[ServerRow]:
    """Each variant on the single Redis and its twin on the Redis Cluster (``-cluster``),
    measured in the same rounds: requests with a bearer JWT (with the revocation cache:
    answered from the mirror; without: one pipelined check, whose keys may live on two
    shards), alone and side by side as :func:`passthrough`; then logouts of the first
    variant (session never seen, and used first) as :func:`logout`. Every cluster row's
    ratio is against its single-Redis twin; its Redis work is summed over the primaries,
    each primary's own in ``redis_shards``."""
    settings = bench.settings
    rows: list[ServerRow] = []
    labels = {v.name: v.label for v in (*VARIANTS, *CLUSTER_VARIANTS)}
    for stack in ("asgi", "wsgi"):
        stack_: Stack = "asgi" if stack == "asgi" else "wsgi"
        for single, twin in cluster_pairs():
            measured: list[Series] = []
            for app in (single, twin):
                make = Requests((get_request("bearer", bench.host(stack_, app)),))
                row = ServerRow(
                    "cluster", stack, "bearer", app, labels[app], settings.concurrency, single, 200
                )
                measured.append(Series(row, make))
                bench.warm(stack_, app, make, settings.concurrency)
            bench.settle_followers()
            for row in bench.compare(
                stack_,
                measured,
                rounds=settings.rounds,
                paired_rounds=settings.paired_rounds,
                concurrency=settings.concurrency,
                duration=settings.duration,
                paired_duration=settings.paired_duration,
            ):
                rows.append(row)
                shards = "+".join(f"{s.get('round_trips', 0):.2f}" for s in row.redis_shards)
                bench.log(
                    f"  cluster {stack} bearer {row.variant:16} {row.rps:8.0f} req/s  "
                    f"x{row.ratio:.3f} alone, x{row.paired_ratio:.3f} side by side, "
                    f"cpu {row.cpu_us:.0f} us/req  redis reads/req "
                    f"{row.redis.get('round_trips', 0):.2f}" + (f" ({shards})" if shards else "")
                )
    impls = cluster_logout_impls()
    twins = dict(cluster_pairs())
    baselines: dict[str, str] = {}
    for impl in impls:
        for single, twin in twins.items():
            if impl.key.startswith(f"{twin}-"):
                baselines[impl.key] = single + impl.key.removeprefix(twin)
        baselines.setdefault(impl.key, impl.key)
    rows += measure_logouts(bench, impls, "cluster", baselines)
    return rows
