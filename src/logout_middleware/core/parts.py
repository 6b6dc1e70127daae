"""What every flow of the core shares: the settings turned once into ready-to-use parts.

:class:`~.router.LogoutCore` builds one :class:`Parts` and hands it to each route's flows
(:mod:`.logout`, :mod:`.ending`, :mod:`.backchannel`, :mod:`.settle`, :mod:`.copies`),
so that none of them builds its own keys, caches or canned answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ..config import ConfigError, LogoutConfig
from .checks import RequestChecks
from .cookies import Expiries
from .oidc import OIDCProvider
from .responses import Responses
from .revocation import RevocationKeys, RevocationMirror
from .sessions import SessionIds
from .tokens import TokenVerifier

__all__ = ["Parts"]


class Parts:
    """The shared parts of one process's core.

    :param config: the checked configuration.
    :param has_store: whether a Redis store is attached; without one, a logout plans no
        server-side writes and no request is checked.
    :param clock: seconds since the epoch; ``time.time`` unless a test needs another.
    :param monotonic: ``time.monotonic`` unless a test needs another.
    :raises ConfigError: ``LOGOUT_EVERYWHERE_PATH`` or ``LOGOUT_BACKCHANNEL_PATH``
        without a store.
    """

    def __init__(
        self,
        config: LogoutConfig,
        *,
        has_store: bool,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if config.everywhere_path and not has_store:
            raise ConfigError(
                "LOGOUT_EVERYWHERE_PATH: logging out everywhere needs Redis (LOGOUT_REDIS_URL)"
            )
        if config.backchannel_path and not has_store:
            raise ConfigError(
                "LOGOUT_BACKCHANNEL_PATH: back-channel logout needs Redis (LOGOUT_REDIS_URL)"
            )
        self.config = config
        self.has_store = has_store
        #: Seconds since the epoch.
        self.clock = clock
        self.keys = RevocationKeys(config)
        #: The process's revocation mirror (None without a store); the store follows the
        #: audit stream into it when ``LOGOUT_REVOCATION_CACHE`` is on.
        self.mirror = RevocationMirror(self.keys) if has_store else None
        #: The per-request checks and their caches.
        self.checks = RequestChecks(config, self.keys, self.mirror, monotonic)
        #: JWT verification with ``LOGOUT_JWT_KEY`` or ``LOGOUT_JWKS_URL``.
        self.verifier = TokenVerifier(config)
        #: The OpenID provider (``LOGOUT_OIDC_ISSUER``), or None.
        self.provider = (
            OIDCProvider(config) if config.oidc_issuer and config.oidc_client_id else None
        )
        #: Session ids from cookie values (signed ones verified).
        self.ids = SessionIds(config)
        #: The canned answers.
        self.responses = Responses(config)
        #: The cookie deletions.
        self.expiries = Expiries(config)
