"""The sans-IO core: every decision of the middleware, with no sockets and no framework.

One concept a module; :class:`LogoutCore` (in :mod:`.router`) is the one object the
adapters talk to:

* :mod:`.messages`: the request facts read and the responses returned;
* :mod:`.admission`: who may log out (methods, cross-site checks, JSON or redirect);
* :mod:`.redirects`: the ``next`` parameter and its safety rule;
* :mod:`.cookies`: finding, taking out and expiring cookies;
* :mod:`.tokens`: bearer tokens, JWT claims and their verification;
* :mod:`.sessions`: session ids and what session records say (the subject);
* :mod:`.revocation`: the revocation state's keys and the process's mirror of it;
* :mod:`.credentials`: what a request carries and what its checks decide;
* :mod:`.checks`: what every ordinary request pays;
* :mod:`.ops`: the I/O the core asks a store for;
* :mod:`.responses`: the canned answers;
* :mod:`.parts`: what every flow shares, built once from the settings;
* one module per route's flows: :mod:`.logout` (the logout, everywhere and
  impersonation URIs), :mod:`.ending` (ending credentials, with :mod:`.everywhere` and
  :mod:`.impersonation`), :mod:`.backchannel` (OpenID Connect), :mod:`.copies` and
  :mod:`.settle` (every other request, before and after the app);
* :mod:`.router`: :class:`LogoutCore`, the thin router over them.
"""

from .checks import RequestChecks
from .credentials import Credentials, KnownSession, KnownToken, Verdict
from .ending import Asked, Ended, Ending
from .logout import Route
from .messages import RequestHead, Response
from .ops import (
    Check,
    Checked,
    Delete,
    Flow,
    Index,
    Read,
    Reading,
    StoreOps,
    StoreOutcome,
    Verify,
)
from .redirects import MAX_NEXT_LENGTH, is_safe_next
from .revocation import RevocationKeys, RevocationMirror, sha256_hex
from .router import LogoutCore
from .sessions import MAX_SESSION_ID_LENGTH
from .tokens import MAX_TOKEN_LENGTH, TokenClaims, bearer_token

__all__ = [
    "MAX_NEXT_LENGTH",
    "MAX_SESSION_ID_LENGTH",
    "MAX_TOKEN_LENGTH",
    "Asked",
    "Check",
    "Checked",
    "Credentials",
    "Delete",
    "Ended",
    "Ending",
    "Flow",
    "Index",
    "KnownSession",
    "KnownToken",
    "LogoutCore",
    "Read",
    "Reading",
    "RequestChecks",
    "RequestHead",
    "Response",
    "RevocationKeys",
    "RevocationMirror",
    "Route",
    "StoreOps",
    "StoreOutcome",
    "TokenClaims",
    "Verdict",
    "Verify",
    "bearer_token",
    "is_safe_next",
    "sha256_hex",
]
