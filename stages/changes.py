"""Change detection: which apps this commit must test and build (see
:mod:`shipyard.domain.changes`). An app whose source key already has an image in the
registry is reused as it is; ``force`` rebuilds every app."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shipyard.adapters.app_image import installed_versions
from shipyard.adapters.git import files_changed, tree_hash
from shipyard.adapters.registry import Registry, RegistryError
from shipyard.domain.changes import (
    AppChange,
    requirement_names,
    source_key,
    source_tag,
    why_changed,
)
from shipyard.domain.images import ImageRef, image_repository
from shipyard.store import Ledger
from stages.runtime import StageContext, StageFailure, StageResult, stage

__all__ = ["ChangesResult", "detect_changes"]


class ChangesResult(StageResult):
    changed: list[str]
    reused: dict[str, ImageRef]  # app -> the image it keeps
    # Not "keys": Prefect reads a result with .keys() as a mapping.
    source_keys: dict[str, str]  # app -> source key
    reasons: dict[str, str]

    def summary(self) -> str:
        built = ", ".join(self.changed) or "none"
        kept = ", ".join(self.reused) or "none"
        return f"to build: {built}; unchanged: {kept}"


@stage("changes", timeout_seconds=120)
async def detect_changes(ctx: StageContext, workspace: str, commit: str, apps: list[str],
                         force: bool = False) -> ChangesResult:
    """Decide, per app of ``apps``, whether ``commit`` needs a new image."""
    root = Path(workspace)
    shared_dirs = {p.parent.name for p in (root / "apps").glob("*/pyproject.toml")}
    pins = await asyncio.to_thread(installed_versions)
    registry = Registry(ctx.settings.registry)
    ledger = Ledger(ctx.store)
    verdicts = []
    for app in apps:
        requirements = root / "apps" / app / "requirements.txt"
        if not requirements.exists():
            raise StageFailure("InvalidApp", f"apps/{app}/requirements.txt is missing")
        shared = [n for n in requirement_names(requirements.read_text()) if n in shared_dirs]
        app_tree = await asyncio.to_thread(tree_hash, root, f"apps/{app}")
        if app_tree is None:
            raise StageFailure("InvalidApp", f"commit {commit[:12]} has no apps/{app}")
        shared_trees: dict[str, str] = {}
        for name in shared:
            tree = await asyncio.to_thread(tree_hash, root, f"apps/{name}")
            shared_trees[name] = tree or ""
        key = source_key(app_tree, shared_trees, pins)
        verdict = await asyncio.to_thread(_verdict, ledger, registry, app, key, force)
        if verdict.changed and verdict.reuse_commit is None:
            previous = next((a for a in await asyncio.to_thread(
                ledger.artifacts, app=app, kind="image", limit=1)), None)
            if previous is not None and previous.commit_sha:
                files = await asyncio.to_thread(files_changed, root, previous.commit_sha,
                                                commit)
                if files is not None:
                    mine = why_changed(app, shared, files)
                    verdict = AppChange(app, key, True, f"{len(mine)} file(s) changed since "
                                        f"{previous.commit_sha[:12]}: "
                                        + ", ".join(mine[:5]) + ("…" if len(mine) > 5 else ""))
        await ctx.log(f"{app}: {'build' if verdict.changed else 'reuse'} — {verdict.reason}")
        verdicts.append(verdict)
    return ChangesResult(
        changed=[v.app for v in verdicts if v.changed],
        reused={v.app: ImageRef.of_app(ctx.settings.registry, v.app, v.reuse_digest)
                for v in verdicts if v.reuse_digest and not v.changed},
        source_keys={v.app: v.key for v in verdicts},
        reasons={v.app: v.reason for v in verdicts})


def _verdict(ledger: Ledger, registry: Registry, app: str, key: str, force: bool) -> AppChange:
    if force:
        return AppChange(app, key, True, "every app was asked for (--all)")
    tag = source_tag(key)
    known = next((a for a in ledger.artifacts(app=app, kind="image", limit=200)
                  if a.tag == tag), None)
    if known is None:
        return AppChange(app, key, True, "no image was built from these sources yet")
    try:
        served = registry.manifest_digest(image_repository(app), tag)
    except RegistryError as err:
        return AppChange(app, key, True, f"its image is no longer in the registry ({err})")
    return AppChange(app, key, False, f"same sources as {(known.commit_sha or '?')[:12]}, "
                     f"image {served[:19]}", reuse_digest=served,
                     reuse_commit=known.commit_sha)
