"""The whole local stack: its components in start order, brought up and down together.

Before any component starts, ``up`` makes the state private (:meth:`LocalStack.make_private`):
the home and the stack's directories are created with mode 0700, and whatever of
Shipyard's own secret files and state directories an older Shipyard (or a hand) left open
to others is tightened, and said so. Tightening rather than refusing keeps a machine whose
stack cache predates these checks working (its directories were 0755); every other command
that starts (``shipyard ui``, ``shipyard status``) only checks, and names the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from shipyard.adapters.private_state import tighten_private_state
from shipyard.adapters.secret_files import private_dir
from shipyard.domain.file_modes import TooOpen
from shipyard.settings import Settings
from shipyard.stack.base_image import BaseImageComponent
from shipyard.stack.component import Component, ComponentStatus, Progress, UpResult
from shipyard.stack.docker_engine import DockerEngineComponent
from shipyard.stack.k8s_binaries import K8sBinariesComponent
from shipyard.stack.kubernetes import KubernetesComponent, NodeMode
from shipyard.stack.postgres import PostgresComponent
from shipyard.stack.prefect import PrefectComponent
from shipyard.stack.prometheus import PrometheusComponent
from shipyard.stack.registry import RegistryComponent

__all__ = ["COMPONENT_NAMES", "LocalStack", "UnknownComponent"]

COMPONENT_NAMES = ("docker", "registry", "base-image", "k8s-binaries", "kubernetes",
                   "prometheus", "postgres", "prefect")
"""Start order: a component may rely on those before it."""



class UnknownComponent(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no stack component {name!r}; choose from "
                         f"{', '.join(COMPONENT_NAMES)}")


def _build(name: str, settings: Settings, rebuild_base_image: bool,
           nodes: NodeMode) -> Component:
    factories: dict[str, Callable[[], Component]] = {
        "docker": lambda: DockerEngineComponent(settings),
        "registry": lambda: RegistryComponent(settings),
        "base-image": lambda: BaseImageComponent(settings, rebuild=rebuild_base_image),
        "k8s-binaries": lambda: K8sBinariesComponent(settings),
        "kubernetes": lambda: KubernetesComponent(settings, nodes=nodes),
        "prometheus": lambda: PrometheusComponent(settings),
        "postgres": lambda: PostgresComponent(settings),
        "prefect": lambda: PrefectComponent(settings),
    }
    return factories[name]()


@dataclass
class LocalStack:
    settings: Settings
    only: Sequence[str] = ()
    rebuild_base_image: bool = False
    nodes: NodeMode = "auto"

    def __post_init__(self) -> None:
        for name in self.only:
            if name not in COMPONENT_NAMES:
                raise UnknownComponent(name)

    def names(self) -> list[str]:
        """The chosen components' names, in start order."""
        return [n for n in COMPONENT_NAMES if not self.only or n in self.only]

    def components(self) -> list[Component]:
        return [_build(name, self.settings, self.rebuild_base_image, self.nodes)
                for name in self.names()]

    def make_private(self) -> list[TooOpen]:
        """Create the home, the stack directory and (for the local cluster's components)
        the cluster's directory with mode 0700 unless they exist, and take group and others'
        access off every secret file and state directory that has it. Returns what was too
        open; idempotent."""
        settings = self.settings
        private_dir(settings.home)
        private_dir(settings.stack_dir)
        names = set(self.names())
        # The local cluster's state; a cluster named by KUBECONFIG has none here.
        if "k8s-binaries" in names or (
                "kubernetes" in names and KubernetesComponent(settings).external() is None):
            private_dir(settings.stack_dir / "cluster")
        return tighten_private_state(settings)

    def up(self, progress: Callable[..., None]) -> list[UpResult]:
        """Make the state private (:meth:`make_private`), then bring every component up in
        order; the first failure stops the rest (raised as
        :class:`~shipyard.stack.component.ComponentFailed`)."""
        self.make_private()
        results = []
        for component in self.components():
            report = cast(Progress, functools.partial(progress, component.name))
            results.append(component.up(report))
        return results

    def down(self, *, purge: bool = False) -> list[tuple[str, bool]]:
        """Stop the components in reverse order; returns (name, whether anything stopped)."""
        return [(c.name, c.down(purge=purge)) for c in reversed(self.components())]

    def status(self) -> list[ComponentStatus]:
        return [c.status() for c in self.components()]


def healthy(statuses: Iterable[ComponentStatus]) -> bool:
    return all(s.healthy for s in statuses)
