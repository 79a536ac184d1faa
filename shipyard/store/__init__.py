"""The store: what was decided and why. SQLAlchemy models, Alembic migrations, and the one
place where run and stage state changes (:meth:`Store.transition_stage`)."""

from shipyard.store.accounts import Accounts, TokenRecord, UserRecord
from shipyard.store.engine import StoreConfigError
from shipyard.store.errors import AmbiguousRunId, RunNotFound, StageNotFound, StoreError
from shipyard.store.ledger import Ledger
from shipyard.store.locks import DeployLocks
from shipyard.store.records import (
    ArtifactRecord,
    AuditRecord,
    DeliveryRecord,
    IntentRecord,
    LogChunk,
    ReleaseRecord,
    RunRecord,
    StageRecord,
    TransitionRecord,
)
from shipyard.store.retention import Retention, RetentionReport
from shipyard.store.store import Store

__all__ = [
    "Accounts",
    "AmbiguousRunId",
    "ArtifactRecord",
    "AuditRecord",
    "DeliveryRecord",
    "DeployLocks",
    "IntentRecord",
    "Ledger",
    "LogChunk",
    "ReleaseRecord",
    "Retention",
    "RetentionReport",
    "RunNotFound",
    "RunRecord",
    "StageNotFound",
    "StageRecord",
    "Store",
    "StoreConfigError",
    "StoreError",
    "TokenRecord",
    "TransitionRecord",
    "UserRecord",
]
