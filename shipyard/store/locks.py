"""One deploy per app and environment at a time.

A run takes the lock of every (app, environment) it will change before it changes
anything, and gives it back when it is done; a second run finds the holder and is told
who it is. A lock whose run has ended (finished, failed, crashed and settled) is taken
over, so a crash never leaves an environment locked for good.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shipyard.domain.states import State
from shipyard.store.models import DeployLock, PipelineRun
from shipyard.store.store import Store

__all__ = ["DeployLocks"]


class DeployLocks:
    """The deploy locks in a store's database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def acquire(self, app: str, environment: str, run_id: str) -> str | None:
        """Take the lock of ``app`` in ``environment`` for ``run_id``. Returns None when
        ``run_id`` holds it now, else the id of the live run that holds it."""
        at = self.store.clock()

        def work(session: Session) -> str | None:
            lock = session.get(DeployLock, (app, environment))
            if lock is None:
                session.add(DeployLock(app=app, environment=environment, run_id=run_id,
                                       acquired_at=at))
                session.flush()
                return None
            if lock.run_id == run_id:
                return None
            holder = session.get(PipelineRun, lock.run_id)
            if holder is None or State(holder.state).is_terminal:
                lock.run_id, lock.acquired_at = run_id, at
                return None
            return lock.run_id

        try:
            return self.store.writing(work)
        except IntegrityError:  # another run inserted it between our read and write
            return self.store.writing(work)

    def release(self, app: str, environment: str, run_id: str) -> None:
        """Give the lock back if ``run_id`` holds it."""
        self.store.writing(lambda session: session.execute(
            delete(DeployLock).where(DeployLock.app == app,
                                     DeployLock.environment == environment,
                                     DeployLock.run_id == run_id)))

    def holder(self, app: str, environment: str) -> str | None:
        """The run holding the lock, if any (it may have ended: see :meth:`acquire`)."""
        with self.store.reading() as session:
            lock = session.get(DeployLock, (app, environment))
            return lock.run_id if lock is not None else None
