"""Live updates: one feed per process tails the store, every browser listens over SSE.

Flow runs write their transitions and logs to the store from other processes, so the web
process learns of them from the store itself. One task (:class:`ChangeFeed`) reads what
is new in the two append-only tables (``state_transitions``, ``stage_logs``, by primary
key, a few rows at most) and hands each change to the subscribed streams; a browser
never polls, it holds one ``EventSource`` open. With no subscriber the task does nothing.
With PostgreSQL it reads when the database notifies it of a write; with SQLite, every
250 ms (:mod:`shipyard.store.notify`).

A page is rendered from the store, then opens its stream saying where it stopped
(``since``: the newest transition and log ids it showed; ``Last-Event-ID`` on a
reconnect). The stream first replays what came after that, then goes live; events carry
their ids, so a client ignores one it has seen. A subscriber too slow to keep up (its
queue full) is told to reload instead of being fed a gap.

A stream lives no longer than what let it open: every :data:`RECHECK_SECONDS` the feed asks
the store, in one query per kind, which of its subscribers' sessions and tokens still work
(``check_credentials``), and ends the others with an ``ended`` event. Signing out, a new
password, disabling a user or revoking a token, in this process or another (the CLI),
closes the streams they opened within about that time. Text from the store is redacted
(:mod:`shipyard.domain.redaction`) before it is sent.

Streams are bounded (:mod:`shipyard.domain.stream_slots`): an identity holds at most
``SHIPYARD_UI_STREAMS_PER_IDENTITY`` of them and the process :data:`MAX_STREAMS`;
:meth:`ChangeFeed.subscribe` refuses one more with
:class:`~shipyard.domain.stream_slots.TooManyStreams`. A stream gives its slot back when
it ends, and the server usually notices a client leaving at once (the stream is
cancelled); where it does not (a stream whose body never started, a server that tells
only when a write fails), the same check every :data:`RECHECK_SECONDS` asks each
stream's request whether its client left, and frees the slot then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from shipyard.domain.redaction import redact_text
from shipyard.domain.stream_slots import MAX_STREAMS, Slot, StreamSlots
from shipyard.store.browse import Change, LogLine, RunBrowser
from shipyard.store.notify import ChangeSignal, Polling

__all__ = ["MAX_STREAMS", "ChangeFeed", "Subscription", "parse_since", "sse_stream"]

log = logging.getLogger("shipyard.ui.live")

QUEUE_SIZE = 2000
HEARTBEAT_SECONDS = 15.0
RECHECK_SECONDS = 1.0

Disconnected = Callable[[], Awaitable[bool]]
"""Whether a stream's client has left (the request's ``is_disconnected``)."""

CredentialCheck = Callable[[Collection[str]], set[str]]
"""Given credentials (:attr:`ui.auth.Principal.credential`), the ones that still work.
Blocking: the feed calls it in a thread."""


@dataclass(eq=False)
class Subscription:
    """What one stream wants: every run's state changes, or one run's changes and logs."""

    run_id: str | None
    with_logs: bool
    start: tuple[int, int] = (0, 0)
    """The newest transition and log ids when it began: it is fed only what is newer
    (what came before, it replays from the store itself)."""
    queue: asyncio.Queue[tuple[str, dict[str, Any]]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    lagging: bool = False
    credential: str | None = None
    """What let the stream open; None (anonymous) is never ended."""
    ended: bool = False
    slot: Slot | None = None
    """The place it holds among its identity's streams, given back when it closes."""
    client_left: Disconnected | None = None

    def wants(self, run_id: str) -> bool:
        return self.run_id is None or self.run_id == run_id

    def offer(self, event: str, data: dict[str, Any]) -> None:
        if self.ended or self.lagging or data["id"] <= self.start[1 if event == "log" else 0]:
            return
        try:
            self.queue.put_nowait((event, data))
        except asyncio.QueueFull:
            self.lagging = True
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(("resync", {}))

    def end(self, reason: str) -> None:
        """Close the stream: nothing more is sent but an ``ended`` event saying why."""
        self.ended = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(("ended", {"reason": reason}))


class ChangeFeed:
    """Tails the store while anyone listens: when ``signal`` says it changed (PostgreSQL's
    notifications), else every ``interval_seconds``."""

    def __init__(self, browser: RunBrowser, *, interval_seconds: float = 0.25,
                 check_credentials: CredentialCheck | None = None,
                 recheck_seconds: float = RECHECK_SECONDS,
                 slots: StreamSlots | None = None,
                 signal: ChangeSignal | None = None) -> None:
        self.browser = browser
        self.signal = signal if signal is not None else Polling(interval_seconds)
        self.check_credentials = check_credentials
        self.recheck_seconds = recheck_seconds
        self.slots = slots if slots is not None else StreamSlots(per_identity=MAX_STREAMS)
        self._checked_at = 0.0
        self._subscribers: set[Subscription] = set()
        self._listening = asyncio.Event()
        self._last_change = 0
        self._last_log = 0

    def subscribe(self, run_id: str | None = None, *, with_logs: bool = False,
                  start: tuple[int, int] = (0, 0), credential: str | None = None,
                  identity: str, client_left: Disconnected | None = None,
                  ) -> Subscription:
        """A new subscription, holding one of ``identity``'s slots (see
        :func:`~shipyard.domain.stream_slots.stream_identity`), or
        :class:`~shipyard.domain.stream_slots.TooManyStreams`. Call it on the event loop
        (the feed's events and slots are not thread-safe). ``start``: see
        :attr:`Subscription.start`; ``credential``: what let it open, and
        ``client_left``: whether its client is gone, both asked again every
        :attr:`recheck_seconds`."""
        slot = self.slots.take(identity)
        subscription = Subscription(run_id, with_logs, start, credential=credential,
                                    slot=slot, client_left=client_left)
        self._checked_at = 0.0  # check the newcomer at once: it may have ended already
        self._subscribers.add(subscription)
        self._listening.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """The stream ended: it gets nothing more, and its slot is free (once, however
        often its end is noticed)."""
        self._subscribers.discard(subscription)
        if subscription.slot is not None:
            self.slots.give_back(subscription.slot)
        if not self._subscribers:
            self._listening.clear()

    async def run(self) -> None:
        """Forever: wait for a subscriber, then tail. Errors are logged and retried."""
        changed = True
        while True:
            if not self._subscribers:
                await self._listening.wait()
                # Idle until now: go on from where the new subscribers began, skipping
                # the backlog nobody was there to hear.
                self._last_change = min(s.start[0] for s in self._subscribers)
                self._last_log = min(s.start[1] for s in self._subscribers)
                changed = True
            try:
                if time.monotonic() - self._checked_at >= self.recheck_seconds:
                    await self._recheck()
                busy = await self._tick() if changed else False
            except Exception:  # a database hiccup must not end live updates for good
                log.exception("reading the store for live updates failed; retrying")
                busy = False
            # Woken by a change, or at the next recheck of the streams' credentials.
            changed = busy or await self.signal.wait(self.recheck_seconds)

    async def _recheck(self) -> None:
        """Drop the subscriptions whose client left; end those whose session or token
        no longer works."""
        self._checked_at = time.monotonic()
        await self._drop_departed()
        if self.check_credentials is None:
            return
        held = {s.credential for s in self._subscribers if s.credential and not s.ended}
        if not held:
            return
        live = await asyncio.to_thread(self.check_credentials, held)
        for subscription in list(self._subscribers):
            if subscription.credential in held and subscription.credential not in live:
                kind = (subscription.credential or "").partition(":")[0]
                subscription.end("the session ended" if kind == "session"
                                 else "the token was revoked or its owner disabled")

    async def _drop_departed(self) -> None:
        """Free the slots of streams whose client left without the stream noticing: its
        body waits for the next event or heartbeat, or never started."""
        for subscription in list(self._subscribers):
            if subscription.client_left is None:
                continue
            try:
                left = await subscription.client_left()
            except Exception:  # a request that cannot say is one nobody reads any more
                log.debug("asking whether a stream's client left failed", exc_info=True)
                left = True
            if left:
                subscription.end("the client left")
                self.unsubscribe(subscription)

    async def _tick(self) -> bool:
        changes = await asyncio.to_thread(self.browser.changes_after, self._last_change)
        for change in changes:
            self._last_change = change.id
            self._publish_change(change)
        logs: list[LogLine] = []
        if any(s.with_logs for s in self._subscribers):
            logs = await asyncio.to_thread(self.browser.logs_after, self._last_log)
            for line in logs:
                self._last_log = line.id
                self._publish_log(line)
        else:
            # Nobody reads logs: skip over them rather than send a backlog later.
            self._last_log = await asyncio.to_thread(self.browser.last_log_id)
        return len(changes) >= 500 or len(logs) >= 500

    def _publish_change(self, change: Change) -> None:
        data = change_data(change)
        event = "stage" if change.stage_ref else "run"
        for subscription in list(self._subscribers):
            if subscription.wants(change.run_id):
                subscription.offer(event, data)

    def _publish_log(self, line: LogLine) -> None:
        data = log_data(line)
        for subscription in list(self._subscribers):
            if subscription.with_logs and subscription.wants(line.run_id):
                subscription.offer("log", data)


def parse_since(value: str | None) -> tuple[int, int] | None:
    """``"<transition id>.<log id>"`` (the page's ``since`` or ``Last-Event-ID``)."""
    if not value:
        return None
    change, _, log_id = value.partition(".")
    try:
        return int(change), int(log_id or 0)
    except ValueError:
        return None


async def sse_stream(feed: ChangeFeed, subscription: Subscription,
                     is_disconnected: Callable[[], Awaitable[bool]],
                     since: tuple[int, int] | None = None) -> AsyncIterator[str]:
    """The text/event-stream body for ``subscription``: a retry hint, what came after
    ``since`` up to the subscription's start, then each event as it comes, and a comment
    line every :data:`HEARTBEAT_SECONDS` (proxies close silent streams). It ends when
    ``is_disconnected`` (the request's) says the client left, asked at each heartbeat:
    that is how a closed browser tab is noticed."""
    try:
        yield "retry: 2000\n\n"
        if since is not None:
            for event, data in await asyncio.to_thread(_replay, feed.browser, subscription,
                                                       since):
                yield _format(event, data)
        while True:
            try:
                event, data = await asyncio.wait_for(subscription.queue.get(),
                                                     HEARTBEAT_SECONDS)
            except TimeoutError:
                if await is_disconnected():
                    return
                yield ": keep-alive\n\n"
                continue
            yield _format(event, data)
            if event in ("resync", "ended"):
                return
    finally:
        feed.unsubscribe(subscription)


def _format(event: str, data: dict[str, Any]) -> str:
    # The id lets EventSource's reconnect say where it was (Last-Event-ID).
    ident = f"id: {data['id']}.0\n" if event in ("run", "stage") else ""
    if event == "log":
        ident = f"id: 0.{data['id']}\n"
    return f"{ident}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _replay(browser: RunBrowser, subscription: Subscription,
            since: tuple[int, int]) -> list[tuple[str, dict[str, Any]]]:
    """What the subscriber missed after ``since``, up to its start (at most 500 of each
    kind)."""
    events: list[tuple[str, dict[str, Any]]] = []
    for change in browser.changes_after(since[0], run_id=subscription.run_id):
        if change.id <= subscription.start[0]:
            events.append(("stage" if change.stage_ref else "run", change_data(change)))
    if subscription.with_logs and since[1]:
        for line in browser.logs_after(since[1], run_id=subscription.run_id):
            if line.id <= subscription.start[1]:
                events.append(("log", log_data(line)))
    return events


def change_data(change: Change) -> dict[str, Any]:
    return {"id": change.id, "run_id": change.run_id, "stage": change.stage_ref,
            "state": change.to_state.value, "reason": change.reason,
            "message": redact_text(change.message), "at": change.at.isoformat()}


def log_data(line: LogLine) -> dict[str, Any]:
    return {"id": line.id, "run_id": line.run_id, "stage": line.stage_ref,
            "stream": line.stream, "text": redact_text(line.text),
            "at": line.at.isoformat()}
