"""A Flask app that says which token cookie reached it, for
tests/test_repeated_cookies.py: wrapped by
:class:`~logout_middleware.WSGILogoutMiddleware`, configured by ``LOGOUT_*`` variables
only, ``LOGOUT_TOKEN_COOKIE`` among them.

* ``GET /echo``: JSON ``{"app": "flask", "token": <the token cookie as Werkzeug reads
  it, or null>, "cookie": [<the Cookie header that reached the app>]}`` (a WSGI app gets
  one ``HTTP_COOKIE``: waitress joins repeated fields with ``, ``); the cookie's name is
  ``TOKEN_COOKIE`` (``tok`` by default).
* ``POST /logout`` never reaches the app: the middleware answers it.
"""

from __future__ import annotations

import os

from flask import Flask, Response, jsonify, request

from logout_middleware import WSGILogoutMiddleware

#: The cookie that holds the token (the middleware's ``LOGOUT_TOKEN_COOKIE``).
TOKEN_COOKIE = os.environ.get("TOKEN_COOKIE", "tok")

app = Flask(__name__)


@app.get("/echo")
def echo() -> Response:
    cookie = request.environ.get("HTTP_COOKIE")
    return jsonify(
        app="flask",
        token=request.cookies.get(TOKEN_COOKIE),
        cookie=[cookie] if cookie is not None else [],
    )


app.wsgi_app = WSGILogoutMiddleware(app.wsgi_app)  # type: ignore[method-assign]
