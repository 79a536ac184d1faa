"""What each pipeline returns: typed, so a parent flow (``release`` runs ``ci``) and a test
read fields, not dictionary keys, and Prefect shows them as the flow run's result."""

from __future__ import annotations

from pydantic import BaseModel

from shipyard.domain.images import ImageRef
from stages.deploy import DeployResult
from stages.rollback import ReleaseResult

__all__ = ["CiOutcome", "DeliveryOutcome", "RollbackOutcome"]


class CiOutcome(BaseModel):
    """A ci run's product: the commit, each tested app's test summary, and the image of
    every app that has one now (built and pushed, or unchanged and reused)."""

    run_id: str
    commit: str
    tests: dict[str, str]
    images: dict[str, ImageRef]


class DeliveryOutcome(BaseModel):
    """A delivery's product (``cd``, ``release``, ``promote``): the commit delivered and
    what each app became in each environment."""

    run_id: str
    commit: str
    delivered: dict[str, dict[str, DeployResult]]


class RollbackOutcome(BaseModel):
    """A rollback's product: the release it recorded."""

    run_id: str
    release: ReleaseResult
