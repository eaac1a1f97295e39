"""PackageExporter: plans what goes into a package, then writes it.

The exporter owns the lifecycle and the user-facing API; the work is delegated:
:mod:`._resolution` (the module graph and finding modules), :mod:`._source_scan` (imports in
source), :mod:`._pickling` (objects to bytes plus the globals they use), :mod:`._storage`
(tensor memory) and :mod:`._archive_writer` (the deterministic ZIP).
"""

from __future__ import annotations

import collections.abc
import itertools
import os
import pathlib
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Union

from . import _records as records
from ._archive_writer import ArchiveWriter
from ._gc import collector_paused
from ._globbing import GlobGroup, GlobPattern
from ._hooks import RemovableHandle, register
from ._integrity import remember_written
from ._mock_source import MOCK_SUPPORT_MODULE, MOCK_SUPPORT_SOURCE, MOCKED_MODULE_SOURCE
from ._patterns import PatternPrecedence, PatternRule, deciding_rule
from ._pickling import pickle_object
from ._resolution import DependencyGraph, ModuleAction, ModuleNode, clear_spec_memo, locate_module, module_exists
from ._source_scan import ImportReference, shared_scan_cache
from ._stdlib import is_stdlib_module
from ._storage import (
    PLAIN_TYPES,
    STORAGE_TYPES,
    StorageRef,
    cpu_storage_bytes,
    describe_storage,
    storage_bytes,
    storage_location,
)
from ._torchscript import TorchScriptWriter, script_module_storages
from .errors import BrokenModule, BrokenReason, EmptyMatchError, PackagingError, TorchpackError
from .importer import PACKAGE_IMPORTER_MODULE, Importer, OrderedImporter, sys_importer

#: ``hook(exporter, module_name)``, called at close for each module of one action.
ActionHook = Callable[["PackageExporter", str], None]  # the exporter, then the module name


def _dot_positions(name: str) -> list[int]:
    """Where each parent of ``name`` ends: ``a.b.c`` -> the ends of ``a`` and ``a.b``."""
    return [index for index, char in enumerate(name) if char == "."]


def _resource_path(package: str, resource: str) -> str:
    resource = pathlib.PurePosixPath(resource).as_posix()
    if resource.startswith("/") or ".." in resource.split("/"):
        raise ValueError(f"resource name {resource!r} must be a relative path inside its package")
    return f"{package.replace('.', '/')}/{resource}"


class PackageExporter:
    """Writes a package: code, pickled objects and resources in one reproducible archive.

    Use it as a context manager; the archive is complete when the ``with`` block (or
    :meth:`close`) ends, and nothing is left behind if it fails.
    """

    importer: Importer

    def __init__(
        self,
        f: Union[str, os.PathLike, BinaryIO],
        importer: Union[Importer, Sequence[Importer]] = sys_importer,
        debug: bool = False,
        *,
        pattern_precedence: PatternPrecedence = "first-declared",
        requires: Sequence[str] = (),
        entry_point: str | None = None,
    ) -> None:
        if pattern_precedence not in ("first-declared", "most-specific"):
            raise ValueError(f"pattern_precedence must be 'first-declared' or 'most-specific', not {pattern_precedence!r}")
        self._most_specific_wins = pattern_precedence == "most-specific"
        # The build layer's pins (PEP 508 text, recorded in the provenance) and the
        # ``module:function`` that ``torchpack run`` calls; neither is written when unset,
        # so other archives keep their bytes.
        self._requires = tuple(requires)
        self._entry_point = entry_point
        if isinstance(importer, Importer):
            self.importer = importer
        elif isinstance(importer, collections.abc.Sequence):
            self.importer = OrderedImporter(*tuple(importer))
        else:
            raise TypeError(f"importer must be an Importer or a sequence of Importers, not {type(importer).__name__}")
        self.debug = debug
        self.dependency_graph = DependencyGraph()
        self.patterns: dict[GlobGroup, PatternRule] = {}
        self._extern_hooks: dict[int, ActionHook] = {}
        self._mock_hooks: dict[int, ActionHook] = {}
        self._intern_hooks: dict[int, ActionHook] = {}
        self._unique_ids = 0
        self._read_files: set[str] = set()
        # Modules depended on only as the parent package of another (see externed_modules).
        self._parents_only: set[str] = set()
        # Modules imported only at guarded or deferred sites and not installed here; the
        # package is written without them (see optional_missing_modules).
        self._optional_missing: dict[str, None] = {}
        # torch's TorchScript serializer; its storage context numbers *every* storage (eager
        # and script) and keeps it alive, so a storage both share is one record. torch's
        # ScriptModule.__reduce_package__ reads these two attributes.
        self._torchscript = TorchScriptWriter()
        self.script_module_serializer = self._torchscript.serializer
        self.storage_context = self._torchscript.storage_context
        # id(obj) -> (obj, its persistent id); obj is kept so its id is not reused meanwhile.
        self._reduced: dict[int, tuple[Any, tuple[Any, ...]]] = {}
        self._reduce_ids = itertools.count()
        self._writer = ArchiveWriter(f)
        self._closed = False
        clear_spec_memo()

    # -- actions ----------------------------------------------------------------------------

    def _add_rule(self, action: ModuleAction, include: GlobPattern, exclude: GlobPattern, allow_empty: bool) -> None:
        self.patterns[GlobGroup(include, exclude=exclude)] = PatternRule(action, allow_empty)

    def intern(self, include: GlobPattern, *, exclude: GlobPattern = (), allow_empty: bool = True) -> None:
        """Put the modules matching ``include`` (minus ``exclude``) into the package."""
        self._add_rule(ModuleAction.INTERN, include, exclude, allow_empty)

    def extern(self, include: GlobPattern, *, exclude: GlobPattern = (), allow_empty: bool = True) -> None:
        """Leave matching modules out: the loading environment's importer provides them."""
        self._add_rule(ModuleAction.EXTERN, include, exclude, allow_empty)

    def mock(self, include: GlobPattern, *, exclude: GlobPattern = (), allow_empty: bool = True) -> None:
        """Replace matching modules by stubs whose objects raise NotImplementedError when used."""
        self._add_rule(ModuleAction.MOCK, include, exclude, allow_empty)

    def deny(self, include: GlobPattern, *, exclude: GlobPattern = ()) -> None:
        """Make a dependency on a matching module an error."""
        self._add_rule(ModuleAction.DENY, include, exclude, allow_empty=True)

    def register_extern_hook(self, hook: ActionHook) -> RemovableHandle:
        """Call ``hook(exporter, module_name)`` for each extern module, in order, at close."""
        return register(self._extern_hooks, hook)

    def register_mock_hook(self, hook: ActionHook) -> RemovableHandle:
        """Call ``hook(exporter, module_name)`` for each mocked module, in order, at close."""
        return register(self._mock_hooks, hook)

    def register_intern_hook(self, hook: ActionHook) -> RemovableHandle:
        """Call ``hook(exporter, module_name)`` for each interned module, in order, at close."""
        return register(self._intern_hooks, hook)

    # -- dependency resolution --------------------------------------------------------------

    @staticmethod
    def _is_implicit_extern(module_name: str) -> bool:
        top = module_name.partition(".")[0]
        return top == "torch" or is_stdlib_module(top)

    def add_dependency(self, module_name: str, dependencies: bool = True) -> None:
        """Resolve ``module_name`` against the actions and, if interned, its own imports."""
        graph = self.dependency_graph
        self._parents_only.discard(module_name)  # needed in its own right
        if module_name in graph.nodes and graph.nodes[module_name].provided:
            return
        node = graph.node(module_name)
        if module_name == PACKAGE_IMPORTER_MODULE:
            node.action, node.provided = ModuleAction.SKIP, True
            return
        if module_name == MOCK_SUPPORT_MODULE:
            node.action, node.provided = ModuleAction.REPACKAGED_MOCK_MODULE, True
            return
        if self._is_implicit_extern(module_name):
            node.action, node.provided = ModuleAction.EXTERN, True
            return
        rule = self._deciding_rule(module_name)
        if rule is None:
            node.broken = BrokenReason.NO_ACTION
            return
        rule.was_matched = True
        if rule.action is ModuleAction.INTERN:
            self._add_interned(module_name, dependencies)
        else:
            node.action, node.provided = rule.action, True
            if rule.action is ModuleAction.DENY:
                node.broken = BrokenReason.DENIED

    def _deciding_rule(self, module_name: str) -> PatternRule | None:
        return deciding_rule(self.patterns, module_name, most_specific=self._most_specific_wins)

    def _add_interned(self, module_name: str, dependencies: bool) -> None:
        node = self.dependency_graph.node(module_name)
        node.action, node.provided = ModuleAction.INTERN, True
        try:
            located = locate_module(self.importer, module_name)
        except ImportError as error:
            node.broken, node.context = BrokenReason.NOT_FOUND, str(error)
            return
        if located.source is None:
            node.broken = BrokenReason.NO_SOURCE
            return
        if located.origin_file is not None:
            self._read_files.add(os.path.abspath(located.origin_file))
        self._set_source(node, located.source, located.is_package, dependencies)

    def _set_source(self, node: ModuleNode, source: str, is_package: bool, dependencies: bool) -> None:
        node.source, node.is_package = source, is_package
        self._depend_on_ancestors(node.name, node.name)
        if not dependencies:
            return
        package = node.name if is_package else node.name.rpartition(".")[0]
        try:
            references = shared_scan_cache.scan(source, package, records.module_filename(node.name, is_package))
        except (SyntaxError, ValueError, ImportError) as error:
            node.broken, node.context = BrokenReason.DEPENDENCY_RESOLUTION_FAILED, str(error)
            return
        for reference in references:
            if self._left_out_as_optional(reference):
                continue
            if reference.name is not None:
                submodule = f"{reference.module}.{reference.name}"
                if self._is_known_module(submodule):
                    self._depend(node.name, submodule)
                    continue
            self._depend(node.name, reference.module)
            self._depend_on_ancestors(node.name, reference.module)

    def _left_out_as_optional(self, reference: ImportReference) -> bool:
        """Whether ``reference`` is to a module that is not installed and that the code can do
        without: it is imported under a guard or in a function, so the module imports here
        without it, and so will the package. An explicit extern keeps it (the loading
        environment may have it); unguarded top-level imports still fail, as they would at
        load (torch.package drops every import it cannot resolve)."""
        if not reference.optional or self._is_known_module(reference.module):
            return False
        if self._first_action(reference.module) is ModuleAction.EXTERN:
            return False
        self._optional_missing[reference.module] = None
        return True

    def _depend_on_ancestors(self, user: str, module_name: str) -> None:
        """Depend on the parent packages of ``module_name``: importing a.b.c runs a and a.b.

        torch.package skips them, so a parent's ``__init__`` goes missing from the package.
        Extern parents are listed (code that runs ``import numpy.linalg`` uses ``numpy``
        too). Packaged parents are taken from the top down, stopping below the first parent
        that is not packaged (extern, or no pattern mentions it): below that point the code
        is part of a library the package holds only partly, as with
        ``intern("t.models.gpt2.**")`` plus ``extern("t.**")``, whose own ``__init__`` files
        expect the whole library around them. The importer then provides empty packages
        for those folders, as torch.package does.
        """
        parts = module_name.split(".")
        packaged_from_the_top = True
        for depth in range(1, len(parts)):
            ancestor = ".".join(parts[:depth])
            if self._is_implicit_extern(ancestor):
                action: ModuleAction | None = ModuleAction.EXTERN
            else:
                rule = self._deciding_rule(ancestor)
                action = None if rule is None else rule.action
            if action is ModuleAction.EXTERN:
                self._depend(user, ancestor, as_parent=True)
            if action is None or action is ModuleAction.EXTERN:
                packaged_from_the_top = False
            elif packaged_from_the_top:
                self._depend(user, ancestor, as_parent=True)

    def _is_known_module(self, name: str) -> bool:
        node = self.dependency_graph.nodes.get(name)
        if node is not None and node.provided and node.broken is None:
            return True
        return module_exists(self.importer, name)

    def _depend(self, user: str, module_name: str, *, as_parent: bool = False) -> None:
        if user == module_name:
            return
        parent_so_far = module_name not in self.dependency_graph.nodes or module_name in self._parents_only
        self.dependency_graph.add_edge(user, module_name)
        self.add_dependency(module_name)
        if as_parent and parent_so_far:
            self._parents_only.add(module_name)

    # -- saving -----------------------------------------------------------------------------

    def save_module(self, module_name: str, dependencies: bool = True) -> None:
        """Intern ``module_name`` with its source, whatever the patterns say.

        Raises ModuleNotFoundError at once when the importer has no such module.
        """
        if not isinstance(module_name, str):
            raise TypeError("save_module() expects a module name string; to save an object use save_pickle()")
        if not module_exists(self.importer, module_name):
            raise ModuleNotFoundError(
                f"save_module({module_name!r}): no module named {module_name!r} through the exporter's importer",
                name=module_name,
            )
        self._add_interned(module_name, dependencies)

    def save_source_string(
        self, module_name: str, src: str, is_package: bool = False, dependencies: bool = True
    ) -> None:
        """Intern ``src`` as the source of ``module_name``, replacing any earlier source for it."""
        node = self.dependency_graph.node(module_name)
        node.action, node.provided, node.broken = ModuleAction.INTERN, True, None
        self._set_source(node, src, is_package, dependencies)

    def save_source_file(self, module_name: str, file_or_directory: str, dependencies: bool = True) -> None:
        """Intern a source file as ``module_name``, or a folder as the package ``module_name``."""
        path = pathlib.Path(file_or_directory)
        if not path.is_dir():
            self._read_files.add(str(path.resolve()))
            self.save_source_string(module_name, path.read_text(encoding="utf-8"), dependencies=dependencies)
            return
        for source_file in sorted(path.rglob("*.py")):
            relative = source_file.relative_to(path).with_suffix("").parts
            is_package = relative[-1] == "__init__"
            parts = (module_name, *relative[:-1]) if is_package else (module_name, *relative)
            self._read_files.add(str(source_file.resolve()))
            self.save_source_string(
                ".".join(parts), source_file.read_text(encoding="utf-8"), is_package, dependencies
            )

    def save_pickle(
        self, package: str, resource: str, obj: Any, dependencies: bool = True, pickle_protocol: int = 3
    ) -> None:
        """Pickle ``obj`` to ``package/resource``; its classes and functions become dependencies."""
        if pickle_protocol not in (3, 4):
            raise ValueError(f"pickle_protocol must be 3 or 4 (what torch.package reads), not {pickle_protocol}")
        filename = _resource_path(package, resource)
        data, referenced = pickle_object(
            obj, importer=self.importer, protocol=pickle_protocol, persistent_id=self._persistent_id
        )
        pickle_node_name = f"<{package}.{resource}>"
        node = self.dependency_graph.node(pickle_node_name)
        node.action, node.provided, node.is_pickle = ModuleAction.INTERN, True, True
        if dependencies:
            fields_by_module: dict[str, list[str]] = {}
            for module_name, field in referenced:
                fields_by_module.setdefault(module_name, []).append(field)
            for module_name, fields in fields_by_module.items():
                self.dependency_graph.add_edge(pickle_node_name, module_name)
                if self._first_action(module_name) is ModuleAction.MOCK:
                    mocked = self.dependency_graph.node(module_name)
                    mocked.action, mocked.provided = ModuleAction.MOCK, True
                    mocked.broken = BrokenReason.MOCKED_BUT_USED
                    mocked.context = (
                        f"Object(s) {fields} from module `{module_name}` was mocked out during packaging "
                        f"but is being used in resource `{resource}` in package `{package}`."
                    )
                else:
                    self.add_dependency(module_name)
        self._writer.stage_record(filename, data)

    def _first_action(self, module_name: str) -> ModuleAction | None:
        if self._is_implicit_extern(module_name):
            return None
        rule = self._deciding_rule(module_name)
        return None if rule is None else rule.action

    def _persistent_id(self, obj: Any) -> Any:
        kind = type(obj)
        if kind in PLAIN_TYPES or kind is type:
            return None  # most objects: answered before any slower check (classes are globals)
        if kind is StorageRef:  # a plain CPU tensor's storage (see plain_tensor_reduction)
            return self._storage_id(obj.untyped, obj.storage_class, obj.count, on_cpu=True)
        if isinstance(obj, STORAGE_TYPES):
            return self._storage_id(*describe_storage(obj))
        if hasattr(obj, "__reduce_package__") and not isinstance(obj, type):
            # One call per object: the same object pickled twice must not save its data twice.
            if id(obj) not in self._reduced:
                for storage in script_module_storages(obj):
                    self._persistent_id(storage)  # streamed now: torch's serializer then skips it
                # The id only tells repeats apart at load time; a counter, unlike id(obj),
                # keeps the pickle reproducible.
                reduce_id = next(self._reduce_ids)
                self._reduced[id(obj)] = (obj, ("reduce_package", reduce_id, *obj.__reduce_package__(self)))
            return self._reduced[id(obj)][1]
        return None

    def _storage_id(self, untyped: Any, storage_class: Any, count: int, *, on_cpu: bool = False) -> tuple[Any, ...]:
        """A storage's persistent id; its record is written the first time it is met.

        ``on_cpu``: the caller knows the storage is on the CPU, and torch tags it "cpu"
        (see StorageRef); asking the storage costs more than the rest of a small tensor.
        """
        key, first = self._torchscript.storage_key(untyped)
        if first:
            data = cpu_storage_bytes(untyped) if on_cpu else storage_bytes(untyped)
            self._writer.write_record(records.storage_record(str(key)), data, align=True)
        return ("storage", storage_class, key, "cpu" if on_cpu else storage_location(untyped), count)

    def save_text(self, package: str, resource: str, text: str) -> None:
        """Save ``text`` (UTF-8) as ``package/resource``."""
        self._writer.stage_record(_resource_path(package, resource), text.encode("utf-8"))

    def save_binary(self, package: str, resource: str, binary: bytes) -> None:
        """Save ``binary`` as ``package/resource``."""
        self._writer.stage_record(_resource_path(package, resource), bytes(binary))

    def get_unique_id(self) -> str:
        """A fresh id, unique within this package (for generated module names)."""
        unique = str(self._unique_ids)
        self._unique_ids += 1
        return unique

    # -- introspection ----------------------------------------------------------------------

    @property
    def read_files(self) -> list[str]:
        """Absolute paths of every source file this export has read (for build caches)."""
        return sorted(self._read_files)

    def _modules_with_action(self, action: ModuleAction) -> list[str]:
        return sorted(
            name
            for name, node in self.dependency_graph.nodes.items()
            if node.action is action and not node.is_pickle
        )

    def externed_modules(self) -> list[str]:
        """The extern modules, less those needed only as the parent of a packaged module.

        Listing ``t`` extern above an interned ``t.models.gpt2`` would make an archive that
        torch.package refuses; the importer gives the folder an empty package instead.
        """
        packaged = (*self._modules_with_action(ModuleAction.INTERN), *self._modules_with_action(ModuleAction.MOCK))
        above_packaged = {name[:end] for name in packaged for end in _dot_positions(name)}
        return [
            name
            for name in self._modules_with_action(ModuleAction.EXTERN)
            if not (name in self._parents_only and name in above_packaged)
        ]

    def interned_modules(self) -> list[str]:
        return self._modules_with_action(ModuleAction.INTERN)

    def mocked_modules(self) -> list[str]:
        return self._modules_with_action(ModuleAction.MOCK)

    def denied_modules(self) -> list[str]:
        return self._modules_with_action(ModuleAction.DENY)

    def optional_missing_modules(self) -> list[str]:
        """Modules left out because they are not installed and only imported optionally.

        Packaged code imports each under an ``if``, in a ``try`` that catches ImportError, or
        in a function; none is in the package, and importing one from it raises
        ModuleNotFoundError naming it. A module provided some other way (saved, or imported
        unconditionally elsewhere) is not listed.
        """
        return sorted(name for name in self._optional_missing if name not in self.dependency_graph.nodes)

    def get_rdeps(self, module_name: str) -> list[str]:
        """The modules (and pickles) that depend on ``module_name`` directly."""
        return list(self.dependency_graph.predecessors.get(module_name, {}))

    def all_paths(self, src: str, dst: str) -> str:
        """DOT graph of every dependency path from ``src`` to ``dst``."""
        return self.dependency_graph.all_paths(source=src, target=dst)

    def dependency_graph_string(self) -> str:
        """DOT graph of every dependency recorded so far."""
        return self.dependency_graph.to_dot()

    # -- closing ----------------------------------------------------------------------------

    def __enter__(self) -> "PackageExporter":
        return self

    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None:
        if exc_type is not None:
            self._abort()
            return
        self.close()

    def _abort(self) -> None:
        self._closed = True
        self._writer.abort()

    def close(self) -> None:
        """Check the plan, write every module and framework record, and finish the archive."""
        if self._closed:
            return
        try:
            # The central directory and the integrity record make an object or two per record.
            with collector_paused():
                self._validate()
                self._write_modules()
                self._torchscript.copy_into(self._writer)
                self._write_framework_records()
                self._writer.close()
        except BaseException:
            self._abort()
            raise
        self._closed = True
        if self._writer.final_path is not None:
            remember_written(self._writer.final_path)

    def _provided_as_resource_folder(self, node: ModuleNode) -> bool:
        """A module missing from the environment whose folder holds saved resources or sources.

        The guide's ``import my_resource`` of a package made only by ``save_text`` is such a
        case, and so is ``fx-generated``, the parent of the modules torch.fx saves with
        ``save_source_string``: the importer serves that folder as a package, so it is not an error.
        """
        if node.broken not in (BrokenReason.NO_ACTION, BrokenReason.NOT_FOUND):
            return False
        if module_exists(self.importer, node.name):
            return False  # a real module that needs an action, whatever else sits in its folder
        folder = node.name.replace(".", "/") + "/"
        saved_sources = (
            name for name, other in self.dependency_graph.nodes.items() if other.source is not None
        )
        if not any(name.startswith(folder) for name in self._writer.names) and not any(
            name.startswith(node.name + ".") for name in saved_sources
        ):
            return False
        node.broken, node.action, node.source = None, ModuleAction.SKIP, None
        return True

    def _validate(self) -> None:
        for node in self.dependency_graph.nodes.values():
            self._provided_as_resource_folder(node)
        broken = [
            BrokenModule(name, node.broken, node.context, tuple(self.dependency_graph.first_path(name)))
            for name, node in self.dependency_graph.nodes.items()
            if node.broken is not None
        ]
        if broken:
            error = PackagingError(broken, debug=self.debug)
            error.dependency_graph = self.dependency_graph  # type: ignore[attr-defined]
            raise error
        for pattern, rule in self.patterns.items():
            if not rule.allow_empty and not rule.was_matched:
                raise EmptyMatchError(
                    f"{pattern} matched no module during this export, and it was declared with allow_empty=False"
                )

    def _write_modules(self) -> None:
        graph = self.dependency_graph
        nodes = list(graph.nodes.values())
        hooks = {
            ModuleAction.EXTERN: self._extern_hooks,
            ModuleAction.MOCK: self._mock_hooks,
            ModuleAction.INTERN: self._intern_hooks,
        }
        for node in nodes:
            if node.action in hooks and not node.is_pickle:
                for hook in list(hooks[node.action].values()):
                    hook(self, node.name)
        sources: dict[str, str] = {}
        mocked_names = {n.name for n in nodes if n.action is ModuleAction.MOCK}
        for node in nodes:
            if node.action is ModuleAction.INTERN and not node.is_pickle:
                assert node.source is not None
                sources[records.module_filename(node.name, node.is_package)] = node.source
            elif node.action is ModuleAction.MOCK:
                if not module_exists(self.importer, node.name):
                    # Mocking stands in for modules that exist. One that is absent here stays
                    # absent in the package, so code that guards its import behaves the same.
                    continue
                # A mocked module is a package if it has mocked children, or is one on disk.
                is_package = any(other.startswith(node.name + ".") for other in mocked_names) or self._is_package(
                    node.name
                )
                sources[records.module_filename(node.name, is_package)] = MOCKED_MODULE_SOURCE
        if mocked_names or any(n.action is ModuleAction.REPACKAGED_MOCK_MODULE for n in nodes):
            sources.setdefault(records.module_filename(MOCK_SUPPORT_MODULE, False), MOCK_SUPPORT_SOURCE)
        for filename in sorted(sources):
            self._writer.stage_record(filename, sources[filename].encode("utf-8"))

    def _is_package(self, module_name: str) -> bool:
        try:
            return locate_module(self.importer, module_name).is_package
        except ImportError:
            return False

    def _write_framework_records(self) -> None:
        extern = self.externed_modules()
        stage = self._writer.stage_record
        stage(records.EXTERN_MODULES, "".join(f"{name}\n" for name in extern).encode())
        optional_missing = self.optional_missing_modules()
        if optional_missing:  # written only when needed: other archives keep their bytes
            stage(records.OPTIONAL_MISSING, "".join(f"{name}\n" for name in optional_missing).encode())
        if self._entry_point is not None:
            stage(records.ENTRY_POINT, f"{self._entry_point}\n".encode())
        stage(records.PYTHON_VERSION, platform.python_version().encode())
        stage(records.VERSION, f"{records.FORMAT_VERSION}\n".encode())
        stage(records.BYTEORDER, sys.byteorder.encode())
        # The two records below describe all the others, so those are written out first.
        written = self._writer.flush_staged()
        serialization_id = records.serialization_id({name: r.digest for name, r in written.items()})
        self._writer.write_record(records.SERIALIZATION_ID, serialization_id.encode())
        written_digests = {name: (r.size, r.digest) for name, r in written.items()}
        self._writer.write_record(
            records.INTEGRITY, records.integrity_document(written_digests, records.provenance(extern, self._requires))
        )

__all__ = ["PackageExporter", "PackagingError", "EmptyMatchError", "TorchpackError"]
