"""Blocking work in a worker thread that the event loop can abandon safely.

``asyncio.to_thread`` cannot stop what it runs: when the stage awaiting it times out or is
cancelled, the thread goes on, and a clone, a pip download or a rollout wait keeps working on
the world after the stage was recorded as ended. :func:`run_blocking` runs the work in a
thread too, under an :class:`Abandonment`. When the caller is cancelled, the work is
abandoned:

* every process it started through :func:`shipyard.adapters.process.run_process` is killed
  with its whole process group;
* :func:`pause` and :func:`check_abandoned` raise :class:`Abandoned` in the thread, so a
  polling loop stops at its next pause and a client makes no further call;

and the caller waits for the thread to end (at most :data:`ABANDON_WAIT_SECONDS`) before
the cancellation goes on. A call already on the wire is not interrupted: each has a timeout
of its own, which bounds how long the thread can outlive the caller.

Outside :func:`run_blocking`, :func:`pause` is ``time.sleep`` and :func:`check_abandoned`
does nothing, so the same adapters serve the CLI's plain calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

__all__ = ["ABANDON_WAIT_SECONDS", "Abandoned", "Abandonment", "check_abandoned",
           "on_abandon", "pause", "run_blocking"]

P = ParamSpec("P")
T = TypeVar("T")

ABANDON_WAIT_SECONDS = 15.0
"""How long a cancelled caller waits for its abandoned thread: long enough for a process
group's SIGTERM grace and SIGKILL (:data:`shipyard.adapters.process.TERM_GRACE_SECONDS`),
short enough that a thread stuck in a call without a deadline cannot hold a stage's end."""

_current: contextvars.ContextVar[Abandonment | None] = contextvars.ContextVar(
    "shipyard_abandonment", default=None)
_log = logging.getLogger(__name__)


class Abandoned(Exception):
    """Raised in a worker thread whose work was abandoned: its caller was cancelled."""


class Abandonment:
    """The abandon signal of one piece of blocking work: set once, from any thread; the
    callbacks registered with :meth:`on_abandon` run when it is."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def abandoned(self) -> bool:
        return self._event.is_set()

    def abandon(self) -> None:
        """Abandon the work: run each registered callback once. :func:`run_blocking` calls
        it from a thread of its own, so a callback may make a short call (remove a
        container), but should not wait long."""
        with self._lock:
            if self._event.is_set():
                return
            self._event.set()
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failed kill must not spare the others
                _log.exception("stopping abandoned work failed")

    @contextlib.contextmanager
    def on_abandon(self, callback: Callable[[], None]) -> Iterator[None]:
        """Within the block, ``callback`` runs if the work is abandoned (at once if it
        already was)."""
        with self._lock:
            already = self._event.is_set()
            if not already:
                self._callbacks.append(callback)
        if already:
            callback()
        try:
            yield
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the work is abandoned meanwhile; whether it was."""
        return self._event.wait(seconds)


def check_abandoned() -> None:
    """Raise :class:`Abandoned` if the work this thread does was abandoned."""
    current = _current.get()
    if current is not None and current.abandoned:
        raise Abandoned("the work was abandoned: the stage that started it ended")


def pause(seconds: float) -> None:
    """``time.sleep(seconds)``, except that abandoned work raises :class:`Abandoned` at
    once instead of sleeping on: the sleep of every polling loop."""
    current = _current.get()
    if current is None:
        time.sleep(seconds)
    elif current.wait(seconds):
        check_abandoned()


def on_abandon(callback: Callable[[], None]) -> contextlib.AbstractContextManager[None]:
    """Within the block, ``callback`` runs if the work of this thread is abandoned (nothing
    happens outside :func:`run_blocking`)."""
    current = _current.get()
    return current.on_abandon(callback) if current is not None else contextlib.nullcontext()


async def run_blocking(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` in a worker thread, as ``asyncio.to_thread`` runs it; if the
    caller is cancelled (a stage's timeout, a cancelled run), the work is abandoned (see the
    module) and the caller waits for the thread, at most :data:`ABANDON_WAIT_SECONDS`,
    before the cancellation goes on."""
    abandonment = Abandonment()
    context = contextvars.copy_context()
    context.run(_current.set, abandonment)
    loop = asyncio.get_running_loop()
    work = loop.run_in_executor(None, functools.partial(context.run, fn, *args, **kwargs))
    # An abandoned thread ends with Abandoned (or whatever it was doing); nobody awaits it.
    work.add_done_callback(lambda done: done.cancelled() or done.exception())
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        # In a thread: a callback may ask a server to stop something (a container).
        await asyncio.shield(asyncio.to_thread(abandonment.abandon))
        await asyncio.wait({work}, timeout=ABANDON_WAIT_SECONDS)
        raise
