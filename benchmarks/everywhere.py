"""Logout everywhere: a subject with 100 sessions used on two processes, logged out at
the everywhere URI; its Redis round trips, and every session checked ended."""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field

from logout_middleware.core import RevocationKeys, sha256_hex

from .apps import EVERYWHERE, SESSION_KEY, TOKEN_TTL
from .common import everywhere_request, get_request, session_record
from .load import STACK_LABELS, Bench, Stack
from .wrk import exchange

__all__ = ["EverywhereRow", "everywhere"]


@dataclass
class EverywhereRow:
    """One logout everywhere of a subject with ``sessions`` sessions, half of them used
    on each of two processes; the logout is sent to the first process with a session
    that process served (``seen``) or one only the second served (``unseen``).

    ``round_trips``: the request's own Redis round trips (exchanges: the record's
    ``GET`` and the index's ``ZRANGEBYSCORE``, in one pipeline when the process knows
    the subject, then the ``MULTI``/``EXEC``); ``socket_reads``: the reads Redis made
    for them (more when a large transaction reaches it in several pieces);
    ``follower_deletes``: the ``DEL`` s followers sent for records of ended sessions
    their process knew;
    ``follower_reads``: the followers' wake-ups; ``total_reads``: every read but the
    followers' ``XREAD`` s. Verified afterwards: the answer's
    ``sessions_ended``, records left, tombstones, the subject's not-before and index,
    and that another ended session's cookie is taken out on the second process.
    """

    stack: str
    case: str
    label: str
    sessions: int
    status: int = 0
    sessions_ended: int | None = None
    round_trips: float = math.nan
    socket_reads: float = math.nan
    total_reads: float = math.nan
    follower_deletes: float = math.nan
    follower_reads: float = math.nan
    commands: dict[str, float] = field(default_factory=dict)
    records_left: int = -1
    tombstones: int = 0
    not_before_set: bool = False
    index_left: bool = True
    stripped: bool = False
    verified: bool = False


def _everywhere_tx_deletes(known: int) -> int:
    """``DEL`` commands in the transaction of a logout everywhere whose process knows the
    records of ``known`` of the ended sessions: one per record and one for the subject's
    index (the store queues one key per command, as a cluster pipeline needs)."""
    return known + 1


def everywhere(bench: Bench) -> list[EverywhereRow]:
    """Logging out everywhere for a subject with many sessions (see
    :class:`EverywhereRow`), on both stacks, with the first variant plus an everywhere
    URI and ``LOGOUT_SESSION_SUBJECT`` (:data:`benchmarks.apps.EVERYWHERE`)."""
    settings = bench.settings
    admin = bench.admin
    config = EVERYWHERE.config(bench.redis_url)
    keys = RevocationKeys(config)
    rows: list[EverywhereRow] = []
    for stack in ("asgi", "wsgi"):
        stack_: Stack = "asgi" if stack == "asgi" else "wsgi"
        apps_ = (EVERYWHERE.name, f"{EVERYWHERE.name}-2")
        ports = [bench.servers.port(stack_, app) for app in apps_]
        for case in ("seen", "unseen"):
            subject = f"bench-everywhere-{stack}-{case}-{bench.nonce}"
            sids = [
                f"ew{stack}{case}{bench.nonce}n{i:05d}" for i in range(settings.everywhere_sessions)
            ]
            pipe = admin.pipeline(transaction=False)
            for sid in sids:
                pipe.set(SESSION_KEY.format(sid=sid), session_record(subject), ex=TOKEN_TTL)
            pipe.execute()
            row = EverywhereRow(
                stack,
                case,
                f"{STACK_LABELS[stack]}, {len(sids)} sessions, the logout's session "
                + ("served by the answering process" if case == "seen" else "never seen by it"),
                len(sids),
            )
            for i, sid in enumerate(sids):
                port = ports[i % 2]
                status, _, _ = exchange(
                    port, get_request("cookie", f"127.0.0.1:{port}", session=sid)
                )
                if status != 200:
                    raise RuntimeError(f"everywhere: GET with a session answered {status}")
            index = keys.index(subject)
            deadline = time.monotonic() + 10.0
            while admin.zcard(index) < len(sids) and time.monotonic() < deadline:
                time.sleep(0.01)
            # Steady state: both processes' followers parked, not loading their mirror.
            bench.settle_followers()
            mine = sids[0] if case == "seen" else sids[1]
            with bench.counter.measure() as usage:
                status, _, body = exchange(
                    ports[0], everywhere_request(mine, f"127.0.0.1:{ports[0]}")
                )
            row.status = status
            with contextlib.suppress(ValueError, TypeError, KeyError):
                row.sessions_ended = int(json.loads(body)["sessions_ended"])
            found = usage.per(1)
            # The answering process knows the records of the sessions it served.
            written = _everywhere_tx_deletes(len(sids[::2])) * found.get("exec", 0.0)
            deletes = max(0.0, found.get("del", 0.0) - written)
            row.total_reads = found["round_trips"]
            row.follower_deletes = deletes
            row.socket_reads = found["round_trips"] - deletes
            # The record and the subject's index are read in one pipeline when the
            # answering process knows the subject (it served the session), else one after
            # the other; then the transaction: one exchange each.
            get, ranges = found.get("get", 0.0), found.get("zrangebyscore", 0.0)
            reads = max(get, ranges) if case == "seen" else get + ranges
            row.round_trips = reads + found.get("exec", 0.0)
            row.follower_reads = found.get("follower_reads", 0.0)
            row.commands = {k: v for k, v in found.items() if k not in ("round_trips",)}
            row.records_left = int(admin.exists(*(SESSION_KEY.format(sid=sid) for sid in sids)))
            row.tombstones = int(
                admin.exists(*(keys.session(sha256_hex(sid.encode())) for sid in sids))
            )
            row.not_before_set = bool(admin.exists(keys.not_before(subject)))
            row.index_left = bool(admin.exists(index))
            # Another ended session, on the process that did not answer the logout: its
            # cookie is taken out of the request and expired in the response.
            other = ports[1]
            status2, head, _ = exchange(
                other, get_request("cookie", f"127.0.0.1:{other}", session=sids[3])
            )
            cookies = head.msg.get_all("set-cookie") or []
            row.stripped = status2 == 200 and any(c.startswith("session=;") for c in cookies)
            row.verified = (
                status == 200
                and row.sessions_ended == len(sids)
                and row.records_left == 0
                and row.tombstones == len(sids)
                and row.not_before_set
                and not row.index_left
                and row.stripped
            )
            rows.append(row)
            bench.log(
                f"  everywhere {stack} {case:6} {len(sids)} sessions: {row.round_trips:.0f} "
                f"round trips (+{row.follower_deletes:.0f} follower DEL), ended "
                f"{row.sessions_ended}, records left {row.records_left}, tombstones "
                f"{row.tombstones}, cookie taken out {row.stripped}, verified {row.verified}"
            )
    return rows
