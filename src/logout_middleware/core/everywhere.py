"""Logging out everywhere: every session of a subject, found through its index.

Sessions are indexed under their subject as their records are read
(:mod:`.settle`): the sorted set ``logout:sessions-of:<sha256(subject)>``, scored by
when each entry expires. Logging out everywhere ends every member, and records the
subject's not-before so that every JWT issued up to now is refused (Spring Session's
``FindByIndexNameSessionRepository`` plays the same part for Spring Security).
"""

from __future__ import annotations

from .ops import Flow, Read, Reading
from .parts import Parts

__all__ = ["Prefetched", "other_sessions", "reading_with_index"]

#: A subject and the members of its index, read in the same round trip as the session.
Prefetched = tuple[str, tuple[str, ...]]


def reading_with_index(parts: Parts, record_key: str, subject: str | None, now: float) -> Read:
    """The read of a session's record (``record_key``), with the index of ``subject``
    (the subject this process last saw for it, or None) in the same round trip."""
    ranges = (parts.keys.index(subject),) if subject is not None else ()
    return Read(gets=(record_key,), ranges=ranges, now=now)


def other_sessions(
    parts: Parts, subject: str, own: str | None, prefetched: Prefetched | None, now: float
) -> Flow[list[str]]:
    """The SHA-256 hashes of every session in ``subject``'s index but ``own``: from
    ``prefetched`` when it was read for this subject, else read now (one round trip).
    Empty when Redis did not answer."""
    members: tuple[str, ...] | None = None
    if prefetched is not None and prefetched[0] == subject:
        members = prefetched[1]
    else:
        index: Reading | None = yield Read(ranges=(parts.keys.index(subject),), now=now)
        members = index.members[0] if index is not None else None
    return [h for h in members if h != own] if members is not None else []
