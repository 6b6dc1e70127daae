"""The example's routes: ``/`` and ``/login`` (``/logout`` is the middleware's)."""

from __future__ import annotations

from django.urls import path

from examples.django_app import views

urlpatterns = [
    path("", views.index, name="index"),
    path("login", views.login_view, name="login"),
]
