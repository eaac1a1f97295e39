"""Hostile files and folders around archives: a poisoned code cache, unzipped folders whose
links lead elsewhere, special files named as archives, and a removed integrity record.

Each case builds its own archive in tmp_path. Code that must not run writes a marker file;
the tests check that the marker never appears.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import marshal
import os
import signal
import struct
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import torch.package

import torchpack
from archive_surgery import INTEGRITY, central_offset
from torchpack import _disk_cache
from torchpack.errors import ArchiveFormatError, CacheDirectoryWarning, IntegrityDowngradeWarning, IntegrityError

BENIGN_SOURCE = "VALUE = 1\n"


@contextmanager
def no_hang(seconds: int = 20):
    """Fail the test instead of hanging it (a FIFO opened for reading blocks forever)."""

    def give_up(signum, frame):
        raise AssertionError(f"blocked for {seconds} s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def benign_archive(path: Path) -> Path:
    with torchpack.PackageExporter(str(path)) as exporter:
        exporter.save_source_string("benign", BENIGN_SOURCE)
        exporter.save_text("benign", "notes.txt", "inside")
        exporter.save_pickle("data", "obj.pkl", {"t": torch.arange(3)})
    return path


# -- the code cache ----------------------------------------------------------------------


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("TORCHPACK_CACHE_DIR", str(folder))
    return folder


def _entry_path(source: str) -> Path:
    path = _disk_cache._path(_disk_cache.CODE, hashlib.sha256(source.encode()).hexdigest())
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _marker_code(marker: Path) -> bytes:
    return marshal.dumps(compile(f"open({str(marker)!r}, 'w').write('ran')\nVALUE = 666\n", "<torchpack-cached>", "exec"))


def _valid_entry_for(source: str) -> bytes:
    """What the cache writes for ``source``, made by compiling it through the cache."""
    digest = hashlib.sha256(source.encode()).hexdigest()
    _disk_cache.compile_module(source, digest, "x.py")
    return _disk_cache.load(_disk_cache.CODE, digest)


def _import_benign(archive: Path) -> int:
    return torchpack.PackageImporter(str(archive)).import_module("benign").VALUE


@pytest.mark.parametrize("planted", ["bare marshalled code", "valid entry of another source"])
def test_planted_foreign_code_object_is_not_executed(cache, tmp_path, planted):
    archive = benign_archive(tmp_path / "benign.pt")
    marker = tmp_path / "marker"
    evil_source = f"open({str(marker)!r}, 'w').write('ran')\nVALUE = 666\n"
    entry = _marker_code(marker) if planted == "bare marshalled code" else _valid_entry_for(evil_source)
    _entry_path(BENIGN_SOURCE).write_bytes(entry)
    assert _import_benign(archive) == 1
    assert not marker.exists()
    # The bad entry was replaced by a valid one for the benign source.
    assert _disk_cache._cached_code(hashlib.sha256(BENIGN_SOURCE.encode()).hexdigest()) is not None


@pytest.mark.parametrize(
    "damage",
    ["marshalled int", "truncated", "other interpreter magic", "payload byte flipped", "empty"],
)
def test_damaged_cache_entry_is_recompiled_and_rewritten(cache, tmp_path, damage):
    archive = benign_archive(tmp_path / "benign.pt")
    valid = _valid_entry_for(BENIGN_SOURCE)
    magic = importlib.util.MAGIC_NUMBER
    damaged = {
        "marshalled int": marshal.dumps(12345),
        "truncated": valid[: len(valid) // 2],
        "other interpreter magic": valid.replace(magic, bytes([magic[0] ^ 1]) + magic[1:], 1),
        "payload byte flipped": valid[:-1] + bytes([valid[-1] ^ 0xFF]),
        "empty": b"",
    }[damage]
    path = _entry_path(BENIGN_SOURCE)
    path.write_bytes(damaged)
    for _ in range(2):  # the second import reads the rewritten entry
        assert _import_benign(archive) == 1
    assert path.read_bytes() == valid
    assert not list(path.parent.glob(".tmp-*"))  # written through a temporary file, renamed


@pytest.mark.parametrize("planted", ["symlink to a valid entry", "FIFO"])
def test_cache_entry_that_is_no_regular_file_is_not_read(cache, tmp_path, planted):
    archive = benign_archive(tmp_path / "benign.pt")
    marker = tmp_path / "marker"
    path = _entry_path(BENIGN_SOURCE)
    if planted == "FIFO":
        os.mkfifo(path)
    else:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_bytes(_marker_code(marker))
        path.symlink_to(elsewhere)
    with no_hang():
        assert _import_benign(archive) == 1
    assert not marker.exists() and path.is_file() and not path.is_symlink()


@pytest.mark.parametrize("unsafe", ["writable by others", "a symlink"])
def test_unsafe_cache_folder_is_not_used(tmp_path, monkeypatch, unsafe):
    archive = benign_archive(tmp_path / "benign.pt")
    folder = tmp_path / "cache"
    if unsafe == "a symlink":
        (tmp_path / "real-cache").mkdir()
        folder.symlink_to(tmp_path / "real-cache")
    else:
        folder.mkdir()
        folder.chmod(0o777)
    monkeypatch.setenv("TORCHPACK_CACHE_DIR", str(folder))
    with pytest.warns(CacheDirectoryWarning, match=f"{folder}.*not used"):
        assert _import_benign(archive) == 1
    assert list(folder.iterdir()) == []  # nothing written into it


# -- unzipped folder archives ------------------------------------------------------------


def unzipped(tmp_path: Path) -> Path:
    """A torch.package archive (no integrity record, so added records are no digest error), unzipped."""
    archive = tmp_path / "tp.pt"
    with torch.package.PackageExporter(str(archive)) as exporter:
        exporter.save_text("benign", "notes.txt", "inside")
        exporter.save_pickle("data", "obj.pkl", [1, 2])
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(tmp_path / "unzipped")
    return tmp_path / "unzipped" / "tp"


@pytest.mark.parametrize(
    "link, target",
    [
        ("benign/secret.txt", "outside file"),
        ("leak", "outside folder"),
        ("benign/up", ".."),
        ("benign/self", "."),
        ("benign/alias", "inside folder"),
        ("benign/gone.txt", "nothing"),
    ],
)
def test_folder_links_out_or_to_folders_are_refused(tmp_path, link, target):
    folder = unzipped(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET")
    destination = {
        "outside file": outside / "secret.txt",
        "outside folder": outside,
        "..": Path(".."),
        ".": Path("."),
        "inside folder": folder / "data",
        "nothing": folder / "missing.txt",
    }[target]
    (folder / link).symlink_to(destination)
    with pytest.raises(ArchiveFormatError, match=f"{folder}: record '{link}' is a symbolic link") as raised:
        torchpack.PackageImporter(str(folder), restricted=True)
    assert "SECRET" not in str(raised.value)


def test_folder_link_to_a_file_inside_is_followed(tmp_path):
    folder = unzipped(tmp_path)
    (folder / "benign" / "alias.txt").symlink_to(folder / "benign" / "notes.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error", IntegrityDowngradeWarning)
        assert torchpack.PackageImporter(str(folder)).load_text("benign", "alias.txt") == "inside"


def test_folder_file_swapped_for_a_link_after_opening_is_refused(tmp_path):
    folder = unzipped(tmp_path)
    importer = torchpack.PackageImporter(str(folder))
    notes = folder / "benign" / "notes.txt"
    notes.unlink()
    notes.symlink_to(tmp_path)  # anything: the record must not be read through a link
    with pytest.raises(ArchiveFormatError, match="'benign/notes.txt' became a symbolic link"):
        importer.load_text("benign", "notes.txt")


def test_folder_fifo_record_is_refused_without_blocking(tmp_path):
    folder = unzipped(tmp_path)
    os.mkfifo(folder / "benign" / "pipe.txt")
    with no_hang(), pytest.raises(ArchiveFormatError, match=r"record 'benign/pipe.txt' is a FIFO"):
        torchpack.PackageImporter(str(folder))


def test_empty_folder_is_no_archive(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ArchiveFormatError, match="empty: the folder holds no records"):
        torchpack.PackageImporter(str(tmp_path / "empty"))


# -- special files named as archives -----------------------------------------------------


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/null"])
def test_special_file_is_refused_without_blocking(tmp_path, special):
    path = tmp_path / "archive.pt"
    if special == "fifo":
        os.mkfifo(path)
    else:
        path = Path(special)
    with no_hang(), pytest.raises(ArchiveFormatError, match=f"{path} is a (FIFO|character device)"):
        torchpack.PackageImporter(str(path))


# -- a removed integrity record ----------------------------------------------------------


def _drop_record_in_place(data: bytes, record: str) -> bytes:
    """Remove a record's central entry only, as `zip -d` leaves every other byte as it was."""
    start = central_offset(data, record)
    name_length, extra_length, comment_length = struct.unpack_from("<HHH", data, start + 28)
    end_of_entry = start + 46 + name_length + extra_length + comment_length
    removed = end_of_entry - start
    data = data[:start] + data[end_of_entry:]
    end = data.rindex(b"PK\x05\x06")
    entries, _, size = struct.unpack_from("<HHI", data, end + 8)
    return data[: end + 8] + struct.pack("<HHI", entries - 1, entries - 1, size - removed) + data[end + 16 :]


def _rewrite_with_zipfile(data: bytes, record: str) -> bytes:
    """Copy every other record with Python's zipfile, keeping each entry's header fields."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith(record):
                target.writestr(info, source.read(info))
    return out.getvalue()


@pytest.mark.parametrize("removal", [_drop_record_in_place, _rewrite_with_zipfile])
def test_removed_integrity_record_warns_once_and_can_be_refused(tmp_path, removal):
    archive = tmp_path / "stripped.pt"
    archive.write_bytes(removal(benign_archive(tmp_path / "benign.pt").read_bytes(), INTEGRITY))
    with pytest.warns(IntegrityDowngradeWarning, match=f"{archive}: written by torchpack.*CRC-32s only") as caught:
        first = torchpack.PackageImporter(str(archive))
        second = torchpack.PackageImporter(str(archive))  # the same file: no second warning
    assert len([w for w in caught if w.category is IntegrityDowngradeWarning]) == 1
    assert caught[0].filename == __file__  # points at the caller's line, not inside torchpack
    assert first.load_pickle("data", "obj.pkl")["t"].tolist() == [0, 1, 2]
    assert second.load_text("benign", "notes.txt") == "inside"
    with pytest.raises(IntegrityError, match=f"{archive}: no integrity record"):
        torchpack.PackageImporter(str(archive), require_integrity=True)


def test_torch_package_archive_loads_without_warning_and_require_integrity_refuses_it(tmp_path):
    archive = tmp_path / "package.pt"  # named so its top folder is torchpack's "package" too
    with torch.package.PackageExporter(str(archive)) as exporter:
        exporter.save_pickle("data", "obj.pkl", {"t": torch.arange(3)})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message="TypedStorage is deprecated")
        assert torchpack.PackageImporter(str(archive)).load_pickle("data", "obj.pkl")["t"].tolist() == [0, 1, 2]
        assert torchpack.PackageImporter(str(benign_archive(tmp_path / "intact.pt"))).import_module("benign").VALUE == 1
    with pytest.raises(IntegrityError, match="no integrity record"):
        torchpack.PackageImporter(str(archive), require_integrity=True)
