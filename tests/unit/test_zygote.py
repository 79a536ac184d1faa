"""The zygote and its fork client, as real processes: a forked run gets the client's
streams, environment, directory and exit status; signals and hang-ups reach it; a changed
source or a missing zygote falls back to a cold start; and the zygote refuses to fork when
it holds threads or descriptors a child would share."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.worker import fork_client, zygote
from shipyard.worker.wire import Exited, Forked, ForkRequest, Refused, WireError, decode, encode
from tests.support.waiting import eventually

CLIENT = [sys.executable, "-S", fork_client.__file__]

SCRIPT = """\
import os, sys, time
print("pid", os.getpid(), "ppid", os.getppid())
print("cwd", os.getcwd())
print("marker", os.environ.get("RUN_MARKER"))
print("fds", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
print("argv", sys.argv[1:])
sys.stdout.flush()
mode = sys.argv[1] if len(sys.argv) > 1 else "exit"
if mode == "exit":
    sys.exit(int(sys.argv[2]))
if mode == "kill":
    os.kill(os.getpid(), int(sys.argv[2]))
if mode == "sleep":
    open(sys.argv[2], "w").write(str(os.getpid()))
    time.sleep(60)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zygote-project")
    (root / "zygote_preloaded.py").write_text("VALUE = 1\n")
    (root / "child.py").write_text(SCRIPT)
    return root


@pytest.fixture()
def running_zygote(project: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    path = Path(f"/tmp/zygote-test-{os.getpid()}-{time.monotonic_ns()}.sock")
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard.worker.zygote", "--socket", str(path),
         "--project", str(project), "--preload", "zygote_preloaded"],
        env={**os.environ, "PYTHONPATH": f"{project}:{Path.cwd()}"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    eventually(path.exists, seconds=30, what="the zygote listens")
    yield process, path
    process.terminate()
    process.wait(timeout=20)


def has_text(path: Path) -> bool:
    return path.read_text() != ""


def process_gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def run_client(socket_path: Path | None, *args: str, cwd: Path,
               marker: str = "m1") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUN_MARKER": marker}
    env.pop(fork_client.SOCKET_ENV, None)
    if socket_path is not None:
        env[fork_client.SOCKET_ENV] = str(socket_path)
    return subprocess.run([*CLIENT, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=30, check=False)


def test_a_forked_run_gets_the_clients_streams_environment_directory_and_exit_code(
        running_zygote: tuple[subprocess.Popen[str], Path], project: Path,
        tmp_path: Path) -> None:
    process, path = running_zygote
    done = run_client(path, str(project / "child.py"), "exit", "7", cwd=tmp_path,
                      marker="first")
    assert done.returncode == 7, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["cwd"] == str(tmp_path)
    assert lines["marker"] == "first"
    assert lines["fds"] == "[0, 1, 2, 3]"  # 3: the listing's own descriptor
    assert lines["argv"] == "['exit', '7']"
    assert "starting the run in a new interpreter" not in done.stderr, done.stderr
    assert int(lines["pid"].split()[2]) == process.pid, "the zygote is the run's parent"
    # The environment is the client's, not the zygote's: a second run sees its own.
    again = run_client(path, str(project / "child.py"), "exit", "0", cwd=tmp_path,
                       marker="second")
    assert "marker second" in again.stdout and again.returncode == 0


def test_a_run_killed_by_a_signal_ends_its_client_by_the_same_signal(
        running_zygote: tuple[subprocess.Popen[str], Path], project: Path,
        tmp_path: Path) -> None:
    _, path = running_zygote
    for signum in (signal.SIGUSR1, signal.SIGKILL):
        done = run_client(path, str(project / "child.py"), "kill", str(int(signum)),
                          cwd=tmp_path)
        assert done.returncode == -signum, done.stderr


def test_sigterm_to_the_client_reaches_the_run_and_killing_the_client_ends_it(
        running_zygote: tuple[subprocess.Popen[str], Path], project: Path,
        tmp_path: Path) -> None:
    _, path = running_zygote
    for how in (signal.SIGTERM, signal.SIGKILL):
        pid_file = tmp_path / f"pid-{how}"
        env = {**os.environ, fork_client.SOCKET_ENV: str(path)}
        client = subprocess.Popen([*CLIENT, str(project / "child.py"), "sleep", str(pid_file)],
                                  cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
        eventually(pid_file.exists, seconds=10, what="the run started")
        eventually(functools.partial(has_text, pid_file), seconds=5, what="the run's pid")
        run_pid = int(pid_file.read_text())
        assert run_pid != client.pid
        client.send_signal(how)
        assert client.wait(timeout=10) == -how
        eventually(functools.partial(process_gone, run_pid), seconds=10,
                   what=f"the run ended after its client got signal {how}")


def test_a_stopped_zygote_leaves_its_runs_running_and_their_clients_wait_for_them(
        running_zygote: tuple[subprocess.Popen[str], Path], project: Path,
        tmp_path: Path) -> None:
    process, path = running_zygote
    pid_file = tmp_path / "pid"
    env = {**os.environ, fork_client.SOCKET_ENV: str(path)}
    client = subprocess.Popen([*CLIENT, str(project / "child.py"), "sleep", str(pid_file)],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)
    eventually(pid_file.exists, seconds=10, what="the run started")
    eventually(functools.partial(has_text, pid_file), seconds=5, what="the run's pid")
    run_pid = int(pid_file.read_text())
    process.terminate()
    assert process.wait(timeout=10) == 0
    time.sleep(0.5)
    assert not process_gone(run_pid), "the run goes on without its zygote"
    assert client.poll() is None, "its client waits for it"
    os.kill(run_pid, signal.SIGKILL)
    assert client.wait(timeout=10) == 1, "the run's status went with the zygote"


def test_without_a_zygote_the_client_becomes_the_command(project: Path,
                                                         tmp_path: Path) -> None:
    done = run_client(tmp_path / "absent.sock", str(project / "child.py"), "exit", "3",
                      cwd=tmp_path)
    assert done.returncode == 3
    assert "no zygote answers" in done.stderr
    assert "marker m1" in done.stdout
    no_socket = run_client(None, str(project / "child.py"), "exit", "0", cwd=tmp_path)
    assert no_socket.returncode == 0 and "no zygote;" in no_socket.stderr


def test_a_zygote_whose_source_changed_refuses_stops_listening_and_exits(
        running_zygote: tuple[subprocess.Popen[str], Path], project: Path,
        tmp_path: Path) -> None:
    process, path = running_zygote
    source = project / "zygote_preloaded.py"
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    # A request refuses at once; an idle zygote notices within seconds by itself.
    done = run_client(path, str(project / "child.py"), "exit", "5", cwd=tmp_path)
    assert done.returncode == 5, "the run still ran, cold"
    assert "its source changed" in done.stderr or "no zygote answers" in done.stderr
    assert process.wait(timeout=10) == 0
    assert not path.exists()
    assert process.stdout is not None and "its source changed" in process.stdout.read()


def test_a_thread_makes_forking_unsafe_and_names_the_thread() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="leaked-thread")
    thread.start()
    try:
        reason = zygote.thread_problem()
        assert reason is not None and "leaked-thread" in reason
    finally:
        stop.set()
        thread.join()


def test_a_descriptor_the_zygote_did_not_open_makes_forking_unsafe() -> None:
    own = {int(fd) for fd in os.listdir("/proc/self/fd")}
    assert zygote.descriptor_problem(own) is None
    left, right = socket.socketpair()
    try:
        reason = zygote.descriptor_problem(own)
        # (the listing's own descriptor may have had the number the pair's first got)
        assert reason is not None and f"{right.fileno()} -> socket:" in reason
        assert zygote.descriptor_problem(own | {left.fileno(), right.fileno()}) is None
    finally:
        left.close()
        right.close()


def test_the_real_zygote_is_single_threaded_and_holds_no_foreign_descriptors(
        tmp_path: Path) -> None:
    """The zygote of this checkout imports Prefect and every pipeline without starting a
    thread or opening a connection: forking it is safe (it refuses otherwise)."""
    path = Path(f"/tmp/zygote-real-{os.getpid()}.sock")
    process = subprocess.Popen(
        [sys.executable, "-m", "shipyard.worker.zygote", "--socket", str(path),
         "--project", str(Path.cwd())], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        eventually(path.exists, seconds=60, what="the real zygote listens")
        assert len(os.listdir(f"/proc/{process.pid}/task")) == 1
        script = tmp_path / "probe.py"
        script.write_text("import sys; print(sorted(sys.modules).count('pipelines.cd'))\n")
        done = run_client(path, str(script), cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "1", "the run sees the pipelines imported already"
        assert "refused" not in done.stderr, done.stderr
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert "imported" in output and "exits after 1 forks" in output


def test_wire_messages_round_trip_and_garbage_is_named() -> None:
    for message in (ForkRequest(argv=["-m", "x"], env={"A": "1"}, cwd="/"), Forked(5),
                    Refused("why"), Exited(256)):
        assert decode(encode(message)[4:]) == message
    with pytest.raises(WireError, match="unknown message kind"):
        decode(b'{"kind": "nope"}')
    with pytest.raises(WireError, match="not a message"):
        decode(b"[1")
