"""The test-only Django app as an ASGI app, for uvicorn (as
:mod:`examples.django_app.asgi`, with this package's settings)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

from examples.django_app.database import prepare_database
from logout_middleware import LogoutConfig, LogoutMiddleware

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.adoption_apps.race_django.settings"

prepare_database()

application = LogoutMiddleware(get_asgi_application(), config=LogoutConfig.from_env())
