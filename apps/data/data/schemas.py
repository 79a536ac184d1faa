"""Wire format: pydantic models for request validation and response documentation."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from data.store import Activity, ActivityKind, PayloadValue

__all__ = ["ID_PATTERN", "MAX_BATCH", "MAX_PAGE", "ActivityIn", "ActivityOut", "BatchIn",
           "BatchOut", "DeletedOut", "PageOut", "RecentOut"]

# User, content and activity ids: safe in URLs, cursors and log lines.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Id = Annotated[str, Field(pattern=ID_PATTERN)]
MAX_BATCH = 100
MAX_PAGE = 100
MAX_PAYLOAD_KEYS = 16
MAX_PAYLOAD_BYTES = 1024


class ActivityIn(BaseModel):
    """One activity to record. `activity_time` defaults to now; `activity_id` to a new
    random id. Sending the id makes a retry safe: the same (user_id, activity_id) is
    stored once."""

    model_config = ConfigDict(extra="forbid")

    user_id: Id
    content_id: Id
    kind: ActivityKind = ActivityKind.PLAY
    activity_time: AwareDatetime | None = None
    activity_id: Id | None = None
    # pydantic's "smart" unions keep each value's JSON type: true stays a bool, 1 an int.
    payload: dict[Annotated[str, Field(max_length=64)], PayloadValue] = Field(
        default_factory=dict, max_length=MAX_PAYLOAD_KEYS)

    @field_validator("payload")
    @classmethod
    def _small_json(cls, payload: dict[str, PayloadValue]) -> dict[str, PayloadValue]:
        try:
            size = len(json.dumps(payload, allow_nan=False, separators=(",", ":")).encode())
        except ValueError:
            raise ValueError("payload numbers must be finite") from None
        if size > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload is {size} bytes as JSON; at most "
                             f"{MAX_PAYLOAD_BYTES} are allowed")
        return payload


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    activities: list[ActivityIn] = Field(min_length=1, max_length=MAX_BATCH)


class ActivityOut(BaseModel):
    user_id: str
    activity_id: str
    activity_time: datetime
    content_id: str
    kind: ActivityKind
    payload: dict[str, PayloadValue]

    @classmethod
    def of(cls, activity: Activity) -> ActivityOut:
        return cls(user_id=activity.user_id, activity_id=activity.activity_id,
                   activity_time=activity.activity_time, content_id=activity.content_id,
                   kind=activity.kind, payload=dict(activity.payload))


class BatchOut(BaseModel):
    """`created` counts the activities this request stored; the rest were stored before
    (retries). `activities` are as stored, in the order sent."""

    created: int
    activities: list[ActivityOut]


class PageOut(BaseModel):
    """Newest first. Pass `next_cursor` back as `cursor` for the next page; null at the end."""

    user_id: str
    activities: list[ActivityOut]
    next_cursor: str | None


class RecentOut(BaseModel):
    activities: list[ActivityOut]


class DeletedOut(BaseModel):
    user_id: str
    deleted: int
