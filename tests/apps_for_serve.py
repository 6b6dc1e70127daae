"""Module-level apps and listeners for the serve factories' tests (``LOGOUT_APP``)."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from logout_middleware.events import LogoutEvent

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

#: Events received by :func:`on_logout`, in order.
received: list[LogoutEvent] = []

#: Not an app: for the test that LOGOUT_APP must name a callable.
NOT_CALLABLE = "just a string"


async def asgi_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"asgi app"})


def wsgi_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi app"]


class Nested:
    """Holds an app one attribute deep (``module:Nested.app``)."""

    app = staticmethod(wsgi_app)


def on_logout(event: LogoutEvent) -> None:
    received.append(event)


async def on_logout_async(event: LogoutEvent) -> None:
    received.append(event)
