"""The Django example as an ASGI app, for uvicorn::

    python -m uvicorn examples.django_app.asgi:application --port 8000

Its sessions are in Django's own ``RedisCache`` with the ``cache`` session engine,
unless ``DJANGO_CACHE`` / ``DJANGO_SESSION_ENGINE`` say otherwise (see
:mod:`examples.django_app.settings`). The adoption is the last line: the middleware
wraps Django's whole ASGI handler, outermost.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from examples.django_app.database import prepare_database
from logout_middleware import LogoutConfig, LogoutMiddleware

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
prepare_database()

application = LogoutMiddleware(get_asgi_application(), config=LogoutConfig.from_env())
