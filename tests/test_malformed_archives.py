"""A corpus of malformed archives, each made from a valid one by a single defect.

Every case must give one specific torchpack error whose message names the archive and the
record at fault - never a crash, a bare KeyError/IndexError from deep inside, a file written,
or a module left half-imported. Cases are loaded both from bytes and from a file (mapped).
"""

from __future__ import annotations

import io
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from archive_surgery import (
    INTEGRITY,
    central_offset,
    data_span,
    flip_byte,
    load_all,
    rebuild,
    valid_archive,
)
from torchpack import ArchiveFormatError, IntegrityError, PackageImporter, RecordNotFoundError, TorchpackError

VALID = valid_archive()
STORAGE = ".data/0.storage"
SOURCE = "zoo/net.py"
PICKLE = "data/tensors.pkl"


def _patch_central(data: bytes, record: str, offset: int, fmt: str, value: int) -> bytes:
    edited = bytearray(data)
    struct.pack_into(fmt, edited, central_offset(data, record) + offset, value)
    return bytes(edited)


def _duplicate_names(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile's own "Duplicate name" warning
            target.writestr("package/zoo/net.py", "import os\nos.system('echo pwned')\n")
    return out.getvalue()


def _cut_inside_storage(data: bytes) -> bytes:
    start, size = data_span(data, STORAGE)
    return data[: start + size // 2] + data[start + size :]


# name -> (make the defect, expected error class, text the message must contain)
CASES: dict[str, tuple[Callable[[bytes], bytes], type[TorchpackError], str]] = {
    "not a zip": (lambda a: b"this is no zip archive\n" * 40, ArchiveFormatError, "not a ZIP archive"),
    "empty": (lambda a: b"", ArchiveFormatError, "ZIP archive"),
    "truncated at half": (lambda a: a[: len(a) // 2], ArchiveFormatError, "not a ZIP archive"),
    "truncated end record": (lambda a: a[:-5], ArchiveFormatError, "not a ZIP archive"),
    "bytes cut from a storage": (_cut_inside_storage, ArchiveFormatError, "central directory lies outside the file"),
    "duplicate record names": (_duplicate_names, ArchiveFormatError, "duplicate record name 'zoo/net.py'"),
    "dot-dot record name": (
        lambda a: rebuild(a, raw_names={SOURCE: "package/../net.py"}),
        ArchiveFormatError,
        "unsafe record name 'package/../net.py'",
    ),
    "absolute record name": (
        lambda a: rebuild(a, raw_names={SOURCE: "/package/zoo/net.py"}),
        ArchiveFormatError,
        "unsafe record name '/package/zoo/net.py'",
    ),
    "record outside the top folder": (
        lambda a: rebuild(a, raw_names={SOURCE: "elsewhere/zoo/net.py"}),
        ArchiveFormatError,
        "'elsewhere/zoo/net.py' is outside",
    ),
    "compressed tensor record": (
        lambda a: rebuild(a, compress=(STORAGE,)),
        ArchiveFormatError,
        "tensor record '.data/0.storage' is compressed",
    ),
    "central size larger than the data": (
        lambda a: _patch_central(a, SOURCE, 24, "<I", 10_000_000),
        ArchiveFormatError,
        "'zoo/net.py'",
    ),
    "central size smaller than the data": (
        lambda a: _patch_central(a, SOURCE, 20, "<I", 3),
        ArchiveFormatError,
        "'zoo/net.py'",
    ),
    "central CRC differs from the local one": (
        lambda a: _patch_central(a, SOURCE, 16, "<I", 1234),
        ArchiveFormatError,
        "record 'zoo/net.py': local and central headers disagree on the CRC-32",
    ),
    "encrypted flag": (lambda a: _patch_central(a, SOURCE, 8, "<H", 0x0801), ArchiveFormatError, "'package/zoo/net.py' is encrypted"),
    "unknown compression method": (
        lambda a: _patch_central(a, SOURCE, 10, "<H", 12),
        ArchiveFormatError,
        "'package/zoo/net.py' uses unsupported compression method 12",
    ),
    "entry count lies": (
        lambda a: a[:-12] + struct.pack("<H", 3) + a[-10:],
        ArchiveFormatError,
        "central directory size does not match its entry count",
    ),
    "CRC that does not match the data": (
        lambda a: flip_byte(a, SOURCE, 5, fix_crc=False),
        ArchiveFormatError,
        "'zoo/net.py'",
    ),
    "flipped byte in a storage": (lambda a: flip_byte(a, STORAGE, 9, fix_crc=False), IntegrityError, "'.data/0.storage'"),
    "tampered storage, CRC fixed up": (lambda a: flip_byte(a, STORAGE, 9), IntegrityError, "'.data/0.storage' does not match its integrity digest"),
    "tampered source, CRC fixed up": (lambda a: flip_byte(a, SOURCE, 0), IntegrityError, "'zoo/net.py' does not match its integrity digest"),
    "tampered pickle, CRC fixed up": (lambda a: flip_byte(a, PICKLE, 40), IntegrityError, "'data/tensors.pkl' does not match"),
    "record added after export": (
        lambda a: rebuild(a, add={"zoo/extra.py": b"x = 1\n"}, refresh_integrity=False),
        IntegrityError,
        "'zoo/extra.py' is not listed in the integrity record",
    ),
    "record removed after export": (
        lambda a: rebuild(a, drop=("zoo/readme.txt",), refresh_integrity=False),
        IntegrityError,
        "'zoo/readme.txt' is listed in the integrity record but missing",
    ),
    "record replaced after export": (
        lambda a: rebuild(a, replace={SOURCE: b"SCALE = 4\n"}, refresh_integrity=False),
        IntegrityError,
        "'zoo/net.py'",
    ),
    "integrity record is not JSON": (
        lambda a: rebuild(a, replace={INTEGRITY: b"{not json"}, refresh_integrity=False),
        ArchiveFormatError,
        ".data/torchpack/integrity.json is not valid JSON",
    ),
    "unknown format version": (
        lambda a: rebuild(a, replace={".data/version": b"99\n"}),
        ArchiveFormatError,
        "unsupported package format version '99' in .data/version",
    ),
    "no version record": (lambda a: rebuild(a, drop=(".data/version",)), ArchiveFormatError, "no .data/version record"),
    "pickle references a missing storage": (
        lambda a: rebuild(a, drop=(STORAGE,)),
        ArchiveFormatError,
        "data/tensors.pkl references storage '0' but .data/0.storage is missing",
    ),
    "pickle that is not a pickle": (
        lambda a: rebuild(a, replace={PICKLE: b"\x80\x03this is not a pickle"}),
        ArchiveFormatError,
        "data/tensors.pkl is not a valid pickle",
    ),
    "pickle record missing": (
        lambda a: rebuild(a, drop=(PICKLE,)),
        RecordNotFoundError,
        "no record 'data/tensors.pkl'",
    ),
}


def _mangled_modules() -> set[str]:
    return {name for name in sys.modules if name.startswith("<torch_package_")}


@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
@pytest.mark.parametrize("case", list(CASES))
def test_malformed_archive_gives_one_clear_torchpack_error(case: str, as_file: bool, tmp_path: Path) -> None:
    make, error_class, expected = CASES[case]
    damaged = make(VALID)
    assert damaged != VALID
    source: object = damaged
    if as_file:
        source = tmp_path / "damaged.pt"
        source.write_bytes(damaged)
    before_files = sorted(tmp_path.rglob("*"))
    before_modules = _mangled_modules()
    with pytest.raises(error_class) as raised:
        load_all(source)
    message = str(raised.value)
    assert expected in message
    assert (str(source) if as_file else "<bytes>") in message, message
    # Nothing written, and no module of the damaged package left registered half-loaded.
    assert sorted(tmp_path.rglob("*")) == before_files
    leftover = {name for name in _mangled_modules() - before_modules if name.endswith(".zoo.net")}
    for name in leftover:  # a module that did load completely is fine; it must then be usable
        assert sys.modules[name].answer(1) == 3


def test_valid_archive_loads_from_bytes_and_file(tmp_path: Path) -> None:
    path = tmp_path / "valid.pt"
    path.write_bytes(VALID)
    expected = load_all(VALID)
    assert expected["answer"] == 6 and expected["text"] == "hello"
    assert load_all(path) == expected
    assert load_all(path, integrity="eager") == expected
    assert load_all(path, mmap=False) == expected


def test_module_whose_source_fails_its_digest_is_not_left_in_the_importer() -> None:
    importer = PackageImporter(flip_byte(VALID, SOURCE, 0))
    with pytest.raises(IntegrityError):
        importer.import_module("zoo.net")
    assert "zoo.net" not in importer.modules
    # The damage is reported again on every attempt, never served from a cache.
    with pytest.raises(IntegrityError):
        importer.import_module("zoo.net")


def test_tampered_mapped_storage_passes_trust_mapped_load_but_not_eager_or_verify(tmp_path: Path) -> None:
    from torchpack._archive_reader import open_archive
    from torchpack._integrity import verify_records

    path = tmp_path / "tampered.pt"
    path.write_bytes(flip_byte(VALID, STORAGE, 9))
    # trust-mapped: the archive was supposedly verified before, so the mapping is not read.
    loaded = load_all(path, integrity="trust-mapped")
    assert loaded["tensors"]["a"] != load_all(VALID)["tensors"]["a"]
    with pytest.raises(IntegrityError, match="'.data/0.storage'"):
        PackageImporter(path, integrity="eager")
    problems = verify_records(open_archive(path))
    assert [problem.record for problem in problems] == [STORAGE]


def test_torch_package_archive_with_a_flipped_storage_byte_fails_its_crc(tmp_path: Path) -> None:
    import torch
    from torch.package import PackageExporter as TorchExporter

    path = tmp_path / "torch.pt"
    with TorchExporter(str(path)) as exporter:
        exporter.save_pickle("data", "t.pkl", torch.arange(100, dtype=torch.float32))
    data = path.read_bytes()
    assert PackageImporter(data).load_pickle("data", "t.pkl").sum().item() == 4950
    path.write_bytes(flip_byte(data, ".data/0.storage", 17, fix_crc=False))
    for source in (path, path.read_bytes()):
        with pytest.raises(ArchiveFormatError, match=r"'\.data/0\.storage' fails its CRC-32 check"):
            PackageImporter(source).load_pickle("data", "t.pkl")


def test_tampered_storage_of_a_script_module_is_caught_before_torch_reads_it() -> None:
    import torch

    from torchpack import PackageExporter

    script = torch.jit.script(torch.nn.Linear(4, 2))
    out = io.BytesIO()
    with PackageExporter(out) as exporter:
        exporter.save_pickle("model", "script.pkl", script)
    data = out.getvalue()
    storages = sorted(name for name in zipfile.ZipFile(io.BytesIO(data)).namelist() if name.endswith(".storage"))
    assert storages, "the script module's parameters are tensor records"
    tampered = flip_byte(data, storages[0].partition("/")[2], 3)
    with pytest.raises(IntegrityError, match=r"\.storage' does not match its integrity digest"):
        PackageImporter(tampered).load_pickle("model", "script.pkl")
