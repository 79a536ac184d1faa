"""`shipyard up` restarts what changed and only that: a cluster program started with a
fingerprint of its command and configuration (the kubelet, cluster DNS) is left running
while the fingerprint holds and restarted when it changes. Real processes (``sleep``) in a
state directory of the test's own; no cluster is touched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.settings import Settings
from shipyard.stack.kubernetes import KubernetesComponent

pytestmark = pytest.mark.integration

SLEEP = ["sleep", "300"]


@pytest.fixture
def component(tmp_path: Path) -> Iterator[KubernetesComponent]:
    component = KubernetesComponent(Settings(home=tmp_path, stack_home=tmp_path / "stack",
                                             database_url=None))
    (component.state / "run").mkdir(parents=True)
    yield component
    component._process("program").stop(grace_seconds=5)


def start(component: KubernetesComponent, fingerprint: str) -> bool:
    return component._start_program("program", SLEEP, lambda: True, lambda *a, **k: None,
                                     Path("/bin"), fingerprint=fingerprint)


def test_a_program_whose_fingerprint_holds_is_left_running(component):
    assert start(component, "one")
    pid = component._process("program").pid()
    assert not start(component, "one")
    assert component._process("program").pid() == pid


def test_a_program_whose_fingerprint_changed_is_restarted(component):
    assert start(component, "one")
    pid = component._process("program").pid()
    assert start(component, "two")
    assert component._process("program").pid() not in (None, pid)
    assert not start(component, "two")


def test_a_running_program_with_no_fingerprint_recorded_is_restarted(component):
    # Started by a Shipyard that kept no fingerprint: its configuration is unknown.
    component._process("program").spawn(["/bin/sleep", "300"])
    pid = component._process("program").pid()
    assert start(component, "one")
    assert component._process("program").pid() not in (None, pid)
