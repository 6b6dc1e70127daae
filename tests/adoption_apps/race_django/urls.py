"""The example's routes plus ``GET /slow`` and ``GET /cookie`` (see
:mod:`tests.adoption_apps.race_django`)."""

from __future__ import annotations

import os
import time

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from examples.django_app.urls import urlpatterns as example_urlpatterns

#: How long ``GET /slow`` keeps the session loaded before saving it, seconds.
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "0.3"))


def _text(body: str) -> HttpResponse:
    return HttpResponse(body + "\n", content_type="text/plain")


def slow(request: HttpRequest) -> HttpResponse:
    """Load the session's user, wait, then modify the session so that Django saves it
    after the wait."""
    if not request.user.is_authenticated:
        return _text("Not logged in.")
    user = request.user.get_username()
    hits = int(request.session.get("hits", 0))
    time.sleep(SLOW_SECONDS)
    request.session["hits"] = hits + 1
    return _text(f"Logged in as {user}; hits={hits + 1}.")


def cookie(request: HttpRequest) -> JsonResponse:
    """The ``Cookie`` header that reached Django (several fields joined), as a list."""
    header = request.META.get("HTTP_COOKIE")
    return JsonResponse([header] if header is not None else [], safe=False)


urlpatterns = [
    *example_urlpatterns,
    path("slow", slow, name="slow"),
    path("cookie", cookie, name="cookie"),
]
