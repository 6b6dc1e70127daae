"""A small Django 5.2 project with ``django.contrib.auth`` and sessions in Redis, adopting
the logout middleware with one line in ``asgi.py`` (uvicorn) and one in ``wsgi.py``
(waitress); every logout setting comes from ``LOGOUT_*``::

    REDIS_URL=redis://localhost:6379/0 LOGOUT_REDIS_URL=redis://localhost:6379/0 \\
    LOGOUT_SESSION_COOKIE=sessionid LOGOUT_COOKIES=sessionid \\
    LOGOUT_SESSION_KEYS=':1:django.contrib.sessions.cache{sid}' \\
    LOGOUT_SESSION_SUBJECT=_auth_user_id LOGOUT_SESSION_FORMAT=pickle \\
    LOGOUT_EVERYWHERE_PATH=/logout/everywhere \\
        python -m uvicorn examples.django_app.asgi:application --port 8000

The session store is chosen by the app's own variables (``settings.py``):
``DJANGO_CACHE`` is ``redis`` (Django's ``django.core.cache.backends.redis.RedisCache``)
or ``django-redis`` (``django_redis.cache.RedisCache``), both on ``REDIS_URL``;
``DJANGO_SESSION_ENGINE`` is ``cache`` or ``cached_db``. ``asgi.py`` keeps the defaults
(``redis``, ``cache``); ``wsgi.py`` defaults to ``django-redis`` and ``cached_db``, so
that the two entry points show both stores. Either backend keeps a session in the key
``:1:<engine's prefix><session id>`` (Django's default key function, ``KEY_PREFIX`` ""
and ``VERSION`` 1), the prefix being ``django.contrib.sessions.cache`` or
``django.contrib.sessions.cached_db``, and pickles the session dict, which holds the
user's id at ``_auth_user_id``.

The users (``auth_user``) live in a SQLite file, ``DJANGO_DB`` (default: in the
system's temporary directory), which the entry points migrate at start-up; they create
the demo users ``alice`` and ``bob`` with the password :data:`DEMO_PASSWORD
<examples.django_app.database.DEMO_PASSWORD>` when missing. With ``cached_db`` the
sessions are in that file too.

Routes: ``GET /`` (who is logged in, with the login form or the logout buttons),
``POST /login`` (Django's ``AuthenticationForm``, with its CSRF token). ``POST /logout``
and ``POST /logout/everywhere`` never reach Django: the middleware answers them.
"""
