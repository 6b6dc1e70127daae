"""The one-round-trip requests of the core, each described once: the commands to send,
how to read the replies, and what a failure means.

:class:`Query` is that description; :data:`READ`, :data:`CHECK`, :data:`CLAIM`,
:data:`INDEX` and :data:`DELETE` answer the core's :class:`~.core.ops.Read`,
:class:`~.core.ops.Check`, :class:`~.core.ops.Claim`, :class:`~.core.ops.Index` and
:class:`~.core.ops.Delete`. A query's ``send`` calls the client's own methods, which
return the replies on redis-py and an awaitable of them on ``redis.asyncio``: the
synchronous store calls it, the asynchronous one awaits it, and that is the only
difference. Every query's failure means the same thing: Redis could not answer, the
store logs it (throttled) and answers None.

These sit on the hot path (a revocation check the mirror could not answer, on every
such request), so they are plain functions rather than :mod:`.steps` flows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..core.ops import Check, Checked, Claim, Delete, Index, Read, Reading

__all__ = ["CHECK", "CLAIM", "DELETE", "INDEX", "READ", "Query"]

_R = TypeVar("_R")
_A = TypeVar("_A")


@dataclass(frozen=True, slots=True)
class Query(Generic[_R, _A]):
    """One request answered in one round trip.

    :param send: ``send(client, request)`` sends the request's commands (one pipeline,
        or one command) on ``client`` and returns what the client's call returns: the
        replies, or on ``redis.asyncio`` an awaitable of them.
    :param parse: ``parse(request, replies)``: the answer the core is sent.
    :param raw: whether it runs on the store's client that does not decode replies
        (session records are bytes).
    """

    send: Callable[[Any, _R], Any]
    parse: Callable[[_R, Any], _A]
    raw: bool = False


def _send_read(client: Any, request: Read) -> Any:
    pipe = client.pipeline(transaction=False)
    for key in request.gets:
        pipe.get(key)
    for key in request.ranges:
        pipe.zrangebyscore(key, request.now, "+inf")
    return pipe.execute()


def _reading(request: Read, results: Sequence[Any]) -> Reading:
    count = len(request.gets)
    members = tuple(
        tuple(m.decode() if isinstance(m, bytes) else str(m) for m in found)
        for found in results[count:]
    )
    values = tuple(v.encode() if isinstance(v, str) else v for v in results[:count])
    return Reading(values=values, members=members)


def _send_check(client: Any, request: Check) -> Any:
    pipe = client.pipeline(transaction=False)
    if request.session_key is not None:
        pipe.exists(request.session_key)
    if request.token_key is not None:
        pipe.exists(request.token_key)
    if request.not_before_key is not None:
        pipe.get(request.not_before_key)
    if request.oidc_sid_key is not None:
        pipe.exists(request.oidc_sid_key)
    return pipe.execute()


def _checked(request: Check, results: Sequence[Any]) -> Checked:
    replies = iter(results)
    session = bool(next(replies)) if request.session_key is not None else False
    token = bool(next(replies)) if request.token_key is not None else False
    not_before = 0.0
    if request.not_before_key is not None:
        raw = next(replies)
        with contextlib.suppress(TypeError, ValueError):
            not_before = float(raw) if raw is not None else 0.0
    oidc_sid = bool(next(replies)) if request.oidc_sid_key is not None else False
    return Checked(
        session_revoked=session,
        token_revoked=token,
        not_before=not_before,
        oidc_sid_revoked=oidc_sid,
    )


def _send_claim(client: Any, request: Claim) -> Any:
    return client.set(request.key, b"1", nx=True, ex=request.ttl)


def _claimed(_request: Claim, reply: Any) -> bool:
    return bool(reply)


def _send_index(client: Any, request: Index) -> Any:
    pipe = client.pipeline(transaction=False)
    pipe.zadd(request.key, {request.member: request.expires_at})
    pipe.zremrangebyscore(request.key, "-inf", request.now)
    pipe.expire(request.key, request.ttl)
    if request.previous is not None:
        pipe.zrem(request.previous, request.member)
    return pipe.execute()


def _send_delete(client: Any, request: Delete) -> Any:
    return client.delete(*request.keys)


def _nothing(_request: object, _replies: Any) -> None:
    return None


#: ``GET`` each of ``gets``, ``ZRANGE ... BYSCORE`` each of ``ranges``, on the raw
#: client: a :class:`~.core.ops.Reading`.
READ: Query[Read, Reading] = Query(_send_read, _reading, raw=True)
#: ``EXISTS`` / ``GET`` of the keys asked: a :class:`~.core.ops.Checked`.
CHECK: Query[Check, Checked] = Query(_send_check, _checked)
#: ``SET key 1 NX EX ttl``: True when the key was new, False when it existed.
CLAIM: Query[Claim, bool] = Query(_send_claim, _claimed)
#: ``ZADD``, ``ZREMRANGEBYSCORE``, ``EXPIRE`` (and ``ZREM`` from the former index): None.
INDEX: Query[Index, None] = Query(_send_index, _nothing)
#: ``DEL`` of the re-created records: None.
DELETE: Query[Delete, None] = Query(_send_delete, _nothing)
