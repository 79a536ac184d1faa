"""One stage lifecycle: outside the store, only the stage runtime and the run lifecycle
move a state. A stage, a pipeline, the UI or the CLI that wants a state changed asks them
(or a store operation named for what it does, such as ``cancel_run``), so the table of
transitions is walked in one place. This test reads the product's source and fails when
anything else calls a transition."""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
PRODUCT = ("shipyard", "stages", "pipelines", "ui", "bench")
TRANSITIONS = frozenset({"transition_stage", "transition_run", "reuse_stage",
                         "record_attempt"})
LIFECYCLE = frozenset({Path("stages/runtime.py"), Path("stages/lifecycle.py")})


def state_writers() -> dict[Path, list[int]]:
    """Every product module calling a transition, with the lines, outside the store."""
    found: dict[Path, list[int]] = {}
    for top in PRODUCT:
        for path in sorted((PROJECT / top).rglob("*.py")):
            relative = path.relative_to(PROJECT)
            if relative.parts[:2] == ("shipyard", "store"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Attribute) and node.attr in TRANSITIONS:
                    found.setdefault(relative, []).append(node.lineno)
    return found


def test_only_the_lifecycle_moves_a_state_outside_the_store():
    outside = {path: lines for path, lines in state_writers().items()
               if path not in LIFECYCLE}
    assert outside == {}, (
        "these modules move states themselves; run the step as a stage "
        "(stages.runtime.stage or run_stage) or use a store operation named for it: "
        f"{outside}")


def test_the_check_sees_the_lifecycle_itself():
    # The scan finds real calls: it must see the runtime's own, or it checks nothing.
    assert set(state_writers()) >= LIFECYCLE
