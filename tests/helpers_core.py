"""Small helpers shared by the behaviour tests (guide, cross-compatibility, archive format,
import semantics, real libraries). Plain functions, no mocks of the library."""

from __future__ import annotations

import functools
import io
import resource
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path


def zip_infos(data: bytes) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.infolist()


def top_folder(data: bytes) -> str:
    """The single top-level folder every record sits under (asserts there is exactly one)."""
    tops = {info.filename.split("/", 1)[0] for info in zip_infos(data)}
    assert len(tops) == 1, f"records under several top-level folders: {sorted(tops)}"
    assert all("/" in info.filename for info in zip_infos(data))
    return tops.pop()


def records(data: bytes) -> dict[str, bytes]:
    """Record name (without the top-level folder) -> content."""
    top = top_folder(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name[len(top) + 1 :]: zf.read(name) for name in zf.namelist()}


def local_data_offset(data: bytes, info: zipfile.ZipInfo) -> int:
    """Offset of a record's data, computed from its local file header."""
    off = info.header_offset
    sig, *_rest = struct.unpack_from("<IHHHHHIIIHH", data, off)
    assert sig == 0x04034B50, "local header signature"
    name_len, extra_len = struct.unpack_from("<HH", data, off + 26)
    return off + 30 + name_len + extra_len


def corpus_source(relpath: str) -> str:
    return (Path(__file__).parent / "corpus" / relpath).read_text()


@functools.lru_cache(maxsize=1)
def _cli_address_space() -> int:
    """Bytes of address space a fresh interpreter holds once it imported torch and the CLI.

    It depends on torch's build: 0.6 GiB with the CPU build, 3 GiB with the CUDA build the
    package index gives Pythons other than 3.11 (mapped, not used, without a GPU).
    """
    probe = "import torch, torchpack.cli\nprint(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmPeak:')))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True)
    return int(result.stdout) * 1024


def limit_address_space(headroom: int) -> Callable[[], None]:
    """A ``preexec_fn`` capping a child's address space at ``headroom`` bytes beyond what it
    holds once torch and torchpack's CLI are imported, so a memory blow-up fails there."""
    limit = _cli_address_space() + headroom

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return apply
