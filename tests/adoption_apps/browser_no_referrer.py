"""The two examples, unchanged, behind a site-wide ``Referrer-Policy: no-referrer``.

Sites set this policy for every response (often at the proxy). A browser then sends
``Origin: null`` with the same-origin logout form's ``POST``, beside
``Sec-Fetch-Site: same-origin``: the logout must still work. Each factory imports its
example (configured by ``REDIS_URL`` and ``LOGOUT_*`` as usual) and wraps it so that every
response, the middleware's own included, carries the header:

    python -m waitress --call tests.adoption_apps.browser_no_referrer:flask_app
    python -m uvicorn --factory tests.adoption_apps.browser_no_referrer:fastapi_app
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The header every response gets.
POLICY = ("Referrer-Policy", "no-referrer")


def flask_app() -> WSGIApplication:
    """examples/flask_app.py (Flask-Session, the WSGI middleware), every response with
    :data:`POLICY`."""
    from examples.flask_app import app

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            return start_response(status, [*headers, POLICY], *exc_info)

        return app(environ, start)

    return application


def fastapi_app() -> ASGIApp:
    """examples/fastapi_app.py (starsessions, the ASGI middleware), every HTTP response
    with :data:`POLICY`."""
    from examples.fastapi_app import app

    async def application(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                name, value = POLICY
                headers = [*message.get("headers", []), (name.encode(), value.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with_policy)

    return application
