"""The Django example as a WSGI app, for waitress::

    python -m waitress --host=127.0.0.1 --port=8000 examples.django_app.wsgi:application

This entry point defaults to the other store: django-redis (``DJANGO_CACHE=django-redis``)
and the ``cached_db`` session engine (sessions written to the SQLite database and to
Redis). ``DJANGO_CACHE`` / ``DJANGO_SESSION_ENGINE`` choose otherwise (see
:mod:`examples.django_app.settings`). The adoption is the last line: the middleware
wraps Django's whole WSGI handler, outermost.
"""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

from examples.django_app.database import prepare_database
from logout_middleware import LogoutConfig, WSGILogoutMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
os.environ.setdefault("DJANGO_CACHE", "django-redis")
os.environ.setdefault("DJANGO_SESSION_ENGINE", "cached_db")
prepare_database()

application = WSGILogoutMiddleware(get_wsgi_application(), config=LogoutConfig.from_env())
