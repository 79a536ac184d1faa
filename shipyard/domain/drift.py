"""Where the ledger and the cluster disagree, and how the ledger is repaired: the cluster
is the truth of what an environment serves, the ledger its record. Pure.

A run writes an **intent** before it moves traffic (a red/black switch, a rollback's
switch back): the release it is about to make serve, by slot and version. Recording the
release settles the intent. A process that dies between the switch and the record leaves
the cluster serving the new slot, the ledger naming the old one, and the intent pending;
:func:`repair_for` reads the three and says what to record so the ledger names what is
served:

* the cluster serves what the ledger's current release names: nothing to do (any intent
  still pending never took effect);
* a pending intent names the served slot: record the release it describes (the switch
  happened; only its record was lost);
* an earlier release names the served slot: record a rollback to it (traffic went back,
  e.g. a rollback's switch whose record was lost, or a hand's ``kubectl``);
* nothing names it: an **unexplained** drift, reported, never guessed at.

Only red/black environments are compared: there the Service's slot says exactly which
release serves. A rolling environment's Deployment changes in place, and a half-applied
rollout is the rollout's to finish or fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Drift", "Intent", "Recorded", "repair_for"]


@dataclass(frozen=True, slots=True)
class Recorded:
    """A release in the ledger: its id, version and red/black slot."""

    release_id: int
    version: str
    slot: str


@dataclass(frozen=True, slots=True)
class Intent:
    """A pending intent: run ``run_id`` was about to make ``slot`` (``version``) serve, to
    be recorded as a release of ``kind``."""

    intent_id: int
    run_id: str | None
    slot: str
    version: str
    kind: str


@dataclass(frozen=True, slots=True)
class Drift:
    """A disagreement and its repair: ``action`` is ``record-intent`` (record the release
    ``intent`` describes), ``record-rollback`` (record a rollback to ``earlier``),
    ``unexplained`` (report only) or ``settle-stale`` (ledger and cluster agree). ``stale``
    are pending intents that never took effect, to be settled as such."""

    action: str
    message: str
    intent: Intent | None = None
    earlier: Recorded | None = None
    stale: tuple[Intent, ...] = ()


def repair_for(current: Recorded | None, served_slot: str, pending: Sequence[Intent],
               history: Sequence[Recorded]) -> Drift | None:
    """What to record so the ledger names the slot the cluster serves (``served_slot``,
    ``""`` when the app's Service selects no slot or does not exist), given the ledger's
    ``current`` release, the ``pending`` intents (oldest first) and the earlier releases
    in ``history`` (newest first). None when they agree and no intent is pending."""
    stale = tuple(i for i in pending if i.slot != served_slot)
    if current is not None and current.slot == served_slot:
        return Drift("settle-stale", "intents that never took effect",
                     stale=tuple(pending)) if pending else None
    if not served_slot:
        if current is None:
            return Drift("settle-stale", "intents that never took effect",
                         stale=tuple(pending)) if pending else None
        return Drift("unexplained",
                     f"the ledger names release #{current.release_id} ({current.slot}), but "
                     "the cluster serves no slot of the app (its Service is gone or selects "
                     "none). Nothing was recorded: find out who removed it", stale=stale)
    was = f"release #{current.release_id} ({current.slot})" if current else "no release"
    intent = next((i for i in reversed(pending) if i.slot == served_slot), None)
    if intent is not None:
        return Drift("record-intent",
                     f"the cluster serves {served_slot} ({intent.version}), the ledger names "
                     f"{was}: run {(intent.run_id or '?')[:8]} switched traffic and did not "
                     "record it", intent=intent, stale=tuple(i for i in pending if i != intent))
    earlier = next((r for r in history if r.slot == served_slot), None)
    if earlier is not None:
        return Drift("record-rollback",
                     f"the cluster serves {served_slot}, release #{earlier.release_id} "
                     f"({earlier.version}), the ledger names {was}: traffic went back to it "
                     "unrecorded", earlier=earlier, stale=stale)
    return Drift("unexplained",
                 f"the cluster serves {served_slot}, which no release or intent names; the "
                 f"ledger names {was}. Nothing was recorded: find out who switched it",
                 stale=stale)
