"""Server-side sessions: session ids from cookies, and what stored records say.

Records are made the way the session libraries write them: Flask-Session 0.8 (msgpack
by msgspec), starsessions (JSON with ``__metadata__``), Django's cache sessions (a
pickled dict). A pickle that names any global must be refused without running it.
"""

from __future__ import annotations

import copyreg
import datetime
import json
import os
import pickle
import shlex
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from itsdangerous import Signer

from logout_middleware.config import LogoutConfig, SessionFormat
from logout_middleware.core.sessions import (
    MAX_RECORD_BYTES,
    MAX_SESSION_ID_LENGTH,
    SessionIds,
    SessionRecord,
    decode_record,
    read_record,
)

T = 1_700_000_000.0

#: What Flask-Session 0.8 stores for a Flask-Login user (``session_interface.serializer``
#: is a ``msgspec.msgpack.Encoder``).
FLASK_DATA = {"_permanent": True, "_user_id": "42", "_fresh": True, "_id": "f" * 128}
FLASK_RECORD = msgspec.msgpack.encode(FLASK_DATA)
#: What starsessions stores: the session as JSON, with its metadata inside.
STAR_DATA = {
    "user": {"id": 7, "name": "ada"},
    "__metadata__": {"lifetime": 1209600, "created": T, "last_access": T + 5},
}
STAR_RECORD = json.dumps(STAR_DATA).encode()
#: What Django's cache session backend stores: the session dict, pickled.
DJANGO_DATA = {"_auth_user_id": "7", "_auth_user_backend": "django.contrib.auth.backends.X"}
DJANGO_RECORD = pickle.dumps(DJANGO_DATA)


# -- decode_record ---------------------------------------------------------------------

DECODE_CASES: list[tuple[str, bytes, str, dict[str, Any] | None]] = [
    ("msgpack-flask", FLASK_RECORD, "msgpack", FLASK_DATA),
    ("msgpack-under-auto", FLASK_RECORD, "auto", FLASK_DATA),
    ("msgpack-under-json", FLASK_RECORD, "json", None),
    ("msgpack-under-pickle", FLASK_RECORD, "pickle", None),
    ("json-starsessions", STAR_RECORD, "json", STAR_DATA),
    ("json-under-auto", STAR_RECORD, "auto", STAR_DATA),
    ("json-under-msgpack", STAR_RECORD, "msgpack", None),
    ("json-with-whitespace", b'  {"a": 1}\n', "json", {"a": 1}),
    ("pickle-django", DJANGO_RECORD, "pickle", DJANGO_DATA),
    ("pickle-protocol-0", pickle.dumps(DJANGO_DATA, protocol=0), "pickle", DJANGO_DATA),
    ("pickle-protocol-2", pickle.dumps(DJANGO_DATA, protocol=2), "pickle", DJANGO_DATA),
    (
        "pickle-nested-plain-data",
        pickle.dumps({"u": {"id": 7, "roles": ["a", "b"], "t": (1, 2.5), "b": b"x"}}),
        "pickle",
        {"u": {"id": 7, "roles": ["a", "b"], "t": (1, 2.5), "b": b"x"}},
    ),
    ("pickle-under-auto", DJANGO_RECORD, "auto", None),
    ("pickle-under-json", DJANGO_RECORD, "json", None),
    ("msgpack-list", msgspec.msgpack.encode([1, 2]), "msgpack", None),
    ("json-list", b"[1, 2]", "json", None),
    ("json-string", b'"session"', "auto", None),
    ("json-number", b"42", "auto", None),
    ("pickle-list", pickle.dumps(["_auth_user_id", "7"]), "pickle", None),
    ("pickle-string", pickle.dumps("text"), "pickle", None),
    ("empty", b"", "auto", None),
    ("empty-pickle", b"", "pickle", None),
    ("garbage", b"\xc1\xff\x00garbage", "auto", None),
    ("garbage-pickle", b"\x80\x05garbage", "pickle", None),
    ("truncated-pickle", DJANGO_RECORD[:-3], "pickle", None),
    ("truncated-msgpack", FLASK_RECORD[:-3], "msgpack", None),
    ("json-trailing-data", b'{"a": 1} {"b": 2}', "json", None),
]


@pytest.mark.parametrize(
    ("raw", "session_format", "expected"),
    [(raw, fmt, expected) for _, raw, fmt, expected in DECODE_CASES],
    ids=[case_id for case_id, _, _, _ in DECODE_CASES],
)
def test_decode_record(raw: bytes, session_format: str, expected: dict[str, Any] | None) -> None:
    found = decode_record(raw, session_format)
    if expected is None:
        assert found is None
    else:
        assert dict(found or {}) == expected


@pytest.mark.parametrize("session_format", ["json", "auto"])
def test_decode_record_size_limit(session_format: str) -> None:
    body = b'{"_user_id": "42"}'
    largest = body + b" " * (MAX_RECORD_BYTES - len(body))
    assert len(largest) == MAX_RECORD_BYTES
    assert decode_record(largest, session_format) == {"_user_id": "42"}
    assert decode_record(largest + b" ", session_format) is None


def test_decode_record_size_limit_pickle() -> None:
    padding = "x" * (MAX_RECORD_BYTES + 10)
    assert decode_record(pickle.dumps({"_auth_user_id": "7", "pad": padding}), "pickle") is None


# -- pickles that name globals: refused, never run -------------------------------------


class Touch:
    """Unpickled by ``pickle.loads``, this runs a shell command that creates ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {shlex.quote(str(self.path))}",))


class Dangerous:
    """A plain class instance in session data (any global is refused, not only
    dangerous ones)."""

    def __init__(self) -> None:
        self.name = "x"


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pwned"
    yield path
    path.unlink(missing_ok=True)


def test_the_hostile_pickle_would_run(marker: Path) -> None:
    """The control: ``pickle.loads`` of the payload below does run its command."""
    pickle.loads(pickle.dumps(Touch(marker)))  # noqa: S301 (the point of the control)
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "inside-session-dict"])
def test_hostile_pickle_refused(marker: Path, protocol: int, wrapped: bool) -> None:
    payload: Any = Touch(marker)
    if wrapped:
        payload = {"_auth_user_id": "7", "x": payload}
    raw = pickle.dumps(payload, protocol=protocol)
    assert decode_record(raw, "pickle") is None
    assert decode_record(raw, "auto") is None
    assert not marker.exists()


def test_hostile_pickle_by_extension_code_refused(marker: Path) -> None:
    """``EXT1`` names a global through the copyreg extension registry instead of by
    name; it is refused the same way."""
    module, name = os.system.__module__, os.system.__name__
    copyreg.add_extension(module, name, 240)
    try:
        command = f"touch {shlex.quote(str(marker))}".encode()
        raw = (
            b"\x80\x02\x82\xf0"  # PROTO 2, EXT1 240
            + b"X"
            + struct.pack("<I", len(command))
            + command  # BINUNICODE
            + b"\x85R."  # TUPLE1, REDUCE, STOP
        )
        assert decode_record(raw, "pickle") is None
    finally:
        copyreg.remove_extension(module, name, 240)
    assert not marker.exists()


@pytest.mark.parametrize(
    "data",
    [
        {"_auth_user_id": "7", "when": datetime.datetime(2024, 1, 1)},
        {"_auth_user_id": "7", "obj": Dangerous()},
        {"_auth_user_id": "7", "s": {1, 2}},
    ],
    ids=["datetime", "instance", "set"],
)
def test_pickle_with_any_global_refused(data: dict[str, Any]) -> None:
    # A set pickles with the SET opcode on protocol 4+, but as builtins.set on 2.
    assert decode_record(pickle.dumps(data, protocol=2), "pickle") is None


def test_pickle_persistent_id_refused() -> None:
    raw = b"\x80\x02Pshell\n."  # PERSID: asks the unpickler's persistent_load
    assert decode_record(raw, "pickle") is None


# -- read_record -----------------------------------------------------------------------

SUBJECT_CASES: list[tuple[str, str | None, SessionFormat, Any, str | None]] = [
    ("flask-login", "_user_id", "msgpack", {"_user_id": "42"}, "42"),
    ("django", "_auth_user_id", "pickle", {"_auth_user_id": "7"}, "7"),
    ("nested", "user.id", "json", {"user": {"id": "u-9"}}, "u-9"),
    ("nested-int", "user.id", "json", {"user": {"id": 7}}, "7"),
    ("deep", "a.b.c", "json", {"a": {"b": {"c": "deep"}}}, "deep"),
    ("int", "_user_id", "msgpack", {"_user_id": 42}, "42"),
    ("zero", "_user_id", "json", {"_user_id": 0}, "0"),
    ("negative-int", "_user_id", "json", {"_user_id": -3}, "-3"),
    ("bool-true", "_user_id", "json", {"_user_id": True}, None),
    ("bool-false", "_user_id", "msgpack", {"_user_id": False}, None),
    ("float", "_user_id", "json", {"_user_id": 4.5}, None),
    ("null", "_user_id", "json", {"_user_id": None}, None),
    ("empty-string", "_user_id", "json", {"_user_id": ""}, None),
    ("list", "_user_id", "json", {"_user_id": ["42"]}, None),
    ("object", "user", "json", {"user": {"id": 7}}, None),
    ("longest", "_user_id", "json", {"_user_id": "u" * 1024}, "u" * 1024),
    ("overlong", "_user_id", "json", {"_user_id": "u" * 1025}, None),
    ("absent", "_user_id", "json", {"other": "42"}, None),
    ("parent-not-object", "user.id", "json", {"user": "bob"}, None),
    ("parent-list", "user.id", "json", {"user": [{"id": 1}]}, None),
    ("parent-absent", "user.id", "json", {}, None),
    ("not-configured", None, "json", {"_user_id": "42"}, None),
    ("dotted-key-is-a-path", "user.id", "json", {"user.id": "flat"}, None),
]


def encode(data: Any, session_format: str) -> bytes:
    if session_format == "msgpack":
        return msgspec.msgpack.encode(data)
    if session_format == "pickle":
        return pickle.dumps(data)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("subject_path", "session_format", "data", "subject"),
    [(path, fmt, data, subject) for _, path, fmt, data, subject in SUBJECT_CASES],
    ids=[case_id for case_id, *_ in SUBJECT_CASES],
)
def test_read_record_subject(
    subject_path: str | None, session_format: SessionFormat, data: Any, subject: str | None
) -> None:
    config = LogoutConfig(session_subject=subject_path, session_format=session_format)
    record = read_record(encode(data, session_format), config)
    assert record == SessionRecord(subject=subject, created=None)


@pytest.mark.parametrize(
    ("metadata", "created"),
    [
        ({"created": T}, T),
        ({"created": int(T)}, T),
        ({"created": "2024-01-01"}, None),
        ({"created": True}, None),
        ({"created": None}, None),
        ({}, None),
        ("not-an-object", None),
    ],
    ids=["float", "int", "string", "bool", "null", "absent", "metadata-not-object"],
)
def test_read_record_created(metadata: Any, created: float | None) -> None:
    config = LogoutConfig(session_subject="user.id")
    raw = json.dumps({"user": {"id": 7}, "__metadata__": metadata}).encode()
    assert read_record(raw, config) == SessionRecord(subject="7", created=created)


def test_read_record_starsessions() -> None:
    record = read_record(STAR_RECORD, LogoutConfig(session_subject="user.id"))
    assert record == SessionRecord(subject="7", created=T)


@pytest.mark.parametrize(
    ("raw", "session_format"),
    [(None, "auto"), (b"", "auto"), (b"\xc1junk", "auto"), (FLASK_RECORD, "json")],
    ids=["no-record", "empty", "garbage", "wrong-format"],
)
def test_read_record_nothing(raw: bytes | None, session_format: SessionFormat) -> None:
    config = LogoutConfig(session_subject="_user_id", session_format=session_format)
    assert read_record(raw, config) is None


def test_read_record_without_subject_path_still_reads_created() -> None:
    record = read_record(STAR_RECORD, LogoutConfig())
    assert record == SessionRecord(subject=None, created=T)


# -- SessionIds ------------------------------------------------------------------------

SECRET = "flask-secret-key"


def signed(sid: str, secret: str = SECRET, salt: str = "flask-session") -> str:
    """A cookie value as Flask-Session 0.8 writes it with ``SESSION_USE_SIGNER``."""
    return Signer(secret, salt=salt, key_derivation="hmac").sign(sid).decode()


ID_CASES: list[tuple[str, dict[str, Any], str | None, str | None]] = [
    ("plain", {}, "abc123", "abc123"),
    ("none", {}, None, None),
    ("empty", {}, "", None),
    ("longest", {}, "a" * MAX_SESSION_ID_LENGTH, "a" * MAX_SESSION_ID_LENGTH),
    ("too-long", {}, "a" * (MAX_SESSION_ID_LENGTH + 1), None),
    ("printable-punctuation", {}, "a.b-c_d~e!", "a.b-c_d~e!"),
    ("space", {}, "a b", None),
    ("control", {}, "a\x01b", None),
    ("non-ascii", {}, "caf\u00e9", None),
    ("signed", {"session_secret": SECRET}, signed("abc123"), "abc123"),
    (
        "signed-custom-salt",
        {"session_secret": SECRET, "session_salt": "other"},
        signed("abc123", salt="other"),
        "abc123",
    ),
    (
        "signed-wrong-secret",
        {"session_secret": SECRET},
        signed("abc123", secret="not-the-secret"),
        None,
    ),
    (
        "signed-wrong-salt",
        {"session_secret": SECRET},
        signed("abc123", salt="itsdangerous.Signer"),
        None,
    ),
    ("signed-tampered", {"session_secret": SECRET}, "zzz" + signed("abc123")[3:], None),
    ("signed-other-id", {"session_secret": SECRET}, "xyz" + signed("abc")[3:], None),
    ("unsigned-under-secret", {"session_secret": SECRET}, "abc123", None),
    ("signature-only", {"session_secret": SECRET}, "." + signed("x").split(".")[1], None),
    (
        "signed-id-with-space",
        {"session_secret": SECRET},
        signed("a b"),
        None,
    ),
    ("signed-ignored-without-secret", {}, signed("abc123"), signed("abc123")),
]


@pytest.mark.parametrize(
    ("config", "value", "sid"),
    [(config, value, sid) for _, config, value, sid in ID_CASES],
    ids=[case_id for case_id, *_ in ID_CASES],
)
def test_session_ids(config: dict[str, Any], value: str | None, sid: str | None) -> None:
    assert SessionIds(LogoutConfig(**config)).session_id(value) == sid


def test_session_ids_bad_signature_logged(caplog: pytest.LogCaptureFixture) -> None:
    ids = SessionIds(LogoutConfig(session_secret=SECRET))
    with caplog.at_level("INFO", logger="logout_middleware"):
        assert ids.session_id(signed("abc123", secret="wrong")) is None
    assert "bad signature" in caplog.text
    assert "abc123" not in caplog.text
