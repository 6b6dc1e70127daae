""":class:`LogoutCore`, the one object the adapters talk to: the shared parts and a
thin router over each route's flows.

The adapters (:mod:`logout_middleware.asgi`, :mod:`logout_middleware.wsgi`) translate a
request into a :class:`~.messages.RequestHead`, run the core's flows with their store's
driver, and render the :class:`~.messages.Response` that comes back. A flow is a
generator that yields I/O requests (:mod:`.ops`) and is sent their results, so every
decision lives in the core, once, and both adapters (and :func:`logout_middleware.revoke`)
carry out the same plan. Where each flow lives:

* :mod:`.logout`: the logout, everywhere and impersonation URIs;
* :mod:`.ending`: ending credentials (every URI and :func:`~logout_middleware.revoke`),
  with :mod:`.everywhere` and :mod:`.impersonation`;
* :mod:`.backchannel`: OpenID Connect back-channel logout;
* :mod:`.copies` and :mod:`.settle`: every other request, before and after the app.

At the middleware's URIs::

    route = core.route(path, root_path)         # "logout", ..., or None
    core.admit(head, route)                     # -> Response (refusal) | int (body bytes)
    drive(core.respond(head, body, route))      # -> (Response, events)

On every other request carrying credentials::

    verdict = core.checks.check(session, token)  # or a Check for Redis, then .answer()
    drive(core.check_copies(verdict, found))     # when a cookie came more than once
    ... pass to the app (without what the verdict takes out) ...
    drive(core.settle(session))                  # after the app: learn or clean up
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..config import LogoutConfig
from ..events import LogoutEvent
from .backchannel import BackchannelLogout
from .copies import CookieCopies
from .ending import Ended, Ender, Ending
from .logout import LogoutFlow, Route
from .messages import RequestHead, Response
from .ops import Flow
from .parts import Parts
from .settle import Settling

__all__ = ["LogoutCore"]


class LogoutCore:
    """Every decision of the middleware, precomputed where it can be. The parameters
    are those of :class:`~.parts.Parts` (the settings, whether a store is attached, the
    clocks), which it builds once and hands to every flow."""

    def __init__(
        self,
        config: LogoutConfig,
        *,
        has_store: bool,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = Parts(config, has_store=has_store, clock=clock, monotonic=monotonic)
        self.parts = parts
        self.config = config
        self.has_store = has_store
        self.keys = parts.keys
        self.mirror = parts.mirror
        self.checks = parts.checks
        self.verifier = parts.verifier
        self.provider = parts.provider
        #: The canned answers the adapters send themselves.
        self.responses = responses = parts.responses
        self.bad_request = responses.bad_request
        self.internal_error = responses.internal_error
        self.revoked = responses.revoked
        self.duplicate_authorization = responses.duplicate_authorization
        self.ambiguous_cookie = responses.ambiguous_cookie
        self.check_unavailable = responses.check_unavailable
        #: Whether ordinary requests are checked at all (a store is configured).
        self.checks_requests = has_store
        self._ender = Ender(parts)
        self._logout = LogoutFlow(parts, self._ender)
        self._backchannel = BackchannelLogout(parts)
        #: The back-channel receiver's flow (:meth:`.backchannel.BackchannelLogout.receive`).
        self.backchannel = self._backchannel.receive
        # Every other request, before the app (its cookies' copies) and after it.
        copies, settling = CookieCopies(parts), Settling(parts)
        #: :meth:`.copies.CookieCopies.check_copies`.
        self.check_copies = copies.check_copies
        #: :meth:`.copies.CookieCopies.without_cookies`.
        self.without_cookies = copies.without_cookies
        #: :meth:`.copies.CookieCopies.expiries_for`.
        self.expiries_for = copies.expiries_for
        #: :meth:`.settle.Settling.unsettled`.
        self.unsettled = settling.unsettled
        #: :meth:`.settle.Settling.settle`.
        self.settle = settling.settle
        #: :meth:`.settle.Settling.records_of` (the store's follower asks it).
        self.records_of = settling.records_of
        self._routes: dict[str, Route] = {config.path: "logout"}
        if config.everywhere_path:
            self._routes[config.everywhere_path] = "everywhere"
        if config.impersonation_path:
            self._routes[config.impersonation_path] = "impersonation"
        if config.backchannel_path:
            self._routes[config.backchannel_path] = "backchannel"
        #: The route of a path as configured, mount point not considered, or None: a
        #: dictionary lookup, for the adapters' test of every request (:meth:`route`
        #: then also tries the path below the mount point).
        self.exact_route = self._routes.get

    def route(self, path: str, root_path: str) -> Route | None:
        """Which of the middleware's URIs ``path`` is, with or without the mount point.

        ASGI servers disagree on whether ``scope["path"]`` includes ``root_path``; both
        forms match. WSGI adapters pass ``PATH_INFO``, which never includes it.
        """
        found = self._routes.get(path)
        if found is not None or not root_path or not path.startswith(root_path):
            return found
        return self._routes.get(path[len(root_path) :])

    # -- the middleware's URIs -----------------------------------------------------------

    def admit(self, head: RequestHead, route: Route = "logout") -> Response | int:
        """Refuse the request, or say how many body bytes to read (0: none)
        (:meth:`.logout.LogoutFlow.admit`, :meth:`.backchannel.BackchannelLogout.admit`)."""
        if route == "backchannel":
            return self._backchannel.admit(head)
        return self._logout.admit(head, route)

    def respond(
        self, head: RequestHead, body: bytes, route: Route
    ) -> Flow[tuple[Response, tuple[LogoutEvent, ...]]]:
        """The flow for an admitted request to one of the middleware's URIs: its response
        and the events to emit (none when it was refused; one per context ended)."""
        if route == "backchannel":
            return self._backchannel.receive(head, body)
        return self._logout.logout(head, body, route)

    def logout(
        self, head: RequestHead, body: bytes, route: Route = "logout"
    ) -> Flow[tuple[Response, LogoutEvent | None]]:
        """:meth:`respond` at a logout URI, with only the first event (the request's own
        credentials; None when the request was refused and nothing changed)."""
        response, events = yield from self._logout.logout(head, body, route)
        return response, events[0] if events else None

    def end(self, ending: Ending | None = None, **fields: Any) -> Flow[Ended]:
        """End credentials (:meth:`.ending.Ender.end`): ``ending``, or an
        :class:`~.ending.Ending` of ``fields``."""
        return self._ender.end(ending if ending is not None else Ending(**fields))
