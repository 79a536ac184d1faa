"""How long each app's image takes to make, cold and cached, and how big it is.

Cold: an empty pip cache (every wheel downloaded) and no layer reused by the engine.
Cached: the same build again, pip's cache warm and the engine's layers reused. Needs the
Docker engine and the base image (``shipyard up --only docker --only base-image``).

    .venv/bin/python bench/app_images.py [APP ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from shipyard.adapters.app_image import build_app_image, local_packages, prepare_build_context
from shipyard.adapters.docker_engine import DockerEngine, default_engine_url
from stages.catalog import discover_apps

PROJECT = Path(__file__).resolve().parent.parent


def build_once(engine: DockerEngine, app: str, work: Path, pip_cache: Path,
               version: str, *, nocache: bool) -> tuple[float, float, int]:
    """(seconds gathering wheels, seconds building, image bytes)."""
    started = time.perf_counter()
    context = prepare_build_context(PROJECT / "apps" / app, work / app,
                                    packages=local_packages(PROJECT / "apps"),
                                    pip_cache=pip_cache, on_line=lambda _: None)
    gathered = time.perf_counter()
    built = build_app_image(engine, context, f"shipyard-bench/{app}:{version}",
                            labels={}, version=version, on_line=lambda _: None,
                            nocache=nocache)
    return gathered - started, time.perf_counter() - gathered, built.size_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("apps", nargs="*", default=discover_apps(PROJECT))
    args = parser.parse_args()
    engine = DockerEngine(default_engine_url())
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-images-"))
    print(f"{'app':10} {'cold wheels':>12} {'cold build':>11} {'cached wheels':>14} "
          f"{'cached build':>13} {'size':>9}")
    for app in args.apps:
        cold = build_once(engine, app, work, work / f"pip-{app}", "bench", nocache=True)
        cached = build_once(engine, app, work, work / f"pip-{app}", "bench", nocache=False)
        print(f"{app:10} {cold[0]:11.1f}s {cold[1]:10.1f}s {cached[0]:13.1f}s "
              f"{cached[1]:12.1f}s {cached[2] / 2**20:7.0f}MB")


if __name__ == "__main__":
    main()
