#!/usr/bin/env python3
"""Developer entry point; needs only Python 3.10+.

    python dev.py demo        # the FastAPI example on an embedded Redis, with a walk-through
    python dev.py demo --serve  # ... then keep serving it for a browser
    python dev.py test        # ruff, mypy and the whole test suite, on the locked versions
    python dev.py test --latest  # ... on the newest releases instead (in .venv-latest)
    python dev.py lock        # refresh uv.lock to the newest releases (uv lock --upgrade)
    python dev.py bench       # the benchmark suite (benchmarks/README.md)
    python dev.py example NAME  # serve one example of the README's recipes table

Each command first makes ``.venv`` and syncs it to ``uv.lock`` (exactly the locked versions,
the project itself editable, with its development extras), again only when
``pyproject.toml`` or ``uv.lock`` change, then runs inside it. Arguments after ``test`` (or
``test --latest``) go to pytest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

# uv locks the development and test environment. Why uv rather than pip-tools: uv.lock is one
# universal lock for every Python version (>=3.10) and platform the project supports, so a
# fresh machine with any supported Python resolves the same versions; pip-compile's output is
# specific to the interpreter that compiled it. (Where a newest release needs a newer Python,
# the lock holds an older one for the older Pythons, e.g. redis-py 8.1 on Python 3.10.)
# dev.py installs this exact uv into .venv with pip; the dev extra in pyproject.toml pins the
# same version, so `uv sync` keeps it there.
UV_VERSION = "0.13.10"

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
# `test --latest`: the newest releases of everything, in a venv of its own; uv.lock is untouched.
LATEST_VENV = ROOT / ".venv-latest"
STAMP = VENV / ".dev-stamp"
LOCK_HINT = (
    "uv.lock is out of date with pyproject.toml: run `python dev.py lock` to refresh it "
    "(to the newest releases that pyproject.toml allows), then commit uv.lock"
)


def bin_dir(env: Path) -> Path:
    """The scripts folder of the virtual environment ``env``."""
    return env / ("Scripts" if os.name == "nt" else "bin")


def executable(env: Path, name: str) -> Path:
    """The path of the program ``name`` in the virtual environment ``env``."""
    return bin_dir(env) / (f"{name}.exe" if os.name == "nt" else name)


PYTHON = executable(VENV, "python")
UV = executable(VENV, "uv")


def ensure_uv() -> None:
    """Create ``.venv`` (stdlib venv, with pip) and install uv ``UV_VERSION`` into it."""
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if UV.exists():
        found = subprocess.run(
            [str(UV), "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
        if found[1:2] == [UV_VERSION]:
            return
    print(f"installing uv {UV_VERSION} into .venv ...", flush=True)
    # `uv sync` leaves only what uv.lock names, so pip may be gone from an older .venv.
    pip = subprocess.run([str(PYTHON), "-m", "pip", "--version"], capture_output=True, check=False)
    if pip.returncode:
        run([str(PYTHON), "-m", "ensurepip", "--upgrade"])
    run([str(PYTHON), "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"])


def uv_env(env: Path) -> dict[str, str]:
    """The environment for a uv command working on the virtual environment ``env``."""
    return {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(env),
        # Only the interpreter dev.py runs on (or .venv's) is used, never a downloaded one.
        "UV_PYTHON_DOWNLOADS": "never",
    }


def ensure_venv() -> None:
    """Sync ``.venv`` to ``uv.lock`` when it is missing or the inputs changed."""
    pin = f'"uv=={UV_VERSION}"'
    if pin not in (ROOT / "pyproject.toml").read_text():
        sys.exit(f"dev.py pins uv {UV_VERSION}: pin the dev extra in pyproject.toml to {pin} too")
    digest = hashlib.sha256()
    for name in ("pyproject.toml", "uv.lock"):
        digest.update((ROOT / name).read_bytes())
    digest.update(UV_VERSION.encode())
    if STAMP.exists() and STAMP.read_text() == digest.hexdigest() and PYTHON.exists():
        return
    ensure_uv()
    print("syncing .venv to uv.lock ...", flush=True)
    # A uv.lock that pyproject.toml has outgrown is an error (--check, --locked), never
    # silently re-resolved.
    run([str(UV), "lock", "--check", "--quiet"], env=uv_env(VENV), hint=LOCK_HINT)
    run([str(UV), "sync", "--locked", "--extra", "dev", "--quiet"], env=uv_env(VENV))
    STAMP.write_text(digest.hexdigest())


def ensure_latest() -> Path:
    """Make ``.venv-latest`` anew with the newest releases that ``pyproject.toml`` allows.

    ``uv sync --upgrade`` would rewrite uv.lock, so this is ``uv pip install --upgrade``
    into a fresh venv: every run sees today's releases, and nothing left from an earlier one.
    """
    ensure_uv()
    print("installing the newest releases into .venv-latest ...", flush=True)
    env = uv_env(LATEST_VENV)
    run([str(UV), "venv", "--quiet", "--clear", "--python", sys.executable, str(LATEST_VENV)], env)
    python = executable(LATEST_VENV, "python")
    install = [str(UV), "pip", "install", "--quiet", "--python", str(python), "--upgrade"]
    run([*install, "-e", f"{ROOT}[dev]"], env=env)
    return python


def run(command: list[str], env: dict[str, str] | None = None, hint: str = "") -> None:
    """Run ``command`` in the project root; exit with its code when it fails.

    Ctrl-C reaches the child too (same process group): wait for it to clean up. ``hint`` is
    printed when the command fails.
    """
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue
    if code:
        if hint:
            print(f"dev.py: {hint}", file=sys.stderr, flush=True)
        sys.exit(code)


def ensure_wrk() -> None:
    """The benchmarks load their servers with Debian's wrk: install it when root."""
    if shutil.which("wrk"):
        return
    command = "apt-get update && apt-get install -y wrk"
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing wrk: {command}", flush=True)
        subprocess.run(["sh", "-c", command], check=False)
    else:
        print(f"wrk is not installed; the server benchmarks need it: {command}", flush=True)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "lock", "bench", "example"}:
        sys.exit(__doc__)
    command, rest = argv[0], argv[1:]
    if command == "lock":
        ensure_uv()
        run([str(UV), "lock", "--upgrade", *rest], env=uv_env(VENV))
        return
    if command == "test" and "--latest" in rest:
        rest.remove("--latest")
        tool = str(ensure_latest())
        mypy_cache = ["--cache-dir", str(LATEST_VENV / ".mypy_cache")]
    else:
        ensure_venv()
        tool = str(PYTHON)
        mypy_cache = []
    if command == "test":
        run([tool, "-m", "ruff", "check", "."])
        run([tool, "-m", "ruff", "format", "--check", "."])
        run([tool, "-m", "mypy", *mypy_cache])
        run([tool, "-m", "pytest", *rest])
    elif command == "demo":
        run([tool, str(ROOT / "examples" / "demo.py"), *rest])
    elif command == "example":
        run([tool, "-m", "examples.recipes", *rest])
    else:
        ensure_wrk()
        run([tool, "-m", "benchmarks", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
