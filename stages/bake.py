"""The bake stage (Spinnaker's Bake (Manifest)): render an app's templates for each target
environment, check every object against the API server, and keep the exact bytes.

Rendering is pure and deterministic (:mod:`shipyard.domain.manifests`); validation is a
server-side dry run of each object, so a bad field, an unknown kind or an admission refusal
fails here, before anything changes in the cluster. The production bake is versioned: it
gets the next free slot (``v007``) of the app, counted over the ledger and the cluster, so
red/black can run it beside the current version.
"""

from __future__ import annotations

import asyncio

from shipyard.adapters.git import GitCheckout, GitError
from shipyard.adapters.kube import Kube, KubeError
from shipyard.domain.bakes import manifest_digest, next_slot, object_names
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.manifests import (
    SLOT_LABEL,
    BakeValues,
    InvalidManifest,
    parse_manifests,
    render_manifests,
)
from shipyard.store import Ledger
from stages.cluster import open_kube
from stages.releases import ReleasePlan
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["BakeResult", "BakedEnvironment", "bake_manifests", "red_black_environments"]

RED_BLACK_ENVIRONMENTS = frozenset({"prod"})


def red_black_environments() -> frozenset[str]:
    """Environments deployed red/black (a versioned Deployment per release); the others
    roll in place."""
    return RED_BLACK_ENVIRONMENTS


class BakedEnvironment(StageResult):
    """One environment's bake: the exact manifests and where they go."""

    environment: str
    namespace: str
    slot: str
    replicas: int
    digest: str
    objects: list[str]
    manifests: str


class BakeResult(StageResult):
    """The bakes of one app version, by environment."""

    app: str
    version: str
    image: str
    bakes: dict[str, BakedEnvironment]

    def summary(self) -> str:
        parts = [f"{env} {b.slot or 'rolling'} {b.digest[7:19]}" for env, b in
                 sorted(self.bakes.items())]
        return f"{self.app} {self.version}: " + ", ".join(parts)


@stage("bake")
async def bake_manifests(ctx: StageContext, plan: ReleasePlan,
                         environments: list[str]) -> BakeResult:
    """Render ``plan``'s app at its commit for each of ``environments`` and validate every
    object with a server-side dry run."""
    if not plan.image:
        raise StageFailure("NoImage", f"{plan.app} {plan.version} has no image to deploy; "
                           "run ci with push enabled for this branch")
    git = GitCheckout(ctx.settings.git_cache_dir, ctx.settings.workspaces_dir)
    try:
        templates = await asyncio.to_thread(git.read_dir, plan.repo_url, plan.commit_sha,
                                            f"apps/{plan.app}/deploy")
    except GitError as err:
        raise StageFailure("SourceUnavailable", str(err)) from err
    templates = {name: text for name, text in templates.items() if name.endswith(".j2")}
    if not templates:
        raise StageFailure("NoTemplates", f"apps/{plan.app}/deploy has no *.j2 templates at "
                           f"{plan.commit_sha[:12]}")
    kube = await open_kube(ctx)
    bakes = {}
    for environment in environments:
        bakes[environment] = await _bake_one(ctx, kube, plan, templates, environment)
    return BakeResult(app=plan.app, version=plan.version, image=plan.image, bakes=bakes)


async def _bake_one(ctx: StageContext, kube: Kube, plan: ReleasePlan,
                    templates: dict[str, str], environment: str) -> BakedEnvironment:
    namespace = ctx.settings.namespace_for(environment)
    descriptor: AppDescriptor | None = plan.descriptor
    if descriptor is None:
        raise StageFailure("InvalidInput", f"the plan of {plan.app} carries no descriptor")
    replicas = descriptor.replicas.get(environment, 1)
    slot = ""
    if environment in RED_BLACK_ENVIRONMENTS:
        slot = await asyncio.to_thread(_next_slot, ctx, kube, plan.app, namespace,
                                       environment)
    values = BakeValues(app=descriptor, environment=environment, namespace=namespace,
                        version=plan.version, image=plan.image,
                        release=slot or f"r-{ctx.run_id[:8]}", replicas=replicas, slot=slot)
    try:
        stream = render_manifests(templates, values)
        objects = parse_manifests(stream)
    except InvalidManifest as err:
        raise StageFailure("InvalidManifest", f"{plan.app} for {environment}: {err}") from err
    for obj in objects:
        if obj["metadata"].get("namespace") != namespace:
            raise StageFailure("InvalidManifest",
                               f"{obj['kind']}/{obj['metadata']['name']} is for namespace "
                               f"{obj['metadata'].get('namespace')!r}, not {namespace!r}; "
                               "templates must use {{ namespace }}")
    await asyncio.to_thread(ensure_namespace, kube, namespace)
    for obj in objects:
        try:
            await asyncio.to_thread(kube.apply, obj, dry_run=True)
        except KubeError as err:
            raise StageFailure("InvalidManifest", f"{plan.app} for {environment}: the API "
                               f"server refused it: {err}") from err
    digest = manifest_digest(stream)
    names = object_names(objects)
    await ctx.log(f"{environment}: {len(objects)} objects valid ({', '.join(names)}), "
                  f"{digest[:19]}")
    return BakedEnvironment(environment=environment, namespace=namespace, slot=slot,
                            replicas=replicas, digest=digest, objects=names,
                            manifests=stream)


def ensure_namespace(kube: Kube, namespace: str) -> None:
    """Create (or keep) the environment's namespace, labelled as Shipyard's."""
    kube.apply({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "shipyard"}}})


def _next_slot(ctx: StageContext, kube: Kube, app: str, namespace: str,
               environment: str) -> str:
    recorded = [r.slot for r in Ledger(ctx.store).releases(app, environment, limit=500)]
    running = [d["metadata"].get("labels", {}).get(SLOT_LABEL, "")
               for d in kube.list_objects("apps/v1", "Deployment", namespace,
                                          f"app.kubernetes.io/name={app}")]
    return next_slot([*recorded, *running])
