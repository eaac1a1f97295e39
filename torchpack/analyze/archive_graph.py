"""What an archive holds, and the dependency graph that explains why, rebuilt from its records.

An archive stores no dependency graph: the exporter's graph is gone once the file is
written. It can be rebuilt from what the archive does keep - the source of every interned
module and the opcodes of every pickle - along the exporter's own rules: a pickle depends on
the module of each global it loads, an interned module on each module it imports (``from
a import b`` means the submodule ``a.b`` when there is one) and on the parent packages that
importing it runs. Nothing is imported or unpickled, so untrusted archives are safe to read,
whether torchpack or torch.package wrote them.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field

from .. import _records as records
from .._archive_reader import ArchiveReader
from .._pickle_scan import PickleScan, StorageReference, is_pickle, scan_pickle
from .._resolution import DependencyGraph, ModuleAction, parent_packages
from .._source_scan import shared_scan_cache
from ..errors import ArchiveFormatError

__all__ = ["ArchiveContents", "ModuleRecord", "archive_graph", "is_mock_stub", "pickle_node_name", "read_contents", "record_data", "why_paths"]


@dataclass(frozen=True)
class ModuleRecord:
    """A module whose source is in the archive."""

    name: str
    record: str
    is_package: bool
    source: str
    mocked: bool


@dataclass
class ArchiveContents:
    """The modules, extern names and pickles of one archive."""

    modules: dict[str, ModuleRecord] = field(default_factory=dict)
    extern: list[str] = field(default_factory=list)
    #: Pickle record -> its scan, or the reason it could not be scanned.
    pickles: dict[str, PickleScan | str] = field(default_factory=dict)
    #: The ``.data/version`` record's text; None when missing (then it is no torch.package archive).
    format_version: str | None = None
    #: Records whose bytes could not be read (corrupted), with the reader's error.
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def interned(self) -> list[str]:
        return sorted(name for name, module in self.modules.items() if not module.mocked)

    @property
    def mocked(self) -> list[str]:
        return sorted(name for name, module in self.modules.items() if module.mocked)

    @functools.cached_property
    def _extern_names(self) -> frozenset[str]:
        return frozenset(self.extern)

    def is_known(self, name: str) -> bool:
        """Whether the archive provides ``name``: its source is inside, or it is listed as extern.

        The exporters list every extern module they met, so a name below an extern package
        that is not listed is no module the archive needs (``collections.OrderedDict``).
        """
        return name in self.modules or name in self._extern_names

    def storage_users(self) -> dict[str, list[tuple[str, StorageReference]]]:
        """Storage record -> (pickle record, what the pickle says it holds) for each pickle using it."""
        users: dict[str, list[tuple[str, StorageReference]]] = {}
        for record, scan in self.pickles.items():
            if isinstance(scan, PickleScan):
                for reference in scan.storages:
                    users.setdefault(records.storage_record(reference.key), []).append((record, reference))
        return users

    def kind(self, name: str) -> str | None:
        """``interned``, ``mocked``, ``extern``, or None for a module the archive does not provide."""
        module = self.modules.get(name)
        if module is not None:
            return "mocked" if module.mocked else "interned"
        return "extern" if name in self._extern_names else None


def is_mock_stub(source: str) -> bool:
    """Whether ``source`` is the stand-in torchpack or torch.package writes for a mocked module.

    Both write a few lines that import ``MockedObject`` from the package's ``_mock`` module
    and answer every attribute lookup with one; detecting that shape covers both writers.
    """
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    return (
        len(lines) <= 4
        and lines[:1] == ["from _mock import MockedObject"]
        and any(line.startswith("def __getattr__(") for line in lines)
        and any("MockedObject(__name__" in line for line in lines)
    )


def _module_name(record: str) -> tuple[str, bool] | None:
    """(module name, is package) of a source record, or None for other records."""
    if record.startswith(".data/") or not record.endswith(".py"):
        return None
    path = record[: -len(".py")]
    if path.endswith("/__init__") or path == "__init__":
        return path[: -len("__init__")].rstrip("/").replace("/", "."), True
    return path.replace("/", "."), False


def record_data(reader: ArchiveReader, name: str) -> bytes | memoryview:
    """A record's bytes, zero-copy for stored records (tensor data above all).

    The CRC is not checked here: inspection and diffing look at bytes as they are;
    ``torchpack verify`` is the command that checks them.
    """
    try:
        return reader.view(name, check_crc=False)
    except ArchiveFormatError:  # compressed: only inflating gives the bytes
        return reader.read(name)


def read_contents(reader: ArchiveReader) -> ArchiveContents:
    """Classify every record of the archive: modules (interned or mocked), extern names, pickles."""
    contents = ArchiveContents()
    for name in sorted(reader.names()):
        module = _module_name(name)
        framework = name in (records.EXTERN_MODULES, records.VERSION, "version")  # "version": oldest layout
        if (name.startswith(".data/") and not framework) or (module is not None and not module[0]):
            continue
        try:
            data = reader.read(name)
        except ArchiveFormatError as error:
            # A damaged record must not hide the rest of the archive from inspection.
            contents.unreadable[name] = str(error)
            continue
        if name == records.EXTERN_MODULES:
            contents.extern = [line for line in data.decode("utf-8", "replace").splitlines() if line]
        elif framework:
            contents.format_version = data.decode("ascii", "replace").strip()
        elif module is not None:
            source = data.decode("utf-8", "replace")
            contents.modules[module[0]] = ModuleRecord(module[0], name, module[1], source, is_mock_stub(source))
        elif is_pickle(name, data):
            try:
                contents.pickles[name] = scan_pickle(data)
            except ValueError as error:
                if name.endswith(".pkl"):
                    contents.pickles[name] = str(error)
                # Otherwise a binary resource that merely starts with the PROTO byte.
    return contents


def pickle_node_name(record: str) -> str:
    """The graph node of a pickle record, named as the exporter names it: ``<package.resource>``."""
    folder, _, resource = record.rpartition("/")
    return f"<{folder.replace('/', '.')}.{resource}>"


def archive_graph(contents: ArchiveContents) -> DependencyGraph:
    """The dependency graph of the archive, with each node's action set."""
    graph = DependencyGraph()

    def add_module_node(name: str) -> None:
        kind = contents.kind(name)
        node = graph.node(name)
        node.action = ModuleAction.EXTERN if kind == "extern" else ModuleAction.MOCK if kind == "mocked" else ModuleAction.INTERN
        node.provided = True

    def depend(user: str, used: str) -> None:
        if user != used and contents.is_known(used):
            add_module_node(used)
            graph.add_edge(user, used)

    for record, scan in contents.pickles.items():
        node = graph.node(pickle_node_name(record))
        node.action, node.provided, node.is_pickle = ModuleAction.INTERN, True, True
        if isinstance(scan, PickleScan):
            for module, _name in scan.globals:
                depend(node.name, module)
    for module in contents.modules.values():
        add_module_node(module.name)
        graph.nodes[module.name].source, graph.nodes[module.name].is_package = module.source, module.is_package
        # Importing a module runs its parent packages first.
        for parent in parent_packages(module.name):
            depend(module.name, parent)
        package = module.name if module.is_package else module.name.rpartition(".")[0]
        try:
            references = shared_scan_cache.scan(module.source, package, module.record)
        except (SyntaxError, ValueError, ImportError, RecursionError, MemoryError):
            # Source that does not parse imports nothing we can tell. Python's parser answers
            # nesting deeper than it can take with RecursionError or MemoryError, at once.
            continue
        for reference in references:
            if reference.name is not None and contents.is_known(f"{reference.module}.{reference.name}"):
                target = f"{reference.module}.{reference.name}"
            else:
                target = reference.module
            depend(module.name, target)
            for parent in parent_packages(target):
                depend(module.name, parent)
    for name in contents.extern:
        add_module_node(name)
    return graph


#: Partial paths explored before giving up on listing more (dense graphs have huge path counts).
_PATH_SEARCH_BUDGET = 200_000


def why_paths(graph: DependencyGraph, target: str, limit: int) -> tuple[list[list[str]], bool]:
    """Up to ``limit`` simple paths from the graph's roots to ``target``, shortest first.

    Roots are pickles and modules nothing imports. Returns the paths and whether there are
    more. A module reached only from inside an import cycle is explained from the member of
    the cycle farthest from it.
    """
    distance = graph.reaching(target)
    roots = [name for name in distance if not graph.predecessors[name]]
    if not roots:
        roots = [max(distance, key=lambda name: (distance[name], name))]
    paths: list[list[str]] = []
    # Breadth-first over partial paths, so the shortest explanations come first; only nodes
    # that can still reach the target are expanded, which keeps dead ends out.
    queue = deque([root] for root in sorted(roots, key=lambda name: (not graph.nodes[name].is_pickle, name)))
    budget = _PATH_SEARCH_BUDGET
    while queue:
        path = queue.popleft()
        if path[-1] == target:
            if len(paths) == limit:
                return paths, True
            paths.append(path)
            continue
        budget -= 1
        if budget == 0:
            return paths, True
        for used in graph.successors[path[-1]]:
            if used in distance and used not in path:
                queue.append([*path, used])
    return paths, False
