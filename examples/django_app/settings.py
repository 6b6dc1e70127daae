"""Settings of the Django example: ``django.contrib.auth``, sessions on a Redis cache.

Chosen by the environment:

* ``DJANGO_CACHE``: ``redis`` (default; Django's own
  ``django.core.cache.backends.redis.RedisCache``) or ``django-redis``
  (``django_redis.cache.RedisCache``), on ``REDIS_URL``;
* ``DJANGO_SESSION_ENGINE``: ``cache`` (default; ``django.contrib.sessions.backends.cache``,
  sessions in Redis only) or ``cached_db`` (``...backends.cached_db``: written to the
  database and to Redis, read from Redis first);
* ``DJANGO_DB``: the SQLite file of users (and of sessions with ``cached_db``);
* ``DJANGO_SECRET_KEY``: else a random key per process (sessions then end with it, and
  several worker processes need the same key);
* ``DJANGO_ALLOWED_HOSTS``: comma-separated, default ``127.0.0.1,localhost``.

Any other value of ``DJANGO_CACHE`` or ``DJANGO_SESSION_ENGINE`` stops the app at start-up.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

#: ``DJANGO_CACHE`` to the cache backend that holds the sessions.
CACHE_BACKENDS = {
    "redis": "django.core.cache.backends.redis.RedisCache",
    "django-redis": "django_redis.cache.RedisCache",
}
#: ``DJANGO_SESSION_ENGINE`` to Django's session engine.
SESSION_ENGINES = {
    "cache": "django.contrib.sessions.backends.cache",
    "cached_db": "django.contrib.sessions.backends.cached_db",
}
#: Where the SQLite database is when ``DJANGO_DB`` is unset.
DEFAULT_DB = Path(tempfile.gettempdir()) / "logout-middleware-django-example.sqlite3"


def _choice(variable: str, choices: dict[str, str], default: str) -> str:
    """The value ``choices`` gives the environment variable ``variable`` (else ``default``).

    :raises ImproperlyConfigured: for a value that is not one of ``choices``, naming it.
    """
    value = os.environ.get(variable) or default
    if value not in choices:
        raise ImproperlyConfigured(f"{variable}={value!r}: one of {', '.join(choices)}")
    return choices[value]


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "examples.django_app.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_DB") or str(DEFAULT_DB),
        # Waits this long for another process's write (the migration at start-up).
        "OPTIONS": {"timeout": 20},
    }
}
CACHES = {
    "default": {
        "BACKEND": _choice("DJANGO_CACHE", CACHE_BACKENDS, "redis"),
        "LOCATION": os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
    }
}
# The session cookie is "sessionid" (Django's default): LOGOUT_SESSION_COOKIE=sessionid.
# The cache keys are Django's defaults (KEY_PREFIX "", VERSION 1): ":1:" + the engine's
# prefix + the session id, which is what LOGOUT_SESSION_KEYS names.
SESSION_ENGINE = _choice("DJANGO_SESSION_ENGINE", SESSION_ENGINES, "cache")
SESSION_CACHE_ALIAS = "default"
SESSION_COOKIE_SAMESITE = "Lax"

USE_TZ = True
TIME_ZONE = "UTC"
