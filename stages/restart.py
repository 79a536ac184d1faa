"""Restart from a stage, for every pipeline: a new run of the same pipeline with the same
parameters (at the commit the run checked out, for ci and release), whose stages before
the chosen one are ``Reused`` with the restarted run's outputs and whose chosen stage and
everything after it run again (see :mod:`shipyard.domain.restarts` for what else runs
again, and :mod:`stages.runtime` for how a stage is reused)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shipyard.domain.delivery_options import DeliveryOptions
from shipyard.domain.restarts import RecordedStage, RestartRefused, stages_to_rerun
from shipyard.store import RunRecord

__all__ = ["RestartRefused", "RestartRequest", "check_restart", "restart_parameters",
           "restart_request"]

_DELIVERIES = frozenset({"cd", "release", "promote"})
# Parameters that are the launch's, not the pipeline's: a restart sets its own.
_NOT_CARRIED = frozenset({"restart_of", "restart_from", "run_id", "trigger", "actor"})


def check_restart(original: RunRecord, stage: str) -> frozenset[str]:
    """The stages a restart of ``original`` from ``stage`` runs again; raise
    :class:`RestartRefused` when that is not possible."""
    rerun = stages_to_rerun(
        original.short_id, original.pipeline, original.state,
        [RecordedStage(s.ref, s.requires, s.state) for s in original.stages], stage)
    if original.pipeline in ("ci", "release") and not (original.commit_sha
                                                       and original.repo_url):
        raise RestartRefused(f"run {original.short_id} never checked a commit out; start "
                             "it again instead")
    return rerun


def restart_parameters(original: RunRecord, stage: str) -> dict[str, Any]:
    """The flow parameters of a new run restarting ``original`` from ``stage``: the same
    ones, at the commit it checked out; :class:`RestartRefused` when it cannot be."""
    check_restart(original, stage)
    parameters = {k: v for k, v in original.parameters.items() if k not in _NOT_CARRIED}
    if original.pipeline in _DELIVERIES:
        parameters = _options_as_one(parameters)
    if original.pipeline in ("ci", "release"):
        parameters.update(repo=original.repo_url, ref=original.commit_sha)
    elif original.app and "app" not in parameters:
        parameters["app"] = original.app
    return {**parameters, "restart_of": original.id, "restart_from": stage}


def _options_as_one(parameters: dict[str, Any]) -> dict[str, Any]:
    """Runs recorded before the delivery options were one flow parameter carry them as
    parameters of their own (``warm_seconds``, ``why``...): gather them into ``options``,
    so a restart of such a run asks for what it asked."""
    flat = {k: parameters.pop(k) for k in list(parameters)
            if k in DeliveryOptions.model_fields}
    given = {k: v for k, v in flat.items() if v is not None}
    if given:
        parameters["options"] = {**given, **(parameters.get("options") or {})}
    return parameters


@dataclass(frozen=True)
class RestartRequest:
    """What to launch to restart a run: its pipeline, with these parameters, recorded
    with the same app, repository and commit as the run it restarts."""

    pipeline: str
    parameters: dict[str, Any]
    app: str | None
    repo_url: str | None
    ref: str | None
    restarted_from: str


def restart_request(original: RunRecord, stage: str) -> RestartRequest:
    """How to launch a restart of ``original`` from ``stage`` (the CLI and the UI both);
    :class:`RestartRefused` when it cannot be."""
    return RestartRequest(original.pipeline, restart_parameters(original, stage),
                          original.app, original.repo_url, original.commit_sha or None,
                          original.id)
