"""Small test images for the real node: one Python script on the base image, built on the
local engine and pushed to the local registry."""

from __future__ import annotations

import uuid
from pathlib import Path

from shipyard.adapters.docker_engine import DockerEngine, default_engine_url
from shipyard.stack.base_image import BASE_IMAGE

__all__ = ["REGISTRY", "script_image"]

REGISTRY = "127.0.0.1:5000"


def script_image(context: Path, name: str, script: str) -> str:
    """Build an image that runs ``script`` (``python3 -u /app/server.py``, port 8080) in
    the empty directory ``context``, push it as ``shipyard-test/<name>:<random>`` and
    return its reference."""
    (context / "server.py").write_text(script)
    (context / "Dockerfile").write_text(
        f'FROM {BASE_IMAGE}\nCOPY server.py /app/server.py\nEXPOSE 8080\n'
        'CMD ["python3", "-u", "/app/server.py"]\n')
    engine = DockerEngine(default_engine_url())
    reference = f"{REGISTRY}/shipyard-test/{name}:{uuid.uuid4().hex[:10]}"
    list(engine.build(context, reference))
    engine.push(reference)
    return reference
