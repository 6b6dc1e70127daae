"""Ending an impersonation: whether the impersonator's own session comes back.

An impersonated session whose record names the impersonator
(``LOGOUT_SESSION_IMPERSONATOR``) and the impersonator's own session
(``LOGOUT_SESSION_ORIGINAL``) is, when it ends, replaced by that original session, as
KeyHippo's impersonation logout returns the admin to their own context: only when the
original exists, is not revoked, and belongs to the recorded impersonator. An RFC 8693
token with an ``act`` claim ends as ``impersonation_end``; the actor's own tokens stay
valid.
"""

from __future__ import annotations

from .credentials import KnownSession
from .ops import Flow, Read, Reading
from .parts import Parts
from .sessions import SessionRecord, read_record

__all__ = ["original_session"]


def original_session(
    parts: Parts, session: KnownSession, record: SessionRecord | None, impersonator: str
) -> Flow[KnownSession | None]:
    """The impersonator's own session to restore when ``session`` (impersonating, its
    ``record`` naming ``impersonator``) ends, or None: read with its tombstone in one
    round trip, and restored only when its record exists, no tombstone (in Redis or in
    the mirror) revokes it, and its subject is ``impersonator``."""
    original = record.original if record is not None else None
    if original is None or original == session.sid:
        return None
    candidate = parts.checks.known_session(original)
    found: Reading | None = yield Read(gets=(candidate.keys[0], parts.keys.session(candidate.hash)))
    mirror = parts.mirror
    if found is None or found.values[1] is not None or mirror is None:
        return None
    if candidate.member in mirror.state.sessions:
        return None
    owner = read_record(found.values[0], parts.config)
    return candidate if owner is not None and owner.subject == impersonator else None
