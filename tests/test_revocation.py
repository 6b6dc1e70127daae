"""The revocation state's key names and the process-local mirror, with no server:
SCAN results and XREAD replies are built as redis-py returns them (bytes, or text with
``decode_responses=True``)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from logout_middleware.config import LogoutConfig
from logout_middleware.core.revocation import (
    MirrorSnapshot,
    RevocationKeys,
    RevocationMirror,
    member,
    sha256_hex,
)

KEYS = RevocationKeys(LogoutConfig())


def h(name: str) -> str:
    """The SHA-256 hex of a name: a stand-in for a token's or a session id's hash."""
    return hashlib.sha256(name.encode()).hexdigest()


def mirror(*, live: bool = False) -> RevocationMirror:
    found = RevocationMirror(KEYS)
    if live:
        found.replace(MirrorSnapshot())
    return found


def subject_member(subject: str) -> int:
    return member(sha256_hex(subject.encode()))


# -- helpers ---------------------------------------------------------------------------


def test_sha256_hex() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert len(sha256_hex(b"")) == 64


@pytest.mark.parametrize(
    "digest", [h("a"), h("a").encode(), h("a").upper()], ids=["text", "bytes", "upper"]
)
def test_member_is_the_first_64_bits(digest: str | bytes) -> None:
    assert member(digest) == int(h("a")[:16], 16)
    assert member(digest) < 2**64


# -- RevocationKeys --------------------------------------------------------------------

KEY_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("token", {}, "token", "logout:revoked:" + h("t")),
    ("session", {}, "session", "logout:revoked-session:" + h("s")),
    ("not-before", {}, "not_before", "logout:not-before:" + h("user-1")),
    ("index", {}, "index", "logout:sessions-of:" + h("user-1")),
    ("token-custom", {"denylist_prefix": "deny:"}, "token", "deny:" + h("t")),
    ("session-custom", {"key_prefix": "app:"}, "session", "app:revoked-session:" + h("s")),
    ("not-before-custom", {"key_prefix": "app:"}, "not_before", "app:not-before:" + h("user-1")),
    ("index-custom", {"key_prefix": "app:"}, "index", "app:sessions-of:" + h("user-1")),
]


@pytest.mark.parametrize(
    ("config", "kind", "expected"),
    [(config, kind, expected) for _, config, kind, expected in KEY_CASES],
    ids=[case_id for case_id, *_ in KEY_CASES],
)
def test_key_names(config: dict[str, Any], kind: str, expected: str) -> None:
    keys = RevocationKeys(LogoutConfig(**config))
    argument = {"token": h("t"), "session": h("s")}.get(kind, "user-1")
    assert getattr(keys, kind)(argument) == expected


def test_subject_keys_never_hold_the_subject() -> None:
    subject = "alice@example.com"
    for key in (KEYS.not_before(subject), KEYS.index(subject)):
        assert subject not in key
        assert key.endswith(sha256_hex(subject.encode()))


def test_keys_of_non_ascii_subjects() -> None:
    assert KEYS.index("j\u00fcrgen") == "logout:sessions-of:" + sha256_hex("j\u00fcrgen".encode())


@pytest.mark.parametrize(
    ("config", "globs"),
    [
        (
            {},
            ("logout:revoked:*", "logout:revoked-session:*", "logout:not-before:*"),
        ),
        (
            {"denylist_prefix": "a*b?", "key_prefix": "[x]\\"},
            ("a\\*b\\?*", "\\[x\\]\\\\revoked-session:*", "\\[x\\]\\\\not-before:*"),
        ),
    ],
    ids=["plain", "wildcards-brackets-backslash"],
)
def test_globs(config: dict[str, Any], globs: tuple[str, str, str]) -> None:
    assert RevocationKeys(LogoutConfig(**config)).globs() == globs


# -- questions, live or not ------------------------------------------------------------


def test_empty_mirror_not_live_knows_nothing() -> None:
    found = mirror()
    assert found.live is False
    assert found.token_cleared(member(h("t"))) is False
    assert found.session_revoked(member(h("s"))) is None
    assert found.not_before("user-1") is None


def test_empty_mirror_live_clears_everything() -> None:
    found = mirror(live=True)
    assert found.live is True
    assert found.token_cleared(member(h("t"))) is True
    assert found.session_revoked(member(h("s"))) is False
    assert found.not_before("user-1") == 0.0


@pytest.mark.parametrize("live", [False, True], ids=["not-live", "live"])
def test_what_the_mirror_holds_is_revoked_live_or_not(live: bool) -> None:
    found = mirror(live=live)
    found.add(tokens=[h("t")], sessions=[h("s")], subject="user-1", not_before=1000.0)
    assert found.token_cleared(member(h("t"))) is False
    assert found.session_revoked(member(h("s"))) is True
    assert found.not_before("user-1") == 1000.0
    assert found.not_before_of(subject_member("user-1")) == 1000.0
    # What it does not hold: cleared only when live.
    assert found.token_cleared(member(h("other"))) is live
    assert found.session_revoked(member(h("other"))) is (False if live else None)
    assert found.not_before("user-2") == (0.0 if live else None)
    assert found.not_before_of(subject_member("user-2")) == (0.0 if live else None)


# -- add: this process's own writes ----------------------------------------------------


def test_add_before_write() -> None:
    found = mirror()
    found.add(tokens=[h("t1"), h("t2")], sessions=[h("s1")])
    assert found.state.tokens == {member(h("t1")), member(h("t2"))}
    assert found.state.sessions == {member(h("s1"))}
    assert found.state.not_before == {}


@pytest.mark.parametrize(
    ("writes", "expected"),
    [
        ([("user-1", 1000.0)], 1000.0),
        ([("user-1", 1000.0), ("user-1", 2000.0)], 2000.0),
        ([("user-1", 2000.0), ("user-1", 1000.0)], 2000.0),
        ([("user-1", None)], None),
        ([(None, 1000.0)], None),
    ],
    ids=["one", "later-wins", "earlier-never-lowers", "subject-without-time", "time-only"],
)
def test_add_not_before(
    writes: list[tuple[str | None, float | None]], expected: float | None
) -> None:
    found = mirror()
    for subject, at in writes:
        found.add(subject=subject, not_before=at)
    assert found.not_before("user-1") == expected


# -- absorb: the audit stream ----------------------------------------------------------


def as_bytes(fields: dict[str, str]) -> dict[bytes, bytes]:
    return {k.encode(): v.encode() for k, v in fields.items()}


ABSORB_CASES: list[tuple[str, dict[str, str], set[str], set[str], dict[str, float], list[str]]] = [
    ("token", {"token_hash": h("t")}, {"t"}, set(), {}, []),
    ("session", {"session_id_hash": h("s")}, set(), {"s"}, {}, ["s"]),
    (
        "everywhere",
        {
            "session_id_hash": h("s0"),
            "ended_sessions": f"{h('s1')},{h('s2')}",
            "subject": "user-1",
            "not_before": "1700000000.25",
        },
        set(),
        {"s0", "s1", "s2"},
        {"user-1": 1700000000.25},
        ["s0", "s1", "s2"],
    ),
    (
        "everywhere-by-jwt",
        {
            "token_hash": h("t"),
            "ended_sessions": h("s1"),
            "subject": "user-1",
            "not_before": "5.0",
        },
        {"t"},
        {"s1"},
        {"user-1": 5.0},
        ["s1"],
    ),
    (
        "empty-fields",
        {
            "token_hash": "",
            "session_id_hash": "",
            "ended_sessions": "",
            "subject": "",
            "not_before": "",
        },
        set(),
        set(),
        {},
        [],
    ),
    ("subject-without-not-before", {"subject": "user-1", "not_before": ""}, set(), set(), {}, []),
    ("not-before-without-subject", {"not_before": "5.0"}, set(), set(), {}, []),
    ("bad-not-before", {"subject": "user-1", "not_before": "soon"}, set(), set(), {}, []),
    (
        "short-hashes-ignored",
        {"session_id_hash": "abc", "ended_sessions": f"abc,{h('s1')},"},
        set(),
        {"s1"},
        {},
        ["s1"],
    ),
    ("other-fields-only", {"id": "x", "path": "/logout", "store": "ok"}, set(), set(), {}, []),
]


@pytest.mark.parametrize("field_type", ["bytes", "text"])
@pytest.mark.parametrize(
    ("fields", "tokens", "sessions", "not_before", "ended"),
    [case[1:] for case in ABSORB_CASES],
    ids=[case[0] for case in ABSORB_CASES],
)
def test_absorb_fields(
    field_type: str,
    fields: dict[str, str],
    tokens: set[str],
    sessions: set[str],
    not_before: dict[str, float],
    ended: list[str],
) -> None:
    found = mirror()
    snapshot = MirrorSnapshot()
    entry: dict[Any, Any] = as_bytes(fields) if field_type == "bytes" else fields
    assert found.absorb_fields(entry, snapshot) == [member(h(s)) for s in ended]
    assert snapshot.tokens == {member(h(t)) for t in tokens}
    assert snapshot.sessions == {member(h(s)) for s in sessions}
    assert snapshot.not_before == {subject_member(s): at for s, at in not_before.items()}
    assert found.state == MirrorSnapshot()  # only the snapshot given was changed


def test_absorb_reply() -> None:
    found = mirror(live=True)
    reply = [
        (
            b"logout:events",
            [
                (b"1-0", as_bytes({"token_hash": h("t1")})),
                (b"2-0", as_bytes({"session_id_hash": h("s1")})),
                (b"3-0", as_bytes({"ended_sessions": f"{h('s2')},{h('s3')}"})),
            ],
        )
    ]
    last, ended = found.absorb(reply, b"0-0")
    assert last == b"3-0"
    assert ended == [member(h("s1")), member(h("s2")), member(h("s3"))]
    assert found.token_cleared(member(h("t1"))) is False
    assert found.token_cleared(member(h("t2"))) is True
    for name in ("s1", "s2", "s3"):
        assert found.session_revoked(member(h(name))) is True


def test_absorb_text_reply() -> None:
    """A client with ``decode_responses=True`` gives ids and fields as text."""
    found = mirror()
    reply = [
        ("logout:events", [("7-1", {"token_hash": h("t"), "subject": "u", "not_before": "9"})])
    ]
    assert found.absorb(reply, "0-0") == ("7-1", [])
    assert found.token_cleared(member(h("t"))) is False
    assert found.not_before("u") == 9.0


@pytest.mark.parametrize(
    "reply", [None, [], [(b"logout:events", [])]], ids=["none", "empty", "no-entries"]
)
def test_absorb_nothing_keeps_last(reply: Any) -> None:
    found = mirror()
    assert found.absorb(reply, b"5-0") == (b"5-0", [])
    assert found.state == MirrorSnapshot()


def test_absorb_into_snapshot_leaves_state_alone() -> None:
    found = mirror(live=True)
    snapshot = MirrorSnapshot()
    reply = [(b"s", [(b"1-0", as_bytes({"token_hash": h("t")}))])]
    assert found.absorb(reply, b"0-0", snapshot) == (b"1-0", [])
    assert snapshot.tokens == {member(h("t"))}
    assert found.token_cleared(member(h("t"))) is True


def test_absorb_not_before_keeps_the_latest() -> None:
    found = mirror()
    for entry_id, at in ((b"1-0", "20.0"), (b"2-0", "10.0")):
        found.absorb([(b"s", [(entry_id, as_bytes({"subject": "u", "not_before": at}))])], b"0-0")
    assert found.not_before("u") == 20.0


# -- load and replace: SCAN results ------------------------------------------------------


@pytest.mark.parametrize("key_type", ["bytes", "text"])
def test_load_scan_results(key_type: str) -> None:
    def key(text: str) -> Any:
        return text.encode() if key_type == "bytes" else text

    found = mirror()
    snapshot = MirrorSnapshot()
    found.load(
        snapshot,
        tokens=[key(KEYS.token(h("t1"))), key(KEYS.token(h("t2")))],
        sessions=[key(KEYS.session(h("s1")))],
        not_before=[
            (key(KEYS.not_before("u1")), key("100.5")),
            (key(KEYS.not_before("u2")), key("not-a-number")),
            (key(KEYS.not_before("u3")), key("300")),
        ],
    )
    assert found.live is False  # loaded into the snapshot only
    assert snapshot.tokens == {member(h("t1")), member(h("t2"))}
    assert snapshot.sessions == {member(h("s1"))}
    assert snapshot.not_before == {subject_member("u1"): 100.5, subject_member("u3"): 300.0}


def test_load_keeps_the_latest_not_before() -> None:
    found = mirror()
    snapshot = MirrorSnapshot()
    found.load(snapshot, (), (), [(KEYS.not_before("u"), b"50")])
    found.load(snapshot, (), (), [(KEYS.not_before("u"), b"20")])
    assert snapshot.not_before == {subject_member("u"): 50.0}


def test_load_with_custom_prefixes() -> None:
    keys = RevocationKeys(LogoutConfig(denylist_prefix="deny:", key_prefix="app:"))
    found = RevocationMirror(keys)
    snapshot = MirrorSnapshot()
    found.load(
        snapshot, [keys.token(h("t"))], [keys.session(h("s"))], [(keys.not_before("u"), "7")]
    )
    assert snapshot == MirrorSnapshot(
        tokens={member(h("t"))}, sessions={member(h("s"))}, not_before={subject_member("u"): 7.0}
    )


def test_replace_makes_live_and_drops_expired() -> None:
    found = mirror()
    first = MirrorSnapshot()
    found.load(first, [KEYS.token(h("expired"))], [KEYS.session(h("gone"))], [])
    found.replace(first)
    assert found.live is True
    assert found.token_cleared(member(h("expired"))) is False
    assert found.session_revoked(member(h("gone"))) is True

    # The next reload: those keys expired in Redis, others appeared.
    second = MirrorSnapshot()
    found.load(second, [KEYS.token(h("current"))], [], [(KEYS.not_before("u"), "1")])
    found.replace(second)
    assert found.token_cleared(member(h("expired"))) is True
    assert found.session_revoked(member(h("gone"))) is False
    assert found.token_cleared(member(h("current"))) is False
    assert found.not_before("u") == 1.0


def test_catch_up_into_snapshot_then_replace() -> None:
    """A revocation streamed while the follower reloads reaches the new snapshot through
    the catch-up (absorb into the snapshot), and is kept by replace()."""
    found = mirror(live=True)
    snapshot = MirrorSnapshot()
    found.load(snapshot, [], [], [])
    found.absorb([(b"s", [(b"9-0", as_bytes({"token_hash": h("late")}))])], b"8-0", snapshot)
    found.replace(snapshot)
    assert found.token_cleared(member(h("late"))) is False


def test_reload_keeps_own_recent_writes() -> None:
    """A reload whose SCAN ran before this process's transaction landed does not lose
    what this process just revoked (the stream would bring it back only later)."""
    mirror = RevocationMirror(RevocationKeys(LogoutConfig()))
    mirror.add(sessions=["a" * 64], tokens=["b" * 64], subject="ann", not_before=5.0)
    mirror.replace(MirrorSnapshot())
    assert mirror.session_revoked(member("a" * 64)) is True
    assert mirror.token_cleared(member("b" * 64)) is False
    assert mirror.not_before("ann") == 5.0
    assert mirror.not_before("bob") == 0.0


def test_stray_digests_are_skipped() -> None:
    """Keys under our prefixes that are not ours, and foreign stream entries, are
    skipped instead of stopping the follower."""
    keys = RevocationKeys(LogoutConfig())
    mirror = RevocationMirror(keys)
    snapshot = MirrorSnapshot()
    mirror.load(
        snapshot,
        [keys.token("not-a-hash"), keys.token("c" * 64)],
        [keys.session("z" * 64)],
        [(keys.not_before_prefix + "short", b"1.0")],
    )
    assert snapshot.tokens == {member("c" * 64)}
    assert snapshot.sessions == set()
    assert snapshot.not_before == {}
    assert mirror.absorb_fields({"token_hash": "xyz", "ended_sessions": "q,r"}, snapshot) == []
