"""Logout events: the stream fields, listener normalisation and notification."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import pytest

from logout_middleware.events import (
    Listener,
    LogoutEvent,
    anotify,
    listeners,
    notify,
    sync_only,
)

AT = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=timezone.utc)
SID_HASH = "a" * 64
TOKEN_HASH = "b" * 64


def full_event() -> LogoutEvent:
    return LogoutEvent(
        id="0123456789abcdef0123456789abcdef",
        at=AT,
        method="POST",
        path="/app/logout",
        cookies=("session", "remember"),
        session_id_hash=SID_HASH,
        sessions_deleted=1,
        token_hash=TOKEN_HASH,
        token_ttl=660,
        client="203.0.113.7",
        user_agent="Mozilla/5.0",
        redirect="/bye",
        store="ok",
        store_error=None,
        type="impersonation_end",
        reason="everywhere",
        subject="42",
        subject_source="jwt",
        impersonator="support-7",
        duration=1234.5,
        sessions_ended=3,
        tokens_ended=1,
        ended_session_hashes=("c" * 64, "d" * 64),
        not_before=1715949045.123456,
        schemes=("bearer",),
        restored=True,
        oidc_sid_hash="e" * 64,
        end_session="redirected",
    )


def empty_event() -> LogoutEvent:
    return LogoutEvent(
        id="f" * 32,
        at=AT,
        method="DELETE",
        path="/logout",
        cookies=("session",),
        session_id_hash=None,
        sessions_deleted=0,
        token_hash=None,
        token_ttl=None,
        client=None,
        user_agent=None,
        redirect=None,
        store="failed",
        store_error="ConnectionError: refused",
    )


# -- LogoutEvent -----------------------------------------------------------------------


def test_to_fields_full() -> None:
    assert full_event().to_fields() == {
        "id": "0123456789abcdef0123456789abcdef",
        "at": "2024-05-17T12:30:45.123456+00:00",
        "method": "POST",
        "path": "/app/logout",
        "cookies": "session,remember",
        "session_id_hash": SID_HASH,
        "token_hash": TOKEN_HASH,
        "token_ttl": "660",
        "client": "203.0.113.7",
        "user_agent": "Mozilla/5.0",
        "redirect": "/bye",
        "type": "impersonation_end",
        "reason": "everywhere",
        "subject": "42",
        "subject_source": "jwt",
        "impersonator": "support-7",
        "duration": "1234.500",
        "sessions_ended": "3",
        "tokens_ended": "1",
        "ended_sessions": f"{'c' * 64},{'d' * 64}",
        "not_before": "1715949045.123456",
        "schemes": "bearer",
        "restored": "true",
        "oidc_sid_hash": "e" * 64,
        "end_session": "redirected",
    }


def test_to_fields_absent_values_are_empty() -> None:
    assert empty_event().to_fields() == {
        "id": "f" * 32,
        "at": "2024-05-17T12:30:45.123456+00:00",
        "method": "DELETE",
        "path": "/logout",
        "cookies": "session",
        "session_id_hash": "",
        "token_hash": "",
        "token_ttl": "",
        "client": "",
        "user_agent": "",
        "redirect": "",
        "type": "anon_context_end",
        "reason": "user_logout",
        "subject": "",
        "subject_source": "",
        "impersonator": "",
        "duration": "",
        "sessions_ended": "0",
        "tokens_ended": "0",
        "ended_sessions": "",
        "not_before": "",
        "schemes": "session,bearer",
        "restored": "",
        "oidc_sid_hash": "",
        "end_session": "",
    }


def test_to_fields_excludes_store_and_error() -> None:
    fields = empty_event().to_fields()
    assert "store" not in fields
    assert "store_error" not in fields
    assert "sessions_deleted" not in fields
    assert all(isinstance(value, str) for value in fields.values())


def test_to_fields_zero_ttl_is_not_empty() -> None:
    assert replace(full_event(), token_ttl=0).to_fields()["token_ttl"] == "0"


@pytest.mark.parametrize(("store", "ok"), [("ok", True), ("failed", False), ("disabled", False)])
def test_store_ok(store: Any, ok: bool) -> None:
    assert replace(full_event(), store=store).store_ok is ok


def test_event_is_frozen() -> None:
    event = full_event()
    with pytest.raises(AttributeError):
        event.store = "failed"  # type: ignore[misc]


# -- listeners() -----------------------------------------------------------------------


def one(event: LogoutEvent) -> None:
    """A listener."""


def two(event: LogoutEvent) -> None:
    """Another listener."""


async def coro(event: LogoutEvent) -> None:
    """A coroutine-function listener."""


class CallableObject:
    def __call__(self, event: LogoutEvent) -> None:
        """A callable instance."""


LISTENER_CASES: list[tuple[str, Any, tuple[Any, ...]]] = [
    ("none", None, ()),
    ("one-callable", one, (one,)),
    ("list", [one, two], (one, two)),
    ("tuple", (two, one), (two, one)),
    ("generator", (f for f in (one, two)), (one, two)),
    ("empty-list", [], ()),
    ("coroutine-function", coro, (coro,)),
]


@pytest.mark.parametrize(
    ("on_logout", "expected"),
    [(value, expected) for _, value, expected in LISTENER_CASES],
    ids=[case_id for case_id, _, _ in LISTENER_CASES],
)
def test_listeners_normalised(on_logout: Any, expected: tuple[Any, ...]) -> None:
    assert listeners(on_logout) == expected


def test_listeners_callable_object_kept_whole() -> None:
    instance = CallableObject()
    assert listeners(instance) == (instance,)


@pytest.mark.parametrize(
    "on_logout",
    [[one, "not callable"], [42], ("print",), 42],
    ids=["string-item", "int-item", "name-not-function", "int"],
)
def test_listeners_type_error(on_logout: Any) -> None:
    with pytest.raises(TypeError):
        listeners(on_logout)


def test_listeners_type_error_names_item() -> None:
    with pytest.raises(TypeError, match=r"on_logout: 'oops' is not callable"):
        listeners([one, "oops"])  # type: ignore[list-item]


# -- notify / anotify ------------------------------------------------------------------


def recorder(calls: list[str], name: str, fail: bool = False) -> Listener:
    def listener(event: LogoutEvent) -> None:
        calls.append(f"{name}:{event.id}")
        if fail:
            raise RuntimeError(f"{name} broke")

    return listener


def test_notify_calls_all_in_order() -> None:
    calls: list[str] = []
    event = full_event()
    notify((recorder(calls, "a"), recorder(calls, "b")), event)
    assert calls == [f"a:{event.id}", f"b:{event.id}"]


def test_notify_nothing() -> None:
    notify((), full_event())


def test_notify_survives_failing_listener(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    event = full_event()
    found = (recorder(calls, "a", fail=True), recorder(calls, "b"), recorder(calls, "c", fail=True))
    with caplog.at_level(logging.ERROR, logger="logout_middleware"):
        notify(found, event)
    assert calls == [f"a:{event.id}", f"b:{event.id}", f"c:{event.id}"]
    failures = [r for r in caplog.records if r.name == "logout_middleware"]
    assert len(failures) == 2
    for record, name in zip(failures, ("a", "c"), strict=True):
        assert record.levelno == logging.ERROR
        assert event.id in record.getMessage()
        assert record.exc_info is not None
        assert str(record.exc_info[1]) == f"{name} broke"


def async_recorder(
    calls: list[str], name: str, fail: bool = False
) -> Callable[[LogoutEvent], Awaitable[None]]:
    async def listener(event: LogoutEvent) -> None:
        calls.append(f"{name}:{event.id}")
        if fail:
            raise RuntimeError(f"{name} broke")

    return listener


@pytest.mark.anyio
async def test_anotify_awaits_coroutine_listeners() -> None:
    calls: list[str] = []
    event = full_event()
    found: tuple[Any, ...] = (
        recorder(calls, "sync"),
        async_recorder(calls, "async"),
        recorder(calls, "sync2"),
    )
    await anotify(found, event)
    assert calls == [f"sync:{event.id}", f"async:{event.id}", f"sync2:{event.id}"]


@pytest.mark.anyio
async def test_anotify_awaits_returned_awaitable() -> None:
    """A plain function that returns a coroutine is awaited too (no 'never awaited')."""
    calls: list[str] = []
    inner = async_recorder(calls, "inner")

    def returns_awaitable(event: LogoutEvent) -> Awaitable[None]:
        return inner(event)

    event = full_event()
    await anotify((returns_awaitable,), event)
    assert calls == [f"inner:{event.id}"]


@pytest.mark.anyio
async def test_anotify_survives_failing_listeners(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    event = full_event()
    found: tuple[Any, ...] = (
        async_recorder(calls, "a", fail=True),
        recorder(calls, "b", fail=True),
        async_recorder(calls, "c"),
    )
    with caplog.at_level(logging.ERROR, logger="logout_middleware"):
        await anotify(found, event)
    assert calls == [f"a:{event.id}", f"b:{event.id}", f"c:{event.id}"]
    failures = [r for r in caplog.records if r.name == "logout_middleware"]
    assert len(failures) == 2
    for record, name in zip(failures, ("a", "b"), strict=True):
        assert record.levelno == logging.ERROR
        assert record.exc_info is not None
        assert str(record.exc_info[1]) == f"{name} broke"


# -- sync_only -------------------------------------------------------------------------


def test_sync_only_passes_plain_functions() -> None:
    instance = CallableObject()
    assert sync_only((one, two, instance)) == (one, two, instance)
    assert sync_only(()) == ()


def test_sync_only_rejects_coroutine_functions() -> None:
    with pytest.raises(TypeError, match="coroutine function"):
        sync_only((one, coro))


def test_sync_only_rejects_async_recorder() -> None:
    with pytest.raises(TypeError, match="WSGI cannot await it"):
        sync_only((async_recorder([], "x"),))
