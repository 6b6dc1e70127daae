"""A Starlette app that says which token cookie reached it, for
tests/test_repeated_cookies.py: the middleware (:class:`~logout_middleware.LogoutMiddleware`,
configured by ``LOGOUT_*`` variables only, ``LOGOUT_TOKEN_COOKIE`` among them) around it.

* ``GET /echo``: JSON ``{"app": "starlette", "token": <the token cookie as Starlette
  reads it, or null>, "cookie": [<each Cookie header field that reached the app>]}``;
  the cookie's name is ``TOKEN_COOKIE`` (``tok`` by default).
* ``POST /logout`` never reaches the app: the middleware answers it.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from logout_middleware import LogoutMiddleware

#: The cookie that holds the token (the middleware's ``LOGOUT_TOKEN_COOKIE``).
TOKEN_COOKIE = os.environ.get("TOKEN_COOKIE", "tok")


async def echo(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "app": "starlette",
            "token": request.cookies.get(TOKEN_COOKIE),
            "cookie": request.headers.getlist("cookie"),
        }
    )


app = Starlette(routes=[Route("/echo", echo)])
app.add_middleware(LogoutMiddleware)
