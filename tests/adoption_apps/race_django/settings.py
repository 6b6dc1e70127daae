"""The example's settings (:mod:`examples.django_app.settings`), with the slow route's
URLconf and a fast password hasher for tests."""

from __future__ import annotations

from examples.django_app import settings as _example

globals().update({name: value for name, value in vars(_example).items() if name.isupper()})

ROOT_URLCONF = "tests.adoption_apps.race_django.urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
