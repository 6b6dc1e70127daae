"""The writes an ending plans: one transaction, every write idempotent.

Deleted: the session's records (``LOGOUT_SESSION_KEYS``), those of the other ended
sessions this process knows, the tokens' records (``LOGOUT_TOKEN_KEYS``) and, everywhere,
the subject's index. Set: a tombstone per ended session, a denylist entry per revoked
token, the subject's not-before. The audit entries are appended in the same transaction
(:class:`~logout_middleware.core.ops.StoreOps`; on a Redis Cluster, after the key writes).
"""

from __future__ import annotations

from ...events import LogoutEvent
from ..credentials import KnownSession
from ..ops import StoreOps
from ..parts import Parts
from ..revocation import oidc_sid_hash
from ..tokens import token_records
from .request import Ending, Scope, Tokens

__all__ = ["planned_writes"]


def planned_writes(
    parts: Parts,
    ending: Ending,
    scope: Scope,
    session: KnownSession | None,
    tokens: Tokens,
    event: LogoutEvent,
    more: tuple[LogoutEvent, ...],
    others: list[str],
    now: float,
) -> StoreOps:
    """The ending's one transaction (:class:`~logout_middleware.core.ops.StoreOps`):
    records deleted, tombstones, denylist entries and the subject's not-before set,
    index entries removed, the audit entries appended. The process's mirror and session cache
    learn of it before it is sent."""
    config, keys, checks = parts.config, parts.keys, parts.checks
    ends_session = scope.session and session is not None
    subject = event.subject
    delete: list[str] = []
    sets: list[tuple[str, str, int]] = []
    tombstoned = [session.hash] if ends_session and session is not None else []
    tombstoned += others
    if ends_session and session is not None:
        delete += session.keys
    forgotten = checks.known(others)
    delete += [key for known in forgotten for key in known.keys]
    if ends_session and session is not None:
        forgotten.append(session)
    revoked: list[str] = []
    if event.tokens_ended and event.token_hash is not None and event.token_ttl is not None:
        sets.append((keys.token(event.token_hash), "1", event.token_ttl))
        revoked.append(event.token_hash)
    token = tokens.token
    records = token_records(token, config.token_keys) if scope.token and token else ()
    second = more[0] if more else None
    if second is not None and tokens.second is not None:
        records += token_records(tokens.second, config.token_keys)
        if second.tokens_ended and second.token_hash and second.token_ttl:
            revoked.append(second.token_hash)
            sets.append((keys.token(second.token_hash), "1", second.token_ttl))
    sets += [(keys.session(digest), "1", config.session_ttl) for digest in tombstoned]
    not_before = event.not_before
    if not_before is not None and subject is not None:
        sets.append((keys.not_before(subject), repr(now), config.token_max_ttl))
    unindex: list[tuple[str, str]] = []
    if ends_session and session is not None:
        if session.subject is not None:
            unindex.append((keys.index(session.subject), session.hash))
        if session.oidc_sid is not None and parts.provider is not None:
            sid_key = keys.oidc_index(oidc_sid_hash(parts.provider.issuer, session.oidc_sid))
            unindex.append((sid_key, session.hash))
    everywhere = ending.everywhere and "session" in scope.schemes and subject is not None
    ops = StoreOps(
        delete=tuple(dict.fromkeys(delete)),
        sets=tuple(sets),
        unindex=tuple(unindex),
        discard=((keys.index(subject),) if everywhere and subject is not None else ())
        + tuple(dict.fromkeys(records)),
        stream=config.events_stream or None,
        maxlen=config.events_maxlen,
        written_prefix=keys.written_prefix,
        entry=tuple(event.to_fields().items()),
        extra_entries=tuple(tuple(e.to_fields().items()) for e in more),
    )
    # Known before the transaction is sent: a request of this process that saves the
    # session after the DEL sees the tombstone when it finishes (and deletes again).
    if parts.mirror is not None:
        parts.mirror.add(
            tokens=revoked,
            sessions=tombstoned,
            subject=subject if not_before is not None else None,
            not_before=not_before,
        )
    # Deleted by this transaction (or by its replay from the backlog): this process's
    # follower, which may see the entry before the reply arrives, need not again.
    for known in forgotten:
        checks.forget(known)
    return ops
