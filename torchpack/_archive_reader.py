"""The archive reader: a strict ZIP parser over a file mapping, a buffer, or an unzipped folder.

It checks what a hostile or damaged archive could lie about before anything is used: the end
record, every central-directory entry's bounds, names (no absolute paths, no ``..``, no
duplicates, one top-level folder), compression of tensor records, and each local header
against its central entry. Records are served as ``memoryview`` slices of one mapping of the
file, so tensor records can back tensors directly (see :mod:`torchpack._storage`).
"""

from __future__ import annotations

import functools
import mmap
import os
import re
import stat
import zlib
from pathlib import Path
from typing import BinaryIO, Literal, NamedTuple, Union

from . import _zip_format as fmt
from .errors import ArchiveFormatError, RecordNotFoundError

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

# The end record is 22 bytes plus a comment of up to 65535 bytes.
_MAX_END_SEARCH = fmt.END_OF_CENTRAL_DIR.size + 0xFFFF


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

# An empty, "." or ".." path segment, an absolute path (also Windows drive letters and
# backslashes), or a NUL: names that could escape a folder when extracted, or are ambiguous.
_UNSAFE_NAME = re.compile(r"(?:^|/)\.{0,2}(?:/|$)|^/|^.:|[\\\0]")
#: What _UNSAFE_NAME finds, as pieces of a text holding one name per line, between newlines:
#: substring searches run at memory speed, where the pattern costs 1 us per name.
_UNSAFE_PIECES = ("\n\n", "\n/", "/\n", "//", "/./", "/../", "\n./", "\n../", "/.\n", "/..\n", "\n.\n", "\n..\n", "\\", "\0")
_DRIVE_LETTER_LINE = re.compile(r"\n.:")


def check_record_name(name: str, archive: str) -> None:
    """Reject names that could escape a folder when extracted, or that are ambiguous."""
    # A trailing "/" marks a folder entry, the one place an empty last segment is allowed.
    body = name[:-1] if name.endswith("/") else name
    if not name or _UNSAFE_NAME.search(body):
        raise ArchiveFormatError(f"{archive}: unsafe record name {name!r}")


def check_record_names(names: list[str], archive: str) -> None:
    """:func:`check_record_name` for each name; a few searches of them all when none has a newline."""
    text = "\n" + "\n".join(name[:-1] if name.endswith("/") else name for name in names) + "\n"
    if (
        text.count("\n") == len(names) + 1
        and not any(piece in text for piece in _UNSAFE_PIECES)
        and not _DRIVE_LETTER_LINE.search(text)
    ):
        return
    for name in names:  # the first culprit, named in the error
        check_record_name(name, archive)


def file_identity(status: os.stat_result) -> tuple[int, ...]:
    """(device, inode, size, mtime, ctime): unchanged as long as nobody writes to the file,
    since every write moves its ctime, which no user can set back."""
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


class ZipArchiveReader:
    """Reads records from a torch.package / torchpack ZIP."""

    def __init__(self, source: ArchiveSource, *, use_mmap: MmapMode = True) -> None:
        self.mapped = False
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
        self._entries: dict[str, _Entry] = {}
        self._directory_span = (0, 0)
        self.top_folder = ""
        self._parse_directory(whole)

    # -- public surface -------------------------------------------------------------------

    def names(self) -> list[str]:
        return list(self._entries)

    @property
    def contents(self) -> memoryview:
        """The whole archive (the mapping or the buffer itself, not a copy), for torch's own reader."""
        return self._data

    def has_record(self, name: str) -> bool:
        return name in self._entries

    def read(self, name: str) -> bytes:
        """The record's bytes, with its CRC checked."""
        entry = self._entry(name)
        raw = self._raw(entry)
        if entry.method == fmt.DEFLATED:
            try:
                data = zlib.decompress(raw, -15)
            except zlib.error as error:
                raise ArchiveFormatError(f"{self.name}: record {name!r} does not inflate: {error}") from None
        else:
            data = bytes(raw)
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
        entry = self._entries.get(name) or self._entry(name)
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

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise RecordNotFoundError(f"{self.name}: no record {name!r} in the archive") from None

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
        # One copy of the directory: slicing names out of bytes is cheaper than out of the mapping.
        directory = bytes(data[dir_offset : dir_offset + dir_size])
        directory_end = dir_size
        position = 0
        top_folder: str | None = None
        prefix = ""
        entries = self._entries
        full_names: list[str] = []  # checked all at once when the loop is done
        unpack_central = fmt.CENTRAL_HEADER.unpack_from
        unpack_extra_length = fmt.LOCAL_EXTRA_LENGTH.unpack_from
        repeated_start, repeated_end = fmt.LOCAL_REPEATED
        central_repeated_start = fmt.CENTRAL_REPEATED_START
        central_repeated_end = central_repeated_start + repeated_end - repeated_start
        central_size, local_size = fmt.CENTRAL_HEADER.size, fmt.LOCAL_HEADER.size
        local_signature, zip32_limit = fmt.LOCAL_HEADER_SIGNATURE, fmt.ZIP32_LIMIT
        file_size = len(data)
        for _ in range(count):
            if position + central_size > directory_end:
                raise self._fail("central directory is shorter than its entry count says")
            fields = unpack_central(directory, position)
            if fields[0] != fmt.CENTRAL_HEADER_SIGNATURE:
                raise self._fail(f"bad central directory entry at offset {dir_offset + position}")
            flags, method, crc, csize, size = fields[3], fields[4], fields[7], fields[8], fields[9]
            name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
            name_start = position + central_size
            raw_name = directory[name_start : name_start + name_len]
            zip64 = zip32_limit in (size, csize, offset)
            if zip64:
                extra = directory[name_start + name_len : name_start + name_len + extra_len]
            next_position = name_start + name_len + extra_len + comment_len
            try:
                full_name = raw_name.decode("utf-8" if flags & fmt.FLAG_UTF8 else "cp437")
            except UnicodeDecodeError:
                raise self._fail(f"record name {raw_name!r} is not valid UTF-8") from None
            full_names.append(full_name)
            if flags & 0x1:
                raise self._fail(f"record {full_name!r} is encrypted")
            if method not in (fmt.STORED, fmt.DEFLATED):
                raise self._fail(f"record {full_name!r} uses unsupported compression method {method}")
            if zip64:
                size, csize, offset = self._apply_zip64(extra, size, csize, offset, full_name)
            if top_folder is None:
                top_folder = full_name.partition("/")[0]
                prefix = top_folder + "/"
            # The common case, a name under the top folder, costs one startswith; anything else
            # gets the precise test (and message) below.
            if full_name.startswith(prefix) and len(full_name) > len(prefix):
                name = full_name[len(prefix) :]
            else:
                folder, _, name = full_name.partition("/")
                if folder != top_folder or not name:
                    check_record_name(full_name, self.name)  # an unsafe name is the worse fault
                    raise self._fail(
                        f"record {full_name!r} is outside the archive's single top-level folder {top_folder!r}/"
                    )
            if name.endswith("/"):
                position = next_position
                continue  # folder entries, as some zip tools add them
            if name in entries:
                raise self._fail(f"duplicate record name {name!r}")
            if method != fmt.STORED and name.startswith(".data/") and name.endswith(".storage"):
                # Tensors are mapped or copied straight from the file; inflating them is not
                # part of the format, and both writers store them.
                raise self._fail(f"tensor record {name!r} is compressed; tensor records must be stored")
            if offset + local_size + csize > dir_offset:
                raise self._fail(f"record {name!r} claims data beyond the central directory (sizes lie)")
            # A local header that repeats its central entry byte for byte (version needed,
            # flags, method, time, date, CRC-32, sizes, name length, name), as every writer
            # without data descriptors makes it, passes every check _check_local_header makes
            # but the bounds of its data; anything else gets the full check and its message.
            data_start = offset + local_size + name_len
            if (
                not zip64
                and whole[offset : offset + repeated_start] == local_signature
                and whole[offset + repeated_start : offset + repeated_end]
                == directory[position + central_repeated_start : position + central_repeated_end]
                and whole[offset + local_size : data_start] == raw_name
                and (method != fmt.STORED or size == csize)
            ):
                data_start += unpack_extra_length(whole, offset + repeated_end)[0]
                if data_start + csize > file_size:
                    raise self._fail(f"record {name!r} extends past the end of the file (truncated)")
            else:
                # version needed, flags, method, time, date and the full name, as the local header repeats them
                data_start = self._check_local_header(
                    name, offset, method, crc, csize, size, (fields[2], flags, method, fields[5], fields[6]), raw_name
                )
            entries[name] = _new_entry((name, method, flags, crc, csize, size, offset, data_start))
            position = next_position
        if position != directory_end:
            # Entries the count leaves out would be invisible here but not to other tools.
            raise self._fail("central directory size does not match its entry count")
        check_record_names(full_names, self.name)
        if top_folder is None:
            raise self._fail("the archive holds no records")
        self.top_folder = top_folder

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


def _file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for messages."""
    for test, kind in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "not a regular file"


def open_regular_file(path: str, archive: str, record: str | None = None, *, follow_links: bool = True) -> BinaryIO:
    """Open ``path`` for reading, refusing anything but a regular file without blocking.

    Opening a FIFO for reading waits for a writer, and reading a device may never end, so
    the file is opened non-blocking and its type checked on the open descriptor (no window
    between a check and the open). ``follow_links=False`` refuses a symbolic link as the last
    step of the path.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    where = archive if record is None else f"{archive}: record {record!r}"
    try:
        descriptor = os.open(path, flags)
    except OSError:
        if not follow_links and os.path.islink(path):
            raise ArchiveFormatError(f"{where} became a symbolic link after the folder was opened") from None
        raise
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        raise ArchiveFormatError(f"{where} is {_file_kind(status.st_mode)}, not a regular file")
    return os.fdopen(descriptor, "rb")


class DirectoryArchiveReader:
    """Reads an unzipped archive: a folder laid out like the ZIP's top-level folder.

    Every record is found when the folder is opened, and only regular files are records. A
    symbolic link to a file is followed when the file is inside the folder (an archive
    unpacked with links between its own files still reads); a link leading out of the folder,
    to a folder (which could loop or leave), or nowhere is refused, naming the folder and the
    record, as is a FIFO, device or socket. The folder is not watched once open: a file
    replaced by a symbolic link afterwards is refused when read.
    """

    mapped = False
    file_identity = None

    def __init__(self, folder: Union[str, os.PathLike]) -> None:
        self.name = os.fspath(folder)
        self.top_folder = Path(folder).name
        #: Record name -> the real path of its file.
        self._files: dict[str, str] = {}
        real_root = os.path.realpath(self.name)
        inside = real_root.rstrip(os.sep) + os.sep

        def fail(error: OSError) -> None:
            raise error

        for current, folders, files in os.walk(real_root, onerror=fail):
            for entry in sorted(folders + files):
                path = os.path.join(current, entry)
                name = os.path.relpath(path, real_root).replace(os.sep, "/")
                status = os.lstat(path)
                if stat.S_ISDIR(status.st_mode):
                    continue
                check_record_name(name, self.name)
                if stat.S_ISLNK(status.st_mode):
                    target = os.path.realpath(path)
                    if not target.startswith(inside):
                        raise self._fail(name, f"is a symbolic link leading out of the folder (to {target})")
                    try:
                        status = os.stat(target)
                    except OSError:
                        raise self._fail(name, "is a symbolic link to nothing") from None
                    if stat.S_ISDIR(status.st_mode):
                        raise self._fail(name, "is a symbolic link to a folder; only links to files are followed")
                    path = target
                if not stat.S_ISREG(status.st_mode):
                    raise self._fail(name, f"is {_file_kind(status.st_mode)}, not a regular file")
                self._files[name] = path
        if not self._files:
            raise ArchiveFormatError(f"{self.name}: the folder holds no records; not an unzipped archive")
        self._files = dict(sorted(self._files.items()))

    def _fail(self, record: str, what: str) -> ArchiveFormatError:
        return ArchiveFormatError(f"{self.name}: record {record!r} {what}")

    def names(self) -> list[str]:
        return list(self._files)

    def has_record(self, name: str) -> bool:
        return name in self._files

    def read(self, name: str) -> bytes:
        path = self._files.get(name)
        if path is None:
            raise RecordNotFoundError(f"{self.name}: no record {name!r} in the archive")
        with open_regular_file(path, self.name, name, follow_links=False) as handle:
            return handle.read()

    def view(self, name: str, *, check_crc: bool = True) -> memoryview:
        return memoryview(self.read(name))

    def stored(self, name: str) -> tuple[memoryview, bool]:
        return memoryview(self.read(name)), False  # a copy: files are read, not mapped

    def check(self, name: str, data: memoryview) -> None:
        """Nothing to check: a folder keeps no CRC-32s."""


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
            raise ArchiveFormatError(f"{path} is {_file_kind(status.st_mode)}, not an archive file or folder")
    return ZipArchiveReader(source, use_mmap=use_mmap)
