"""Small helpers shared by the behaviour tests (guide, cross-compatibility, archive format,
import semantics, real libraries). Plain functions, no mocks of the library."""

from __future__ import annotations

import io
import struct
import zipfile
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
