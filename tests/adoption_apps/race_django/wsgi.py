"""The test-only Django app as a WSGI app, for waitress (as
:mod:`examples.django_app.wsgi`, with this package's settings and its defaults:
django-redis and the ``cached_db`` engine)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from examples.django_app.database import prepare_database
from logout_middleware import LogoutConfig, WSGILogoutMiddleware

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.adoption_apps.race_django.settings"
os.environ.setdefault("DJANGO_CACHE", "django-redis")
os.environ.setdefault("DJANGO_SESSION_ENGINE", "cached_db")

prepare_database()

application = WSGILogoutMiddleware(get_wsgi_application(), config=LogoutConfig.from_env())
