"""The local image registry: Debian's ``docker-registry`` on 127.0.0.1, storage under the
stack directory. Loopback registries need no insecure-registry setting in dockerd."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.debian import DebianError, apt_install
from shipyard.adapters.registry import Registry
from shipyard.settings import Settings
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult

__all__ = ["RegistryComponent"]

START_TIMEOUT_SECONDS = 30


@dataclass
class RegistryComponent:
    settings: Settings
    name: str = "registry"

    @property
    def registry(self) -> Registry:
        return Registry(self.settings.registry)

    @property
    def state(self) -> Path:
        return self.settings.stack_dir / "registry"

    @property
    def process(self) -> BackgroundProcess:
        return BackgroundProcess("registry", self.state)

    def status(self) -> ComponentStatus:
        registry = self.registry
        if not registry.answers():
            return ComponentStatus(self.name, False, "", registry.url, "not answering")
        owner = "started by shipyard" if self.process.running() else "already running"
        return ComponentStatus(self.name, True, "distribution v2", registry.url,
                               f"{owner}; storage {self.state / 'data'}")

    def up(self, progress: Progress) -> UpResult:
        registry = self.registry
        if registry.answers():
            return UpResult(self.name, False, f"registry at {registry.url} already answers")
        try:
            apt_install(["docker-registry"], progress)
        except DebianError as err:
            raise ComponentFailed(self.name, str(err)) from err
        config = self.state / "config.yml"
        self.state.mkdir(parents=True, exist_ok=True)
        # Not the package's own config: it listens on every interface and asks for a login.
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.state / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.settings.registry}\n  secret: shipyard-local-only\n")
        progress(f"starting docker-registry on {self.settings.registry}")
        self.process.spawn(["docker-registry", "serve", str(config)])
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not registry.answers():
            if not self.process.running() or time.monotonic() > deadline:
                self.process.stop()
                raise ComponentFailed(self.name, f"the registry did not answer at "
                                      f"{registry.url}", fix="is the port taken? see the log",
                                      log_tail=self.process.log_tail(),
                                      log_file=str(self.process.log_file))
            time.sleep(0.1)
        return UpResult(self.name, True, f"registry started at {registry.url}")

    def down(self, *, purge: bool = False) -> bool:
        stopped = self.process.stop()
        if purge and (self.state / "data").exists():
            shutil.rmtree(self.state / "data", ignore_errors=True)
            stopped = True
        return stopped
