"""The request facts the core reads and the responses it returns: plain values.

Adapters fill a :class:`RequestHead` from the ASGI ``scope`` or the WSGI ``environ`` and
render a :class:`Response` with ``send`` or ``start_response``; nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["RequestHead", "Response", "json_response", "text_response"]


@dataclass(frozen=True, slots=True)
class Response:
    """A complete HTTP response the middleware sends itself.

    ``headers`` are ``(name, value)`` text pairs, latin-1 safe; ``body`` is bytes.
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What the core needs to know of a request to the logout URI, as text.

    Adapters fill it from the ASGI ``scope`` or the WSGI ``environ``; header values are
    latin-1 decoded, repeated headers joined with ``", "`` (``"; "`` for ``Cookie``),
    and absent headers are ``""``, except ``origin`` and ``sec_fetch_site`` which are
    None when absent.
    """

    method: str
    #: ``http`` or ``https``, as the server saw it (ASGI ``scheme``, ``wsgi.url_scheme``).
    scheme: str
    #: The ``Host`` header, or the server's name and port when the request had none.
    host: str
    #: The mount point: ASGI ``root_path`` or WSGI ``SCRIPT_NAME``.
    root_path: str
    query_string: str
    cookie: str = ""
    authorization: str = ""
    accept: str = ""
    content_type: str = ""
    content_length: str = ""
    user_agent: str = ""
    origin: str | None = None
    sec_fetch_site: str | None = None
    #: The client's address, or None when the server does not say.
    client: str | None = None


def text_response(status: int, text: str, *extra: tuple[str, str]) -> Response:
    """A ``text/plain`` UTF-8 response with ``Cache-Control: no-store`` and ``extra``
    headers after it."""
    body = text.encode()
    headers = (
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    )
    return Response(status, headers, body)


def json_response(
    status: int, payload: dict[str, object], headers: Iterable[tuple[str, str]] = ()
) -> Response:
    """An ``application/json`` response of ``payload`` after the given ``headers``."""
    body = json.dumps(payload).encode()
    return Response(
        status,
        (
            *headers,
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
        ),
        body,
    )
