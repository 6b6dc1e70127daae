"""What a request carries and what its checks decide: plain values.

A :class:`Credentials` is what a request's ``Cookie`` and ``Authorization`` headers carry,
as this process knows them (:class:`KnownSession`, :class:`KnownToken`: hashes, keys and
what their records or claims said); a :class:`Verdict` is what
:class:`~.checks.RequestChecks` decided about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .tokens import TokenClaims

__all__ = ["PASS", "Credentials", "KnownSession", "KnownToken", "Verdict"]


@dataclass(eq=False, slots=True)
class KnownSession:
    """A session this process has seen: its id (kept in memory only), hashes and keys,
    and what its record said when last read."""

    #: The session id, as the store names it (never logged or stored by us).
    sid: str
    #: SHA-256 hex of the id: how events and tombstones name it.
    hash: str
    #: The mirror's member for :attr:`hash`.
    member: int
    #: The store's keys of this session (``LOGOUT_SESSION_KEYS``); the first is read.
    keys: tuple[str, ...]
    #: The subject from the record's last read, or None.
    subject: str | None = None
    #: When the session began (starsessions' metadata), seconds since the epoch, or None.
    created: float | None = None
    #: ``time.monotonic()`` of the last read of the record; None when never read.
    read_at: float | None = None
    #: The OpenID provider's ``sid`` from the record's last read, or None.
    oidc_sid: str | None = None
    #: Whether this process's own logout deleted the record.
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class KnownToken:
    """A bearer token this process has seen: its hash, denylist key and claims."""

    hash: str
    member: int
    key: str
    #: Unverified claims, or None for an opaque token.
    claims: TokenClaims | None
    #: The mirror's member for the claims' ``sub``, or None without one.
    subject_member: int | None = None
    #: The hash of the claims' ``iss`` and ``sid`` (the OpenID provider session), or None.
    oidc_sid: str | None = None
    #: The mirror's member for :attr:`oidc_sid`, or None.
    oidc_sid_member: int | None = None
    #: Carried by the token cookie (``LOGOUT_TOKEN_COOKIE``) rather than ``Authorization``:
    #: revoked, it is taken out of the request and expired, not answered ``401``.
    in_cookie: bool = False


class Credentials:
    """What a request carries, as its framework may read it (a value: never changed
    once made; a plain slotted class, so that making one costs little on the
    per-request path).

    :param sessions: every distinct session id in the session cookie's copies
        (:func:`~.cookies.cookie_values`), the first copy's first.
    :param token: the token the request is checked by (the bearer token, else the token
        cookie's one value), or None.
    :param cookie_tokens: the token cookie's other values (beside a bearer token, or from
        a cookie sent more than once), checked after the main verdict.

    Derived once, read as plain attributes: ``session``, the first copy's session or
    None; ``copies``, every session when the cookie carries more than one, else empty;
    ``present``, whether there is anything to check; ``several``, whether any cookie
    came with more than one value to check.
    """

    __slots__ = ("cookie_tokens", "copies", "present", "session", "sessions", "several", "token")

    def __init__(
        self,
        sessions: tuple[KnownSession, ...] = (),
        token: KnownToken | None = None,
        cookie_tokens: tuple[KnownToken, ...] = (),
    ) -> None:
        self.sessions = sessions
        self.token = token
        self.cookie_tokens = cookie_tokens
        self.session = sessions[0] if sessions else None
        self.copies = sessions if len(sessions) > 1 else ()
        self.present = bool(sessions) or token is not None or bool(cookie_tokens)
        self.several = bool(self.copies) or bool(cookie_tokens)

    def __repr__(self) -> str:
        return (
            f"Credentials(sessions={len(self.sessions)}, token={self.token is not None}, "
            f"cookie_tokens={len(self.cookie_tokens)})"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a request after its checks.

    ``refuse``: True to answer with :attr:`LogoutCore.revoked` (the app is not
    called). ``unavailable``: True to answer ``503`` (the check failed and
    ``LOGOUT_ON_CHECK_ERROR`` is ``deny``). ``strip``: the revoked sessions whose
    cookie copies must be taken out of the request (and the cookie expired in the
    response, unless ``keep``). ``strip_token``: the same for the token cookie, whose
    token is revoked (a browser with a stale cookie still reaches the app, logged out,
    rather than getting ``401`` on every page). ``keep``: for a request whose session
    cookie carries more than one session id, the one left to the app (the first that
    is not revoked), or None; every other copy is taken out, so that every framework
    reads the same, checked, session.
    """

    refuse: bool = False
    unavailable: bool = False
    strip: tuple[KnownSession, ...] = ()
    strip_token: bool = False
    keep: KnownSession | None = None
    #: Whether the request's ``Cookie`` header must change before the app sees it
    #: (derived: an attribute, not a call, on the per-request path).
    rewrites: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        rewrites = bool(self.strip) or self.strip_token or self.keep is not None
        object.__setattr__(self, "rewrites", rewrites)


#: The verdict of a request that passes untouched.
PASS = Verdict()
