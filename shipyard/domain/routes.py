"""The route a release takes through the environments (``SHIPYARD_ENVIRONMENTS``, in
order): where a version must have run before it may go on. Pure."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["environment_before"]


def environment_before(environments: Sequence[str], environment: str) -> str:
    """The environment ``environments`` lists just before ``environment``: where a version
    must have run to be promoted into it. For the first environment, or one not listed,
    ``environment`` itself, which a promotion refuses (it needs two environments)."""
    if environment in environments and environments.index(environment) > 0:
        return environments[environments.index(environment) - 1]
    return environment
