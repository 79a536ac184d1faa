"""The bake stage (Spinnaker's Bake (Manifest)): render an app's templates for each target
environment, check every object against the API server, and keep the exact bytes.

Rendering is pure and deterministic (:mod:`shipyard.domain.manifests`); validation is a
server-side dry run of each object, so a bad field, an unknown kind or an admission refusal
fails here, before anything changes in the cluster. The production bake is versioned: it
gets the next free slot (``v007``) of the app, counted over the ledger and the cluster, so
red/black can run it beside the current version.

Before the API server sees anything, bake refuses what no environment may run: an object
for another namespace, a kind Shipyard does not deploy, a pod the restricted Pod Security
Standard refuses (:mod:`shipyard.domain.pod_security`: privileged, host namespaces or
paths, added capabilities, privilege escalation, root...), naming the object, the field
and the fix. Admission would refuse such pods too, but only once a ReplicaSet makes them:
the Deployment itself would be stored, and the rollout would wait out its deadline. Bake
works as the environment's deploy identity and never creates a namespace: it checks that
``shipyard up`` made it, enforcing the standard.
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field

from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.git import GitError
from shipyard.adapters.kube import Kube
from shipyard.adapters.kube_client import KubeError
from shipyard.adapters.registry import Registry, RegistryError
from shipyard.domain.bakes import manifest_digest, next_slot, object_names
from shipyard.domain.catalog import AppDescriptor
from shipyard.domain.environment_access import DEPLOYABLE_KINDS, ENFORCE_LABEL
from shipyard.domain.images import ImageRef, RecordedImage
from shipyard.domain.labels import APP_LABEL, SLOT_LABEL, label_selector
from shipyard.domain.manifests import (
    BakeValues,
    InvalidManifest,
    parse_manifests,
    render_manifests,
)
from shipyard.domain.pod_security import pod_security_violations
from shipyard.store import Ledger
from stages.catalog import git_for
from stages.cluster import open_kube
from stages.releases import ReleasePlan
from stages.runtime import StageContext, StageFailure, StageResult, current_settings, stage

__all__ = ["BakeResult", "BakedEnvironment", "bake_manifests", "check_environment",
           "red_black_environments"]


def red_black_environments() -> frozenset[str]:
    """Environments deployed red/black (a versioned Deployment per release): the
    production environment of the current settings (``SHIPYARD_PRODUCTION_ENVIRONMENT``);
    the others roll in place."""
    return frozenset({current_settings().production_environment})


class BakedEnvironment(StageResult):
    """One environment's bake: the exact manifests and where they go."""

    environment: str
    namespace: str
    slot: str
    replicas: int
    # The manifests' sha256, not the image's (the image reference carries that). Bakes
    # recorded by earlier versions call it ``digest``: a restart still reuses them.
    manifest_digest: str = Field(validation_alias=AliasChoices("manifest_digest", "digest"))
    objects: list[str]
    manifests: str


class BakeResult(StageResult):
    """The bakes of one app version, by environment."""

    app: str
    version: str
    image: RecordedImage
    bakes: dict[str, BakedEnvironment]

    def summary(self) -> str:
        parts = [f"{env} {b.slot or 'rolling'} {b.manifest_digest[7:19]}" for env, b in
                 sorted(self.bakes.items())]
        return f"{self.app} {self.version}: " + ", ".join(parts)


@stage("bake")
async def bake_manifests(ctx: StageContext, plan: ReleasePlan,
                         environments: list[str]) -> BakeResult:
    """Render ``plan``'s app at its commit for each of ``environments`` and validate every
    object with a server-side dry run."""
    if plan.image is None:
        raise StageFailure("NoImage", f"{plan.app} {plan.version} has no image to deploy; "
                           "run ci with push enabled for this branch")
    try:
        templates = await run_blocking(git_for(ctx.settings).read_dir, plan.repo_url,
                                       plan.commit_sha, f"apps/{plan.app}/deploy")
    except GitError as err:
        raise StageFailure("SourceUnavailable", str(err)) from err
    templates = {name: text for name, text in templates.items() if name.endswith(".j2")}
    if not templates:
        raise StageFailure("NoTemplates", f"apps/{plan.app}/deploy has no *.j2 templates at "
                           f"{plan.commit_sha[:12]}")
    bakes = {}
    for environment in environments:
        kube = await open_kube(ctx, ctx.settings.namespace_for(environment))
        bakes[environment] = await _bake_one(ctx, kube, plan, plan.image, templates,
                                             environment)
    # Last, so that a template's own fault is named first.
    await run_blocking(_check_image_pushed, plan.app, plan.version, plan.image)
    return BakeResult(app=plan.app, version=plan.version, image=plan.image, bakes=bakes)


async def _bake_one(ctx: StageContext, kube: Kube, plan: ReleasePlan, image: ImageRef,
                    templates: dict[str, str], environment: str) -> BakedEnvironment:
    namespace = ctx.settings.namespace_for(environment)
    descriptor: AppDescriptor | None = plan.descriptor
    if descriptor is None:
        raise StageFailure("InvalidInput", f"the plan of {plan.app} carries no descriptor")
    replicas = descriptor.replicas.get(environment, 1)
    slot = ""
    if environment == ctx.settings.production_environment:  # red/black
        slot = await run_blocking(_next_slot, ctx, kube, plan.app, namespace,
                                  environment)
    values = BakeValues(app=descriptor, environment=environment, namespace=namespace,
                        version=plan.version, image=image.reference,
                        release=slot or f"r-{ctx.run_id[:8]}", replicas=replicas, slot=slot)
    try:
        stream = render_manifests(templates, values)
        objects = parse_manifests(stream)
    except InvalidManifest as err:
        raise StageFailure("InvalidManifest", f"{plan.app} for {environment}: {err}") from err
    _check_objects(objects, namespace, f"{plan.app} for {environment}")
    await run_blocking(check_environment, kube, namespace)
    for obj in objects:
        try:
            await run_blocking(kube.apply, obj, dry_run=True)
        except KubeError as err:
            raise StageFailure("InvalidManifest", f"{plan.app} for {environment}: the API "
                               f"server refused it: {err}") from err
    digest = manifest_digest(stream)
    names = object_names(objects)
    await ctx.log(f"{environment}: {len(objects)} objects valid ({', '.join(names)}), "
                  f"{digest[:19]}")
    return BakedEnvironment(environment=environment, namespace=namespace, slot=slot,
                            replicas=replicas, manifest_digest=digest, objects=names,
                            manifests=stream)


def _check_image_pushed(app: str, version: str, image: ImageRef) -> None:
    """Refuse an image the registry does not serve (deleted, or never pushed there)
    before anything names it: the cluster would otherwise fail to pull it mid-rollout."""
    try:
        pushed = Registry(image.registry).has_manifest(image.repository, image.digest)
    except (RegistryError, ValueError) as err:
        raise StageFailure("RegistryUnavailable", f"cannot check that {image.reference} "
                           f"exists: {err}; is the registry up (`shipyard status`)?") from err
    if not pushed:
        raise StageFailure("ImageMissing", f"{app} {version}: the registry has no "
                           f"{image.reference} (deleted, or never pushed there); run ci "
                           "again for this commit to push it")


def _check_objects(objects: list[dict[str, Any]], namespace: str, what: str) -> None:
    """Refuse, before the API server sees anything, an object for another namespace, of
    a kind Shipyard does not deploy, or whose pods the restricted Pod Security Standard
    would refuse."""
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["metadata"].get("namespace") != namespace:
            raise StageFailure("InvalidManifest",
                               f"{name} is for namespace "
                               f"{obj['metadata'].get('namespace')!r}, not {namespace!r}; "
                               "templates must use {{ namespace }}")
        if (str(obj["apiVersion"]), str(obj["kind"])) not in DEPLOYABLE_KINDS:
            kinds = ", ".join(f"{k} ({v})" for v, k in sorted(DEPLOYABLE_KINDS))
            raise StageFailure("InvalidManifest",
                               f"{what}: {name} ({obj['apiVersion']}) is not a kind "
                               f"Shipyard deploys; use one of: {kinds}")
    violations = pod_security_violations(objects)
    if violations:
        raise StageFailure("PodSecurity",
                           f"{what}: refused before anything was applied, as "
                           f"{namespace} admits only pods of the restricted Pod Security "
                           "Standard: " + "; ".join(map(str, violations)))


def check_environment(kube: Kube, namespace: str) -> None:
    """Fail unless the environment's namespace exists and enforces the restricted Pod
    Security Standard (``shipyard up`` makes it so; bake never creates namespaces)."""
    probe = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    try:
        live = kube.get(probe)
    except KubeError as err:
        raise StageFailure("NoEnvironment", f"cannot read namespace {namespace} as its "
                           f"deploy identity: {err}; `shipyard up` makes the environments "
                           "and their identities") from err
    if live is None:
        raise StageFailure("NoEnvironment", f"namespace {namespace} does not exist; "
                           "`shipyard up` makes the environments of SHIPYARD_ENVIRONMENTS")
    labels = live.get("metadata", {}).get("labels") or {}
    if labels.get(ENFORCE_LABEL) != "restricted":
        raise StageFailure("NoEnvironment", f"namespace {namespace} does not enforce the "
                           f"restricted Pod Security Standard ({ENFORCE_LABEL} is "
                           f"{labels.get(ENFORCE_LABEL)!r}); `shipyard up` labels it")


def _next_slot(ctx: StageContext, kube: Kube, app: str, namespace: str,
               environment: str) -> str:
    recorded = [r.slot for r in Ledger(ctx.store).releases(app, environment, limit=500)]
    running = [d["metadata"].get("labels", {}).get(SLOT_LABEL, "")
               for d in kube.list_objects("apps/v1", "Deployment", namespace,
                                          label_selector({APP_LABEL: app}))]
    return next_slot([*recorded, *running])
