"""Dependency resolution: the module graph an export is planned on, and how modules are found.

The exporter records every module and pickle it meets as a :class:`ModuleNode` in a
:class:`DependencyGraph` (edges point from a user to what it uses). Modules are located
*without executing them* where the importer allows it: for the running interpreter we walk
the import system's finders, which read the file system but run no module code, so mocked
or denied modules never get imported just to be packaged.
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import os
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType

from .errors import BrokenReason
from .importer import Importer, OrderedImporter, sys_importer


class ModuleAction(enum.Enum):
    INTERN = "intern"
    EXTERN = "extern"
    MOCK = "mock"
    DENY = "deny"
    #: The ``_mock`` support module written once whenever something is mocked.
    REPACKAGED_MOCK_MODULE = "repackaged_mock_module"
    #: Names the package provides by itself (``torch_package_importer``).
    SKIP = "skip"


@dataclass
class ModuleNode:
    """What the exporter knows about one module (or one pickle, named ``<package.resource>``)."""

    name: str
    action: ModuleAction | None = None
    provided: bool = False
    is_pickle: bool = False
    is_package: bool = False
    source: str | None = None
    broken: BrokenReason | None = None
    context: str | None = None


@dataclass
class DependencyGraph:
    """An insertion-ordered directed graph of :class:`ModuleNode`s."""

    nodes: dict[str, ModuleNode] = field(default_factory=dict)
    successors: dict[str, dict[str, None]] = field(default_factory=dict)
    predecessors: dict[str, dict[str, None]] = field(default_factory=dict)

    def node(self, name: str) -> ModuleNode:
        """The node called ``name``, created empty if it does not exist yet."""
        if name not in self.nodes:
            self.nodes[name] = ModuleNode(name)
            self.successors[name] = {}
            self.predecessors[name] = {}
        return self.nodes[name]

    def add_edge(self, source: str, target: str) -> None:
        self.node(source)
        self.node(target)
        self.successors[source][target] = None
        self.predecessors[target][source] = None

    @property
    def edges(self) -> Iterator[tuple[str, str]]:
        for source, targets in self.successors.items():
            for target in targets:
                yield source, target

    def first_path(self, target: str) -> list[str]:
        """A shortest chain from a root (something nothing depends on) to ``target``."""
        came_from: dict[str, str | None] = {target: None}
        queue = deque([target])
        while queue:
            current = queue.popleft()
            if not self.predecessors.get(current):
                path = [current]
                while came_from[path[-1]] is not None:
                    path.append(came_from[path[-1]])  # type: ignore[arg-type]
                return path
            for user in self.predecessors[current]:
                if user not in came_from:
                    came_from[user] = current
                    queue.append(user)
        return [target]

    def all_paths(self, source: str, target: str) -> str:
        """DOT of every edge that lies on some path from ``source`` to ``target``."""
        on_path = self.reaching(target).keys() & self._walk(source, self.successors).keys()
        return self.to_dot([(a, b) for a, b in self.edges if a in on_path and b in on_path])

    def reaching(self, target: str) -> dict[str, int]:
        """``target`` and every node it can be reached from, each with its distance to it."""
        return self._walk(target, self.predecessors)

    @staticmethod
    def _walk(start: str, neighbours: dict[str, dict[str, None]]) -> dict[str, int]:
        """Breadth-first distances from ``start`` along ``neighbours``."""
        distances = {start: 0}
        queue = deque([start])
        while queue:
            current = queue.popleft()
            for nxt in neighbours.get(current, {}):
                if nxt not in distances:
                    distances[nxt] = distances[current] + 1
                    queue.append(nxt)
        return distances

    def to_dot(self, edges: list[tuple[str, str]] | None = None) -> str:
        lines = [f'"{a}" -> "{b}";' for a, b in (self.edges if edges is None else edges)]
        return "digraph G {\nrankdir = LR;\nnode [shape=box];\n" + "\n".join(lines) + "\n}\n"


def parent_packages(name: str) -> list[str]:
    """The packages importing ``name`` runs first: ``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:depth]) for depth in range(1, len(parts))]


@dataclass(frozen=True)
class LocatedModule:
    """A module found through an importer: its source (if any) and where it came from."""

    name: str
    is_package: bool
    source: str | None
    #: The file the source was read from, when it is a real file (for the build cache).
    origin_file: str | None


def _sys_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The interpreter's spec for ``name`` without executing it or any of its parents."""
    if name in _spec_memo:
        return _spec_memo[name]
    spec = _find_sys_spec(name)
    _spec_memo[name] = spec
    return spec


# Within one resolution pass the file system does not change under us; see clear_spec_memo.
_spec_memo: dict[str, importlib.machinery.ModuleSpec | None] = {}


def clear_spec_memo() -> None:
    """Forget looked-up specs (an exporter starts afresh, so newly written files are seen)."""
    _spec_memo.clear()


def _find_sys_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__spec__", None)
    parent, _, _ = name.rpartition(".")
    search_path = None
    if parent:
        search_path = _submodule_search_path(parent)
        if search_path is None:
            return None
    for finder in sys.meta_path:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        try:
            spec = find_spec(name, search_path)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            return spec
    return None


def _submodule_search_path(package: str) -> list[str] | None:
    """Where the import system looks for the submodules of ``package``; None: not a package.

    Like importlib, an imported package's ``__path__`` decides, not its spec: transformers
    re-points ``__spec__.submodule_search_locations`` at a ``pathlib.Path``, which the path
    finder skips, while its ``__path__`` stays right. Entries are coerced to ``str``
    (``Path`` objects, a ``_NamespacePath``, bytes); what is no path at all is skipped.
    """
    module = sys.modules.get(package)
    if module is not None:
        locations = getattr(module, "__path__", None)
    else:
        spec = _sys_spec(package)
        locations = None if spec is None else spec.submodule_search_locations
    if locations is None:
        return None
    search_path = []
    try:
        entries = list(locations)
    except TypeError:  # a __path__ that is not iterable: no submodule can be found there
        return []
    for entry in entries:
        try:
            search_path.append(os.fsdecode(os.fspath(entry)))
        except TypeError:
            continue
    return search_path


def _source_of_module(module: ModuleType) -> tuple[str | None, str | None]:
    """(source, origin file) of an already-imported module; no source for C extensions."""
    filename = module.__dict__.get("__file__")
    loader = getattr(module, "__loader__", None)
    # A package loaded from an archive folder without __init__.py has no file but is
    # still source (empty) that its PackageImporter can give back.
    from_archive = getattr(module, "__torch_package__", False) and hasattr(loader, "get_source")
    if not from_archive and (filename is None or not filename.endswith(".py")):
        return None, None
    try:
        source = _loader_source(loader, module.__name__, filename)
    except (ImportError, OSError):
        return None, None
    origin = getattr(getattr(module, "__spec__", None), "origin", None)
    return source, origin if origin == filename else None


def _loader_source(loader: object, name: str, filename: str | None) -> str | None:
    """Source through the loader; from the ``.py`` file itself when the loader cannot give it
    (pytest's assertion rewriter, for one, has no ``get_source``)."""
    get_source = getattr(loader, "get_source", None)
    if get_source is not None:
        return get_source(name)
    if filename is None or not filename.endswith(".py"):
        return None
    with open(filename, "rb") as handle:
        return importlib.util.decode_source(handle.read())


def locate_module(importer: Importer, name: str) -> LocatedModule:
    """Find ``name`` through ``importer``; raise ModuleNotFoundError when it is not there."""
    if importer is sys_importer:
        spec = _sys_spec(name)
        if spec is None:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        is_package = spec.submodule_search_locations is not None
        origin = spec.origin if spec.has_location else None
        source: str | None = None
        if origin is not None and origin.endswith(".py") and spec.loader is not None:
            source = _loader_source(spec.loader, name, origin)
        return LocatedModule(name, is_package, source, origin if source is not None else None)
    module = importer.import_module(name)
    source, origin = _source_of_module(module)
    return LocatedModule(name, hasattr(module, "__path__"), source, origin)


def module_exists(importer: Importer, name: str) -> bool:
    """Whether ``importer`` can provide ``name``, running as little code as the importer allows."""
    if importer is sys_importer:
        try:
            return _sys_spec(name) is not None
        except (ImportError, ValueError):
            return False
    if isinstance(importer, OrderedImporter):
        return any(module_exists(inner, name) for inner in importer._importers)
    package_has = getattr(importer, "has_module", None)
    if package_has is not None:
        return bool(package_has(name))
    try:
        importer.import_module(name)
    except ImportError:
        return False
    return True
