"""What every part of the local stack offers, and how a failure reads.

A component's ``up`` is idempotent: when the part already works it changes nothing and
says so. ``down`` stops only what Shipyard started (recorded by pid), keeping data unless
asked to purge. ``status`` never changes anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["Component", "ComponentFailed", "ComponentStatus", "Progress", "UpResult"]

class Progress(Protocol):
    """Receives what a component is doing now (shown live by the CLI), with
    ``done``/``total`` when the work is countable (packages compiled, say)."""

    def __call__(self, line: str, done: int | None = None,
                 total: int | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    name: str
    healthy: bool
    version: str = ""
    address: str = ""
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class UpResult:
    """What ``up`` did: ``changed`` is False when the component already worked."""

    name: str
    changed: bool
    message: str


class ComponentFailed(RuntimeError):
    """A component could not start: names it, shows its log's last lines, suggests a fix."""

    def __init__(self, component: str, problem: str, *, fix: str = "", log_tail: str = "",
                 log_file: str = "") -> None:
        self.component = component
        self.problem = problem
        self.fix = fix
        self.log_tail = log_tail
        self.log_file = log_file
        super().__init__(f"{component}: {problem}" + (f"; {fix}" if fix else ""))


class Component(Protocol):
    """One part of the local stack."""

    name: str

    def status(self) -> ComponentStatus:
        """How the part is now; changes nothing."""
        ...

    def up(self, progress: Progress) -> UpResult:
        """Make the part work; raise :class:`ComponentFailed`, leaving nothing half-started."""
        ...

    def down(self, *, purge: bool = False) -> bool:
        """Stop what Shipyard started; with ``purge`` also delete its data. Returns whether
        anything was stopped or deleted."""
        ...
