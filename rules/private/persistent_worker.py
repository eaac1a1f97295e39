"""Bazel's persistent-worker protocol, as the `torch_package` builder speaks it.

Bazel starts the builder once with ``--persistent_worker`` and then writes WorkRequests to its
stdin and reads WorkResponses from its stdout, each a protocol-buffer message preceded by its
length as a varint (Bazel 4.2's default "proto" worker protocol; its JSON protocol is not used).
The few fields needed are encoded here by hand, so the builder needs no protobuf library:

* WorkRequest: ``arguments`` (1, repeated string: the lines of the action's ``@flagfile``),
  ``inputs`` (2, repeated ``Input``: ``path`` = 1, ``digest`` = 2), ``request_id`` (3);
* WorkResponse: ``exit_code`` (1), ``output`` (2: what Bazel shows as the action's output),
  ``request_id`` (3).

Bazel sends one request at a time (no ``supports-multiplex-workers``), so ``request_id`` is 0.

Each request's export sees only the request's declared inputs: :func:`declared_tree` links
them into a fresh folder, as Bazel's own sandbox does for the ``sandboxed`` strategy, because a
worker otherwise runs in the execroot, where every source file of the workspace is reachable.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class ProtocolError(Exception):
    """The bytes on stdin are not a WorkRequest."""


@dataclass
class WorkRequest:
    arguments: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    request_id: int = 0


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise ProtocolError("truncated varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of every field in a message: ints for varints, bytes otherwise."""
    found: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, position = _read_varint(data, position)
            found.append((number, value))
            continue
        if wire_type == _LENGTH:
            size, position = _read_varint(data, position)
        elif wire_type in (_FIXED64, _FIXED32):
            size = 8 if wire_type == _FIXED64 else 4
        else:
            raise ProtocolError(f"wire type {wire_type} of field {number}")
        if position + size > len(data):
            raise ProtocolError(f"field {number} runs past the message")
        found.append((number, data[position : position + size]))
        position += size
    return found


def parse_request(data: bytes) -> WorkRequest:
    request = WorkRequest()
    for number, value in _fields(data):
        if number == 1 and isinstance(value, bytes):
            request.arguments.append(value.decode("utf-8"))
        elif number == 2 and isinstance(value, bytes):
            request.inputs += [path.decode("utf-8") for n, path in _fields(value) if n == 1 and isinstance(path, bytes)]
        elif number == 3 and isinstance(value, int):
            request.request_id = value
    return request


def read_request(stream: BinaryIO) -> WorkRequest | None:
    """The next request on ``stream``; None at its end (Bazel closes it to stop the worker)."""
    size = shift = 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift:
                raise ProtocolError("stdin ended inside a message length")
            return None
        size |= (byte[0] & 0x7F) << shift
        shift += 7
        if not byte[0] & 0x80:
            break
    data = stream.read(size)
    if len(data) != size:
        raise ProtocolError(f"stdin ended inside a {size}-byte request")
    return parse_request(data)


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int32 is sent as its 64-bit two's complement
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_response(exit_code: int, output: str, request_id: int) -> bytes:
    """A length-delimited WorkResponse (fields at their default value are left out, as protobuf does)."""
    message = b""
    if exit_code:
        message += _varint(1 << 3 | _VARINT) + _varint(exit_code)
    if output:
        text = output.encode("utf-8")
        message += _varint(2 << 3 | _LENGTH) + _varint(len(text)) + text
    if request_id:
        message += _varint(3 << 3 | _VARINT) + _varint(request_id)
    return _varint(len(message)) + message


def declared_tree(execroot: Path, inputs: list[str]) -> Path:
    """A new folder holding a link to each of ``inputs`` (execroot-relative) and nothing else."""
    for path in inputs:
        # A link is made at tree/path: a path that is absolute or climbs out would put one
        # outside the folder (and so outside what this request may see or write).
        if not path or path.startswith("/") or ".." in Path(path).parts:
            raise ProtocolError(f"input {path!r} is not a path inside the execroot")
    tree = Path(tempfile.mkdtemp(prefix="torchpack-worker-"))
    linked: set[str] = set()
    for path in sorted(inputs):
        # An input inside a linked folder (a source folder, a tree artifact) is already there;
        # creating it would write into the folder the link points at.
        parents = Path(path).parents
        if any(str(parent) in linked for parent in parents):
            continue
        link = tree / path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(execroot / path)
        linked.add(path)
    return tree


def move_outputs(tree: Path, execroot: Path, outputs: list[str]) -> None:
    """Move the outputs the export wrote into ``tree`` to their place in the execroot."""
    for path in outputs:
        made = tree / path
        if made.exists():
            (execroot / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(made), str(execroot / path))


def serve(handle: Callable[[WorkRequest], tuple[int, str]]) -> int:
    """Answer requests until Bazel closes stdin; ``handle`` returns (exit code, output)."""
    # The protocol owns file descriptor 1: anything else printed goes to stderr (Bazel's
    # worker log), not into the middle of a response.
    responses = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    while True:
        try:
            request = read_request(requests)
        except ProtocolError as error:
            print(f"torch_package worker: {error}", file=sys.stderr)
            return 2
        if request is None:
            return 0
        try:
            exit_code, output = handle(request)
        except Exception:  # noqa: BLE001  (the worker must answer, and stay up for the next request)
            exit_code, output = 1, "torch_package worker: " + traceback.format_exc()
        responses.write(encode_response(exit_code, output, request.request_id))
        responses.flush()
