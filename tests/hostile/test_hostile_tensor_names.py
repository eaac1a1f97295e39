"""Naming tensors (``torchpack inspect`` / ``diff``: ``head.bias``) on hostile pickles.

The names come from a skeleton of the pickled object built from its opcodes; a hostile
pickle must not make that run code, recurse, take quadratic or exponential time, or hold
memory beyond a bound: nesting 90,000 deep, a memo graph with 2**60 paths, more opcodes
than are modelled. Each case runs the CLI as a user does, in a subprocess under an
address-space limit and a timeout.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import torch

import torchpack
from torchpack.analyze.tensor_names import MAX_DEPTH, MAX_OPCODES, tensor_names
from helpers_core import limit_address_space

REPO = Path(__file__).resolve().parents[2]
#: Address space for each command beyond what torch and the interpreter hold before any input.
MEMORY_HEADROOM = 5 << 29  # 2.5 GiB


def inspect_json(archive: Path, marker: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "torchpack", "inspect", "--json", str(archive)],
        capture_output=True, text=True, timeout=120, env=env, preexec_fn=limit_address_space(MEMORY_HEADROOM),
    )
    assert result.returncode == 0, result.stderr
    assert not marker.exists()  # nothing of the archive ran
    return {entry["record"]: entry for entry in json.loads(result.stdout)["pickles"]}


def _text(value: str) -> bytes:
    return b"X" + struct.pack("<I", len(value)) + value.encode()


def tensor_opcodes(key: int) -> bytes:
    """Opcodes that push a 2-element float tensor as torch pickles one (storage ``key``)."""
    storage_id = b"(" + _text("storage") + b"ctorch\nFloatStorage\n" + _text(str(key)) + _text("cpu") + b"K\x02tQ"
    return b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage_id + b"K\x00K\x02\x85K\x01\x85\x89NtR"


def trap_opcodes(marker: Path) -> bytes:
    """``os.system("touch MARKER")``, popped: the file appears if anything runs the pickle."""
    return b"cos\nsystem\n" + _text(f"touch {marker}") + b"\x85R0"


def archive_with(path: Path, record: str, body: bytes, marker: Path) -> Path:
    with torchpack.PackageExporter(str(path)) as exporter:
        exporter.save_pickle("data", "real.pkl", {"w": torch.ones(2)})
        exporter.save_binary("data", record, b"\x80\x02" + trap_opcodes(marker) + body + b".")
    return path


def test_a_tensor_below_90000_nested_lists_is_left_unnamed_in_bounded_work(tmp_path):
    marker = tmp_path / "ran"
    depth = 90_000  # within MAX_OPCODES, so that the depth bound is what stops it
    # [[[...[tensor]...]]]: EMPTY_LIST x depth, the tensor, APPEND x (depth).
    body = b"]" * depth + tensor_opcodes(0) + b"a" * depth
    entries = inspect_json(archive_with(tmp_path / "deep.pt", "deep.pkl", body, marker), marker)
    assert entries["data/deep.pkl"]["tensors"] == []  # deeper than MAX_DEPTH steps
    # Exactly MAX_DEPTH steps down is still named.
    at_the_bound = b"\x80\x02" + b"]" * MAX_DEPTH + tensor_opcodes(0) + b"a" * MAX_DEPTH + b"."
    assert [tensor.name for tensor in tensor_names(at_the_bound)] == ["[0]" * MAX_DEPTH]
    assert entries["data/real.pkl"]["tensors"] == [
        {"name": "w", "shape": [2], "dtype": "float32", "storage": ".data/0.storage"}
    ]


def test_a_memo_graph_with_2_to_the_60_paths_is_walked_once(tmp_path):
    marker = tmp_path / "ran"
    levels = 60
    # L0 = [tensor]; L(i+1) = [L(i), L(i)] through the memo: 2**60 paths reach the tensor.
    body = b"]" + tensor_opcodes(0) + b"a" + b"\x94"  # MEMOIZE -> 0
    for level in range(levels):
        body += b"0](h" + bytes([level]) + b"h" + bytes([level]) + b"e\x94"
    body += b"0h" + bytes([levels])
    names = tensor_names(b"\x80\x02" + body + b".")
    assert [tensor.name for tensor in names] == ["[0]" * (levels + 1)]
    entries = inspect_json(archive_with(tmp_path / "dag.pt", "dag.pkl", body, marker), marker)
    assert [tensor["name"] for tensor in entries["data/dag.pkl"]["tensors"]] == ["[0]" * (levels + 1)]


def test_a_pickle_past_the_modelled_opcodes_keeps_storage_names(tmp_path):
    marker = tmp_path / "ran"
    # A dict of MAX_OPCODES // 2 + 1 small ints, then the tensor: too long to model.
    count = MAX_OPCODES // 2 + 1
    body = b"}(" + b"K\x01" * (2 * count) + b"u0" + tensor_opcodes(0)
    entries = inspect_json(archive_with(tmp_path / "long.pt", "long.pkl", body, marker), marker)
    assert entries["data/long.pkl"]["tensors"] is None
    assert entries["data/long.pkl"]["storages"] == [".data/0.storage"]  # still listed by number
