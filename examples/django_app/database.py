"""The example's database, made ready at start-up by ``asgi.py`` and ``wsgi.py``:
Django's migrations applied to the SQLite file ``DJANGO_DB``, and the demo users
:data:`DEMO_USERS` created with :data:`DEMO_PASSWORD` when missing.

It runs in a thread of its own: uvicorn imports the app inside its event loop, where
Django refuses database calls. Several processes starting on the same file at once may
race to migrate it; the loser retries, and finds the work done.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import django
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import DatabaseError, connections

#: The users the example creates, to log in with :data:`DEMO_PASSWORD`.
DEMO_USERS = ("alice", "bob")
#: Their password (a demo's: never use a fixed password elsewhere).
DEMO_PASSWORD = "logout-demo-password"
#: How often the migration is tried when another process races it.
ATTEMPTS = 5


def prepare_database() -> None:
    """Set Django up, apply the migrations and create the demo users (idempotent).

    :raises django.db.DatabaseError: when it still fails after :data:`ATTEMPTS` tries.
    """
    django.setup()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare-database") as pool:
        pool.submit(_prepare).result()


def _prepare() -> None:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            call_command("migrate", interactive=False, verbosity=0)
            _create_demo_users()
            return
        except DatabaseError:
            if attempt == ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)
        finally:
            connections.close_all()


def _create_demo_users() -> None:

    users = get_user_model().objects
    for name in DEMO_USERS:
        if not users.filter(username=name).exists():
            users.create_user(name, password=DEMO_PASSWORD)
