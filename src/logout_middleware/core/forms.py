"""The parameters of a logout request: its query string and its form body.

Parsing is the standard library's (``parse_qsl``) for the query string and werkzeug's
``FormDataParser`` for ``application/x-www-form-urlencoded`` and ``multipart/form-data``
bodies, both bounded in fields and bytes.
"""

from __future__ import annotations

import io
from urllib.parse import parse_qsl

from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

__all__ = ["MAX_FIELDS", "request_params"]

#: Most query or form fields parsed on a logout request.
MAX_FIELDS = 256


def request_params(
    query_string: str, content_type: str, body: bytes, max_body: int
) -> list[tuple[str, str]]:
    """Every ``(name, value)`` of the query string, then of the form body, in order.

    :param body: a form body (per ``content_type``), or empty.
    :param max_body: the most bytes the form may hold.
    :raises ValueError: on a malformed body or more than :data:`MAX_FIELDS` fields.
    :raises werkzeug.exceptions.RequestEntityTooLarge: when the form exceeds ``max_body``.
    """
    params = parse_qsl(query_string, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    if body:
        mimetype, options = parse_options_header(content_type)
        parser = FormDataParser(
            max_form_memory_size=max_body,
            max_content_length=max_body,
            max_form_parts=MAX_FIELDS,
            silent=False,
        )
        _, form, files = parser.parse(io.BytesIO(body), mimetype.lower(), len(body), options)
        for upload in files.values():
            upload.close()
        params += list(form.items(multi=True))
    return params
