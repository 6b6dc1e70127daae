"""The drivers of the core's flows: :func:`drive` on a :class:`~.RedisStore`,
:func:`adrive` on an :class:`~.AsyncRedisStore`.

Which request goes where is decided once, by :func:`route`: a JWT verification to the
verifier, a request for the OpenID provider to the provider, every Redis request to the
store method of its name. The two drivers only call what it names, blocking or
awaited (and, on asyncio, off the event loop for what may fetch over the network).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..core.oidc import LogoutTokenError, OIDCProvider
from ..core.ops import (
    Check,
    Claim,
    Delete,
    Discover,
    Flow,
    Index,
    Read,
    StoreOps,
    Verify,
    VerifyLogoutToken,
)

if TYPE_CHECKING:
    from ..core.tokens import TokenVerifier
    from .aio import AsyncRedisStore
    from .sync import RedisStore

__all__ = ["adrive", "drive", "route"]

_T = TypeVar("_T")

#: Where a request is carried out: in the driver's thread, in a worker thread (asyncio
#: only: it may fetch over the network), or by the store (awaited on asyncio).
How = Literal["inline", "thread", "store"]

#: The store method that carries out each Redis request.
STORE_METHODS: dict[type, str] = {
    StoreOps: "execute",
    Read: "read",
    Check: "check",
    Claim: "claim",
    Index: "index",
    Delete: "delete",
}


def _provider_call(request: Any, provider: OIDCProvider | None) -> Any:
    """The answer to a request for the OpenID provider (blocking)."""
    if provider is None:
        return (
            LogoutTokenError("no OpenID provider configured")
            if isinstance(request, VerifyLogoutToken)
            else None
        )
    if isinstance(request, VerifyLogoutToken):
        return provider.verify_logout_token(request.token)
    return provider.end_session_endpoint()


def _nothing() -> None:
    return None


def route(
    request: Any,
    store: RedisStore | AsyncRedisStore | None,
    verifier: TokenVerifier,
    provider: OIDCProvider | None,
) -> tuple[Callable[..., Any], tuple[Any, ...], How]:
    """Who carries out ``request`` (one a core flow yielded, :mod:`.core.ops`): the
    callable, its arguments, and how. Without a store, Redis requests get None."""
    kind = type(request)
    if kind is Verify:
        return verifier.verify, (request.token,), "thread" if verifier.fetches else "inline"
    if kind is VerifyLogoutToken or kind is Discover:
        return _provider_call, (request, provider), "thread"
    if store is None:
        return _nothing, (), "inline"
    return getattr(store, STORE_METHODS[kind]), (request,), "store"


def drive(
    flow: Flow[_T],
    store: RedisStore | None,
    verifier: TokenVerifier,
    provider: OIDCProvider | None = None,
) -> _T:
    """Run a core flow to its end on a synchronous store; return its result.

    Each request the flow yields is carried out here (a JWT verification, a call to the
    OpenID provider, or one Redis round trip) and its result sent back. Without a store,
    Redis requests get None.

    :raises BaseException: whatever the flow raises.
    """
    result: Any = None
    try:
        while True:
            call, args, _how = route(flow.send(result), store, verifier, provider)
            result = call(*args)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def adrive(
    flow: Flow[_T],
    store: AsyncRedisStore | None,
    verifier: TokenVerifier,
    provider: OIDCProvider | None = None,
) -> _T:
    """:func:`drive` for the asynchronous store; a JWT verification that may fetch a
    JWKS, and every call to the OpenID provider, run in a worker thread, off the event
    loop."""
    result: Any = None
    try:
        while True:
            call, args, how = route(flow.send(result), store, verifier, provider)
            if how == "store":
                result = await call(*args)
            elif how == "thread":
                result = await asyncio.to_thread(call, *args)
            else:
                result = call(*args)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
