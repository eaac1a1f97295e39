"""Large records are written by the writer's pipeline: CRC-32 in pieces on helper threads,
combined, and the digest and the write on other threads. These tests pin what must not change
because of that: valid CRCs, the same bytes as any other way of writing, nothing left behind
when a write fails."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
import zipfile
import zlib
from pathlib import Path

import blake3
import torch
import torch.package
from hypothesis import example, given
from hypothesis import strategies as st

import torchpack
from helpers_core import records
from torchpack import _archive_writer
from torchpack._zip_format import crc32, crc32_combine

INTEGRITY = ".data/torchpack/integrity.json"


@given(st.binary(max_size=4096), st.binary(max_size=4096), st.integers(min_value=0, max_value=2**32 - 1))
@example(b"", b"", 0)
@example(b"", b"tail", 0)
@example(b"head", b"", 0)
@example(b"\xff" * 64, b"\0" * 4096, 0)
def test_combined_crc_is_the_crc_of_the_concatenation(first: bytes, second: bytes, start: int) -> None:
    # ``start`` continues a running CRC, as zlib.crc32(data, value) does: combining still holds.
    assert crc32_combine(zlib.crc32(first, start), zlib.crc32(second), len(second)) == zlib.crc32(second, zlib.crc32(first, start))
    # torchpack's CRC-32 (ISA-L's) is zlib's, running value included.
    assert crc32(first, start) == zlib.crc32(first, start) and crc32(second) == zlib.crc32(second)


def _mixed_tensors() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    piece = _archive_writer._CRC_PIECE
    return {
        # Several pieces and a short last one; exactly one piece; just over the pipelining size.
        "pieces": torch.randint(0, 256, (2 * piece + 12345,), dtype=torch.uint8),
        "small": torch.randn(7),
        "one_piece": torch.randint(0, 256, (piece,), dtype=torch.uint8),
        "edge": torch.randn(_archive_writer._PIPELINED_FROM // 4 + 1),
        "small_after": torch.arange(5),
    }


def _export(target: object, tensors: dict[str, torch.Tensor]) -> None:
    with torchpack.PackageExporter(target) as exporter:
        exporter.save_pickle("data", "tensors.pkl", tensors)
        exporter.save_text("data", "note.txt", "after the tensors")


def test_pipelined_records_have_valid_crcs_digests_and_the_same_bytes_every_way(tmp_path: Path) -> None:
    tensors = _mixed_tensors()
    path = tmp_path / "mixed.pt"
    _export(path, tensors)
    buffer = io.BytesIO()
    _export(buffer, tensors)
    assert path.read_bytes() == buffer.getvalue()

    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None  # every record's CRC-32, pipelined ones included
    contents = records(path.read_bytes())
    document = json.loads(contents[INTEGRITY])
    for name, entry in document["records"].items():
        assert entry["blake3"] == blake3.blake3(contents[name]).hexdigest(), name

    loaded = torchpack.PackageImporter(path).load_pickle("data", "tensors.pkl")
    theirs = torch.package.PackageImporter(str(path)).load_pickle("data", "tensors.pkl")
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor) and torch.equal(theirs[name], tensor), name


def test_a_write_that_fails_in_the_pipeline_leaves_no_file(tmp_path: Path) -> None:
    """A real failed write: the process may not write files above 8 MiB (RLIMIT_FSIZE), so
    the output thread's write of a 40 MiB record fails with EFBIG."""
    script = textwrap.dedent(
        f"""
        import os, resource, signal, sys
        import torch, torchpack
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing us
        big = torch.zeros(10 << 20)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 << 20, 8 << 20))
        try:
            with torchpack.PackageExporter({str(tmp_path / "out.pt")!r}) as exporter:
                exporter.save_pickle("data", "big.pkl", big)
        except OSError as error:
            print("failed:", error.errno == __import__("errno").EFBIG)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "failed: True", done.stderr
    assert list(tmp_path.iterdir()) == []  # neither the archive nor its temporary file
