"""Hostile archives against the ZIP reader: deflate bombs, sizes and counts that lie.

Each case builds its own archive in ``tmp_path`` from the small valid archive of
:mod:`archive_surgery` and must get one :class:`ArchiveFormatError` naming the archive file and
the record, write nothing and run nothing. Bombs are built with ISA-L (0.1 s per 512 MiB of
zeros); the memory-bound cases open them in a child process whose address space is capped
below what inflating them would need, so a bound that did not hold would end in MemoryError.
"""

from __future__ import annotations

import io
import random
import struct
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from isal import isal_zlib

from archive_surgery import INTEGRITY, central_offset, load_all, rebuild, valid_archive
from torchpack import ArchiveFormatError, PackageImporter
from torchpack._zip_format import MAX_INFLATED_SIZE_VARIABLE

VALID = valid_archive()
PICKLE = "data/tensors.pkl"
SOURCE = "zoo/net.py"
STORAGE = ".data/0.storage"
#: The victim's address space may grow by this much; every bomb inflates to more.
HEADROOM = 3 << 29  # 1.5 GiB
BOMB_SIZE = 2 << 30  # 2 GiB of zeros, 2 MiB deflated


def _deflated_zeros(size: int) -> bytes:
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
    chunk = bytes(64 << 20)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join(parts) + compressor.compress(bytes(size % len(chunk))) + compressor.flush()


@pytest.fixture(scope="module")
def bomb_stream() -> bytes:
    return _deflated_zeros(BOMB_SIZE)


def _local_offset(data: bytes, record: str) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return next(info.header_offset for info in archive.infolist() if info.filename.endswith("/" + record))


def _as_deflated(data: bytes, record: str, stream: bytes, declared: int) -> bytes:
    """``data`` with ``record`` holding the raw deflate ``stream`` and declaring ``declared``
    bytes inflated, in both of its headers (so that they agree, as a careful attacker makes them)."""
    edited = bytearray(rebuild(data, replace={record: stream}, refresh_integrity=record != INTEGRITY))
    local, central = _local_offset(edited, record), central_offset(bytes(edited), record)
    struct.pack_into("<H", edited, local + 8, zipfile.ZIP_DEFLATED)
    struct.pack_into("<H", edited, central + 10, zipfile.ZIP_DEFLATED)
    struct.pack_into("<I", edited, local + 22, declared)
    struct.pack_into("<I", edited, central + 24, declared)
    return bytes(edited)


def _end_record(data: bytes) -> int:
    return data.rindex(b"PK\x05\x06")


def _save(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "hostile.pt"
    path.write_bytes(data)
    return path


def _refused(tmp_path: Path, data: bytes, *expected: str, **importer_options: object) -> str:
    """Load everything of the archive as a file; it must be refused naming the file and ``expected``."""
    path = _save(tmp_path, data)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ArchiveFormatError) as raised:
        load_all(path, **importer_options)
    message = str(raised.value)
    assert str(path) in message
    for text in expected:
        assert text in message, message
    assert sorted(tmp_path.rglob("*")) == before
    return message


@pytest.mark.parametrize("record", [PICKLE, SOURCE, INTEGRITY])
def test_deflate_bomb_declaring_a_small_size_stops_at_that_size(tmp_path: Path, bomb_stream: bytes, record: str) -> None:
    bomb = _as_deflated(VALID, record, bomb_stream, 4096)
    _refused(tmp_path, bomb, repr(record), "inflates to more than the 4096 bytes its entry declares")


def test_declared_size_beyond_what_deflate_can_reach_is_refused_unread(tmp_path: Path) -> None:
    stream = _deflated_zeros(1 << 20)  # about 1 KiB: at most 1 MiB or so could come out
    bomb = _as_deflated(VALID, PICKLE, stream, 0xFFFF0000)
    _refused(tmp_path, bomb, repr(PICKLE), "deflate expands at most 1032:1")


def test_declared_size_above_the_configured_limit_is_refused_unread(tmp_path: Path, monkeypatch) -> None:
    stream = _deflated_zeros(8 << 20)
    bomb = _as_deflated(VALID, SOURCE, stream, 8 << 20)
    monkeypatch.setenv(MAX_INFLATED_SIZE_VARIABLE, str(1 << 20))
    _refused(tmp_path, bomb, repr(SOURCE), f"above the limit of {1 << 20}", MAX_INFLATED_SIZE_VARIABLE)


def test_deflate_stream_cut_short_is_refused(tmp_path: Path) -> None:
    compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, -15)
    stream = compressor.compress(random.Random(0).randbytes(1 << 16)) + compressor.flush()
    bomb = _as_deflated(VALID, SOURCE, stream[: len(stream) // 2], 1 << 16)
    _refused(tmp_path, bomb, repr(SOURCE), "does not inflate")


def test_absurd_entry_count_is_refused_before_any_entry_is_read(tmp_path: Path) -> None:
    edited = bytearray(VALID)
    end = _end_record(VALID)
    struct.pack_into("<HH", edited, end + 8, 0xFFFF, 0xFFFF)
    message = _refused(tmp_path, bytes(edited), "claims 65535 entries")
    assert "directory can hold" in message


def test_absurd_zip64_entry_count_is_refused(tmp_path: Path) -> None:
    # A ZIP64 end record and locator claiming 2**40 entries in front of the plain end record.
    end = _end_record(VALID)
    directory_size, directory_offset = struct.unpack_from("<II", VALID, end + 12)
    zip64_end = struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, 1 << 40, 1 << 40, directory_size, directory_offset)
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1)
    data = VALID[:end] + zip64_end + locator + VALID[end:]
    _refused(tmp_path, data, f"claims {1 << 40} entries")


def test_central_directory_beyond_the_end_of_the_file_is_refused(tmp_path: Path) -> None:
    edited = bytearray(VALID)
    struct.pack_into("<I", edited, _end_record(VALID) + 16, len(VALID) * 4)
    _refused(tmp_path, bytes(edited), "central directory lies outside the file")


@pytest.mark.parametrize("field, value", [("size", 0x7FFFFFFF), ("offset", 0x7FFFFFFF)])
def test_stored_record_reaching_past_the_file_is_refused(tmp_path: Path, field: str, value: int) -> None:
    edited = bytearray(VALID)
    central = central_offset(VALID, STORAGE)
    if field == "size":  # both sizes, in both headers: only the bounds can tell
        local = _local_offset(VALID, STORAGE)
        struct.pack_into("<II", edited, local + 18, value, value)
        struct.pack_into("<II", edited, central + 20, value, value)
    else:
        struct.pack_into("<I", edited, central + 42, value)
    _refused(tmp_path, bytes(edited), repr(STORAGE), "beyond the central directory")


def test_two_entries_sharing_one_local_header_are_refused(tmp_path: Path) -> None:
    # Overlapping records: the source's entry points at the readme's local header.
    edited = bytearray(VALID)
    struct.pack_into("<I", edited, central_offset(VALID, SOURCE) + 42, _local_offset(VALID, "zoo/readme.txt"))
    _refused(tmp_path, bytes(edited), repr(SOURCE), "local header names")


VICTIM = textwrap.dedent(
    """
    import resource, sys
    {imports}

    def address_space():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

    limit = address_space() + {headroom}
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        {action}
    except ArchiveFormatError as error:
        print("refused:", error)
        sys.exit(0)
    print("loaded")
    sys.exit(4)
    """
)


def _run_victim(imports: str, action: str, path: Path) -> subprocess.CompletedProcess[str]:
    script = VICTIM.format(imports=imports, action=action.format(path=str(path)), headroom=HEADROOM)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)


def test_bomb_is_refused_within_a_small_address_space(tmp_path: Path, bomb_stream: bytes) -> None:
    path = _save(tmp_path, _as_deflated(VALID, PICKLE, bomb_stream, 1 << 20))
    done = _run_victim(
        "from torchpack._archive_reader import open_archive\nfrom torchpack.errors import ArchiveFormatError",
        "open_archive({path!r}).read('data/tensors.pkl')",
        path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inflates to more than the 1048576 bytes" in done.stdout and str(path) in done.stdout


def test_integrity_bomb_is_refused_on_opening_within_a_small_address_space(tmp_path: Path, bomb_stream: bytes) -> None:
    path = _save(tmp_path, _as_deflated(VALID, INTEGRITY, bomb_stream, 1 << 20))
    done = _run_victim(
        "import torch\nfrom torchpack import PackageImporter, ArchiveFormatError",
        "PackageImporter({path!r})",
        path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"record '{INTEGRITY}' inflates to more than" in done.stdout


def test_bomb_declaring_its_true_size_is_refused_by_the_limit_within_a_small_address_space(
    tmp_path: Path, bomb_stream: bytes
) -> None:
    # 2 GiB declared from 2 MiB: within deflate's ratio, above the 1 GiB default limit.
    path = _save(tmp_path, _as_deflated(VALID, PICKLE, bomb_stream, BOMB_SIZE))
    done = _run_victim(
        "from torchpack._archive_reader import open_archive\nfrom torchpack.errors import ArchiveFormatError",
        "open_archive({path!r}).read('data/tensors.pkl')",
        path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"would inflate to {BOMB_SIZE} bytes, above the limit of {1 << 30}" in done.stdout


def test_valid_deflated_records_still_load(tmp_path: Path) -> None:
    # The bound is declared size + 1: an honest compressed archive (another ZIP tool's) loads.
    recompressed = rebuild(VALID, compress=(PICKLE, SOURCE, INTEGRITY, "zoo/readme.txt"))
    path = _save(tmp_path, recompressed)
    assert load_all(path) == load_all(VALID)
    assert PackageImporter(path).load_text("zoo", "readme.txt") == "hello"
