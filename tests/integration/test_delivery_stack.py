"""The Docker engine, registry and base image of `shipyard up`, really used: an image built
on the base image, pushed, and its digest read back from the registry."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shipyard.adapters.docker_engine import DockerEngine, EngineError, default_engine_url
from shipyard.adapters.registry import Registry, RegistryError
from shipyard.stack.base_image import BASE_IMAGE

pytestmark = pytest.mark.integration

REGISTRY = "127.0.0.1:5000"


@pytest.fixture
def hello_context(tmp_path: Path) -> Path:
    (tmp_path / "hello.py").write_text(
        "import sys\nprint('hello from', sys.version.split()[0])\n")
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\nCOPY hello.py /app/hello.py\n"
        'CMD ["python3", "/app/hello.py"]\n')
    return tmp_path


def test_the_base_image_runs_python_311(delivery_stack):
    output = DockerEngine(default_engine_url()).run(
        BASE_IMAGE, ["python3", "-c", "import sys, ssl; print(sys.version_info[:2])"])
    assert output.strip() == "(3, 11)"


def test_an_image_built_on_the_base_is_pushed_and_its_digest_read_back(
        delivery_stack, hello_context: Path):
    engine = DockerEngine(default_engine_url())
    tag = uuid.uuid4().hex[:12]
    reference = f"{REGISTRY}/shipyard-test/hello:{tag}"
    lines = list(engine.build(hello_context, reference,
                              labels={"dev.shipyard.run": "test-run"}))
    assert any("Successfully built" in line for line in lines)
    assert engine.run(reference, []).startswith("hello from 3.11")
    pushed = engine.push(reference)
    assert pushed.startswith("sha256:") and len(pushed) == 71
    assert Registry(REGISTRY).manifest_digest("shipyard-test/hello", tag) == pushed
    # Pushing the same image again is idempotent: same digest.
    assert engine.push(reference) == pushed


def test_a_build_error_names_the_image_and_the_cause(delivery_stack, tmp_path: Path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN exit 3\n")
    with pytest.raises(EngineError, match=r"building .*broken.* returned a non-zero code: 3"):
        list(DockerEngine(default_engine_url()).build(tmp_path, f"{REGISTRY}/t/broken:1"))


def test_an_unknown_tag_is_a_clear_registry_error(delivery_stack):
    with pytest.raises(RegistryError, match="has no shipyard-test/hello:no-such-tag"):
        Registry(REGISTRY).manifest_digest("shipyard-test/hello", "no-such-tag")


def test_up_again_changes_nothing_and_says_so(delivery_stack):
    done = subprocess.run([sys.executable, "-m", "shipyard.cli", "up", "--only", "docker",
                           "--only", "registry", "--only", "base-image"], env=delivery_stack,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "Nothing to do: the stack was already up." in done.stdout
