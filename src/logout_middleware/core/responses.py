"""The middleware's canned answers, in one place: each route picks one.

Built once from the settings (:class:`Responses`); the few answers that depend on the
request (the confirmation page, the back channel's ``400``) are functions here too.
Every answer carries ``Cache-Control: no-store``.
"""

from __future__ import annotations

import html

from ..config import LogoutConfig
from .messages import Response, json_response, text_response

__all__ = ["Responses", "confirm_page", "oidc_error"]

_NO_STORE = (("Cache-Control", "no-store"),)


class Responses:
    """Every answer that depends only on the settings.

    :param config: the checked settings (``LOGOUT_METHODS``, ``LOGOUT_GET``,
        ``LOGOUT_MAX_BODY`` and ``LOGOUT_SCHEME_PARAM`` appear in the answers).
    """

    def __init__(self, config: LogoutConfig) -> None:
        allow = list(config.methods)
        if config.on_get == "confirm":
            allow += ["GET", "HEAD"]
        #: ``405`` with ``Allow`` at a logout URI (RFC 9110 section 15.5.6).
        self.not_allowed = text_response(
            405,
            f"Method Not Allowed: log out with {' or '.join(config.methods)}.\n",
            ("Allow", ", ".join(allow)),
        )
        #: ``403`` for a cross-site logout (:func:`~.admission.same_origin`).
        self.forbidden = text_response(403, "Forbidden: cross-site logout refused.\n")
        #: ``413`` for a body over ``LOGOUT_MAX_BODY`` bytes.
        self.too_large = text_response(
            413, f"Payload Too Large: at most {config.max_body} bytes.\n"
        )
        #: Answer to a malformed logout request (bad ``Content-Length``, form, or body).
        self.bad_request = text_response(400, "Bad Request: malformed logout request.\n")
        #: Answer when the middleware itself failed; no detail reaches the client.
        self.internal_error = text_response(500, "Internal Server Error: logout failed.\n")
        #: Answer to a request whose bearer token is revoked (RFC 6750 section 3.1).
        self.revoked = json_response(
            401,
            {"error": "invalid_token", "error_description": "The access token has been revoked"},
            (
                (
                    "WWW-Authenticate",
                    'Bearer error="invalid_token", '
                    'error_description="The access token has been revoked"',
                ),
                *_NO_STORE,
            ),
        )
        #: Answer to a request with more than one ``Authorization`` header: which one the
        #: app reads is the framework's choice, so none is let through (RFC 6750
        #: section 3.1, ``invalid_request``).
        self.duplicate_authorization = json_response(
            400,
            {
                "error": "invalid_request",
                "error_description": "More than one Authorization header",
            },
            (("WWW-Authenticate", 'Bearer error="invalid_request"'), *_NO_STORE),
        )
        #: Answer to a request whose ``Cookie`` header carries a revoked session or token
        #: where it cannot be taken out (a pair that only some parsers read, such as
        #: ``x=1, session=...``): which one the app reads is the framework's choice, so
        #: the request does not reach it.
        self.ambiguous_cookie = text_response(
            400, "Bad Request: a cookie of an ended session cannot be taken out.\n"
        )
        #: Answer when revocation cannot be checked and ``on_check_error`` is ``deny``,
        #: or a back-channel logout cannot be stored.
        self.check_unavailable = text_response(
            503, "Service Unavailable: revocation cannot be checked.\n", ("Retry-After", "5")
        )
        #: ``400`` for a ``LOGOUT_SCHEME_PARAM`` value other than ``session``/``bearer``.
        self.unknown_scheme = json_response(
            400,
            {
                "error": "unknown_scheme",
                "error_description": f"{config.scheme_param} names only session and bearer "
                "(comma-separated or repeated); nothing was changed.",
            },
            _NO_STORE,
        )
        #: ``409`` at the impersonation URI for a request that impersonates nobody.
        self.not_impersonating = json_response(
            409,
            {
                "error": "not_impersonating",
                "error_description": "This request does not impersonate anyone; nothing "
                "was changed.",
            },
            _NO_STORE,
        )
        #: ``400`` at the everywhere URI without a trusted subject.
        self.no_subject = json_response(
            400,
            {
                "error": "unknown_subject",
                "error_description": "Logging out everywhere needs a logged-in session "
                "or a verified bearer token; nothing was changed.",
            },
            _NO_STORE,
        )
        #: ``405`` at the back-channel URI for anything but ``POST``.
        self.backchannel_not_allowed = text_response(
            405, "Method Not Allowed: back-channel logout takes POST.\n", ("Allow", "POST")
        )
        #: ``200`` to a back-channel logout (Back-Channel Logout 1.0 section 2.8).
        self.backchannel_ok = Response(200, (*_NO_STORE, ("Content-Length", "0")))


def oidc_error(description: str) -> Response:
    """A ``400`` as Back-Channel Logout 1.0 section 2.8 asks: a JSON ``error`` and
    ``error_description``, not cached."""
    return json_response(
        400, {"error": "invalid_request", "error_description": description}, _NO_STORE
    )


#: The question and button of each route's confirmation page.
_CONFIRM_TEXT = {
    "everywhere": ("Do you want to log out on every device?", "Log out everywhere"),
    "impersonation": ("Do you want to stop impersonating?", "Stop impersonating"),
}


def confirm_page(
    action: str, route: str, next_param: str, next_value: str | None, head_only: bool
) -> Response:
    """The confirmation page of ``LOGOUT_GET=confirm``: a minimal page whose form POSTs
    to ``action`` (the URI, mount point included), carrying ``next_value`` (already
    judged safe) as ``next_param``; framing, scripts and referrers refused.

    :param head_only: a ``HEAD`` request: the headers without the body.
    """
    hidden = ""
    if next_value is not None:
        hidden = (
            f'<input type="hidden" name="{html.escape(next_param)}" '
            f'value="{html.escape(next_value)}">'
        )
    question, button = _CONFIRM_TEXT.get(route, ("Do you want to log out?", "Log out"))
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex"><title>Log out</title></head><body>'
        f'<form method="post" action="{html.escape(action)}">{hidden}'
        f'<p>{question}</p><button type="submit">{button}</button>'
        "</form></body></html>\n"
    ).encode()
    headers = (
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(page))),
        *_NO_STORE,
        ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
    )
    return Response(200, headers, b"" if head_only else page)
