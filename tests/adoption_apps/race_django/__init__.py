"""The Django example (examples/django_app) with a slow route, for the resurrection race
of tests/test_repeated_cookies.py; examples/ itself is left as the README shows it.

Everything is the example's (its settings, views, database and demo users, its two
stores chosen by ``DJANGO_CACHE`` and ``DJANGO_SESSION_ENGINE``) except:

* ``GET /slow`` (:mod:`.urls`): loads the session's user, waits ``SLOW_SECONDS`` (0.3 by
  default), then modifies the session (``hits`` + 1), which Django's
  ``SessionMiddleware`` saves after the view: a late save, whatever happened meanwhile.
  Answers ``Logged in as <user>; hits=<n>.`` or ``Not logged in.``
* ``GET /cookie``: the ``Cookie`` header that reached Django, as a JSON list (empty
  without one).
* Passwords are hashed with MD5 (:mod:`.settings`), as Django advises for tests: the
  default PBKDF2 takes most of a second per login.

Entry points: ``tests.adoption_apps.race_django.asgi:application`` (uvicorn) and
``tests.adoption_apps.race_django.wsgi:application`` (waitress), each wrapped by the
middleware configured by ``LOGOUT_*`` variables only, as the example's are.
"""
