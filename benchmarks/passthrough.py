"""Pass-through through a real server: requests/s, latency, server CPU and Redis round
trips of requests with no credentials, a session cookie and a bearer JWT, for the bare
app, each variant, Starlette ``BaseHTTPMiddleware`` (ASGI) and an A/A control (a second
bare server), alone and side by side with the bare app (:meth:`Bench.compare`)."""

from __future__ import annotations

from .apps import SESSION_KEY
from .common import KINDS, SESSION_ID, SUBJECT, VARIANTS, get_request, session_record
from .load import Bench, Series, ServerRow, Stack
from .wrk import Requests

__all__ = ["passthrough", "passthrough_apps"]


def passthrough_apps(stack: Stack) -> list[tuple[str, str]]:
    """``(app, label)`` compared for ``stack``: bare first, then each variant, then the
    alternative (ASGI: ``BaseHTTPMiddleware``)."""
    found = [("bare", "bare app")] + [(v.name, v.label) for v in VARIANTS]
    if stack == "asgi":
        found.append(("basehttp", "Starlette BaseHTTPMiddleware"))
    return found


def passthrough(bench: Bench) -> list[ServerRow]:
    """Requests/s, latency, CPU and Redis work of pass-through requests, every stack, kind
    and variant, against the bare app in the same rounds (plus an A/A control).

    Two kinds of rounds: alone (each server loaded in turn: req/s, latency, CPU, Redis
    round trips) and side by side (the bare app's server and the other loaded at the same
    time on the one server CPU: their req/s ratio, which the machine's drift cannot skew).
    """
    settings = bench.settings
    # The cookie requests' session has a record, as a logged-in user's would.
    bench.admin.set(SESSION_KEY.format(sid=SESSION_ID), session_record(SUBJECT))
    rows: list[ServerRow] = []
    for stack in ("asgi", "wsgi"):
        for kind in KINDS:
            candidates = passthrough_apps(stack)
            if kind == "none":
                candidates.append(("bare-aa", "bare app again (A/A control)"))
            measured: list[Series] = []
            for app, label in candidates:
                port = bench.servers.port(stack, app)
                make = Requests((get_request(kind, f"127.0.0.1:{port}"),))
                row = ServerRow(
                    "passthrough", stack, kind, app, label, settings.concurrency, "bare", 200
                )
                measured.append(Series(row, make))
                bench.warm(stack, app, make, settings.concurrency)
            bench.settle_followers()
            for row in bench.compare(
                stack,
                measured,
                rounds=settings.rounds,
                paired_rounds=settings.paired_rounds,
                concurrency=settings.concurrency,
                duration=settings.duration,
                paired_duration=settings.paired_duration,
            ):
                rows.append(row)
                bench.log(
                    f"  pass-through {stack} {kind:6} {row.variant:10} {row.rps:8.0f} req/s "
                    f"x{row.ratio:.3f} alone, x{row.paired_ratio:.3f} side by side, "
                    f"cpu x{row.cpu_ratio:.3f}/x{row.paired_cpu_ratio:.3f}  "
                    f"p99 {row.p99_ms:.2f} ms  redis rt/req {row.redis.get('round_trips', 0):.2f}"
                )
    return rows
