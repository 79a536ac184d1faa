"""How many live-update streams one identity may hold open, and all of them together.
Pure: the caller says who opens a stream and when it closes.

A stream costs the server a subscription with its queue until the client leaves, so an
identity that opens them without end (a script that never closes, a browser with a tab
per run) would grow the process without bound. Each identity gets ``per_identity`` slots
and the process ``total``; a stream takes a slot when it opens and gives it back when it
closes, so a closed tab frees its slot for the next one at once.

What counts as one identity (:func:`stream_identity`): a signed-in user, whichever of
their sessions or browsers the streams come from; an API token of its owner (each token
its own count, so a script's token cannot starve its owner's browser); an anonymous
viewer by the address it comes from, counted as :func:`client_key` counts it (an IPv6
host by its /64).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from shipyard.domain.client_address import client_key

__all__ = ["MAX_STREAMS", "RETRY_AFTER_SECONDS", "Slot", "StreamSlots", "TooManyStreams",
           "stream_identity"]

MAX_STREAMS = 1000
"""Streams one process holds open at once, whoever opened them."""

RETRY_AFTER_SECONDS = 5
"""What a refusal's ``Retry-After`` says: a slot frees when a stream closes, which no
clock can tell, so this is only a polite pause before asking again."""


class TooManyStreams(Exception):
    """A stream was refused: ``scope`` says whose limit (the identity's, or the process's
    ``total``), ``limit`` what it is. The message says what to do."""

    def __init__(self, scope: Literal["identity", "total"], limit: int) -> None:
        if scope == "identity":
            message = (f"you have {limit} live-update streams open, the most one identity "
                       f"may hold (SHIPYARD_UI_STREAMS_PER_IDENTITY={limit}): close other "
                       "tabs or streams of this UI, then try again")
        else:
            message = (f"the UI holds {limit} live-update streams open, the most it serves "
                       "at once: try again in a while")
        super().__init__(message)
        self.scope = scope
        self.limit = limit


@dataclass(frozen=True, eq=False)
class Slot:
    """One open stream's place, taken for ``identity``; each is distinct."""

    identity: str


@dataclass
class StreamSlots:
    """``per_identity`` open streams per identity, ``total`` in all. Memory is bounded
    by ``total``: an identity holding no stream is forgotten."""

    per_identity: int
    total: int = MAX_STREAMS
    _slots: set[Slot] = field(default_factory=set, repr=False)
    _held: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.per_identity < 1 or self.total < 1:
            raise ValueError("stream limits need at least 1 stream per identity and in all")

    def take(self, identity: str) -> Slot:
        """A slot for a new stream of ``identity``, or :class:`TooManyStreams` (taking
        nothing)."""
        if self._held.get(identity, 0) >= self.per_identity:
            raise TooManyStreams("identity", self.per_identity)
        if len(self._slots) >= self.total:
            raise TooManyStreams("total", self.total)
        slot = Slot(identity)
        self._slots.add(slot)
        self._held[identity] = self._held.get(identity, 0) + 1
        return slot

    def give_back(self, slot: Slot) -> None:
        """The stream holding ``slot`` closed: the slot is free. A slot given back
        already changes nothing, so a close noticed twice (by the stream and by the
        feed's check) frees one slot, not two."""
        if slot not in self._slots:
            return
        self._slots.remove(slot)
        held = self._held[slot.identity] - 1
        if held:
            self._held[slot.identity] = held
        else:
            del self._held[slot.identity]

    def held(self, identity: str) -> int:
        """The streams ``identity`` has open."""
        return self._held.get(identity, 0)

    def __len__(self) -> int:
        """The streams open in all."""
        return len(self._slots)


def stream_identity(via: Literal["session", "token", "anonymous", "cli"], name: str,
                    credential: str | None, address: str | None) -> str:
    """Whose slots a stream takes: ``user:<name>`` for a signed-in user (``via``
    session), ``token:<owner>:<credential>`` for an API token, ``address:<key>`` for an
    anonymous viewer at ``address`` (the client's, as :func:`client_key` counts it)."""
    if via in ("session", "cli"):  # the CLI acts as its operating-system user
        return f"user:{name}"
    if via == "token":
        return f"token:{name}:{credential or ''}"
    return f"address:{client_key(address)}"
