"""The README's recipes table, served row by row on real servers and a real Redis.

Each framework's own adoption test (log in, log out, the record gone) takes its
settings from the same table through :func:`examples.recipes.read_recipes`; this module
checks what every row shares: the table parses, each row's app starts under its own
command with only its settings, refuses ``GET`` at the logout URI, and logs out a
``POST`` with the session cookie expired and one audit entry written.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
import redis

from examples.recipes import Recipe, RecipeError, read_recipes, serve_recipe
from tests.servers import audit_entries

RECIPES = read_recipes()


def test_the_table_names_every_framework_the_readme_claims() -> None:
    titles = " ".join(recipe.title for recipe in RECIPES.values())
    for framework in ("FastAPI", "Flask"):
        assert framework in titles


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=list(RECIPES))
def test_each_row_names_an_example_that_exists(recipe: Recipe) -> None:
    modules = [arg.split(":")[0] for arg in recipe.server if arg.startswith("examples.")]
    assert modules, f"{recipe.name}: the command names no examples.* module"
    path = Path(__file__).resolve().parent.parent.joinpath(*modules[0].split("."))
    assert path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def test_a_malformed_row_is_refused_with_its_text(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("## Recipes\n\n| `x` | X | `uvicorn a:b` | `SESSION=1` |\n")
    with pytest.raises(RecipeError, match="not a LOGOUT_"):
        read_recipes(readme)
    readme.write_text("# nothing here\n")
    with pytest.raises(RecipeError, match="no '## Recipes'"):
        read_recipes(readme)


def test_secrets_named_by_a_setting_are_shared_with_the_app() -> None:
    recipe = Recipe("r", "R", ("uvicorn", "a:b", "--port", "8000"), {"LOGOUT_JWT_KEY": "$K"})
    env = recipe.env("redis://h/0", base={"LOGOUT_PATH": "/x", "PATH": "/bin"})
    assert env["LOGOUT_JWT_KEY"] == env["K"]
    assert len(env["K"]) > 30
    assert "LOGOUT_PATH" not in env
    assert env["LOGOUT_REDIS_URL"] == "redis://h/0"
    program, *args = recipe.command(9001)
    assert Path(program).name == "uvicorn"
    assert args == ["a:b", "--port", "9001"]
    kept = recipe.env("redis://h/0", base={"K": "mine"})
    assert kept["LOGOUT_JWT_KEY"] == "mine"


@pytest.mark.parametrize("recipe", RECIPES.values(), ids=list(RECIPES))
def test_each_row_logs_out_on_its_own_server(
    recipe: Recipe, redis_url: str, redis_client: redis.Redis
) -> None:
    cookie = recipe.settings.get("LOGOUT_SESSION_COOKIE", "session")
    before = len(audit_entries(redis_client))
    with serve_recipe(recipe, redis_url) as url, httpx.Client(base_url=url) as client:
        assert client.get("/logout").status_code == 405
        response = client.post(
            "/logout",
            headers={
                "Cookie": f"{cookie}={secrets.token_urlsafe(24)}",
                "Sec-Fetch-Site": "same-origin",
            },
        )
        assert response.status_code == 303, response.text
        expired = [h for h in response.headers.get_list("set-cookie") if h.startswith(cookie)]
        assert expired, response.headers
        assert "Max-Age=0" in expired[0]
    assert len(audit_entries(redis_client)) == before + 1
