"""The archive writer: a deterministic ZIP with aligned, uncompressed tensor records.

Lifecycle: tensor storages are *streamed* - written the moment the pickler meets them,
straight from tensor memory, so the model is never copied (large ones are hashed by helper
threads meanwhile, so hashing overlaps writing); every other record is *staged*
(held until the end). ``close()`` writes the staged records sorted by name, then the central
directory, sorted by name too, and - for a file target - renames the temporary file onto the
requested path. ``abort()`` removes the temporary file, so a failed export leaves nothing.

The layout is therefore: storages in pickling order (their names, ``.data/0.storage``,
``.data/1.storage``..., follow that order), then everything else by name. It depends only on
what was saved, not on the order of ``save_text``/``save_binary``/``save_module`` calls.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, NamedTuple, Union

from . import _zip_format as fmt
from .errors import TorchpackError

Buffer = Union[bytes, bytearray, memoryview]

# Below this size handing the SHA-256 to a helper thread costs more than hashing inline.
_PARALLEL_HASH_THRESHOLD = 1 << 20


#: Records below this size are joined with their header into one write.
_JOIN_THRESHOLD = 1 << 16
#: The alignment extra field for each padding length (an extra field and its zero bytes).
_ALIGNMENT_EXTRAS = [
    fmt.EXTRA_HEADER.pack(fmt.ALIGNMENT_EXTRA_ID, padding) + b"\0" * padding for padding in range(fmt.STORAGE_ALIGNMENT)
]


def _sha256(data: Buffer) -> str:
    return hashlib.sha256(data).hexdigest()


class WrittenRecord(NamedTuple):
    """What the writer knows about one record once its bytes are down.

    A tuple rather than a frozen dataclass: an archive of many small tensors makes tens of
    thousands, and a frozen dataclass sets each field through object.__setattr__.
    """

    name: str  # relative to the top folder
    offset: int  # of the local header
    size: int
    crc32: int
    sha256: str  # "" while a helper thread still hashes the record; see flush_staged()


class ArchiveWriter:
    """Appends records to a ZIP file or binary stream; see the module docstring for the lifecycle."""

    def __init__(self, target: Union[str, os.PathLike, BinaryIO]) -> None:
        self._final_path: str | None = None
        self._temp_path: str | None = None
        if isinstance(target, (str, os.PathLike)):
            self._final_path = os.path.abspath(os.fspath(target))
            folder = os.path.dirname(self._final_path)
            fd, self._temp_path = tempfile.mkstemp(prefix=".torchpack-", suffix=".tmp", dir=folder)
            self._stream: BinaryIO = os.fdopen(fd, "wb")
        else:
            self._stream = target
        self._position = 0
        self._records: dict[str, WrittenRecord] = {}
        self._staged: dict[str, bytes] = {}
        # SHA-256 of large records is computed by helper threads while the next records are
        # written (hashlib releases the GIL), and filled into _records by _collect_digests.
        self._hashers: ThreadPoolExecutor | None = None
        self._pending_digests: dict[str, Future[str]] = {}
        self._date, self._time = fmt.dos_timestamp()
        self._closed = False

    @property
    def names(self) -> list[str]:
        """Every record written or staged so far."""
        return [*self._records, *self._staged]

    def flush_staged(self) -> dict[str, WrittenRecord]:
        """Write the staged records (sorted by name); return every record written so far."""
        for name in sorted(self._staged):
            data = self._staged.pop(name)
            self.write_record(name, data)
        self._collect_digests()
        return self._records

    def _collect_digests(self) -> None:
        for name, digest in self._pending_digests.items():
            self._records[name] = self._records[name]._replace(sha256=digest.result())
        self._pending_digests.clear()
        if self._hashers is not None:
            self._hashers.shutdown()
            self._hashers = None

    def stage_record(self, name: str, data: bytes) -> None:
        """Add a record to be written, in name order, when the archive is closed."""
        self._check_new(name)
        self._staged[name] = data

    def _check_new(self, name: str) -> None:
        if self._closed:
            raise TorchpackError(f"cannot write {name!r}: the archive is already closed")
        if name in self._records or name in self._staged:
            raise TorchpackError(f"record {name!r} was written twice to the archive")

    def write_record(self, name: str, data: Buffer, *, align: bool = False) -> None:
        """Append one stored record now. ``align`` puts its first data byte on a 64-byte boundary.

        ``data`` must stay alive and unchanged until :meth:`flush_staged`, :meth:`close` or
        :meth:`abort` returns: a large record is still being hashed after this call.
        """
        self._check_new(name)
        data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        size = len(data)
        sha = ""
        if size < _PARALLEL_HASH_THRESHOLD:
            sha = hashlib.sha256(data).hexdigest()
        else:
            if self._hashers is None:
                self._hashers = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="torchpack-hash")
            self._pending_digests[name] = self._hashers.submit(_sha256, data)
        crc = zlib.crc32(data)
        full_name = f"{fmt.TOP_FOLDER}/{name}".encode("utf-8")
        zip64 = size >= fmt.ZIP32_LIMIT
        extra = b""
        if zip64:
            extra = fmt.EXTRA_HEADER.pack(fmt.ZIP64_EXTRA_ID, 16) + size.to_bytes(8, "little") * 2
        if align:
            data_start = self._position + fmt.LOCAL_HEADER.size + len(full_name) + len(extra)
            padding = -(data_start + fmt.EXTRA_HEADER.size) % fmt.STORAGE_ALIGNMENT
            extra += _ALIGNMENT_EXTRAS[padding]
        header = fmt.LOCAL_HEADER.pack(
            fmt.LOCAL_HEADER_SIGNATURE,
            fmt.ZIP64_VERSION if zip64 else fmt.ZIP_VERSION,
            fmt.FLAG_UTF8,
            fmt.STORED,
            self._time,
            self._date,
            crc,
            fmt.ZIP32_LIMIT if zip64 else size,
            fmt.ZIP32_LIMIT if zip64 else size,
            len(full_name),
            len(extra),
        )
        if size < _JOIN_THRESHOLD:
            # One write call instead of four: for small records the calls cost more than the copy.
            self._stream.write(b"".join((header, full_name, extra, data)))
        else:
            self._stream.write(header + full_name + extra)
            self._stream.write(data)
        self._records[name] = WrittenRecord(name, self._position, size, crc, sha)
        self._position += len(header) + len(full_name) + len(extra) + size

    def close(self) -> None:
        """Write the central directory and, for files, move the archive into place."""
        if self._closed:
            return
        self.flush_staged()
        self._write_central_directory()
        self._closed = True
        self._stream.flush()
        if self._final_path is not None:
            assert self._temp_path is not None
            os.fchmod(self._stream.fileno(), 0o644)
            self._stream.close()
            os.replace(self._temp_path, self._final_path)
            self._temp_path = None

    def abort(self) -> None:
        """Forget everything written; a file target is left untouched (its temp file removed)."""
        self._closed = True
        # Helper threads may still read tensor memory that the caller frees once we return.
        self._collect_digests()
        if self._temp_path is not None:
            self._stream.close()
            try:
                os.unlink(self._temp_path)
            except FileNotFoundError:
                pass
            self._temp_path = None

    def _write_central_directory(self) -> None:
        start = self._position
        for name in sorted(self._records):
            record = self._records[name]
            full_name = f"{fmt.TOP_FOLDER}/{name}".encode("utf-8")
            zip64_fields = b""
            size_field = record.size
            offset_field = record.offset
            if record.size >= fmt.ZIP32_LIMIT:
                zip64_fields += record.size.to_bytes(8, "little") * 2
                size_field = fmt.ZIP32_LIMIT
            if record.offset >= fmt.ZIP32_LIMIT:
                zip64_fields += record.offset.to_bytes(8, "little")
                offset_field = fmt.ZIP32_LIMIT
            extra = fmt.EXTRA_HEADER.pack(fmt.ZIP64_EXTRA_ID, len(zip64_fields)) + zip64_fields if zip64_fields else b""
            version = fmt.ZIP64_VERSION if zip64_fields else fmt.ZIP_VERSION
            entry = fmt.CENTRAL_HEADER.pack(
                fmt.CENTRAL_HEADER_SIGNATURE,
                fmt.MADE_BY_UNIX << 8 | version,
                version,
                fmt.FLAG_UTF8,
                fmt.STORED,
                self._time,
                self._date,
                record.crc32,
                size_field,
                size_field,
                len(full_name),
                len(extra),
                0,
                0,
                0,
                fmt.RECORD_MODE << 16,
                offset_field,
            )
            self._stream.write(entry + full_name + extra)
            self._position += len(entry) + len(full_name) + len(extra)
        directory_size = self._position - start
        count = len(self._records)
        if count >= fmt.ZIP16_LIMIT or start >= fmt.ZIP32_LIMIT or directory_size >= fmt.ZIP32_LIMIT:
            zip64_end = self._position
            self._stream.write(
                fmt.ZIP64_END_OF_CENTRAL_DIR.pack(
                    fmt.ZIP64_END_OF_CENTRAL_DIR_SIGNATURE,
                    fmt.ZIP64_END_OF_CENTRAL_DIR.size - 12,
                    fmt.MADE_BY_UNIX << 8 | fmt.ZIP64_VERSION,
                    fmt.ZIP64_VERSION,
                    0,
                    0,
                    count,
                    count,
                    directory_size,
                    start,
                )
            )
            self._stream.write(fmt.ZIP64_LOCATOR.pack(fmt.ZIP64_LOCATOR_SIGNATURE, 0, zip64_end, 1))
            self._position += fmt.ZIP64_END_OF_CENTRAL_DIR.size + fmt.ZIP64_LOCATOR.size
        self._stream.write(
            fmt.END_OF_CENTRAL_DIR.pack(
                fmt.END_OF_CENTRAL_DIR_SIGNATURE,
                0,
                0,
                min(count, fmt.ZIP16_LIMIT),
                min(count, fmt.ZIP16_LIMIT),
                min(directory_size, fmt.ZIP32_LIMIT),
                min(start, fmt.ZIP32_LIMIT),
                0,
            )
        )
        self._position += fmt.END_OF_CENTRAL_DIR.size
