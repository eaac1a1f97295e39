"""The archive reader: a strict ZIP parser over a file mapping or a buffer (folders: _folder_reader).

It checks what a hostile or damaged archive could lie about before anything is used: the end
record, every central-directory entry's bounds, names (no absolute paths, no ``..``, no
duplicates, one top-level folder), compression of tensor records, and each local header
against its central entry. Records are served as ``memoryview`` slices of one mapping of the
file, so tensor records can back tensors directly (see :mod:`torchpack._storage`).
"""

from __future__ import annotations

import faulthandler
import functools
import mmap
import os
import stat
import struct
import weakref
import zlib
from typing import BinaryIO, Literal, NamedTuple, Union

from . import _zip_format as fmt
from ._folder_reader import DirectoryArchiveReader
from ._record_files import check_record_names, file_kind, open_regular_file
from .errors import ArchiveFormatError, IntegrityError, RecordNotFoundError

ArchiveSource = Union[str, os.PathLike, BinaryIO, bytes, bytearray, memoryview]
#: How a file archive is mapped; see :func:`mmap_access`.
MmapMode = Union[bool, Literal["copy-on-write", "read-only"]]


def mmap_access(mode: MmapMode) -> int | None:
    """The mmap access for a mapping mode; ``None`` means read the file into memory instead.

    ``True`` / ``"copy-on-write"``: tensors built on the mapping are writable, and writes
    stay private to the process (the pages written are copied) - the file never changes.
    ``"read-only"``: the pages can only be read; a write through a tensor built on them is a
    segmentation fault that ends the process. Such a mapping is never charged against the
    memory commit limit, which matters on hosts that do not overcommit.
    """
    if mode is True or mode == "copy-on-write":
        return mmap.ACCESS_COPY
    if mode == "read-only":
        return mmap.ACCESS_READ
    if mode is False:
        return None
    raise ValueError(f"mmap must be True, False, 'copy-on-write' or 'read-only', not {mode!r}")

def _report_bus_errors() -> None:
    """Have a bus error print a traceback before it ends the process, once a file is mapped.

    Touching a mapped page that a truncation of the file cut off raises SIGBUS, which ends
    the process; without a handler it dies silently (exit status -7, "Bus error" at most from
    a shell). Python's faulthandler prints the stack of every thread first. It is turned on
    once, and only when the program has not set it up itself.
    """
    global _BUS_ERRORS_REPORTED
    if _BUS_ERRORS_REPORTED:
        return
    _BUS_ERRORS_REPORTED = True
    if faulthandler.is_enabled():
        return
    try:
        faulthandler.enable(all_threads=True)
    except (AttributeError, RuntimeError, ValueError, OSError):
        pass  # no usable stderr (None, or without a file descriptor): nowhere to report to


_BUS_ERRORS_REPORTED = False

# The end record is 22 bytes plus a comment of up to 65535 bytes.
_MAX_END_SEARCH = fmt.END_OF_CENTRAL_DIR.size + 0xFFFF
#: Stored records from this size up are served after a check that the mapped file did not
#: change (one fstat, 5 us on the benchmark VM: more than hashing a small tensor's record).
#: Smaller ones rely on the check made when the pickle naming them was read.
_CHECK_EACH_FROM = 1 << 16

# What _parse_entry needs, once per record used.
_unpack_central = fmt.CENTRAL_HEADER.unpack_from
_unpack_extra_length = fmt.LOCAL_EXTRA_LENGTH.unpack_from
_CENTRAL_SIZE, _LOCAL_SIZE = fmt.CENTRAL_HEADER.size, fmt.LOCAL_HEADER.size
_REPEATED_START, _REPEATED_END = fmt.LOCAL_REPEATED
_REPEATED_LENGTH = _REPEATED_END - _REPEATED_START
_CENTRAL_REPEATED_START = fmt.CENTRAL_REPEATED_START
_LOCAL_SIGNATURE, _ZIP32_LIMIT = fmt.LOCAL_HEADER_SIGNATURE, fmt.ZIP32_LIMIT
_METHODS = (fmt.STORED, fmt.DEFLATED)
#: A central entry's signature and its name, extra field and comment lengths.
_CENTRAL_SIGNATURE_AND_LENGTHS = struct.Struct("<4s24xHHH")
#: A central entry's general purpose flags (bit 11: the name is UTF-8), and where they lie.
_CENTRAL_FLAGS = struct.Struct("<H")
_CENTRAL_FLAGS_AT = 8


class _Entry(NamedTuple):
    # A tuple rather than a dataclass: an archive of many small tensors has tens of thousands.
    name: str  # relative to the top folder
    method: int
    flags: int
    crc32: int
    compressed_size: int
    size: int
    header_offset: int
    data_offset: int  # resolved from the local header when the directory is parsed


#: _Entry(...) without the Python-level __new__ that NamedTuple generates.
_new_entry = functools.partial(tuple.__new__, _Entry)

def file_identity(status: os.stat_result) -> tuple[int, ...]:
    """(device, inode, size, mtime, ctime): unchanged as long as nobody writes to the file,
    since every write moves its ctime, which no user can set back."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class ZipArchiveReader:
    """Reads records from a torch.package / torchpack ZIP."""

    def __init__(self, source: ArchiveSource, *, use_mmap: MmapMode = True) -> None:
        self.mapped = False
        #: A descriptor of the mapped file, or None when the archive is not mapped.
        self._mapped_file: int | None = None
        #: (size, mtime) of the mapped file as opened.
        self._opened_stamp: tuple[int, int] = (0, 0)
        #: (device, inode, size, mtime, ctime) of a file archive, as opened: any write to the
        #: file changes its ctime, so this names these exact bytes. None for buffers.
        self.file_identity: tuple[int, ...] | None = None
        access = mmap_access(use_mmap)
        # The archive's bytes as an object whose slices are bytes (a mapping or bytes), which
        # the directory parse compares and unpacks faster than slices of a memoryview.
        whole: Union[mmap.mmap, bytes, memoryview]
        if isinstance(source, (str, os.PathLike)):
            self.name = os.fspath(source)
            with open_regular_file(self.name, self.name) as handle:
                status = os.fstat(handle.fileno())
                size = status.st_size
                self.file_identity = file_identity(status)
                if size == 0:
                    raise ArchiveFormatError(f"{self.name}: empty file, not a ZIP archive")
                if access is not None:
                    whole = mmap.mmap(handle.fileno(), 0, access=access)
                    self.mapped = True
                    # Kept open while the reader lives, for _check_unchanged's fstat.
                    self._mapped_file = os.dup(handle.fileno())
                    self._opened_stamp = (status.st_size, status.st_mtime_ns)
                    weakref.finalize(self, os.close, self._mapped_file)
                    _report_bus_errors()
                else:
                    whole = handle.read()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            self.name = "<bytes>"
            whole = source if type(source) is bytes else memoryview(source).cast("B")
        else:
            self.name = getattr(source, "name", None) or "<buffer>"
            if not isinstance(self.name, str):
                self.name = "<buffer>"
            whole = source.read()
        self._data = memoryview(whole)
        self._whole = whole
        self._max_inflated_size = fmt.max_inflated_size()
        #: Record name -> the offset of its entry in the central directory, for every record.
        self._index: dict[str, int] = {}
        #: The records used so far, their entries checked (see _parse_entry).
        self._entries: dict[str, _Entry] = {}
        self._directory_span = (0, 0)
        self.top_folder = ""
        self._directory_offset = 0
        self._parse_directory(whole)

    # -- public surface -------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._index)

    @property
    def contents(self) -> memoryview:
        """The whole archive (the mapping or the buffer itself, not a copy), for torch's own reader."""
        return self._data

    def has_record(self, name: str) -> bool:
        return name in self._index

    def read(self, name: str) -> bytes:
        """The record's bytes, with its CRC checked."""
        if self._mapped_file is not None:
            self._check_unchanged()
        entry = self._entry(name)
        raw = self._raw(entry)
        data = self._inflate(entry, raw) if entry.method == fmt.DEFLATED else bytes(raw)
        if len(data) != entry.size:
            raise ArchiveFormatError(f"{self.name}: record {name!r} is {len(data)} bytes, its entry says {entry.size}")
        if fmt.crc32(data) != entry.crc32:
            raise ArchiveFormatError(f"{self.name}: record {name!r} fails its CRC-32 check (corrupted)")
        return data

    def view(self, name: str, *, check_crc: bool = True) -> memoryview:
        """A zero-copy view of a stored record (tensor data); compressed records are refused."""
        raw, _ = self.stored(name)
        if check_crc:
            self.check(name, raw)
        return raw

    def stored(self, name: str) -> tuple[memoryview, bool]:
        """A stored record's bytes, unchecked and not copied, and whether a tensor may share
        them: they are mapped from the file and aligned. One call per tensor loaded."""
        # The lookup inline rather than through _entry: one call less per tensor loaded.
        entry = self._entries.get(name) or self._first_use(name)
        if self._mapped_file is not None and entry.compressed_size >= _CHECK_EACH_FROM:
            self._check_unchanged()
        if entry.method != fmt.STORED:
            raise ArchiveFormatError(f"{self.name}: tensor record {name!r} is compressed; it must be stored")
        start = entry.data_offset
        return self._data[start : start + entry.compressed_size], self.mapped and start % fmt.STORAGE_ALIGNMENT == 0

    def check(self, name: str, data: memoryview) -> None:
        """Check bytes that :meth:`stored` gave against the record's CRC-32."""
        if fmt.crc32(data) != self._entries[name].crc32:
            raise ArchiveFormatError(f"{self.name}: record {name!r} fails its CRC-32 check (corrupted)")

    def has_torchpack_layout(self) -> bool:
        """Whether every central entry carries the fields torchpack's writer gives it.

        Those survive removing records with ``zip -d`` and rewriting the ZIP with Python's
        zipfile: made by Unix with ZIP 2.0 (4.5 for ZIP64), regular file mode 0644, no comment,
        all under the top folder ``package``. torch.package's writer says "made by" 0 and
        mode 0 and names the top folder after the file, so its archives fail at the first
        entry: the answer costs one entry for them, every entry only when it is yes.
        """
        if self.top_folder != fmt.TOP_FOLDER:
            return False
        start, size = self._directory_span
        directory = self._data[start : start + size]
        central_size = fmt.CENTRAL_HEADER.size
        made_by = {fmt.MADE_BY_UNIX << 8 | fmt.ZIP_VERSION, fmt.MADE_BY_UNIX << 8 | fmt.ZIP64_VERSION}
        position = 0
        while position + central_size <= size:
            fields = fmt.CENTRAL_HEADER.unpack_from(directory, position)
            if fields[1] not in made_by or fields[12] != 0 or fields[15] >> 16 != fmt.RECORD_MODE:
                return False
            position += central_size + fields[10] + fields[11] + fields[12]
        return position > 0

    # -- parsing --------------------------------------------------------------------------

    def _check_unchanged(self) -> None:
        """Refuse to serve records from a mapping whose file was written since it was opened.

        A mapping shows the file as it is now: bytes written in place show through, and pages
        a truncation cut off raise SIGBUS when touched. A write or truncation moves the mtime
        (and a truncation the size), so this fstat, made before every :meth:`read` (a pickle
        before its tensors load, sources, resources) and every :meth:`stored` record from
        :data:`_CHECK_EACH_FROM` bytes up, sees it first. The ctime is not compared: renaming
        over the file or deleting it (as torchpack's writers replace files) moves it, and
        changes no byte of the file mapped.
        """
        status = os.fstat(self._mapped_file)  # type: ignore[arg-type]
        if (status.st_size, status.st_mtime_ns) != self._opened_stamp:
            opened_size = self._opened_stamp[0]
            if status.st_size != opened_size:
                what = f"its size went from {opened_size} to {status.st_size} bytes"
            else:
                what = "it was written in place"
            raise IntegrityError(
                f"{self.name}: the archive file changed after it was opened ({what}); its mapped records "
                "can no longer be trusted - open it again, or load with mmap=False to keep a private copy"
            )

    def _entry(self, name: str) -> _Entry:
        return self._entries.get(name) or self._first_use(name)

    def _first_use(self, name: str) -> _Entry:
        position = self._index.get(name)
        if position is None:
            raise RecordNotFoundError(f"{self.name}: no record {name!r} in the archive")
        # Two threads may both parse a record on its first use; they store equal entries.
        entry = self._entries[name] = self._parse_entry(name, position)
        return entry

    def _inflate(self, entry: _Entry, raw: memoryview) -> bytes:
        """A compressed record's bytes, never more than its declared size plus one.

        A deflate stream can expand 1032-fold, and one that lies about its size could fill
        memory before a size check after the fact: output stops one byte past the declared
        size (which _check_inflated_size bounded), and that byte is the refusal.
        """
        inflater = zlib.decompressobj(-15)
        try:
            data = inflater.decompress(raw, entry.size + 1)
        except zlib.error as error:
            raise self._fail(f"record {entry.name!r} does not inflate: {error}") from None
        if len(data) > entry.size:
            raise self._fail(f"record {entry.name!r} inflates to more than the {entry.size} bytes its entry declares")
        if not inflater.eof:
            raise self._fail(f"record {entry.name!r} does not inflate: its deflate stream is cut short")
        return data

    def _fail(self, what: str) -> ArchiveFormatError:
        return ArchiveFormatError(f"{self.name}: {what}")

    def _find_end_record(self) -> int:
        data = self._data
        floor = max(0, len(data) - _MAX_END_SEARCH)
        position = bytes(data[floor:]).rfind(fmt.END_OF_CENTRAL_DIR_SIGNATURE)
        if position < 0 or floor + position + fmt.END_OF_CENTRAL_DIR.size > len(data):
            raise self._fail("not a ZIP archive (no end-of-central-directory record; truncated or another format)")
        return floor + position

    def _parse_directory(self, whole: Union[mmap.mmap, bytes, memoryview]) -> None:
        """Index the central directory: each record's name and where its entry lies.

        Opening walks the directory once and decodes and checks every name in a few batched
        operations; the rest of an entry (method, sizes, CRC-32, its local header) is checked
        by :meth:`_parse_entry` when the record is first used, so that opening an archive of
        300,000 records costs a fraction of a second and one small integer per record.
        """
        data = self._data
        end = self._find_end_record()
        (_, disk, _, _, count, dir_size, dir_offset, _) = fmt.END_OF_CENTRAL_DIR.unpack_from(data, end)
        if disk != 0:
            raise self._fail("multi-disk ZIP archives are not supported")
        locator = end - fmt.ZIP64_LOCATOR.size
        if locator >= 0 and bytes(data[locator : locator + 4]) == fmt.ZIP64_LOCATOR_SIGNATURE:
            _, _, zip64_end, _ = fmt.ZIP64_LOCATOR.unpack_from(data, locator)
            if zip64_end + fmt.ZIP64_END_OF_CENTRAL_DIR.size > locator:
                raise self._fail("ZIP64 end record points outside the file")
            fields = fmt.ZIP64_END_OF_CENTRAL_DIR.unpack_from(data, zip64_end)
            if fields[0] != fmt.ZIP64_END_OF_CENTRAL_DIR_SIGNATURE:
                raise self._fail("bad ZIP64 end-of-central-directory record")
            count, dir_size, dir_offset = fields[7], fields[8], fields[9]
        if dir_offset + dir_size > len(data):
            raise self._fail("central directory lies outside the file (truncated?)")
        self._directory_span = (dir_offset, dir_size)
        central_size = fmt.CENTRAL_HEADER.size
        if count > dir_size // central_size:
            # Refused before anything is allocated for the entries: each takes at least 46 bytes.
            raise self._fail(
                f"end-of-central-directory record claims {count} entries, more than its "
                f"{dir_size}-byte directory can hold ({dir_size // central_size})"
            )
        # One copy of the directory: slicing names out of bytes is cheaper than out of the mapping.
        directory = bytes(data[dir_offset : dir_offset + dir_size])
        self._directory_offset = dir_offset
        positions: list[int] = []  # of each central entry, in the directory
        raw_names: list[bytes] = []
        position = 0
        unpack_entry = _CENTRAL_SIGNATURE_AND_LENGTHS.unpack_from
        signature = fmt.CENTRAL_HEADER_SIGNATURE
        try:
            for _ in range(count):
                entry_signature, name_len, extra_len, comment_len = unpack_entry(directory, position)
                if entry_signature != signature:
                    raise self._fail(f"bad central directory entry at offset {dir_offset + position}")
                name_start = position + central_size
                name_end = name_start + name_len
                raw_names.append(directory[name_start:name_end])
                positions.append(position)
                position = name_end + extra_len + comment_len
        except struct.error:  # the next entry's fixed part runs past the directory
            raise self._fail("central directory is shorter than its entry count says") from None
        if position > dir_size:
            raise self._fail("central directory is shorter than its entry count says")
        if position != dir_size:
            # Entries the count leaves out would be invisible here but not to other tools.
            raise self._fail("central directory size does not match its entry count")
        if not raw_names:
            raise self._fail("the archive holds no records")
        full_names = self._decode_names(raw_names, positions)
        check_record_names(full_names, self.name)
        self.top_folder = full_names[0].partition("/")[0]
        names = self._names_below_top_folder(full_names)
        index = dict(zip(names, positions))
        if len(index) != len(names):
            seen: set[str] = set()
            for name in names:
                if name in seen and not name.endswith("/"):  # folder entries may repeat
                    raise self._fail(f"duplicate record name {name!r}")
                seen.add(name)
        for name in [name for name in index if name.endswith("/")]:
            del index[name]  # folder entries, as some zip tools add them
        if not index:
            raise self._fail("the archive holds no records")
        self._index = index

    def _decode_names(self, raw_names: list[bytes], positions: list[int]) -> list[str]:
        """The entries' names as text: UTF-8 when flagged, else code page 437 (as ZIP says)."""
        joined = b"\n".join(raw_names)
        if joined.isascii() and joined.count(b"\n") == len(raw_names) - 1:
            # ASCII reads the same in both encodings: one decode for every name.
            return joined.decode("ascii").split("\n")
        names = []
        for raw_name, position in zip(raw_names, positions):
            (flags,) = _CENTRAL_FLAGS.unpack_from(self._whole, self._directory_offset + position + _CENTRAL_FLAGS_AT)
            try:
                names.append(raw_name.decode("utf-8" if flags & fmt.FLAG_UTF8 else "cp437"))
            except UnicodeDecodeError:
                raise self._fail(f"record name {raw_name!r} is not valid UTF-8") from None
        return names

    def _names_below_top_folder(self, full_names: list[str]) -> list[str]:
        """The names relative to the single top-level folder; any name outside it is refused."""
        prefix = self.top_folder + "/"
        text = "\n" + "\n".join(full_names) + "\n"
        # When no name holds a newline, one count tells whether every name lies below the
        # folder, and one search whether one is the folder itself.
        if (
            text.count("\n") != len(full_names) + 1
            or text.count("\n" + prefix) != len(full_names)
            or f"\n{prefix}\n" in text
        ):
            for full_name in full_names:
                folder, _, name = full_name.partition("/")
                if folder != self.top_folder or not name:
                    raise self._fail(
                        f"record {full_name!r} is outside the archive's single top-level folder {self.top_folder!r}/"
                    )
        skip = len(prefix)
        return [full_name[skip:] for full_name in full_names]

    def _parse_entry(self, name: str, position: int) -> _Entry:
        """Check one record's central entry and local header, the first time the record is used.

        Runs once per tensor loaded: the constants it needs are bound to names of this module.
        """
        whole = self._whole
        position += self._directory_offset
        (_, _, version, flags, method, time, date, crc, csize, size, name_len, extra_len, _, _, _, _, offset) = (
            _unpack_central(whole, position)
        )
        if flags & 0x1 or method not in _METHODS:
            full_name = f"{self.top_folder}/{name}"
            problem = "is encrypted" if flags & 0x1 else f"uses unsupported compression method {method}"
            raise self._fail(f"record {full_name!r} {problem}")
        name_start = position + _CENTRAL_SIZE
        raw_name = whole[name_start : name_start + name_len]
        zip64 = _ZIP32_LIMIT in (size, csize, offset)
        if zip64:
            extra = whole[name_start + name_len : name_start + name_len + extra_len]
            size, csize, offset = self._apply_zip64(extra, size, csize, offset, f"{self.top_folder}/{name}")
        if method != fmt.STORED:
            if name.startswith(".data/") and name.endswith(".storage"):
                # Tensors are mapped or copied straight from the file; inflating them is not
                # part of the format, and both writers store them.
                raise self._fail(f"tensor record {name!r} is compressed; tensor records must be stored")
            self._check_inflated_size(name, size, csize)
        if offset + _LOCAL_SIZE + csize > self._directory_offset:
            raise self._fail(f"record {name!r} claims data beyond the central directory (sizes lie)")
        # A local header that repeats its central entry byte for byte (version needed,
        # flags, method, time, date, CRC-32, sizes, name length, name), as every writer
        # without data descriptors makes it, passes every check _check_local_header makes
        # but the bounds of its data; anything else gets the full check and its message.
        central_start = position + _CENTRAL_REPEATED_START
        data_start = offset + _LOCAL_SIZE + name_len
        if (
            not zip64
            and whole[offset : offset + _REPEATED_START] == _LOCAL_SIGNATURE
            and whole[offset + _REPEATED_START : offset + _REPEATED_END]
            == whole[central_start : central_start + _REPEATED_LENGTH]
            and whole[offset + _LOCAL_SIZE : data_start] == raw_name
            and (method != fmt.STORED or size == csize)
        ):
            data_start += _unpack_extra_length(whole, offset + _REPEATED_END)[0]
            if data_start + csize > len(self._data):
                raise self._fail(f"record {name!r} extends past the end of the file (truncated)")
        else:
            # version needed, flags, method, time, date and the full name, as the local header repeats them
            data_start = self._check_local_header(
                name, offset, method, crc, csize, size, (version, flags, method, time, date), raw_name
            )
        return _new_entry((name, method, flags, crc, csize, size, offset, data_start))

    def _check_inflated_size(self, name: str, size: int, compressed_size: int) -> None:
        """Refuse a compressed record whose declared size no deflate stream of its length can
        reach, or that is above the limit: :meth:`read` allocates that size, and no more."""
        if size > fmt.MAX_DEFLATE_RATIO * max(compressed_size, 1):
            raise self._fail(
                f"record {name!r} claims to inflate from {compressed_size} to {size} bytes; "
                f"deflate expands at most {fmt.MAX_DEFLATE_RATIO}:1"
            )
        if size > self._max_inflated_size:
            raise self._fail(
                f"record {name!r} would inflate to {size} bytes, above the limit of "
                f"{self._max_inflated_size} (set {fmt.MAX_INFLATED_SIZE_VARIABLE} to raise it)"
            )

    def _apply_zip64(self, extra: bytes, size: int, csize: int, offset: int, name: str) -> tuple[int, int, int]:
        if fmt.ZIP32_LIMIT not in (size, csize, offset):
            return size, csize, offset
        position = 0
        while position + 4 <= len(extra):
            header_id, length = fmt.EXTRA_HEADER.unpack_from(extra, position)
            body = extra[position + 4 : position + 4 + length]
            position += 4 + length
            if header_id != fmt.ZIP64_EXTRA_ID:
                continue
            values = [int.from_bytes(body[i : i + 8], "little") for i in range(0, len(body) - 7, 8)]
            if size == fmt.ZIP32_LIMIT and values:
                size = values.pop(0)
            if csize == fmt.ZIP32_LIMIT and values:
                csize = values.pop(0)
            if offset == fmt.ZIP32_LIMIT and values:
                offset = values.pop(0)
            return size, csize, offset
        raise self._fail(f"record {name!r} needs a ZIP64 extra field but has none")

    def _check_local_header(
        self,
        name: str,
        header_offset: int,
        method: int,
        crc: int,
        compressed_size: int,
        size: int,
        central_fields: tuple[int, ...],
        raw_name: bytes,
    ) -> int:
        """Match a record's local header against its central entry; return where its data starts.

        Every reader of a ZIP trusts one of the two copies; a record whose copies disagree
        would read differently in another tool, so it is refused - down to the timestamp, so
        that ``verify`` notices any changed byte of a header, not only of the data.
        """
        data = self._data
        if header_offset + fmt.LOCAL_HEADER.size > len(data):
            raise self._fail(f"record {name!r}: local header lies outside the file (truncated?)")
        fields = fmt.LOCAL_HEADER.unpack_from(data, header_offset)
        if fields[0] != fmt.LOCAL_HEADER_SIGNATURE:
            raise self._fail(f"record {name!r}: local header missing at offset {header_offset}")
        local_flags, local_method, local_crc, local_csize, local_size, name_len, extra_len = (
            fields[2], fields[3], fields[6], fields[7], fields[8], fields[9], fields[10]
        )
        start = header_offset + fmt.LOCAL_HEADER.size
        local_name = bytes(data[start : start + name_len])
        if local_name != raw_name:
            shown = local_name.decode("utf-8", "replace")
            raise self._fail(f"record {name!r}: local header names {shown!r} instead")
        if local_method != method:
            raise self._fail(f"record {name!r}: local and central headers disagree on compression")
        if fields[1:6] != central_fields:
            raise self._fail(f"record {name!r}: local and central headers disagree (version, flags or timestamp)")
        # With a data descriptor (flag bit 3) the local sizes and CRC are zero by design; a
        # ZIP64 record keeps its sizes in an extra field.
        if not local_flags & 0x8 and local_crc != crc:
            raise self._fail(f"record {name!r}: local and central headers disagree on the CRC-32")
        if (
            not local_flags & 0x8
            and fmt.ZIP32_LIMIT not in (local_csize, local_size)
            and (local_csize, local_size) != (compressed_size, size)
        ):
            raise self._fail(f"record {name!r}: local and central headers disagree on its size")
        data_offset = start + name_len + extra_len
        if data_offset + compressed_size > len(data):
            raise self._fail(f"record {name!r} extends past the end of the file (truncated)")
        if method == fmt.STORED and size != compressed_size:
            raise self._fail(f"stored record {name!r} has two different sizes")
        return data_offset

    def _raw(self, entry: _Entry) -> memoryview:
        return self._data[entry.data_offset : entry.data_offset + entry.compressed_size]


ArchiveReader = Union[ZipArchiveReader, DirectoryArchiveReader]


def open_archive(source: ArchiveSource, *, use_mmap: MmapMode = True) -> ArchiveReader:
    """A reader for an archive file, an unzipped archive folder, or bytes / a binary stream.

    A path to anything else (a FIFO, a device, a socket) is refused at once: reading it
    could block forever or never end.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            status = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such archive") from None
        if stat.S_ISDIR(status.st_mode):
            return DirectoryArchiveReader(source)
        if not stat.S_ISREG(status.st_mode):
            raise ArchiveFormatError(f"{path} is {file_kind(status.st_mode)}, not an archive file or folder")
    return ZipArchiveReader(source, use_mmap=use_mmap)
