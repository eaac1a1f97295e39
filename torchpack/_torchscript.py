"""TorchScript inside packages, through torch's own C++ serializer and loader.

torch's ``ScriptModule.__reduce_package__`` hands the module to
``exporter.script_module_serializer`` (a ``torch._C.ScriptModuleSerializer``), and its loader
needs a ``torch._C.PyTorchFileReader`` plus a ``torch._C.DeserializationStorageContext``.
TorchScript itself stays torch's business; this module only connects those objects to
torchpack's archive:

- Export: the serializer writes into an in-memory ``PyTorchFileWriter``; at close its
  ``.data/ts_code/...`` records and any storage it wrote are copied into torchpack's own
  writer, so the archive stays sorted, aligned and reproducible. The serializer's
  ``SerializationStorageContext`` hands out *every* storage key, eager pickles included: a
  storage shared by eager tensors and a script module is one record under one key.
- Import: the loader's storage context is shared with torchpack's eager storage loading,
  so such a storage is one storage again after loading.
"""

from __future__ import annotations

import io
import re
from typing import Any, Callable, Union

import torch
from torch.jit._recursive import wrap_cpp_module
from torch.jit._script import unpackage_script_module
from torch.jit._serialization import validate_map_location

from ._archive_reader import ArchiveReader, ZipArchiveReader
from ._archive_writer import ArchiveWriter
from ._integrity import CheckedReader
from .errors import TorchpackError

#: Where torch's serializer puts TorchScript code and per-module pickles.
TS_CODE_PREFIX = ".data/ts_code/"
_STORAGE_RECORD = re.compile(r"\.data/\d+\.storage")

StorageContext = Union[torch._C.DeserializationStorageContext, None]


class TorchScriptWriter:
    """torch's TorchScript serializer writing into memory, and the exporter's storage-key authority."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._file_writer = torch._C.PyTorchFileWriter(self._buffer)
        self.serializer = torch._C.ScriptModuleSerializer(self._file_writer)
        self.storage_context = self.serializer.storage_context()

    def storage_key(self, storage: torch.UntypedStorage) -> tuple[int, bool]:
        """The storage's key, and whether this is its first appearance (so it must be written)."""
        first = not self.storage_context.has_storage(storage)
        return self.storage_context.get_or_add_storage(storage), first

    def copy_into(self, writer: ArchiveWriter) -> None:
        """Move what the serializer wrote into ``writer``; call once, when the export closes."""
        if not self._file_writer.get_all_written_records():
            return  # no ScriptModule was saved
        self.serializer.write_files()
        self._file_writer.write_end_of_file()
        reader = ZipArchiveReader(self._buffer.getvalue())
        for name in reader.names():  # the serializer's order, which is deterministic
            # The in-memory archive's own framework records (version, byteorder...) are dropped:
            # the exporter writes torchpack's.
            if _STORAGE_RECORD.fullmatch(name):
                writer.write_record(name, reader.view(name), align=True)
            elif name.startswith(TS_CODE_PREFIX):
                writer.stage_record(name, reader.read(name))


def script_module_storages(obj: Any) -> list[torch.UntypedStorage]:
    """Storages of a ScriptModule's parameters and buffers (none for other objects).

    The exporter streams these itself before torch's serializer runs; the serializer then
    finds them in the storage context and does not buffer a second copy in memory.
    """
    if not isinstance(obj, torch.jit.ScriptModule):
        return []
    tensors = obj.state_dict(keep_vars=True).values()
    return [t.untyped_storage() for t in tensors if isinstance(t, torch.Tensor) and t.layout is torch.strided]


def has_torchscript(record_names: list[str]) -> bool:
    return any(name.startswith(TS_CODE_PREFIX) for name in record_names)


class _ViewFile(io.RawIOBase):
    """A seekable read-only file over a memoryview, so torch's reader shares the archive's bytes."""

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}[whence]
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        chunk = self._view[self._position : self._position + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)


def open_torch_reader(reader: ArchiveReader | CheckedReader, *, check_storages: bool = True) -> torch._C.PyTorchFileReader:
    """torch's archive reader over the same bytes torchpack reads (no second open, no copy)."""
    archive = reader.inner if isinstance(reader, CheckedReader) else reader
    if not isinstance(archive, ZipArchiveReader):
        raise TorchpackError(
            f"{reader.name}: TorchScript modules cannot be loaded from an unzipped archive folder "
            "(torch's TorchScript loader reads ZIP files only); load the archive file instead"
        )
    # torch's loader bypasses torchpack's reader: check what it may read through ours first -
    # the code records, and the storages (torch copies those it loads, so checking them costs
    # about as much again; "trust-mapped" importers skip them as they skip mapped ones).
    for name in reader.names():
        if name.startswith(TS_CODE_PREFIX):
            reader.read(name)
        elif check_storages and _STORAGE_RECORD.fullmatch(name):
            reader.view(name)
    return torch._C.PyTorchFileReader(_ViewFile(archive.contents))


def new_storage_context(has_torchscript: bool) -> StorageContext:
    """The storage context one ``load_pickle`` shares with torch's loader (TorchScript archives only)."""
    return torch._C.DeserializationStorageContext() if has_torchscript else None


def call_package_reducer(importer: Any, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Run the loader a ``__reduce_package__`` saved; torch's ScriptModule loader is replaced
    by :func:`_load_script_module`, since it insists on ``importer.zip_reader`` being torch's."""
    if func is unpackage_script_module:
        return _load_script_module(importer, *args)
    return func(importer, *args)


def _load_script_module(importer: Any, script_module_id: str) -> torch.nn.Module:
    cpp_module = torch._C._import_ir_module_from_package(
        torch._C.CompilationUnit(),
        importer.torch_file_reader,
        importer.storage_context,
        validate_map_location(importer.last_map_location),
        script_module_id,
    )
    return wrap_cpp_module(cpp_module)


def shared_storage(context: StorageContext, key: str) -> torch.UntypedStorage | None:
    """The storage a script module already loaded under ``key`` in this load, if any."""
    if context is None or not context.has_storage(f"{key}.storage"):
        return None
    return context.get_storage(f"{key}.storage", torch.uint8).untyped_storage()


def share_storage(context: StorageContext, key: str, storage: torch.UntypedStorage) -> None:
    """Offer an eagerly loaded storage to script modules loaded later in the same load."""
    if context is not None:
        context.add_storage(f"{key}.storage", torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage))
