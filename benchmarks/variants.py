"""The configurations of this middleware that the suite measures, one column each.

The suite ships two: the default configuration (the revocation cache on: each process
mirrors the revocation state and follows the audit stream), on which the targets are
judged, and the same with ``revocation_cache=False`` (one pipelined Redis check per
request carrying a session cookie or a bearer token).

To compare another configuration, add a :class:`Variant` to :data:`VARIANTS`: every
section (in-process and server pass-through, logout, scaling) then measures it next to
the others, and the report gives it its own rows and ratios. The first variant is the
one the targets are judged on.

Example::

    Variant("deny", "logout-middleware, deny on check error", {"on_check_error": "deny"})

``settings`` are :class:`~logout_middleware.LogoutConfig` keyword arguments; for
anything a setting cannot express, give ``asgi``/``wsgi`` factories instead.

The cluster section measures each variant given by settings a second time on a Redis
Cluster (:data:`CLUSTER_VARIANTS`: the same settings with ``redis_cluster=True``, named
``<name>-cluster``); a variant given by factories is not measured there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from logout_middleware import LogoutConfig, LogoutMiddleware, WSGILogoutMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

    from .apps import ASGIApp

__all__ = [
    "CLUSTER_SUFFIX",
    "CLUSTER_VARIANTS",
    "VARIANTS",
    "Variant",
    "is_cluster_app",
    "on_cluster",
]


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
        """The variant's settings on the Redis at ``redis_url``."""
        return LogoutConfig(redis_url=redis_url, **self.settings)

    @property
    def follows(self) -> bool:
        """Whether each process of this variant keeps a revocation mirror by following
        the audit stream (``revocation_cache`` on, with a stream to follow)."""
        if self.asgi is not None or self.wsgi is not None:
            return False
        config = self.config("redis://127.0.0.1")  # a URL to validate against (a cluster's)
        return config.revocation_cache and bool(config.events_stream)

    def with_settings(self, name: str, label: str, **settings: Any) -> Variant:
        """This variant with more ``LogoutConfig`` settings, under another name."""
        return Variant(name, label, {**self.settings, **settings}, self.asgi, self.wsgi)

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
    Variant(
        "nocache",
        "logout-middleware, without the revocation cache",
        {"revocation_cache": False},
    ),
)


#: What a variant's name gets on the Redis Cluster.
CLUSTER_SUFFIX = "-cluster"


def on_cluster(found: Variant) -> Variant:
    """``found`` on a Redis Cluster (``LOGOUT_REDIS_CLUSTER=true``, given a node's URL),
    named ``<name>-cluster``."""
    return found.with_settings(
        found.name + CLUSTER_SUFFIX, f"{found.label}, Redis Cluster", redis_cluster=True
    )


#: The variants measured on the Redis Cluster too (those given by settings), in order.
CLUSTER_VARIANTS: tuple[Variant, ...] = tuple(
    on_cluster(v) for v in VARIANTS if v.asgi is None and v.wsgi is None
)


def is_cluster_app(name: str) -> bool:
    """Whether the app (or server) called ``name`` talks to the Redis Cluster."""
    return name.removesuffix("-2").endswith(CLUSTER_SUFFIX)


def variant(name: str) -> Variant:
    """The variant called ``name`` (one of :data:`VARIANTS` or :data:`CLUSTER_VARIANTS`).

    :raises KeyError: when there is none.
    """
    for found in (*VARIANTS, *CLUSTER_VARIANTS):
        if found.name == name:
            return found
    raise KeyError(name)
