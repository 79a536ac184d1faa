"""The Docker engine: used as it is when one answers (or ``DOCKER_HOST`` names one);
otherwise Debian's ``docker.io`` is installed and ``dockerd`` started in the background,
its data and log under the stack directory."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from shipyard.adapters.background import BackgroundProcess
from shipyard.adapters.debian import DebianError, apt_install
from shipyard.adapters.docker_engine import DEFAULT_SOCKET, DockerEngine, default_engine_url
from shipyard.settings import Settings
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult

__all__ = ["DockerEngineComponent"]

START_TIMEOUT_SECONDS = 60


@dataclass
class DockerEngineComponent:
    settings: Settings
    name: str = "docker"

    @property
    def engine(self) -> DockerEngine:
        return DockerEngine(default_engine_url())

    @property
    def process(self) -> BackgroundProcess:
        return BackgroundProcess("dockerd", self.settings.stack_dir / "docker")

    def status(self) -> ComponentStatus:
        engine = self.engine
        if not engine.answers():
            return ComponentStatus(self.name, False, "", engine.url, "no engine answers")
        owner = (f"started by shipyard (pid {self.process.pid()})" if self.process.running()
                 else "already running; used as it is")
        return ComponentStatus(self.name, True, engine.version(), engine.url, owner)

    def up(self, progress: Progress) -> UpResult:
        engine = self.engine
        if engine.answers():
            return UpResult(self.name, False, f"engine {engine.version()} at {engine.url} "
                            "already answers")
        if os.environ.get("DOCKER_HOST"):
            raise ComponentFailed(self.name, f"DOCKER_HOST={engine.url} does not answer",
                                  fix="start that engine, or unset DOCKER_HOST to let "
                                  "Shipyard start one")
        try:
            apt_install(["docker.io"], progress)
        except DebianError as err:
            raise ComponentFailed(self.name, str(err)) from err
        progress("starting dockerd")
        state = self.settings.stack_dir / "docker"
        self.process.spawn(
            ["dockerd", "--data-root", str(state / "data"), "--exec-root", str(state / "exec"),
             "--pidfile", str(state / "exec" / "dockerd.pid"), "-H", DEFAULT_SOCKET],
            env={**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not engine.answers():
            if not self.process.running() or time.monotonic() > deadline:
                self.process.stop()
                raise ComponentFailed(self.name, "dockerd did not answer",
                                      fix="see its log; `shipyard up` retries",
                                      log_tail=self.process.log_tail(),
                                      log_file=str(self.process.log_file))
            time.sleep(0.2)
        return UpResult(self.name, True, f"dockerd {engine.version()} started at "
                        f"{engine.url}, data in {state / 'data'}")

    def down(self, *, purge: bool = False) -> bool:
        stopped = self.process.stop(grace_seconds=30)
        if purge:
            data = self.settings.stack_dir / "docker"
            if data.exists() and not self.process.running():
                shutil.rmtree(data, ignore_errors=True)
                stopped = True
        return stopped
