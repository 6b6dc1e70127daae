"""Server-side sessions: the id in the cookie, and what the stored record says.

* The session id is the cookie's value, or with ``LOGOUT_SESSION_SECRET`` the payload
  of an itsdangerous-signed value (Flask-Session's ``SESSION_USE_SIGNER``).
* A record is decoded by ``LOGOUT_SESSION_FORMAT``: ``msgpack`` and ``json`` with msgspec
  (what Flask-Session 0.8 and starsessions write), ``auto`` trying msgpack then JSON,
  and ``pickle`` (Django's cache sessions) through an unpickler that refuses every
  global (the Python docs' "Restricting Globals"), so that only plain data loads.
  ``pickle.loads`` is never used.
* The subject (the user) is found at the dotted path ``LOGOUT_SESSION_SUBJECT``:
  ``_user_id`` (Flask-Login), ``_auth_user_id`` (Django), ``user.id`` (nested data).
"""

from __future__ import annotations

import io
import logging
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
from itsdangerous import BadSignature, Signer

from ..config import LogoutConfig

__all__ = [
    "MAX_RECORD_BYTES",
    "MAX_SESSION_ID_LENGTH",
    "SessionIds",
    "SessionRecord",
    "decode_record",
    "read_record",
]

logger = logging.getLogger("logout_middleware")

#: Longest session id accepted from a cookie, characters.
MAX_SESSION_ID_LENGTH = 512
#: Largest session record decoded, bytes; a larger one is treated as undecodable.
MAX_RECORD_BYTES = 1 << 20

_SESSION_ID = re.compile(rf"[\x21-\x7e]{{1,{MAX_SESSION_ID_LENGTH}}}\Z")


class SessionIds:
    """Turns cookie values into session ids.

    :param config: ``LOGOUT_SESSION_SECRET`` and ``LOGOUT_SESSION_SALT`` are used.
    """

    def __init__(self, config: LogoutConfig) -> None:
        self._signer = (
            Signer(config.session_secret, salt=config.session_salt, key_derivation="hmac")
            if config.session_secret
            else None
        )

    def cookie_value(self, sid: str) -> str:
        """The cookie value that carries session id ``sid`` (signed with a secret)."""
        if self._signer is None:
            return sid
        return self._signer.sign(sid).decode("ascii")

    def session_id(self, value: str | None) -> str | None:
        """The session id in cookie ``value``: printable ASCII, at most
        :data:`MAX_SESSION_ID_LENGTH` characters, and with a secret only when its
        signature holds; else None."""
        if not value:
            return None
        if self._signer is not None:
            try:
                value = self._signer.unsign(value).decode("ascii")
            except (BadSignature, UnicodeError):
                logger.info("session cookie with a bad signature ignored")
                return None
        return value if _SESSION_ID.match(value) else None


class _NoGlobals(pickle.Unpickler):
    """An unpickler that loads only built-in data (dicts, lists, strings, numbers)."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name} refused")


_MSGPACK = msgspec.msgpack.Decoder()
_JSON = msgspec.json.Decoder()


def _unpickle(raw: bytes) -> Any:
    return _NoGlobals(io.BytesIO(raw)).load()


_DECODERS: dict[str, tuple[Any, ...]] = {
    "msgpack": (_MSGPACK.decode,),
    "json": (_JSON.decode,),
    "auto": (_MSGPACK.decode, _JSON.decode),
    "pickle": (_unpickle,),
}


def decode_record(raw: bytes, session_format: str) -> Mapping[str, Any] | None:
    """The session data in ``raw``, a mapping, or None when it cannot be decoded as
    ``session_format`` (``auto``, ``msgpack``, ``json`` or ``pickle``), is not a mapping,
    or is larger than :data:`MAX_RECORD_BYTES`. Never raises for bad bytes."""
    if not raw or len(raw) > MAX_RECORD_BYTES:
        return None
    for decode in _DECODERS[session_format]:
        try:
            data = decode(raw)
        except Exception:  # noqa: S112 (any decoder error means "not this format")
            continue
        if isinstance(data, Mapping):
            return data
    return None


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """What a session record says about its session."""

    #: The subject at ``LOGOUT_SESSION_SUBJECT``, as text, or None.
    subject: str | None
    #: When the session began, seconds since the epoch (starsessions'
    #: ``__metadata__.created``), or None.
    created: float | None
    #: Who is impersonating the subject (``LOGOUT_SESSION_IMPERSONATOR``; of a list, such
    #: as django-hijack's ``hijack_history``, the last entry), or None.
    impersonator: str | None = None
    #: The impersonator's own session id (``LOGOUT_SESSION_ORIGINAL``), or None.
    original: str | None = None
    #: The OpenID provider's session id (``LOGOUT_SESSION_OIDC_SID``), or None.
    oidc_sid: str | None = None
    #: The raw ID token (``LOGOUT_SESSION_ID_TOKEN``), or None.
    id_token: str | None = None


def _at(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = data
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def read_record(raw: bytes | None, config: LogoutConfig) -> SessionRecord | None:
    """What ``raw`` (a record as stored, or None when there was none) says, or None when
    there is no record or it cannot be decoded."""
    if raw is None:
        return None
    data = decode_record(raw, config.session_format)
    if data is None:
        return None
    created = _at(data, ("__metadata__", "created"))
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        created = None
    original = _text_at(data, config.session_original)
    return SessionRecord(
        subject=_text_at(data, config.session_subject),
        created=float(created) if created is not None else None,
        impersonator=_text_at(data, config.session_impersonator, last=True),
        original=original if original is not None and _SESSION_ID.match(original) else None,
        oidc_sid=_text_at(data, config.session_oidc_sid),
        id_token=_text_at(data, config.session_id_token, limit=16384),
    )


def _text_at(
    data: Mapping[str, Any], path: str | None, *, last: bool = False, limit: int = 1024
) -> str | None:
    """The text (a string or an integer) at dotted ``path``; with ``last``, the last
    item of a list found there. None when absent, of another type, or over ``limit``
    characters."""
    if not path:
        return None
    value = _at(data, tuple(path.split(".")))
    if last and isinstance(value, list):
        value = value[-1] if value else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if 0 < len(text) <= limit else None
