"""The sandbox's denials are in the container's options whatever a confinement asks, and
what the container leaves in its output folder is taken back only as a regular file.
(tests/integration/test_test_isolation.py runs hostile tests in the real engine.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.adapters.sandbox import (
    BASE_ENVIRONMENT,
    Confinement,
    Limits,
    SandboxOutputError,
    container_options,
    describe,
    read_output_file,
    stage_source,
    writable_dir,
)

LIMITS = Limits(cpus=1.5, memory_mib=512, pids=200, seconds=60)


def confinement(**changes: object) -> Confinement:
    fields: dict[str, object] = {
        "image": "shipyard/test-runner:abc", "command": ("python", "-m", "pytest"),
        "limits": LIMITS, "read_only": {"/workspace/apps": Path("/host/apps")},
        "writable": {"/out": Path("/host/out")}}
    fields.update(changes)
    return Confinement(**fields)  # type: ignore[arg-type]


def test_the_container_has_no_network() -> None:
    assert container_options(confinement())["network_mode"] == "none"


def test_the_container_gets_no_variable_of_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHIPYARD_DATABASE_URL", "postgresql://secret@db/shipyard")
    environment = container_options(confinement(environment={"EXTRA": "1"}))["environment"]
    assert environment == {**BASE_ENVIRONMENT, "EXTRA": "1"}
    assert "SHIPYARD_DATABASE_URL" not in environment and environment["HOME"] == "/tmp"


def test_the_root_is_read_only_and_only_scratch_and_output_are_writable() -> None:
    options = container_options(confinement())
    assert options["read_only"] is True
    assert list(options["tmpfs"]) == ["/tmp"]
    assert "noexec" in options["tmpfs"]["/tmp"] and "size=512m" in options["tmpfs"]["/tmp"]
    assert options["volumes"] == {"/host/apps": {"bind": "/workspace/apps", "mode": "ro"},
                                  "/host/out": {"bind": "/out", "mode": "rw"}}


def test_the_container_runs_unprivileged() -> None:
    options = container_options(confinement())
    assert not options["user"].startswith("0")
    assert options["cap_drop"] == ["ALL"]
    assert options["security_opt"] == ["no-new-privileges"]
    assert "privileged" not in options and "devices" not in options


def test_the_limits_bound_cpu_memory_swap_and_processes() -> None:
    options = container_options(confinement())
    assert options["nano_cpus"] == 1_500_000_000
    assert options["mem_limit"] == options["memswap_limit"] == "512m"
    assert options["pids_limit"] == 200
    assert options["init"] is True


def test_a_caller_cannot_take_the_sandbox_label_away() -> None:
    options = container_options(confinement(labels={"dev.shipyard.run": "r1"}))
    assert options["labels"] == {"dev.shipyard.sandbox": "true", "dev.shipyard.run": "r1"}


def test_the_description_names_what_is_refused() -> None:
    text = describe(confinement())
    for words in ("no network", "no host environment", "read-only root",
                  "writable: /tmp (tmpfs), /out", "no capabilities", "60 s"):
        assert words in text


def test_an_output_file_is_read_back(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_text("<testsuite/>")
    assert read_output_file(tmp_path / "junit.xml", max_bytes=100) == "<testsuite/>"


def test_a_symlink_in_the_output_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    (tmp_path / "junit.xml").symlink_to(secret)
    with pytest.raises(SandboxOutputError):
        read_output_file(tmp_path / "junit.xml", max_bytes=100)


def test_a_fifo_in_the_output_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "junit.xml")
    with pytest.raises(SandboxOutputError, match="not a regular file"):
        read_output_file(tmp_path / "junit.xml", max_bytes=100)


def test_a_huge_output_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junit.xml").write_bytes(b"x" * 101)
    with pytest.raises(SandboxOutputError, match="101 bytes"):
        read_output_file(tmp_path / "junit.xml", max_bytes=100)


def test_a_missing_output_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(SandboxOutputError, match="No such file"):
        read_output_file(tmp_path / "junit.xml", max_bytes=100)


def test_the_output_folder_is_new_and_writable_by_any_uid(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.xml").write_text("old")
    out = writable_dir(tmp_path / "out")
    assert list(out.iterdir()) == []
    assert out.stat().st_mode & 0o777 == 0o777


def test_a_staged_checkout_keeps_links_as_links_and_is_readable(tmp_path: Path) -> None:
    source = tmp_path / "apps"
    (source / "app").mkdir(parents=True)
    (source / "app" / "private.py").write_text("x = 1\n")
    (source / "app" / "private.py").chmod(0o600)
    (source / "app" / "run.sh").write_text("#!/bin/sh\n")
    (source / "app" / "run.sh").chmod(0o700)
    (source / "app" / "leak").symlink_to("/etc/hostname")
    staged = stage_source(source, tmp_path / "staged")
    assert (staged / "app" / "private.py").stat().st_mode & 0o777 == 0o644
    assert (staged / "app" / "run.sh").stat().st_mode & 0o777 == 0o755
    assert (staged / "app" / "leak").is_symlink()
    assert os.readlink(staged / "app" / "leak") == "/etc/hostname"
