"""The README's recipes table: one row per framework and session store, read by the
adoption tests and by ``python dev.py example NAME``, so the table cannot drift from
what is tested.

    python dev.py example django-wsgi        # serve one example on an embedded Redis
    python dev.py example --list             # the names

A row of the table (under the ``## Recipes`` heading of README.md) has four cells:

    | `name` | framework and store (prose) | `server command` | `LOGOUT_X=value` `LOGOUT_Y=value` |

The server command is run from the project root as a shell would run it (the program
from the virtual environment's ``bin`` when it is there); it listens on port 8000, which
:meth:`Recipe.command` replaces. (``waitress-serve``, not ``python -m waitress``: only the
former exits non-zero when the app fails to load.) A ``$NAME`` in a setting is the
app's own secret of that name (``LOGOUT_JWT_KEY=$JWT_SECRET``): :meth:`Recipe.env`
makes one up when it is not set, and gives the same value to the app and the middleware.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from examples.demo import redis_for_demo, serve

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
HEADING = "## Recipes"
#: The port every command in the table listens on.
PORT = "8000"

_CODE = re.compile(r"`([^`]*)`")
_SETTING = re.compile(r"^(LOGOUT_[A-Z_]+)=(.*)$")
_SECRET = re.compile(r"^\$([A-Z][A-Z0-9_]*)$")


class RecipeError(ValueError):
    """The README's recipes table is missing or a row is malformed; the message says where."""


@dataclass(frozen=True)
class Recipe:
    """One row of the recipes table.

    :param name: the row's short name (``django-asgi``), as ``dev.py example`` takes it.
    :param title: framework and store, as the README words it.
    :param server: the server command: a program (``uvicorn``, ``waitress-serve``) and
        its arguments.
    :param settings: ``LOGOUT_*`` variable to value, exactly as the README gives them.
    """

    name: str
    title: str
    server: tuple[str, ...]
    settings: Mapping[str, str]

    def command(self, port: int | str = PORT, python: str = sys.executable) -> list[str]:
        """The server command on ``port``, the table's port (8000, as ``--port 8000``,
        ``--port=8000`` or ``:8000``) replaced; the program is taken from beside
        ``python`` (its virtual environment) when it is there, else from ``PATH``."""
        program, *args = (
            re.sub(rf"(?<![0-9]){PORT}(?![0-9])", str(port), arg) for arg in self.server
        )
        beside = Path(python).parent / program
        found = str(beside) if beside.exists() else shutil.which(program) or program
        return [found, *args]

    def env(self, redis_url: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The server's environment: ``base`` (default ``os.environ``) without any
        ``LOGOUT_*`` of its own, plus ``REDIS_URL`` and ``LOGOUT_REDIS_URL`` set to
        ``redis_url``, the recipe's settings, and each ``$SECRET`` they name (kept when
        ``base`` has it, else a fresh random one)."""
        source = os.environ if base is None else base
        env = {k: v for k, v in source.items() if not k.startswith("LOGOUT_")}
        env.update(REDIS_URL=redis_url, LOGOUT_REDIS_URL=redis_url, PYTHONUNBUFFERED="1")
        for variable, value in self.settings.items():
            secret = _SECRET.match(value)
            if secret:
                env.setdefault(secret.group(1), secrets.token_urlsafe(32))
            env[variable] = env[secret.group(1)] if secret else value
        return env


def read_recipes(readme: Path = README) -> dict[str, Recipe]:
    """Every row of the recipes table in ``readme``, by name, in table order.

    :raises RecipeError: no ``## Recipes`` section, no table in it, or a row without a
        name, a server command or a ``LOGOUT_*`` setting.
    """
    text = "\n" + readme.read_text(encoding="utf-8")
    start = text.find(f"\n{HEADING}\n")
    if start < 0:
        raise RecipeError(f"{readme.name} has no {HEADING!r} section")
    section = text[start + len(HEADING) + 2 :]
    end = section.find("\n## ")
    section = section if end < 0 else section[:end]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    if not rows:
        raise RecipeError(f"the {HEADING!r} section of {readme.name} has no table rows")
    recipes: dict[str, Recipe] = {}
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) != 4:
            raise RecipeError(f"recipe row has {len(cells)} cells, not 4: {row}")
        name_cell, title, server_cell, settings_cell = cells
        names, servers = _CODE.findall(name_cell), _CODE.findall(server_cell)
        if len(names) != 1 or len(servers) != 1:
            raise RecipeError(f"recipe row needs one `name` and one `server command`: {row}")
        settings: dict[str, str] = {}
        for code in _CODE.findall(settings_cell):
            setting = _SETTING.match(code)
            if not setting:
                raise RecipeError(f"not a LOGOUT_* setting in recipe {names[0]}: {code!r}")
            settings[setting.group(1)] = setting.group(2)
        recipes[names[0]] = Recipe(names[0], title, tuple(shlex.split(servers[0])), settings)
    return recipes


@contextlib.contextmanager
def serve_recipe(recipe: Recipe, redis_url: str, **extra: str) -> Iterator[str]:
    """Serve ``recipe``'s example on a free loopback port with its settings (``extra``
    adds or overrides ``LOGOUT_*`` variables by full name); yield its base URL.

    :raises examples.demo.ServerError: when it does not start.
    """
    env = {**recipe.env(redis_url), **extra}
    with serve(recipe.title, recipe.command, env) as url:
        yield url


def main(argv: list[str] | None = None) -> int:
    """``dev.py example``: serve one recipe's example on ``REDIS_URL`` or an embedded
    Redis until Ctrl-C; 2 for an unknown name."""
    recipes = read_recipes()
    parser = argparse.ArgumentParser(prog="dev.py example", description=__doc__.split("\n")[0])
    parser.add_argument("name", nargs="?", help="one of: " + ", ".join(recipes))
    parser.add_argument("--port", default=PORT, help="port to listen on (default 8000)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for recipe in recipes.values():
            print(f"{recipe.name:16} {recipe.title}")
        return 0 if args.list else 2
    if args.name not in recipes:
        parser.error(f"unknown example {args.name!r}; one of: {', '.join(recipes)}")
    recipe = recipes[args.name]
    with redis_for_demo() as redis_url:
        env = recipe.env(redis_url)
        print(f"{recipe.title}: http://127.0.0.1:{args.port}/ (Ctrl-C stops it)", flush=True)
        for variable in recipe.settings:
            shown = "(secret)" if _SECRET.match(recipe.settings[variable]) else env[variable]
            print(f"  {variable}={shown}", flush=True)
        try:
            return subprocess.call(recipe.command(args.port), cwd=ROOT, env=env)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
