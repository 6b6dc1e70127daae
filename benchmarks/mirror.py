"""The revocation mirror's memory: bytes per revoked token, session tombstone and subject
(and per entry of the checks' caches), by :mod:`tracemalloc` (allocations still alive
after the mirror took them in through audit entries, as every process does) and by
``sys.getsizeof`` deltas; and the CPU time of taking in one audit entry."""

from __future__ import annotations

import gc
import math
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt

from logout_middleware import LogoutConfig
from logout_middleware.core import RequestChecks, RevocationKeys, RevocationMirror, sha256_hex
from logout_middleware.core.checks import CACHE_SIZE
from logout_middleware.core.revocation import MirrorSnapshot

from .common import Settings

__all__ = ["CLAIMS", "MemoryRow", "measure_memory"]

#: Bytes per item that the code says a mirror costs (RevocationMirror's docstring).
CLAIMS = {"revoked token": 70.0, "session tombstone": 70.0, "subject not-before": 100.0}
#: Audit entries whose intake is timed.
ABSORB_ENTRIES = 10_000


@dataclass
class MemoryRow:
    """Memory one kind of item retains, bytes per item, by two methods."""

    what: str
    items: int
    bytes_per_item: float
    getsizeof_per_item: float
    claim: float | None = None


# -- memory ----------------------------------------------------------------------------


def _retained(action: Callable[[], object]) -> int:
    """Bytes still allocated after ``action`` that were not before (tracemalloc)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = action()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def _sizes(container: Any) -> int:
    """``sys.getsizeof`` of a set or dict and of every key (and value) in it."""
    total = sys.getsizeof(container)
    if isinstance(container, dict):
        return total + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in container.items())
    return total + sum(sys.getsizeof(x) for x in container)


def _hashes(prefix: str, count: int) -> list[str]:
    return [sha256_hex(f"{prefix}-{i}".encode()) for i in range(count)]


def _entries(count: int) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Audit-stream entries as ``XREAD`` returns them: a logout's fields, as bytes."""
    found = []
    for i in range(count):
        fields = {
            "id": f"{i:032x}",
            "at": "2025-01-01T00:00:00.000000+00:00",
            "method": "POST",
            "path": "/logout",
            "cookies": "session",
            "session_id_hash": sha256_hex(f"s-{i}".encode()),
            "token_hash": sha256_hex(f"t-{i}".encode()),
            "token_ttl": "3600",
            "client": "127.0.0.1",
            "user_agent": "Mozilla/5.0",
            "redirect": "/",
            "type": "session_end",
            "reason": "user_logout",
            "subject": f"user-{i}",
            "subject_source": "session",
            "impersonator": "",
            "duration": "12.500",
            "sessions_ended": "1",
            "tokens_ended": "1",
            "ended_sessions": "",
            "not_before": "",
            "store": "ok",
        }
        found.append(
            (
                f"{1_700_000_000_000 + i}-0".encode(),
                {k.encode(): v.encode() for k, v in fields.items()},
            )
        )
    return found


def _reply(fields: list[dict[bytes, bytes]]) -> list[tuple[bytes, Any]]:
    """An ``XREAD`` reply holding one entry per ``fields``."""
    entries = [(f"{1_700_000_000_000 + i}-0".encode(), f) for i, f in enumerate(fields)]
    return [(b"logout:events", entries)]


def measure_memory(settings: Settings) -> tuple[list[MemoryRow], float]:
    """Bytes per item of each kind the mirror and the checks' caches hold, and the CPU
    microseconds of taking in one audit entry (:meth:`RevocationMirror.absorb`).

    The mirror's kinds are given to it as every process receives them, through the
    audit stream (:meth:`RevocationMirror.absorb`); a reload (``SCAN``) builds the same
    sets. A logout written by the process itself (:meth:`RevocationMirror.add`) is
    measured apart: the mirror also keeps it aside until its next reload."""
    config = LogoutConfig()
    keys = RevocationKeys(config)
    n, m = settings.memory_items, settings.memory_subjects
    rows: list[MemoryRow] = []

    mirror = RevocationMirror(keys)
    state = mirror.state
    tokens = _reply([{b"token_hash": h.encode()} for h in _hashes("token", n)])
    sessions = _reply([{b"session_id_hash": h.encode()} for h in _hashes("session", n)])
    subjects = _reply(
        [{b"subject": f"user-{i}".encode(), b"not_before": b"1700000000.25"} for i in range(m)]
    )
    for what, container, reply, count in (
        ("revoked token", state.tokens, tokens, n),
        ("session tombstone", state.sessions, sessions, n),
        ("subject not-before", state.not_before, subjects, m),
    ):
        size_before = _sizes(container)

        def take(reply: list[tuple[bytes, Any]] = reply) -> None:
            mirror.absorb(reply, b"0-0")

        retained = _retained(take)
        rows.append(
            MemoryRow(
                what,
                count,
                retained / count,
                (_sizes(container) - size_before) / count,
                CLAIMS[what],
            )
        )
    del tokens, sessions, subjects

    # A logout this process writes: its token and session in the state, and aside.
    own = RevocationMirror(keys)
    logouts = min(n, 20_000)
    pairs = list(zip(_hashes("own-token", logouts), _hashes("own-session", logouts), strict=True))

    def write() -> None:
        for token_hash, session_hash in pairs:
            own.add(tokens=(token_hash,), sessions=(session_hash,))

    retained = _retained(write)
    rows.append(
        MemoryRow(
            "logout written by this process (until its next reload)",
            logouts,
            retained / logouts,
            math.nan,
        )
    )

    # The checks' per-process caches: sessions (by cookie value and by member) and
    # tokens (by Authorization value, with their JWT claims), each bounded.
    bounded = min(n, CACHE_SIZE - 1)
    checks = RequestChecks(config, keys, RevocationMirror(keys))
    cookies = [f"session=sid{i:040d}; theme=dark" for i in range(bounded)]
    retained = _retained(lambda: [checks.session(c) for c in cookies] and None)
    rows.append(MemoryRow("session seen (checks' cache)", bounded, retained / bounded, math.nan))
    now = 1_700_000_000
    jwts = [
        jwt.encode(
            {"sub": f"user-{i}", "iat": now, "exp": now + 3600}, "k" * 32, algorithm="HS256"
        ).encode()
        for i in range(bounded)
    ]
    # Each Authorization value is made inside: the cache keeps it, as it keeps a request's.
    retained = _retained(lambda: [checks.token(b"Bearer " + t) for t in jwts] and None)
    rows.append(MemoryRow("JWT seen (checks' cache)", bounded, retained / bounded, math.nan))

    reply = _reply([fields for _, fields in _entries(ABSORB_ENTRIES)])
    best = math.inf
    for _ in range(5):
        snapshot = MirrorSnapshot()
        began = time.thread_time_ns()
        mirror.absorb(reply, b"0-0", snapshot)
        best = min(best, time.thread_time_ns() - began)
    return rows, best / ABSORB_ENTRIES / 1e3
