"""The archive writer: a deterministic ZIP with aligned, uncompressed tensor records.

Lifecycle: tensor storages are *streamed* - handed over the moment the pickler meets them,
straight from tensor memory, so the model is never copied; every other record is *staged*
(held until the end). ``close()`` writes the staged records sorted by name, then the central
directory, sorted by name too, and - for a file target - renames the temporary file onto the
requested path. ``abort()`` removes the temporary file, so a failed export leaves nothing.

Large records are *pipelined*: a local header holds the record's CRC-32, so its bytes cannot
go out before they are all read, and reading 1 GiB three times (CRC, digest, write) on one
thread is what bounds an export. Helper threads compute the digest and, piece by piece, the
CRC (see :func:`torchpack._zip_format.crc32_combine`) while an output thread writes the
records in order and the pickler goes on to the next tensor; CRC-32, BLAKE3 and file writes
all release the GIL. Once one record is pipelined every later write goes through the output
thread too, which keeps the records in the order they were handed over.

The layout is therefore: storages in pickling order (their names, ``.data/0.storage``,
``.data/1.storage``..., follow that order), then everything else by name. It depends only on
what was saved, not on the order of ``save_text``/``save_binary``/``save_module`` calls.
"""

from __future__ import annotations

import functools
import os
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, NamedTuple, Union

from . import _zip_format as fmt
from ._digest import hex_digest
from .errors import TorchpackError

Buffer = Union[bytes, bytearray, memoryview]

#: Records from this size up are pipelined (see the module docstring); below it, handing the
#: work to other threads costs more than doing it inline.
_PIPELINED_FROM = 1 << 20
#: A pipelined record's CRC-32 is computed in pieces of this size, one helper task each.
_CRC_PIECE = 16 << 20
#: Records below this size are joined with their header into one write.
_JOIN_THRESHOLD = 1 << 16
# Bound here once rather than looked up in _zip_format per record (see write_record).
_NAME_PREFIX = fmt.TOP_FOLDER + "/"
_LOCAL_HEADER_PACK = fmt.LOCAL_HEADER.pack
_LOCAL_HEADER_SIZE = fmt.LOCAL_HEADER.size
_EXTRA_HEADER_PACK = fmt.EXTRA_HEADER.pack
_EXTRA_HEADER_SIZE = fmt.EXTRA_HEADER.size
_ALIGNMENT = fmt.STORAGE_ALIGNMENT
_ZIP32_LIMIT = fmt.ZIP32_LIMIT
_crc32 = fmt.crc32
#: The alignment extra field for each padding length (an extra field and its zero bytes).
_ALIGNMENT_EXTRAS = [
    fmt.EXTRA_HEADER.pack(fmt.ALIGNMENT_EXTRA_ID, padding) + b"\0" * padding for padding in range(fmt.STORAGE_ALIGNMENT)
]


class WrittenRecord(NamedTuple):
    """What the writer knows about one record once its bytes are down.

    A tuple rather than a frozen dataclass: an archive of many small tensors makes tens of
    thousands, and a frozen dataclass sets each field through object.__setattr__.
    """

    name: str  # relative to the top folder
    offset: int  # of the local header
    size: int
    crc32: int  # -1 while a pipelined record's pieces are still being read; see flush_staged()
    digest: str  # hex, of torchpack._digest.WRITTEN; "" while pipelined


#: WrittenRecord(...) without the Python-level __new__ that NamedTuple generates.
_written_record = functools.partial(tuple.__new__, WrittenRecord)


class _PipelinedRecord(NamedTuple):
    digest: Future[str]
    written: Future[int]  # the output thread's write; gives the combined CRC-32


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
        # Started with the first pipelined record: helpers hash, the output thread writes.
        self._helpers: ThreadPoolExecutor | None = None
        self._output: ThreadPoolExecutor | None = None
        self._last_output: Future[object] | None = None
        self._pipelined: dict[str, _PipelinedRecord] = {}
        self._date, self._time = fmt.dos_timestamp()
        self._closed = False

    @property
    def final_path(self) -> str | None:
        """The archive's path, for a file target."""
        return self._final_path

    @property
    def names(self) -> list[str]:
        """Every record written or staged so far."""
        return [*self._records, *self._staged]

    def flush_staged(self) -> dict[str, WrittenRecord]:
        """Write the staged records (sorted by name); return every record written so far."""
        for name in sorted(self._staged):
            data = self._staged.pop(name)
            self.write_record(name, data)
        self._finish_pipeline()
        return self._records

    def _finish_pipeline(self) -> None:
        """Wait for every pipelined record and fill in its CRC-32 and digest."""
        try:
            for name, pipelined in self._pipelined.items():
                self._records[name] = self._records[name]._replace(
                    crc32=pipelined.written.result(), digest=pipelined.digest.result()
                )
            if self._last_output is not None:
                self._last_output.result()  # a write error (a full disk) surfaces here
        finally:
            self._pipelined.clear()
            self._last_output = None
            for pool in (self._output, self._helpers):
                if pool is not None:
                    pool.shutdown()
            self._output = self._helpers = None

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
        """Append one stored record. ``align`` puts its first data byte on a 64-byte boundary.

        ``data`` must stay alive and unchanged until :meth:`flush_staged`, :meth:`close` or
        :meth:`abort` returns: a large record is still being read after this call.
        """
        # One call per small tensor of a model: the constants below are bound to names of
        # this module and the checks are inline, as each lookup saved is paid per tensor.
        if self._closed or name in self._records or name in self._staged:
            self._check_new(name)  # raises, with the message
        if not isinstance(data, bytes):
            data = memoryview(data).cast("B")
        size = len(data)
        full_name = (_NAME_PREFIX + name).encode("utf-8")
        extra = b""
        if size >= _ZIP32_LIMIT:
            extra = _EXTRA_HEADER_PACK(fmt.ZIP64_EXTRA_ID, 16) + size.to_bytes(8, "little") * 2
        offset = self._position
        header_end = offset + _LOCAL_HEADER_SIZE + len(full_name) + len(extra)
        if align:
            padding = -(header_end + _EXTRA_HEADER_SIZE) % _ALIGNMENT
            extra += _ALIGNMENT_EXTRAS[padding]
            header_end += _EXTRA_HEADER_SIZE + padding
        self._position = header_end + size
        if size >= _PIPELINED_FROM:
            self._pipeline(name, data, offset, full_name, extra)
            return
        crc = _crc32(data)
        header = self._local_header(crc, size, full_name, extra)
        if size < _JOIN_THRESHOLD:
            # One write call instead of four: for small records the calls cost more than the copy.
            self._write(b"".join((header, full_name, extra, data)))
        else:
            self._write(header + full_name + extra, data)
        self._records[name] = _written_record((name, offset, size, crc, hex_digest(data)))

    def _local_header(self, crc: int, size: int, full_name: bytes, extra: bytes) -> bytes:
        zip64 = size >= _ZIP32_LIMIT
        return _LOCAL_HEADER_PACK(
            fmt.LOCAL_HEADER_SIGNATURE,
            fmt.ZIP64_VERSION if zip64 else fmt.ZIP_VERSION,
            fmt.FLAG_UTF8,
            fmt.STORED,
            self._time,
            self._date,
            crc,
            _ZIP32_LIMIT if zip64 else size,
            _ZIP32_LIMIT if zip64 else size,
            len(full_name),
            len(extra),
        )

    def _write(self, *parts: Buffer) -> None:
        """Write now, or - once records are pipelined - after everything handed over before."""
        if self._output is None:
            self._write_parts(parts)
        else:
            self._last_output = self._output.submit(self._write_parts, parts)

    def _write_parts(self, parts: tuple[Buffer, ...]) -> None:
        for part in parts:
            self._stream.write(part)

    def _pipeline(self, name: str, data: Buffer, offset: int, full_name: bytes, extra: bytes) -> None:
        if self._helpers is None:
            self._helpers = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="torchpack-hash")
            self._output = ThreadPoolExecutor(max_workers=1, thread_name_prefix="torchpack-write")
        assert self._output is not None
        view = memoryview(data)
        # The CRC first: the output thread waits for it, while digests are only needed at the end.
        pieces = [
            self._helpers.submit(fmt.crc32, view[start : start + _CRC_PIECE]) for start in range(0, len(view), _CRC_PIECE)
        ]
        digest = self._helpers.submit(hex_digest, data)
        self._last_output = written = self._output.submit(self._write_pipelined, pieces, data, full_name, extra)
        self._pipelined[name] = _PipelinedRecord(digest, written)
        self._records[name] = WrittenRecord(name, offset, len(view), -1, "")

    def _write_pipelined(self, pieces: list[Future[int]], data: Buffer, full_name: bytes, extra: bytes) -> int:
        """On the output thread: combine the pieces' CRCs, then write the header and the data."""
        crc = pieces[0].result()
        for index in range(1, len(pieces)):
            piece_size = min(_CRC_PIECE, len(data) - index * _CRC_PIECE)
            crc = fmt.crc32_combine(crc, pieces[index].result(), piece_size)
        self._stream.write(self._local_header(crc, len(data), full_name, extra) + full_name + extra)
        self._stream.write(data)
        return crc

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
        try:
            self._finish_pipeline()
        except Exception:  # noqa: BLE001 - the error that made us abort is the one to report
            pass
        if self._temp_path is not None:
            try:
                os.unlink(self._temp_path)
            except FileNotFoundError:
                pass
            self._temp_path = None
            try:
                self._stream.close()
            except OSError:
                pass  # flushing what is left fails again after a failed write (a full disk)

    def _write_central_directory(self) -> None:
        start = self._position
        pack_entry = fmt.CENTRAL_HEADER.pack
        made_by = fmt.MADE_BY_UNIX << 8
        attributes = fmt.RECORD_MODE << 16
        parts: list[bytes] = []  # written at once: tens of thousands of entries, one write
        for name in sorted(self._records):
            record = self._records[name]
            full_name = (_NAME_PREFIX + name).encode("utf-8")
            zip64_fields = b""
            size_field = record.size
            offset_field = record.offset
            if record.size >= _ZIP32_LIMIT:
                zip64_fields += record.size.to_bytes(8, "little") * 2
                size_field = _ZIP32_LIMIT
            if record.offset >= _ZIP32_LIMIT:
                zip64_fields += record.offset.to_bytes(8, "little")
                offset_field = _ZIP32_LIMIT
            extra = _EXTRA_HEADER_PACK(fmt.ZIP64_EXTRA_ID, len(zip64_fields)) + zip64_fields if zip64_fields else b""
            version = fmt.ZIP64_VERSION if zip64_fields else fmt.ZIP_VERSION
            parts += (
                pack_entry(
                    fmt.CENTRAL_HEADER_SIGNATURE,
                    made_by | version,
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
                    attributes,
                    offset_field,
                ),
                full_name,
                extra,
            )
        directory = b"".join(parts)
        self._stream.write(directory)
        self._position += len(directory)
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
