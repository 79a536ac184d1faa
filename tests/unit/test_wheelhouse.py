"""A repository's requirements are read, never obeyed: options, paths and URLs are refused
with the line named; its own packages are replaced by what they declare; pip only ever
downloads binary wheels for the images' interpreter. (The downloads and the sandboxed build
run for real in tests/integration/test_app_images.py.)"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from shipyard.adapters.wheelhouse import (
    TARGET_PLATFORMS,
    WheelhouseError,
    WheelhouseTimedOut,
    build_requirements,
    download_argv,
    expand_local,
    gather_wheels,
    parse_requirements,
)

PROJECT = Path(__file__).resolve().parents[2]


def names(requirements: list[Requirement]) -> list[str]:
    return [str(r) for r in requirements]


def test_plain_requirements_are_read_with_comments_and_blanks_ignored() -> None:
    text = "# deps\nfastapi>=0.110\n\npsycopg[binary]>=3.2  # libpq inside\n"
    assert names(parse_requirements(text, source="r.txt")) == ["fastapi>=0.110",
                                                               "psycopg[binary]>=3.2"]


@pytest.mark.parametrize("line", [
    "--index-url https://evil.example/simple", "--extra-index-url https://evil.example",
    "-e .", "-r other.txt", "--no-binary :all:", "-i https://evil.example",
    "--trusted-host evil.example", "fastapi \\"])
def test_a_pip_option_is_refused_naming_the_line(line: str) -> None:
    with pytest.raises(WheelhouseError, match=r"apps/x/requirements.txt line 2: .*pip option"):
        parse_requirements(f"fastapi\n{line}\n", source="apps/x/requirements.txt")


@pytest.mark.parametrize("line", ["./vendor/evil", "/abs/path/evil", "evil-1.0.tar.gz",
                                  "evil-1.0-py3-none-any.whl", "evil.zip",
                                  "https://evil.example/evil-1.0.tar.gz"])
def test_a_path_or_archive_is_refused(line: str) -> None:
    with pytest.raises(WheelhouseError, match=r"line 1: .*is not a requirement"):
        parse_requirements(line, source="r.txt")


def test_a_direct_url_reference_is_refused() -> None:
    with pytest.raises(WheelhouseError, match="names a URL"):
        parse_requirements("evil @ https://evil.example/evil.whl", source="r.txt")


def test_the_shared_kit_is_replaced_by_its_declared_dependencies() -> None:
    packages = {"servicekit": PROJECT / "apps" / "servicekit"}
    expanded = names(expand_local(parse_requirements("servicekit\nhttpx>=0.27\n",
                                                     source="r.txt"), packages))
    assert "servicekit" not in " ".join(expanded)
    assert {"fastapi>=0.110", "uvicorn>=0.30", "httpx>=0.27"} <= set(expanded)


def test_a_local_package_with_dynamic_dependencies_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "pyproject.toml").write_text(
        '[project]\nname = "kit"\nversion = "1"\ndynamic = ["dependencies"]\n')
    with pytest.raises(WheelhouseError, match="dynamic: list the dependencies"):
        expand_local([Requirement("kit")], {"kit": tmp_path / "kit"})


def test_a_local_packages_own_requirements_are_checked_too(tmp_path: Path) -> None:
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "pyproject.toml").write_text(
        '[project]\nname = "kit"\nversion = "1"\n'
        'dependencies = ["evil @ https://evil.example/e.whl"]\n')
    with pytest.raises(WheelhouseError, match=r"kit/pyproject.toml \[project\] dependencies"):
        expand_local([Requirement("kit")], {"kit": tmp_path / "kit"})


def test_building_the_kit_needs_its_declared_backend_and_wheel() -> None:
    assert names(build_requirements(PROJECT / "apps" / "servicekit")) == ["setuptools>=64",
                                                                          "wheel"]


def test_pip_only_downloads_binary_wheels_for_cpython_311_manylinux(tmp_path: Path) -> None:
    argv = download_argv(tmp_path / "r.txt", tmp_path / "c.txt", tmp_path / "out",
                         tmp_path / "cache")
    assert argv[1:4] == ["-m", "pip", "download"]
    assert "wheel" not in argv and "install" not in argv
    assert argv[argv.index("--only-binary") + 1] == ":all:"
    assert argv[argv.index("--python-version") + 1] == "3.11"
    assert argv[argv.index("--implementation") + 1] == "cp"
    assert argv[argv.index("--abi") + 1] == "cp311"
    platforms = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--platform"]
    assert platforms == list(TARGET_PLATFORMS)
    assert "manylinux_2_36_x86_64" in platforms and "manylinux_2_39_x86_64" not in platforms


def test_a_pip_download_that_hangs_is_killed_at_its_deadline_naming_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An index that takes the connection and never answers (nothing leaves this host).
    with socket.create_server(("127.0.0.1", 0)) as silent:
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/")
        started = time.monotonic()
        with pytest.raises(WheelhouseTimedOut, match=r"ran past 1 s and was killed.*"
                                                      r"SHIPYARD_PIP_TIMEOUT_SECONDS"):
            gather_wheels([Requirement("httpx")], store=tmp_path / "store", constraints="",
                          pip_cache=tmp_path / "cache", on_line=lambda _: None,
                          timeout_seconds=1)
    assert time.monotonic() - started < 10
    assert not list((tmp_path / "store").iterdir())  # no half-gathered set is kept
