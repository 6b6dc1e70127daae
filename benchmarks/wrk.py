"""The load generator: wrk (Debian's ``wrk``), driven by a Lua script written per run.

Each run is one ``wrk -t1 -c<connections>`` process pinned to the client CPU. Its
script's ``request()`` sends a fixed request, one of a pool in turn, or a numbered one
(a unique session cookie and token per logout); ``response()`` counts the expected
status and the others; ``done()`` prints one JSON line (requests, unexpected statuses,
socket errors, wrk's latency percentiles, and the time from the first request sent to
the last response, timed in Lua with ``clock_gettime``). The script says ``started`` at
its first request (the suite's clock starts then). After ``duration`` (wrk's ``-d``
takes whole seconds), or once ``limit`` numbered requests are sent, it sends nothing
more (an empty write), waits for the answers of those in flight, stops its thread and
says ``limit``; the suite then ends wrk with ``SIGINT``. So every request sent is
answered within the run, as Redis's counters and the logouts' checks need.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from http.client import HTTPResponse
from pathlib import Path

__all__ = ["Load", "Requests", "exchange", "require_wrk", "run", "run_pair"]

#: wrk is asked to run this long; the suite stops it sooner with SIGINT.
CEILING_S = 600
#: What ``request()`` answers wrk's check before the run (never sent).
IDLE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

_LUA = r"""
local ffi = require("ffi")
ffi.cdef[[ typedef struct { long s; long ns; } bench_ts; int clock_gettime(int, bench_ts *); ]]
local ts = ffi.new("bench_ts")
local function now()
  ffi.C.clock_gettime(1, ts); return tonumber(ts.s) * 1e6 + tonumber(ts.ns) / 1e3
end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) n = -1; ok = 0; bad = 0; t0 = 0; t1 = 0; ending = false; said = false end
function request()
  -- wrk calls request() once before the run, to check the request: not sent.
  if n < 0 then n = 0; return idle end
  if t0 == 0 then t0 = now(); io.write("started\n"); io.flush() end
  -- Ending: nothing more is sent (an empty write), the requests in flight are answered.
  if ending or (limit >= 0 and n >= limit) then return "" end
  local i = n
  n = n + 1
  if template ~= nil then return string.format(template, first + i, first + i) end
  return pool[(i % #pool) + 1]
end
function response(status, headers, body)
  if status == expected then ok = ok + 1 else bad = bad + 1 end
  t1 = now()
  if t1 - t0 >= duration_us or (limit >= 0 and n >= limit) then ending = true end
  if ending and ok + bad >= n and not said then
    said = true; io.write("limit\n"); io.flush(); wrk.thread:stop()
  end
end
function done(summary, latency, requests)
  local s = {issued = 0, ok = 0, bad = 0, t0 = math.huge, t1 = 0}
  for _, t in ipairs(threads) do
    s.issued = s.issued + t:get("n"); s.ok = s.ok + t:get("ok"); s.bad = s.bad + t:get("bad")
    if t:get("t0") > 0 then s.t0 = math.min(s.t0, t:get("t0")) end
    s.t1 = math.max(s.t1, t:get("t1"))
  end
  local e = summary.errors
  io.write(string.format(
    '{"issued": %d, "requests": %d, "unexpected": %d, "errors": %d, ' ..
    '"elapsed_us": %.1f, "p50_us": %d, "p90_us": %d, "p99_us": %d}\n',
    s.issued, s.ok + s.bad, s.bad, e.connect + e.read + e.write + e.timeout,
    math.max(s.t1 - s.t0, 1), latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
"""


def require_wrk() -> str:
    """The path of ``wrk``; a clear error when it is not installed."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "wrk is not installed: the server sections load their servers with it.\n"
            "Install it with: apt-get update && apt-get install -y wrk\n"
            "(or run only --only inprocess,mirror, which need no wrk)"
        )
    return found


@dataclass(frozen=True)
class Requests:
    """What a run sends: ``pool`` in turn, or ``template`` (``%d`` placeholders, each
    given the request's number ``first + i``); answered ``expected``."""

    pool: tuple[bytes, ...] = ()
    template: bytes | None = None
    first: int = 0
    expected: int = 200


def numbered(request: bytes, *marks: tuple[bytes, bytes]) -> bytes:
    """``request`` as a template: each ``(mark, format)`` replaced by ``format`` (such as
    ``%010d``), every other ``%`` escaped."""
    template = request.replace(b"%", b"%%")
    for mark, spec in marks:
        template = template.replace(mark.replace(b"%", b"%%"), spec)
    return template


@dataclass
class Load:
    """One run: responses (``requests``), requests numbered, seconds from the first
    request to the last response, unexpected statuses plus socket errors, latencies."""

    requests: int
    issued: int
    elapsed_s: float
    unexpected: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        """Responses per second."""
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _lua(value: bytes) -> str:
    text = value.decode("latin-1")
    for a, b in (("\\", "\\\\"), ('"', '\\"'), ("\r", "\\r"), ("\n", "\\n")):
        text = text.replace(a, b)
    return f'"{text}"'


def _script(requests: Requests, limit: int | None, duration: float) -> str:
    lines = [
        f"limit = {-1 if limit is None else limit}",
        f"duration_us = {duration * 1e6:.0f}",
        f"first = {requests.first}",
        f"expected = {requests.expected}",
        f"idle = {_lua(IDLE)}",
        "pool = {" + ", ".join(_lua(r) for r in requests.pool) + "}",
        f"template = {_lua(requests.template) if requests.template is not None else 'nil'}",
    ]
    return "\n".join(lines) + _LUA


class _Run:
    """One wrk process, started."""

    def __init__(
        self,
        port: int,
        requests: Requests,
        concurrency: int,
        limit: int | None,
        duration: float,
        cpu: int | None,
    ) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="logout-bench-wrk-")
        script = Path(self._dir.name) / "run.lua"
        script.write_text(_script(requests, limit, duration), encoding="latin-1")
        pinned = ["taskset", "-c", str(cpu)] if cpu is not None else []
        command = [
            *pinned,
            require_wrk(),
            "-t1",
            f"-c{concurrency}",
            f"-d{CEILING_S}s",
            "--timeout",
            "30s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}/",
        ]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.said = b""

    def wait(self, word: str, seconds: float) -> None:
        """Until the script says ``word`` (``started``, ``limit``) or ``seconds`` pass."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + seconds
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while f"{word}\n".encode() not in self.said:
                left = deadline - time.monotonic()
                if left <= 0 or (selector.select(left) and not self._read(fd)):
                    return

    def _read(self, fd: int) -> bool:
        chunk = os.read(fd, 65536)
        self.said += chunk
        return bool(chunk)

    def finish(self) -> Load:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        rest, err_bytes = self.process.communicate(timeout=60)
        self._dir.cleanup()
        out, err = (self.said + rest).decode(errors="replace"), err_bytes.decode(errors="replace")
        found = [line for line in out.splitlines() if line.startswith("{")]
        if not found:
            raise RuntimeError(f"wrk printed no result: {out[-2000:]} {err[-2000:]}")
        data = json.loads(found[-1])
        return Load(
            requests=int(data["requests"]),
            issued=int(data["issued"]),
            elapsed_s=float(data["elapsed_us"]) / 1e6,
            unexpected=int(data["unexpected"]) + int(data["errors"]),
            p50_ms=data["p50_us"] / 1e3,
            p90_ms=data["p90_us"] / 1e3,
            p99_ms=data["p99_us"] / 1e3,
        )


def run(
    port: int,
    requests: Requests,
    *,
    concurrency: int,
    duration: float,
    limit: int | None = None,
    cpu: int | None = None,
) -> Load:
    """Load the server on ``port`` for ``duration`` seconds (or until ``limit``
    numbered requests are answered), closed loop, ``concurrency`` connections."""
    one = _Run(port, requests, concurrency, limit, duration, cpu)
    one.wait("started", 30.0)
    one.wait("limit", duration + 10.0)
    return one.finish()


def run_pair(
    first: tuple[int, Requests],
    second: tuple[int, Requests],
    *,
    concurrency: int,
    duration: float,
    cpu: int | None = None,
) -> tuple[Load, Load]:
    """Two servers loaded at the same time, each by its own wrk, for ``duration``."""
    runs = [_Run(port, r, concurrency, None, duration, cpu) for port, r in (first, second)]
    for one in runs:
        one.wait("started", 30.0)
    for one in runs:
        one.wait("limit", duration + 10.0)
    a, b = (one.finish() for one in runs)
    return a, b


def exchange(port: int, request: bytes, timeout: float = 10.0) -> tuple[int, HTTPResponse, bytes]:
    """One request on a new connection: ``(status, response, body)``."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        response = HTTPResponse(sock)
        response.begin()
        body = response.read()
        with contextlib.suppress(OSError):
            response.close()
    return response.status, response, body
