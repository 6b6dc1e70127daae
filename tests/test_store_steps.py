"""The store's two step runners (``store/steps.py``) carry one flow out alike: each
step's result sent back, a step's error thrown into the flow at its ``yield`` (which
says what it means), a cancellation too; ``Sleep`` ends early when the store closes.
No Redis: the steps call plain functions."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from logout_middleware.store.steps import Collect, Send, Sleep, Steps, arun, run


def _value(x: int) -> int:
    return x


async def _avalue(x: int) -> int:
    return x


def _fail() -> int:
    raise ConnectionError("down")


async def _afail() -> int:
    raise ConnectionError("down")


def _flow(send: Callable[..., Any], fail: Callable[[], Any], items: Any) -> Steps[list[Any]]:
    seen: list[Any] = []
    seen.append((yield Send(send, 1)))
    try:
        yield Send(fail)
    except ConnectionError as exc:  # the flow, not the runner, says what it means
        seen.append(str(exc))
    seen.append((yield Collect(items)))
    seen.append((yield Sleep(0)))
    return seen


def _items() -> Iterator[int]:
    yield from (1, 2)


async def _aitems() -> AsyncIterator[int]:
    for item in (1, 2):
        yield item


def test_run_sends_results_and_throws_errors_into_the_flow() -> None:
    assert run(_flow(_value, _fail, _items()), threading.Event()) == [1, "down", [1, 2], False]


@pytest.mark.anyio
async def test_arun_does_the_same_with_await() -> None:
    assert await arun(_flow(_avalue, _afail, _aitems())) == [1, "down", [1, 2], False]


def test_sleep_tells_a_closing_store() -> None:
    stop = threading.Event()
    stop.set()

    def sleeper() -> Steps[bool]:
        closing: bool = yield Sleep(60)
        return closing

    assert run(sleeper(), stop) is True


def test_an_unhandled_error_leaves_the_flow_after_its_clean_up() -> None:
    cleaned: list[str] = []

    def flow() -> Steps[None]:
        try:
            yield Send(_fail)
        finally:
            cleaned.append("yes")

    with pytest.raises(ConnectionError):
        run(flow(), threading.Event())
    assert cleaned == ["yes"]


def test_a_cancellation_reaches_the_flow() -> None:
    seen: list[str] = []

    def flow() -> Steps[None]:
        try:
            yield Sleep(60)
        except BaseException as exc:
            seen.append(type(exc).__name__)
            raise

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(arun(flow()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["CancelledError"]
