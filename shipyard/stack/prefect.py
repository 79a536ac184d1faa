"""The Prefect part of the stack: the server, the deployments of prefect.yaml on the
``shipyard`` work pool, and its worker (warm by default, see :mod:`shipyard.worker`).

The server's API asks for an auth string (see :mod:`shipyard.adapters.prefect_server`);
the worker, and the flow processes it starts, carry it. A server or worker started
without it (by an older Shipyard), or for another database or store, is restarted."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from shipyard.adapters.prefect import PrefectError, apply_deployments
from shipyard.adapters.prefect_server import PrefectServer, PrefectWorker, ProcessError
from shipyard.adapters.secret_files import PrivateFileError
from shipyard.settings import Settings
from shipyard.stack.component import ComponentFailed, ComponentStatus, Progress, UpResult
from shipyard.stack.postgres import prefect_database_url

__all__ = ["PrefectComponent"]


@dataclass
class PrefectComponent:
    settings: Settings
    name: str = "prefect"

    @property
    def server(self) -> PrefectServer:
        return PrefectServer(self.settings.prefect_home, self.settings.prefect_port,
                             prefect_database_url(self.settings))

    @property
    def worker(self) -> PrefectWorker:
        # The flows record into the same store as the CLI that started the worker, and
        # verify judgment answers with the same key as it signs them.
        env = [("SHIPYARD_HOME", str(self.settings.home)),
               ("SHIPYARD_DATABASE_URL", self.settings.store_url)]
        if self.settings.judgment_key_file is not None:
            env.append(("SHIPYARD_JUDGMENT_KEY_FILE", str(self.settings.judgment_key_file)))
        return PrefectWorker(self.server, self.settings.work_pool, self.settings.source_dir,
                             tuple(env), worker_type=self.settings.worker_type)

    def status(self) -> ComponentStatus:
        server, worker = self.server, self.worker
        up, guarded = server.healthy(), server.guarded()
        healthy = up and guarded and worker.running()
        detail = ("server down" if not up else "server up, API behind its auth string"
                  if guarded else "server up with its API open to any local process "
                  "(`shipyard up` restarts it with an auth string)") + ", " + (
            f"{self.settings.worker} worker serving pool {self.settings.work_pool!r}"
            if worker.running()
            else "worker stopped")
        return ComponentStatus(self.name, healthy, _prefect_version(),
                               server.api_url.removesuffix("/api"), detail)

    def up(self, progress: Progress) -> UpResult:
        server = self.server
        progress("starting the Prefect server")
        try:
            started = server.start()
        except PrivateFileError as err:
            raise ComponentFailed(self.name, str(err),
                                  fix="then run `shipyard up` again") from err
        except ProcessError as err:
            raise ComponentFailed(self.name, str(err), fix="see the log; `shipyard down` "
                                  "then `shipyard up` retries", log_tail=server.log_tail(),
                                  log_file=str(server.log_file)) from err
        progress("applying the deployments of prefect.yaml")
        try:
            specs = apply_deployments(self.settings.source_dir,
                                      work_pool=self.settings.work_pool,
                                      pool_type=self.settings.worker_type,
                                      prefect_env=server.env())
        except PrefectError as err:
            raise ComponentFailed(self.name, str(err), fix="fix prefect.yaml or the server, "
                                  "then run `shipyard up` again") from err
        progress("starting the worker")
        worker_started = self.worker.start()
        changed = started or worker_started
        return UpResult(self.name, changed,
                        f"server {'started' if started else 'already up'} at "
                        f"{server.api_url}; {len(specs)} deployments applied; worker "
                        f"{'started' if worker_started else 'already running'}")

    def down(self, *, purge: bool = False) -> bool:
        stopped = self.worker.stop()
        stopped = self.server.stop() or stopped
        if purge and self.settings.prefect_home.exists():
            shutil.rmtree(self.settings.prefect_home)
            stopped = True
        return stopped


def _prefect_version() -> str:
    from importlib.metadata import version

    return version("prefect")
