"""Packaged code that loads in torchpack but not in torch.package, found without running it.

torchpack gives packaged code an ``importlib`` and ``importlib.resources`` that resolve module
names through the package (see :mod:`torchpack._importlib_facade`), an ``importlib.metadata``
that finds the distributions saved in the archive, and real ``__file__`` paths for
materialized modules. torch.package does none of this: there the same calls reach the
environment's import system, and fail (``No module named 'mylab'``) or, run from the
workspace, quietly read the working tree's copy instead of the archive's.

:func:`torch_package_findings` parses each packaged module's source from the archive with
:mod:`ast` (never importing or running it) and reports each such call with the way to write it
that behaves the same in both. Only names the archive packages are reported: a by-name lookup
of an extern module reaches the environment in both.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from .._archive_reader import ArchiveReader
from .._distributions import normalized, saved_distributions
from .archive_graph import read_contents

#: The loaders a ``compat`` check can be asked about.
COMPAT_TARGETS = ("torch.package",)

_RESOURCE_MODULES = ("importlib.resources", "importlib_resources")
_RESOURCE_FUNCTIONS = ("files", "read_text", "read_binary", "open_text", "open_binary", "path", "contents", "is_resource")
_METADATA_MODULES = ("importlib.metadata", "importlib_metadata")
_METADATA_FUNCTIONS = ("version", "distribution", "metadata", "requires", "files", "entry_points")
#: Calls that turn ``__file__`` into a filesystem path.
_PATH_FUNCTIONS = frozenset(
    {"os.path.dirname", "os.path.abspath", "os.path.realpath", "os.path.join", "os.path.split", "pathlib.Path", "open", "io.open"}
)

_RESOURCES_WHY = "resolves the name with the environment's import system in torch.package, not the archive's"
#: torch.package's resource reader has no files() of its own: Python 3.11's files() adapts
#: it, 3.10's fails on it; 3.13's read_text passes errors= to the adapted paths, whose
#: read_text takes none.  read_binary(module, name) loads in both on every version.  The
#: check speaks for torch.package on the Python it runs on.
_FILES_WORKS = sys.version_info >= (3, 11)
_READ_TEXT_WORKS = sys.version_info < (3, 13)
if _FILES_WORKS:
    _FILES_PORTABLE = "import the package and pass the module, not its name: import mylab.text; importlib.resources.files(mylab.text)"
    _PKGUTIL_PORTABLE = "import mylab; importlib.resources.files(mylab).joinpath(name).read_bytes()"
    _FILE_PORTABLE = 'import mylab.text; importlib.resources.files(mylab.text) / "vocab.txt" (.read_text(), .open())'
else:
    _FILES_PORTABLE = 'import the package and pass the module, not its name: import mylab.text; importlib.resources.read_binary(mylab.text, "vocab.txt").decode()'
    _PKGUTIL_PORTABLE = "import mylab; importlib.resources.read_binary(mylab, name)"
    _FILE_PORTABLE = 'import mylab.text; importlib.resources.read_binary(mylab.text, "vocab.txt").decode()'
_FILES_310_WHY = "torch.package's resource reader has no files(), which Python 3.10's importlib.resources.files needs"
_READ_TEXT_313_WHY = "Python 3.13's read_text passes errors= to torch.package's resource paths, which do not take it"
_READ_TEXT_313_PORTABLE = 'importlib.resources.read_binary(mylab.text, "vocab.txt").decode(), or files(mylab.text)'
_IMPORT_WHY = "importlib.import_module reaches the environment's modules in torch.package, not the archive's"
_IMPORT_PORTABLE = "an import statement (import mylab.x, or from . import x), which both resolve in the package"
_PKGUTIL_WHY = "pkgutil.get_data finds the package with the environment's import system, not the archive's"
_METADATA_WHY = (
    "torch.package's importlib.metadata sees only installed distributions, not the metadata this archive carries"
)
_METADATA_PORTABLE = "a version string kept in the package itself (e.g. a __version__ constant or a text resource)"
_FILE_WHY = "in torch.package __file__ names a record inside the archive, not a file on disk"


@dataclass(frozen=True)
class CompatFinding:
    """One construct of one packaged module that behaves differently in torch.package."""

    module: str
    line: int | None
    construct: str
    why: str
    portable: str

    @property
    def where(self) -> str:
        return self.module if self.line is None else f"{self.module}:{self.line}"

    def describe(self) -> str:
        return f"{self.where}: {self.construct}: {self.why}; portable: {self.portable}"


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for a chain of attributes on a name, else None (iterative: chains may be long)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def _bound_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it was imported as, from every import in the module."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:  # `import a.b` binds `a`
                    head = alias.name.partition(".")[0]
                    bound[head] = head
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def _qualified(func: ast.expr, bound: dict[str, str]) -> tuple[str, str] | None:
    """(as written, fully qualified) name of a called function, when it is a dotted name."""
    written = _dotted(func)
    if written is None:
        return None
    head, dot, rest = written.partition(".")
    if head in bound:
        return written, bound[head] + dot + rest
    return written, written


#: Names that always hold the calling module's own (packaged) name.
_OWN_NAMES = ("__name__", "__package__", "__spec__.name", "__spec__.parent")


def _first_string(call: ast.Call, keywords: tuple[str, ...]) -> str | None:
    """The name the call looks up: a string constant, or one of :data:`_OWN_NAMES` as written."""
    argument = call.args[0] if call.args else next((k.value for k in call.keywords if k.arg in keywords), None)
    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
        return argument.value
    own = _dotted(argument) if isinstance(argument, (ast.Name, ast.Attribute)) else None
    return own if own in _OWN_NAMES else None


def _shown(name: str) -> str:
    return name if name in _OWN_NAMES else repr(name)


def _mentions_file(nodes: Iterable[ast.AST]) -> bool:
    return any(isinstance(n, ast.Name) and n.id == "__file__" for node in nodes for n in ast.walk(node))


class _ModuleCheck:
    def __init__(self, module: str, packaged: set[str], distributions: frozenset[str]) -> None:
        self.module, self.packaged, self.distributions = module, packaged, distributions
        self.findings: list[CompatFinding] = []
        self._file_lines: set[int] = set()

    def is_packaged(self, name: str) -> bool:
        return name in _OWN_NAMES or name in self.packaged or any(m.startswith(name + ".") for m in self.packaged)

    def add(self, call: ast.Call, construct: str, why: str, portable: str) -> None:
        self.findings.append(CompatFinding(self.module, call.lineno, construct, why, portable))

    def call(self, call: ast.Call, bound: dict[str, str]) -> None:
        names = _qualified(call.func, bound)
        if names is None:
            return
        written, qualified = names
        module, _, function = qualified.rpartition(".")
        if module in _RESOURCE_MODULES and function in _RESOURCE_FUNCTIONS:
            anchor = _first_string(call, ("anchor", "package"))
            if anchor is not None and self.is_packaged(anchor):
                self.add(call, f"{written}({_shown(anchor)})", _RESOURCES_WHY, _FILES_PORTABLE)
            elif anchor is None and function == "files" and not _FILES_WORKS:
                self.add(call, f"{written}(...)", _FILES_310_WHY, _FILES_PORTABLE)
            elif anchor is None and function == "read_text" and not _READ_TEXT_WORKS:
                self.add(call, f"{written}(...)", _READ_TEXT_313_WHY, _READ_TEXT_313_PORTABLE)
        elif qualified == "importlib.import_module":
            name = _first_string(call, ("name",))
            if name is not None and (name.startswith(".") or self.is_packaged(name)):
                self.add(call, f"{written}({_shown(name)})", _IMPORT_WHY, _IMPORT_PORTABLE)
        elif qualified == "pkgutil.get_data":
            package = _first_string(call, ("package",))
            if package is not None and self.is_packaged(package):
                self.add(call, f"{written}({_shown(package)}, ...)", _PKGUTIL_WHY, _PKGUTIL_PORTABLE)
        elif module in _METADATA_MODULES and function in _METADATA_FUNCTIONS:
            name = _first_string(call, ("distribution_name", "name"))
            if name is not None and normalized(name) in self.distributions:
                self.add(call, f"{written}({name!r})", _METADATA_WHY, _METADATA_PORTABLE)
        elif qualified in _PATH_FUNCTIONS and call.lineno not in self._file_lines:
            if _mentions_file([*call.args, *(k.value for k in call.keywords)]):
                self._file_lines.add(call.lineno)  # dirname(__file__) inside join(...): one finding
                self.add(call, f"{written}(... __file__ ...)", _FILE_WHY, _FILE_PORTABLE)


def _check_source(module: str, source: str, packaged: set[str], distributions: frozenset[str]) -> list[CompatFinding]:
    try:
        tree = ast.parse(source)
        bound = _bound_names(tree)
        check = _ModuleCheck(module, packaged, distributions)
        for node in ast.walk(tree):  # breadth first, iterative: deep nesting costs no stack
            if isinstance(node, ast.Call):
                check.call(node, bound)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        # Python's parser answers nesting deeper than it takes with one of these, at once.
        line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
        reason = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        return [CompatFinding(module, line, "source that cannot be analysed", reason, "source that Python parses")]
    return sorted(check.findings, key=lambda f: (f.line or 0, f.construct))


def torch_package_findings(reader: ArchiveReader) -> list[CompatFinding]:
    """Every construct of the archive's packaged modules that torch.package loads differently."""
    contents = read_contents(reader)
    packaged = set(contents.modules)
    distributions = saved_distributions(reader.names())
    findings = []
    for name, module in sorted(contents.modules.items()):
        if not module.mocked:
            findings.extend(_check_source(name, module.source, packaged, distributions))
    return findings
