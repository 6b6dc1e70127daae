"""Revocation state: its Redis keys, and the process-local mirror that answers for it.

Three kinds of state, each a Redis string with a TTL, all written in the transaction
of the logout that makes them, next to the audit entry that announces them:

=====================  ===========================================  ====================
kind                   key                                          lives
=====================  ===========================================  ====================
revoked token          ``LOGOUT_DENYLIST_PREFIX`` + SHA-256(token)  token's ``exp``
session tombstone      ``<prefix>revoked-session:`` + SHA-256(id)   ``LOGOUT_SESSION_TTL``
subject not-before     ``<prefix>not-before:`` + SHA-256(subject)   ``LOGOUT_TOKEN_MAX_TTL``
=====================  ===========================================  ====================

(``<prefix>`` is ``LOGOUT_KEY_PREFIX``, ``logout:`` by default.) The session index, a
sorted set per subject at ``<prefix>sessions-of:`` + SHA-256(subject), holds the hashes
of the subject's session ids scored by when each entry expires. Each audit entry's
write-once marker is ``<prefix>written:{<stream>}:<entry id>`` (the stream's name, or its
hash tag, as the marker's hash tag: the same Redis Cluster slot as the stream).

A :class:`RevocationMirror` is one process's copy of the three kinds, as 64-bit prefixes
of the hashes (the not-before times as values): loaded by ``SCAN`` and kept current by
following the audit stream (:meth:`RevocationMirror.absorb`). The store does the I/O;
this module only decides.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import LogoutConfig

__all__ = [
    "MirrorSnapshot",
    "RevocationKeys",
    "RevocationMirror",
    "member",
    "oidc_sid_hash",
    "sha256_hex",
]


def sha256_hex(value: bytes) -> str:
    """The lower-case SHA-256 hex digest of ``value`` (64 characters).

    How session ids, tokens and subjects appear in keys, events and logs: never raw.
    """
    return hashlib.sha256(value).hexdigest()


def oidc_sid_hash(issuer: str, sid: str) -> str:
    """How a provider session is named in keys and events: SHA-256 of its issuer and
    ``sid`` (a ``sid`` is unique per issuer only)."""
    return sha256_hex(f"{issuer.rstrip('/')}\x00{sid}".encode())


def member(hex_digest: str | bytes) -> int:
    """The mirror's member for a SHA-256 hex digest: its first 64 bits.

    :raises ValueError: when ``hex_digest`` does not start with 16 hex digits.
    """
    head = hex_digest[:16]
    if len(head) != 16:
        raise ValueError("not a SHA-256 hex digest")
    return int(head, 16)


def _members(digests: Iterable[str]) -> list[int]:
    """The members of the valid SHA-256 hex digests among ``digests``, in order;
    anything else (a stray key under our prefix, a foreign stream entry) is skipped."""
    found: list[int] = []
    for digest in digests:
        if len(digest) == 64:
            with contextlib.suppress(ValueError):
                found.append(member(digest))
    return found


class RevocationKeys:
    """The Redis key names of the revocation state (see the module's table).

    :param config: ``LOGOUT_DENYLIST_PREFIX`` and ``LOGOUT_KEY_PREFIX`` are used.
    """

    def __init__(self, config: LogoutConfig) -> None:
        self.token_prefix = config.denylist_prefix
        self.session_prefix = config.key_prefix + "revoked-session:"
        self.not_before_prefix = config.key_prefix + "not-before:"
        self.index_prefix = config.key_prefix + "sessions-of:"
        self.oidc_sid_prefix = config.key_prefix + "revoked-oidc-sid:"
        self.oidc_index_prefix = config.key_prefix + "sessions-of-oidc-sid:"
        self.oidc_jti_prefix = config.key_prefix + "oidc-jti:"
        #: Prefix of the audit entries' write-once markers (see the store).
        self.written_prefix = config.key_prefix + "written:"

    def token(self, token_hash: str) -> str:
        """The denylist key of a token, by its SHA-256 hex."""
        return self.token_prefix + token_hash

    def session(self, session_hash: str) -> str:
        """The tombstone key of a session, by the SHA-256 hex of its id."""
        return self.session_prefix + session_hash

    def not_before(self, subject: str) -> str:
        """The not-before key of a subject."""
        return self.not_before_prefix + sha256_hex(subject.encode())

    def index(self, subject: str) -> str:
        """The session index (sorted set) of a subject."""
        return self.index_prefix + sha256_hex(subject.encode())

    def oidc_sid(self, sid_hash: str) -> str:
        """The revocation key of an OpenID provider session (:func:`oidc_sid_hash`): JWTs
        carrying that ``sid`` are refused."""
        return self.oidc_sid_prefix + sid_hash

    def oidc_index(self, sid_hash: str) -> str:
        """The index (sorted set) of the local sessions signed in with a provider session."""
        return self.oidc_index_prefix + sid_hash

    def oidc_jti(self, issuer: str, jti: str) -> str:
        """The key that records a logout token's ``jti`` until its ``exp``."""
        return self.oidc_jti_prefix + sha256_hex(f"{issuer}\x00{jti}".encode())

    def oidc_sid_glob(self) -> str:
        """``SCAN MATCH`` pattern for the revoked provider sessions."""
        return _glob(self.oidc_sid_prefix)

    def globs(self) -> tuple[str, str, str]:
        """``SCAN MATCH`` patterns for the denylist, the tombstones and the not-befores."""
        return (
            _glob(self.token_prefix),
            _glob(self.session_prefix),
            _glob(self.not_before_prefix),
        )


def _glob(prefix: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"


#: How long this process's own revocations survive a reload that did not see them, s.
RECENT_KEEP = 60.0


def _merge(into: MirrorSnapshot, other: MirrorSnapshot) -> None:
    into.tokens |= other.tokens
    into.sessions |= other.sessions
    into.oidc_sids |= other.oidc_sids
    for at, value in other.not_before.items():
        into.not_before[at] = max(value, into.not_before.get(at, 0.0))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


@dataclass
class MirrorSnapshot:
    """The whole revocation state as a mirror holds it, being loaded."""

    tokens: set[int] = field(default_factory=set)
    sessions: set[int] = field(default_factory=set)
    not_before: dict[int, float] = field(default_factory=dict)
    #: Revoked OpenID provider sessions (:func:`oidc_sid_hash`).
    oidc_sids: set[int] = field(default_factory=set)


class RevocationMirror:
    """One process's copy of the revocation state (about 80 bytes per revoked token or
    session, 90 per subject, as measured in benchmarks/).

    Only a *live* mirror (complete, and its follower connected) answers "not revoked";
    a member it holds is revoked whether it is live or not, because this process wrote
    it or saw it in the stream. Members are removed only by a reload, so between reloads
    the mirror errs towards refusing.

    :param keys: the key names, to find the hash in a key.
    """

    def __init__(self, keys: RevocationKeys) -> None:
        self.keys = keys
        self.state = MirrorSnapshot()
        #: True while the mirror is complete and its follower connected.
        self.live = False
        # This process's own recent writes, kept across a reload until the stream has
        # surely delivered them: (time.monotonic(), snapshot holding only them).
        self._recent: deque[tuple[float, MirrorSnapshot]] = deque()

    # -- questions ---------------------------------------------------------------

    def token_cleared(self, token_member: int) -> bool:
        """True when the token is certainly not revoked; False means "ask Redis"."""
        return self.live and token_member not in self.state.tokens

    def token_revoked(self, token_member: int) -> bool | None:
        """True when the token is revoked (this process wrote it, or saw it in the
        stream or in Redis at the last load), False when it certainly is not, None when
        only Redis can say. A revocation that expired in Redis is still held until the
        next reload (at most five minutes), erring towards refusing."""
        if token_member in self.state.tokens:
            return True
        return False if self.live else None

    def session_revoked(self, session_member: int) -> bool | None:
        """True when the session is revoked, False when it certainly is not, None when
        only Redis can say (the mirror is not live)."""
        if session_member in self.state.sessions:
            return True
        return False if self.live else None

    def oidc_sid_revoked(self, sid_member: int) -> bool | None:
        """Whether a provider session is revoked (True, False), or None when only Redis
        can say."""
        if sid_member in self.state.oidc_sids:
            return True
        return False if self.live else None

    def not_before(self, subject: str) -> float | None:
        """The subject's not-before time (0.0 when it has none), or None when only Redis
        can say."""
        return self.not_before_of(member(sha256_hex(subject.encode())))

    def not_before_of(self, subject_member: int) -> float | None:
        """:meth:`not_before` by the member of the subject's hash (cheaper per request)."""
        found = self.state.not_before.get(subject_member)
        if found is not None:
            return found
        return 0.0 if self.live else None

    # -- this process's own writes -------------------------------------------------

    def add(
        self,
        *,
        tokens: Iterable[str] = (),
        sessions: Iterable[str] = (),
        subject: str | None = None,
        not_before: float | None = None,
        oidc_sids: Iterable[str] = (),
    ) -> None:
        """Record revocations this process is about to write (hashes as hex), before its
        transaction is sent: a request that finishes after the write then sees them."""
        own = MirrorSnapshot(
            tokens=set(_members(tokens)),
            sessions=set(_members(sessions)),
            oidc_sids=set(_members(oidc_sids)),
        )
        if subject is not None and not_before is not None:
            self._not_before(own, subject, not_before)
        _merge(self.state, own)
        now = time.monotonic()
        self._recent.append((now, own))
        while self._recent and self._recent[0][0] < now - RECENT_KEEP:
            self._recent.popleft()

    # -- following the audit stream --------------------------------------------------

    def absorb(
        self, reply: Any, last: Any, into: MirrorSnapshot | None = None
    ) -> tuple[Any, list[int]]:
        """Take in every entry of an ``XREAD`` reply (a list of ``(stream, entries)``, or
        None), into the mirror's own state unless ``into`` is given.

        :returns: the id of the reply's last entry (``last`` when it has none), and the
            members of sessions that were ended, so that a process that knows their ids
            can delete their records.
        """
        state = self.state if into is None else into
        ended: list[int] = []
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                last = entry_id
                ended += self.absorb_fields(fields, state)
        return last, ended

    def absorb_fields(self, fields: Mapping[Any, Any], state: MirrorSnapshot) -> list[int]:
        """Take in one audit entry (field names bytes or text); return the members of the
        sessions it ended."""
        get = fields.get
        state.tokens.update(_members((_text(get(b"token_hash") or get("token_hash")),)))
        ended = _members(
            (
                _text(get(b"session_id_hash") or get("session_id_hash")),
                *_text(get(b"ended_sessions") or get("ended_sessions")).split(","),
            )
        )
        state.sessions.update(ended)
        state.oidc_sids.update(_members((_text(get(b"oidc_sid_hash") or get("oidc_sid_hash")),)))
        subject = _text(get(b"subject") or get("subject"))
        not_before = _text(get(b"not_before") or get("not_before"))
        if subject and not_before:
            with contextlib.suppress(ValueError):
                self._not_before(state, subject, float(not_before))
        return ended

    def replace(self, snapshot: MirrorSnapshot) -> None:
        """Make ``snapshot`` the whole state and the mirror live; members whose keys
        expired since the last load are dropped here. This process's writes of the last
        :data:`RECENT_KEEP` seconds are kept, whether or not the load saw them."""
        horizon = time.monotonic() - RECENT_KEEP
        while self._recent and self._recent[0][0] < horizon:
            self._recent.popleft()
        for _at, own in self._recent:
            _merge(snapshot, own)
        self.state = snapshot
        self.live = True

    def load(
        self,
        snapshot: MirrorSnapshot,
        tokens: Iterable[Any],
        sessions: Iterable[Any],
        not_before: Iterable[tuple[Any, Any]],
        oidc_sids: Iterable[Any] = (),
    ) -> None:
        """Add ``SCAN`` results to ``snapshot``: denylist and tombstone keys,
        ``(not-before key, value)`` pairs, and revoked provider session keys (bytes or
        text)."""
        keys = self.keys
        start = len(keys.oidc_sid_prefix)
        snapshot.oidc_sids.update(_members(_text(k)[start:] for k in oidc_sids))
        start = len(keys.token_prefix)
        snapshot.tokens.update(_members(_text(k)[start:] for k in tokens))
        start = len(keys.session_prefix)
        snapshot.sessions.update(_members(_text(k)[start:] for k in sessions))
        start = len(keys.not_before_prefix)
        for key, value in not_before:
            digest = _text(key)[start:]
            try:
                found = float(_text(value))
                at = member(digest) if len(digest) == 64 else None
            except ValueError:
                continue
            if at is not None:
                snapshot.not_before[at] = max(found, snapshot.not_before.get(at, 0.0))

    @staticmethod
    def _not_before(state: MirrorSnapshot, subject: str, at: float) -> None:
        key = member(sha256_hex(subject.encode()))
        state.not_before[key] = max(at, state.not_before.get(key, 0.0))
