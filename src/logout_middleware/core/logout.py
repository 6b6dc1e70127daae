"""The logout URIs: ``LOGOUT_PATH``, ``LOGOUT_EVERYWHERE_PATH`` and
``LOGOUT_IMPERSONATION_PATH``.

Admission first (:meth:`LogoutFlow.admit`: the method, a cross-site check, the body's
size; Django's ``LogoutView`` and Spring Security's ``LogoutFilter`` take ``POST`` only
for the same reasons), then the request is read (its ``next``, schemes, cookies and
bearer token), what it carries ends (:class:`~.ending.Ender`), and the answer is a
``303`` to a safe ``next`` or ``200`` JSON, with the cookies expired.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Literal

from werkzeug.exceptions import RequestEntityTooLarge

from ..events import LogoutEvent
from .admission import same_origin, wants_json
from .cookies import cookie_value, restore_cookie
from .ending import Asked, Ended, Ender, Ending
from .forms import request_params
from .messages import RequestHead, Response, json_response
from .oidc import end_session_url
from .ops import Discover, Flow
from .parts import Parts
from .redirects import choose_next
from .responses import confirm_page
from .schemes import parse_schemes
from .tokens import bearer_token, cookie_token

__all__ = ["LogoutFlow", "Route"]

#: Which URI a request is for.
Route = Literal["logout", "everywhere", "impersonation", "backchannel"]

_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class LogoutFlow:
    """The flows of the logout, everywhere and impersonation URIs.

    :param parts: the core's shared parts.
    :param ender: what ends credentials.
    """

    def __init__(self, parts: Parts, ender: Ender) -> None:
        config = parts.config
        self._parts = parts
        self._config = config
        self._responses = parts.responses
        self._ender = ender
        self._methods = frozenset(config.methods)
        self._allowed_hosts = frozenset(config.allowed_hosts)
        self._trusted_origins = frozenset(config.trusted_origins)
        self._paths: dict[Route, str] = {
            "logout": config.path,
            "everywhere": config.everywhere_path or config.path,
            "impersonation": config.impersonation_path or config.path,
        }
        clear = ", ".join(f'"{kind}"' for kind in config.clear_site_data)
        self._clear_site_data = (("Clear-Site-Data", clear),) if clear else ()

    def admit(self, head: RequestHead, route: Route) -> Response | int:
        """Refuse the request, or say how many body bytes to read (0: none).

        Refusals change nothing: ``405`` (with ``Allow``) for other methods, or the
        confirmation page for ``GET``/``HEAD`` under ``LOGOUT_GET=confirm``; ``403`` for
        a cross-site request; ``413`` when ``Content-Length`` exceeds the cap; ``400``
        for a malformed ``Content-Length``. Adapters read at most the returned number
        plus one byte, so that :meth:`logout` can tell an oversized chunked body.
        """
        config, responses = self._config, self._responses
        if head.method not in self._methods:
            if head.method in ("GET", "HEAD") and config.on_get == "confirm":
                return self._confirm_page(head, route)
            return responses.not_allowed
        if not same_origin(
            origin=head.origin,
            sec_fetch_site=head.sec_fetch_site,
            host=head.host,
            trusted=self._trusted_origins,
        ):
            return responses.forbidden
        length = head.content_length.strip()
        if length:
            if not length.isdigit() or not length.isascii():
                return responses.bad_request
            if int(length) > config.max_body:
                return responses.too_large
        mimetype = head.content_type.split(";", 1)[0].strip().lower()
        return config.max_body if mimetype in _FORM_TYPES else 0

    def logout(
        self, head: RequestHead, body: bytes, route: Route
    ) -> Flow[tuple[Response, tuple[LogoutEvent, ...]]]:
        """Log out the request's own credentials (of the schemes it names, all by
        default); at the everywhere URI, then every session and JWT of its subject too;
        at the impersonation URI, only what is impersonating. The events of every
        context it ended (none when refused)."""
        config, responses = self._config, self._responses
        if len(body) > config.max_body:
            return responses.too_large, ()
        try:
            params = request_params(head.query_string, head.content_type, body, config.max_body)
        except RequestEntityTooLarge:
            return responses.too_large, ()
        except ValueError:
            return responses.bad_request, ()
        schemes = parse_schemes(v for k, v in params if k == config.scheme_param)
        if schemes is None:
            return responses.unknown_scheme, ()
        redirect = None
        if not wants_json(head.accept):
            redirect = self._next([v for k, v in params if k == config.next_param], head)
        # Every copy of the session cookie that a framework may read ends: the first is
        # the session, the others end with it (which one the app reads is its parser's
        # choice). The token cookie's first value is the token cookie's token.
        copies = self._parts.checks.cookie_sessions(head.cookie)
        in_cookie = (
            cookie_token(cookie_value(head.cookie, config.token_cookie))
            if config.token_cookie
            else None
        )
        endpoint: str | None = None
        rp_initiated = route == "logout" and config.oidc_end_session and "session" in schemes
        if rp_initiated:
            endpoint = yield Discover()
        ending = Ending(
            session_id=copies[0].sid if copies else None,
            copies=tuple(copy.sid for copy in copies[1:]),
            token=bearer_token(head.authorization.encode("latin-1", "replace")),
            cookie_token=in_cookie,
            reason="everywhere" if route == "everywhere" else "user_logout",
            everywhere=route == "everywhere",
            impersonation_only=route == "impersonation",
            schemes=schemes,
            asked=Asked(
                method=head.method,
                path=head.root_path + self._paths.get(route, config.path),
                client=head.client,
                user_agent=head.user_agent[:256] or None,
                redirect=redirect,
                end_session=("redirected" if endpoint else "unavailable") if rp_initiated else None,
            ),
        )
        ended = yield from self._ender.end(ending)
        if ended.not_impersonating:
            return responses.not_impersonating, ()
        if ended.no_subject or ended.event is None:
            return responses.no_subject, ()
        provider_url = None
        if endpoint is not None and config.oidc_client_id:
            back = redirect or config.next_uri
            if back.startswith("/"):
                back = f"{head.scheme}://{head.host}{back}"
            provider_url = end_session_url(
                endpoint,
                client_id=config.oidc_client_id,
                id_token_hint=ended.id_token,
                post_logout_redirect_uri=back,
                state=secrets.token_urlsafe(16),
            )
        response, event = self._answer(
            head.scheme == "https", ended, ended.event, route, provider_url
        )
        return response, (event, *(replace(more, redirect=event.redirect) for more in ended.more))

    def _next(self, values: list[str], head: RequestHead) -> str:
        """The safe ``next`` among ``values``, else ``LOGOUT_NEXT_URI``."""
        return choose_next(
            values,
            host=head.host,
            scheme=head.scheme,
            allowed_hosts=self._allowed_hosts,
            fallback=self._config.next_uri,
        )

    def _answer(
        self,
        secure: bool,
        ended: Ended,
        event: LogoutEvent,
        route: Route,
        provider_url: str | None = None,
    ) -> tuple[Response, LogoutEvent]:
        """The response to send, given the completed event.

        The cookies are expired when the session scheme ended; with a restored
        impersonator's session, the session cookie is set back to it instead. The token
        cookie is expired when the event names it (its scheme ended). When the
        store failed and ``LOGOUT_ON_STORE_ERROR`` is ``fail``, the answer is ``503``
        with ``Retry-After``; else ``303`` to the target, or ``200`` JSON for JSON
        clients (``{"success": true}``, with the counts at the everywhere URI and
        ``restored`` when an impersonation ended). All carry ``Cache-Control:
        no-store``.
        """
        config, expiries = self._config, self._parts.expiries
        headers: list[tuple[str, str]] = [("Cache-Control", "no-store")]
        if "session" in event.schemes:
            if ended.restore is not None:
                name = config.session_cookie
                prefix = name + "="
                headers += [h for h in expiries.logout[secure] if not h[1].startswith(prefix)]
                value = self._parts.ids.cookie_value(ended.restore.sid)
                headers.append(("Set-Cookie", restore_cookie(name, value, secure, config)))
            else:
                headers += expiries.logout[secure]
                if secure:
                    headers += self._clear_site_data
        token_cookie = config.token_cookie
        with_session = "session" in event.schemes and token_cookie in config.expired_cookies
        if token_cookie and token_cookie in event.cookies and not with_session:
            headers.append(("Set-Cookie", expiries.token_cookie[secure]))
        if event.store == "failed" and config.on_store_error == "fail":
            body: dict[str, object] = {
                "success": False,
                "error": "session_store_unavailable",
                "message": "Cookies were cleared, but the server-side session could not be "
                "ended. Try again.",
            }
            headers += [("Retry-After", "5")]
            return json_response(503, body, headers), replace(
                event, redirect=None, end_session=None
            )
        if event.redirect is None:
            payload: dict[str, object] = {"success": True}
            if route == "everywhere":
                payload.update(
                    sessions_ended=event.sessions_ended,
                    tokens_ended=event.tokens_ended + sum(e.tokens_ended for e in ended.more),
                    not_before=event.not_before,
                )
            if event.restored is not None:
                payload["restored"] = event.restored
            if provider_url is not None:
                payload["end_session_url"] = provider_url
            return json_response(200, payload, headers), event
        location = provider_url if provider_url is not None else event.redirect
        headers += [("Location", location), ("Content-Length", "0")]
        return Response(303, tuple(headers)), event

    def _confirm_page(self, head: RequestHead, route: Route) -> Response:
        """The confirmation page, carrying a safe ``next`` from the query string."""
        config = self._config
        try:
            params = request_params(head.query_string, "", b"", config.max_body)
        except ValueError:
            params = []
        values = [v for k, v in params if k == config.next_param]
        target = self._next(values, head) if values else None
        return confirm_page(
            action=head.root_path + self._paths.get(route, config.path),
            route=route,
            next_param=config.next_param,
            next_value=target if target != config.next_uri else None,
            head_only=head.method == "HEAD",
        )
