"""Pickling objects into a package and unpickling them out of one.

Export uses CPython's C pickler whenever the exporter looks objects up in the running
interpreter alone: its own name lookup is then exactly right, and ``reducer_override`` lets
us validate each global once and record it, so no second pass over the pickle bytes is
needed to find dependencies. When objects may come from loaded packages (re-export) a global's
pickled name must be *demangled*, which the C pickler cannot do; a subclass of the pure-Python
pickler that asks the importer for names takes over then - and also whenever a pickle holds
a set, whose element order must not depend on hashing.
"""

from __future__ import annotations

import copyreg
import io
import pickle
from collections import OrderedDict
from collections.abc import Callable
from types import BuiltinFunctionType, FunctionType
from typing import Any

import torch

from ._gc import collector_paused
from ._storage import checked_rebuild, cpu_tagged_first, plain_tensor_reduction
from .importer import Importer, sys_importer

PersistentId = Callable[[Any], Any]

_GLOBAL_TYPES = (type, FunctionType, BuiltinFunctionType)
_EMPTY_ORDERED_DICT = (OrderedDict, ())
#: torch objects that pickle by name (``torch.float32`` is the global ``torch float32``).
#: Not ``torch.layout``: copyreg reduces a layout to a call of ``torch.serialization._get_layout``.
_NAMED_TORCH_OBJECTS = (torch.dtype, torch.memory_format, torch.qscheme)


class _RecordingCPickler(pickle.Pickler):
    """C pickler that validates and records every class and function it writes by name."""

    def __init__(self, file: io.BytesIO, protocol: int, importer: Importer, persistent_id: PersistentId) -> None:
        super().__init__(file, protocol)
        self._protocol = protocol
        self._importer = importer
        # The C pickler calls this for every object: set directly, not through a method
        # that forwards to it, to save a Python call per object.
        self.persistent_id = persistent_id
        self.globals_seen: dict[tuple[str, str], None] = {}
        # A torch function mode could intercept the tensor methods torch's reduction calls,
        # and another location tagger could claim CPU storages; then only torch's reduction
        # is sure to give what it gives.
        self._fast_tensors = not torch._C._is_torch_function_mode_enabled() and cpu_tagged_first()

    def reducer_override(self, obj: Any) -> Any:
        # Called once per distinct non-atomic object (the memo short-circuits repeats).
        if type(obj) is torch.Tensor and self._fast_tensors:
            reduced = plain_tensor_reduction(obj)
            if reduced is not None:
                return reduced
        elif type(obj) is OrderedDict and not obj and not obj.__dict__:
            # One per tensor (its backward hooks): what OrderedDict.__reduce_ex__ gives less the
            # empty state and item iterator, which add no bytes - without calling it (1.3 us).
            return _EMPTY_ORDERED_DICT
        if isinstance(obj, _GLOBAL_TYPES) or isinstance(obj, _NAMED_TORCH_OBJECTS):
            self.globals_seen[self._importer.get_name(obj)] = None
        elif type(obj).__reduce__ is not object.__reduce__ and not isinstance(obj, torch.Tensor):
            # Objects whose reduction is a bare name (singletons) are pickled as globals too.
            try:
                reduced = obj.__reduce_ex__(self._protocol)
            except Exception:  # noqa: BLE001 - the pickler itself will report it
                return NotImplemented
            if isinstance(reduced, str):
                self.globals_seen[self._importer.get_name(obj, reduced)] = None
            if type(obj) not in copyreg.dispatch_table:
                # What the pickler would ask __reduce_ex__ for next: handing it over saves a
                # second reduction (an OrderedDict of hooks per tensor, for one).
                return reduced
        return NotImplemented


class _RenamingPyPickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pure-Python pickler whose globals are named through an :class:`Importer`."""

    def __init__(self, file: io.BytesIO, protocol: int, importer: Importer, persistent_id: PersistentId) -> None:
        super().__init__(file, protocol)
        self._importer = importer
        self.persistent_id = persistent_id
        self.globals_seen: dict[tuple[str, str], None] = {}
        # A private copy: the class-level table is shared with every other _Pickler user.
        self.dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]
        self.dispatch[FunctionType] = _RenamingPyPickler.save_global
        self.dispatch[set] = _RenamingPyPickler.save_canonical_set
        self.dispatch[frozenset] = _RenamingPyPickler.save_canonical_set

    def save_canonical_set(self, obj: Any) -> None:
        # The same opcodes whatever the protocol: a call of set/frozenset on a sorted list.
        self.save_reduce(type(obj), (_canonical_order(obj),), obj=obj)

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module_name, qualname = self._importer.get_name(obj, name)
        self.globals_seen[(module_name, qualname)] = None
        if self.proto >= 4:
            self.save(module_name)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module_name}\n{qualname}\n".encode("utf-8"))
        self.memoize(obj)


def _has_unordered_set(pickler: pickle.Pickler, data: bytes, protocol: int) -> bool:
    # A set shows in the bytes as the global `builtins set`/`frozenset` (protocol 3) or as
    # its own opcode (4); without one, the costly walk of the memo is skipped. Matches that
    # are really strings or opcode arguments (one byte is all the opcodes take) only cost
    # that walk; protocol 3 has no set opcodes, so its memo indices are not mistaken for them.
    opcodes = protocol >= 4 and (pickle.EMPTY_SET in data or pickle.FROZENSET in data)
    if b"set\n" not in data and not opcodes:
        return False
    # Every set the C pickler wrote is in its memo; small sets cannot be out of order.
    return any(
        type(entry[1]) in (set, frozenset) and len(entry[1]) > 1 for entry in pickler.memo.copy().values()
    )


def _canonical_order(items: Any) -> list[Any]:
    """Set elements in an order that does not depend on hashing (PYTHONHASHSEED, addresses)."""
    items = list(items)
    try:
        return sorted(items)
    except TypeError:
        return sorted(items, key=lambda item: (type(item).__module__, type(item).__qualname__, repr(item)))


def pickle_object(
    obj: Any, *, importer: Importer, protocol: int, persistent_id: PersistentId
) -> tuple[bytes, list[tuple[str, str]]]:
    """Pickle ``obj``; return the bytes and every ``(module, name)`` global it references.

    The C pickler writes set elements in hash order, which PYTHONHASHSEED changes; when a
    pickle holds a set, it is pickled again by the Python pickler, which sorts them.
    """
    with collector_paused():
        if importer is sys_importer:
            buffer = io.BytesIO()
            fast = _RecordingCPickler(buffer, protocol, importer, persistent_id)
            fast.dump(obj)
            data = buffer.getvalue()
            if not _has_unordered_set(fast, data, protocol):
                return data, list(fast.globals_seen)
        buffer = io.BytesIO()
        pickler = _RenamingPyPickler(buffer, protocol, importer, persistent_id)
        pickler.dump(obj)
        return buffer.getvalue(), list(pickler.globals_seen)


def _resolve(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


#: How much of a pickle the C unpickler is handed at a time (see PackageUnpickler).
_UNPICKLER_CHUNK = 1 << 20


class PackageUnpickler(pickle.Unpickler):
    """C unpickler resolving globals through a package's importer (ordinary, unrestricted loads)."""

    def __init__(self, data: bytes, importer: Importer, persistent_load: Callable[[Any], Any]) -> None:
        # From a stream without peek() (io.BytesIO) the C unpickler reads every opcode with a
        # call to read(): torch.package pickles are protocol 3, which has no frames, so that
        # is some 50 calls per tensor - a seventh of loading many small tensors. A buffered
        # reader has peek(), through which it takes the pickle a chunk at a time.
        stream = io.BufferedReader(io.BytesIO(data), buffer_size=max(1, min(len(data), _UNPICKLER_CHUNK)))
        super().__init__(stream)
        self._importer = importer
        # Set directly rather than forwarded by a method: one Python call less per tensor.
        self.persistent_load = persistent_load

    def load(self) -> Any:
        with collector_paused():
            return super().load()

    def find_class(self, module: str, name: str) -> Any:
        # Called once per global a pickle names, not per use: the swap and its check cost nothing.
        return checked_rebuild(_resolve(self._importer.import_module(module), name))
