"""The sans-IO core: every decision of the middleware, with no sockets and no framework.

One concept a module; :class:`LogoutCore` (in :mod:`.plan`) is the one object the
adapters talk to:

* :mod:`.messages`: the request facts read and the responses returned;
* :mod:`.admission`: who may log out (methods, cross-site checks, JSON or redirect);
* :mod:`.redirects`: the ``next`` parameter and its safety rule;
* :mod:`.cookies`: finding, taking out and expiring cookies;
* :mod:`.tokens`: bearer tokens, JWT claims and their verification;
* :mod:`.sessions`: session ids and what session records say (the subject);
* :mod:`.revocation`: the revocation state's keys and the process's mirror of it;
* :mod:`.checks`: what every ordinary request pays;
* :mod:`.ops`: the I/O the core asks a store for;
* :mod:`.plan`: the logout itself.
"""

from .checks import KnownSession, KnownToken, RequestChecks, Verdict
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
from .plan import Ended, LogoutCore, Route
from .redirects import MAX_NEXT_LENGTH, is_safe_next
from .revocation import RevocationKeys, RevocationMirror, sha256_hex
from .sessions import MAX_SESSION_ID_LENGTH
from .tokens import MAX_TOKEN_LENGTH, TokenClaims, bearer_token

__all__ = [
    "MAX_NEXT_LENGTH",
    "MAX_SESSION_ID_LENGTH",
    "MAX_TOKEN_LENGTH",
    "Check",
    "Checked",
    "Delete",
    "Ended",
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
