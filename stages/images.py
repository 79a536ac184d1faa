"""Image build and push: hermetic builds from the checked-out commit (wheels downloaded on the
host, binary only; the repository's own packages built in a sandbox; no network in the
build), pushed to the local registry; the digest the registry reports is recorded as the
run's artifact."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from shipyard.adapters.app_image import (
    AppImageError,
    AppImageTimedOut,
    build_app_image,
    local_packages,
    prepare_build_context,
)
from shipyard.adapters.blocking import run_blocking
from shipyard.adapters.docker_engine import DockerEngine, EngineError, default_engine_url
from shipyard.domain.changes import source_tag
from shipyard.domain.images import ImageRef, image_repository
from shipyard.store import Ledger
from stages.runtime import StageContext, StageFailure, StageResult, stage
from stages.thread_log import ThreadLog

__all__ = ["BuildResult", "PushResult", "build_image", "push_image"]

BUILD_TIMEOUT_SECONDS = 1200


class BuildResult(StageResult):
    app: str
    reference: str
    image_id: str
    size_bytes: int
    version: str

    def summary(self) -> str:
        return f"{self.reference} ({self.size_bytes / 2**20:.0f} MiB)"


class PushResult(StageResult):
    """The pushed image: by tag (``reference``) and by content (``image``)."""

    app: str
    reference: str
    image: ImageRef

    def summary(self) -> str:
        return f"{self.reference}@{self.image.digest[:19]}"


def _reference(registry: str, app: str, key: str) -> str:
    return f"{registry}/{image_repository(app)}:{source_tag(key)}"


@stage("build", timeout_seconds=BUILD_TIMEOUT_SECONDS)
async def build_image(ctx: StageContext, workspace: str, app: str, commit: str,
                      key: str) -> BuildResult:
    """Build ``apps/<app>`` of the checked-out ``commit``; its version is the commit."""
    root = Path(workspace)
    context = ctx.settings.home / "build" / ctx.run_id / app
    reference = _reference(ctx.settings.registry, app, key)
    version = commit[:12]
    try:
        async with ThreadLog(ctx) as log:
            await ctx.log(f"gathering wheels for apps/{app}")
            await run_blocking(prepare_build_context, root / "apps" / app, context,
                               packages=local_packages(root / "apps"),
                               pip_cache=ctx.settings.pip_cache_dir,
                               wheelhouse=ctx.settings.wheelhouse_dir, on_line=log,
                               pip_timeout_seconds=ctx.settings.pip_timeout_seconds)
            await log.drain()
            await ctx.log(f"building {reference} (no network)")
            labels = {"org.opencontainers.image.revision": commit,
                      "org.opencontainers.image.created": datetime.now(UTC).isoformat(),
                      "org.opencontainers.image.version": version,
                      "dev.shipyard.run": ctx.run_id, "dev.shipyard.app": app,
                      "dev.shipyard.source-key": key}
            built = await run_blocking(build_app_image, DockerEngine(default_engine_url()),
                                       context, reference, labels=labels, version=version,
                                       on_line=log)
    except AppImageTimedOut as err:
        raise StageFailure("TimedOut", str(err)) from err
    except AppImageError as err:
        raise StageFailure("WheelsFailed", str(err)) from err
    except EngineError as err:
        raise StageFailure("BuildFailed", str(err)) from err
    return BuildResult(app=app, reference=reference, image_id=built.image_id,
                       size_bytes=built.size_bytes, version=version)


@stage("push", retries=2, retry_delay_seconds=2, timeout_seconds=600)
async def push_image(ctx: StageContext, app: str, reference: str, commit: str) -> PushResult:
    """Push ``reference`` and record the registry's digest as the run's artifact."""
    await ctx.log(f"pushing {reference}")
    try:
        digest = await run_blocking(DockerEngine(default_engine_url()).push, reference)
    except EngineError as err:
        raise StageFailure("PushFailed", str(err)) from err
    repository, _, tag = reference.rpartition(":")
    await asyncio.to_thread(Ledger(ctx.store).record_artifact, run_id=ctx.run_id,
                            stage_ref=ctx.ref, app=app, name=repository, tag=tag,
                            digest=digest, commit_sha=commit)
    image = ImageRef(ctx.settings.registry, image_repository(app), digest)
    await ctx.log(f"pushed {image.reference}")
    return PushResult(app=app, reference=reference, image=image)
