"""The store's I/O steps, and the two runners that carry them out.

Every operation of the stores that takes more than one call (a logout's write phases,
the backlog's retry, the revocation follower's load and follow) is written once, as a
generator, a *flow*, that yields the steps below and is sent each step's result: the
shape the core's flows already have (they yield :mod:`.core.ops` requests that
:func:`~logout_middleware.store.drive` carries out). Only this module knows the two I/O
styles: :func:`run` carries a flow out with blocking calls (redis-py, in the caller's
thread), :func:`arun` with ``await`` (``redis.asyncio``, on the event loop). An exception
a step raises is thrown into the flow at its ``yield``, so the flow, not the runner,
says what a failure means; an asyncio task's cancellation reaches it the same way.

Why flows rather than a generated synchronous twin (``unasync``, as httpcore and
elasticsearch-py do): the two stores differ in more than ``await``. A thread sleeps on
a stop event and is woken out of a blocking ``XREAD`` by ``CLIENT UNBLOCK``; a task is
cancelled. A token rewrite cannot express that; with flows, those differences stay in
the runners and in the stores' start and stop code, the Redis logic is one source file
read as written (no generated file, no build step, no ``--check`` to keep in step), and
the core and the store speak one idiom. The one-round-trip requests of every request
(:mod:`.queries`) are no flows: a generator per check would be overhead on the hot path.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Collect", "Send", "Sleep", "Step", "Steps", "arun", "run"]

_T = TypeVar("_T")


class Send:
    """Call ``call(*args, **kwargs)``: a method of a redis-py client (either flavour) or a
    pipeline's ``execute``. Result: its reply, awaited on ``redis.asyncio``.

    :param call: the bound method to call.
    """

    __slots__ = ("args", "call", "kwargs")

    def __init__(self, call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        self.call = call
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"Send({getattr(self.call, '__name__', self.call)!s}, {len(self.args)} args)"


@dataclass(frozen=True, slots=True)
class Collect:
    """Every item of ``items``: an iterator, or on ``redis.asyncio`` an async iterator
    (a cluster client's ``scan_iter``, which visits every primary). Result: a list."""

    items: Any


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds``. Result: True when the store is closing (a thread waits on the
    store's stop event and is woken by it; a task is cancelled instead, so it gets
    False)."""

    seconds: float


#: One I/O request of a flow.
Step = Send | Collect | Sleep
#: A store flow: yields :data:`Step`\s, is sent their results, returns ``_T``.
Steps = Generator[Step, Any, _T]


def run(flow: Steps[_T], stop: threading.Event) -> _T:
    """Carry ``flow`` out with blocking calls, in this thread; return its result.

    :param stop: the store's stop event: :class:`Sleep` waits on it.
    :raises BaseException: whatever the flow raises (a step's exception is first thrown
        into the flow, which may handle it).
    """
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            if isinstance(step, Send):
                reply = step.call(*step.args, **step.kwargs)
            elif isinstance(step, Sleep):
                reply = stop.wait(step.seconds)
            else:
                reply = list(step.items)
        except BaseException as exc:  # handed to the flow, which says what it means
            error = exc


async def arun(flow: Steps[_T]) -> _T:
    """:func:`run` with ``await``, on the running event loop. A cancellation is thrown
    into the flow like any error (flows let it through, after their clean-up).

    :raises BaseException: whatever the flow raises.
    """
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = flow.send(reply) if error is None else flow.throw(error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        error = None
        try:
            if isinstance(step, Send):
                reply = await step.call(*step.args, **step.kwargs)
            elif isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                reply = False
            else:
                reply = [item async for item in step.items]
        except BaseException as exc:  # handed to the flow, which says what it means
            error = exc
