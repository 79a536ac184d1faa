"""What a delivery is asked to do, as one typed flow parameter.

``cd``, ``release`` and ``promote`` take one :class:`DeliveryOptions` (Prefect's UI shows
its fields as the flow's parameters); the CLI, the UI and the demo build it once, and the
run records it, so a restart asks for the same. Pure data: the CLI reads it without the
stages, and a restart reads it to carry old runs' options over.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeliveryOptions"]


class DeliveryOptions(BaseModel):
    """How carefully a delivery goes. ``None`` means the setting of the same name
    (``SHIPYARD_WARM_SECONDS``…); an unknown field is refused, naming it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    warm_seconds: float | None = Field(
        default=None, ge=0, description="how long the previous production version stays "
        "scaled after the switch, for an instant rollback")
    canary: bool = Field(default=True, description="judge a canary against what production "
                         "runs before the switch")
    canary_window_seconds: float | None = Field(
        default=None, gt=0, description="seconds of canary analysis")
    chaos: bool = Field(default=True, description="run the chaos experiment of apps that "
                        "opt in, in the environment before production")
    chaos_window_seconds: float | None = Field(
        default=None, gt=0, description="seconds of the chaos experiment")
    judgment: bool = Field(default=False, description="wait for a manual judgment before "
                           "production")
    judgment_timeout_seconds: float | None = Field(
        default=None, gt=0, description="how long the judgment waits before it fails")
    why: str = Field(default="", description="why, for the release history")

    def as_parameter(self) -> dict[str, object]:
        """The flow parameter as recorded: only what differs from the defaults."""
        return self.model_dump(mode="json", exclude_defaults=True)
