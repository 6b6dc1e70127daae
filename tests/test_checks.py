"""The per-request checks, with no server: a mirror set live or not by hand, Redis's
answers given as :class:`Checked` values."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from logout_middleware.config import LogoutConfig
from logout_middleware.core import checks as checks_module
from logout_middleware.core.checks import (
    SESSION_REREAD,
    KnownSession,
    KnownToken,
    RequestChecks,
    Verdict,
)
from logout_middleware.core.ops import Check, Checked
from logout_middleware.core.revocation import (
    MirrorSnapshot,
    RevocationKeys,
    RevocationMirror,
    member,
    sha256_hex,
)
from logout_middleware.core.tokens import MAX_TOKEN_LENGTH

T = 1_700_000_000.0
KEY = "a-test-signing-key-of-at-least-32-bytes"
PASS = Verdict()
REFUSE = Verdict(refuse=True)
UNAVAILABLE = Verdict(unavailable=True)


class Clock:
    """A ``time.monotonic`` stand-in that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    *, live: bool | None = True, clock: Clock | None = None, **kw: Any
) -> tuple[RequestChecks, RevocationMirror | None, RevocationKeys]:
    """Checks on a mirror that is live, not live, or absent (``live=None``: no store);
    the records name their subject at ``user`` unless ``kw`` says otherwise."""
    config = LogoutConfig(**{"session_subject": "user", **kw})
    keys = RevocationKeys(config)
    mirror = None
    if live is not None:
        mirror = RevocationMirror(keys)
        if live:
            mirror.replace(MirrorSnapshot())
    return RequestChecks(config, keys, mirror, clock or Clock()), mirror, keys


def bearer(claims: dict[str, Any] | None = None, opaque: str = "opaque-token") -> bytes:
    """An ``Authorization`` value: a JWT with ``claims``, or an opaque token."""
    if claims is None:
        return f"Bearer {opaque}".encode()
    return b"Bearer " + jwt.encode(claims, KEY, algorithm="HS256").encode()


def credentials(
    checks: RequestChecks, cookie: str | None, authorization: bytes | None
) -> tuple[KnownSession | None, KnownToken | None]:
    session = checks.session(cookie) if cookie is not None else None
    token = checks.token(authorization) if authorization is not None else None
    return session, token


# -- without a store -------------------------------------------------------------------


def test_no_store_checks_nothing() -> None:
    checks, _, _ = make(live=None)
    assert checks.sessions is False
    assert checks.tokens is False
    session, token = credentials(checks, "session=s", bearer({"sub": "u"}))
    assert checks.check(session, token) == PASS
    assert checks.answer(session, token, None) == PASS
    assert session is not None
    assert checks.revoked_since(session) is False


@pytest.mark.parametrize(
    ("revoke_tokens", "tokens"), [(True, True), (False, False)], ids=["tokens", "no-tokens"]
)
def test_what_is_checked(revoke_tokens: bool, tokens: bool) -> None:
    checks, _, _ = make(revoke_tokens=revoke_tokens)
    assert checks.sessions is True
    assert checks.tokens is tokens


# -- a live mirror answers alone -------------------------------------------------------

CREDENTIALS: list[tuple[str, str | None, bytes | None]] = [
    ("nothing", None, None),
    ("session", "session=s1", None),
    ("opaque-token", None, bearer()),
    ("jwt", None, bearer({"sub": "user-1", "iat": int(T)})),
    ("jwt-without-sub", None, bearer({"iat": int(T)})),
    ("session-and-jwt", "session=s1", bearer({"sub": "user-1", "iat": int(T)})),
]


@pytest.mark.parametrize(
    ("cookie", "authorization"),
    [(cookie, authorization) for _, cookie, authorization in CREDENTIALS],
    ids=[case_id for case_id, _, _ in CREDENTIALS],
)
def test_live_mirror_asks_no_question(cookie: str | None, authorization: bytes | None) -> None:
    checks, _, _ = make()
    session, token = credentials(checks, cookie, authorization)
    assert checks.check(session, token) == PASS


# -- a mirror that is not live asks Redis ----------------------------------------------

ASK_CASES: list[tuple[str, dict[str, Any], str | None, bytes | None, tuple[bool, bool, bool]]] = [
    ("session", {}, "session=s1", None, (True, False, False)),
    ("opaque-token", {}, None, bearer(), (False, True, False)),
    ("jwt", {}, None, bearer({"sub": "user-1", "iat": int(T)}), (False, True, True)),
    ("jwt-without-sub", {}, None, bearer({"iat": int(T)}), (False, True, False)),
    ("session-and-jwt", {}, "session=s1", bearer({"sub": "user-1"}), (True, True, True)),
    ("tokens-not-revoked", {"revoke_tokens": False}, "session=s1", bearer(), (True, False, False)),
]


@pytest.mark.parametrize(
    ("config", "cookie", "authorization", "asked"),
    [case[1:] for case in ASK_CASES],
    ids=[case[0] for case in ASK_CASES],
)
def test_not_live_asks_redis(
    config: dict[str, Any],
    cookie: str | None,
    authorization: bytes | None,
    asked: tuple[bool, bool, bool],
) -> None:
    checks, _, keys = make(live=False, **config)
    session, token = credentials(checks, cookie, authorization)
    ask_session, ask_token, ask_not_before = asked
    assert checks.check(session, token) == Check(
        session_key=keys.session(sha256_hex(b"s1")) if ask_session else None,
        token_key=keys.token(token.hash) if ask_token and token else None,
        not_before_key=keys.not_before("user-1") if ask_not_before else None,
    )


def test_not_live_nothing_to_ask() -> None:
    checks, _, _ = make(live=False)
    assert checks.check(None, None) == PASS


def test_not_live_skips_what_the_mirror_holds() -> None:
    """A not-live mirror still answers for what it holds: a revoked session and a
    subject's not-before need no question."""
    checks, mirror, _ = make(live=False)
    assert mirror is not None
    session, token = credentials(
        checks, "session=s1", bearer({"sub": "user-1", "iat": int(T) + 10})
    )
    assert session is not None
    assert token is not None
    mirror.add(sessions=[session.hash], subject="user-1", not_before=T)
    assert checks.check(session, token) == Check(
        session_key=None, token_key=token.key, not_before_key=None
    )
    assert checks.answer(session, token, Checked(False, False, 0.0)) == Verdict(strip=(session,))


def test_not_live_revoked_session_alone_needs_no_question() -> None:
    checks, mirror, _ = make(live=False)
    assert mirror is not None
    session = checks.session("session=s1")
    assert session is not None
    mirror.add(sessions=[session.hash])
    assert checks.check(session, None) == Verdict(strip=(session,))


# -- answer: Redis's replies -----------------------------------------------------------

ANSWER_CASES: list[tuple[str, str | None, bytes | None, Checked, str]] = [
    (
        "clean",
        "session=s1",
        bearer({"sub": "u", "iat": int(T)}),
        Checked(False, False, 0.0),
        "pass",
    ),
    ("session-revoked", "session=s1", None, Checked(True, False, 0.0), "strip"),
    ("token-revoked", None, bearer(), Checked(False, True, 0.0), "refuse"),
    ("token-and-session", "session=s1", bearer(), Checked(True, True, 0.0), "refuse"),
    (
        "not-before-after-iat",
        None,
        bearer({"sub": "u", "iat": int(T)}),
        Checked(False, False, T + 1),
        "refuse",
    ),
    (
        "not-before-at-iat",
        None,
        bearer({"sub": "u", "iat": int(T)}),
        Checked(False, False, T),
        "refuse",
    ),
    (
        "not-before-before-iat",
        None,
        bearer({"sub": "u", "iat": int(T)}),
        Checked(False, False, T - 1),
        "pass",
    ),
    ("not-before-no-iat", None, bearer({"sub": "u"}), Checked(False, False, T), "refuse"),
    (
        "not-before-and-session",
        "session=s1",
        bearer({"sub": "u", "iat": int(T)}),
        Checked(True, False, T - 1),
        "strip",
    ),
]


@pytest.mark.parametrize(
    ("cookie", "authorization", "checked", "outcome"),
    [case[1:] for case in ANSWER_CASES],
    ids=[case[0] for case in ANSWER_CASES],
)
@pytest.mark.parametrize("on_check_error", ["allow", "deny"])
def test_answer(
    cookie: str | None,
    authorization: bytes | None,
    checked: Checked,
    outcome: str,
    on_check_error: str,
) -> None:
    """Redis answered: LOGOUT_ON_CHECK_ERROR plays no part."""
    checks, mirror, _ = make(live=False, on_check_error=on_check_error)
    assert mirror is not None
    session, token = credentials(checks, cookie, authorization)
    assert isinstance(checks.check(session, token), Check)
    stripped = Verdict(strip=(session,) if session is not None else ())
    expected = {"pass": PASS, "refuse": REFUSE, "strip": stripped}[outcome]
    assert checks.answer(session, token, checked) == expected
    if session is not None:
        # A session Redis says is revoked is remembered (for settle()).
        assert checks.revoked_since(session) is (outcome == "strip")


@pytest.mark.parametrize(
    ("on_check_error", "expected"),
    [("allow", PASS), ("deny", UNAVAILABLE)],
    ids=["allow", "deny"],
)
@pytest.mark.parametrize(
    ("cookie", "authorization"),
    [("session=s1", None), (None, bearer()), ("session=s1", bearer({"sub": "u"}))],
    ids=["session", "token", "both"],
)
def test_answer_redis_failed(
    on_check_error: str, expected: Verdict, cookie: str | None, authorization: bytes | None
) -> None:
    checks, _, _ = make(live=False, on_check_error=on_check_error)
    session, token = credentials(checks, cookie, authorization)
    assert isinstance(checks.check(session, token), Check)
    assert checks.answer(session, token, None) == expected


@pytest.mark.parametrize("on_check_error", ["allow", "deny"])
def test_answer_redis_failed_still_strips_known_revoked_session(on_check_error: str) -> None:
    checks, mirror, _ = make(live=False, on_check_error=on_check_error)
    assert mirror is not None
    session = checks.session("session=s1")
    assert session is not None
    mirror.add(sessions=[session.hash])
    assert checks.answer(session, None, None) == Verdict(strip=(session,))


def test_answer_redis_failed_deny_still_covers_the_token() -> None:
    """Under ``deny``, a bearer token Redis could not check is never passed to the app,
    even when the request's session is known to be revoked (and is taken out)."""
    checks, mirror, _ = make(live=False, on_check_error="deny")
    assert mirror is not None
    session, token = credentials(checks, "session=s1", bearer())
    assert session is not None
    mirror.add(sessions=[session.hash])
    assert isinstance(checks.check(session, token), Check)
    assert checks.answer(session, token, None).unavailable is True


# -- a subject's not-before, from a live mirror ----------------------------------------

NOT_BEFORE_CASES: list[tuple[str, bytes, Verdict]] = [
    ("issued-before", bearer({"sub": "user-1", "iat": int(T) - 1}), REFUSE),
    ("issued-same-second", bearer({"sub": "user-1", "iat": int(T)}), REFUSE),
    ("issued-after", bearer({"sub": "user-1", "iat": int(T) + 1}), PASS),
    ("no-iat", bearer({"sub": "user-1"}), REFUSE),
    ("string-iat", bearer({"sub": "user-1", "iat": "later"}), REFUSE),
    ("other-subject", bearer({"sub": "user-2", "iat": int(T) - 1}), PASS),
    ("no-subject", bearer({"iat": int(T) - 1}), PASS),
    ("opaque", bearer(), PASS),
]


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [(authorization, expected) for _, authorization, expected in NOT_BEFORE_CASES],
    ids=[case_id for case_id, _, _ in NOT_BEFORE_CASES],
)
def test_not_before(authorization: bytes, expected: Verdict) -> None:
    checks, mirror, _ = make()
    assert mirror is not None
    mirror.add(subject="user-1", not_before=T)
    token = checks.token(authorization)
    assert checks.check(None, token) == expected


def test_no_not_before_no_iat_passes() -> None:
    checks, _, _ = make()
    assert checks.check(None, checks.token(bearer({"sub": "user-1"}))) == PASS


# -- revoked credentials, from a live mirror -------------------------------------------


@pytest.mark.parametrize("live", [True, False], ids=["live", "not-live"])
def test_revoked_token_held_by_the_mirror_is_refused_without_asking(live: bool) -> None:
    """A revocation this process wrote or saw is refused at once: no round trip, live
    or not (a replayed revoked token costs Redis nothing)."""
    checks, mirror, _ = make(live=live)
    assert mirror is not None
    token = checks.token(bearer())
    assert token is not None
    mirror.add(tokens=[token.hash])
    assert checks.check(None, token) == REFUSE


def test_revoked_token_found_in_redis_is_refused() -> None:
    checks, mirror, _ = make(live=False)
    assert mirror is not None
    token = checks.token(bearer())
    assert token is not None
    question = checks.check(None, token)
    assert question == Check(session_key=None, token_key=token.key, not_before_key=None)
    assert checks.answer(None, token, Checked(False, True, 0.0)) == REFUSE


def test_revoked_session_is_stripped() -> None:
    checks, mirror, _ = make()
    assert mirror is not None
    session = checks.session("session=s1")
    assert session is not None
    assert checks.check(session, None) == PASS
    assert checks.revoked_since(session) is False
    mirror.add(sessions=[session.hash])
    assert checks.revoked_since(session) is True
    assert checks.check(session, None) == Verdict(strip=(session,))


def test_revoked_session_with_clean_token_is_stripped() -> None:
    checks, mirror, _ = make()
    assert mirror is not None
    session, token = credentials(checks, "session=s1", bearer())
    assert session is not None
    mirror.add(sessions=[session.hash])
    assert checks.check(session, token) == Verdict(strip=(session,))


def test_tokens_off_ignores_revoked_token() -> None:
    checks, mirror, _ = make(revoke_tokens=False)
    assert mirror is not None
    token = checks.token(bearer())
    assert token is not None
    mirror.add(tokens=[token.hash], subject="u", not_before=T)
    assert checks.check(None, token) == PASS


# -- what the request carries, and the caches ------------------------------------------

SECRET = "flask-secret-key"

SESSION_CASES: list[tuple[str, dict[str, Any], str, str | None]] = [
    ("alone", {}, "session=abc", "abc"),
    ("among-others", {}, "theme=dark; session=abc; x=1", "abc"),
    ("first-wins", {}, "session=abc; session=def", "abc"),
    ("quoted", {}, 'session="abc"', "abc"),
    ("absent", {}, "theme=dark", None),
    ("empty", {}, "session=", None),
    ("suffix-name", {}, "xsession=abc", None),
    ("too-long", {}, "session=" + "a" * 513, None),
    ("custom-name", {"session_cookie": "sid"}, "session=no; sid=xyz", "xyz"),
    ("signed-bad", {"session_secret": SECRET}, "session=abc.forged", None),
]


@pytest.mark.parametrize(
    ("config", "cookie", "sid"),
    [(config, cookie, sid) for _, config, cookie, sid in SESSION_CASES],
    ids=[case_id for case_id, *_ in SESSION_CASES],
)
def test_session(config: dict[str, Any], cookie: str, sid: str | None) -> None:
    checks, _, _ = make(**config)
    session = checks.session(cookie)
    if sid is None:
        assert session is None
        return
    assert session is not None
    assert session.sid == sid
    assert session.hash == sha256_hex(sid.encode())
    assert session.member == member(session.hash)
    assert session.subject is None
    assert session.read_at is None


def test_session_keys_from_templates() -> None:
    checks, _, _ = make(session_keys=("session:{sid}", "starsessions.{sid}", "{sid}:meta"))
    session = checks.session("session=s1")
    assert session is not None
    assert session.keys == ("session:s1", "starsessions.s1", "s1:meta")


def test_session_cache_returns_the_same_object() -> None:
    checks, _, _ = make()
    first = checks.session("session=s1")
    assert first is not None
    assert checks.session("session=s1") is first
    assert checks.session("theme=dark; session=s1") is first  # same value, other header
    assert checks.known_session("s1") is first
    assert checks.by_member(first.member) is first
    assert checks.by_member(member(sha256_hex(b"unknown"))) is None
    assert checks.session("session=s2") is not first


def test_session_cache_keeps_what_was_learned() -> None:
    checks, _, _ = make()
    session = checks.session("session=s1")
    assert session is not None
    session.subject = "user-1"
    again = checks.session("session=s1")
    assert again is not None
    assert again.subject == "user-1"


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checks_module, "CACHE_SIZE", 3)
    checks, _, _ = make()
    first = checks.session("session=s0")
    for n in range(1, 4):
        checks.session(f"session=s{n}")
    assert checks.session("session=s0") is not first  # forgotten, made again
    tokens = [checks.token(f"Bearer t{n}".encode()) for n in range(4)]
    assert checks.token(b"Bearer t0") is not tokens[0]
    assert checks.token(b"Bearer t0") == tokens[0]


TOKEN_CASES: list[tuple[str, bytes, bytes | None]] = [
    ("bearer", b"Bearer abc.def", b"abc.def"),
    ("lower", b"bearer abc.def", b"abc.def"),
    ("upper", b"BEARER abc.def", b"abc.def"),
    ("basic", b"Basic abc", None),
    ("digest", b"Digest username=x", None),
    ("empty", b"", None),
    ("empty-token", b"Bearer ", None),
    ("overlong", b"Bearer " + b"x" * (MAX_TOKEN_LENGTH + 1), None),
]


@pytest.mark.parametrize(
    ("authorization", "raw"),
    [(authorization, raw) for _, authorization, raw in TOKEN_CASES],
    ids=[case_id for case_id, _, _ in TOKEN_CASES],
)
def test_token_key(authorization: bytes, raw: bytes | None) -> None:
    checks, _, _ = make()
    token = checks.token(authorization)
    if raw is None:
        assert token is None
        return
    assert token is not None
    assert token.hash == sha256_hex(raw)
    assert token.key == "logout:revoked:" + sha256_hex(raw)
    assert token.member == member(token.hash)


def test_token_key_custom_prefix_and_no_raw_token() -> None:
    checks, _, _ = make(denylist_prefix="deny:")
    token = checks.token(b"Bearer sekrit-token")
    assert token is not None
    assert token.key == "deny:" + sha256_hex(b"sekrit-token")
    assert "sekrit-token" not in repr(token)


def test_token_key_same_for_any_scheme_case() -> None:
    checks, _, _ = make()
    first, second = checks.token(b"Bearer t"), checks.token(b"bEARER t")
    assert first is not None
    assert second is not None
    assert first.key == second.key


def test_token_claims_read_once() -> None:
    checks, _, _ = make()
    authorization = bearer({"sub": "user-1", "iat": int(T)})
    token = checks.token(authorization)
    assert token is not None
    assert token.claims is not None
    assert token.claims.sub == "user-1"
    assert token.claims.verified is False
    assert token.subject_member == member(sha256_hex(b"user-1"))
    assert checks.token(authorization) is token
    opaque = checks.token(bearer())
    assert opaque is not None
    assert opaque.claims is None
    assert opaque.subject_member is None


# -- reading records: due, mark_read ---------------------------------------------------


def test_due_and_mark_read() -> None:
    clock = Clock()
    checks, _, _ = make(clock=clock)
    session = checks.session("session=s1")
    assert session is not None
    assert checks.due(session) is True
    checks.mark_read(session)
    assert session.read_at == clock.now
    assert checks.due(session) is False
    clock.now += SESSION_REREAD - 0.5
    assert checks.due(session) is False
    clock.now += 0.5
    assert checks.due(session) is True


@pytest.mark.parametrize(
    ("subject", "method", "due"),
    [
        (None, "GET", False),
        (None, "HEAD", False),
        (None, "OPTIONS", False),
        (None, "POST", True),
        (None, "DELETE", True),
        ("user-1", "POST", True),
        ("user-1", "GET", False),
    ],
    ids=[
        "anonymous-get",
        "anonymous-head",
        "anonymous-options",
        "anonymous-post",
        "anonymous-delete",
        "known-post",
        "known-get",
    ],
)
def test_due_after_unsafe_request(subject: str | None, method: str, due: bool) -> None:
    """Read within the minute: due again only for an unsafe request (it may have been a
    login or a switch of user, in a session whose id was kept)."""
    clock = Clock()
    checks, _, _ = make(clock=clock)
    session = checks.session("session=s1")
    assert session is not None
    checks.mark_read(session)
    session.subject = subject
    assert checks.due(session, method) is due
    clock.now += SESSION_REREAD
    assert checks.due(session, method) is True


def test_answer_redis_failed_refuses_a_token_the_mirror_holds() -> None:
    """A token this process knows is revoked stays refused while Redis is down, even
    under ``allow``: the mirror's members are revocations, not guesses."""
    checks, mirror, _ = make(live=False, on_check_error="allow")
    assert mirror is not None
    _, token = credentials(checks, None, bearer())
    assert token is not None
    mirror.add(tokens=[token.hash])
    assert checks.answer(None, token, None).refuse is True


def test_nothing_is_due_when_records_name_nothing_to_learn() -> None:
    """Without LOGOUT_SESSION_SUBJECT (or a provider sid path) a record is never read
    and no response is watched: there is nothing it could tell."""
    checks, _, _ = make(session_subject=None)
    session = checks.session("session=s1")
    assert session is not None
    assert checks.due(session) is False
    assert checks.due(session, "POST", saved=True) is False
    checks.mark_read(session)
    assert checks.anonymous(session) is False


def test_session_cached_by_the_whole_header() -> None:
    checks, _, _ = make()
    first = checks.session(b"theme=dark; session=s1")
    assert first is not None
    assert checks.session(b"theme=dark; session=s1") is first
    assert checks.session("theme=dark; session=s1") is first


# -- the token cookie ----------------------------------------------------------------------


@pytest.mark.parametrize("redis_answers", [True, False], ids=["redis-answers", "redis-failed"])
def test_a_revoked_token_cookie_is_stripped_not_refused(redis_answers: bool) -> None:
    """A revoked token in ``LOGOUT_TOKEN_COOKIE`` takes the cookie out (with the session
    cookie, when that session is revoked too) where the same token as a bearer header is
    refused; with Redis failed, what the mirror holds decides alike."""
    checks, mirror, _ = make(live=not redis_answers, token_cookie="auth")
    assert mirror is not None
    session = checks.session("session=s1; auth=t0ken")
    (token,) = checks.cookie_tokens("session=s1; auth=t0ken")
    assert session is not None
    assert token.in_cookie
    assert checks.cookie_tokens("session=s1") == ()
    as_bearer = checks.token(b"Bearer t0ken")
    assert as_bearer is not None
    assert (as_bearer.hash, as_bearer.in_cookie) == (token.hash, False)
    if redis_answers:
        assert isinstance(checks.check(session, token), Check)
        verdict = checks.answer(session, token, Checked(True, True, 0.0))
    else:
        mirror.add(sessions=[session.hash], tokens=[token.hash])
        verdict = checks.answer(session, token, None)
    assert verdict == Verdict(strip=(session,), strip_token=True)
    refused = checks.answer(None, as_bearer, Checked(False, True, 0.0) if redis_answers else None)
    assert refused == REFUSE
