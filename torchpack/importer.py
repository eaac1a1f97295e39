"""Importers: where an exporter looks up the modules and objects it is asked to package.

An :class:`Importer` turns a module name into a module and an object back into the
``(module, name)`` pair a pickle ``GLOBAL`` refers to. :data:`sys_importer` is the running
interpreter; a :class:`~torchpack.PackageImporter` is one too, which is what makes re-export
of loaded objects possible: ``PackageExporter(f, importer=(package_importer, sys_importer))``.
"""

from __future__ import annotations

import pickle
from importlib import import_module as _import_from_environment
from abc import ABC, abstractmethod
from types import ModuleType
from typing import Any

from ._mangling import demangle, get_mangle_prefix, is_mangled
from .errors import ObjMismatchError, ObjNotFoundError

__all__ = ["Importer", "OrderedImporter", "sys_importer"]

#: The module name under which packaged code finds the PackageImporter that loaded it.
PACKAGE_IMPORTER_MODULE = "torch_package_importer"


def _resolve_qualname(module: ModuleType, qualname: str) -> Any:
    obj: Any = module
    for part in qualname.split("."):
        if part == "<locals>":
            raise AttributeError(f"cannot reach a local object through {qualname!r}")
        obj = getattr(obj, part)
    return obj


def _origin_of(obj: Any, importer: "Importer") -> str:
    """Describe where an object's module came from, for mismatch messages."""
    try:
        module_name = importer.whichmodule(obj, getattr(obj, "__qualname__", ""))
    except Exception:  # noqa: BLE001 - best effort, only used to word an error
        return "an unknown location"
    if is_mangled(module_name):
        return f"the package {get_mangle_prefix(module_name)}"
    return "the Python environment"


class Importer(ABC):
    """Maps module names to modules, and objects to the names they can be found under."""

    modules: dict[str, ModuleType]

    @abstractmethod
    def import_module(self, module_name: str) -> ModuleType:
        """Import ``module_name`` (absolute) or raise ``ModuleNotFoundError``."""

    def get_name(self, obj: Any, name: str | None = None) -> tuple[str, str]:
        """Return the unmangled ``(module_name, qualified_name)`` that finds ``obj`` through this importer.

        Raises ObjNotFoundError when nothing is found there, and ObjMismatchError when something
        else is (typically the same class from another package or from the environment).
        """
        if name is None:
            reducer = getattr(obj, "__reduce__", None)
            if reducer is not None and not isinstance(obj, type):
                try:
                    reduced = reducer()
                except Exception:  # noqa: BLE001 - many objects refuse __reduce__; fall back to names
                    reduced = None
                if isinstance(reduced, str):
                    name = reduced
        if name is None:
            name = getattr(obj, "__qualname__", None) or obj.__name__

        module_name = demangle(self.whichmodule(obj, name))
        try:
            found = _resolve_qualname(self.import_module(module_name), name)
        except (ImportError, AttributeError, KeyError) as error:
            raise ObjNotFoundError(f"{obj} was not found as {module_name}.{name}") from error
        if found is obj:
            return module_name, name
        raise ObjMismatchError(
            f"{obj} was found as {module_name}.{name} but it is a different object: "
            f"the one being pickled comes from {_origin_of(obj, self)}, the one found comes from "
            f"{_origin_of(found, self)}."
        )

    def whichmodule(self, obj: Any, name: str) -> str:
        """The name of the module that defines ``obj`` (``__module__``, else ``__main__``)."""
        module_name: str | None = getattr(obj, "__module__", None)
        return module_name if module_name is not None else "__main__"


class _SysImporter(Importer):
    """The running interpreter's own import system."""

    def import_module(self, module_name: str) -> ModuleType:
        return _import_from_environment(module_name)

    def whichmodule(self, obj: Any, name: str) -> str:
        return pickle.whichmodule(obj, name)


sys_importer: Importer = _SysImporter()


class OrderedImporter(Importer):
    """Tries several importers in turn; the first that has the module wins."""

    def __init__(self, *importers: Importer) -> None:
        self._importers: list[Importer] = list(importers)

    def import_module(self, module_name: str) -> ModuleType:
        last_error: ImportError | None = None
        for importer in self._importers:
            if not isinstance(importer, Importer):
                raise TypeError(f"{importer!r} is not an Importer: each importer must subclass torchpack.Importer")
            try:
                candidate = importer.import_module(module_name)
            except ModuleNotFoundError as error:
                last_error = error
                continue
            # The interpreter may hold placeholder modules a PackageImporter created
            # (e.g. mangled names); those are not the environment's real modules.
            if importer is sys_importer and is_mangled(getattr(candidate, "__name__", "")):
                continue
            return candidate
        raise ModuleNotFoundError(f"No module named '{module_name}'", name=module_name) from last_error

    def get_name(self, obj: Any, name: str | None = None) -> tuple[str, str]:
        """The name of ``obj`` through the first importer that has this very object.

        An importer holding a different object under the name (the environment's class,
        where ``obj`` comes from a package) does not end the search: a later one may hold
        ``obj`` itself. When none does, the first mismatch is raised, as it says the most.
        """
        first_mismatch: ObjMismatchError | None = None
        for importer in self._importers:
            try:
                return importer.get_name(obj, name)
            except ObjMismatchError as error:
                first_mismatch = first_mismatch or error
            except ObjNotFoundError:
                continue
        if first_mismatch is not None:
            raise first_mismatch
        raise ObjNotFoundError(f"{obj} was not found through any of the {len(self._importers)} importers")

    def whichmodule(self, obj: Any, name: str) -> str:
        for importer in self._importers:
            candidate_name = importer.whichmodule(obj, name)
            if candidate_name != "__main__":
                return candidate_name
        return "__main__"
