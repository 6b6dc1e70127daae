"""Two ordinary apps written without knowing logout-middleware (nothing here imports it).

``plain_flask`` (Flask + Flask-Session on Redis, opaque bearer tokens) and
``plain_fastapi`` (FastAPI + starsessions on Redis, JWT bearer tokens) are what a
developer writes before adopting the middleware, naive ``GET /logout`` included.
``tests/test_adoption.py`` serves them with and without ``logout_middleware.serve``.
"""
