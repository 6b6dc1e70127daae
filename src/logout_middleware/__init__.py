"""logout-middleware: complete logout for any ASGI or WSGI app.

* :class:`LogoutMiddleware`: the pure ASGI middleware (FastAPI, Starlette, Litestar,
  Django ASGI).
* :class:`WSGILogoutMiddleware`: the WSGI plug-in (Flask, Django WSGI).
* :class:`LogoutConfig`: the settings, from keyword arguments or ``LOGOUT_*``.
* :class:`LogoutEvent`: what ``on_logout`` listeners receive.
* :func:`revoke` / :func:`arevoke`: end a subject, a session or a token from code.

See the README for the behaviour at the logout URI and every setting.
"""

from .admin import RevocationFailed, arevoke, revoke
from .asgi import LogoutMiddleware
from .config import ConfigError, LogoutConfig
from .core import is_safe_next
from .events import LogoutEvent
from .wsgi import WSGILogoutMiddleware

__all__ = [
    "ConfigError",
    "LogoutConfig",
    "LogoutEvent",
    "LogoutMiddleware",
    "RevocationFailed",
    "WSGILogoutMiddleware",
    "arevoke",
    "is_safe_next",
    "revoke",
]

__version__ = "0.1.0"
