"""Pickling objects into a package and unpickling them out of one.

Export uses CPython's C pickler whenever the exporter looks objects up in the running
interpreter alone: its own name lookup is then exactly right, and ``reducer_override`` lets
us validate each global once and record it, so no second pass over the pickle bytes is
needed to find dependencies. When objects may come from loaded packages (re-export) a global's
pickled name must be *demangled*, which the C pickler cannot do; a subclass of the pure-Python
pickler that asks the importer for names takes over then.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from types import BuiltinFunctionType, FunctionType
from typing import Any

from .importer import Importer, sys_importer

PersistentId = Callable[[Any], Any]

_GLOBAL_TYPES = (type, FunctionType, BuiltinFunctionType)


class _RecordingCPickler(pickle.Pickler):
    """C pickler that validates and records every class and function it writes by name."""

    def __init__(self, file: io.BytesIO, protocol: int, importer: Importer, persistent_id: PersistentId) -> None:
        super().__init__(file, protocol)
        self._importer = importer
        self._persistent_id = persistent_id
        self.globals_seen: dict[tuple[str, str], None] = {}

    def persistent_id(self, obj: Any) -> Any:
        return self._persistent_id(obj)

    def reducer_override(self, obj: Any) -> Any:
        # Called once per distinct non-atomic object (the memo short-circuits repeats).
        if isinstance(obj, _GLOBAL_TYPES):
            self.globals_seen[self._importer.get_name(obj)] = None
        return NotImplemented


class _RenamingPyPickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pure-Python pickler whose globals are named through an :class:`Importer`."""

    def __init__(self, file: io.BytesIO, protocol: int, importer: Importer, persistent_id: PersistentId) -> None:
        super().__init__(file, protocol)
        self._importer = importer
        self._persistent_id = persistent_id
        self.globals_seen: dict[tuple[str, str], None] = {}
        # A private copy: the class-level table is shared with every other _Pickler user.
        self.dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]
        self.dispatch[FunctionType] = _RenamingPyPickler.save_global

    def persistent_id(self, obj: Any) -> Any:
        return self._persistent_id(obj)

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


def pickle_object(
    obj: Any, *, importer: Importer, protocol: int, persistent_id: PersistentId
) -> tuple[bytes, list[tuple[str, str]]]:
    """Pickle ``obj``; return the bytes and every ``(module, name)`` global it references."""
    buffer = io.BytesIO()
    pickler_type = _RecordingCPickler if importer is sys_importer else _RenamingPyPickler
    pickler = pickler_type(buffer, protocol, importer, persistent_id)
    pickler.dump(obj)
    return buffer.getvalue(), list(pickler.globals_seen)


def _resolve(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


class PackageUnpickler(pickle.Unpickler):
    """C unpickler resolving globals through a package's importer."""

    def __init__(
        self,
        file: io.BytesIO,
        importer: Importer,
        persistent_load: Callable[[Any], Any],
        allow_global: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(file)
        self._importer = importer
        self._persistent_load = persistent_load
        self._allow_global = allow_global

    def persistent_load(self, pid: Any) -> Any:
        return self._persistent_load(pid)

    def find_class(self, module: str, name: str) -> Any:
        if self._allow_global is not None:
            self._allow_global(module, name)
        return _resolve(self._importer.import_module(module), name)
