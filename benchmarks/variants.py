"""The configurations of this middleware that the suite measures, one column each.

To compare another configuration (say, a local cache of revoked tokens), add a
:class:`Variant` to :data:`VARIANTS`: every section (in-process and server pass-through,
logout, scaling) then measures it next to the others, and the report gives it its own
rows and ratios. The first variant is the one the targets are judged on.

Example::

    Variant("cached", "logout-middleware, revocation cache", {"revocation_cache": True})

``settings`` are :class:`~logout_middleware.LogoutConfig` keyword arguments; for
anything a setting cannot express, give ``asgi``/``wsgi`` factories instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from logout_middleware import LogoutConfig, LogoutMiddleware, WSGILogoutMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from .apps import ASGIApp

__all__ = ["VARIANTS", "Variant"]


@dataclass(frozen=True)
class Variant:
    """One configuration of the middleware.

    :param name: short identifier, used in server names and the JSON (no spaces).
    :param label: how tables and charts name it.
    :param settings: ``LogoutConfig`` keyword arguments besides ``redis_url``.
    :param asgi: optional factory ``(app, redis_url) -> ASGI app``, instead of
        ``LogoutMiddleware(app, LogoutConfig(redis_url=..., **settings))``.
    :param wsgi: the same for WSGI.
    """

    name: str
    label: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    asgi: Callable[[ASGIApp, str], ASGIApp] | None = None
    wsgi: Callable[[WSGIApplication, str], WSGIApplication] | None = None

    def config(self, redis_url: str) -> LogoutConfig:
        return LogoutConfig(redis_url=redis_url, **self.settings)

    def wrap_asgi(self, app: ASGIApp, redis_url: str) -> ASGIApp:
        """``app`` behind this variant of the ASGI middleware."""
        if self.asgi is not None:
            return self.asgi(app, redis_url)
        return LogoutMiddleware(app, self.config(redis_url))

    def wrap_wsgi(self, app: WSGIApplication, redis_url: str) -> WSGIApplication:
        """``app`` behind this variant of the WSGI middleware."""
        if self.wsgi is not None:
            return self.wsgi(app, redis_url)
        return WSGILogoutMiddleware(app, self.config(redis_url))


#: Every variant measured; the first is the one the targets are judged on.
VARIANTS: tuple[Variant, ...] = (
    Variant("logout", "logout-middleware"),
    Variant("cached", "logout-middleware, revocation cache", {"revocation_cache": True}),
)


def variant(name: str) -> Variant:
    """The variant called ``name``.

    :raises KeyError: when there is none.
    """
    for found in VARIANTS:
        if found.name == name:
            return found
    raise KeyError(name)
