"""Property: a damaged archive either loads with exactly the original content, or fails with a
torchpack error. Never another exception, a crash, or different data.

Damage is drawn by :func:`strategies.archive_damage`: random byte flips anywhere (headers,
names, data, the integrity record), truncations, and edits of single fields in the record
table. Damage that no check can see by design (a timestamp, "version made by", padding) is
the "identical content" branch.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings

from archive_surgery import load_all, valid_archive
from strategies import archive_damage, record_name_lists
from torchpack import ArchiveFormatError, TorchpackError
from torchpack._record_files import check_record_name, check_record_names

warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")

VALID = valid_archive()
EXPECTED = load_all(VALID)
END = VALID.rindex(b"PK\x05\x06")
ENTRY_COUNT, CENTRAL_START = struct.unpack_from("<H", VALID, END + 10)[0], struct.unpack_from("<I", VALID, END + 16)[0]

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _entry_offsets(data: bytes) -> list[int]:
    offsets, position = [], CENTRAL_START
    for _ in range(ENTRY_COUNT):
        offsets.append(position)
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, position + 28)
        position += 46 + name_len + extra_len + comment_len
    return offsets


ENTRY_OFFSETS = _entry_offsets(VALID)


def damage(data: bytes, change: tuple) -> bytes:
    kind = change[0]
    if kind == "flip":
        edited = bytearray(data)
        for position, mask in change[1]:
            edited[position] ^= mask
        return bytes(edited)
    if kind == "truncate":
        return data[: change[1]]
    _, entry, offset, fmt, value = change
    edited = bytearray(data)
    struct.pack_into(fmt, edited, ENTRY_OFFSETS[entry] + offset, value)
    return bytes(edited)


def check_loads_identically_or_fails_cleanly(damaged: bytes, **options) -> None:
    try:
        loaded = load_all(damaged, **options)
    except TorchpackError:
        return
    assert loaded == EXPECTED


@SETTINGS
@given(archive_damage(len(VALID), ENTRY_COUNT))
@example(("flip", [(END + 10, 1)]))  # entry count in the end record
@example(("flip", [(CENTRAL_START + 12, 0xFF)]))  # a modification time: invisible by design
@example(("truncate", END))  # end record gone
@example(("table", 0, 42, "<I", 0))  # first entry's header offset -> another record
@example(("table", 0, 16, "<I", 0))  # a CRC that lies
def test_damaged_archive_from_bytes(change: tuple) -> None:
    check_loads_identically_or_fails_cleanly(damage(VALID, change))


@settings(SETTINGS, max_examples=60)
@given(change=archive_damage(len(VALID), ENTRY_COUNT))
def test_damaged_archive_from_a_mapped_file(change: tuple, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = Path(tmp_path_factory.mktemp("damaged")) / "damaged.pt"
    path.write_bytes(damage(VALID, change))
    check_loads_identically_or_fails_cleanly(path)  # type: ignore[arg-type]


def _first_error(check: Callable[[], object]) -> str | None:
    try:
        check()
    except ArchiveFormatError as error:
        return str(error)
    return None


@SETTINGS
@given(names=record_name_lists)
@example(names=["package/a", "package/./b"])
@example(names=["package/a\n/b"])  # a newline: the names are checked one by one
@example(names=["package/a", ""])
@example(names=["C:/a"])
@example(names=["package/"])  # a folder entry
@example(names=["package/.../b", "package/a..", "package/..a/b"])  # dots, but no "." or ".." segment
def test_names_checked_together_fail_as_one_by_one(names: list[str]) -> None:
    # The parser checks all names of a directory at once; the verdict and the culprit named
    # must be those of checking each name in turn.
    together = _first_error(lambda: check_record_names(names, "a.pt"))
    one_by_one = _first_error(lambda: [check_record_name(name, "a.pt") for name in names])
    assert together == one_by_one
