"""The integrity record: reading it, checking records against it, comparing provenance.

A torchpack archive lists every other record's size and digest (BLAKE3; see
:mod:`torchpack._digest`) in
``.data/torchpack/integrity.json`` (see :func:`torchpack._records.integrity_document`).
The ZIP's own CRC-32 catches accidents; the digest also catches a record that was changed
on purpose and had its CRC fixed up. torch.package archives have no such record: they are
read with CRC checks alone.

:class:`CheckedReader` is the policy layer over an archive reader: the reader parses the
ZIP, the checked reader refuses any record whose bytes do not match their digest the moment
they are read - tensor records too, when a pickle first uses them. Hashing a memory-mapped
tensor reads all of its pages, which mapping otherwise defers until the tensor is used;
``PackageImporter(integrity="trust-mapped")`` skips that for archives already checked by
:func:`verify_records` (``torchpack verify``), e.g. in CI.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import _digest as digest_module
from . import _disk_cache as disk_cache
from . import _records as records
from ._archive_reader import ArchiveReader, ZipArchiveReader, file_identity
from ._user_warnings import warn_at_caller, warn_once
from .errors import ArchiveFormatError, IntegrityDowngradeWarning, IntegrityError

#: Records at least this large that matched their digest are remembered per file (see
#: CheckedReader._remembered_key); below it, hashing again is cheaper than asking the cache.
REMEMBER_THRESHOLD = 1 << 20

#: The one record the integrity record cannot list: itself.
UNLISTED_RECORDS = frozenset({records.INTEGRITY})


class RecordDigest(NamedTuple):
    # A tuple rather than a dataclass: archives of many small tensors list tens of thousands.
    size: int
    digest: str  # hex, of the integrity record's algorithm


#: RecordDigest(...) without the Python-level __new__ that NamedTuple generates.
_new_record_digest = functools.partial(tuple.__new__, RecordDigest)


@dataclass(frozen=True)
class IntegrityRecord:
    """The parsed integrity record of one archive."""

    #: Record name (relative to the top folder) -> its expected size and digest.
    records: Mapping[str, RecordDigest]
    #: torchpack/torch/python versions and ``extern_distributions`` (name -> version).
    provenance: Mapping[str, Any]
    #: The digest algorithm, a key of :data:`torchpack._digest.HEX_DIGESTS`.
    algorithm: str

    @property
    def extern_distributions(self) -> Mapping[str, str]:
        distributions = self.provenance.get("extern_distributions", {})
        return distributions if isinstance(distributions, dict) else {}


@dataclass(frozen=True)
class IntegrityProblem:
    """One record that failed a check, and what was wrong with it."""

    record: str
    message: str


@dataclass(frozen=True)
class VersionMismatch:
    """An extern distribution installed here at another version than the one recorded."""

    distribution: str
    recorded: str
    installed: str | None  # None: not installed at all

    def describe(self) -> str:
        here = "is not installed" if self.installed is None else f"is {self.installed} here"
        return f"extern distribution {self.distribution!r} was {self.recorded} at export but {here}"


def parse_integrity(data: bytes, archive: str) -> IntegrityRecord:
    """Parse the integrity record's bytes; anything unexpected is an :class:`ArchiveFormatError`."""
    where = f"{archive}: {records.INTEGRITY}"
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ArchiveFormatError(f"{where} is not valid JSON: {error}") from None
    if not isinstance(document, dict) or document.get("schema") != records.INTEGRITY_SCHEMA:
        schema = document.get("schema") if isinstance(document, dict) else None
        raise ArchiveFormatError(f"{where}: unsupported integrity schema {schema!r}")
    algorithm = document.get("digest")
    if not isinstance(algorithm, str) or algorithm not in digest_module.HEX_DIGESTS:
        raise ArchiveFormatError(f"{where}: unsupported digest {algorithm!r}")
    listed = document.get("records")
    provenance = document.get("provenance", {})
    if not isinstance(listed, dict) or not isinstance(provenance, dict):
        raise ArchiveFormatError(f"{where}: 'records' and 'provenance' must be objects")
    digests = _well_formed_digests(listed, algorithm)
    if digests is not None:
        return IntegrityRecord(digests, provenance, algorithm)
    digests = {}
    hex_length = digest_module.HEX_LENGTH
    for name, entry in listed.items():  # the first malformed entry, named in the error
        try:
            size, hex_digest = entry["size"], entry[algorithm]
        except (TypeError, KeyError):
            raise ArchiveFormatError(f"{where}: entry for {name!r} needs 'size' and {algorithm!r}") from None
        if (
            not isinstance(size, int)
            or size < 0
            or not isinstance(hex_digest, str)
            or len(hex_digest) != hex_length
        ):
            raise ArchiveFormatError(f"{where}: malformed entry for {name!r}")
        digests[name] = _new_record_digest((size, hex_digest))
    return IntegrityRecord(digests, provenance, algorithm)


def _well_formed_digests(listed: dict[str, Any], algorithm: str) -> dict[str, RecordDigest] | None:
    """The listed records' digests, or ``None`` when one entry is malformed.

    Each test runs over all entries at once: the integrity record of an archive of 300,000
    records lists 300,000 entries, and a test per entry costs more than parsing the JSON.
    """
    try:
        sizes = [entry["size"] for entry in listed.values()]
        hex_digests = [entry[algorithm] for entry in listed.values()]
    except (TypeError, KeyError):
        return None
    if not sizes:
        return {}
    if (
        set(map(type, sizes)) != {int}
        or min(sizes) < 0
        or set(map(type, hex_digests)) != {str}
        or set(map(len, hex_digests)) != {digest_module.HEX_LENGTH}
    ):
        return None
    return dict(zip(listed, map(_new_record_digest, zip(sizes, hex_digests))))


def read_integrity(reader: ArchiveReader) -> IntegrityRecord | None:
    """The archive's integrity record, or ``None`` for archives without one (torch.package's)."""
    if not reader.has_record(records.INTEGRITY):
        return None
    return parse_integrity(reader.read(records.INTEGRITY), reader.name)


def is_downgraded(reader: ArchiveReader) -> bool:
    """Whether an archive torchpack wrote has lost its integrity record (which it always writes).

    Told by the ZIP layout, which deleting a record leaves as it was (see
    :meth:`ZipArchiveReader.has_torchpack_layout`); a folder keeps no such trace.
    """
    return (
        isinstance(reader, ZipArchiveReader)
        and not reader.has_record(records.INTEGRITY)
        and reader.has_torchpack_layout()
    )


def check_missing_integrity(reader: ArchiveReader, *, require: bool) -> None:
    """For an archive without an integrity record: refuse it when ``require``; otherwise warn,
    once per archive file, when torchpack wrote it (its record was removed after export)."""
    if require:
        raise IntegrityError(
            f"{reader.name}: no integrity record ({records.INTEGRITY}); require_integrity=True refuses "
            "archives whose records cannot be checked against digests (torch.package writes none)"
        )
    if not is_downgraded(reader):
        return
    message = (
        f"{reader.name}: written by torchpack, but its integrity record ({records.INTEGRITY}) is missing, "
        "removed after export: records are checked against CRC-32s only. "
        "PackageImporter(..., require_integrity=True) refuses such archives."
    )
    if reader.file_identity is None:  # read from memory: nothing to remember it by, so every time
        warn_at_caller(message, IntegrityDowngradeWarning)
    else:  # once per archive file
        warn_once(("downgraded", os.path.realpath(reader.name), reader.file_identity), message, IntegrityDowngradeWarning)


def listing_problems(reader: ArchiveReader, integrity: IntegrityRecord) -> list[IntegrityProblem]:
    """Records added to or removed from the archive since the integrity record was written."""
    present = set(reader.names()) - UNLISTED_RECORDS
    listed = integrity.records.keys()
    problems = [
        IntegrityProblem(name, "is not listed in the integrity record (added after export?)")
        for name in sorted(present - listed)
    ]
    problems += [
        IntegrityProblem(name, "is listed in the integrity record but missing from the archive")
        for name in sorted(listed - present)
    ]
    return problems


def digest_problem(name: str, data: Any, expected: RecordDigest, algorithm: str) -> IntegrityProblem | None:
    """Compare one record's bytes with its expected size and digest."""
    if len(data) != expected.size:
        return IntegrityProblem(name, f"is {len(data)} bytes; the integrity record says {expected.size}")
    actual = digest_module.HEX_DIGESTS[algorithm](data)
    if actual != expected.digest:
        return IntegrityProblem(
            name,
            f"does not match its integrity digest ({algorithm} {actual[:16]}..., recorded {expected.digest[:16]}...)",
        )
    return None


def verify_records(reader: ArchiveReader) -> list[IntegrityProblem]:
    """Check every record: CRC-32 always, and size, digest and listing when there is an integrity record.

    Unlike loading, this reads every byte of every record, mapped tensors included.
    """
    problems: list[IntegrityProblem] = []
    try:
        integrity = read_integrity(reader)
    except ArchiveFormatError as error:
        return [IntegrityProblem(records.INTEGRITY, str(error))]
    if integrity is not None:
        problems += listing_problems(reader, integrity)
    for name in reader.names():
        try:
            data = reader.read(name)  # checks the CRC-32 and the stored size
        except ArchiveFormatError as error:
            problems.append(IntegrityProblem(name, str(error)))
            continue
        expected = integrity.records.get(name) if integrity is not None else None
        if expected is not None:
            problem = digest_problem(name, data, expected, integrity.algorithm)
            if problem is not None:
                problems.append(problem)
    if integrity is not None and records.SERIALIZATION_ID in integrity.records:
        # torchpack derives the id from every record written before it: a consistency check
        # of the integrity record itself, whose own bytes no digest covers.
        derived = records.serialization_id(
            {name: entry.digest for name, entry in integrity.records.items() if name != records.SERIALIZATION_ID}
        )
        if reader.read(records.SERIALIZATION_ID).decode("ascii", "replace").strip() != derived:
            problems.append(IntegrityProblem(records.SERIALIZATION_ID, "does not match the records it was derived from"))
    return problems


def extern_version_mismatches(integrity: IntegrityRecord) -> list[VersionMismatch]:
    """Extern distributions whose installed version differs from the recorded one."""
    mismatches = []
    for distribution, recorded in sorted(integrity.extern_distributions.items()):
        installed = records.installed_version(distribution)
        if installed != recorded:
            mismatches.append(VersionMismatch(distribution, str(recorded), installed))
    return mismatches


def _file_key(path: str, identity: tuple[int, ...]) -> str:
    return "\0".join([os.path.realpath(path), *map(str, identity)])


def _remembered_key(file_key: str, name: str, hex_digest: str) -> str:
    return hashlib.sha256(f"{file_key}\0{name}\0{hex_digest}".encode()).hexdigest()


def _whole_file_key(file_key: str) -> str:
    """Cache key saying "every record of this very file matched its digest"."""
    return hashlib.sha256(f"{file_key}\0every record".encode()).hexdigest()


def _remember_whole_file(file_key: str) -> None:
    disk_cache.store(disk_cache.VERIFIED, _whole_file_key(file_key), b"")


def remember_written(path: str) -> None:
    """Remember every record of an archive file this process has just written as checked.

    The writer computed each digest from the very bytes it wrote, so hashing them again on
    the first load would prove nothing new; the remembered check is void once the file's
    identity changes, as for checks made on load (see CheckedReader._remembered_key).
    """
    _remember_whole_file(_file_key(path, file_identity(os.stat(path))))


class CheckedReader:
    """An archive reader whose records are checked against the integrity record when read.

    Each record is hashed once, on first use; later reads of a checked record are served
    without hashing again (the mapping is private to this process, so it cannot change).
    """

    def __init__(self, reader: ArchiveReader, integrity: IntegrityRecord) -> None:
        self._reader = reader
        self._integrity = integrity
        self._checked: set[str] = set()
        self._digests = integrity.records
        self._hasher = digest_module.HASHERS[integrity.algorithm]
        # Identifies the file for remembered checks; resolved once, not per record.
        self._file_key = None
        #: Every record of this file was checked before (or written by this machine): no hashing.
        self._all_checked = False
        if reader.file_identity is not None:
            self._file_key = _file_key(reader.name, reader.file_identity)
            self._all_checked = disk_cache.load(disk_cache.VERIFIED, _whole_file_key(self._file_key)) is not None
        self.name = reader.name
        #: The reader's own: its bytes are checked by :meth:`check` (bound here, not forwarded
        #: by a method: one Python call less per tensor loaded).
        self.stored = reader.stored
        self.mapped = reader.mapped
        self.top_folder = reader.top_folder
        problems = listing_problems(reader, integrity)
        if problems:
            raise self._error(problems[0])

    @property
    def inner(self) -> ArchiveReader:
        """The reader underneath (torch's TorchScript loader needs the archive's own bytes)."""
        return self._reader

    def _error(self, problem: IntegrityProblem) -> IntegrityError:
        return IntegrityError(f"{self.name}: record {problem.record!r} {problem.message}")

    def _check(self, name: str, data: Any) -> None:
        """Check a record's bytes against its digest, if the integrity record lists it."""
        expected = self._digests.get(name)
        if expected is not None and not (self._all_checked or name in self._checked):
            self._check_digest(name, data, expected)

    def _check_digest(self, name: str, data: Any, expected: RecordDigest) -> None:
        size = len(data)
        if size < REMEMBER_THRESHOLD and size == expected.size and self._hasher(data).hexdigest() == expected.digest:
            # Small records come by the ten thousand (one per small tensor): the match is
            # decided inline, and only a mismatch goes through digest_problem for its message.
            self._checked.add(name)
            return
        remembered = self._remembered_key(name, expected) if size >= REMEMBER_THRESHOLD else None
        if remembered is not None and disk_cache.load(disk_cache.VERIFIED, remembered) is not None:
            self._checked.add(name)
            return
        problem = digest_problem(name, data, expected, self._integrity.algorithm)
        if problem is not None:
            raise self._error(problem)
        self._checked.add(name)
        if remembered is not None:
            disk_cache.store(disk_cache.VERIFIED, remembered, b"")

    def _remembered_key(self, name: str, expected: RecordDigest) -> str | None:
        """Cache key saying "this record of this very file matched its digest", or None.

        Hashing a large mapped tensor reads all of its pages; a file whose identity
        (device, inode, size, mtime, ctime) is unchanged still holds the bytes that were
        checked, since any write to it moves its ctime - which no user can set back.
        """
        if self._file_key is None:
            return None
        return _remembered_key(self._file_key, name, expected.digest)

    def verify_all(self) -> None:
        """Hash every record now (mapped tensors included); raise on the first mismatch.

        Once all of a file's records have passed, later loads of the unchanged file hash none.
        """
        for name in self._reader.names():
            if name not in self._integrity.records:
                continue
            try:
                data: Any = self._reader.view(name, check_crc=False)
            except ArchiveFormatError:
                data = self._reader.read(name)  # compressed: no view; read() inflates and checks
            self._check(name, data)
        if self._file_key is not None and not self._all_checked:
            _remember_whole_file(self._file_key)

    def names(self) -> list[str]:
        return self._reader.names()

    def has_record(self, name: str) -> bool:
        return self._reader.has_record(name)

    def read(self, name: str) -> bytes:
        data = self._reader.read(name)
        self._check(name, data)
        return data

    def view(self, name: str, *, check_crc: bool = True) -> memoryview:
        """A zero-copy view; ``check_crc`` checks the digest instead where the record has one."""
        raw, _ = self._reader.stored(name)
        if check_crc:
            self.check(name, raw)
        return raw

    def check(self, name: str, data: memoryview) -> None:
        """Check bytes that :meth:`stored` gave: against their digest where the record has one
        (the stronger check; computing the CRC as well would read the bytes twice)."""
        # _check, inline: this runs once per tensor loaded.
        expected = self._digests.get(name)
        if expected is None:
            self._reader.check(name, data)
        elif not (self._all_checked or name in self._checked):
            self._check_digest(name, data, expected)
