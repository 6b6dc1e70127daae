#!/usr/bin/env python3
"""Developer entry point; needs only Python 3.10+.

    python dev.py demo        # the FastAPI example on an embedded Redis, with a walk-through
    python dev.py demo --serve  # ... then keep serving it for a browser
    python dev.py test        # ruff, mypy and the whole test suite
    python dev.py bench       # the benchmark suite (benchmarks/README.md)
    python dev.py example NAME  # serve one example of the README's recipes table

Each command first makes ``.venv`` and installs the project with its development
extras into it (again only when ``pyproject.toml`` changes), then runs inside it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".dev-stamp"


def ensure_venv() -> None:
    """Create ``.venv`` and install ``.[dev]`` into it when missing or out of date."""
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest and PYTHON.exists():
        return
    if not PYTHON.exists():
        print("creating .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("installing logout-middleware[dev] into .venv ...", flush=True)
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    run([str(PYTHON), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[dev]"])
    STAMP.write_text(digest)


def run(command: list[str]) -> None:
    """Run ``command`` in the project root; exit with its code when it fails.

    Ctrl-C reaches the child too (same process group): wait for it to clean up.
    """
    process = subprocess.Popen(command, cwd=ROOT)
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue
    if code:
        sys.exit(code)


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in {"demo", "test", "bench", "example"}:
        sys.exit(__doc__)
    ensure_venv()
    command, rest = argv[0], argv[1:]
    tool = str(PYTHON)
    if command == "test":
        run([tool, "-m", "ruff", "check", "."])
        run([tool, "-m", "ruff", "format", "--check", "."])
        run([tool, "-m", "mypy"])
        run([tool, "-m", "pytest", *rest])
    elif command == "demo":
        run([tool, str(ROOT / "examples" / "demo.py"), *rest])
    elif command == "example":
        run([tool, "-m", "examples.recipes", *rest])
    else:
        run([tool, "-m", "benchmarks", *rest])


if __name__ == "__main__":
    main(sys.argv[1:])
