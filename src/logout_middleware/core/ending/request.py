"""What an ending is asked to end, who asked, and what came of it: plain values.

An :class:`Ending` says what ends (a session and its copies, a token and the token
cookie's, a subject), within which schemes, why, and who asked (:class:`Asked`); an
:class:`Ended` is the result. :class:`Tokens` and :class:`Scope` are what the flow learns
and decides on the way (:mod:`.flow`), handed to :mod:`.event` and :mod:`.writes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...events import LogoutEvent, Reason
from ..credentials import KnownSession
from ..schemes import ALL_SCHEMES, Scheme
from ..tokens import TokenClaims

__all__ = ["Asked", "Ended", "Ending", "Scope", "Tokens"]


@dataclass(frozen=True, slots=True)
class Asked:
    """Who asked for an ending, for its event: the HTTP request (``method`` empty for an
    operator's revocation), where it goes next, and the OpenID provider's part."""

    method: str = ""
    path: str = ""
    client: str | None = None
    user_agent: str | None = None
    redirect: str | None = None
    #: RP-initiated logout: ``redirected`` or ``unavailable``; None when not asked.
    end_session: str | None = None


@dataclass(frozen=True, slots=True)
class Ending:
    """What ends.

    ``session_id``: the session (its cookie's first copy); ``copies``: further session
    ids its cookie carries, ending with it. ``token``: the bearer token, and
    ``cookie_token`` the token in ``LOGOUT_TOKEN_COOKIE``: without ``token`` (or equal
    to it) it is the token; else a second credential ending with the bearer scheme, its
    event in :attr:`Ended.more`. ``subject``: given by an operator (else learned).
    ``everywhere``: every session in the subject's index and every JWT of the subject
    issued up to now. ``impersonation_only``: only what impersonates (a JWT with
    ``act``, a session whose record names an impersonator). ``schemes``: ``session``
    and/or ``bearer``.
    """

    session_id: str | None = None
    copies: tuple[str, ...] = ()
    token: bytes | None = None
    cookie_token: bytes | None = None
    subject: str | None = None
    everywhere: bool = False
    impersonation_only: bool = False
    schemes: tuple[Scheme, ...] = ALL_SCHEMES
    reason: Reason = "user_logout"
    asked: Asked = field(default_factory=Asked)


@dataclass(frozen=True, slots=True)
class Ended:
    """The result of ending credentials: the event (complete, or None when refused), and
    why it was refused (then nothing was changed): a subject-wide logout without a trusted
    subject, or an impersonation-only logout of a request that is not impersonating."""

    event: LogoutEvent | None
    no_subject: bool = False
    not_impersonating: bool = False
    #: The impersonator's own session, to set the session cookie back to.
    restore: KnownSession | None = None
    #: The raw ID token from the session record (``LOGOUT_SESSION_ID_TOKEN``), or None.
    id_token: str | None = None
    #: The events of further contexts ended with it: a token in ``LOGOUT_TOKEN_COOKIE``
    #: that differs from the request's bearer token (one audit entry each).
    more: tuple[LogoutEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Tokens:
    """The request's tokens, sorted: ``token`` is the one the ending is about, ``second``
    the token cookie's when it differs (each with its claims, verified when a key is
    configured)."""

    token: bytes | None
    claims: TokenClaims | None
    second: bytes | None
    second_claims: TokenClaims | None
    #: Whether ``token`` came from the token cookie.
    from_cookie: bool


@dataclass(frozen=True, slots=True)
class Scope:
    """What ends, decided: the session, the token, the second token; the schemes that
    end; the cookies a logout expires; who impersonates, by the session and the token."""

    session: bool
    token: bool
    second: bool
    schemes: tuple[Scheme, ...]
    expired: tuple[str, ...]
    session_impersonator: str | None
    token_impersonator: str | None
