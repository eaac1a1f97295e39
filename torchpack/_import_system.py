"""The import half of PackageImporter: CPython's ``importlib._bootstrap`` over one archive.

It follows ``__import__``, ``_gcd_import``, ``_find_and_load`` and ``_handle_fromlist`` (ours
is ``_load_fromlist``) with the importer's ``modules`` in place of ``sys.modules``: packaged
code sees only the package's own modules plus the extern ones. Kept apart from the archive
and pickle half (:mod:`torchpack._package_import`), as importlib keeps its finders, specs
and loaders apart; :class:`PackageImportSystem` is mixed into ``PackageImporter``, which
provides the state listed on the class.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import linecache
import sys
import threading
from importlib.util import module_from_spec
from types import ModuleType
from typing import Any

from . import _disk_cache as disk_cache
from ._importlib_facade import FACADE_MODULES, make_facades
from ._mangling import PackageMangler, demangle
from ._restricted import GlobalPolicy, untrusted_code_message
from ._source_scan import resolve_relative
from .errors import RestrictedLoadError

_NOT_LOADED = object()


def ancestors(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:depth]) for depth in range(1, len(parts))]


class ModuleEntry:
    """Where a packaged module's source lives (``None`` for a folder without ``__init__.py``)."""

    __slots__ = ("filename", "is_package")

    def __init__(self, filename: str | None, is_package: bool) -> None:
        self.filename = filename
        self.is_package = is_package


class PackageImportSystem:
    """``import_module`` and ``__import__`` over the archive's modules (see the module docstring)."""

    # Provided by PackageImporter: the archive, its module index and extern rule
    # (_is_extern), the optional modules left out at export (_optional_missing), the
    # materialized view and its extra facades, and the restricted-loading policy.
    filename: str
    modules: dict[str, Any]
    zip_reader: Any
    _mangler: PackageMangler
    _index: dict[str, ModuleEntry]
    _lock: threading.RLock
    _builtins: dict[str, Any]
    _global_policy: GlobalPolicy | None
    _view: Any
    _more_facades: Any


    def import_module(self, name: str, package: str | None = None) -> ModuleType:
        """Import ``name`` from the package (relative names need ``package``), as importlib does."""
        name = self._mangler.demangle(name)
        level = 0
        if name.startswith("."):
            if not package:
                raise TypeError(f"the 'package' argument is required to perform a relative import for {name!r}")
            level = len(name) - len(name.lstrip("."))
            name = name[level:]
        return self._gcd_import(name, self._mangler.demangle(package) if package else None, level)

    def __import__(
        self,
        name: str,
        globals: dict[str, Any] | None = None,
        locals: dict[str, Any] | None = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level == 0:
            module = self._gcd_import(name)
        else:
            module = self._gcd_import(name, self._calc_package(globals or {}), level)
        if fromlist:
            return self._load_fromlist(module, fromlist)
        if level == 0:
            top_level = name.partition(".")[0]
            return self._gcd_import(top_level)
        if not name:
            return module
        # `import .a.b`-style relative imports without fromlist return the module that the
        # first relative segment names: strip the trailing ".b" from the resolved name.
        resolved = self._mangler.demangle(module.__name__)
        trailing = len(name) - len(name.partition(".")[0])
        return self.modules[resolved[: len(resolved) - trailing]]

    @staticmethod
    def _calc_package(globals: dict[str, Any]) -> str:
        package = globals.get("__package__")
        spec = globals.get("__spec__")
        if package is not None:
            return package
        if spec is not None:
            return spec.parent
        name = demangle(globals["__name__"])
        return name if "__path__" in globals else name.rpartition(".")[0]

    def _gcd_import(self, name: str, package: str | None = None, level: int = 0) -> Any:
        if not isinstance(name, str):
            raise TypeError(f"a module name must be a str, got {type(name).__name__}")
        if level < 0:
            raise ValueError("level must be >= 0")
        if level > 0:
            if not isinstance(package, str) or not package:
                raise ImportError("attempted relative import with no known parent package")
            name = resolve_relative(name, package, level)
        elif not name:
            raise ValueError("Empty module name")
        with self._lock:
            return self._find_and_load(name)

    def _find_and_load(self, name: str) -> Any:
        module = self.modules.get(name, _NOT_LOADED)
        if module is None:
            raise ModuleNotFoundError(f"import of {name} halted; None in modules", name=name)
        if module is not _NOT_LOADED:
            return module
        parent = name.rpartition(".")[0]
        extern = self._is_extern(name)
        if extern and (not parent or self._is_extern(parent)):
            # The environment's import system handles its own parents (and oddities such
            # as `os.path`, a submodule of a module that is not a package).
            return self._load(name)
        if parent:
            # A packaged parent is imported first, as CPython does; so is the packaged parent
            # of an extern module, which then gets the extern child bound as its attribute
            # (`from transformers import initialization` with only the child extern).
            if parent not in self.modules:
                self._gcd_import(parent)
            if name in self.modules:  # the parent's import may have imported us already
                return self.modules[name]
            if not extern and not hasattr(self.modules[parent], "__path__"):
                raise ModuleNotFoundError(f"No module named '{name}'; '{parent}' is not a package", name=name)
        module = self._load(name)
        if parent:
            parent_module = self.modules[parent]
            if getattr(parent_module, "__loader__", None) is self:
                setattr(parent_module, name.rpartition(".")[2], module)  # `import a.b` binds b on a
        return module

    def _load(self, name: str) -> Any:
        if (name in FACADE_MODULES or name in self._more_facades) and self._is_extern(name):
            # Packaged code's importlib resolves module names through this importer.
            facades = make_facades(self.import_module)
            for add_facade in self._more_facades.values():
                add_facade(facades)
            for facade_name, facade in facades.items():
                self.modules.setdefault(facade_name, facade)
            return self.modules[name]
        if self._is_extern(name):
            module = importlib.import_module(name)
            self.modules[name] = module
            return module
        entry = self._index.get(name)
        if entry is None:
            left_out = [m for m in self._optional_missing if m == name or m.startswith(name + ".")]
            if left_out:
                raise ModuleNotFoundError(
                    f"No module named '{name}' in package {self.filename}: {', '.join(left_out)} was left out "
                    "at export, as an optional import of a module that was not installed",
                    name=name,
                )
            raise ModuleNotFoundError(
                f"No module named '{name}' in package {self.filename} "
                "(it was neither interned nor marked extern when the package was exported)",
                name=name,
            )
        return self._make_module(name, entry)

    def _make_module(self, name: str, entry: ModuleEntry) -> ModuleType:
        mangled_name = self._mangler.mangle(name)
        spec = importlib.machinery.ModuleSpec(name, self, origin=None, is_package=entry.is_package)
        module = module_from_spec(spec)
        namespace = module.__dict__
        namespace["__name__"] = mangled_name
        namespace["__builtins__"] = self._builtins
        namespace["__torch_package__"] = True
        namespace["__cached__"] = None
        view = self._view
        if entry.is_package:
            folder = (view and view.folder_of(name)) or self._mangler.mangle(name.replace(".", "/"))
            spec.submodule_search_locations = [folder]
            namespace["__path__"] = spec.submodule_search_locations
        code = None
        if entry.filename is not None:
            if self._global_policy is not None and not self._global_policy.trusts(name):
                where = f"importing {entry.filename} would run"
                raise RestrictedLoadError(untrusted_code_message(self.filename, name, where))
            # In a materialized view, code names its real file too: libraries split the
            # paths of their functions' code (transformers' docstrings do).
            extracted = view and view.file_of(entry.filename)
            filename = extracted or self._mangler.mangle(entry.filename)
            namespace["__file__"] = filename
            if extracted:
                spec.origin = extracted
            raw = self.zip_reader.read(entry.filename)
            source = raw.decode("utf-8")
            # Prime linecache so tracebacks and inspect show packaged lines at once.
            linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
            code = disk_cache.compile_module(source, hashlib.sha256(raw).hexdigest(), filename)
        self.modules[name] = module
        sys.modules[mangled_name] = module
        if code is not None:
            try:
                exec(code, namespace)
            except BaseException:
                # As CPython: a module whose code failed is not left half-initialised.
                self.modules.pop(name, None)
                sys.modules.pop(mangled_name, None)
                raise
            # As CPython: a module may replace itself in sys.modules while it runs
            # (transformers installs a lazy module that way); importers get the replacement.
            replacement = sys.modules.get(mangled_name, module)
            if replacement is not module:
                self.modules[name] = module = replacement
        return module

    def _load_fromlist(self, module: Any, fromlist: Any, *, recursive: bool = False) -> Any:
        module_name = self._mangler.demangle(module.__name__)
        if not hasattr(module, "__path__"):
            return module
        for item in fromlist:
            if not isinstance(item, str):
                where = f"{module_name}.__all__" if recursive else "``from list''"
                raise TypeError(f"Item in {where} must be str, not {type(item).__name__}")
            if item == "*":
                if hasattr(module, "__all__") and not recursive:
                    self._load_fromlist(module, module.__all__, recursive=True)
            elif not hasattr(module, item):
                submodule = f"{module_name}.{item}"
                try:
                    self._gcd_import(submodule)
                except ModuleNotFoundError as error:
                    # `from pkg import name` where name is neither attribute nor submodule is
                    # reported by the caller as ImportError, as in CPython.
                    if error.name == submodule and self.modules.get(submodule, _NOT_LOADED) is not None:
                        continue
                    raise
        return module
