"""Real servers for the measured apps: one process per app, started and stopped here.

ASGI apps run under uvicorn (one process, no workers, access log off); WSGI apps under
waitress (one process, its default 4 threads). Each server process is pinned to the
"server" CPU when pinning is on, so that it never competes with the load generator.

Run by the suite as::

    python -m benchmarks.server --stack asgi --app bare --port 8123 --redis-url redis://...
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

__all__ = ["ROOT", "Servers", "Stack", "free_port", "main"]

Stack = Literal["asgi", "wsgi"]
#: The directory holding the ``benchmarks`` package.
ROOT = Path(__file__).resolve().parent.parent
#: Threads of the waitress server (its default).
WAITRESS_THREADS = 4
#: How long a server may take to answer its first request, seconds.
START_TIMEOUT = 60.0


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pin(cpu: int | None) -> None:
    """Pin the calling process to ``cpu`` (no-op for None or where unsupported)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


@dataclass
class Server:
    """One measured app's server process: its stack, app, port, process and log file."""

    stack: Stack
    app: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    #: The Redis it was given.
    redis_url: str


def _answers(port: int) -> bool:
    """Whether a server on ``port`` answers a ``GET /`` with an HTTP response."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return sock.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


class Servers:
    """The server processes of one suite run.

    :param redis_url: the Redis every app talks to.
    :param cpu: the CPU to pin servers to, or None.
    :param http: uvicorn's HTTP implementation (``auto``, ``h11``, ``httptools``).
    """

    def __init__(self, redis_url: str, *, cpu: int | None, http: str = "auto") -> None:
        self.redis_url = redis_url
        self.cpu = cpu
        self.http = http
        self.servers: dict[tuple[Stack, str], Server] = {}
        self._logs = tempfile.TemporaryDirectory(prefix="logout-bench-")

    def __enter__(self) -> Servers:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self, wanted: Iterable[tuple[Stack, str]], redis_url: str | None = None) -> None:
        """Start a server for each ``(stack, app)`` not yet running; wait until all answer.
        Each is given ``redis_url``, or the Redis of :class:`Servers` when None.

        :raises RuntimeError: when one exits or does not answer in time (with its log).
        """
        url = redis_url or self.redis_url
        env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
        started: list[Server] = []
        for stack, app in wanted:
            if (stack, app) in self.servers:
                continue
            port = free_port()
            log = Path(self._logs.name) / f"{stack}-{app}.log"
            command = [
                sys.executable,
                "-m",
                "benchmarks.server",
                "--stack",
                stack,
                "--app",
                app,
                "--port",
                str(port),
                "--redis-url",
                url,
                "--http",
                self.http,
            ]
            if self.cpu is not None:
                command += ["--cpu", str(self.cpu)]
            with log.open("wb") as out:
                process = subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
            server = Server(stack, app, port, process, log, url)
            self.servers[stack, app] = server
            started.append(server)
        deadline = time.monotonic() + START_TIMEOUT
        for server in started:
            while not _answers(server.port):
                if server.process.poll() is not None or time.monotonic() > deadline:
                    text = server.log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"server {server.stack}/{server.app} did not start:\n{text}")
                time.sleep(0.05)

    def port(self, stack: Stack, app: str) -> int:
        """The loopback port the server of ``(stack, app)`` listens on."""
        return self.servers[stack, app].port

    def stop(self, stack: Stack, app: str) -> None:
        """Stop the server of ``(stack, app)`` (its CPU and memory are freed)."""
        _stop(self.servers.pop((stack, app)))

    def restart(self, stack: Stack, app: str) -> Server:
        """Stop the server of ``(stack, app)`` and start a fresh process (on a new port):
        its in-memory state (caches, revocation mirror) begins anew."""
        old = self.servers.pop((stack, app))
        _stop(old)
        self.start([(stack, app)], old.redis_url)
        return self.servers[stack, app]

    def close(self) -> None:
        """Stop every server this object started."""
        for server in self.servers.values():
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.servers.values():
            _stop(server)
        self.servers.clear()
        self._logs.cleanup()


def _stop(server: Server) -> None:
    """Terminate a server and reap it (kill it after 10 seconds)."""
    if server.process.poll() is None:
        server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


def main(argv: list[str] | None = None) -> None:
    """Serve one app until terminated."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("--stack", choices=["asgi", "wsgi"], required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--http", default="auto")
    args = parser.parse_args(argv)
    pin(args.cpu)
    logging.basicConfig(level=logging.WARNING)
    from .apps import asgi_app, wsgi_app

    if args.stack == "asgi":
        import uvicorn

        uvicorn.run(
            asgi_app(args.app, args.redis_url),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http=args.http,
        )
    else:
        import waitress

        logging.getLogger("waitress").setLevel(logging.ERROR)
        with contextlib.suppress(KeyboardInterrupt):
            waitress.serve(
                wsgi_app(args.app, args.redis_url),
                host="127.0.0.1",
                port=args.port,
                threads=WAITRESS_THREADS,
                ident="waitress",
            )


if __name__ == "__main__":
    main()


@dataclass
class LineHelper:
    """A helper process of a benchmark spoken to a line at a time over its standard
    input and output (both text): :meth:`ask` writes a line and reads the answer,
    :meth:`read` reads one more."""

    process: subprocess.Popen[str]

    def ask(self, line: str) -> str:
        """Send ``line``; its answer, one line, stripped."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def read(self) -> str:
        """The helper's next line, stripped."""
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()
