"""Adopt the middleware by the server command alone: factories that wrap ``LOGOUT_APP``.

A deployment changes only its command and environment, not the app's code::

    LOGOUT_APP=myproject.main:app LOGOUT_REDIS_URL=redis://localhost:6379/0 \\
        uvicorn --factory logout_middleware.serve:asgi

    LOGOUT_APP=myproject.wsgi:application LOGOUT_REDIS_URL=redis://localhost:6379/0 \\
        gunicorn 'logout_middleware.serve:wsgi()'

    LOGOUT_APP=app:app waitress-serve --call logout_middleware.serve:wsgi

``LOGOUT_APP`` is an import string, ``module:attribute`` (dotted attributes allowed),
as uvicorn and gunicorn take. ``LOGOUT_ON_LOGOUT`` optionally names a listener the same
way (``myproject.audit:on_logout``). Every other setting is read from ``LOGOUT_*``.
"""

from __future__ import annotations

import os
import pkgutil
from collections.abc import Mapping
from typing import Any

from .asgi import LogoutMiddleware
from .config import ConfigError, LogoutConfig
from .wsgi import WSGILogoutMiddleware

__all__ = ["asgi", "wsgi"]


def _load(variable: str, environ: Mapping[str, str], *, required: bool) -> Any:
    """Import the object named by ``module:attribute`` in ``environ[variable]``."""
    target = environ.get(variable, "").strip()
    if not target:
        if required:
            raise ConfigError(f"{variable}: set it to the app's import string, e.g. myapp:app")
        return None
    module, _, attribute = target.partition(":")
    if not module or not attribute:
        raise ConfigError(f"{variable}: {target!r} is not of the form module:attribute")
    try:
        found = pkgutil.resolve_name(target)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{variable}: cannot import {target!r}: {exc}") from exc
    if not callable(found):
        raise ConfigError(f"{variable}: {target!r} is {type(found).__name__}, not callable")
    return found


def asgi(environ: Mapping[str, str] | None = None) -> LogoutMiddleware:
    """The ASGI app of ``LOGOUT_APP`` wrapped in :class:`LogoutMiddleware`.

    For ``uvicorn --factory logout_middleware.serve:asgi`` (or hypercorn, granian).

    :param environ: where to read ``LOGOUT_*``; ``os.environ`` when None.
    :raises ConfigError: when ``LOGOUT_APP`` is unset or cannot be imported, or any
        ``LOGOUT_*`` value is invalid.
    """
    environ = os.environ if environ is None else environ
    app = _load("LOGOUT_APP", environ, required=True)
    listener = _load("LOGOUT_ON_LOGOUT", environ, required=False)
    return LogoutMiddleware(app, LogoutConfig.from_env(environ), on_logout=listener)


def wsgi(environ: Mapping[str, str] | None = None) -> WSGILogoutMiddleware:
    """The WSGI app of ``LOGOUT_APP`` wrapped in :class:`WSGILogoutMiddleware`.

    For ``gunicorn 'logout_middleware.serve:wsgi()'`` or
    ``waitress-serve --call logout_middleware.serve:wsgi``.

    :param environ: where to read ``LOGOUT_*``; ``os.environ`` when None.
    :raises ConfigError: as :func:`asgi`.
    """
    environ = os.environ if environ is None else environ
    app = _load("LOGOUT_APP", environ, required=True)
    listener = _load("LOGOUT_ON_LOGOUT", environ, required=False)
    return WSGILogoutMiddleware(app, LogoutConfig.from_env(environ), on_logout=listener)
