"""The messages between a fork client and the zygote, over a Unix stream socket.

Each message is a 4-byte big-endian length and a JSON object with a ``kind``. The client's
first message, a fork request, carries its standard streams as ``SCM_RIGHTS`` file
descriptors, so the forked flow run writes where the worker reads. The zygote answers
``forked`` (with the child's pid) or ``refused`` (with why), then ``exited`` (with the
child's wait status) when the child ends. Closing the connection is the client's way of
saying it is gone: the zygote then ends the child's process group.

Standard library only: :mod:`shipyard.worker.fork_client` imports this module by path
and must start in milliseconds.
"""

from __future__ import annotations

import array
import json
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Exited", "ForkRequest", "Forked", "Message", "Refused", "WireError",
           "decode", "encode", "receive", "send"]

HEADER = struct.Struct(">I")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
"""A fork request carries an environment; nothing legitimate comes near this."""
STREAM_FDS = 3


class WireError(RuntimeError):
    """The peer sent something that is not a message of this protocol, or hung up."""


@dataclass(frozen=True, slots=True)
class ForkRequest:
    """Run ``argv`` (``["-m", module, *args]`` or ``[path, *args]``) as ``__main__`` in a
    forked child, with exactly ``env`` as its environment and ``cwd`` as its directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    kind: str = field(default="fork", init=False)


@dataclass(frozen=True, slots=True)
class Forked:
    pid: int
    kind: str = field(default="forked", init=False)


@dataclass(frozen=True, slots=True)
class Refused:
    """The zygote will not fork (its source changed, or it is unsafe to); the client runs
    the command cold instead."""

    reason: str
    kind: str = field(default="refused", init=False)


@dataclass(frozen=True, slots=True)
class Exited:
    """The child ended with ``status``, as :func:`os.waitpid` reports it."""

    status: int
    kind: str = field(default="exited", init=False)


Message = ForkRequest | Forked | Refused | Exited


def encode(message: Message) -> bytes:
    fields = {name: getattr(message, name) for name in message.__slots__}
    body = json.dumps(fields, separators=(",", ":")).encode()
    return HEADER.pack(len(body)) + body


def decode(body: bytes) -> Message:
    """Raises WireError naming what is wrong with ``body``."""
    try:
        raw: dict[str, Any] = json.loads(body)
        kind = raw.pop("kind")
        if kind == "fork":
            return ForkRequest(argv=[str(a) for a in raw["argv"]],
                               env={str(k): str(v) for k, v in raw["env"].items()},
                               cwd=str(raw["cwd"]))
        if kind == "forked":
            return Forked(pid=int(raw["pid"]))
        if kind == "refused":
            return Refused(reason=str(raw["reason"]))
        if kind == "exited":
            return Exited(status=int(raw["status"]))
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise WireError(f"not a message: {err}") from err
    raise WireError(f"unknown message kind {kind!r}")


def send(sock: socket.socket, message: Message, fds: list[int] | None = None) -> None:
    data = encode(message)
    if fds:
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        sent = sock.sendmsg([data], ancillary)
        data = data[sent:]
    if data:
        sock.sendall(data)


def receive(sock: socket.socket, *, with_fds: bool = False) -> tuple[Message, list[int]]:
    """One message and the descriptors that came with its first bytes (only asked for
    with ``with_fds``). Raises WireError on a hang-up or garbage."""
    fds: list[int] = []
    if with_fds:
        space = socket.CMSG_SPACE(STREAM_FDS * array.array("i").itemsize)
        head, ancillary, _flags, _addr = sock.recvmsg(HEADER.size, space)
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                fds.extend(received)
        head += _exactly(sock, HEADER.size - len(head))
    else:
        head = _exactly(sock, HEADER.size)
    (length,) = HEADER.unpack(head)
    if length > MAX_MESSAGE_BYTES:
        raise WireError(f"a message of {length} bytes is more than this protocol carries")
    return decode(_exactly(sock, length)), fds


def _exactly(sock: socket.socket, count: int) -> bytes:
    chunks: list[bytes] = []
    while count > 0:
        chunk = sock.recv(count)
        if not chunk:
            raise WireError("the peer hung up")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)
