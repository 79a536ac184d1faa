"""Wire format: pydantic models for request validation and response documentation."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from discovery.registry import Action, Change, Instance, Status

# DNS-label-like names: safe in URLs, metric labels and Kubernetes object names.
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME_PATTERN)]


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    instance_id: Name
    host: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9.:\[\]-]+$")]
    # Strict: a port sent as "80" or true is a client bug worth surfacing, not coercing.
    port: Annotated[int, Field(strict=True, ge=1, le=65535)]
    status: Status = Status.UP
    metadata: dict[str, str] = Field(default_factory=dict)


class InstanceOut(BaseModel):
    app: str
    instance_id: str
    host: str
    port: int
    status: Status
    metadata: dict[str, str]

    @classmethod
    def of(cls, instance: Instance) -> InstanceOut:
        return cls(
            app=instance.app,
            instance_id=instance.instance_id,
            host=instance.host,
            port=instance.port,
            status=instance.status,
            metadata=dict(instance.metadata),
        )


class LeaseOut(BaseModel):
    """Returned by register and heartbeat: clients should renew well within lease_seconds."""

    instance: InstanceOut
    lease_seconds: float


class AppOut(BaseModel):
    app: str
    version: int
    instances: list[InstanceOut]


class RegistryOut(BaseModel):
    epoch: str
    version: int
    apps: dict[str, list[InstanceOut]]


class ChangeOut(BaseModel):
    version: int
    action: Action
    instance: InstanceOut

    @classmethod
    def of(cls, change: Change) -> ChangeOut:
        return cls(
            version=change.version, action=change.action, instance=InstanceOut.of(change.instance)
        )


class DeltaOut(BaseModel):
    epoch: str
    version: int
    full_refresh_required: bool
    changes: list[ChangeOut]
